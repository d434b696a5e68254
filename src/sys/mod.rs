//! The system calls the safe crates do not cover as the server needs them: the one
//! module tree with unsafe code (STYLE 11), each use with its safety comment.
//!
//! - [`mmsg`]: recvmmsg/sendmmsg batches over headers set up once (the UDP loop);
//! - [`trim_heap_soon`]: hands the memory a reload freed back to the system.
#![allow(unsafe_code)]

pub mod mmsg;

/// In a second (once the old View's last readers have let it go), returns the heap's
/// free memory to the system: glibc's malloc keeps what a reload freed in its arenas,
/// so without this each reload of a large config left the process larger.
pub fn trim_heap_soon() {
    let spawned = std::thread::Builder::new().name("steerdns-trim".into()).spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(1));
        trim_heap();
    });
    if let Err(e) = spawned {
        tracing::debug!("cannot start the heap trim: {e}");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim takes no pointer and only releases free memory of the
    // allocator's own arenas; it is safe to call from any thread at any time
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

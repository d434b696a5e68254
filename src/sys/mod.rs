//! The system calls the safe crates do not cover as the server needs them: the one
//! module tree with unsafe code (STYLE 11), each use with its safety comment.
//!
//! - [`mmsg`]: recvmmsg/sendmmsg batches over headers set up once (the UDP loop);
//! - [`one_heap_arena`], [`trim_heap_soon`]: keep a reload's memory within bounds.
#![allow(unsafe_code)]

pub mod mmsg;

/// Puts every thread's allocations in one glibc malloc arena; call before threads
/// start. With an arena per thread (glibc's default, up to eight per core), a reload
/// built its config in one thread's arena and its View and status in another's, and
/// neither could reuse what the other had freed: with 100,000 services one reload
/// took RSS from 329 MB to 739 MB, against 547 MB in one arena (four reloads in a row:
/// 1,034 and 637 MB). Answering a query allocates nothing, so the arena's lock is not
/// on the query path; small allocations come from each thread's cache anyway.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn one_heap_arena() {
    // SAFETY: mallopt takes no pointer; it sets a tunable of the allocator, which is
    // safe to call at any time (arenas that exist stay in use)
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn one_heap_arena() {}

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

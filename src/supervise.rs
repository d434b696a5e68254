//! Crash-only supervision. A task that keeps answers true (the owner, the store, the
//! probes, the accept loops, the admin server) runs under a name; when the binary's
//! panic hook is installed, a panic in any of them logs one line naming it and ends
//! the process at once with [`PANIC_EXIT`], so a supervisor restarts it and it never
//! answers from a frozen View. A panic while answering one query is [`contained`]:
//! the View is immutable, so that query is dropped and the server goes on.
//!
//! The owner beats a [`Heartbeat`]; the watchdog ends the process when it stops.
//!
//! Fault points ([`fault_point`]) let the tests force a panic or a stall in each task
//! through `STEERDNS_FAULT`; they exist in debug builds only.

use std::cell::RefCell;
use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The exit status after a panic outside a query (EX_SOFTWARE).
pub const PANIC_EXIT: i32 = 70;
/// How old the owner's heartbeat may get before the process counts as hung.
pub const HEARTBEAT_LIMIT: Duration = Duration::from_secs(5);

tokio::task_local! {
    static TASK: &'static str;
}

thread_local! {
    /// Set while a contained call runs: its panics are the caller's to report.
    static CONTAINED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `future` as the task `name`, for the panic hook's line.
pub fn task<F: Future>(name: &'static str, future: F) -> impl Future<Output = F::Output> {
    TASK.scope(name, future)
}

/// Installs the panic hook of a crash-only process: a panic outside [`contained`]
/// writes one line to stderr naming its task and exits with [`PANIC_EXIT`].
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let place = info.location().map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        let message = payload(info.payload());
        let contained = CONTAINED.with(|c| {
            let mut c = c.borrow_mut();
            c.as_mut().map(|slot| *slot = format!("{message}{place}")).is_some()
        });
        if contained {
            return;
        }
        let thread = std::thread::current();
        let name = TASK.try_with(|t| *t).unwrap_or_else(|_| thread.name().unwrap_or("main"));
        // straight to stderr: the logger's buffer would be lost at exit, and a closed
        // stderr must not stop the exit
        let _ = writeln!(std::io::stderr(), "steerdns: task {name} panicked{place}: {message}; exiting");
        std::process::exit(PANIC_EXIT);
    }));
}

fn payload(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".into(),
    }
}

/// Calls `f`, catching a panic: Err with its message and place.
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    CONTAINED.with(|c| *c.borrow_mut() = Some(String::new()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let message = CONTAINED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    result.map_err(|p| if message.is_empty() { payload(p.as_ref()) } else { message })
}

/// True at most once a minute per `last` (a process-wide slot): for logs that a
/// flood must not multiply.
pub fn once_a_minute(last: &AtomicU64) -> bool {
    let now = epoch().elapsed().as_secs() + 60;
    let before = last.load(Ordering::Relaxed);
    (before == 0 || now >= before + 60)
        && last.compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The owner's sign of life: the time of its last loop, as milliseconds since start.
#[derive(Debug, Default)]
pub struct Heartbeat(AtomicU64);

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(epoch().elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long ago the last beat was.
    pub fn age(&self) -> Duration {
        epoch().elapsed().saturating_sub(Duration::from_millis(self.0.load(Ordering::Relaxed)))
    }
}

/// The fault `STEERDNS_FAULT` asks for, in debug builds; none in release builds.
fn fault() -> Option<&'static str> {
    static FAULT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if !cfg!(debug_assertions) {
        return None;
    }
    FAULT.get_or_init(|| std::env::var("STEERDNS_FAULT").ok()).as_deref()
}

/// A test's fault point in task `name`: with `STEERDNS_FAULT=NAME-panic` it panics,
/// with `NAME-stall` it blocks its thread for good. Nothing in release builds.
pub fn fault_point(name: &str) {
    let Some(fault) = fault() else { return };
    match fault.strip_prefix(name) {
        Some("-panic") => panic!("forced by STEERDNS_FAULT={fault}"),
        Some("-stall") => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        _ => {}
    }
}

/// Whether `STEERDNS_FAULT` names `fault` (debug builds only).
pub fn fault_is(fault_name: &str) -> bool {
    fault() == Some(fault_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contained_panic_is_an_error_with_its_message() {
        assert_eq!(contained(|| 7), Ok(7));
        let e = contained(|| -> u8 { panic!("bad packet") }).unwrap_err();
        assert!(e.contains("bad packet"), "{e}");
        assert_eq!(contained(|| 8), Ok(8), "the next call runs as usual");
    }

    #[test]
    fn once_a_minute_lets_one_through() {
        let slot = AtomicU64::new(0);
        assert!(once_a_minute(&slot));
        assert!(!once_a_minute(&slot));
        assert!(!once_a_minute(&slot));
    }

    #[test]
    fn a_heartbeat_ages_from_its_last_beat() {
        let h = Heartbeat::default();
        h.beat();
        assert!(h.age() < HEARTBEAT_LIMIT);
    }
}

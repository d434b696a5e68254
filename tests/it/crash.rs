//! Crash-only, tried on the real binary: a panic in a task that keeps answers true ends
//! the process at once with one line naming the task; a panic while answering one
//! query drops that query alone; a hung owner is caught by its heartbeat; a closed
//! stderr stops nothing. The faults are forced through `STEERDNS_FAULT`, which only
//! debug builds (what `cargo test` builds) read.

use crate::backend::{Backend, Mode};
use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

/// The exit status of a panic outside a query (EX_SOFTWARE).
const PANIC_EXIT: i32 = 70;

/// A config dir with the quickstart plus `extra`, on free ports.
fn dir_with(extra: &str) -> tempfile::TempDir {
    let dir = quickstart_dir();
    let path = dir.path().join("c.toml");
    let config = std::fs::read_to_string(&path).unwrap() + extra;
    std::fs::write(&path, config).unwrap();
    dir
}

/// A healthy service over one HTTP backend, probed every 200 ms.
fn checked(backend: &Backend) -> String {
    let (ip, port) = (backend.addr.ip(), backend.addr.port());
    format!(
        "\n[checks.web]\nport = {port}\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n\
         [[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\n\
         targets = [\"{ip}\", \"127.0.80.9\"]\n"
    )
}

fn answers(dns: std::net::SocketAddr, name: &str) -> Vec<String> {
    let mut got = addresses(&udp_exchange(dns, &query(name, RecordType::A)).expect("a UDP reply"));
    got.sort();
    got
}

const DRAIN: &str = "/v1/services/www.lb.example/targets/127.0.0.10/state";

fn put_drain(admin: &str) -> u16 {
    http(admin, "PUT", DRAIN, Some(r#"{"state": "drain"}"#), None).0
}

#[test]
fn a_closed_stderr_stops_nothing_and_sigterm_still_exits_0() {
    let backend = Backend::http("127.0.80.1", 0, Mode::Status(200, "OK"));
    let dir = dir_with(&checked(&backend));
    let (mut server, stderr) = Process::child(dir.path(), &[]);
    let mut lines = BufReader::new(stderr).lines();
    let (mut dns, mut admin) = (None, None);
    while dns.is_none() || admin.is_none() {
        let line = lines.next().unwrap().unwrap();
        admin = admin.or_else(|| line.split("admin API on ").nth(1).map(|r| r.trim().to_string()));
        dns = dns.or_else(|| line.split("serving DNS on ").nth(1).map(|r| r.split(' ').next().unwrap().to_string()));
    }
    drop(lines); // the pipe closes: every later log line fails to be written
    let (dns, admin) = (dns.unwrap().parse().unwrap(), admin.unwrap());
    eventually("the dead target to be dropped", || answers(dns, "h.lb.example.") == [backend.addr.ip().to_string()]);
    // the backend dies: the transition is logged (into the closed pipe) and applied
    backend.set(Mode::Down);
    eventually("the backend's death to be applied", || {
        answers(dns, "h.lb.example.").len() == 2 // both down: fail-open
    });
    backend.set(Mode::Status(200, "OK"));
    eventually("its return to be applied", || answers(dns, "h.lb.example.") == [backend.addr.ip().to_string()]);
    assert_eq!(put_drain(&admin), 200, "the owner still takes calls");
    let (code, metrics) = http(&admin, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    let lost = metrics.lines().find(|l| l.starts_with("steerdns_log_lines_dropped_total ")).unwrap();
    assert_ne!(lost, "steerdns_log_lines_dropped_total 0", "the lost lines are counted");
    Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    let status = exit_status(&mut server.0);
    assert_eq!(status.code(), Some(0), "{status}");
}

/// Starts the binary with `fault`, runs `trigger`, and expects it to end with
/// PANIC_EXIT and a line naming `task`.
fn ends_on(fault: &str, task: &str, extra: &str, trigger: impl FnOnce(&Process)) {
    let dir = dir_with(extra);
    // a probe panics before the start is over: do not wait for /healthz
    let mut p = Process::starting(dir.path(), &[("STEERDNS_FAULT", fault)]);
    trigger(&p);
    let status = exit_status(&mut p.server.0);
    assert_eq!(status.code(), Some(PANIC_EXIT), "{fault}: {status}");
    let line = format!("task {task} panicked");
    eventually(&format!("{fault}: the line {line:?}"), || p.logged(&line));
}

#[test]
fn a_panic_in_the_owner_ends_the_process() {
    ends_on("owner-panic", "owner", "", |p| {
        // the call never gets its answer: the owner is gone
        let _ = try_http(&p.admin, "PUT", DRAIN, Some(r#"{"state": "drain"}"#), None);
    });
}

#[test]
fn a_panic_in_the_store_ends_the_process() {
    ends_on("store-panic", "store", "", |p| {
        let _ = try_http(&p.admin, "PUT", DRAIN, Some(r#"{"state": "drain"}"#), None);
    });
}

#[test]
fn a_panic_in_a_probe_ends_the_process() {
    let backend = Backend::http("127.0.80.2", 0, Mode::Status(200, "OK"));
    // the first probe comes within a second of the start
    ends_on("probe-panic", "probe", &checked(&backend), |_| {});
}

#[test]
fn a_panic_in_the_tcp_server_ends_the_process() {
    ends_on("tcp-panic", "tcp", "", |p| {
        let mut stream = std::net::TcpStream::connect(p.dns).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp_send(&mut stream, &query("www.lb.example.", RecordType::A).to_vec().unwrap());
        assert_eq!(tcp_read(&mut stream), None, "no answer from a server that crashed");
    });
}

#[test]
fn a_panic_in_the_admin_api_ends_the_process() {
    ends_on("admin-panic", "admin", "", |p| {
        let _ = try_http(&p.admin, "GET", "/v1/status", None, None);
    });
}

#[test]
fn a_panic_answering_one_query_drops_that_query_alone() {
    let dir = dir_with("");
    let p = Process::start(dir.path(), &[("STEERDNS_FAULT", "query-panic")]);
    let bad = query("panic.lb.example.", RecordType::A).to_vec().unwrap();
    assert_eq!(udp_raw(p.dns, &bad, Duration::from_millis(500)), None, "that query is dropped");
    assert_eq!(answers(p.dns, "www.lb.example."), ["127.0.0.10", "127.0.0.11", "127.0.0.12"]);
    let mut stream = std::net::TcpStream::connect(p.dns).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp_send(&mut stream, &bad);
    let good = query("www.lb.example.", RecordType::A);
    let mut again = std::net::TcpStream::connect(p.dns).unwrap();
    again.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp_send(&mut again, &good.to_vec().unwrap());
    assert!(tcp_read(&mut again).is_some(), "TCP answers the next query");
    eventually("both panics counted", || {
        let (code, metrics) = http(&p.admin, "GET", "/metrics", None, None);
        assert_eq!(code, 200);
        metrics.lines().any(|l| l == "steerdns_query_panics_total 2")
    });
    // logged once, with the packet
    let hex: String = bad[2..].iter().map(|b| format!("{b:02x}")).collect();
    eventually("the panic logged with its packet", || p.logged(&hex));
    assert_eq!(p.lines.lock().unwrap().iter().filter(|l| l.contains("panicked")).count(), 1, "at most once a minute");
}

#[test]
fn a_hung_owner_is_caught_by_its_heartbeat() {
    let dir = dir_with("");
    let mut p = Process::start(dir.path(), &[("STEERDNS_FAULT", "owner-stall")]);
    assert_eq!(http(&p.admin, "GET", "/healthz", None, None).0, 200);
    // the call hangs the owner for good; nobody answers it
    let admin = p.admin.clone();
    std::thread::spawn(move || try_http(&admin, "PUT", DRAIN, Some(r#"{"state": "drain"}"#), None));
    let status = exit_status(&mut p.server.0);
    assert_eq!(status.code(), Some(PANIC_EXIT), "{status}");
    eventually("the line saying why", || p.logged("the state owner is hung"));
    assert!(answers_nothing(p.dns), "nothing answers from the frozen View");
}

fn answers_nothing(dns: std::net::SocketAddr) -> bool {
    udp_raw(dns, &query("www.lb.example.", RecordType::A).to_vec().unwrap(), Duration::from_millis(300)).is_none()
}

#[test]
fn sigterm_ends_the_process_within_shutdown_timeout_even_with_a_hung_owner() {
    let dir = dir_with("");
    let mut p = Process::start(dir.path(), &[("STEERDNS_FAULT", "owner-stall")]);
    let admin = p.admin.clone();
    // the call hangs the owner; the stop that follows must not wait for it
    let call = std::thread::spawn(move || try_http(&admin, "PUT", DRAIN, Some(r#"{"state": "drain"}"#), None));
    eventually("the call to be taken", || {
        std::net::TcpStream::connect(p.admin.trim_start_matches("http://")).is_ok() && !call.is_finished()
    });
    Command::new("kill").args(["-TERM", &p.server.0.id().to_string()]).status().unwrap();
    let status = exit_status(&mut p.server.0);
    // shutdown_timeout is 3 s and the watchdog's limit 5 s: 0 is the orderly stop
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!p.logged("the state owner is hung"), "stopped before the watchdog had to");
}

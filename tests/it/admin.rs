//! The admin API and admin states over real sockets, and the CLI as a subprocess.

use crate::backend::{Backend, Mode};
use crate::harness::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_steerdns");

fn put_state(s: &TestServer, service: &str, address: &str, state: &str) -> (u16, String) {
    let path = format!("/v1/services/{service}/targets/{address}/state");
    http(&s.admin, "PUT", &path, Some(&format!("{{\"state\": \"{state}\"}}")), None)
}

fn sorted(s: &TestServer, name: &str, rtype: RecordType) -> Vec<String> {
    let mut got = addresses(&s.ask(name, rtype));
    got.sort();
    got
}

#[test]
fn routes_and_their_errors() {
    let s = TestServer::quickstart();
    let (code, body) = http(&s.admin, "GET", "/v1/status", None, None);
    assert_eq!(code, 200);
    let status: steerdns::api::Status = serde_json::from_str(&body).unwrap();
    let www = status.services.iter().find(|x| x.name == "www.lb.example.").unwrap();
    assert_eq!((www.targets.len(), www.answered), (4, 4));
    assert_eq!(http(&s.admin, "GET", "/healthz", None, None).0, 200);
    // names without regard to case or trailing dot; addresses in canonical form
    assert_eq!(put_state(&s, "WWW.LB.EXAMPLE", "127.0.0.10", "drain").0, 200);
    assert_eq!(put_state(&s, "www.lb.example.", "0:0:0:0:0:0:0:1", "down").0, 200);
    let cases = [
        ("www.lb.example", "127.0.0.10", "{\"state\": \"drained\"}", 400, "unknown variant"),
        ("www.lb.example", "127.0.0.10", "{\"state\": ", 400, "body:"),
        ("www.lb.example", "127.0.0.10", "{\"mode\": \"drain\"}", 400, "mode"),
        ("www.lb.example", "not-an-ip", "{\"state\": \"drain\"}", 400, "address"),
        ("www..lb", "127.0.0.10", "{\"state\": \"drain\"}", 400, "service name"),
        ("nope.lb.example", "127.0.0.10", "{\"state\": \"drain\"}", 404, "unknown service"),
    ];
    for (service, address, body, code, words) in cases {
        let path = format!("/v1/services/{service}/targets/{address}/state");
        let (got, text) = http(&s.admin, "PUT", &path, Some(body), None);
        assert_eq!(got, code, "{service} {address} {body}: {text}");
        assert!(text.contains(words), "{text}");
    }
    // any address of a known service may hold a state
    assert_eq!(put_state(&s, "www.lb.example", "127.9.9.9", "drain").0, 200);
    // status is a snapshot the owner publishes at most every 250 ms
    eventually("the state listed as matching no target", || status_of(&s.admin).unmatched_states.len() == 1);
}

#[test]
fn mutating_calls_need_the_token_when_one_is_set() {
    let config = format!("{}\n", quickstart_config()).edit("[server]", "[server]\nadmin_token_file = \"token\"");
    let s = TestServer::with_files(&config, &[("lb.example.zone", ZONE), ("token", "s3cret\n")]);
    let path = "/v1/services/www.lb.example/targets/127.0.0.10/state";
    let body = Some("{\"state\": \"drain\"}");
    assert_eq!(http(&s.admin, "PUT", path, body, None).0, 401);
    assert_eq!(http(&s.admin, "PUT", path, body, Some("wrong")).0, 401);
    assert_eq!(http(&s.admin, "POST", "/v1/reload", None, None).0, 401);
    assert_eq!(http(&s.admin, "PUT", path, body, Some("s3cret")).0, 200);
    // every route but /healthz and /metrics needs it, reads too (status and explain
    // show the backends)
    for read in ["/v1/status", "/v1/explain?name=www.lb.example"] {
        assert_eq!(http(&s.admin, "GET", read, None, None).0, 401, "{read}");
        assert_eq!(http(&s.admin, "GET", read, None, Some("s3cret")).0, 200, "{read}");
    }
    for open in ["/healthz", "/metrics"] {
        assert_eq!(http(&s.admin, "GET", open, None, None).0, 200, "{open}");
    }
    // a reload re-reads the token file: the new token works and the old one stops at once
    std::fs::write(s.dir().join("token"), "n3w\n").unwrap();
    assert_eq!(http(&s.admin, "POST", "/v1/reload", None, Some("s3cret")).0, 200);
    assert_eq!(http(&s.admin, "PUT", path, body, Some("s3cret")).0, 401);
    assert_eq!(http(&s.admin, "PUT", path, body, Some("n3w")).0, 200);
}

#[test]
fn an_ipv4_mapped_address_is_the_ipv4_address() {
    let s = TestServer::quickstart();
    assert_eq!(put_state(&s, "www.lb.example", "::ffff:127.0.0.10", "drain").0, 200);
    assert_eq!(sorted(&s, "www.lb.example.", RecordType::A), ["127.0.0.11", "127.0.0.12"]);
}

#[test]
fn admin_states_on_every_policy_and_on_fail_open() {
    let a = Backend::http("127.0.30.1", 0, Mode::Status(200, "OK"));
    let port = a.addr.port();
    let _b = Backend::http("127.0.30.2", port, Mode::Status(200, "OK"));
    let config = format!(
        "{}\n[checks.web]\nport = {port}\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         [[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.30.1\", \"127.0.30.2\", \"127.0.30.3\"]\n\
         [[services]]\nname = \"f.lb.example.\"\npolicy = \"failover\"\ncheck = \"web\"\ntargets = [{{ address = \"127.0.30.1\", priority = 1 }}, {{ address = \"127.0.30.2\", priority = 2 }}]\n",
        quickstart_config()
    );
    let s = TestServer::start(&config);
    // all: drain removes a target at once (the very next query), down does not
    assert_eq!(put_state(&s, "www.lb.example", "127.0.0.10", "drain").0, 200);
    assert_eq!(sorted(&s, "www.lb.example.", RecordType::A), ["127.0.0.11", "127.0.0.12"]);
    assert_eq!(put_state(&s, "www.lb.example", "127.0.0.11", "down").0, 200);
    assert_eq!(sorted(&s, "www.lb.example.", RecordType::A).len(), 2, "all: health ignored");
    // every candidate of the family drained: NODATA
    assert_eq!(put_state(&s, "www.lb.example", "::1", "drain").0, 200);
    assert!(s.ask("www.lb.example.", RecordType::AAAA).answers.is_empty());
    // healthy: 127.0.30.3 has no backend and is down; up forces it in
    eventually("the probe of 127.0.30.3 failing", || {
        sorted(&s, "h.lb.example.", RecordType::A) == ["127.0.30.1", "127.0.30.2"]
    });
    assert_eq!(put_state(&s, "h.lb.example", "127.0.30.3", "up").0, 200);
    assert_eq!(sorted(&s, "h.lb.example.", RecordType::A).len(), 3);
    // down counts as a failed check (and halves the TTL); drain is not counted at all
    assert_eq!(put_state(&s, "h.lb.example", "127.0.30.1", "down").0, 200);
    let r = s.ask("h.lb.example.", RecordType::A);
    assert_eq!((addresses(&r).len(), r.answers[0].ttl), (2, 15));
    assert_eq!(put_state(&s, "h.lb.example", "127.0.30.1", "drain").0, 200);
    assert_eq!(put_state(&s, "h.lb.example", "127.0.30.3", "drain").0, 200);
    let r = s.ask("h.lb.example.", RecordType::A);
    assert_eq!((addresses(&r), r.answers[0].ttl), (vec!["127.0.30.2".to_string()], 30));
    // fail-open answers down targets but never drained ones
    assert_eq!(put_state(&s, "h.lb.example", "127.0.30.2", "down").0, 200);
    assert_eq!(sorted(&s, "h.lb.example.", RecordType::A), ["127.0.30.2"]);
    // failover: the primary set down gives the backup; auto gives the primary back
    assert_eq!(put_state(&s, "f.lb.example", "127.0.30.1", "down").0, 200);
    assert_eq!(sorted(&s, "f.lb.example.", RecordType::A), ["127.0.30.2"]);
    assert_eq!(put_state(&s, "f.lb.example", "127.0.30.1", "auto").0, 200);
    assert_eq!(sorted(&s, "f.lb.example.", RecordType::A), ["127.0.30.1"]);
}

#[test]
fn reloads_good_and_bad_under_a_steady_stream_of_queries() {
    let s = TestServer::quickstart();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (addr, flag, count) = (s.addr, stop.clone(), answered.clone());
    let stream = std::thread::spawn(move || {
        let (mut sent, mut lost) = (0, 0);
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            socket.send_to(&query("www.lb.example.", RecordType::A).to_vec().unwrap(), addr).unwrap();
            let mut buf = [0u8; 512];
            sent += 1;
            match socket.recv(&mut buf) {
                Ok(n) if hickory_proto::op::Message::from_vec(&buf[..n]).unwrap().answers.len() == 3 => {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                _ => lost += 1,
            }
        }
        (sent, lost)
    });
    let path = "/v1/reload";
    std::fs::write(s.dir().join("steerdns.toml"), quickstart_config().edit("ttl = 30", "ttl = 31")).unwrap();
    assert_eq!(http(&s.admin, "POST", path, None, None).0, 200);
    assert_eq!(s.ask("www.lb.example.", RecordType::A).answers[0].ttl, 31);
    std::fs::write(s.dir().join("steerdns.toml"), "[[services]\nname = 1").unwrap();
    let (code, body) = http(&s.admin, "POST", path, None, None);
    assert!(code == 400 && body.contains("TOML syntax error"), "{code} {body}");
    std::fs::write(s.dir().join("steerdns.toml"), quickstart_config().edit("ttl = 30", "ttl = -5")).unwrap();
    let (code, body) = http(&s.admin, "POST", path, None, None);
    assert!(code == 400 && body.contains("services[0].ttl"), "{code} {body}");
    assert_eq!(s.ask("www.lb.example.", RecordType::A).answers[0].ttl, 31, "the running config is kept");
    let so_far = answered.load(std::sync::atomic::Ordering::SeqCst);
    eventually("queries answered after the last reload", || {
        answered.load(std::sync::atomic::Ordering::SeqCst) >= so_far + 20
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, lost) = stream.join().unwrap();
    assert!(sent > 10 && lost == 0, "{lost} of {sent} queries unanswered");
}

#[test]
fn a_drain_survives_kill_minus_9_and_sigterm_turns_healthz_503() {
    let dir = quickstart_dir();
    let (child, dns, admin) = spawn(dir.path());
    let path = "/v1/services/www.lb.example/targets/127.0.0.10/state";
    assert_eq!(http(&admin, "PUT", path, Some("{\"state\": \"drain\"}"), None).0, 200);
    drop(child); // SIGKILL: nothing is flushed at exit
    let (mut child, dns2, admin) = spawn(dir.path());
    let mut got = addresses(&udp_exchange(dns2, &query("www.lb.example.", RecordType::A)).unwrap());
    got.sort();
    assert_eq!(got, ["127.0.0.11", "127.0.0.12"], "the drain came back from the state file");
    let _ = dns;
    // an open TCP connection keeps DNS draining for a moment after SIGTERM
    let _connection = std::net::TcpStream::connect(dns2).unwrap();
    Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    let mut saw_503 = false;
    let mut status = None;
    eventually("exits after SIGTERM", || {
        status = child.0.try_wait().unwrap();
        if status.is_none() {
            saw_503 |= try_http(&admin, "GET", "/healthz", None, None).is_ok_and(|(code, _)| code == 503);
        }
        status.is_some()
    });
    let status = status.unwrap();
    assert!(status.success(), "{status}");
    assert!(saw_503, "/healthz said 503 while stopping");
}

#[test]
fn the_cli_shows_status_sets_states_and_reloads() {
    let dir = quickstart_dir();
    let (child, dns, admin) = spawn(dir.path());
    let cli = |args: &[&str]| Command::new(BIN).args(args).env("STEERDNS_ADMIN", &admin).output().unwrap();
    let out = cli(&["state", "www.lb.example", "127.0.0.11", "drain"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.contains("www.lb.example.") && table.contains("127.0.0.11") && table.contains("drain"), "{table}");
    assert!(table.contains("answering 3 of 4"), "{table}");
    let out = cli(&["status", "--json"]);
    let status: steerdns::api::Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.services.len(), 3);
    assert!(cli(&["reload"]).status.success());
    assert_eq!(addresses(&udp_exchange(dns, &query("www.lb.example.", RecordType::A)).unwrap()).len(), 2);
    let out = cli(&["state", "nope.lb.example", "127.0.0.11", "drain"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    drop(child);
    // an unreachable server: one line, exit 1
    let out = cli(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach the steerdns admin API"), "{stderr}");
}

#[test]
fn a_corrupt_state_file_stops_the_start() {
    let dir = quickstart_dir();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(dir.path().join("state/steerdns-state.json"), "{ broken").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(dir.path().join("c.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("steerdns-state.json") && stderr.contains("move it aside"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.path().join("state/steerdns-state.json")).unwrap(), "{ broken");
    let _ = ResponseCode::NoError;
}

//! SPEC §1 "Ready", on the real binary: while probes have no verdict, service answers
//! that hang on them are SERVFAIL with EDE 14 and /healthz says 503 `starting`; static
//! names are answered all along; from the first computed answer on, a dead backend is
//! never in it.

use crate::backend::{Backend, Mode};
use crate::harness::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::time::Duration;

/// EDE option 15, length 2, INFO-CODE 14 "Not Ready".
const EDE_NOT_READY: [u8; 6] = [0, 15, 0, 2, 0, 14];

#[test]
fn a_fresh_server_never_answers_a_dead_backend() {
    let live = Backend::http("127.0.90.1", 0, Mode::Status(200, "OK"));
    let port = live.addr.port();
    // its probe times out: the start lasts at least the check's timeout
    let _slow = Backend::http("127.0.90.2", port, Mode::Hang);
    let dir = quickstart_dir();
    let path = dir.path().join("c.toml");
    let config = std::fs::read_to_string(&path).unwrap().edit("[server]\n", "[server]\nstartup_wait = \"20s\"\n")
        + &format!(
            "\n[checks.web]\nport = {port}\ninterval = \"5s\"\ntimeout = \"1500ms\"\n\n\
             [[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\n\
             targets = [\"127.0.90.1\", \"127.0.90.2\", \"127.0.90.3\"]\n"
        );
    assert!(config.contains("startup_wait"), "the edit took");
    std::fs::write(&path, config).unwrap();
    let p = Process::starting(dir.path(), &[]);
    let (mut not_ready, mut saw_starting) = (0, false);
    eventually("the server to become ready", || {
        let (code, body) = http(&p.admin, "GET", "/healthz", None, None);
        saw_starting |= code == 503 && body.contains("starting");
        let reply = udp_raw(
            p.dns,
            &with_edns(query("h.lb.example.", RecordType::A), 1232).to_vec().unwrap(),
            Duration::from_secs(2),
        )
        .expect("a reply");
        let message = hickory_proto::op::Message::from_vec(&reply).unwrap();
        match message.metadata.response_code {
            ResponseCode::ServFail => {
                assert!(reply.windows(6).any(|w| w == EDE_NOT_READY), "SERVFAIL carries EDE 14");
                assert_ne!(code, 200, "not ready while /healthz says so");
                not_ready += 1;
            }
            ResponseCode::NoError => {
                assert_eq!(addresses(&message), ["127.0.90.1"], "only the live backend, from the first answer");
            }
            other => panic!("{other:?}"),
        }
        let static_name = udp_exchange(p.dns, &query("static.lb.example.", RecordType::A)).unwrap();
        assert_eq!(addresses(&static_name), ["127.0.0.80"], "static names are answered while starting");
        code == 200
    });
    assert!(saw_starting && not_ready > 0, "the start was seen: {not_ready} SERVFAIL");
    assert_eq!(addresses(&udp_exchange(p.dns, &query("h.lb.example.", RecordType::A)).unwrap()), ["127.0.90.1"]);
    eventually("the ready line", || p.logged("ready after"));
}

#[test]
fn startup_wait_zero_answers_at_once() {
    let dir = quickstart_dir();
    let path = dir.path().join("c.toml");
    let config = std::fs::read_to_string(&path).unwrap().edit("[server]\n", "[server]\nstartup_wait = \"0s\"\n")
        + "\n[checks.web]\nport = 9\ninterval = \"5s\"\ntimeout = \"3s\"\n\n\
           [[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.90.9\"]\n";
    std::fs::write(&path, config).unwrap();
    let p = Process::starting(dir.path(), &[]);
    eventually("/healthz 200 without a verdict", || http(&p.admin, "GET", "/healthz", None, None).0 == 200);
    let reply = udp_exchange(p.dns, &query("h.lb.example.", RecordType::A)).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
}

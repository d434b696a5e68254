//! Templates (SPEC §9): services that registrations create, over real sockets and the
//! `steerdns register` binary; their caps, the names they may not take, and the
//! negative answers around them.

use crate::harness::*;
use crate::registrations::register;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Two templates: one under svc.lb.example. (TTL 15, at most 2 services and 3
/// registrations), one over the whole zone, whose names mostly clash.
pub const TEMPLATES: &str = r#"
[[templates]]
pattern = "*.svc.lb.example."
ttl = 15
max_services = 2
max_registrations_total = 3
max_registrations = 2

[[templates]]
pattern = "*.lb.example."
"#;

fn server() -> TestServer {
    TestServer::start(&format!("{}\n{TEMPLATES}", quickstart_config()))
}

fn soa_ttl(reply: &hickory_proto::op::Message) -> u32 {
    reply.authorities.iter().find(|r| r.record_type() == RecordType::SOA).expect("an SOA").ttl
}

fn services(s: &TestServer) -> Vec<(String, Option<String>)> {
    status_of(&s.admin).services.into_iter().map(|s| (s.name, s.template)).collect()
}

#[test]
fn a_registration_creates_the_service_and_the_end_of_its_lease_removes_it() {
    let s = server();
    // before: the name does not exist, its parent does (an empty non-terminal), and the
    // negative TTL is the template's 15 s, not the SOA's 300
    let before = s.ask("api.svc.lb.example.", RecordType::A);
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_ttl(&before), 15);
    let parent = s.ask("svc.lb.example.", RecordType::A);
    assert_eq!((parent.metadata.response_code, parent.answers.len()), (ResponseCode::NoError, 0));
    // below the other template's parent (the origin): its TTL, the default 30 s
    assert_eq!(soa_ttl(&parent), 30);
    assert_eq!(soa_ttl(&s.ask("lb.example.", RecordType::SRV)), 300, "the apex is below no pattern's parent");

    // killed when dropped, so a failing test leaves no registration renewing
    let backend = Server(
        std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args(["register", "api.svc.lb.example", "127.0.41.1", "--ttl", "3s", "--admin", &s.admin])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the created service to answer", || {
        addresses(&s.ask("api.svc.lb.example.", RecordType::A)) == ["127.0.41.1"]
    });
    let other = s.ask("api.svc.lb.example.", RecordType::MX);
    assert_eq!((other.metadata.response_code, other.answers.len()), (ResponseCode::NoError, 0), "NODATA, not NXDOMAIN");
    eventually("the status to show it, made by the template", || {
        services(&s).contains(&("api.svc.lb.example.".into(), Some("*.svc.lb.example.".into())))
    });
    assert_eq!(target_status(&s.admin, "api.svc.lb.example.", "127.0.41.1").origin, "registration");
    let explained = get_ok(&s.admin, "/v1/explain?name=api.svc.lb.example.&type=A");
    assert!(
        explained.contains("\"name\":\"api.svc.lb.example.\"") && explained.contains("\"origin\":\"registration\""),
        "{explained}"
    );
    // per-service series, no per-target ones
    eventually("a computed answer counted", || {
        get_ok(&s.admin, "/metrics").contains("steerdns_answers_total{service=\"api.svc.lb.example.\"")
    });
    let metrics = get_ok(&s.admin, "/metrics");
    assert!(metrics.contains("steerdns_service_targets{service=\"api.svc.lb.example.\""), "{metrics}");
    assert!(!metrics.contains("steerdns_target_up{service=\"api.svc.lb.example.\""), "{metrics}");

    // the backend dies without deregistering: the service goes when its lease ends
    drop(backend); // SIGKILL
    eventually("the service to go", || {
        s.ask("api.svc.lb.example.", RecordType::A).metadata.response_code == ResponseCode::NXDomain
    });
    eventually("the status to drop it", || !services(&s).iter().any(|(name, _)| name == "api.svc.lb.example."));
    let parent = s.ask("svc.lb.example.", RecordType::A);
    assert_eq!(parent.metadata.response_code, ResponseCode::NoError, "the parent stays");
}

#[test]
fn caps_give_429_and_names_a_service_may_not_take_give_409() {
    let s = server();
    let body = |address: &str| format!(r#"{{"address": "{address}", "ttl_seconds": 60}}"#);
    let ok = |service: &str, address: &str| {
        let (code, text) = register(&s, service, &body(address), None);
        assert_eq!(code, 200, "{service} {address}: {text}");
    };
    let refused = |service: &str, address: &str, status: u16, words: &str| {
        let (code, text) = register(&s, service, &body(address), None);
        assert_eq!(code, status, "{service} {address}: {text}");
        assert!(text.contains(words), "{service} {address}: {text}");
    };
    // SPEC §2's service-name rules, naming the record
    refused("mail.lb.example", "127.0.42.1", 409, "zone lb.example. has A records at this name");
    refused("child.lb.example", "127.0.42.1", 409, "delegation child.lb.example.");
    refused("alias.lb.example", "127.0.42.1", 409, "CNAME records");
    // a configured service wins: www takes no registrations (it has targets)
    refused("www.lb.example", "127.0.42.1", 403, "does not accept registrations");
    // * is exactly one label
    refused("a.b.svc.lb.example", "127.0.42.1", 404, "unknown service");

    ok("a.svc.lb.example", "127.0.42.1");
    ok("a.svc.lb.example", "127.0.42.2");
    refused("a.svc.lb.example", "127.0.42.3", 429, "max_registrations = 2");
    ok("b.svc.lb.example", "127.0.42.4");
    refused("b.svc.lb.example", "127.0.42.5", 429, "max_registrations_total = 3");
    refused("c.svc.lb.example", "127.0.42.6", 429, "max_services = 2");
    // a renewal is no new registration
    ok("b.svc.lb.example", "127.0.42.4");
    // b goes with its last registration, and makes room for c
    let (code, text) = http(&s.admin, "DELETE", "/v1/services/b.svc.lb.example/registrations/127.0.42.4", None, None);
    assert_eq!(code, 200, "{text}");
    eventually("b to go", || !services(&s).iter().any(|(name, _)| name == "b.svc.lb.example."));
    ok("c.svc.lb.example", "127.0.42.6");
    assert_eq!(addresses(&s.ask("c.svc.lb.example.", RecordType::A)), ["127.0.42.6"]);
    // the other template, over the zone, makes its own services where names are free
    ok("free.lb.example", "127.0.42.7");
    assert_eq!(addresses(&s.ask("free.lb.example.", RecordType::A)), ["127.0.42.7"]);
}

//! explain: the same code as real answers, traced; checked against real queries.

use crate::backend::{Backend, Mode};
use crate::harness::*;
use hickory_proto::rr::RecordType;
use steerdns::api::Explanation;

fn explain(s: &TestServer, query: &str) -> Explanation {
    let (code, body) = http(&s.admin, "GET", &format!("/v1/explain?{query}"), None, None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The A/AAAA addresses in an explanation's answer, in order.
fn explained(e: &Explanation) -> Vec<String> {
    e.answer
        .records
        .iter()
        .filter(|r| r.contains(" IN A ") || r.contains(" IN AAAA "))
        .map(|r| r.rsplit(' ').next().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn setup() -> (TestServer, Backend, Backend) {
    let up = Backend::http("127.0.50.1", 0, Mode::Status(200, "OK"));
    let port = up.addr.port();
    let down = Backend::http("127.0.50.2", port, Mode::Down);
    let config = format!(
        r#"{}
[geo]
default_region = "eu"
[regions.eu]
networks = ["10.1.0.0/16"]
fallback = ["us"]
[regions.us]
networks = ["10.2.0.0/16"]
[checks.web]
port = {port}
interval = "200ms"
timeout = "150ms"
[[services]]
name = "h.lb.example."
policy = "healthy"
check = "web"
targets = ["127.0.50.1", "127.0.50.2", "127.0.50.3"]
[[services]]
name = "f.lb.example."
policy = "failover"
check = "web"
targets = [{{ address = "127.0.50.2", priority = 1 }}, {{ address = "127.0.50.1", priority = 2 }}]
[[services]]
name = "g.lb.example."
policy = "gslb"
check = "web"
targets = [{{ address = "127.0.50.2", region = "eu" }}, {{ address = "127.0.50.1", region = "us" }}]
[[services]]
name = "w.lb.example."
order = "weighted"
max_answers = 2
targets = [{{ address = "127.0.51.1", weight = 1 }}, {{ address = "127.0.51.2", weight = 5 }}, {{ address = "127.0.51.3", weight = 0 }}]
[[services]]
name = "s.lb.example."
order = "sticky"
targets = ["127.0.52.1", "127.0.52.2", "127.0.52.3", "127.0.52.4"]
[[services]]
name = "dead.lb.example."
policy = "healthy"
check = "web"
targets = ["127.0.50.2", "127.0.50.3"]
"#,
        quickstart_config()
    );
    let s = TestServer::start(&config);
    eventually("the dead targets' probes to fail", || {
        sorted(addresses(&s.ask("h.lb.example.", RecordType::A))) == ["127.0.50.1"]
    });
    // explain reads the status snapshot, published at most every 250 ms
    eventually("the status to show them down", || {
        let status = status_of(&s.admin);
        let h = status.services.iter().find(|x| x.name == "h.lb.example.").unwrap();
        h.targets.iter().filter(|t| t.health == "down").count() == 2
    });
    (s, up, down)
}

#[test]
fn explain_matches_real_answers_for_every_policy_and_order() {
    let (s, _up, _down) = setup();
    // healthy: a down target, with its reason
    let e = explain(&s, "name=h.lb.example&type=A");
    assert_eq!(explained(&e), addresses(&s.ask("h.lb.example.", RecordType::A)));
    let service = e.service.as_ref().unwrap();
    assert_eq!((service.policy.as_str(), service.ttl), ("healthy", 15));
    assert!(service.ttl_note.as_ref().unwrap().contains("halved"));
    let dead = service.candidates.iter().find(|c| c.address == Some("127.0.50.2".parse().unwrap())).unwrap();
    assert_eq!((dead.health.as_deref(), dead.kept), (Some("down"), false));
    assert!(dead.why.contains("down") && dead.last_failure.as_deref() == Some("refused"), "{dead:?}");
    assert!(service.policy_steps[0].contains("1 of 3 candidates healthy"), "{:?}", service.policy_steps);
    // failover: the passed-over tier
    let e = explain(&s, "name=f.lb.example");
    assert_eq!(explained(&e), ["127.0.50.1"]);
    let steps = &e.service.as_ref().unwrap().policy_steps;
    assert!(steps[0].contains("priority 1: 0 of 1 healthy, passed over") && steps[1].contains("answered"), "{steps:?}");
    // gslb: the client's region by ECS, passed over, its fallback answers
    let e = explain(&s, "name=g.lb.example&client=10.1.2.0/24");
    let real = s.udp(&with_ecs(query("g.lb.example.", RecordType::A), "10.1.2.0/24"));
    assert_eq!(explained(&e), addresses(&real));
    let service = e.service.as_ref().unwrap();
    let region = service.region.as_ref().unwrap();
    assert_eq!((region.name.as_str(), region.decided_by.as_str(), region.scope), ("eu", "network 10.1.0.0/16", 16));
    assert!(service.policy_steps[0].contains("region eu (the client's region): 0 of 1 healthy, passed over"));
    assert!(service.policy_steps[1].contains("region us") && service.policy_steps[1].contains("answered"));
    assert_eq!(e.answer.ecs_scope, ecs_of(&real).map(|x| x.2));
    // fail-open
    let e = explain(&s, "name=dead.lb.example");
    assert!(e.service.as_ref().unwrap().fail_open);
    assert_eq!(sorted(explained(&e)), sorted(addresses(&s.ask("dead.lb.example.", RecordType::A))));
    // weighted: the same set as real answers, the weight-0 target left out
    let e = explain(&s, "name=w.lb.example");
    assert_eq!(sorted(explained(&e)), ["127.0.51.1", "127.0.51.2"]);
    assert_eq!(sorted(addresses(&s.ask("w.lb.example.", RecordType::A))), ["127.0.51.1", "127.0.51.2"]);
    assert!(e.service.as_ref().unwrap().policy_steps.iter().any(|p| p.contains("weight 0")));
    // sticky: exactly the real answer for the same client subnet
    for subnet in ["10.9.1.0/24", "10.9.2.0/24", "10.9.3.0/24", "192.0.2.0/24"] {
        let e = explain(&s, &format!("name=s.lb.example&client={subnet}"));
        let real = s.udp(&with_ecs(query("s.lb.example.", RecordType::A), subnet));
        assert_eq!(explained(&e), addresses(&real), "{subnet}");
        assert_eq!(e.answer.ecs_scope, Some(24));
    }
    // round-robin: the same set, and explaining does not move the rotation
    let before = addresses(&s.ask("www.lb.example.", RecordType::A));
    let e = explain(&s, "name=www.lb.example");
    assert_eq!(sorted(explained(&e)), sorted(before.clone()));
    let mut next = before;
    next.rotate_left(1);
    assert_eq!(addresses(&s.ask("www.lb.example.", RecordType::A)), next, "explain moved the rotation");
}

#[test]
fn explain_a_drain_a_cname_and_names_outside_our_zones() {
    let (s, _up, _down) = setup();
    let path = "/v1/services/www.lb.example/targets/127.0.0.11/state";
    assert_eq!(http(&s.admin, "PUT", path, Some("{\"state\": \"drain\"}"), None).0, 200);
    // explain reads the status snapshot, published at most every 250 ms
    let drained = |e: &Explanation| {
        let candidates = &e.service.as_ref().unwrap().candidates;
        candidates
            .iter()
            .any(|c| c.address == Some("127.0.0.11".parse().unwrap()) && c.admin.as_deref() == Some("drain"))
    };
    eventually("explain to show the drain", || drained(&explain(&s, "name=www.lb.example")));
    let e = explain(&s, "name=alias.lb.example");
    assert!(e.steps.iter().any(|x| x == "alias.lb.example. CNAME www.lb.example."), "{:?}", e.steps);
    assert!(e.steps.iter().any(|x| x.contains("www.lb.example. is a service")));
    let drained = e
        .service
        .as_ref()
        .unwrap()
        .candidates
        .iter()
        .find(|c| c.address == Some("127.0.0.11".parse().unwrap()))
        .unwrap();
    assert!(drained.why.contains("drained") && drained.admin.as_deref() == Some("drain"), "{drained:?}");
    assert_eq!(sorted(explained(&e)), ["127.0.0.10", "127.0.0.12"]);
    let e = explain(&s, "name=example.org&type=AAAA");
    assert_eq!(e.answer.rcode, "REFUSED");
    assert!(e.steps[0].contains("in no configured zone"));
    for (query, field) in [
        ("name=www.lb.example&type=BOGUS", "type"),
        ("name=www.lb.example&client=10.1.2.0/40", "client"),
        ("type=A", "name"),
        ("name=www.lb.example&source=x", "source"),
    ] {
        let (code, body) = http(&s.admin, "GET", &format!("/v1/explain?{query}"), None, None);
        assert!(code == 400 && body.contains(field), "{query}: {code} {body}");
    }
}

#[test]
fn the_cli_prints_an_account_a_person_reads() {
    let (s, _up, _down) = setup();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args(args)
            .env("STEERDNS_ADMIN", &s.admin)
            .output()
            .unwrap()
    };
    let out = cli(&["explain", "g.lb.example", "--client", "10.1.2.0/24"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for words in [
        "service g.lb.example.",
        "region eu, decided by network 10.1.0.0/16",
        "passed over",
        "answer: NOERROR",
        "127.0.50.1",
    ] {
        assert!(text.contains(words), "{words} in:\n{text}");
    }
    let out = cli(&["explain", "g.lb.example", "--json"]);
    let _: Explanation = serde_json::from_slice(&out.stdout).unwrap();
}

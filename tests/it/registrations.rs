//! Registrations: leases through the API, probed and answered like configured targets.

use crate::backend::{Backend, Mode};
use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::time::Duration;

pub fn register(s: &TestServer, service: &str, body: &str, token: Option<&str>) -> (u16, String) {
    http(&s.admin, "POST", &format!("/v1/services/{service}/registrations"), Some(body), token)
}

pub fn sorted(s: &TestServer, name: &str) -> Vec<String> {
    let mut got = addresses(&s.ask(name, RecordType::A));
    got.sort();
    got
}

fn rebuilds(s: &TestServer) -> String {
    let text = get_ok(&s.admin, "/metrics");
    text.lines().find(|l| l.starts_with("steerdns_view_rebuilds_total")).unwrap().to_string()
}

fn config(extra: &str) -> String {
    with_store(extra, "")
}

/// The quickstart and the service r.lb.example. with `extra` keys, and `store` (a
/// [store] table; empty for the default file store).
pub fn with_store(extra: &str, store: &str) -> String {
    format!(
        "{}\n[[services]]\nname = \"r.lb.example.\"\nmax_registrations = 2\naccept_registrations = true\nttl = 20\n{extra}targets = [\"127.0.60.1\"]\n\n{store}",
        quickstart_config()
    )
}

#[test]
fn register_renew_update_deregister_and_the_errors() {
    lifecycle(&TestServer::start(&config("")));
}

/// Registration, renewal, update, deregistration and every refusal, against `s`
/// (serving `with_store("", …)`).
pub fn lifecycle(s: &TestServer) {
    let (code, body) = register(s, "R.LB.EXAMPLE", r#"{"address": "127.0.60.2", "ttl_seconds": 30}"#, None);
    assert_eq!(code, 200, "{body}");
    let reply: steerdns::api::RegistrationReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.service_ttl, 20);
    assert_eq!(sorted(s, "r.lb.example."), ["127.0.60.1", "127.0.60.2"]);
    let target = target_status(&s.admin, "r.lb.example.", "127.0.60.2");
    assert_eq!(target.origin, "registration");
    assert!(target.expires_at.unwrap() > reply.expires_at - 1.0);
    let explained: steerdns::api::Explanation =
        serde_json::from_str(&http(&s.admin, "GET", "/v1/explain?name=r.lb.example&type=A", None, None).1).unwrap();
    let leases: Vec<_> = explained
        .service
        .unwrap()
        .candidates
        .iter()
        .map(|c| (c.address.unwrap().to_string(), c.origin.clone().unwrap(), c.expires_at.is_some()))
        .collect();
    assert_eq!(
        leases,
        [("127.0.60.1".into(), "config".into(), false), ("127.0.60.2".into(), "registration".into(), true)]
    );
    // a renewal that changes nothing does not rebuild the View; an update does
    let before = rebuilds(s);
    assert_eq!(register(s, "r.lb.example", r#"{"address": "127.0.60.2", "ttl_seconds": 30}"#, None).0, 200);
    assert_eq!(rebuilds(s), before);
    assert_eq!(
        register(s, "r.lb.example", r#"{"address": "127.0.60.2", "ttl_seconds": 30, "weight": 0}"#, None).0,
        200
    );
    assert_ne!(rebuilds(s), before);
    assert_eq!(sorted(s, "r.lb.example."), ["127.0.60.1"], "weight 0 with a positive weight left");
    let cases = [
        ("r.lb.example", r#"{"address": "127.0.60.1", "ttl_seconds": 30}"#, 409, "configured"),
        ("r.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 2}"#, 400, "ttl_seconds"),
        ("r.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 86401}"#, 400, "ttl_seconds"),
        ("r.lb.example", r#"{"address": "224.0.0.1", "ttl_seconds": 30}"#, 400, "unicast"),
        ("r.lb.example", r#"{"address": "not-ip", "ttl_seconds": 30}"#, 400, "body"),
        ("r.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 30, "region": "mars"}"#, 400, "region"),
        ("nope.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 30}"#, 404, "unknown service"),
    ];
    for (service, body, code, words) in cases {
        let (got, text) = register(s, service, body, None);
        assert!(got == code && text.contains(words), "{body}: {got} {text}");
    }
    assert_eq!(register(s, "r.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 30}"#, None).0, 200);
    let (code, text) = register(s, "r.lb.example", r#"{"address": "127.0.60.4", "ttl_seconds": 30}"#, None);
    assert!(code == 429 && text.contains("max_registrations"), "{code} {text}");
    assert_eq!(http(&s.admin, "DELETE", "/v1/services/r.lb.example/registrations/127.0.60.3", None, None).0, 200);
    assert_eq!(http(&s.admin, "DELETE", "/v1/services/r.lb.example/registrations/127.0.60.3", None, None).0, 404);
    assert!(!sorted(s, "r.lb.example.").contains(&"127.0.60.3".to_string()));
}

#[test]
fn an_expired_lease_leaves_the_answers() {
    expiry(&TestServer::start(&config("")));
}

/// A 3 s lease that is not renewed leaves the answers of `s` (serving `with_store("", …)`).
pub fn expiry(s: &TestServer) {
    assert_eq!(register(s, "r.lb.example", r#"{"address": "127.0.60.9", "ttl_seconds": 3}"#, None).0, 200);
    assert_eq!(sorted(s, "r.lb.example."), ["127.0.60.1", "127.0.60.9"]);
    eventually("the lease to expire", || sorted(s, "r.lb.example.").len() != 2);
    assert_eq!(sorted(s, "r.lb.example."), ["127.0.60.1"]);
}

#[test]
fn registered_targets_are_probed_and_gslb_needs_a_region() {
    let up = Backend::http("127.0.61.1", 0, Mode::Status(200, "OK"));
    let port = up.addr.port();
    let extra = "policy = \"healthy\"\ncheck = \"web\"\n";
    let text = config(extra)
        .edit(
            "[[services]]\nname = \"r.lb",
            &format!(
                "[checks.web]\nport = {port}\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n[[services]]\nname = \"r.lb"
            ),
        )
        .edit("\"127.0.60.1\"]", "\"127.0.61.1\"]");
    let s = TestServer::start(&text);
    assert_eq!(register(&s, "r.lb.example", r#"{"address": "127.0.61.2", "ttl_seconds": 60}"#, None).0, 200);
    eventually("the registered target without a backend to be probed down", || {
        sorted(&s, "r.lb.example.") == ["127.0.61.1"]
    });
}

#[test]
fn the_registration_token_opens_only_the_registration_routes() {
    tokens(&TestServer::with_files(&tokens_config(""), &token_files()));
}

pub fn tokens_config(store: &str) -> String {
    with_store("", store).edit("[server]", "[server]\nadmin_token_file = \"admin\"\nregistration_token_file = \"reg\"")
}

pub fn token_files() -> [(&'static str, &'static str); 3] {
    [("lb.example.zone", ZONE), ("admin", "a-token"), ("reg", "r-token")]
}

/// The registration token opens only the registration routes of `s` (serving
/// `tokens_config(…)` with `token_files()`).
pub fn tokens(s: &TestServer) {
    let body = r#"{"address": "127.0.60.5", "ttl_seconds": 30}"#;
    assert_eq!(register(s, "r.lb.example", body, None).0, 401);
    assert_eq!(register(s, "r.lb.example", body, Some("wrong")).0, 401);
    assert_eq!(register(s, "r.lb.example", body, Some("r-token")).0, 200);
    assert_eq!(register(s, "r.lb.example", body, Some("a-token")).0, 200);
    let path = "/v1/services/r.lb.example/targets/127.0.60.1/state";
    assert_eq!(http(&s.admin, "PUT", path, Some(r#"{"state": "drain"}"#), Some("r-token")).0, 401);
    assert_eq!(http(&s.admin, "POST", "/v1/reload", None, Some("r-token")).0, 401);
}

#[test]
fn steerdns_register_renews_through_the_first_admin_that_answers_and_leaves_on_sigterm() {
    let dir = quickstart_dir();
    let (_server, dns, admin) = spawn(dir.path());
    let ask = || every_answer(dns);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["register", "api.lb.example", "127.0.70.1", "--ttl", "3s", "--linger", "300ms"])
        .args(["--admin", "http://127.0.0.1:1", "--admin", &admin])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let answered = |got: Vec<String>| got.contains(&"127.0.70.1".to_string());
    eventually("registered through the second admin URL", || answered(ask()));
    // well past the 3 s lease: renewals keep it
    std::thread::sleep(Duration::from_secs(5));
    assert!(answered(ask()), "renewed");
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    assert!(!answered(ask()), "deregistered before it exited");
    // one line, at the first registration
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.starts_with("registered 127.0.70.1 in api.lb.example: a lease of 3s, renewed every 1s"), "{said}");
}

#[test]
fn a_lease_comes_back_after_kill_minus_9_with_its_remaining_time() {
    let dir = quickstart_dir();
    let (server, _, admin) = spawn(dir.path());
    let path = "/v1/services/api.lb.example/registrations";
    assert_eq!(http(&admin, "POST", path, Some(r#"{"address": "127.0.70.2", "ttl_seconds": 120}"#), None).0, 200);
    // let the tick write nothing new: the registration itself was stored before the reply
    drop(server); // SIGKILL
    let (_server, dns, admin) = spawn(dir.path());
    let got = every_answer(dns);
    assert!(got.contains(&"127.0.70.2".to_string()), "{got:?}");
    let target = target_status(&admin, "api.lb.example.", "127.0.70.2");
    let left = target.expires_at.unwrap()
        - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(left > 60.0 && left <= 120.0, "remaining lease {left}");
}

/// Every address api.lb.example answers over eight queries (it answers 2 at a time and
/// rotates by one position per query, so eight queries cover its five targets).
fn every_answer(dns: std::net::SocketAddr) -> Vec<String> {
    let mut got: Vec<String> =
        (0..8).flat_map(|_| addresses(&udp_exchange(dns, &query("api.lb.example.", RecordType::A)).unwrap())).collect();
    got.sort();
    got.dedup();
    got
}

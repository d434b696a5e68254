//! Health checks end to end: real HTTP(S) and TCP backends on 127.0.0.x, the server
//! queried over UDP, every change awaited by polling against a generous deadline.

use crate::backend::{Backend, Mode, https};
use crate::harness::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const FAST: &str = "interval = \"200ms\"\ntimeout = \"150ms\"\nrise = 2\nfall = 2\n";

/// The quickstart plus `rest` (checks and services).
fn config(rest: &str) -> String {
    format!("{}\n{rest}\n", quickstart_config())
}

fn http_check(name: &str, port: u16, extra: &str) -> String {
    format!("[checks.{name}]\nkind = \"http\"\nport = {port}\npath = \"/health\"\n{FAST}{extra}\n")
}

/// The sorted addresses of `name`'s A answer, and its TTL.
fn answer(s: &TestServer, name: &str) -> (Vec<String>, u32) {
    let r = s.ask(name, RecordType::A);
    let mut got = addresses(&r);
    got.sort();
    (got, r.answers.first().map_or(0, |a| a.ttl))
}

fn ips(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

#[test]
fn a_dead_backend_leaves_the_answers_and_returns_after_rise_passes() {
    let a = Backend::http("127.0.10.1", 0, Mode::Status(200, "OK"));
    let b = Backend::http("127.0.10.2", a.addr.port(), Mode::Status(200, "OK"));
    let s = TestServer::start(&config(&format!(
        "{}[[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.10.1\", \"127.0.10.2\"]\n",
        http_check("web", a.addr.port(), "")
    )));
    eventually("both probed", || a.hits() >= 1 && b.hits() >= 1);
    assert_eq!(answer(&s, "h.lb.example."), (ips(&["127.0.10.1", "127.0.10.2"]), 30));
    a.set(Mode::Down);
    eventually("a dropped", || answer(&s, "h.lb.example.").0 == ips(&["127.0.10.2"]));
    assert_eq!(answer(&s, "h.lb.example.").1, 15, "TTL halved while a target is down");
    let hits = a.hits();
    a.set(Mode::Status(200, "OK"));
    eventually("a back", || answer(&s, "h.lb.example.").0.len() == 2);
    assert!(a.hits() - hits >= 2, "back only after rise = 2 passes");
    assert_eq!(answer(&s, "h.lb.example.").1, 30, "full TTL again");
}

#[test]
fn the_first_probe_decides_at_once_and_one_failure_below_fall_keeps_a_target() {
    let bad = Backend::http("127.0.11.1", 0, Mode::Status(500, ""));
    let good = Backend::http("127.0.11.2", bad.addr.port(), Mode::Status(200, "OK"));
    // a 1 s interval and fall = 5: dropped at the first probe or the fifth, 4 s apart,
    // so how fast this test notices cannot blur the two
    let check = format!(
        "[checks.web]\nkind = \"http\"\nport = {}\ninterval = \"1s\"\ntimeout = \"500ms\"\nrise = 5\nfall = 5\n",
        bad.addr.port()
    );
    let s = TestServer::start(&config(&format!(
        "{check}[[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.11.1\", \"127.0.11.2\"]\n"
    )));
    eventually("bad dropped", || answer(&s, "h.lb.example.").0 == ips(&["127.0.11.2"]));
    assert!(bad.hits() < 5, "dropped by its first probe, not after fall = 5 ({} probes)", bad.hits());
    // one failure (below fall) must not drop the good one; inject it only once the
    // good one's first probe (which decides at once) has passed
    eventually("good probed twice", || good.hits() >= 2);
    let before = good.hits();
    good.fail_next(1);
    eventually("the failure and probes after it", || good.hits() >= before + 3);
    assert_eq!(answer(&s, "h.lb.example.").0, ips(&["127.0.11.2"]));
}

#[test]
fn status_body_redirect_timeout_and_garbage_rules() {
    let cases = [
        ("127.0.12.1", Mode::Status(200, "all OK here"), true),
        ("127.0.12.2", Mode::Status(500, "OK"), false),
        ("127.0.12.3", Mode::Status(200, "nope"), false),
        ("127.0.12.4", Mode::Redirect, false),
        ("127.0.12.5", Mode::Hang, false),
        ("127.0.12.6", Mode::Garbage, false),
        ("127.0.12.7", Mode::Endless, false),
        ("127.0.12.8", Mode::NeverCloses, false),
    ];
    let first = Backend::http(cases[0].0, 0, cases[0].1.clone());
    let port = first.addr.port();
    let mut backends = vec![first];
    backends.extend(cases[1..].iter().map(|(ip, mode, _)| Backend::http(ip, port, mode.clone())));
    let targets: Vec<String> = cases.iter().map(|c| format!("\"{}\"", c.0)).collect();
    let s = TestServer::start(&config(&format!(
        "{}{}[[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [{}]\n\
         [[services]]\nname = \"r.lb.example.\"\npolicy = \"healthy\"\ncheck = \"moved\"\ntargets = [\"127.0.12.4\", \"127.0.12.2\"]\n",
        http_check("web", port, "expect_body = \"OK\""),
        http_check("moved", port, "expect_status = [301, 302]"),
        targets.join(", ")
    )));
    eventually("only the good one", || answer(&s, "h.lb.example.").0 == ips(&["127.0.12.1"]));
    eventually("a 302 that is expected passes", || answer(&s, "r.lb.example.").0 == ips(&["127.0.12.4"]));
    let request = backends[0].last_request().to_ascii_lowercase();
    assert!(request.starts_with("get /health http/1.1\r\n"), "{request}");
    for header in [format!("host: 127.0.12.1:{port}"), "user-agent: steerdns/".into(), "connection: close".into()] {
        assert!(request.contains(&header), "{header} in {request}");
    }
    assert_eq!(backends[3].last_request().matches("GET /elsewhere").count(), 0, "redirects are not followed");
    // the server keeps answering with hanging, endless and never-closing backends around
    assert_eq!(addresses(&s.ask("static.lb.example.", RecordType::A)), ["127.0.0.80"]);
}

/// The probe reads at most 16 KiB of response head and four informational responses:
/// a backend past either fails at once, with the reason, and one that sends `100
/// Continue` without end costs one failed probe, not a core. Chunked bodies are read.
#[test]
fn probes_cap_the_head_and_the_informational_responses() {
    let cases = [
        ("127.0.13.1", Mode::Informational(4), true),
        ("127.0.13.2", Mode::Chunked("all OK here"), true),
        ("127.0.13.3", Mode::Informational(5), false),
        ("127.0.13.4", Mode::Informational(usize::MAX), false),
        ("127.0.13.5", Mode::HugeHead, false),
        ("127.0.13.6", Mode::Chunked("nope"), false),
    ];
    let first = Backend::http(cases[0].0, 0, cases[0].1.clone());
    let port = first.addr.port();
    let mut backends = vec![first];
    backends.extend(cases[1..].iter().map(|(ip, mode, _)| Backend::http(ip, port, mode.clone())));
    let targets: Vec<String> = cases.iter().map(|c| format!("\"{}\"", c.0)).collect();
    // the first probe decides (SPEC §6), and a timeout of 10 s: a failure seen before it
    // is no timeout
    let s = TestServer::start(&config(&format!(
        "[checks.web]\nkind = \"http\"\nport = {port}\npath = \"/health\"\nexpect_body = \"OK\"\n\
         interval = \"20s\"\ntimeout = \"10s\"\nrise = 1\nfall = 1\n\
         [[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [{}]\n",
        targets.join(", ")
    )));
    let passing: Vec<&str> = cases.iter().filter(|c| c.2).map(|c| c.0).collect();
    eventually("only the two within the limits", || answer(&s, "h.lb.example.").0 == ips(&passing));
    let reason = |address: &str| {
        let status = status_of(&s.admin);
        let service = status.services.iter().find(|x| x.name == "h.lb.example.").unwrap();
        let target = service.targets.iter().find(|t| t.address.to_string() == address).unwrap();
        target.last_probe.as_ref().map(|p| p.reason.clone()).unwrap_or_default()
    };
    eventually("the reasons", || {
        reason("127.0.13.3") == "more than 4 informational responses"
            && reason("127.0.13.4") == "more than 4 informational responses"
            && reason("127.0.13.5") == "response head over 16 KiB"
            && reason("127.0.13.6") == "status 200, body mismatch"
    });
}

#[test]
fn probes_come_from_probe_source() {
    let web = Backend::http("127.0.13.20", 0, Mode::Status(200, "OK"));
    let agent = crate::backend::Agent::start("127.0.13.21", 0, "up");
    let text = format!(
        "{}[checks.agent]\nkind = \"agent\"\nport = {}\n{FAST}\n[health]\nprobe_source = \"127.0.13.77\"\n\
         [[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.13.20\"]\n\
         [[services]]\nname = \"a.lb.example.\"\npolicy = \"healthy\"\ncheck = \"agent\"\ntargets = [\"127.0.13.21\", \"::1\"]\n",
        http_check("web", web.addr.port(), ""),
        agent.addr.port()
    );
    let s = TestServer::start(&config(&text));
    eventually("an HTTP probe", || web.hits() >= 1);
    assert_eq!(web.last_peer().unwrap().ip().to_string(), "127.0.13.77");
    eventually("an agent probe", || target_status(&s.admin, "a.lb.example.", "127.0.13.21").reported.is_some());
    assert_eq!(agent.last_peer().unwrap().ip().to_string(), "127.0.13.77");
    // an IPv6 target is probed from the kernel's choice: refused, not a bind error
    eventually("the IPv6 probe", || target_status(&s.admin, "a.lb.example.", "::1").last_failure.is_some());
    assert_eq!(target_status(&s.admin, "a.lb.example.", "::1").last_failure.as_deref(), Some("refused"));
}

#[test]
fn check_address_probes_one_address_and_answers_another() {
    let probe = Backend::http("127.0.13.1", 0, Mode::Status(200, "OK"));
    let s = TestServer::start(&config(&format!(
        "{}[[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\n\
         targets = [{{ address = \"127.0.13.50\", check_address = \"127.0.13.1\" }}, \"127.0.13.1\"]\n",
        http_check("web", probe.addr.port(), "")
    )));
    eventually("probed", || probe.hits() >= 2);
    assert_eq!(answer(&s, "h.lb.example.").0, ips(&["127.0.13.1", "127.0.13.50"]));
    probe.set(Mode::Down);
    // both targets depend on the one probe: all down, so the service fails open…
    eventually("all down: halved TTL", || answer(&s, "h.lb.example.").1 == 15);
    assert_eq!(answer(&s, "h.lb.example.").0.len(), 2, "fail open: every candidate");
    probe.set(Mode::Status(200, "OK"));
    eventually("back", || answer(&s, "h.lb.example.").1 == 30);
}

#[test]
fn failover_answers_the_first_live_tier_and_returns_to_the_primary() {
    let primary = Backend::http("127.0.14.1", 0, Mode::Status(200, "OK"));
    let port = primary.addr.port();
    let backup = Backend::http("127.0.14.2", port, Mode::Status(200, "OK"));
    let last = Backend::http("127.0.14.3", port, Mode::Status(200, "OK"));
    let s = TestServer::start(&config(&format!(
        "{}[[services]]\nname = \"f.lb.example.\"\npolicy = \"failover\"\ncheck = \"web\"\ntargets = [\
         {{ address = \"127.0.14.1\", priority = 1 }}, {{ address = \"127.0.14.2\", priority = 2 }}, {{ address = \"127.0.14.3\", priority = 3 }}]\n",
        http_check("web", port, "")
    )));
    eventually("probed", || primary.hits() >= 1 && backup.hits() >= 1 && last.hits() >= 1);
    assert_eq!(answer(&s, "f.lb.example."), (ips(&["127.0.14.1"]), 30));
    last.set(Mode::Down);
    eventually("last tier probed down", || target_status(&s.admin, "f.lb.example.", "127.0.14.3").health == "down");
    assert_eq!(answer(&s, "f.lb.example."), (ips(&["127.0.14.1"]), 30), "a later tier down changes nothing");
    primary.set(Mode::Down);
    eventually("backup answers", || answer(&s, "f.lb.example.") == (ips(&["127.0.14.2"]), 15));
    backup.set(Mode::Down);
    // every tier down: fail open to the priority-1 tier, not every tier
    eventually("fail open to tier 1", || answer(&s, "f.lb.example.") == (ips(&["127.0.14.1"]), 15));
    primary.set(Mode::Status(200, "OK"));
    eventually("primary again", || answer(&s, "f.lb.example.") == (ips(&["127.0.14.1"]), 30));
}

#[test]
fn all_down_fails_open_or_answers_nodata_with_the_halved_ttl() {
    let a = Backend::http("127.0.15.1", 0, Mode::Down);
    let port = a.addr.port();
    let s = TestServer::start(&config(&format!(
        "{}[[services]]\nname = \"open.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.15.1\", \"127.0.15.2\"]\n\
         [[services]]\nname = \"closed.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\nwhen_all_down = \"none\"\ntargets = [\"127.0.15.1\", \"127.0.15.2\"]\n",
        http_check("web", port, "")
    )));
    eventually("all down: open answers every target at half TTL", || {
        answer(&s, "open.lb.example.") == (ips(&["127.0.15.1", "127.0.15.2"]), 15)
    });
    eventually("closed answers NODATA", || s.ask("closed.lb.example.", RecordType::A).answers.is_empty());
    let r = s.ask("closed.lb.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.authorities[0].ttl, 15, "the SOA TTL capped at the service's current (halved) TTL");
}

#[test]
fn https_with_and_without_certificate_verification() {
    let addr = https("127.0.16.1", "backend.test");
    let port = addr.port();
    let s = TestServer::start(&config(&format!(
        "[checks.lax]\nkind = \"https\"\nport = {port}\nhost = \"backend.test\"\ntls_verify = false\n{FAST}\n\
         [checks.strict]\nkind = \"https\"\nport = {port}\nhost = \"backend.test\"\n{FAST}\n\
         [[services]]\nname = \"lax.lb.example.\"\npolicy = \"healthy\"\ncheck = \"lax\"\ntargets = [\"127.0.16.1\", \"127.0.16.9\"]\n\
         [[services]]\nname = \"strict.lb.example.\"\npolicy = \"healthy\"\ncheck = \"strict\"\ntargets = [\"127.0.16.1\", \"127.0.16.9\"]\n"
    )));
    // 127.0.16.9 has no backend: it goes down in both, so each answer shows its probe
    eventually("lax: the self-signed backend passes", || answer(&s, "lax.lb.example.").0 == ips(&["127.0.16.1"]));
    eventually("strict: it fails verification, all down", || answer(&s, "strict.lb.example.").1 == 15);
    assert_eq!(answer(&s, "strict.lb.example.").0.len(), 2, "fail open: both");
}

#[test]
fn tcp_checks_pass_on_a_completed_connect() {
    let listener = std::net::TcpListener::bind("127.0.17.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = TestServer::start(&config(&format!(
        "[checks.port]\nkind = \"tcp\"\nport = {port}\n{FAST}\n\
         [[services]]\nname = \"t.lb.example.\"\npolicy = \"healthy\"\ncheck = \"port\"\ntargets = [\"127.0.17.1\", \"127.0.17.2\"]\n"
    )));
    eventually("the closed port drops", || answer(&s, "t.lb.example.").0 == ips(&["127.0.17.1"]));
    drop(listener);
    eventually("both down: fail open", || answer(&s, "t.lb.example.").1 == 15);
}

#[test]
fn a_reload_keeps_the_verdicts_of_unchanged_probes_and_restarts_changed_ones() {
    let a = Backend::http("127.0.18.1", 0, Mode::Down);
    let port = a.addr.port();
    let slow = format!("[checks.web]\nkind = \"http\"\nport = {port}\ninterval = \"30s\"\ntimeout = \"1s\"\n");
    let service = |ttl: u32| {
        format!(
            "[[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\nttl = {ttl}\ntargets = [\"127.0.18.1\", \"127.0.18.2\"]\n"
        )
    };
    let _b = Backend::http("127.0.18.2", port, Mode::Status(200, "OK"));
    let s = TestServer::start(&config(&format!("{slow}{}", service(30))));
    eventually("a down after its first probe", || answer(&s, "h.lb.example.").0 == ips(&["127.0.18.2"]));
    // unchanged probe: the verdict survives (the next probe is 30 s away)
    s.reload(&config(&format!("{slow}{}", service(40)))).unwrap();
    assert_eq!(answer(&s, "h.lb.example."), (ips(&["127.0.18.2"]), 20));
    // changed check: the probe restarts at unknown, which counts as healthy
    a.set(Mode::Status(200, "OK"));
    s.reload(&config(&format!("{}{}", slow.edit("timeout = \"1s\"", "timeout = \"2s\""), service(40)))).unwrap();
    assert_eq!(answer(&s, "h.lb.example.").0, ips(&["127.0.18.1", "127.0.18.2"]));
}

#[test]
fn a_reload_that_changes_listen_or_store_is_refused() {
    let s = TestServer::quickstart();
    let moved = quickstart_config().edit("127.0.0.1:5353", "127.0.0.1:5354");
    let e = s.reload(&moved).unwrap_err();
    assert!(e.to_string().contains("server.listen") && e.to_string().contains("needs a restart"), "{e}");
    assert_eq!(addresses(&s.ask("static.lb.example.", RecordType::A)), ["127.0.0.80"]);
}

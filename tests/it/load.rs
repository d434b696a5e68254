//! Load reports (SPEC §9) over real sockets: agents on TCP and `agent_header` on HTTP
//! steering weighted and sticky answers, drains reported by backends, down at once,
//! and bad replies as failed probes.

use crate::backend::{Agent, Backend, Mode, Reply};
use crate::harness::*;
use hickory_proto::rr::RecordType;

/// Two agents on 127.0.30.1 and .2 (one port), and a server whose service `l` of
/// `order` over both (weights 1 and 3) is probed with kind = "agent" every 200 ms.
fn agents(order: &str, extra_check: &str) -> (Agent, Agent, TestServer) {
    let a = Agent::start("127.0.30.1", 0, "up 100%");
    let b = Agent::start("127.0.30.2", a.addr.port(), "up");
    let s = TestServer::start(&format!(
        "{}\n[checks.agent]\nkind = \"agent\"\nport = {}\ninterval = \"200ms\"\ntimeout = \"150ms\"\n{extra_check}\n\n\
         [[services]]\nname = \"l.lb.example.\"\npolicy = \"healthy\"\norder = \"{order}\"\ncheck = \"agent\"\n\
         targets = [{{ address = \"127.0.30.1\", weight = 1 }}, {{ address = \"127.0.30.2\", weight = 3 }}]\n",
        quickstart_config(),
        a.addr.port()
    ));
    eventually("both agents' first reports", || {
        ["127.0.30.1", "127.0.30.2"].iter().all(|t| target_status(&s.admin, "l.lb.example.", t).reported.is_some())
    });
    (a, b, s)
}

/// How many of `n` weighted answers are 127.0.30.1.
fn share_of_first(s: &TestServer, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            let got = addresses(&s.ask("l.lb.example.", RecordType::A));
            assert_eq!(got.len(), 1, "{got:?}");
            got[0] == "127.0.30.1"
        })
        .count()
}

fn reported(s: &TestServer, address: &str) -> (Option<String>, f64, bool) {
    let t = target_status(&s.admin, "l.lb.example.", address);
    (t.reported, t.effective_weight, t.answered)
}

#[test]
fn weighted_answers_follow_the_reported_percentage_drain_and_up() {
    let (a, b, s) = agents("weighted", "");
    assert_eq!(reported(&s, "127.0.30.1"), (Some("up 100%".into()), 1.0, true));
    // weights 1 and 3: a quarter of 2,000 answers (sd about 19)
    let n = 2000;
    let first = share_of_first(&s, n);
    assert!((400..=600).contains(&first), "weights 1:3: {first} of {n}");

    // 127.0.30.2 reports 25%: 1 against 0.75, the first now gets 4/7 (sd about 22)
    b.say("up 25%");
    eventually("the 25% report", || reported(&s, "127.0.30.2").1 == 0.75);
    assert_eq!(reported(&s, "127.0.30.2"), (Some("up 25%".into()), 0.75, true));
    let first = share_of_first(&s, n);
    assert!((1000..=1300).contains(&first), "weights 1:0.75: {first} of {n}");

    // a drain reported by the backend leaves it out while another target is left
    b.say("drain");
    eventually("the drain", || !reported(&s, "127.0.30.2").2);
    assert_eq!(share_of_first(&s, 200), 200, "the drained target is never answered");
    let explained = get_ok(&s.admin, "/v1/explain?name=l.lb.example.&type=A");
    assert!(explained.contains("drained by its own load report"), "{explained}");

    // an operator's admin state wins over the report
    let (code, body) =
        http(&s.admin, "PUT", "/v1/services/l.lb.example./targets/127.0.30.2/state", Some(r#"{"state":"up"}"#), None);
    assert_eq!(code, 200, "{body}");
    eventually("admin up answering the reported drain", || reported(&s, "127.0.30.2").2);
    assert!(share_of_first(&s, 400) < 200, "admin up: full weight 3 against 1");
    let (code, body) =
        http(&s.admin, "PUT", "/v1/services/l.lb.example./targets/127.0.30.2/state", Some(r#"{"state":"auto"}"#), None);
    assert_eq!(code, 200, "{body}");
    eventually("the reported drain again", || !reported(&s, "127.0.30.2").2);

    // up: full weight again
    b.say("ready");
    eventually("the full weight", || reported(&s, "127.0.30.2") == (Some("up 100%".into()), 3.0, true));
    let first = share_of_first(&s, n);
    assert!((400..=600).contains(&first), "weights 1:3 again: {first} of {n}");
    drop(a);
}

#[test]
fn sticky_clients_follow_the_reported_weights() {
    let (_a, b, s) = agents("sticky", "");
    let networks: Vec<String> = (0..600).map(|i| format!("10.{}.{}.0/24", i / 200, i % 200)).collect();
    let share = |s: &TestServer| {
        networks
            .iter()
            .filter(|n| addresses(&s.udp(&with_ecs(query("l.lb.example.", RecordType::A), n)))[0] == "127.0.30.1")
            .count()
    };
    // 1:3 (expected 150 of 600, sd about 11); then 1:0.3 (expected 462, sd about 10)
    let before = share(&s);
    assert!((100..=200).contains(&before), "1:3: {before} of 600");
    b.say("10%");
    eventually("the 10% report", || reported(&s, "127.0.30.2").1 == 0.3);
    let after = share(&s);
    assert!((410..=510).contains(&after), "1:0.3: {after} of 600");
    // b's clients only move to a: none of a's clients went to b
    b.say("drain");
    eventually("the drain", || !reported(&s, "127.0.30.2").2);
    assert_eq!(share(&s), 600, "every client to the one target left");
}

#[test]
fn when_every_backend_reports_drain_the_drains_are_ignored() {
    let (a, b, s) = agents("weighted", "");
    let both = |s: &TestServer, report: &str| {
        reported(s, "127.0.30.1").0.as_deref() == Some(report) && reported(s, "127.0.30.2").0.as_deref() == Some(report)
    };
    // an overloaded pool beats none: both still answered, at their weights (1:3)
    a.say("drain");
    b.say("drain");
    eventually("both drains", || both(&s, "drain"));
    let first = share_of_first(&s, 400);
    assert!((50..=150).contains(&first), "{first} of 400: both answered, 1:3");
    assert!(reported(&s, "127.0.30.1").2 && reported(&s, "127.0.30.2").2);
    // 0% counts as drain: with every weight 0 they are answered alike
    a.say("0%");
    b.say("0%");
    eventually("both at 0%", || reported(&s, "127.0.30.1").1 == 0.0 && reported(&s, "127.0.30.2").1 == 0.0);
    let first = share_of_first(&s, 400);
    assert!((140..=260).contains(&first), "{first} of 400: both answered alike");
    // one coming back takes the answers alone
    a.say("up");
    eventually("a back", || reported(&s, "127.0.30.1").0.as_deref() == Some("up 100%"));
    eventually("b left out", || !reported(&s, "127.0.30.2").2);
    assert_eq!(share_of_first(&s, 100), 100);
}

#[test]
fn a_reported_down_is_down_at_once_without_fall() {
    let (a, _b, s) = agents("weighted", "fall = 100\nrise = 1");
    a.say("down # maintenance");
    eventually("down at once", || target_status(&s.admin, "l.lb.example.", "127.0.30.1").health == "down");
    let t = target_status(&s.admin, "l.lb.example.", "127.0.30.1");
    assert!(t.fails < 100, "not after fall = 100 failures: {}", t.fails);
    assert_eq!(t.reported.as_deref(), Some("down"));
    assert!(t.last_failure.as_deref().unwrap().contains("agent: down"), "{:?}", t.last_failure);
    assert_eq!(share_of_first(&s, 100), 0);
    a.say("up 50%");
    eventually("up again", || target_status(&s.admin, "l.lb.example.", "127.0.30.1").health == "up");
    assert_eq!(reported(&s, "127.0.30.1"), (Some("up 50%".into()), 0.5, true));
}

#[test]
fn garbage_overlong_slow_and_missing_replies_are_failed_probes() {
    let (a, b, s) = agents("weighted", "fall = 1\nrise = 1");
    let failure =
        |s: &TestServer| target_status(&s.admin, "l.lb.example.", "127.0.30.1").last_failure.unwrap_or_default();
    let cases: [(Reply, &str); 7] = [
        (Reply::Bytes(b"sideways\n".to_vec()), "unknown word \"sideways\""),
        (Reply::Bytes(b"150%\n".to_vec()), "outside 0–100%"),
        (Reply::Bytes(b"up \xff\xfe\n".to_vec()), "not text"),
        (Reply::Bytes(vec![b' '; 300]), "no newline within 256 bytes"),
        (Reply::Bytes(b"up 50%".to_vec()), "closed before the report's newline"),
        (Reply::Bytes(Vec::new()), "closed without a report"),
        (Reply::Hang, "timeout"),
    ];
    for (reply, reason) in cases {
        a.say("up");
        eventually("a up", || target_status(&s.admin, "l.lb.example.", "127.0.30.1").health == "up");
        a.set(reply);
        eventually(reason, || failure(&s).contains(reason));
        assert_eq!(target_status(&s.admin, "l.lb.example.", "127.0.30.1").health, "down", "{reason}");
        // the other target answers throughout
        assert_eq!(share_of_first(&s, 20), 0, "{reason}");
    }
    drop(b);
}

#[test]
fn agent_send_is_sent_before_the_reply_is_read() {
    let (a, _b, _s) = agents("weighted", "agent_send = \"status web\\n\"");
    eventually("the agent_send bytes", || a.received() == b"status web\n");
}

#[test]
fn an_http_check_reads_the_agent_header() {
    let backend = Backend::http("127.0.30.5", 0, Mode::Agent("up 100%".into()));
    let s = TestServer::start(&format!(
        "{}\n[checks.web]\nport = {}\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 1\nagent_header = \"X-Steer-Agent\"\n\n\
         [[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\norder = \"weighted\"\ncheck = \"web\"\n\
         targets = [{{ address = \"127.0.30.5\", weight = 4 }}, \"127.0.30.6\"]\n",
        quickstart_config(),
        backend.addr.port()
    ));
    let t = |s: &TestServer| target_status(&s.admin, "h.lb.example.", "127.0.30.5");
    eventually("100%", || t(&s).reported.as_deref() == Some("up 100%"));
    backend.set(Mode::Agent("UP, 25% maxconn:10".into()));
    eventually("25%", || t(&s).effective_weight == 1.0);
    let metrics = get_ok(&s.admin, "/metrics");
    let line = "steerdns_target_effective_weight{service=\"h.lb.example.\",address=\"127.0.30.5\"} 1.0";
    assert!(metrics.contains(line), "{metrics}");
    assert!(
        metrics.contains("steerdns_target_weight{service=\"h.lb.example.\",address=\"127.0.30.5\"} 4.0"),
        "{metrics}"
    );
    let state = "steerdns_target_reported_state{service=\"h.lb.example.\",address=\"127.0.30.5\",state=\"up\"} 1";
    assert!(metrics.contains(state), "{metrics}");
    let explained = get_ok(&s.admin, "/v1/explain?name=h.lb.example.&type=A");
    assert!(explained.contains("\"reported\":\"up 25%\""), "{explained}");
    backend.set(Mode::Agent("drain".into()));
    eventually("drain", || !t(&s).answered);
    assert!(get_ok(&s.admin, "/metrics").contains("service=\"h.lb.example.\",state=\"drained\"} 1"));
    backend.set(Mode::Status(200, "OK"));
    eventually("no header: a failed probe", || {
        t(&s).last_failure.unwrap_or_default().contains("no x-steer-agent header")
    });
    assert_eq!(t(&s).health, "down");
    backend.set(Mode::Agent("up".into()));
    eventually("up", || t(&s).health == "up" && t(&s).answered && t(&s).effective_weight == 4.0);
}

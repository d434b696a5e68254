//! /metrics: counters move with real queries and health changes, and the exposition
//! parses as Prometheus text.

use crate::backend::{Backend, Mode};
use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::collections::HashMap;

/// Parses the text exposition: every sample line is `name{labels} value`, every
/// comment `# HELP`/`# TYPE`, and it ends with `# EOF`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.starts_with("# UNIT ") || line == "# EOF"
        {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') && name.starts_with("steerdns_"),
            "bad metric name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "bad labels in {line}");
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

fn scrape(s: &TestServer) -> HashMap<String, f64> {
    let (code, text) = http(&s.admin, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    parse(&text)
}

#[test]
fn counters_move_with_queries_health_and_reloads() {
    let a = Backend::http("127.0.40.1", 0, Mode::Status(200, "OK"));
    let port = a.addr.port();
    let config = format!(
        "{}\n[checks.web]\nport = {port}\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 1\nrise = 1\n\
         [[services]]\nname = \"m.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.40.1\"]\n",
        quickstart_config()
    );
    let s = TestServer::start(&config);
    for _ in 0..5 {
        s.ask("m.lb.example.", RecordType::A);
    }
    s.ask("nope.lb.example.", RecordType::A);
    s.ask("example.org.", RecordType::A);
    s.tcp(&query("static.lb.example.", RecordType::A));
    let m = scrape(&s);
    assert!(m[r#"steerdns_queries_total{transport="udp",rcode="NOERROR"}"#] >= 5.0, "{m:?}");
    assert_eq!(m[r#"steerdns_queries_total{transport="udp",rcode="NXDOMAIN"}"#], 1.0);
    assert_eq!(m[r#"steerdns_queries_total{transport="udp",rcode="REFUSED"}"#], 1.0);
    assert_eq!(m[r#"steerdns_queries_total{transport="tcp",rcode="NOERROR"}"#], 1.0);
    assert_eq!(m[r#"steerdns_answers_total{service="m.lb.example.",policy="healthy"}"#], 5.0);
    assert_eq!(m[r#"steerdns_fail_open_total{service="m.lb.example."}"#], 0.0);
    // the backend dies: its target's gauge falls, a transition is counted, answers fail open
    a.set(Mode::Down);
    let mut m = scrape(&s);
    eventually("target_up to fall", || {
        m = scrape(&s);
        m.get(r#"steerdns_target_up{service="m.lb.example.",address="127.0.40.1"}"#) == Some(&0.0)
    });
    assert!(m[r#"steerdns_health_transitions_total{check="web",to="down"}"#] >= 1.0);
    assert!(m[r#"steerdns_probe_duration_seconds_count{check="web"}"#] >= 1.0);
    assert!(m["steerdns_view_rebuilds_total"] >= 2.0);
    s.ask("m.lb.example.", RecordType::A);
    assert_eq!(scrape(&s)[r#"steerdns_fail_open_total{service="m.lb.example."}"#], 1.0);
    // reloads: one good, one broken; a removed target's series go with it
    std::fs::write(s.dir().join("steerdns.toml"), quickstart_config()).unwrap();
    assert_eq!(http(&s.admin, "POST", "/v1/reload", None, None).0, 200);
    std::fs::write(s.dir().join("steerdns.toml"), "[[broken").unwrap();
    assert_eq!(http(&s.admin, "POST", "/v1/reload", None, None).0, 400);
    let mut m = scrape(&s);
    assert_eq!(m[r#"steerdns_reloads_total{result="ok"}"#], 1.0);
    assert_eq!(m[r#"steerdns_reloads_total{result="failed"}"#], 1.0);
    eventually("the target's series to leave with it", || {
        m = scrape(&s);
        !m.keys().any(|k| k.contains("127.0.40.1"))
    });
    assert_eq!(m["steerdns_store_up"], 1.0);
}

//! /metrics: counters move with real queries and health changes, and both expositions
//! pass their parsers: promtool on the text format 0.0.4, the Python client's
//! OpenMetrics parser on OpenMetrics (Debian packages prometheus and
//! python3-prometheus-client, which .ci/run installs).

use crate::backend::{Backend, Mode};
use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

/// GET /metrics with `accept`: the status, the content type and the body.
fn get_metrics(admin: &str, accept: Option<&str>) -> (u16, String, String) {
    let authority = admin.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {authority}\r\n{accept}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_string))
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// Runs `program args` with `input` on stdin: its exit code and output.
fn run_with_input(program: &str, args: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} (CI installs it: .ci/run): {e}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

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
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && (name.starts_with("steerdns_") || name.starts_with("process_")),
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
    let (code, _, text) = get_metrics(&s.admin, Some(OPENMETRICS));
    assert_eq!(code, 200);
    parse(&text)
}

#[test]
fn text_0_0_4_by_default_passes_promtool_and_openmetrics_on_request_passes_its_parser() {
    let config = format!(
        "{}\n[[services]]\nname = \"d.lb.example.\"\ntargets = [\"127.0.41.1\", \"127.0.41.2\"]\n",
        quickstart_config()
    );
    let s = TestServer::start(&config);
    let body = r#"{"state": "drain"}"#;
    let (code, reply) = http(&s.admin, "PUT", "/v1/services/d.lb.example./targets/127.0.41.2/state", Some(body), None);
    assert_eq!(code, 200, "{reply}");
    s.ask("d.lb.example.", RecordType::A);
    let (code, content_type, text) = get_metrics(&s.admin, None);
    assert_eq!((code, content_type.as_str()), (200, "text/plain; version=0.0.4; charset=utf-8"));
    let (exit, said) = run_with_input("promtool", &["check", "metrics"], &text);
    assert_eq!(exit, 0, "promtool: {said}\n{text}");
    assert!(!text.contains("# EOF") && text.contains("# TYPE steerdns_queries_total counter"), "{text}");
    let (code, content_type, text) = get_metrics(&s.admin, Some(OPENMETRICS));
    assert_eq!((code, content_type.as_str()), (200, "application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let parser = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                  print(sum(1 for _ in p(sys.stdin.read())))";
    let (exit, said) = run_with_input("/usr/bin/python3", &["-c", parser], &text);
    assert_eq!(exit, 0, "the OpenMetrics parser: {said}\n{text}");
    let m = parse(&text);
    // the drained target: not up, not answered, in state drain; the service counts it
    let target = |name: &str, address: &str| m[&format!("{name}{{service=\"d.lb.example.\",address=\"{address}\"}}")];
    assert_eq!((target("steerdns_target_up", "127.0.41.1"), target("steerdns_target_up", "127.0.41.2")), (1.0, 0.0));
    assert_eq!(target("steerdns_target_answered", "127.0.41.2"), 0.0);
    assert_eq!(target("steerdns_target_answered", "127.0.41.1"), 1.0);
    assert_eq!(m[r#"steerdns_target_admin_state{service="d.lb.example.",address="127.0.41.2",state="drain"}"#], 1.0);
    assert_eq!(m[r#"steerdns_target_admin_state{service="d.lb.example.",address="127.0.41.2",state="auto"}"#], 0.0);
    assert_eq!(m[r#"steerdns_service_targets{service="d.lb.example.",state="drained"}"#], 1.0);
    assert_eq!(m[r#"steerdns_service_targets{service="d.lb.example.",state="answered"}"#], 1.0);
    assert_eq!(m[r#"steerdns_service_failing_open{service="d.lb.example."}"#], 0.0);
    assert!(m.keys().any(|k| k.starts_with("steerdns_build_info{version=\"")), "{m:?}");
    assert!(m["process_open_fds"] > 0.0 && m["process_resident_memory_bytes"] > 0.0, "{m:?}");
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
    eventually("the service to be seen failing open", || {
        m = scrape(&s);
        m.get(r#"steerdns_service_failing_open{service="m.lb.example."}"#) == Some(&1.0)
    });
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

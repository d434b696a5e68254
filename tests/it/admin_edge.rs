//! The admin API's edge (SPEC §4, §7), over real sockets: forged and rebinding
//! requests refused without a token, scoped registrations, JSON error documents from
//! every layer, HTTP/1.1 only, idle connections closed, HTTPS, and the change log.

use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `head` (request line and headers, without the blank line) and `body` to the
/// admin API at `base`, as written; (status, body).
fn raw(base: &str, head: &str, body: &str) -> (u16, String) {
    let authority = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string())
}

/// The `error` of SPEC §4's error document.
fn reason(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    value["error"].as_str().unwrap_or_else(|| panic!("no error field: {body}")).to_string()
}

const DRAIN: &str = r#"{"state": "drain"}"#;
const STATE: &str = "/v1/services/www.lb.example/targets/127.0.0.10/state";

fn drained(s: &TestServer) -> bool {
    !addresses(&s.ask("www.lb.example.", RecordType::A)).contains(&"127.0.0.10".to_string())
}

#[test]
fn without_a_token_forged_and_rebinding_requests_are_refused() {
    let s = TestServer::start(&quickstart_config().edit("[server]", "[server]\nadmin_hosts = [\"steerdns.internal\"]"));
    let host = s.admin.trim_start_matches("http://").to_string();
    let put = |headers: &str| raw(&s.admin, &format!("PUT {STATE} HTTP/1.1\r\n{headers}"), DRAIN);
    // a web page's form post: another site, text/plain
    let forged = put(&format!("Host: {host}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain"));
    assert_eq!(forged.0, 403, "{}", forged.1);
    assert!(reason(&forged.1).contains("Origin"));
    let cross = put(&format!("Host: {host}\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/json"));
    assert_eq!(cross.0, 403, "{}", cross.1);
    // DNS rebinding: the page's own name in Host
    let rebound = put("Host: evil.example:8053\r\nContent-Type: application/json");
    assert_eq!(rebound.0, 421, "{}", rebound.1);
    assert!(reason(&rebound.1).contains("evil.example"));
    assert_eq!(raw(&s.admin, "GET /v1/status HTTP/1.1\r\nHost: evil.example", "").0, 421, "reads too");
    assert_eq!(put("Content-Type: application/json").0, 421, "no Host at all");
    // a body must be JSON
    let plain = put(&format!("Host: {host}\r\nContent-Type: text/plain"));
    assert_eq!(plain.0, 415, "{}", plain.1);
    assert!(!drained(&s), "none of these changed anything");
    // what a local tool sends is taken: an IP literal, localhost, admin_hosts
    for host in [host.as_str(), "localhost:8053", "api.localhost", "steerdns.internal", "[::1]:8053"] {
        let ok = put(&format!("Host: {host}\r\nSec-Fetch-Site: none\r\nContent-Type: application/json"));
        assert_eq!(ok.0, 200, "Host {host}: {}", ok.1);
    }
    assert!(drained(&s));
}

#[test]
fn registrations_are_scoped_by_service_token_and_network() {
    let config = format!(
        "{}\n[[services]]\nname = \"own.lb.example.\"\nregistration_token_file = \"own\"\n\
         registration_networks = [\"127.0.80.0/24\"]\n",
        quickstart_config()
            .edit("[server]", "[server]\nadmin_token_file = \"admin\"\nregistration_token_file = \"reg\"")
    );
    let files = [("lb.example.zone", ZONE), ("admin", "a-token"), ("reg", "r-token"), ("own", "o-token")];
    let s = TestServer::with_files(&config, &files);
    let register = |service: &str, address: &str, token: &str| {
        let body = format!(r#"{{"address": "{address}", "ttl_seconds": 30}}"#);
        http(&s.admin, "POST", &format!("/v1/services/{service}/registrations"), Some(&body), Some(token))
    };
    // a service's own token opens it alone; the server-wide one no longer does
    assert_eq!(register("own.lb.example", "127.0.80.1", "o-token").0, 200);
    assert_eq!(register("own.lb.example", "127.0.80.2", "r-token").0, 401);
    assert_eq!(register("empty.lb.example", "127.0.80.3", "o-token").0, 401, "another service's token");
    assert_eq!(register("empty.lb.example", "127.0.80.3", "r-token").0, 200);
    assert_eq!(register("own.lb.example", "127.0.80.4", "a-token").0, 200, "the admin token opens all");
    // deleting needs the same rights as making
    let delete =
        |token| http(&s.admin, "DELETE", "/v1/services/own.lb.example/registrations/127.0.80.1", None, Some(token));
    assert_eq!(delete("r-token").0, 401);
    assert_eq!(delete("o-token").0, 200);
    // outside its networks, for the address and for the check address
    let (code, body) = register("own.lb.example", "127.0.81.1", "o-token");
    assert_eq!(code, 403);
    assert!(reason(&body).contains("registration_networks"), "{body}");
    let body = r#"{"address": "127.0.80.5", "check_address": "169.254.169.254", "ttl_seconds": 30}"#;
    let (code, body) = http(&s.admin, "POST", "/v1/services/own.lb.example/registrations", Some(body), Some("o-token"));
    assert_eq!(code, 403);
    assert!(reason(&body).starts_with("check_address"), "{body}");
    // the default networks keep cloud metadata out
    assert_eq!(register("empty.lb.example", "169.254.169.254", "r-token").0, 403);
    // a service with configured targets is closed unless it says otherwise
    let (code, body) = register("www.lb.example", "127.0.0.20", "a-token");
    assert_eq!(code, 403);
    assert!(reason(&body).contains("accept_registrations"), "{body}");
    let got = addresses(&s.ask("www.lb.example.", RecordType::A));
    assert!(!got.contains(&"127.0.0.20".to_string()), "{got:?}");
    assert_eq!(addresses(&s.ask("own.lb.example.", RecordType::A)), ["127.0.80.4"]);
}

#[test]
fn every_error_is_a_json_document_and_only_http_1_1_is_spoken() {
    let s = TestServer::quickstart();
    let host = s.admin.trim_start_matches("http://").to_string();
    let big = format!(r#"{{"state": "drain", "pad": "{}"}}"#, "x".repeat(70 * 1024));
    let cases = [
        (format!("GET /v1/nothing HTTP/1.1\r\nHost: {host}"), String::new(), 404),
        (format!("DELETE /v1/status HTTP/1.1\r\nHost: {host}"), String::new(), 405),
        (format!("PUT {STATE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"), big, 413),
        (format!("PUT {STATE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"), "{".into(), 400),
        (format!("PUT {STATE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain"), DRAIN.into(), 415),
        (format!("GET /v1/explain HTTP/1.1\r\nHost: {host}"), String::new(), 400),
        (format!("GET /v1/status HTTP/1.0\r\nHost: {host}"), String::new(), 505),
    ];
    for (head, body, status) in cases {
        let (code, reply) = raw(&s.admin, &head, &body);
        assert_eq!(code, status, "{head}: {reply}");
        assert!(!reason(&reply).is_empty(), "{head}");
    }
    assert!(!drained(&s));
}

#[test]
fn idle_admin_connections_are_closed_and_dns_and_probes_go_on() {
    let targets = r#"[{ address = "127.0.82.1", priority = 1 }, { address = "127.0.82.2", priority = 2 }]"#;
    let (_backend, s) = crate::backend::probed_server("127.0.82.1", "failover", targets);
    let first = target_status(&s.admin, "h.lb.example.", "127.0.82.1").last_probe.unwrap().at;
    let authority = s.admin.trim_start_matches("http://").to_string();
    let start = Instant::now();
    // 2,000 connections that never send a byte, from twenty addresses
    let idle: Vec<TcpStream> = (0..2000)
        .map(|i| {
            let stream = tcp_from(&format!("127.0.83.{}", 1 + i % 20), authority.parse().unwrap());
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    // while they hold the admin API's 256 places, DNS answers from live probes
    for _ in 0..20 {
        assert_eq!(addresses(&s.ask("h.lb.example.", RecordType::A)), ["127.0.82.1"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    // the server closes the ones it took at the idle timeout
    let closed = |mut stream: &TcpStream| match stream.read(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    eventually("the first idle connections closed", || idle.iter().filter(|s| closed(s)).count() >= 256);
    assert!(start.elapsed() >= Duration::from_secs(9), "closed after {:?}, before the 10 s timeout", start.elapsed());
    drop(idle);
    // the probe kept its verdict throughout, and probed on
    let after = target_status(&s.admin, "h.lb.example.", "127.0.82.1");
    assert_eq!((after.health.as_str(), after.fails), ("up", 0), "{after:?}");
    assert!(after.last_probe.unwrap().at > first);
}

/// GET /v1/status over HTTPS, trusting `trusted` only: the response, or the error.
fn https_status(authority: &str, trusted: &rustls::pki_types::CertificateDer<'static>) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(authority)?);
    tls.write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    tls.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn the_admin_api_speaks_https_with_the_configured_certificate_and_a_reload_renews_it() {
    let certificate = || {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem(), cert.cert.der().clone())
    };
    let config = quickstart_config()
        .edit("[server]", "[server]\nadmin_tls_cert_file = \"admin.pem\"\nadmin_tls_key_file = \"admin.key\"");
    let (pem, key, old) = certificate();
    // the harness does not wait for /healthz over HTTPS: the first request here does
    let s = TestServer::with_files(&config, &[("lb.example.zone", ZONE), ("admin.pem", &pem), ("admin.key", &key)]);
    let authority = s.admin.trim_start_matches("http://").to_string();
    let response = https_status(&authority, &old).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("www.lb.example."));
    // plain HTTP on the HTTPS port gets no answer
    assert!(try_http(&s.admin, "GET", "/healthz", None, None).map_or(true, |(code, _)| code != 200));
    // a reload takes up a new certificate for new connections
    let (pem, key, new) = certificate();
    std::fs::write(s.dir().join("admin.pem"), pem).unwrap();
    std::fs::write(s.dir().join("admin.key"), key).unwrap();
    s.reload(&config).unwrap();
    assert!(https_status(&authority, &new).unwrap().starts_with("HTTP/1.1 200"));
    assert!(https_status(&authority, &old).is_err(), "the old certificate is no longer served");
}

#[test]
fn every_change_is_logged_once_with_route_client_and_token_name() {
    let dir = quickstart_dir();
    let path = dir.path().join("c.toml");
    let text = std::fs::read_to_string(&path).unwrap().edit("[server]", "[server]\nadmin_token_file = \"admin\"");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("admin"), "a-token").unwrap();
    let p = Process::start(dir.path(), &[]);
    let (code, _) = http(&p.admin, "PUT", STATE, Some(DRAIN), Some("a-token"));
    assert_eq!(code, 200);
    for _ in 0..3 {
        assert_eq!(http(&p.admin, "PUT", STATE, Some(DRAIN), Some("guess-9")).0, 401);
    }
    eventually("the change logged", || {
        p.logged(&format!("admin API: PUT {STATE} from 127.0.0.1 with the admin token: done"))
    });
    eventually("the refusal logged", || p.logged("admin API: refused PUT"));
    let lines = p.lines.lock().unwrap();
    assert_eq!(lines.iter().filter(|l| l.contains("admin API: refused")).count(), 1, "once per client and reason");
    assert!(!lines.iter().any(|l| l.contains("a-token") || l.contains("guess-9")), "never a token");
}

//! The etcd store against a real etcd, started here on a loopback address of its own
//! with a temporary data dir and killed when the test ends. It needs `etcd` on PATH
//! (Debian's etcd-server): without it these tests say so in one line and pass, except
//! under CI=true, where they fail.

use crate::harness::*;
use crate::registrations::{self, register, sorted, with_store};
use hickory_proto::rr::RecordType;
use std::io::Write as _;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running etcd; killed when dropped.
pub struct Etcd {
    pub url: String,
    args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// Client certificates for an etcd that requires them (PEM files in `dir`).
struct Tls {
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd; None when it is not installed (outside CI).
    pub fn start() -> Option<Etcd> {
        Self::launch(None)
    }

    fn launch(tls: Option<&Tls>) -> Option<Etcd> {
        if !installed() {
            return None;
        }
        use std::sync::atomic::{AtomicU8, Ordering};
        // each etcd gets a loopback address of its own, so ports never collide
        static NEXT: AtomicU8 = AtomicU8::new(1);
        let ip = format!("127.0.81.{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let port = || std::net::TcpListener::bind((ip.as_str(), 0)).unwrap().local_addr().unwrap().port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{ip}:{}", port());
        let peer = format!("http://{ip}:{}", port());
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--name",
            "t",
            "--data-dir",
            &dir.path().join("data").display().to_string(),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("t={peer}"),
            "--unsafe-no-fsync",
        ]
        .map(String::from)
        .to_vec();
        if let Some(tls) = tls {
            let file = |name: &str| tls.dir.path().join(name).display().to_string();
            args.extend(["--cert-file".into(), file("server.pem"), "--key-file".into(), file("server-key.pem")]);
            args.extend(["--client-cert-auth".into(), "--trusted-ca-file".into(), file("ca.pem")]);
        }
        let mut etcd = Etcd { url, args, child: None, dir };
        etcd.restart();
        Some(etcd)
    }

    /// Starts (again) on the same addresses and data; returns once it accepts connections.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd").args(&self.args).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.child = Some(child);
        let address = self.url.split("://").nth(1).unwrap().to_string();
        eventually(&format!("etcd never listened on {address}"), || TcpStream::connect(&address).is_ok());
    }

    /// SIGKILL: its clients see the connection drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A [store] table for steerdns on this etcd, with more keys in `extra`.
    pub fn store(&self, extra: &str) -> String {
        format!("[store]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\n{extra}", self.url)
    }

    /// Runs `f` with a client of this etcd.
    pub fn client<T>(&self, f: impl AsyncFnOnce(etcd_client::Client) -> T) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async { f(etcd_client::Client::connect([&self.url], None).await.unwrap()).await })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `etcd` runs here; says once why not (outside CI) or fails (under CI=true).
fn installed() -> bool {
    let found = Command::new("etcd").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true, but `etcd` is not on PATH: install Debian's etcd-server");
        }
        static SAID: std::sync::Once = std::sync::Once::new();
        // written past the test harness's capture, so the skip is seen
        SAID.call_once(|| {
            let line = "etcd tests SKIPPED: `etcd` is not on PATH (apt install etcd-server; CI=true fails instead)\n";
            let _ = std::io::stderr().write_all(line.as_bytes());
        });
    }
    found
}

/// A steerdns on `store` (its [store] table), once it has read the store.
fn node(store: &str) -> TestServer {
    ready(TestServer::start(&with_store("", store)))
}

fn ready(s: TestServer) -> TestServer {
    // /metrics needs no token, so this serves configs with tokens too
    eventually("steerdns to read etcd", || get_ok(&s.admin, "/metrics").lines().any(|l| l == "steerdns_store_up 1"));
    s
}

fn drain(s: &TestServer, address: &str) -> (u16, String) {
    let path = format!("/v1/services/www.lb.example/targets/{address}/state");
    http(&s.admin, "PUT", &path, Some(r#"{"state": "drain"}"#), None)
}

#[test]
fn registration_renewal_update_and_refusals_with_etcd() {
    let Some(etcd) = Etcd::start() else { return };
    registrations::lifecycle(&node(&etcd.store("")));
}

#[test]
fn an_etcd_lease_that_is_not_renewed_leaves_the_answers() {
    let Some(etcd) = Etcd::start() else { return };
    registrations::expiry(&node(&etcd.store("")));
}

#[test]
fn the_registration_token_with_etcd() {
    let Some(etcd) = Etcd::start() else { return };
    let config = registrations::tokens_config(&etcd.store(""));
    registrations::tokens(&ready(TestServer::with_files(&config, &registrations::token_files())));
}

#[test]
fn two_nodes_share_registrations_and_drains() {
    let Some(etcd) = Etcd::start() else { return };
    let (a, b) = (node(&etcd.store("")), node(&etcd.store("")));
    let body = r#"{"address": "127.0.60.2", "ttl_seconds": 30}"#;
    assert_eq!(register(&a, "r.lb.example", body, None).0, 200);
    eventually("B to answer A's registration", || sorted(&b, "r.lb.example.").contains(&"127.0.60.2".into()));
    assert_eq!(target_status(&b.admin, "r.lb.example.", "127.0.60.2").origin, "registration");
    // B renews A's lease (a backend renews through whichever node answers)
    assert_eq!(register(&b, "r.lb.example", body, None).0, 200);
    assert_eq!(drain(&b, "127.0.0.10").0, 200);
    eventually("A to leave out the target drained on B", || {
        !sorted(&a, "www.lb.example.").contains(&"127.0.0.10".into())
    });
    let path = "/v1/services/r.lb.example/registrations/127.0.60.2";
    assert_eq!(http(&b.admin, "DELETE", path, None, None).0, 200);
    eventually("A to drop the registration B removed", || sorted(&a, "r.lb.example.") == ["127.0.60.1"]);
}

#[test]
fn steerdns_register_keeps_its_lease_through_the_second_node_when_the_first_stops() {
    let Some(etcd) = Etcd::start() else { return };
    let (a, b) = (node(&etcd.store("")), node(&etcd.store("")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .args(["register", "r.lb.example", "127.0.60.4", "--ttl", "3s", "--linger", "100ms"])
        .args(["--admin", &a.admin, "--admin", &b.admin])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let answered = |s: &TestServer| sorted(s, "r.lb.example.").contains(&"127.0.60.4".into());
    eventually("B to answer the registration made through A", || answered(&b));
    drop(a);
    // well past the 3 s lease: renewed through B
    std::thread::sleep(Duration::from_secs(5));
    assert!(answered(&b), "renewed through B");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!answered(&b), "deregistered through B before it exited");
}

#[test]
fn without_etcd_both_nodes_keep_answering_and_refuse_changes_then_catch_up() {
    let Some(mut etcd) = Etcd::start() else { return };
    let (a, b) = (node(&etcd.store("")), node(&etcd.store("")));
    assert_eq!(register(&a, "r.lb.example", r#"{"address": "127.0.60.2", "ttl_seconds": 30}"#, None).0, 200);
    assert_eq!(drain(&a, "127.0.0.10").0, 200);
    eventually("B to see A's changes", || {
        sorted(&b, "r.lb.example.").len() == 2 && !sorted(&b, "www.lb.example.").contains(&"127.0.0.10".into())
    });
    etcd.kill();
    for s in [&a, &b] {
        eventually("the node to notice", || !status_of(&s.admin).store.up);
        let metrics = get_ok(&s.admin, "/metrics");
        assert!(metrics.lines().any(|l| l == "steerdns_store_up 0"), "{metrics}");
        assert_eq!(sorted(s, "r.lb.example."), ["127.0.60.1", "127.0.60.2"], "the last known state");
        assert_eq!(sorted(s, "www.lb.example."), ["127.0.0.11", "127.0.0.12"]);
        let (code, text) = register(s, "r.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 30}"#, None);
        assert!(code == 503 && text.contains("store unavailable"), "{code} {text}");
        let (code, text) = drain(s, "127.0.0.11");
        assert!(code == 503 && text.contains("store unavailable"), "{code} {text}");
        let status = status_of(&s.admin);
        assert!(!status.store.up && status.store.error.is_some(), "{:?}", status.store);
    }
    assert_eq!(sorted(&a, "www.lb.example."), ["127.0.0.11", "127.0.0.12"], "the refused drain changed nothing");
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns")).args(["status", "--admin", &a.admin]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nstore etcd unavailable (") && text.contains("changes are refused"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("127.0.60.") && l.contains(" lease ") && !l.contains("(etcd)")),
        "A knows the lease it made: {text}"
    );
    etcd.restart();
    eventually("A to reconnect", || status_of(&a.admin).store.up);
    assert_eq!(register(&a, "r.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 30}"#, None).0, 200);
    eventually("B to answer the registration made on A", || sorted(&b, "r.lb.example.").contains(&"127.0.60.3".into()));
    eventually("B to reconnect", || status_of(&b.admin).store.up);
    assert_eq!(drain(&b, "127.0.0.11").0, 200);
    eventually("A to leave out the target drained on B", || sorted(&a, "www.lb.example.") == ["127.0.0.12"]);
}

#[test]
fn a_node_takes_registrations_for_a_service_its_reload_adds() {
    let Some(etcd) = Etcd::start() else { return };
    let a = node(&etcd.store(""));
    let b = ready(TestServer::start(&format!("{}\n{}", quickstart_config(), etcd.store(""))));
    assert_eq!(register(&a, "r.lb.example", r#"{"address": "127.0.60.2", "ttl_seconds": 30}"#, None).0, 200);
    // B has no such service yet: it skips the key, with a warning; a drain written
    // after it shows that B has read that far
    assert_eq!(drain(&a, "127.0.0.10").0, 200);
    eventually("B to see the drain", || !sorted(&b, "www.lb.example.").contains(&"127.0.0.10".into()));
    assert!(sorted(&b, "r.lb.example.").is_empty());
    b.reload(&with_store("", &etcd.store(""))).unwrap();
    eventually("B to answer the registration after its reload", || {
        sorted(&b, "r.lb.example.") == ["127.0.60.1", "127.0.60.2"]
    });
}

#[test]
fn values_that_do_not_parse_are_skipped_and_outside_writes_apply() {
    let Some(etcd) = Etcd::start() else { return };
    let put = |pairs: &'static [(&'static str, &'static str)]| {
        etcd.client(async |mut c| {
            for (key, value) in pairs {
                c.put(*key, *value, None).await.unwrap();
            }
        })
    };
    let bad: &[(&str, &str)] = &[
        ("/steerdns/admin/www.lb.example./not-an-ip", r#"{"state": "drain"}"#),
        ("/steerdns/admin/www.lb.example./127.0.0.12", r#"{"state": "sideways"}"#),
        ("/steerdns/registrations/r.lb.example./127.0.60.7", "not json"),
        ("/steerdns/registrations/r.lb.example./127.0.60.8", r#"{"address": "127.0.60.9", "ttl_seconds": 30}"#),
        ("/steerdns/registrations/nope.lb.example./127.0.60.8", r#"{"address": "127.0.60.8", "ttl_seconds": 30}"#),
        ("/steerdns/elsewhere", "x"),
    ];
    put(bad);
    // a registration put without a lease: renewing it registers it afresh, on a lease
    let key = "/steerdns/registrations/r.lb.example./127.0.60.5";
    put(&[("/steerdns/registrations/r.lb.example./127.0.60.5", r#"{"address": "127.0.60.5", "ttl_seconds": 30}"#)]);
    // read at start, then through the watch
    let s = node(&etcd.store(""));
    put(&[("/steerdns/admin/www.lb.example./127.0.0.10", r#"{"state": "drain"}"#)]);
    eventually("the outside drain to apply", || !sorted(&s, "www.lb.example.").contains(&"127.0.0.10".into()));
    put(bad);
    put(&[("/steerdns/admin/www.lb.example./127.0.0.10", r#"{"state": "auto"}"#)]);
    eventually("the outside undrain to apply", || sorted(&s, "www.lb.example.").contains(&"127.0.0.10".into()));
    assert_eq!(sorted(&s, "r.lb.example."), ["127.0.60.1", "127.0.60.5"]);
    assert_eq!(sorted(&s, "www.lb.example.").len(), 3);
    assert!(status_of(&s.admin).store.up);
    assert_eq!(register(&s, "r.lb.example", r#"{"address": "127.0.60.5", "ttl_seconds": 30}"#, None).0, 200);
    let lease = etcd.client(async |mut c| c.get(key, None).await.unwrap().kvs()[0].lease());
    assert_ne!(lease, 0, "the renewal put the registration on a lease");
    assert_eq!(sorted(&s, "r.lb.example."), ["127.0.60.1", "127.0.60.5"]);
}

#[test]
fn etcd_over_tls_with_a_client_certificate() {
    let tls = Tls::new();
    let Some(etcd) = Etcd::launch(Some(&tls)) else { return };
    let file = |name: &str| tls.dir.path().join(name).display().to_string();
    let keys = format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        file("ca.pem"),
        file("client.pem"),
        file("client-key.pem")
    );
    let s = node(&etcd.store(&keys));
    assert_eq!(register(&s, "r.lb.example", r#"{"address": "127.0.60.2", "ttl_seconds": 30}"#, None).0, 200);
    assert_eq!(sorted(&s, "r.lb.example."), ["127.0.60.1", "127.0.60.2"]);
    // without the client certificate etcd refuses: the node starts, says so, and refuses changes
    let without = TestServer::start(&with_store("", &etcd.store(&format!("ca_file = \"{}\"\n", file("ca.pem")))));
    eventually("the node to say why the store is down", || {
        let store = status_of(&without.admin).store;
        !store.up && store.error.is_some_and(|e| e.contains("reading the prefix"))
    });
    let (code, _) = register(&without, "r.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 30}"#, None);
    assert_eq!(code, 503);
    assert_eq!(without.ask("www.lb.example.", RecordType::A).answers.len(), 3, "it answers all the same");
}

#[test]
fn etcd_with_a_user_and_password() {
    let Some(etcd) = Etcd::start() else { return };
    etcd.client(async |mut c| {
        c.user_add("root", "root-password", None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.auth_enable().await.unwrap();
    });
    let store = etcd.store("username = \"root\"\npassword_file = \"password\"\n");
    let config = with_store("", &store);
    let s = ready(TestServer::with_files(&config, &[("lb.example.zone", ZONE), ("password", "root-password\n")]));
    assert_eq!(register(&s, "r.lb.example", r#"{"address": "127.0.60.2", "ttl_seconds": 30}"#, None).0, 200);
    assert_eq!(sorted(&s, "r.lb.example."), ["127.0.60.1", "127.0.60.2"]);
    let wrong = TestServer::with_files(&config, &[("lb.example.zone", ZONE), ("password", "guess")]);
    eventually("the node to say the password is wrong", || {
        let store = status_of(&wrong.admin).store;
        !store.up && store.error.is_some_and(|e| e.contains("auth"))
    });
    assert_eq!(register(&wrong, "r.lb.example", r#"{"address": "127.0.60.3", "ttl_seconds": 30}"#, None).0, 503);
}

impl Tls {
    /// A CA, a server certificate for 127.0.81.0/24 and a client certificate.
    fn new() -> Tls {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let mut ca = CertificateParams::new(Vec::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        write("ca.pem", ca.self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(ca, ca_key);
        let mut server = CertificateParams::new(Vec::new()).unwrap();
        server.subject_alt_names = (1..=255).map(|i| SanType::IpAddress([127, 0, 81, i].into())).collect();
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        write("server.pem", server.signed_by(&key, &issuer).unwrap().pem());
        write("server-key.pem", key.serialize_pem());
        let mut client = CertificateParams::new(vec!["steerdns".into()]).unwrap();
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        write("client.pem", client.signed_by(&key, &issuer).unwrap().pem());
        write("client-key.pem", key.serialize_pem());
        Tls { dir }
    }
}

#[test]
fn a_node_restarted_while_etcd_is_away_starts_from_its_copy() {
    let Some(mut etcd) = Etcd::start() else { return };
    let copies = tempfile::tempdir().unwrap();
    let copy = copies.path().join("copy.json");
    let store = etcd.store(&format!("path = \"{}\"\n", copy.display()));
    let config = with_store("", &store).edit("[server]", "[server]\nstartup_wait = \"1s\"");
    let a = ready(TestServer::start(&config));
    assert_eq!(drain(&a, "127.0.0.10").0, 200);
    assert_eq!(register(&a, "r.lb.example", r#"{"address": "127.0.60.2", "ttl_seconds": 30}"#, None).0, 200);
    eventually("the copy to hold both", || {
        std::fs::read_to_string(&copy).is_ok_and(|t| t.contains("\"drain\"") && t.contains("127.0.60.2"))
    });
    drop(a);
    etcd.kill();
    // without etcd, startup_wait passes and the node answers from the copy: the drain holds
    let b = TestServer::start(&config);
    assert_eq!(sorted(&b, "www.lb.example."), ["127.0.0.11", "127.0.0.12"], "the drain, from the copy");
    assert_eq!(sorted(&b, "r.lb.example."), ["127.0.60.1", "127.0.60.2"]);
    let store = status_of(&b.admin).store;
    assert!(!store.up && store.copy_saved_at.is_some(), "{store:?}");
    assert!(get_ok(&b.admin, "/metrics").lines().any(|l| l == "steerdns_store_from_copy 1"));
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns")).args(["status", "--admin", &b.admin]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\nstore etcd unavailable (") && text.contains("answering from its copy saved"), "{text}");
    let (code, text) = drain(&b, "127.0.0.11");
    assert!(code == 503 && text.contains("store unavailable"), "{code} {text}");
    etcd.restart();
    eventually("etcd's own snapshot to replace the copy", || {
        let store = status_of(&b.admin).store;
        store.up && store.copy_saved_at.is_none()
    });
    assert!(get_ok(&b.admin, "/metrics").lines().any(|l| l == "steerdns_store_from_copy 0"));
    assert_eq!(sorted(&b, "www.lb.example."), ["127.0.0.11", "127.0.0.12"]);
}

#[test]
fn two_nodes_create_and_remove_the_same_template_service() {
    let Some(etcd) = Etcd::start() else { return };
    let config = format!("{}\n{}\n{}", quickstart_config(), crate::templates::TEMPLATES, etcd.store(""));
    let (a, b) = (ready(TestServer::start(&config)), ready(TestServer::start(&config)));
    let body = r#"{"address": "127.0.43.1", "ttl_seconds": 30}"#;
    assert_eq!(register(&a, "shared.svc.lb.example", body, None).0, 200);
    eventually("B to create the service A's registration made", || {
        sorted(&b, "shared.svc.lb.example.") == ["127.0.43.1"]
    });
    eventually("B's status to show it, made by the template", || {
        let status = status_of(&b.admin);
        let made = status.services.iter().find(|s| s.name == "shared.svc.lb.example.");
        made.is_some_and(|s| s.template.as_deref() == Some("*.svc.lb.example."))
    });
    // the caps count what every node registered: B sees A's service
    let (code, text) = register(&b, "other.svc.lb.example", r#"{"address": "127.0.43.2", "ttl_seconds": 30}"#, None);
    assert_eq!(code, 200, "{text}");
    let (code, text) = register(&b, "third.svc.lb.example", r#"{"address": "127.0.43.3", "ttl_seconds": 30}"#, None);
    assert_eq!((code, text.contains("max_services = 2")), (429, true), "{text}");
    let path = "/v1/services/shared.svc.lb.example/registrations/127.0.43.1";
    assert_eq!(http(&b.admin, "DELETE", path, None, None).0, 200);
    eventually("A to remove the service with its last registration", || {
        !status_of(&a.admin).services.iter().any(|s| s.name == "shared.svc.lb.example.")
    });
    let gone = a.ask("shared.svc.lb.example.", hickory_proto::rr::RecordType::A);
    assert_eq!(gone.metadata.response_code, hickory_proto::op::ResponseCode::NXDomain);
}

//! DNSSEC online signing (SPEC §8) checked by real validators: Unbound as a validating
//! resolver with the zone's DS as its trust anchor and a stub zone to steerdns, BIND's
//! `delv` with the same anchor, and `dig` straight at steerdns for what only it shows
//! (the CO flag). Keys come from `steerdns dnssec keygen` and from BIND's
//! `dnssec-keygen`.

use crate::harness::*;
use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{RData, RecordType};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_steerdns");

/// The signed zone: static names, a wildcard, CNAMEs into a service and within the
/// zone, a name with other types only, an empty non-terminal, a secure and an insecure
/// delegation.
const ZONE: &str = r#"$ORIGIN lb.example.
$TTL 3600
@          IN SOA  ns1.lb.example. hostmaster.lb.example. ( 7 7200 3600 1209600 300 )
           IN NS   ns1.lb.example.
           IN MX   10 mail.lb.example.
ns1        IN A    127.0.0.53
mail       IN A    127.0.0.25
static     IN A    127.0.0.80
           IN AAAA ::1
           IN TXT  "static"
*.wild     IN A    127.0.0.99
alias      IN CNAME all
docs       IN CNAME static
deep.ent   IN TXT  "below an empty non-terminal"
secure     IN NS   ns.secure
           IN DS   12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ns.secure  IN A    127.0.0.55
insecure   IN NS   ns.insecure
ns.insecure IN A   127.0.0.56
"#;

/// A service of every policy and order (health is not what these tests are about:
/// the check probes nothing).
const SERVICES: &str = r#"
[checks.none]
kind = "none"
[[services]]
name = "all.lb.example."
policy = "all"
ttl = 30
targets = ["127.0.3.1", "127.0.3.2", "127.0.3.3", "::1"]

[[services]]
name = "healthy.lb.example."
policy = "healthy"
check = "none"
targets = ["127.0.3.11", "127.0.3.12"]

[[services]]
name = "failover.lb.example."
policy = "failover"
check = "none"
targets = [{ address = "127.0.3.21", priority = 1 }, { address = "127.0.3.22", priority = 2 }]

[[services]]
name = "weighted.lb.example."
order = "weighted"
max_answers = 2
targets = [{ address = "127.0.3.31", weight = 1 }, { address = "127.0.3.32", weight = 3 }, "127.0.3.33", "::2"]

[[services]]
name = "sticky.lb.example."
order = "sticky"
targets = ["127.0.3.41", "127.0.3.42", "127.0.3.43", "::3"]

[[services]]
name = "gslb.lb.example."
policy = "gslb"
check = "none"
targets = [{ address = "127.0.3.51", region = "near" }, { address = "127.0.3.52", region = "far" }, { address = "::4", region = "near" }]

[[services]]
name = "empty.lb.example."
ttl = 20

[geo]
default_region = "near"

[regions.near]
networks = ["127.0.0.0/8"]

[regions.far]
networks = ["10.0.0.0/8"]
"#;

/// The server's config for `zone` signed with the key files `keys`.
fn config(zone: &str, keys: &[&str], services: &str) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nshutdown_timeout = \"500ms\"\n\n[[zones]]\norigin = \"{zone}\"\n\
         file = \"zone\"\ndnssec_keys = [{}]\n{services}",
        keys.join(", ")
    )
}

/// Makes a key with `steerdns dnssec keygen` in `dir`: its .private file's name and its
/// DS as printed.
fn keygen(dir: &Path, zone: &str, algorithm: &str) -> (String, String) {
    let out = Command::new(BIN)
        .args(["dnssec", "keygen", zone, "--algorithm", algorithm, "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ds = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let tag: u16 = ds.split_whitespace().nth(3).unwrap().parse().unwrap();
    let alg: u8 = ds.split_whitespace().nth(4).unwrap().parse().unwrap();
    let file = format!("K{zone}+{alg:03}+{tag:05}.private");
    assert!(dir.join(&file).exists(), "{file} not written");
    (file, ds)
}

/// A signed server of ZONE and SERVICES with one key of `algorithm`, and the key's DS.
fn signed_server(algorithm: &str) -> (TestServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let (key, ds) = keygen(dir.path(), "lb.example.", algorithm);
    std::fs::write(dir.path().join("zone"), ZONE).unwrap();
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, config("lb.example.", &[&key], SERVICES)).unwrap();
    (TestServer::start_file(dir, path), ds)
}

/// A free port on `ip` (UDP; the resolver binds TCP on it too).
fn free_port(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// Unbound as a validating resolver on `ip`, trusting `ds`, with stub zones to
/// steerdns; root hints at a loopback address where nothing listens. Killed on drop.
struct Unbound {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Unbound {
    fn start(ip: &str, ds: &str, stubs: &[(&str, SocketAddr)]) -> Unbound {
        let dir = tempfile::tempdir().unwrap();
        let hints = dir.path().join("root.hints");
        std::fs::write(&hints, ". 3600000 NS a.root.\na.root. 3600000 A 127.0.0.254\n").unwrap();
        let port = free_port(ip);
        let mut conf = format!(
            "server:\n  interface: {ip}\n  port: {port}\n  do-daemonize: no\n  chroot: \"\"\n  username: \"\"\n\
             directory: \"{dir}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n\
             val-log-level: 2\n  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n\
             root-hints: \"{hints}\"\n  module-config: \"validator iterator\"\n  trust-anchor: \"{ds}\"\n\
             qname-minimisation: no\n  aggressive-nsec: no\n  do-ip6: no\n  num-threads: 1\n",
            dir = dir.path().display(),
            hints = hints.display()
        );
        for (zone, at) in stubs {
            conf += &format!("stub-zone:\n  name: \"{zone}\"\n  stub-addr: {}@{}\n", at.ip(), at.port());
        }
        conf += "remote-control:\n  control-enable: no\n";
        let file = dir.path().join("unbound.conf");
        std::fs::write(&file, conf).unwrap();
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unbound (Debian's `unbound` package; .ci/run installs it)");
        let unbound = Unbound { child, addr: SocketAddr::new(ip.parse().unwrap(), port), _dir: dir };
        eventually("unbound answers", || udp_exchange(unbound.addr, &query("lb.example.", RecordType::SOA)).is_some());
        unbound
    }

    /// Asks with RD=1 and DO=1, as a stub resolver behind it would.
    fn ask(&self, name: &str, rtype: RecordType) -> Message {
        let mut q = query(name, rtype);
        q.metadata.recursion_desired = true;
        let mut edns = Edns::new();
        edns.set_dnssec_ok(true);
        edns.set_max_payload(1232);
        q.set_edns(edns);
        udp_exchange(self.addr, &q).unwrap_or_else(|| panic!("unbound gave no reply for {name} {rtype}"))
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// "NoError ad 2": the RCODE, AD, and the number of records of `rtype` in the answer.
fn verdict(m: &Message, rtype: RecordType) -> String {
    let count = m.answers.iter().filter(|r| r.record_type() == rtype).count();
    format!("{:?} {} {count}", m.metadata.response_code, if m.metadata.authentic_data { "ad" } else { "-" })
}

#[test]
fn unbound_validates_every_kind_of_answer_as_secure() {
    let (s, ds) = signed_server("ecdsap256");
    let unbound = Unbound::start("127.0.0.211", &ds, &[("lb.example.", s.addr)]);
    let cases: &[(&str, RecordType, &str)] = &[
        ("static.lb.example.", RecordType::A, "NoError ad 1"),
        ("static.lb.example.", RecordType::AAAA, "NoError ad 1"),
        ("lb.example.", RecordType::MX, "NoError ad 1"),
        ("lb.example.", RecordType::DNSKEY, "NoError ad 1"),
        // a wildcard expansion, signed as the query name
        ("a.b.wild.lb.example.", RecordType::A, "NoError ad 1"),
        // CNAME into a service, and within the zone
        ("alias.lb.example.", RecordType::A, "NoError ad 3"),
        ("docs.lb.example.", RecordType::AAAA, "NoError ad 1"),
        // every policy and order
        ("all.lb.example.", RecordType::A, "NoError ad 3"),
        ("all.lb.example.", RecordType::AAAA, "NoError ad 1"),
        ("healthy.lb.example.", RecordType::A, "NoError ad 2"),
        ("failover.lb.example.", RecordType::A, "NoError ad 1"),
        ("weighted.lb.example.", RecordType::A, "NoError ad 2"),
        ("weighted.lb.example.", RecordType::AAAA, "NoError ad 1"),
        ("sticky.lb.example.", RecordType::A, "NoError ad 1"),
        ("sticky.lb.example.", RecordType::AAAA, "NoError ad 1"),
        ("gslb.lb.example.", RecordType::A, "NoError ad 1"),
        ("gslb.lb.example.", RecordType::AAAA, "NoError ad 1"),
        // NODATA: another type at a static name, a service, a wildcard, an empty
        // non-terminal, a service with no targets
        ("static.lb.example.", RecordType::MX, "NoError ad 0"),
        ("failover.lb.example.", RecordType::AAAA, "NoError ad 0"),
        ("all.lb.example.", RecordType::TXT, "NoError ad 0"),
        ("x.wild.lb.example.", RecordType::TXT, "NoError ad 0"),
        ("ent.lb.example.", RecordType::A, "NoError ad 0"),
        ("empty.lb.example.", RecordType::A, "NoError ad 0"),
        // names that do not exist: NOERROR for a resolver that sends no CO
        ("nope.lb.example.", RecordType::A, "NoError ad 0"),
        ("x.nope.all.lb.example.", RecordType::AAAA, "NoError ad 0"),
        // DS at a secure cut, and its absence at an insecure one
        ("secure.lb.example.", RecordType::DS, "NoError ad 1"),
        ("insecure.lb.example.", RecordType::DS, "NoError ad 0"),
    ];
    let mut wrong = Vec::new();
    for (name, rtype, want) in cases {
        let got = verdict(&unbound.ask(name, *rtype), *rtype);
        if got != *want {
            wrong.push(format!("{name} {rtype}: {got}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_name_below_an_insecure_cut_is_insecure_not_bogus() {
    let (parent, ds) = signed_server("ed25519");
    // the child: a second steerdns, unsigned
    let child_zone = "$ORIGIN insecure.lb.example.\n$TTL 60\n@ IN SOA ns.insecure.lb.example. h.lb.example. 1 2 3 4 5\n\
                      @ IN NS ns.insecure.lb.example.\nns IN A 127.0.0.56\nhost IN A 127.0.0.57\n";
    let child_config = "[server]\nlisten = [\"127.0.0.1:0\"]\nshutdown_timeout = \"500ms\"\n\n[[zones]]\n\
                        origin = \"insecure.lb.example.\"\nfile = \"zone\"\n";
    let child = TestServer::with_files(child_config, &[("zone", child_zone)]);
    let unbound =
        Unbound::start("127.0.0.212", &ds, &[("lb.example.", parent.addr), ("insecure.lb.example.", child.addr)]);
    let m = unbound.ask("host.insecure.lb.example.", RecordType::A);
    assert_eq!(verdict(&m, RecordType::A), "NoError - 1");
    assert_eq!(addresses(&m), ["127.0.0.57"]);
    // and the parent's own names stay secure beside it
    assert_eq!(verdict(&unbound.ask("static.lb.example.", RecordType::A), RecordType::A), "NoError ad 1");
}

#[test]
fn a_zone_signed_with_a_key_that_is_not_the_anchor_is_bogus() {
    let (s, _ds) = signed_server("ecdsap256");
    let other = tempfile::tempdir().unwrap();
    let (_, other_ds) = keygen(other.path(), "lb.example.", "ecdsap256");
    let unbound = Unbound::start("127.0.0.213", &other_ds, &[("lb.example.", s.addr)]);
    for (name, rtype) in [("static.lb.example.", RecordType::A), ("all.lb.example.", RecordType::A)] {
        let m = unbound.ask(name, rtype);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{name}: {m}");
    }
}

#[test]
fn keys_made_by_bind_sign_answers_unbound_and_delv_accept() {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new("dnssec-keygen")
        .args(["-a", "ED25519", "-f", "KSK", "-n", "ZONE", "-K"])
        .arg(dir.path())
        .arg("lb.example.")
        .output()
        .expect("dnssec-keygen (Debian's bind9-utils; .ci/run installs it)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let stem = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let key_file = dir.path().join(format!("{stem}.key"));
    let ds = Command::new("dnssec-dsfromkey").arg("-2").arg(&key_file).output().unwrap();
    assert!(ds.status.success(), "{}", String::from_utf8_lossy(&ds.stderr));
    let ds = String::from_utf8(ds.stdout).unwrap().trim().to_string();
    std::fs::write(dir.path().join("zone"), ZONE).unwrap();
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, config("lb.example.", &[&format!("{stem}.private")], SERVICES)).unwrap();
    // `steerdns dnssec ds` prints what BIND prints for the same key
    let ours = Command::new(BIN).args(["dnssec", "ds", "-c"]).arg(&path).output().unwrap();
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    assert_eq!(String::from_utf8(ours.stdout).unwrap().trim(), ds);
    let s = TestServer::start_file(dir, path);
    let unbound = Unbound::start("127.0.0.214", &ds, &[("lb.example.", s.addr)]);
    assert_eq!(verdict(&unbound.ask("all.lb.example.", RecordType::A), RecordType::A), "NoError ad 3");
    // delv validates by itself, asking steerdns straight, with the same anchor
    let words: Vec<&str> = ds.split_whitespace().collect();
    let anchors = format!(
        "trust-anchors {{ lb.example. static-ds {} {} {} \"{}\"; }};\n",
        words[3], words[4], words[5], words[6]
    );
    let anchor_file = s.dir().join("anchors.conf");
    std::fs::write(&anchor_file, anchors).unwrap();
    for (name, rtype, want) in [
        ("all.lb.example.", "A", "; fully validated"),
        ("a.wild.lb.example.", "A", "; fully validated"),
        ("alias.lb.example.", "A", "; fully validated"),
        ("nope.lb.example.", "A", "; negative response, fully validated"),
        ("static.lb.example.", "MX", "; negative response, fully validated"),
    ] {
        let out = Command::new("delv")
            .args(["@127.0.0.1", "-p", &s.addr.port().to_string(), "-a"])
            .arg(&anchor_file)
            .args(["+root=lb.example", name, rtype])
            .output()
            .expect("delv (Debian's bind9-dnsutils; .ci/run installs it)");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(text.lines().any(|l| l == want), "delv {name} {rtype}:\n{text}");
    }
}

/// dig straight at steerdns: `dig +dnssec ARGS`, its output with every run of spaces
/// and tabs made one space.
fn dig(s: &TestServer, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &s.addr.port().to_string(), "+dnssec", "+norec", "+time=5", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (Debian's bind9-dnsutils; .ci/run installs it)");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

#[test]
fn nxdomain_is_said_only_to_a_client_that_sets_co_and_co_is_echoed() {
    let (s, _) = signed_server("ecdsap256");
    let with_co = dig(&s, &["+coflag", "nope.lb.example.", "A"]);
    assert!(with_co.contains("status: NXDOMAIN"), "{with_co}");
    assert!(with_co.contains("; EDNS: version: 0, flags: do co;"), "{with_co}");
    assert!(with_co.contains("\\000.nope.lb.example. RRSIG NSEC TYPE128"), "{with_co}");
    let without = dig(&s, &["nope.lb.example.", "A"]);
    assert!(without.contains("status: NOERROR"), "{without}");
    assert!(without.contains("; EDNS: version: 0, flags: do;"), "{without}");
    // without DO: the unsigned answer of SPEC §5, CO or not
    let unsigned = dig(&s, &["+nodnssec", "+coflag", "nope.lb.example.", "A"]);
    assert!(unsigned.contains("status: NXDOMAIN") && !unsigned.contains("RRSIG"), "{unsigned}");
    // the NODATA NSEC lists exactly this answer's types
    let nodata = dig(&s, &["failover.lb.example.", "AAAA"]);
    assert!(nodata.contains("failover.lb.example. 30 IN NSEC \\000.failover.lb.example. A RRSIG NSEC"), "{nodata}");
    // a service whose A targets are all drained does not list A
    for address in ["127.0.3.11", "127.0.3.12"] {
        let path = format!("/v1/services/healthy.lb.example./targets/{address}/state");
        let (code, body) = http(&s.admin, "PUT", &path, Some(r#"{"state": "drain"}"#), None);
        assert_eq!(code, 200, "{body}");
    }
    eventually("the drains answered", || dig(&s, &["healthy.lb.example.", "A"]).contains("ANSWER: 0"));
    let drained = dig(&s, &["healthy.lb.example.", "A"]);
    assert!(drained.contains("IN NSEC \\000.healthy.lb.example. RRSIG NSEC\n"), "{drained}");
}

/// A query with DO=1 (and CO when `co`), EDNS payload 1232.
fn signed_query(name: &str, rtype: RecordType) -> Message {
    let mut q = query(name, rtype);
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true);
    edns.set_max_payload(1232);
    q.set_edns(edns);
    q
}

#[test]
fn an_nxname_query_is_formerr_in_a_signed_zone_only() {
    let (s, _) = signed_server("ed25519");
    let nxname = RecordType::Unknown(128);
    assert_eq!(s.udp(&signed_query("static.lb.example.", nxname)).metadata.response_code, ResponseCode::FormErr);
    let unsigned = TestServer::quickstart();
    assert_eq!(unsigned.udp(&signed_query("www.lb.example.", nxname)).metadata.response_code, ResponseCode::NotImp);
}

#[test]
fn each_region_and_rotation_gets_a_signature_of_its_own_records() {
    let (s, _) = signed_server("ecdsap256");
    let rrsig_of = |m: &Message| -> Vec<u8> {
        let sigs: Vec<_> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(sig)) => Some(sig.sig().to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(sigs.len(), 1, "{m}");
        sigs[0].clone()
    };
    // a rotation of the same records: one signature (ECDSA's are random each time made)
    let first = s.udp(&signed_query("all.lb.example.", RecordType::A));
    let second = s.udp(&signed_query("all.lb.example.", RecordType::A));
    assert_ne!(addresses(&first), addresses(&second), "the answer rotates");
    assert_eq!(rrsig_of(&first), rrsig_of(&second));
    // another region's answer: its own records and signature, ECS scope as unsigned
    let with_ecs = |net: &str| {
        let mut q = signed_query("gslb.lb.example.", RecordType::A);
        let subnet: ClientSubnet = net.parse().unwrap();
        q.edns.as_mut().unwrap().options_mut().insert(EdnsOption::Subnet(subnet));
        q
    };
    let near = s.udp(&with_ecs("127.0.0.0/24"));
    let far = s.udp(&with_ecs("10.1.0.0/24"));
    assert_eq!((addresses(&near), addresses(&far)), (vec!["127.0.3.51".to_string()], vec!["127.0.3.52".to_string()]));
    assert_ne!(rrsig_of(&near), rrsig_of(&far));
    assert_eq!(ecs_of(&near).map(|e| e.2), Some(8));
}

#[test]
fn a_computed_answer_shrinks_to_fit_with_its_signature_and_a_static_one_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "lb.example.", "ecdsap256");
    std::fs::write(dir.path().join("zone"), ZONE).unwrap();
    let targets: Vec<String> = (1..=40).map(|i| format!("\"127.0.4.{i}\"")).collect();
    let services = format!(
        "[[services]]\nname = \"big.lb.example.\"\npolicy = \"all\"\nmax_answers = 40\ntargets = [{}]\n",
        targets.join(", ")
    );
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, config("lb.example.", &[&key], &services)).unwrap();
    let many: String = (1..=26).map(|i| format!("many IN A 127.0.6.{i}\n")).collect();
    std::fs::write(path.with_file_name("zone"), format!("{ZONE}{many}")).unwrap();
    let s = TestServer::start_file(dir, path);
    let mut q = signed_query("big.lb.example.", RecordType::A);
    q.edns.as_mut().unwrap().set_max_payload(512);
    let m = s.udp(&q);
    let n = addresses(&m).len();
    assert!(!m.metadata.truncation && (10..40).contains(&n), "{n} records, TC {}", m.metadata.truncation);
    assert_eq!(m.answers.iter().filter(|r| r.record_type() == RecordType::RRSIG).count(), 1);
    assert!(m.to_vec().unwrap().len() <= 512);
    // static data is never cut: 26 A records fit 512 bytes alone, not with their RRSIG
    let mut q = signed_query("many.lb.example.", RecordType::A);
    q.edns.as_mut().unwrap().set_max_payload(512);
    let signed = s.udp(&q);
    assert!(signed.metadata.truncation && signed.answers.is_empty(), "{signed}");
    q.edns.as_mut().unwrap().set_dnssec_ok(false);
    let unsigned = s.udp(&q);
    assert!(!unsigned.metadata.truncation && addresses(&unsigned).len() == 26, "{unsigned}");
    // over TCP the signed RRset comes whole
    let mut q = signed_query("many.lb.example.", RecordType::A);
    q.edns.as_mut().unwrap().set_max_payload(512);
    let whole = s.tcp(&q);
    assert_eq!((addresses(&whole).len(), whole.answers.len()), (26, 27));
}

#[test]
fn past_the_signing_budget_new_rrsets_get_servfail_and_cached_ones_still_answer() {
    // weighted over 16 targets, 4 an answer: 1,820 distinct RRsets
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "lb.example.", "ed25519");
    std::fs::write(dir.path().join("zone"), ZONE).unwrap();
    let targets: Vec<String> = (1..=16).map(|i| format!("\"127.0.5.{i}\"")).collect();
    let services = format!(
        "[[services]]\nname = \"w.lb.example.\"\norder = \"weighted\"\nmax_answers = 4\ntargets = [{}]\n",
        targets.join(", ")
    );
    let path = dir.path().join("steerdns.toml");
    let text =
        config("lb.example.", &[&key], &services).replace("[server]\n", "[server]\ndnssec_signatures_per_second = 2\n");
    std::fs::write(&path, text).unwrap();
    let check = Command::new(BIN).args(["check", "-c"]).arg(&path).output().unwrap();
    assert!(check.status.success());
    let warning = String::from_utf8(check.stderr).unwrap();
    assert!(
        warning.contains("service w.lb.example.: a weighted service with max_answers = 4 in the signed zone"),
        "{warning}"
    );
    let s = TestServer::start_file(dir, path);
    let ask = |name: &str| s.udp(&signed_query(name, RecordType::A)).metadata.response_code;
    let codes: Vec<ResponseCode> = (0..50).map(|_| ask("w.lb.example.")).collect();
    assert!(codes.contains(&ResponseCode::ServFail), "{codes:?}");
    assert!(codes.iter().all(|c| matches!(c, ResponseCode::ServFail | ResponseCode::NoError)), "{codes:?}");
    // a static RRset, once signed, keeps answering whatever the budget
    eventually("static.lb.example. signed", || ask("static.lb.example.") == ResponseCode::NoError);
    assert!((0..20).all(|_| ask("static.lb.example.") == ResponseCode::NoError));
    let metrics = get_ok(&s.admin, "/metrics");
    let refused = metrics.lines().find_map(|l| l.strip_prefix("steerdns_dnssec_budget_refused_total "));
    assert!(refused.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 20), "{metrics}");
}

#[test]
fn bad_key_files_are_config_errors_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "other.example.", "ecdsap256");
    std::fs::write(dir.path().join("zone"), ZONE).unwrap();
    std::fs::write(dir.path().join("garbage.private"), "not a key\n").unwrap();
    let path = dir.path().join("steerdns.toml");
    std::fs::write(&path, config("lb.example.", &[&key, "garbage.private", "missing.private"], "")).unwrap();
    let out = Command::new(BIN).args(["check", "-c"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stderr).unwrap();
    for want in [
        "zones[0].dnssec_keys[0]",
        "belongs to other.example., not to the zone lb.example.",
        "zones[0].dnssec_keys[1]",
        "garbage.private: is not a BIND private key file",
        "zones[0].dnssec_keys[2]",
        "missing.private",
    ] {
        assert!(text.contains(want), "{want} not in:\n{text}");
    }
    // a zone file with DNSSEC records stays an error
    std::fs::write(
        dir.path().join("zone"),
        format!("{ZONE}@ IN DNSKEY 257 3 15 l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=\n"),
    )
    .unwrap();
    std::fs::write(&path, config("lb.example.", &[], "")).unwrap();
    let out = Command::new(BIN).args(["check", "-c"]).arg(&path).output().unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("zone:20") && text.contains("DNSKEY"), "{text}");
}

#[test]
fn a_reload_with_a_bad_key_keeps_the_running_keys() {
    let (s, _) = signed_server("ed25519");
    let before = s.udp(&signed_query("lb.example.", RecordType::DNSKEY));
    assert_eq!(before.answers.iter().filter(|r| r.record_type() == RecordType::DNSKEY).count(), 1);
    let path = s.dir().join("steerdns.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(".private\"]", ".private\", \"nothere.private\"]")).unwrap();
    let (code, body) = http(&s.admin, "POST", "/v1/reload", None, None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("zones[0].dnssec_keys[1]") && body.contains("nothere.private"), "{body}");
    let after = s.udp(&signed_query("lb.example.", RecordType::DNSKEY));
    assert_eq!(after.answers, before.answers);
    assert_eq!(verdict(&s.udp(&signed_query("static.lb.example.", RecordType::A)), RecordType::RRSIG), "NoError - 1");
}

#[test]
fn cds_and_cdnskey_are_published_for_the_cds_keys_only_with_the_soas_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (first, ds) = keygen(dir.path(), "lb.example.", "ecdsap256");
    let (second, _) = keygen(dir.path(), "lb.example.", "ed25519");
    std::fs::write(dir.path().join("zone"), ZONE).unwrap();
    let path = dir.path().join("steerdns.toml");
    let text = config("lb.example.", &[&first, &second], "")
        .replace("dnssec_keys = [", &format!("dnssec_cds_keys = [\"{first}\"]\ndnssec_keys = ["));
    std::fs::write(&path, text).unwrap();
    let s = TestServer::start_file(dir, path);
    let count = |m: &Message, rtype: RecordType| m.answers.iter().filter(|r| r.record_type() == rtype).count();
    let dnskey = s.udp(&signed_query("lb.example.", RecordType::DNSKEY));
    // both keys published and both sign
    assert_eq!((count(&dnskey, RecordType::DNSKEY), count(&dnskey, RecordType::RRSIG)), (2, 2), "{dnskey}");
    assert!(dnskey.answers.iter().all(|r| r.ttl == 3600), "{dnskey}");
    let cds = s.udp(&signed_query("lb.example.", RecordType::CDS));
    assert_eq!((count(&cds, RecordType::CDS), count(&cds, RecordType::RRSIG)), (1, 2), "{cds}");
    // the CDS is the first key's DS, as `dnssec keygen` printed it
    let digest = ds.split_whitespace().last().unwrap().to_lowercase();
    let shown =
        cds.answers.iter().find(|r| r.record_type() == RecordType::CDS).unwrap().data.to_string().to_lowercase();
    assert!(shown.ends_with(&digest), "{shown} vs {ds}");
    let cdnskey = s.udp(&signed_query("lb.example.", RecordType::CDNSKEY));
    assert_eq!(count(&cdnskey, RecordType::CDNSKEY), 1, "{cdnskey}");
    // without dnssec_cds_keys there is none
    let (plain, _) = signed_server("ed25519");
    let none = plain.udp(&signed_query("lb.example.", RecordType::CDS));
    assert_eq!((none.metadata.response_code, count(&none, RecordType::CDS)), (ResponseCode::NoError, 0));
}

#[test]
fn a_signed_referral_carries_the_cuts_ds_or_an_nsec_proving_there_is_none() {
    let (s, _) = signed_server("ecdsap256");
    let insecure = dig(&s, &["host.insecure.lb.example.", "A"]);
    assert!(insecure.contains("flags: qr;"), "a referral, AA=0:\n{insecure}");
    assert!(
        insecure.contains("insecure.lb.example. 300 IN NSEC \\000.insecure.lb.example. NS RRSIG NSEC"),
        "{insecure}"
    );
    assert!(insecure.contains("insecure.lb.example. 300 IN RRSIG NSEC 13 3 300"), "{insecure}");
    let secure = dig(&s, &["host.secure.lb.example.", "A"]);
    assert!(secure.contains("secure.lb.example. 3600 IN DS 12345 13 2"), "{secure}");
    assert!(secure.contains("secure.lb.example. 3600 IN RRSIG DS 13 3 3600"), "{secure}");
    assert!(!secure.contains("IN NSEC"), "{secure}");
    // without DO: the referral of SPEC §5.1, nothing signed
    let plain = dig(&s, &["+nodnssec", "host.insecure.lb.example.", "A"]);
    assert!(!plain.contains("NSEC") && !plain.contains("RRSIG"), "{plain}");
}

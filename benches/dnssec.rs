//! DNSSEC online signing beside the unsigned path, in one run (issue 15, item 7).
//!
//!   cargo bench --bench dnssec
//!
//! In-process, on one thread: Views are built from a signed zone as the server builds
//! them and queries are answered by `dns::respond`, the function the UDP loop calls,
//! so the figures are CPU per answer without the sockets. Printed:
//! 1. a cached signed A answer (DO=1) against the unsigned one, static and computed
//!    (goal ≤ 1.5×), medians of 5 rounds;
//! 2. a cache miss: µs per signature, per algorithm;
//! 3. memory per 10,000 cached signatures (RSS growth);
//! 4. a health flap on a service of 32 targets with max_answers 8: RRsets signed per
//!    flap, and per second at one flap a second and 10,000 queries a second;
//! 5. the worst cases (weighted over 16 targets with max_answers 4, sticky with
//!    max_answers 4 and random ECS /24s, random names that do not exist): signatures
//!    made per second against the budget, the share of SERVFAIL, CPU per query, in
//!    the first second and the next. The cache's key ignores the records' order, so
//!    the first two have C(16, 4) = 1,820 RRsets at most; random names never repeat,
//!    so every one is a miss.

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use steerdns::dns::{Transport, respond};
use steerdns::dnssec::{self, Signatures};
use steerdns::health::{Health, ProbeKey};
use steerdns::view::View;

const ZONE: &str = "$ORIGIN lb.example.\n$TTL 3600\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\n\
                    ns1 A 127.0.0.53\nstatic A 127.0.0.80\n";

const SERVICES: &str = r#"
[checks.tcp]
kind = "tcp"
port = 80

[[services]]
name = "www.lb.example."
policy = "all"
targets = ["127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"]

[[services]]
name = "flap.lb.example."
policy = "healthy"
check = "tcp"
max_answers = 8
targets = [TARGETS32]

[[services]]
name = "weighted.lb.example."
order = "weighted"
max_answers = 4
targets = [TARGETS16]

[[services]]
name = "sticky.lb.example."
order = "sticky"
max_answers = 4
targets = [TARGETS16]
"#;

const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 53000);

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let algorithms = [("ecdsap256", dnssec::ECDSAP256), ("ed25519", dnssec::ED25519)];
    let origin = Name::from_ascii("lb.example.").unwrap();
    let keys: Vec<String> = algorithms
        .iter()
        .map(|(_, a)| {
            let key = dnssec::generate(&origin, *a, dir.path()).unwrap();
            key.file.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    std::fs::write(dir.path().join("zone"), ZONE).unwrap();
    let targets = |n: usize, net: u8| -> String {
        (1..=n).map(|i| format!("\"127.0.{net}.{i}\"")).collect::<Vec<_>>().join(", ")
    };
    let services = SERVICES.replace("TARGETS32", &targets(32, 9)).replace("TARGETS16", &targets(16, 8));
    let load = |key: &str, budget: u32| {
        let config = format!(
            "[server]\nlisten = [\"127.0.0.1:5353\"]\ndnssec_signatures_per_second = {budget}\n\
             [[zones]]\norigin = \"lb.example.\"\nfile = \"zone\"\ndnssec_keys = [\"{key}\"]\n{services}"
        );
        let path = dir.path().join(format!("c-{budget}.toml"));
        std::fs::write(&path, config).unwrap();
        steerdns::loaded::load(&path).unwrap()
    };
    let up = |_: &ProbeKey| (Health::Up, None);
    let auto = |_: &Name, _: IpAddr| steerdns::api::AdminState::Auto;

    println!("1. cached signed answers against unsigned ones (ns per answer, medians of 5 rounds)");
    for ((name, _), key) in algorithms.iter().zip(&keys) {
        let view = View::build(&load(key, 1_000_000), None, &up, &auto, false);
        for qname in ["static.lb.example.", "www.lb.example."] {
            let plain = query(qname, false, None);
            let signed = query(qname, true, None);
            let (unsigned_ns, signed_ns) = (per_answer(&view, &plain), per_answer(&view, &signed));
            println!(
                "   {name:9} {qname:20} unsigned {unsigned_ns:6.0}  signed {signed_ns:6.0}  ratio {:.2}",
                signed_ns / unsigned_ns
            );
        }
    }

    println!("2. a cache miss: µs per signature");
    for (name, algorithm) in algorithms {
        let keys = zone_keys(&origin, algorithm, dir.path());
        let signatures = Signatures::new(100_000, u32::MAX);
        let n = 2_000u32;
        let start = Instant::now();
        for i in 0..n {
            let rdata = i.to_be_bytes();
            let rrset = dnssec::RRset { owner: &origin, rtype: 1, class: 1, ttl: 30, rdatas: [&rdata[..]].into_iter() };
            signatures.sign(&keys, rrset, dnssec::now()).unwrap();
        }
        println!("   {name:9} {:.1} µs", start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }

    println!("3. memory per 10,000 cached signatures (ECDSA, one key)");
    {
        let keys = zone_keys(&origin, dnssec::ECDSAP256, dir.path());
        let signatures = Signatures::new(100_000, u32::MAX);
        let before = rss();
        for i in 0..50_000u32 {
            let rdata = i.to_be_bytes();
            let rrset = dnssec::RRset { owner: &origin, rtype: 1, class: 1, ttl: 30, rdatas: [&rdata[..]].into_iter() };
            signatures.sign(&keys, rrset, dnssec::now()).unwrap();
        }
        let grown = rss().saturating_sub(before);
        println!(
            "   {:.2} MB ({} RRsets cached, RSS +{:.1} MB)",
            grown as f64 / 5.0 / 1e6,
            signatures.len(),
            grown as f64 / 1e6
        );
    }

    println!("4. a health flap: 32 targets, max_answers 8, one target down then up, 1,000 queries per state");
    {
        let loaded = load(&keys[0], 1_000_000);
        let down =
            |key: &ProbeKey| (if key.address.to_string() == "127.0.9.7" { Health::Down } else { Health::Up }, None);
        let states: [&dyn Fn(&ProbeKey) -> steerdns::view::Probed; 2] = [&up, &down];
        let mut previous: Option<View> = None;
        let signed = query("flap.lb.example.", true, None);
        let mut out = Vec::new();
        let mut per_flap = Vec::new();
        for flap in 0..10 {
            let view = View::build(&loaded, previous.as_ref(), states[flap % 2], &auto, false);
            let signatures = view.signatures.clone().unwrap();
            let made = signatures.counters.made.load(Relaxed);
            for _ in 0..1000 {
                respond(&view, &signed, CLIENT, Transport::Udp, &mut out).unwrap();
            }
            per_flap.push(signatures.counters.made.load(Relaxed) - made);
            previous = Some(view);
        }
        println!("   RRsets signed per state: {per_flap:?}");
        println!(
            "   (the first two states sign their windows once; later flaps find them cached: a rotating cap of 8 over \
             32 targets is 32 RRsets per health state, at one flap a second well under the budget)"
        );
    }

    println!("5. the worst cases, one second after another, with the default budget of this machine");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let budget = dnssec::BUDGET_PER_CORE * cores;
    let cases = [
        ("weighted 16/4", "weighted.lb.example.", Kind::Plain),
        ("sticky 16/4, random /24", "sticky.lb.example.", Kind::Ecs),
        ("random names (NXDOMAIN)", "lb.example.", Kind::Random),
    ];
    for (what, qname, kind) in cases {
        let view = View::build(&load(&keys[0], budget), None, &up, &auto, false);
        let signatures = view.signatures.clone().unwrap();
        let mut out = Vec::new();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for second in ["first second", "next second"] {
            let (mut servfail, mut total) = (0u64, 0u64);
            let made = signatures.counters.made.load(Relaxed);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(1) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let q = match kind {
                    Kind::Plain => query(qname, true, None),
                    Kind::Ecs => {
                        query(qname, true, Some(std::net::Ipv4Addr::from(((seed as u32) & 0x00FF_FF00) | 0x0A00_0000)))
                    }
                    Kind::Random => query(&format!("x{seed:x}.{qname}"), true, None),
                };
                let answered = respond(&view, &q, CLIENT, Transport::Udp, &mut out).unwrap();
                total += 1;
                servfail += u64::from(answered.rcode == steerdns::dns::Rcode::ServFail);
            }
            let secs = start.elapsed().as_secs_f64();
            let made = (signatures.counters.made.load(Relaxed) - made) as f64;
            println!(
                "   {what:24} {second}: made {:5.0}/s (budget {budget}), {total:7} queries, {:5.1}% SERVFAIL, \
                 {:.2} µs CPU per query",
                made / secs,
                servfail as f64 * 100.0 / total as f64,
                secs * 1e6 / total as f64
            );
        }
    }
}

/// What the worst cases vary.
#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Ecs,
    Random,
}

/// The bytes of a query for the A records of `name`, with DO when `dnssec_ok`, and
/// ECS `subnet`/24 when given.
fn query(name: &str, dnssec_ok: bool, subnet: Option<std::net::Ipv4Addr>) -> Vec<u8> {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(dnssec_ok);
    if let Some(net) = subnet {
        edns.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(IpAddr::V4(net), 24, 0)));
    }
    m.set_edns(edns);
    m.to_vec().unwrap()
}

/// Median over 5 rounds of the ns per answer of `bytes` (the cache warmed first).
fn per_answer(view: &View, bytes: &[u8]) -> f64 {
    let mut out = Vec::new();
    for _ in 0..1000 {
        respond(view, bytes, CLIENT, Transport::Udp, &mut out).unwrap();
    }
    let n = 200_000;
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                respond(view, std::hint::black_box(bytes), CLIENT, Transport::Udp, &mut out).unwrap();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

/// A fresh key of `algorithm` for `origin`.
fn zone_keys(origin: &Name, algorithm: u8, dir: &std::path::Path) -> dnssec::ZoneKeys {
    let key = dnssec::generate(origin, algorithm, dir).unwrap();
    dnssec::ZoneKeys::new(origin.clone(), vec![key], Vec::new())
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

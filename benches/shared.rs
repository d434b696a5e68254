//! Shared health under load (SPEC §10).
//!
//!   cargo bench --features etcd --bench shared
//!
//! etcd (127.0.83.1, a temporary data dir, --unsafe-no-fsync) and three steerdns nodes
//! (the release binary) sharing health with `probers_per_target = 2`, each probing from
//! its own source address (127.0.96.1–3). 10,000 targets in 100 services, an HTTP check
//! every 5 s (fall 2, rise 1), all against one wildcard backend on 0.0.0.0 that answers
//! every 127.x address and closes connections to the addresses marked dead.
//! - probes per second per node (the backend counts them by source address) over 20 s;
//! - etcd writes per second (etcd's own `etcd_mvcc_put_total`) while 1% of the targets
//!   flap each interval (each down for three intervals), and without flapping;
//! - time from a backend's death to every node dropping it from its answers (a
//!   service of two targets, each node asked every 10 ms), 10 times. Goal: within
//!   fall × interval + 1 s = 11 s.
//!
//! Needs `etcd` on PATH (Debian's etcd-server). Every address is on 127.0.0.0/8.

mod common;

use common::*;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ZONE: &str =
    "$ORIGIN bench.test.\n$TTL 300\n@ SOA ns h 1 2 3 4 300\n@ NS ns\nns A 127.0.0.53\nstatic A 127.0.0.80\n";
const INTERVAL: u64 = 5;
const FALL: u64 = 2;

/// The backend's view: probes by source address, and the addresses it treats as dead.
#[derive(Default)]
struct Backend {
    probes: BTreeMap<IpAddr, u64>,
    dead: HashSet<IpAddr>,
}

fn backend(port: u16, state: Arc<Mutex<Backend>>) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await.unwrap();
            loop {
                let Ok((mut stream, peer)) = listener.accept().await else { continue };
                let to = stream.local_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
                let dead = {
                    let mut s = state.lock().unwrap();
                    *s.probes.entry(peer.ip()).or_default() += 1;
                    s.dead.contains(&to)
                };
                if dead {
                    continue; // closed unanswered
                }
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 2048];
                    let _ = stream.read(&mut buf).await;
                    let _ =
                        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK").await;
                });
            }
        });
    });
}

/// Target `i` of the 10,000.
fn target(i: usize) -> IpAddr {
    IpAddr::from([127, 10 + (i / 5000) as u8, ((i / 250) % 20) as u8, (i % 250) as u8 + 1])
}

struct Node {
    child: Child,
    dns: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(dir: &std::path::Path, n: usize, etcd: &str, port: u16) -> Node {
    let dns = free_port();
    let mut text = format!(
        "[server]\nlisten = [\"127.0.0.1:{dns}\"]\nadmin_listen = \"127.0.0.1:{}\"\nidentity = \"node{n}\"\nudp_workers = 1\n\
         [store]\nbackend = \"etcd\"\nendpoints = [\"{etcd}\"]\npath = \"copy{n}.json\"\n\
         [health]\nshare = true\nprobers_per_target = 2\nprobe_source = \"127.0.96.{}\"\n\
         [[zones]]\norigin = \"bench.test.\"\nfile = \"bench.zone\"\n\
         [checks.web]\nport = {port}\ninterval = \"{INTERVAL}s\"\ntimeout = \"2s\"\nfall = {FALL}\nrise = 1\n\
         [[services]]\nname = \"death.bench.test.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.9.0.1\", \"127.9.0.2\"]\n",
        free_port(),
        n + 1
    );
    for s in 0..100 {
        let targets: Vec<String> = (0..100).map(|t| format!("\"{}\"", target(s * 100 + t))).collect();
        text.push_str(&format!(
            "[[services]]\nname = \"s{s}.bench.test.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [{}]\n",
            targets.join(", ")
        ));
    }
    let path = dir.join(format!("node{n}.toml"));
    std::fs::write(&path, text).unwrap();
    let log = std::fs::File::create(dir.join(format!("node{n}.log"))).unwrap();
    let child = Command::new(BIN).args(["serve", "--config"]).arg(&path).stderr(log).spawn().unwrap();
    Node { child, dns: SocketAddr::from(([127, 0, 0, 1], dns)) }
}

/// etcd's count of puts so far, from its /metrics.
fn etcd_puts(url: &str) -> f64 {
    etcd_metric(url, "etcd_mvcc_put_total")
}

/// A value of etcd's /metrics.
fn etcd_metric(url: &str, name: &str) -> f64 {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    use std::io::{Read, Write};
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in etcd's metrics"))
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.83.1";
    let port_on = || std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port();
    let (etcd_url, peer) = (format!("http://{ip}:{}", port_on()), format!("http://{ip}:{}", port_on()));
    let mut etcd = Command::new("etcd")
        .args(["--name", "s", "--data-dir"])
        .arg(dir.path().join("etcd"))
        .args(["--listen-client-urls", &etcd_url, "--advertise-client-urls", &etcd_url])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("s={peer}"), "--unsafe-no-fsync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd on PATH (Debian package etcd-server)");
    wait_until("etcd", || std::net::TcpStream::connect(etcd_url.trim_start_matches("http://")).is_ok());
    std::fs::write(dir.path().join("bench.zone"), ZONE).unwrap();
    let state = Arc::new(Mutex::new(Backend::default()));
    let port = free_port();
    backend(port, state.clone());
    let nodes: Vec<Node> = (0..3).map(|n| node(dir.path(), n, &etcd_url, port)).collect();
    for n in &nodes {
        wait_until("a node answers", || ask(n.dns, "death.bench.test.").is_some_and(|a| a.len() == 2));
    }
    // every key probed and its two verdicts published (20,000 keys, and three nodes)
    let start = Instant::now();
    while etcd_metric(&etcd_url, "etcd_debugging_mvcc_keys_total") < 20_003.0 {
        assert!(start.elapsed() < Duration::from_secs(600), "the verdicts were not all published in 10 minutes");
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("shared: all 20,000 verdicts published {:.1} s after the nodes answered", start.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(INTERVAL));

    let window = Duration::from_secs(20);
    let (puts, _) = (etcd_puts(&etcd_url), state.lock().unwrap().probes.clear());
    std::thread::sleep(window);
    let steady_puts = (etcd_puts(&etcd_url) - puts) / window.as_secs_f64();
    let probes = std::mem::take(&mut state.lock().unwrap().probes);
    let per_node: Vec<String> = (1..=3)
        .map(|n| {
            let from = IpAddr::from([127, 0, 96, n]);
            format!("node{}: {:.0}", n - 1, *probes.get(&from).unwrap_or(&0) as f64 / window.as_secs_f64())
        })
        .collect();
    let total: u64 = probes.values().sum();
    println!(
        "shared, 3 nodes, 10,000 targets every {INTERVAL} s, probers_per_target 2: probes/s {} (all: {:.0}; every node probing every key would be {:.0}); etcd puts/s without flaps {steady_puts:.1}",
        per_node.join(", "),
        total as f64 / window.as_secs_f64(),
        3.0 * 10_000.0 / INTERVAL as f64
    );

    // 1% of the targets flap each interval: 100 more die, and those that died three
    // intervals ago (past fall × interval, so they went down) come back
    let puts = etcd_puts(&etcd_url);
    let started = Instant::now();
    let mut round: usize = 0;
    while started.elapsed() < 2 * window {
        {
            let mut s = state.lock().unwrap();
            s.dead.clear();
            let recent = round.saturating_sub(2)..=round;
            s.dead.extend(recent.flat_map(|r| (0..100).map(move |i| target((r * 100 + i) * 37 % 10_000))));
        }
        round += 1;
        std::thread::sleep(Duration::from_secs(INTERVAL));
    }
    let flapping_puts = (etcd_puts(&etcd_url) - puts) / started.elapsed().as_secs_f64();
    state.lock().unwrap().dead.clear();
    println!("shared: etcd puts/s with 1% of the targets flapping each interval: {flapping_puts:.1}");

    // a backend's death until every node drops it
    std::thread::sleep(Duration::from_secs(2 * INTERVAL));
    let mut samples = Vec::new();
    for run in 0..10 {
        let victim = IpAddr::from([127, 9, 0, 1]);
        wait_until("the victim back on every node", || {
            nodes.iter().all(|n| ask(n.dns, "death.bench.test.").is_some_and(|a| a.contains(&victim.to_string())))
        });
        std::thread::sleep(Duration::from_millis(1000 + run * 379 % 4000));
        state.lock().unwrap().dead.insert(victim);
        let died = Instant::now();
        let gone = |n: &Node| ask(n.dns, "death.bench.test.").is_some_and(|a| !a.contains(&victim.to_string()));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !nodes.iter().all(gone) {
            assert!(Instant::now() < deadline, "the dead backend never left every node");
            std::thread::sleep(Duration::from_millis(10));
        }
        samples.push(died.elapsed());
        state.lock().unwrap().dead.clear();
    }
    samples.sort();
    let s = |d: Duration| d.as_secs_f64();
    println!(
        "shared: a backend's death until every node drops it: min {:.1} s, median {:.1} s, max {:.1} s (goal: within fall × interval + 1 s = {} s)",
        s(samples[0]),
        s(samples[samples.len() / 2]),
        s(samples[samples.len() - 1]),
        FALL * INTERVAL + 1
    );
    drop(nodes);
    for n in 0..3 {
        let log = std::fs::read_to_string(dir.path().join(format!("node{n}.log"))).unwrap_or_default();
        let outages = log.lines().filter(|l| l.contains("store unavailable")).count();
        println!("shared: node{n} logged {outages} store outages");
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
}

//! The etcd store under load (issue: registrations and etcd).
//!
//!   cargo bench --features etcd --bench etcd
//!
//! Starts etcd (127.0.82.1, a temporary data dir, --unsafe-no-fsync) and two steerdns
//! nodes A and B on it (the release binary). 10,000 backends register on A with a 30 s
//! TTL and renew every 10 s, as `steerdns register` does (1,000 renewals/s over 16
//! keep-alive connections). Once B answers all of them, for a 30 s window:
//! - CPU (utime + stime) and RSS of A, B and etcd;
//! - the latency of renewals as the backends see it;
//! - propagation: 150 changes made on A (draining and undraining a target), each timed
//!   from its request to the first answer of B that shows it (B is asked every
//!   millisecond over UDP). Goal: p99 under 500 ms.
//!
//! Needs `etcd` on PATH (Debian's etcd-server). Every address is on 127.0.0.0/8.

mod common;

use common::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TARGETS: usize = 10_000;
const CONNECTIONS: usize = 16;
const TTL: u64 = 30;
const WINDOW: Duration = Duration::from_secs(30);
const ZONE: &str =
    "$ORIGIN bench.test.\n$TTL 300\n@ SOA ns h 1 2 3 4 300\n@ NS ns\nns A 127.0.0.53\nstatic A 127.0.0.80\n";

fn main() {
    steerdns::health::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let etcd_url = format!("http://127.0.82.1:{}", free_port_on("127.0.82.1"));
    let peer = format!("http://127.0.82.1:{}", free_port_on("127.0.82.1"));
    let mut etcd = Command::new("etcd")
        .args(["--name", "b", "--data-dir"])
        .arg(dir.path().join("etcd"))
        .args(["--listen-client-urls", &etcd_url, "--advertise-client-urls", &etcd_url])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("b={peer}"), "--unsafe-no-fsync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd on PATH (Debian package etcd-server)");
    std::fs::write(dir.path().join("bench.zone"), ZONE).unwrap();
    let a = Node::start(dir.path(), "a", &etcd_url);
    let b = Node::start(dir.path(), "b", &etcd_url);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    for node in [&a, &b] {
        wait_until("the node to read etcd", || runtime.block_on(node.store_up(&client)));
    }

    let started = Instant::now();
    let latencies = Arc::new(Latencies::new());
    let renewals: Vec<_> = (0..CONNECTIONS)
        .map(|lane| runtime.spawn(renew_forever(client.clone(), a.admin.clone(), lane, latencies.clone())))
        .collect();
    // a status of 10,000 targets is a few MB: ask once a second
    while runtime.block_on(b.registered(&client)) < TARGETS {
        assert!(started.elapsed() < Duration::from_secs(300), "B never answered every registration");
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("etcd: {TARGETS} registrations on A reached B's answers in {:.1} s", started.elapsed().as_secs_f64());

    latencies.reset();
    let before = [a.pid(), b.pid(), etcd.id()].map(cpu_ticks);
    let window = Instant::now();
    let mut propagation = Vec::new();
    let mut drained = false;
    while window.elapsed() < WINDOW - Duration::from_secs(1) {
        drained = !drained;
        let state = if drained { "drain" } else { "auto" };
        let sent = Instant::now();
        let path = format!("{}/v1/services/flip.bench.test/targets/127.0.0.81/state", a.admin);
        let put = client.put(path).json(&serde_json::json!({ "state": state }));
        assert!(runtime.block_on(put.send()).unwrap().status().is_success());
        loop {
            let answer = ask(b.dns, "flip.bench.test.").unwrap_or_default();
            if answer.contains(&"127.0.0.81".to_string()) != drained {
                break;
            }
            assert!(sent.elapsed() < Duration::from_secs(10), "B never showed the change");
            std::thread::sleep(Duration::from_millis(1));
        }
        propagation.push(sent.elapsed());
        std::thread::sleep(Duration::from_millis(150));
    }
    let elapsed = window.elapsed().as_secs_f64();
    let after = [a.pid(), b.pid(), etcd.id()].map(cpu_ticks);
    let renewed = latencies.count.load(Ordering::Relaxed);
    let failed = latencies.failed.load(Ordering::Relaxed);
    let cpu = |i: usize| (after[i] - before[i]) as f64 / 100.0 / elapsed * 100.0; // USER_HZ = 100
    println!(
        "etcd: {:.0} renewals/s ({failed} failed), renewal latency p50 {:.1} ms, p99 {:.1} ms",
        renewed as f64 / elapsed,
        latencies.percentile(0.50),
        latencies.percentile(0.99)
    );
    println!(
        "etcd: CPU % of a core: A {:.1} ({:.0} µs per renewal), B {:.1}, etcd {:.1}; RSS now/peak: A {:.1}/{:.1} MB, B {:.1}/{:.1} MB",
        cpu(0),
        cpu(0) / 100.0 * elapsed * 1e6 / renewed.max(1) as f64,
        cpu(1),
        cpu(2),
        mb(a.pid(), "VmRSS"),
        mb(a.pid(), "VmHWM"),
        mb(b.pid(), "VmRSS"),
        mb(b.pid(), "VmHWM"),
    );
    propagation.sort();
    let at = |q: f64| propagation[((propagation.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "etcd: propagation A → B over {} changes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; goal: p99 < 500 ms",
        propagation.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    renewals.into_iter().for_each(|r| r.abort());
    drop((a, b));
    let _ = etcd.kill();
    let _ = etcd.wait();
}

fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

fn cpu_ticks(pid: u32) -> u64 {
    let (user, system) = user_sys(pid);
    user + system
}

fn mb(pid: u32, key: &str) -> f64 {
    proc_field(pid, "status", key) as f64 / 1024.0
}

/// A steerdns process on the etcd store; killed when dropped.
struct Node {
    child: Child,
    dns: SocketAddr,
    admin: String,
}

impl Node {
    fn start(dir: &std::path::Path, name: &str, etcd: &str) -> Node {
        let (dns, admin) = (free_port(), free_port());
        let config = format!(
            r#"[server]
listen = ["127.0.0.1:{dns}"]
admin_listen = "127.0.0.1:{admin}"

[store]
backend = "etcd"
endpoints = ["{etcd}"]

[[zones]]
origin = "bench.test."
file = "bench.zone"

[[services]]
name = "reg.bench.test."
max_registrations = {TARGETS}
targets = []

[[services]]
name = "flip.bench.test."
targets = ["127.0.0.81", "127.0.0.82"]
"#
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        Node {
            child: serve(&path),
            dns: SocketAddr::from(([127, 0, 0, 1], dns)),
            admin: format!("http://127.0.0.1:{admin}"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn status(&self, client: &reqwest::Client) -> Option<serde_json::Value> {
        client.get(format!("{}/v1/status", self.admin)).send().await.ok()?.json().await.ok()
    }

    async fn store_up(&self, client: &reqwest::Client) -> bool {
        self.status(client).await.is_some_and(|s| s["store"]["up"] == true)
    }

    /// How many registered targets reg.bench.test. has.
    async fn registered(&self, client: &reqwest::Client) -> usize {
        let Some(status) = self.status(client).await else { return 0 };
        let services = status["services"].as_array().cloned().unwrap_or_default();
        services.iter().find(|s| s["name"] == "reg.bench.test.").map_or(0, |s| s["targets"].as_array().unwrap().len())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers lane `lane`'s share of the targets, then renews each every TTL/3.
async fn renew_forever(client: reqwest::Client, admin: String, lane: usize, latencies: Arc<Latencies>) {
    let addresses: Vec<String> =
        (lane..TARGETS).step_by(CONNECTIONS).map(|i| format!("127.1.{}.{}", i / 250, i % 250 + 1)).collect();
    let url = format!("{admin}/v1/services/reg.bench.test/registrations");
    let mut pace = tokio::time::interval(Duration::from_secs(TTL / 3) / addresses.len() as u32);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for address in addresses.iter().cycle() {
        pace.tick().await;
        let sent = Instant::now();
        let body = serde_json::json!({ "address": address, "ttl_seconds": TTL });
        let ok = client.post(&url).json(&body).send().await.is_ok_and(|r| r.status().is_success());
        latencies.record(ok, sent.elapsed());
    }
}

/// Renewal latencies in 100 µs buckets up to 1 s.
struct Latencies {
    count: AtomicU64,
    failed: AtomicU64,
    buckets: Vec<AtomicU64>,
}

impl Latencies {
    fn new() -> Latencies {
        let buckets = (0..=10_000).map(|_| AtomicU64::new(0)).collect();
        Latencies { count: AtomicU64::new(0), failed: AtomicU64::new(0), buckets }
    }

    fn record(&self, ok: bool, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = (took.as_micros() / 100).min(10_000) as usize;
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.buckets.iter().for_each(|b| b.store(0, Ordering::Relaxed));
    }

    /// In milliseconds.
    fn percentile(&self, q: f64) -> f64 {
        let total: u64 = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen as f64 >= total as f64 * q {
                return i as f64 / 10.0;
            }
        }
        f64::NAN
    }
}

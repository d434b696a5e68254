//! A flood of registrations on the file store (issue: the owner as a pure model, item 9).
//!
//!   cargo bench --bench flood
//!
//! The release binary with `[store] backend = "file"`; 50,000 distinct backends
//! register once (TTL 1 h) over 16 keep-alive connections, as fast as it answers.
//! Printed at each 10,000: the time so far and the bytes the server has written
//! (/proc/PID/io `wchar`), so linear growth shows as equal steps. Goal: all 50,000
//! within a minute. Every address is on 127.0.0.0/8.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOTAL: usize = 50_000;
const STEP: usize = 10_000;
const CONNECTIONS: usize = 16;
const ZONE: &str = "$ORIGIN bench.test.\n$TTL 300\n@ SOA ns h 1 2 3 4 300\n@ NS ns\nns A 127.0.0.53\n";

fn main() {
    steerdns::health::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (dns, admin) = (free_port(), free_port());
    std::fs::write(dir.path().join("bench.zone"), ZONE).unwrap();
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{dns}\"]\nadmin_listen = \"127.0.0.1:{admin}\"\nudp_workers = 1\n\
         [store]\nbackend = \"file\"\npath = \"state/s.json\"\n\
         [[zones]]\norigin = \"bench.test.\"\nfile = \"bench.zone\"\n\
         [[services]]\nname = \"reg.bench.test.\"\nmax_registrations = 100000\nmax_answers = 8\n"
    );
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let mut server = serve(&dir.path().join("c.toml"));
    let base = format!("http://127.0.0.1:{admin}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    wait_until("/healthz 200", || {
        runtime.block_on(client.get(format!("{base}/healthz")).send()).is_ok_and(|r| r.status().is_success())
    });
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let lanes: Vec<_> = (0..CONNECTIONS)
        .map(|_| runtime.spawn(register(client.clone(), base.clone(), next.clone(), done.clone())))
        .collect();
    let wrote = |pid: u32| proc_field(pid, "io", "wchar");
    let before = wrote(server.id());
    for step in (STEP..=TOTAL).step_by(STEP) {
        while done.load(Ordering::Relaxed) < step {
            assert!(started.elapsed() < Duration::from_secs(600), "the flood never finished");
            std::thread::sleep(Duration::from_millis(10));
        }
        let bytes = wrote(server.id()) - before;
        println!(
            "flood: {step} registrations in {:.1} s, {:.1} MB written by the server",
            started.elapsed().as_secs_f64(),
            bytes as f64 / 1e6
        );
    }
    println!("flood: goal: {TOTAL} within 60 s, bytes growing by equal steps");
    lanes.into_iter().for_each(|l| l.abort());
    let _ = server.kill();
    let _ = server.wait();
}

/// Registers addresses until TOTAL have been handed out.
async fn register(client: reqwest::Client, base: String, next: Arc<AtomicUsize>, done: Arc<AtomicUsize>) {
    let url = format!("{base}/v1/services/reg.bench.test/registrations");
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= TOTAL {
            return;
        }
        let address = format!("127.{}.{}.{}", 10 + i / 65536, (i / 256) % 256, i % 256);
        let body = serde_json::json!({ "address": address, "ttl_seconds": 3600 });
        let reply = client.post(&url).json(&body).send().await.expect("the server answers");
        assert!(reply.status().is_success(), "{address}: {}", reply.status());
        done.fetch_add(1, Ordering::Relaxed);
    }
}

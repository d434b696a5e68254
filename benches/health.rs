//! Health-check benchmarks (issue: health checks and live answers).
//!
//!   cargo bench --bench health -- [failover] [scale] [callgrind]
//!
//! failover:  time from a backend's death (refused, or hanging) to the first DNS answer
//!            without it, interval 250 ms, timeout 200 ms, fall 2; 20 runs each.
//! scale:     10,000 targets probed every 10 s (1,000 probes/s) against one HTTP
//!            listener on a wildcard port (every 127.x address reaches it): the
//!            server's CPU µs per probe and its peak RSS. With PEER=gdnsd, gdnsd 3's
//!            http_status monitor on the same addresses next, measured the same way.
//! callgrind: instructions per query of the UDP worker thread (valgrind --tool=callgrind
//!            --separate-threads=yes) with and without those 10,000 probes running.
//! reports:   1,000 targets (10 weighted services of 100) probed every second by
//!            kind = "agent", each reporting a new percentage every second, against the
//!            same targets reporting a steady 100%: View rebuilds per second, the
//!            server's CPU without queries, and under dnsperf at 10,000 queries/s the
//!            server CPU per query, the latency and the queries lost.
//!
//! steerdns runs as its own process (the release binary); everything is on 127.0.0.0/8.
//! Each probe leaves a TIME_WAIT socket for a minute: start `scale` on a quiet machine
//! (`ss -s`), since tens of thousands left by a previous run make connects dearer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ZONE: &str =
    "$ORIGIN bench.test.\n$TTL 300\n@ SOA ns h 1 2 3 4 300\n@ NS ns\nns A 127.0.0.53\nstatic A 127.0.0.80\n";

mod common;

use common::*;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = args.is_empty();
    if all || args.iter().any(|a| a == "failover") {
        failover();
    }
    if all || args.iter().any(|a| a == "scale") {
        scale();
    }
    if all || args.iter().any(|a| a == "callgrind") {
        callgrind();
    }
    if all || args.iter().any(|a| a == "reports") {
        reports();
    }
}

fn workdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steerdns-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bench.zone"), ZONE).unwrap();
    dir
}

/// A backend at `addr` that answers 200 until `alive` is false; then, when `hang`,
/// it accepts and never answers, else it closes its listener (connections refused).
fn backend(addr: SocketAddr, alive: Arc<AtomicBool>, hang: bool) {
    std::thread::spawn(move || {
        let mut listener: Option<TcpListener> = None;
        loop {
            let up = alive.load(Ordering::SeqCst);
            if !up && !hang {
                listener = None;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let l = listener.get_or_insert_with(|| {
                let l = TcpListener::bind(addr).unwrap();
                l.set_nonblocking(true).unwrap();
                l
            });
            match l.accept() {
                Ok((mut stream, _)) if up => {
                    stream.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 2048];
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
                }
                Ok((stream, _)) => std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(2));
                    drop(stream);
                })
                .join()
                .map_or((), |_| ()),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
}

fn failover() {
    for hang in [false, true] {
        let dir = workdir();
        let (dns, http) = (free_port(), free_port());
        let config = dir.join("failover.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = [\"127.0.0.1:{dns}\"]\nadmin_listen = \"127.0.0.1:{}\"\n[store]\nbackend = \"memory\"\n\
                 [[zones]]\norigin = \"bench.test.\"\nfile = \"bench.zone\"\n\
                 [checks.web]\nport = {http}\ninterval = \"250ms\"\ntimeout = \"200ms\"\nfall = 2\nrise = 1\n\
                 [[services]]\nname = \"f.bench.test.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [\"127.0.20.1\", \"127.0.20.2\"]\n",
                free_port()
            ),
        )
        .unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        backend(SocketAddr::from(([127, 0, 20, 1], http)), alive.clone(), hang);
        backend(SocketAddr::from(([127, 0, 20, 2], http)), Arc::new(AtomicBool::new(true)), false);
        let mut server = serve(&config);
        let addr = SocketAddr::from(([127, 0, 0, 1], dns));
        let has = |ip: &str| ask(addr, "f.bench.test.").is_some_and(|a| a.iter().any(|x| x == ip));
        let mut samples = Vec::new();
        for run in 0..20u64 {
            wait_until("target up", || has("127.0.20.1"));
            // die at a different point of the probe cycle each run
            std::thread::sleep(Duration::from_millis(300 + run * 37 % 250));
            alive.store(false, Ordering::SeqCst);
            let died = Instant::now();
            wait_until("target gone", || !has("127.0.20.1"));
            samples.push(died.elapsed());
            alive.store(true, Ordering::SeqCst);
        }
        server.kill().unwrap();
        let _ = server.wait();
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "failover ({}): min {:.0} ms, median {:.0} ms, p90 {:.0} ms, max {:.0} ms; goal: within fall × interval + timeout + 50 ms = 750 ms",
            if hang { "backend hangs: probes time out" } else { "backend refuses connections" },
            ms(samples[0]),
            ms(samples[samples.len() / 2]),
            ms(samples[samples.len() * 9 / 10]),
            ms(samples[samples.len() - 1])
        );
    }
}

/// One listener on 0.0.0.0:`port`, so every 127.x address reaches it, on a thread of
/// its own; `answer` writes each connection's reply.
fn wildcard<F, A>(port: u16, answer: F)
where
    F: Fn(tokio::net::TcpStream) -> A + Send + 'static,
    A: std::future::Future<Output = ()> + Send + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await.unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                tokio::spawn(answer(stream));
            }
        });
    });
}

/// One HTTP listener on 0.0.0.0:`port` answering 200 to every 127.x address; counts requests.
fn wildcard_backend(port: u16) -> Arc<AtomicU64> {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    wildcard(port, move |mut stream| {
        let counter = counter.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK").await;
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    hits
}

/// The fast-path services, plus (when `probes`) 10,000 probed targets in 100 services.
fn probes_config(dir: &Path, dns: u16, http: u16, probes: bool) -> PathBuf {
    let mut text = format!(
        "[server]\nlisten = [\"127.0.0.1:{dns}\"]\nudp_workers = 1\n[[zones]]\norigin = \"bench.test.\"\nfile = \"bench.zone\"\n\
         [[services]]\nname = \"all.bench.test.\"\ntargets = [\"127.0.3.1\", \"127.0.3.2\", \"127.0.3.3\", \"127.0.3.4\"]\n"
    );
    if probes {
        text.push_str(&format!("[checks.web]\nport = {http}\ninterval = \"10s\"\ntimeout = \"2s\"\n"));
        for s in 0..100 {
            let targets: Vec<String> = (0..100).map(|t| format!("\"127.1.{s}.{}\"", t + 1)).collect();
            text.push_str(&format!(
                "[[services]]\nname = \"s{s}.bench.test.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [{}]\n",
                targets.join(", ")
            ));
        }
    }
    let path = dir.join(if probes { "probes.toml" } else { "plain.toml" });
    std::fs::write(&path, text).unwrap();
    path
}

fn scale() {
    let dir = workdir();
    let (dns, http) = (free_port(), free_port());
    let hits = wildcard_backend(http);
    let config = probes_config(&dir, dns, http, true);
    let mut server = serve(&config);
    measure_probes("scale: steerdns", server.id(), &hits);
    assert!(ask(SocketAddr::from(([127, 0, 0, 1], dns)), "s1.bench.test.").is_some_and(|a| a.len() == 8));
    server.kill().unwrap();
    let _ = server.wait();
    if std::env::var("PEER").is_ok_and(|p| p == "gdnsd") {
        let mut gdnsd = gdnsd_probing(&dir, free_port(), http);
        measure_probes("scale: gdnsd http_status", gdnsd.id(), &hits);
        gdnsd.kill().unwrap();
        let _ = gdnsd.wait();
    }
}

/// After two rounds of probes, the CPU per probe of `pid` over 30 s of them.
fn measure_probes(label: &str, pid: u32, hits: &AtomicU64) {
    // every key starts within its first second (gdnsd: within its interval), then
    // every 10 s: let two rounds pass
    std::thread::sleep(Duration::from_secs(22));
    let (ticks, probes) = (user_sys(pid).0 + user_sys(pid).1, hits.load(Ordering::Relaxed));
    let (user0, sys0) = user_sys(pid);
    let window = Duration::from_secs(30);
    std::thread::sleep(window);
    let ticks = user_sys(pid).0 + user_sys(pid).1 - ticks;
    let probes = hits.load(Ordering::Relaxed) - probes;
    let hz = 100.0; // USER_HZ on Linux
    let cpu_us = ticks as f64 / hz * 1e6;
    println!(
        "{label}: 10,000 targets every 10 s: {:.0} probes/s, {:.1} µs server CPU per probe ({:.1} user, {:.1} system; {:.1}% of a core), peak RSS {:.1} MB; goals: ≤ 100 µs, < 100 MB",
        probes as f64 / window.as_secs_f64(),
        cpu_us / probes.max(1) as f64,
        (user_sys(pid).0 - user0) as f64 / hz * 1e6 / probes.max(1) as f64,
        (user_sys(pid).1 - sys0) as f64 / hz * 1e6 / probes.max(1) as f64,
        cpu_us / window.as_secs_f64() / 1e4,
        proc_field(pid, "status", "VmHWM") as f64 / 1024.0
    );
}

/// gdnsd 3 (Debian package gdnsd) probing the same 10,000 addresses with its
/// http_status monitor, every 10 s: 1,000 multifo resources of 10 addresses each.
fn gdnsd_probing(dir: &Path, dns: u16, http: u16) -> std::process::Child {
    let root = dir.join("gdnsd");
    std::fs::create_dir_all(root.join("zones")).unwrap();
    let mut resources = String::new();
    for r in 0..1000 {
        let addresses: Vec<String> =
            (0..10).map(|a| format!("a{a} => 127.1.{}.{}", r / 10, (r % 10) * 10 + a + 1)).collect();
        resources.push_str(&format!("    r{r} => {{ {} }}\n", addresses.join(", ")));
    }
    let config = format!(
        "options => {{\n  listen => [ 127.0.0.1 ], dns_port => {dns}, udp_threads => 1, tcp_threads => 1,\n  \
         run_dir => {run}, state_dir => {state}\n}}\n\
         service_types => {{ web => {{ plugin => http_status, port => {http}, url_path => \"/health\", interval => 10, timeout => 2 }} }}\n\
         plugins => {{ multifo => {{\n  service_types => web\n{resources}}} }}\n",
        run = root.join("run").display(),
        state = root.join("state").display(),
    );
    std::fs::write(root.join("config"), config).unwrap();
    std::fs::write(root.join("zones/bench.test"), format!("{ZONE}s1 30 DYNA multifo!r1\n")).unwrap();
    let child = Command::new("gdnsd")
        .args(["-c"])
        .arg(&root)
        .args(["-f", "start"])
        .stderr(Stdio::null())
        .spawn()
        .expect("gdnsd (Debian package gdnsd)");
    wait_until("gdnsd answers", || ask(SocketAddr::from(([127, 0, 0, 1], dns)), "s1.bench.test.").is_some());
    child
}

/// Instructions per query of the UDP worker thread, with and without the probes.
fn callgrind() {
    let dir = workdir();
    let http = free_port();
    let _hits = wildcard_backend(http);
    let mut results = Vec::new();
    for probes in [false, true] {
        let dns = free_port();
        let config = probes_config(&dir, dns, http, probes);
        let out = dir.join(format!("cg-{probes}"));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let mut server = Command::new("valgrind")
            .args(["--tool=callgrind", "--separate-threads=yes"])
            .arg(format!("--callgrind-out-file={}/cg.%p", out.display()))
            .args([BIN, "serve", "--config"])
            .arg(&config)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], dns));
        wait_until("server under valgrind answers", || ask(addr, "all.bench.test.").is_some());
        std::thread::sleep(Duration::from_secs(if probes { 15 } else { 2 }));
        let pid = server.id().to_string();
        let queries = dir.join("q");
        std::fs::write(&queries, "all.bench.test A\n").unwrap();
        let dnsperf = |n: &str| {
            let out = Command::new("dnsperf")
                .args(["-s", "127.0.0.1", "-p", &dns.to_string(), "-n", n, "-Q", "1000", "-t", "10", "-d"])
                .arg(&queries)
                .output()
                .expect("dnsperf (Debian package dnsperf)");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .find(|l| l.contains("Queries completed:"))
                .unwrap()
                .split_whitespace()
                .nth(2)
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        dnsperf("200");
        Command::new("callgrind_control").args(["-z", &pid]).output().unwrap();
        let completed = dnsperf("5000");
        Command::new("callgrind_control").args(["-d", &pid]).output().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let instructions = worker_instructions(&out);
        server.kill().unwrap();
        let _ = server.wait();
        println!(
            "callgrind, {}: {:.0} instructions per query in the UDP worker ({completed} queries)",
            if probes { "10,000 probes running" } else { "no probes" },
            instructions / completed
        );
        results.push(instructions / completed);
    }
    println!(
        "callgrind: probes add {:+.1}% instructions per query (goal: at most +5%)",
        (results[1] / results[0] - 1.0) * 100.0
    );
}

/// The Ir total of the dumped thread that ran the UDP worker loop.
fn worker_instructions(dir: &Path) -> f64 {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // the worker thread is the one that calls recvmmsg (Rust names are compressed away)
        if path.to_string_lossy().contains(".1-")
            && text.contains("recvmmsg")
            && let Some(total) = text.lines().find(|l| l.starts_with("totals:"))
        {
            return total.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("no callgrind dump of the UDP worker in {}", dir.display());
}

/// One agent listener on 0.0.0.0:`port` for every 127.x address: each connection gets
/// "up N%" with N from the address it reached and, when `changing`, the current
/// second (so every target reports a new weight every second).
fn wildcard_agent(port: u16, changing: bool) {
    wildcard(port, move |mut stream| async move {
        use tokio::io::AsyncWriteExt;
        let seed = match stream.local_addr() {
            Ok(SocketAddr::V4(a)) => u64::from(u32::from(*a.ip())),
            _ => 0,
        };
        let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let percent = if changing { 1 + (seed * 7 + second * 13) % 100 } else { 100 };
        let _ = stream.write_all(format!("up {percent}%\n").as_bytes()).await;
    });
}

/// A counter or gauge from `GET /metrics` of the admin API at `admin`.
fn metric(admin: SocketAddr, name: &str) -> f64 {
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let line = text.lines().find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '));
    line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {name}"))
}

fn reports() {
    let dir = workdir();
    let mut per_query = Vec::new();
    for changing in [false, true] {
        let (dns, agent, admin) = (free_port(), free_port(), free_port());
        wildcard_agent(agent, changing);
        let mut text = format!(
            "[server]\nlisten = [\"127.0.0.1:{dns}\"]\nadmin_listen = \"127.0.0.1:{admin}\"\nudp_workers = 1\n\
             [store]\nbackend = \"memory\"\n[[zones]]\norigin = \"bench.test.\"\nfile = \"bench.zone\"\n\
             [checks.agent]\nkind = \"agent\"\nport = {agent}\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
        );
        for s in 0..10 {
            let targets: Vec<String> = (0..100).map(|t| format!("\"127.2.{s}.{}\"", t + 1)).collect();
            text.push_str(&format!(
                "[[services]]\nname = \"w{s}.bench.test.\"\npolicy = \"healthy\"\norder = \"weighted\"\ncheck = \"agent\"\ntargets = [{}]\n",
                targets.join(", ")
            ));
        }
        let config = dir.join(format!("reports-{changing}.toml"));
        std::fs::write(&config, text).unwrap();
        let mut server = serve(&config);
        let (pid, admin) = (server.id(), SocketAddr::from(([127, 0, 0, 1], admin)));
        wait_until("the server answers", || ask(SocketAddr::from(([127, 0, 0, 1], dns)), "w0.bench.test.").is_some());
        std::thread::sleep(Duration::from_secs(3));
        // without queries: what the reports alone cost
        let window = Duration::from_secs(10);
        let ticks = |pid: u32| user_sys(pid).0 + user_sys(pid).1;
        let (rebuilds, cpu) = (metric(admin, "steerdns_view_rebuilds_total"), ticks(pid));
        std::thread::sleep(window);
        let rebuilds = (metric(admin, "steerdns_view_rebuilds_total") - rebuilds) / window.as_secs_f64();
        let idle = (ticks(pid) - cpu) as f64 / 100.0 / window.as_secs_f64();
        // with queries at a fixed rate
        let queries = dir.join("reports-queries");
        let names: Vec<String> = (0..10).map(|s| format!("w{s}.bench.test A")).collect();
        std::fs::write(&queries, names.join("\n") + "\n").unwrap();
        let cpu = ticks(pid);
        let out = Command::new("dnsperf")
            .args(["-s", "127.0.0.1", "-p", &dns.to_string(), "-l", "10", "-Q", "10000", "-d"])
            .arg(&queries)
            .output()
            .expect("dnsperf (Debian package dnsperf)");
        let busy = (ticks(pid) - cpu) as f64 / 100.0;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let field = |label: &str| {
            let line = text.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("dnsperf said: {text}"));
            line.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse::<f64>().unwrap()
        };
        let (completed, lost, latency) =
            (field("Queries completed"), field("Queries lost"), field("Average Latency (s)") * 1e6);
        let seconds = field("Run time (s)");
        let query_us = (busy - idle * seconds) / completed * 1e6;
        server.kill().unwrap();
        let _ = server.wait();
        let label = if changing { "every report changing each second" } else { "steady reports (100%)" };
        println!(
            "reports, 1,000 agent targets, {label}: {rebuilds:.0} View rebuilds/s, {:.1}% of a core without queries; \
             at 10,000 q/s: {:.2} µs server CPU per query beyond that, average latency {latency:.0} µs, {lost:.0} of {:.0} lost",
            idle * 100.0,
            query_us,
            completed + lost
        );
        per_query.push(query_us);
    }
    println!(
        "reports: changing weights cost the query path {:.2}× its steady CPU per query",
        per_query[1] / per_query[0]
    );
}

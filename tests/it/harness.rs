//! Starts a real steerdns in-process on 127.0.0.1 port 0 and queries it over real UDP
//! and TCP sockets, with hickory-proto as the client's codec.

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;
use steerdns::app::App;
use steerdns::server::Listeners;
use tokio_util::sync::CancellationToken;

pub const ZONE: &str = include_str!("../../zones/lb.example.zone");

/// A running server; stopped when dropped.
pub struct TestServer {
    /// The first listen address; `addrs` has them all.
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    /// DNS over TLS addresses (`tls_listen`, port 0 bound to a free port).
    pub tls_addrs: Vec<SocketAddr>,
    /// The admin API's base URL.
    pub admin: String,
    state: steerdns::state::StateHandle,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Serves `config` (TOML; `zones/lb.example.zone` is available as `lb.example.zone`).
    pub fn start(config: &str) -> TestServer {
        Self::with_files(config, &[("lb.example.zone", ZONE)])
    }

    /// Serves `config` from a directory that also holds `files` (name, content).
    pub fn with_files(config: &str, files: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let path = dir.path().join("steerdns.toml");
        std::fs::write(&path, config).unwrap();
        Self::start_file(dir, path)
    }

    pub fn start_file(dir: tempfile::TempDir, path: PathBuf) -> TestServer {
        Self::start_on(dir, path, &["127.0.0.1:0".parse().unwrap()])
    }

    /// Serves the config at `path` on `listen` (port 0: a free port each).
    pub fn start_on(dir: tempfile::TempDir, path: PathBuf, listen: &[SocketAddr]) -> TestServer {
        let loaded = steerdns::loaded::load(&path).unwrap_or_else(|e| panic!("config does not load:\n{e}"));
        let tls = &loaded.config.server.tls_listen;
        let loaded_https = loaded.config.server.admin_tls.is_some();
        let listeners = Listeners::bind(listen, 2)
            .unwrap()
            .with_tls(tls)
            .unwrap()
            .with_admin("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let tls_addrs = listeners.tls_addrs();
        let admin = format!("http://{}", listeners.admin_addr().unwrap());
        let addrs = listeners.local_addrs();
        let addr = addrs[0];
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let app = App::new(loaded).unwrap();
        let state = app.handle();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(app.run(listeners, token)).unwrap();
        });
        let https = loaded_https;
        let server = TestServer { addr, addrs, tls_addrs, admin, state, _dir: dir, shutdown, thread: Some(thread) };
        // over HTTPS, the test waits in its own way
        if !https {
            server.wait_ready();
        }
        server
    }

    /// Waits for /healthz 200: every probe has its first verdict and the store has
    /// answered (or `startup_wait` has passed).
    pub fn wait_ready(&self) {
        wait_ready(&self.admin);
    }

    /// The quickstart's services and zone.
    pub fn quickstart() -> TestServer {
        Self::start(&quickstart_config())
    }

    /// The directory holding the config (`steerdns.toml`) and its files.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Reloads the server with `config`, as SIGHUP does.
    pub fn reload(&self, config: &str) -> Result<(), steerdns::state::ReloadError> {
        let path = self._dir.path().join("steerdns.toml");
        std::fs::write(&path, config).unwrap();
        self.state.reload_blocking(steerdns::loaded::load(&path).unwrap())
    }

    pub fn udp(&self, query: &Message) -> Message {
        udp_exchange(self.addr, query).expect("a UDP reply")
    }

    pub fn tcp(&self, query: &Message) -> Message {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp_send(&mut stream, &query.to_vec().unwrap());
        Message::from_vec(&tcp_read(&mut stream).expect("a TCP reply")).unwrap()
    }

    /// A plain query over UDP.
    pub fn ask(&self, name: &str, rtype: RecordType) -> Message {
        self.udp(&query(name, rtype))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn quickstart_config() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.toml"))
        .unwrap()
        .edit("../zones/lb.example.zone", "lb.example.zone")
        // a short stop (its grace is a tenth of this) keeps the suite quick
        .edit("shutdown_timeout = \"5s\"", "shutdown_timeout = \"500ms\"")
}

/// Sends raw bytes over UDP; the reply's bytes, or None after a short wait.
pub fn udp_raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(bytes, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    socket.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

pub fn udp_exchange(addr: SocketAddr, query: &Message) -> Option<Message> {
    // a lost datagram on a loaded machine is retried, as a resolver would
    (0..3)
        .find_map(|_| udp_raw(addr, &query.to_vec().unwrap(), Duration::from_secs(2)))
        .map(|b| Message::from_vec(&b).unwrap())
}

pub fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
    stream.write_all(bytes).unwrap();
}

pub fn tcp_read(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// A query with RD set, no EDNS.
pub fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m
}

pub fn query_class(name: &str, rtype: RecordType, class: DNSClass) -> Message {
    let mut m = query(name, rtype);
    m.queries[0].set_query_class(class);
    m
}

/// Adds an OPT with `payload`.
pub fn with_edns(mut m: Message, payload: u16) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    m.set_edns(e);
    m
}

/// Adds an OPT carrying ECS `net/prefix`.
pub fn with_ecs(m: Message, net: &str) -> Message {
    let mut m = with_edns(m, 1232);
    let subnet: ClientSubnet = net.parse().unwrap();
    m.edns.as_mut().unwrap().options_mut().insert(EdnsOption::Subnet(subnet));
    m
}

/// The ECS option of a reply: (address, source, scope).
pub fn ecs_of(m: &Message) -> Option<(IpAddr, u8, u8)> {
    match m.edns.as_ref()?.option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.addr(), s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}

/// The addresses of the answer section, in order.
pub fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

pub fn types(records: &[Record]) -> Vec<RecordType> {
    records.iter().map(Record::record_type).collect()
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(4242);
    NEXT.fetch_add(7919, Ordering::Relaxed)
}

/// Hand-built queries for the cases a well-behaved codec will not produce.
pub mod raw {
    /// Wire form of a name ("a.b." → 1a1b0).
    pub fn name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    /// An OPT record: owner, payload, version, flags and option bytes.
    pub fn opt(owner: &[u8], version: u8, options: &[u8]) -> Vec<u8> {
        let mut out = owner.to_vec();
        out.extend_from_slice(&[0, 41, 0x04, 0xd0, 0, version, 0, 0]);
        out.extend_from_slice(&(options.len() as u16).to_be_bytes());
        out.extend_from_slice(options);
        out
    }

    /// An ECS option with raw family, source, scope and address bytes.
    pub fn ecs(family: u16, source: u8, address: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 8];
        out.extend_from_slice(&(4 + address.len() as u16).to_be_bytes());
        out.extend_from_slice(&family.to_be_bytes());
        out.extend_from_slice(&[source, 0]);
        out.extend_from_slice(address);
        out
    }

    /// A query: header with `flags` and counts, the questions, then the given answer,
    /// authority and additional records (already encoded).
    pub fn query(flags: u16, questions: &[(&str, u16, u16)], sections: [&[Vec<u8>]; 3]) -> Vec<u8> {
        let mut out = vec![0x12, 0x34];
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&(questions.len() as u16).to_be_bytes());
        for s in sections {
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        }
        for (n, t, c) in questions {
            out.extend(name(n));
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&c.to_be_bytes());
        }
        for s in sections {
            for r in s {
                out.extend_from_slice(r);
            }
        }
        out
    }

    /// (rcode incl. extended bits, flags word, qdcount, ancount, arcount) of a reply.
    pub fn summary(reply: &[u8]) -> (u16, u16, u16, u16, u16) {
        let m = hickory_proto::op::Message::from_vec(reply).unwrap();
        let word = |i: usize| u16::from_be_bytes([reply[i], reply[i + 1]]);
        (u16::from(m.metadata.response_code), word(2), word(4), word(6), word(10))
    }
}

/// The additional section without the OPT (hickory keeps OPT apart already).
pub fn additional_only(m: &Message) -> Message {
    let mut out = Message::query();
    out.answers = m.additionals.clone();
    out
}

/// One HTTP/1.1 request over a real socket: (status, body).
pub fn http(base: &str, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
    try_http(base, method, path, body, token).unwrap_or_else(|e| panic!("{method} {base}{path}: {e}"))
}

/// [`http`], for a server that may be going away: an error instead of a panic.
pub fn try_http(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let authority = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    let status = status.ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

/// A server process, killed when dropped (so a failing test leaves none behind).
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on `dir/c.toml` with free ports; (server, DNS address, admin URL).
pub fn spawn(dir: &std::path::Path) -> (Server, std::net::SocketAddr, String) {
    let p = Process::start(dir, &[]);
    (p.server, p.dns, p.admin)
}

/// The binary running on `dir/c.toml`, its stderr lines kept for the test to read.
pub struct Process {
    pub server: Server,
    pub dns: SocketAddr,
    pub admin: String,
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts it with `env` added, once /healthz says it is ready.
    pub fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Process {
        let p = Self::starting(dir, env);
        wait_ready(&p.admin);
        p
    }

    /// Starts it with `env` added, once it has logged its addresses (it may not be
    /// ready yet).
    pub fn starting(dir: &std::path::Path, env: &[(&str, &str)]) -> Process {
        let (server, stderr) = Self::child(dir, env);
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (dns, admin) = addresses_from(stderr, Some(lines.clone()));
        Process { server, dns, admin, lines }
    }

    /// The child with its stderr piped.
    pub fn child(dir: &std::path::Path, env: &[(&str, &str)]) -> (Server, std::process::ChildStderr) {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_steerdns"))
            .args(["serve", "--config"])
            .arg(dir.join("c.toml"))
            .env("STEERDNS_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        (Server(child), stderr)
    }

    /// Whether a line of its stderr so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

/// Reads stderr until the DNS and admin addresses are logged; then keeps reading into
/// `keep` (or drops the lines), so the child never blocks on a full pipe.
pub fn addresses_from(
    stderr: std::process::ChildStderr,
    keep: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
) -> (SocketAddr, String) {
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(stderr).lines();
    let (mut dns, mut admin) = (None, None);
    while dns.is_none() || admin.is_none() {
        let line = lines.next().expect("the server logs its addresses").unwrap();
        // a JSON log line ([log] format = "json"): its message
        let message = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| line.clone());
        let line_text = line;
        let line = message;
        if let Some(rest) = line.split("admin API on ").nth(1) {
            admin = Some(rest.trim().to_string());
        }
        if let Some(rest) = line.split("serving DNS on ").nth(1) {
            dns = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
        }
        if let Some(keep) = &keep {
            keep.lock().unwrap().push(line_text);
        }
    }
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(keep) = &keep {
                keep.lock().unwrap().push(line);
            }
        }
    });
    (dns.unwrap(), admin.unwrap())
}

pub fn quickstart_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.example.zone"), ZONE).unwrap();
    let config = quickstart_config()
        .edit("127.0.0.1:5353\"]", "127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"")
        .edit("shutdown_timeout = \"500ms\"", "shutdown_timeout = \"3s\"");
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    dir
}

/// Polls `condition` every 20 ms until it holds; fails naming `what` after 30 s (a
/// generous deadline: the machines are shared and noisy).
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The status document (`GET /v1/status`), asserting its 200.
pub fn status_of(admin: &str) -> steerdns::api::Status {
    let (code, body) = http(admin, "GET", "/v1/status", None, None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits for `child` to exit; its exit status.
pub fn exit_status(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    eventually("the process to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// A target's row in the status document, once the published snapshot has it.
pub fn target_status(admin: &str, service: &str, address: &str) -> steerdns::api::TargetStatus {
    let find = || {
        let status = status_of(admin);
        let s = status.services.into_iter().find(|s| s.name == service)?;
        s.targets.into_iter().find(|t| t.address.to_string() == address)
    };
    eventually(&format!("{address} of {service} in the status"), || find().is_some());
    find().unwrap()
}

/// Polls /healthz until it says 200 (it says 503 `starting` until then).
pub fn wait_ready(admin: &str) {
    eventually("/healthz 200", || {
        let (code, body) = http(admin, "GET", "/healthz", None, None);
        assert!(code == 200 || (code == 503 && body.contains("starting")), "{code} {body}");
        code == 200
    });
}

/// GET `path`, asserting its 200; the body.
pub fn get_ok(admin: &str, path: &str) -> String {
    let (code, body) = http(admin, "GET", path, None, None);
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}

/// Config edits that fail loudly: an edit whose text is no longer there is a broken
/// test, not a test of the unedited config.
pub trait Edit {
    fn edit(&self, from: &str, to: &str) -> String;
}

impl Edit for str {
    fn edit(&self, from: &str, to: &str) -> String {
        assert!(self.contains(from), "the config no longer holds {from:?}:\n{self}");
        self.replace(from, to)
    }
}

/// A TCP connection from `from` (a loopback address of the test's own) to `to`.
pub fn tcp_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from.parse().unwrap(), 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream
}

/// Sends raw bytes as one TCP message; the reply's bytes.
pub fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp_send(&mut stream, bytes);
    tcp_read(&mut stream).expect("a TCP reply")
}

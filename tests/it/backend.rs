//! Real HTTP(S) and TCP backends for health-check tests, on distinct 127.0.0.x
//! addresses, whose behaviour a test switches while they run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a backend answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// A status line and body.
    Status(u16, &'static str),
    /// 302 to another path.
    Redirect,
    /// Accepts, reads the request and never answers.
    Hang,
    /// Answers bytes that are not HTTP.
    Garbage,
    /// 200 with an endless body.
    Endless,
    /// Headers announcing a body that never comes; the connection stays open.
    NeverCloses,
    /// Not listening: connections are refused.
    Down,
    /// This many `100 Continue` responses (until the probe hangs up), then 200 "OK".
    Informational(usize),
    /// 200 with a 20 KiB header.
    HugeHead,
    /// 200 with this body, chunked.
    Chunked(&'static str),
    /// 200 "OK" with this `X-Steer-Agent` header (SPEC §9).
    Agent(String),
}

/// Connections by source address, and the sources whose connections are closed at
/// once (a broken path from one node).
#[derive(Default)]
struct Peers {
    seen: std::collections::BTreeMap<std::net::IpAddr, usize>,
    refused: Vec<std::net::IpAddr>,
}

/// A backend on a real socket.
pub struct Backend {
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
    last_request: Arc<Mutex<String>>,
    last_peer: Arc<Mutex<Option<SocketAddr>>>,
    peers: Arc<Mutex<Peers>>,
    stop: Arc<AtomicBool>,
    fail_next: Arc<AtomicUsize>,
}

impl Backend {
    /// An HTTP backend on `ip` and `port` (0: chosen by the system), answering in `mode`.
    pub fn http(ip: &str, port: u16, mode: Mode) -> Backend {
        let listener = TcpListener::bind((ip, port)).unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Backend {
            addr,
            mode: Arc::new(Mutex::new(mode)),
            hits: Arc::default(),
            last_request: Arc::default(),
            last_peer: Arc::default(),
            peers: Arc::default(),
            stop: Arc::default(),
            fail_next: Arc::default(),
        };
        let shared = Shared {
            mode: backend.mode.clone(),
            hits: backend.hits.clone(),
            last: backend.last_request.clone(),
            peer: backend.last_peer.clone(),
            peers: backend.peers.clone(),
            stop: backend.stop.clone(),
            fail_next: backend.fail_next.clone(),
        };
        std::thread::spawn(move || serve(Some(listener), addr, shared));
        backend
    }

    /// Answers the next `n` requests with 500, then goes back to its mode.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last_request(&self) -> String {
        self.last_request.lock().unwrap().clone()
    }

    /// Where the last connection came from.
    pub fn last_peer(&self) -> Option<SocketAddr> {
        *self.last_peer.lock().unwrap()
    }

    /// Closes connections from `source` at once, unanswered.
    #[cfg(feature = "etcd")]
    pub fn refuse_from(&self, source: &str) {
        self.peers.lock().unwrap().refused.push(source.parse().unwrap());
    }

    /// Connections by source address since the last call.
    #[cfg(feature = "etcd")]
    pub fn take_peers(&self) -> std::collections::BTreeMap<std::net::IpAddr, usize> {
        std::mem::take(&mut self.peers.lock().unwrap().seen)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// What the accept loop and the connection threads share with the test.
#[derive(Clone)]
struct Shared {
    mode: Arc<Mutex<Mode>>,
    hits: Arc<AtomicUsize>,
    last: Arc<Mutex<String>>,
    peer: Arc<Mutex<Option<SocketAddr>>>,
    peers: Arc<Mutex<Peers>>,
    stop: Arc<AtomicBool>,
    fail_next: Arc<AtomicUsize>,
}

/// Accepts while the mode is not Down; closes the listener while it is (so connects
/// are refused) and binds the same address again when it comes back.
fn serve(mut listener: Option<TcpListener>, addr: SocketAddr, shared: Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let current = shared.mode.lock().unwrap().clone();
        if current == Mode::Down {
            listener = None;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let l = listener.get_or_insert_with(|| TcpListener::bind(addr).expect("rebind the backend's address"));
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((stream, peer)) => {
                *shared.peer.lock().unwrap() = Some(peer);
                let mut peers = shared.peers.lock().unwrap();
                *peers.seen.entry(peer.ip()).or_default() += 1;
                if peers.refused.contains(&peer.ip()) {
                    continue; // closed at once: this source's path is broken
                }
                drop(peers);
                let shared = shared.clone();
                std::thread::spawn(move || answer(stream, current, &shared));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn answer(mut stream: TcpStream, mode: Mode, shared: &Shared) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = read_head(&mut stream);
    *shared.last.lock().unwrap() = request;
    shared.hits.fetch_add(1, Ordering::SeqCst);
    let fail = shared.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let mode = if fail { Mode::Status(500, "failing on purpose") } else { mode };
    let _ = respond(&mut stream, &mode, &shared.stop);
}

fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn respond(stream: &mut impl Write, mode: &Mode, stop: &AtomicBool) -> std::io::Result<()> {
    let linger = |stop: &AtomicBool| {
        for _ in 0..600 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    match mode {
        Mode::Status(code, body) => {
            write!(stream, "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
        }
        Mode::Redirect => {
            write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        }
        Mode::Hang => {
            linger(stop);
            Ok(())
        }
        Mode::Garbage => stream.write_all(b"\x00\x01garbage that is not HTTP\r\n\xff\xfe\r\n\r\n"),
        Mode::Endless => {
            write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let chunk = [b'x'; 16384];
            for _ in 0..4096 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                stream.write_all(&chunk)?;
            }
            Ok(())
        }
        Mode::NeverCloses => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")?;
            stream.flush()?;
            linger(stop);
            Ok(())
        }
        Mode::Down => Ok(()),
        Mode::Informational(n) => {
            for _ in 0..*n {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
        }
        Mode::HugeHead => {
            let big = "a".repeat(20 * 1024);
            write!(stream, "HTTP/1.1 200 OK\r\nX-Big: {big}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
        }
        Mode::Agent(report) => write!(
            stream,
            "HTTP/1.1 200 OK\r\nX-Steer-Agent: {report}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
        ),
        Mode::Chunked(body) => {
            let (a, b) = body.split_at(body.len() / 2);
            write!(stream, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")?;
            write!(stream, "{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len())
        }
    }
}

/// An HTTPS backend answering 200 "OK" with a self-signed certificate for `host`.
pub fn https(ip: &str, host: &str) -> SocketAddr {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK").await;
                    let _ = tls.shutdown().await;
                });
            }
        });
    });
    addr
}

/// A backend answering 200 on `ip`, and a server with the quickstart and the service
/// h.lb.example. of `policy` over `targets` (TOML), probed every 200 ms, once the
/// backend's first verdict is in.
pub fn probed_server(ip: &str, policy: &str, targets: &str) -> (Backend, crate::harness::TestServer) {
    use crate::harness::*;
    let backend = Backend::http(ip, 0, Mode::Status(200, "OK"));
    let port = backend.addr.port();
    let s = TestServer::start(&format!(
        "{}\n[checks.web]\nport = {port}\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n\
         [[services]]\nname = \"h.lb.example.\"\npolicy = \"{policy}\"\ncheck = \"web\"\ntargets = {targets}\n",
        quickstart_config()
    ));
    eventually("the probe's first verdict", || target_status(&s.admin, "h.lb.example.", ip).health == "up");
    (backend, s)
}

/// What an agent (SPEC §9, HAProxy's agent check) does with a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Writes these bytes and closes.
    Bytes(Vec<u8>),
    /// Accepts and says nothing until the probe hangs up.
    Hang,
}

/// A load-report agent on a real TCP socket, whose reply a test switches while it runs.
pub struct Agent {
    pub addr: SocketAddr,
    reply: Arc<Mutex<Reply>>,
    received: Arc<Mutex<Vec<u8>>>,
    peer: Arc<Mutex<Option<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Agent {
    /// An agent on `ip` and `port` (0: chosen by the system) replying `line` and a newline.
    pub fn start(ip: &str, port: u16, line: &str) -> Agent {
        let listener = TcpListener::bind((ip, port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let agent = Agent {
            addr: listener.local_addr().unwrap(),
            reply: Arc::new(Mutex::new(Reply::Bytes(format!("{line}\n").into_bytes()))),
            received: Arc::default(),
            peer: Arc::default(),
            stop: Arc::default(),
        };
        let (reply, received, stop) = (agent.reply.clone(), agent.received.clone(), agent.stop.clone());
        let peer = agent.peer.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((mut stream, from)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                *peer.lock().unwrap() = Some(from);
                let (reply, received, stop) = (reply.lock().unwrap().clone(), received.clone(), stop.clone());
                std::thread::spawn(move || {
                    stream.set_nonblocking(false).unwrap();
                    // what the probe sends first (agent_send), if anything
                    stream.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
                    let mut buf = [0u8; 1024];
                    if let Ok(n) = stream.read(&mut buf) {
                        *received.lock().unwrap() = buf[..n].to_vec();
                    }
                    match reply {
                        Reply::Bytes(bytes) => {
                            let _ = stream.write_all(&bytes);
                        }
                        Reply::Hang => {
                            while !stop.load(Ordering::SeqCst) && stream.read(&mut buf).map_or(true, |n| n > 0) {}
                        }
                    }
                });
            }
        });
        agent
    }

    /// Replies `line` and a newline from the next connection on.
    pub fn say(&self, line: &str) {
        self.set(Reply::Bytes(format!("{line}\n").into_bytes()));
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    /// Where the last connection came from.
    pub fn last_peer(&self) -> Option<SocketAddr> {
        *self.peer.lock().unwrap()
    }

    /// What the last probe sent before reading.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

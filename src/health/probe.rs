//! One probe: an HTTP(S) request, a TCP connect, or an agent's report line from a
//! probe address, bounded as a whole by the check's `timeout`.

use super::agent::{self, Report, Reported};
use super::http::HttpProbe;
use crate::config::{Check, CheckKind};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The outcome of one probe: whether it passed, how long it took, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    pub latency: Duration,
    /// "status 200", "status 500", "body mismatch", "timeout", "refused", …
    pub reason: String,
    /// The backend's load report (SPEC §9), when the check reads one and it parsed. A
    /// report of down fails the probe and still comes with it.
    pub report: Option<Report>,
}

/// A ready-to-run probe for one (check, probe address).
#[derive(Debug)]
pub struct Probe {
    kind: Kind,
    timeout: Duration,
    source: Option<IpAddr>,
}

#[derive(Debug)]
enum Kind {
    Http(HttpProbe),
    Tcp(SocketAddr),
    Agent(SocketAddr, Option<Vec<u8>>),
    Pass,
}

impl Probe {
    /// Builds the probe; an error names what in the check cannot be used (an HTTPS
    /// `host` that is not a name, no platform certificate roots).
    pub fn new(check: &Check, address: IpAddr) -> Result<Probe, String> {
        let target = SocketAddr::new(address, check.port);
        let kind = match check.kind {
            CheckKind::None => Kind::Pass,
            CheckKind::Tcp => Kind::Tcp(target),
            CheckKind::Agent => Kind::Agent(target, check.agent_send.as_ref().map(|s| s.as_bytes().to_vec())),
            CheckKind::Http | CheckKind::Https => Kind::Http(HttpProbe::new(check, target)?),
        };
        Ok(Probe { kind, timeout: check.timeout, source: check.source })
    }

    /// Runs the probe once.
    pub async fn run(&self) -> Outcome {
        let start = Instant::now();
        // boxed: the probe's future (connection, TLS, request) is large, and each key's task
        // would carry its size while it sleeps between probes
        let result = match tokio::time::timeout(self.timeout, Box::pin(self.attempt())).await {
            Ok(result) => result,
            Err(_) => Err("timeout".to_string()),
        };
        let latency = start.elapsed();
        match result {
            Ok((reason, report)) => {
                let passed = report.is_none_or(|r| r.state != Reported::Down);
                Outcome { passed, latency, reason, report }
            }
            Err(reason) => Outcome { passed: false, latency, reason, report: None },
        }
    }

    async fn attempt(&self) -> Result<(String, Option<Report>), String> {
        match &self.kind {
            Kind::Pass => Ok(("check kind none".into(), None)),
            Kind::Tcp(target) => match connect(*target, self.source).await {
                Ok(_) => Ok(("connected".into(), None)),
                Err(e) => Err(io_reason(&e)),
            },
            Kind::Agent(target, send) => read_report(connect(*target, self.source).await, send.as_deref()).await,
            Kind::Http(probe) => probe.attempt(connect(probe.target(), self.source).await).await,
        }
    }
}

/// A TCP connection to `target`, from `source` when it is of the target's family.
async fn connect(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source.filter(|s| s.is_ipv4() == target.is_ipv4()) else {
        return TcpStream::connect(target).await;
    };
    let socket = if target.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// HAProxy's agent check: on a connection made, send `send` if any, read one line of at most
/// [`agent::MAX_LINE`] bytes.
async fn read_report(
    connected: std::io::Result<TcpStream>,
    send: Option<&[u8]>,
) -> Result<(String, Option<Report>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connected.map_err(|e| io_reason(&e))?;
    if let Some(send) = send {
        stream.write_all(send).await.map_err(|e| io_reason(&e))?;
    }
    let mut read = [0u8; agent::MAX_LINE];
    let mut filled = 0;
    loop {
        let n = stream.read(&mut read[filled..]).await.map_err(|e| io_reason(&e))?;
        filled += n;
        if let Some(line) = agent::first_line(&read[..filled], n == 0) {
            let report = agent::parse(line?)?;
            return Ok((format!("agent: {report}"), Some(report)));
        }
    }
}

/// rustls needs one process-wide crypto provider: ring (aws-lc is a long C build).
/// Every HTTP client steerdns builds calls this first.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A short reason for an I/O failure.
pub(super) fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => "refused".into(),
        ConnectionReset => "connection reset".into(),
        TimedOut => "timeout".into(),
        _ if error.raw_os_error() == Some(nix::libc::EMFILE) => {
            tracing::warn!("out of file descriptors: a probe could not open its connection");
            "out of file descriptors".into()
        }
        _ => error.to_string(),
    }
}

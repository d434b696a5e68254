//! One probe: an HTTP(S) request or a TCP connect to a probe address, bounded as a
//! whole by the check's `timeout`.

use super::http::HttpProbe;
use crate::config::{Check, CheckKind};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The outcome of one probe: whether it passed, how long it took, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    pub latency: Duration,
    /// "status 200", "status 500", "body mismatch", "timeout", "refused", …
    pub reason: String,
}

/// A ready-to-run probe for one (check, probe address).
#[derive(Debug)]
pub struct Probe {
    kind: Kind,
    timeout: Duration,
}

#[derive(Debug)]
enum Kind {
    Http(HttpProbe),
    Tcp(SocketAddr),
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
            CheckKind::Http | CheckKind::Https => Kind::Http(HttpProbe::new(check, target)?),
        };
        Ok(Probe { kind, timeout: check.timeout })
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
            Ok(reason) => Outcome { passed: true, latency, reason },
            Err(reason) => Outcome { passed: false, latency, reason },
        }
    }

    async fn attempt(&self) -> Result<String, String> {
        match &self.kind {
            Kind::Pass => Ok("check kind none".into()),
            Kind::Tcp(target) => match tokio::net::TcpStream::connect(target).await {
                Ok(_) => Ok("connected".into()),
                Err(e) => Err(io_reason(&e)),
            },
            Kind::Http(probe) => probe.attempt().await,
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

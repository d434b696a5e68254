//! One probe: an HTTP(S) request or a TCP connect to a probe address, bounded as a
//! whole by the check's `timeout`.

use crate::config::{Check, CheckKind};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// At most this much of a response body is read.
const BODY_LIMIT: usize = 64 * 1024;

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
    Http {
        client: reqwest::Client,
        url: String,
        /// The Host header, when the URL's authority is the probe address.
        host: Option<String>,
        expect_status: Vec<u16>,
        expect_body: Option<String>,
    },
    Tcp(SocketAddr),
    Pass,
}

/// Plain-HTTP probes of one check share a client (an HTTPS client carries its
/// host-to-address mapping, so each HTTPS probe key has its own).
#[derive(Debug, Clone, Default)]
pub struct Clients {
    http: Option<reqwest::Client>,
}

impl Probe {
    /// Builds the probe. HTTP(S) clients use no proxy, no redirects and no idle
    /// connections; HTTPS resolves the check's `host` to the probe address so that SNI
    /// is `host`, plain HTTP sends `host` as the Host header.
    pub fn new(check: &Check, address: IpAddr, clients: &mut Clients) -> Result<Probe, reqwest::Error> {
        let target = SocketAddr::new(address, check.port);
        let kind = match check.kind {
            CheckKind::None => Kind::Pass,
            CheckKind::Tcp => Kind::Tcp(target),
            CheckKind::Http => {
                let client = match &clients.http {
                    Some(c) => c.clone(),
                    None => clients.http.insert(client_builder().build()?).clone(),
                };
                let host = check.host.as_ref().map(|h| format!("{h}:{}", check.port));
                let url = format!("http://{target}{}", check.path);
                Kind::Http {
                    client,
                    url,
                    host,
                    expect_status: check.expect_status.clone(),
                    expect_body: check.expect_body.clone(),
                }
            }
            CheckKind::Https => https(check, target)?,
        };
        Ok(Probe { kind, timeout: check.timeout })
    }

    /// Runs the probe once.
    pub async fn run(&self) -> Outcome {
        let start = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.attempt()).await {
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
            Kind::Http { client, url, host, expect_status, expect_body } => {
                let mut request = client.get(url);
                if let Some(host) = host {
                    request = request.header(reqwest::header::HOST, host);
                }
                let mut response = request.send().await.map_err(|e| http_reason(&e))?;
                let status = response.status().as_u16();
                if !expect_status.contains(&status) {
                    return Err(format!("status {status}"));
                }
                if let Some(needle) = expect_body {
                    let body = read_body(&mut response).await.map_err(|e| http_reason(&e))?;
                    if !contains(&body, needle.as_bytes()) {
                        return Err(format!("status {status}, body mismatch"));
                    }
                }
                Ok(format!("status {status}"))
            }
        }
    }
}

fn client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .http1_only()
        .user_agent(concat!("steerdns/", env!("CARGO_PKG_VERSION")))
        .default_headers(
            [(reqwest::header::CONNECTION, reqwest::header::HeaderValue::from_static("close"))].into_iter().collect(),
        )
}

fn https(check: &Check, target: SocketAddr) -> Result<Kind, reqwest::Error> {
    let mut builder = client_builder();
    let authority = match &check.host {
        Some(host) => {
            builder = builder.resolve(host, target);
            format!("{host}:{}", target.port())
        }
        None => target.to_string(),
    };
    if !check.tls_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    Ok(Kind::Http {
        client: builder.build()?,
        url: format!("https://{authority}{}", check.path),
        host: None,
        expect_status: check.expect_status.clone(),
        expect_body: check.expect_body.clone(),
    })
}

/// rustls needs one process-wide crypto provider: ring (aws-lc is a long C build).
/// Every HTTP client steerdns builds calls this first.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The first BODY_LIMIT bytes of the body; the rest is never read.
async fn read_body(response: &mut reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < BODY_LIMIT {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(BODY_LIMIT - body.len())]),
            None => break,
        }
    }
    Ok(body)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A short reason for an HTTP failure: the innermost I/O error when there is one.
fn http_reason(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        source = e.source();
    }
    if error.is_timeout() {
        return "timeout".into();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

fn io_reason(error: &std::io::Error) -> String {
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

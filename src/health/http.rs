//! The HTTP(S) probe of SPEC §6, lean: one GET on hyper's HTTP/1.1 client connection
//! over a new TCP (and TLS) connection; no pool, no proxy, no redirects. The response
//! head is capped at 16 KiB, at most four informational (1xx) responses may come
//! before it, and at most 64 KiB of body is read.

use super::agent::{self, Report};
use super::probe::io_reason;
use crate::config::{Check, CheckKind};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;

/// The largest response head read (status line and headers, each 1xx's included).
const HEAD_LIMIT: usize = 16 * 1024;
/// Informational responses allowed before the final one.
const MAX_INFORMATIONAL: usize = 4;
/// At most this much of a response body is read.
const BODY_LIMIT: usize = 64 * 1024;

const AGENT: &str = concat!("steerdns/", env!("CARGO_PKG_VERSION"));

/// A ready-to-run HTTP(S) probe of one (check, probe address).
pub struct HttpProbe {
    target: SocketAddr,
    /// The Host header: the check's `host`, or else the probe address (with the port
    /// unless it is the scheme's default).
    host: String,
    path: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    expect_status: Vec<u16>,
    expect_body: Option<String>,
    agent_header: Option<hyper::header::HeaderName>,
}

/// The two TLS client configs every HTTPS probe shares: verifying against the
/// platform's roots, or accepting any certificate (`tls_verify = false`).
struct Tls {
    verifying: Result<TlsConnector, String>,
    lax: TlsConnector,
}

static TLS: LazyLock<Tls> = LazyLock::new(|| {
    super::install_crypto_provider();
    let alpn = |mut config: rustls::ClientConfig| {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    };
    use rustls_platform_verifier::ConfigVerifierExt;
    let verifying = rustls::ClientConfig::with_platform_verifier().map(alpn).map_err(|e| e.to_string());
    let provider = rustls::crypto::CryptoProvider::get_default().cloned().expect("installed above");
    let lax = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Tls { verifying, lax: alpn(lax) }
});

impl std::fmt::Debug for HttpProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "HttpProbe({scheme}://{}{} at {})", self.host, self.path, self.target)
    }
}

impl HttpProbe {
    /// The probe of `check` (kind http or https) at `target`.
    pub fn new(check: &Check, target: SocketAddr) -> Result<HttpProbe, String> {
        let https = check.kind == CheckKind::Https;
        let default_port = if https { 443 } else { 80 };
        let host = match (&check.host, target.port() == default_port) {
            (Some(host), true) => host.clone(),
            (Some(host), false) => format!("{host}:{}", target.port()),
            (None, true) => match target {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            },
            (None, false) => target.to_string(),
        };
        let tls = if https {
            let name = match &check.host {
                Some(host) => ServerName::try_from(host.clone()).map_err(|e| format!("host {host}: {e}"))?,
                None => ServerName::IpAddress(target.ip().into()),
            };
            let connector = if check.tls_verify { TLS.verifying.clone()? } else { TLS.lax.clone() };
            Some((connector, name))
        } else {
            None
        };
        Ok(HttpProbe {
            target,
            host,
            path: check.path.clone(),
            tls,
            expect_status: check.expect_status.clone(),
            expect_body: check.expect_body.clone(),
            agent_header: match &check.agent_header {
                Some(h) => {
                    Some(hyper::header::HeaderName::try_from(h.as_str()).map_err(|e| format!("agent_header: {e}"))?)
                }
                None => None,
            },
        })
    }

    /// Where it connects.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// One probe over `connected`: Ok with what passed it (and the load report, with `agent_header`),
    /// or Err with why it failed.
    pub async fn attempt(&self, connected: std::io::Result<TcpStream>) -> Result<(String, Option<Report>), String> {
        let tcp = connected.map_err(|e| io_reason(&e))?;
        match &self.tls {
            None => self.exchange(tcp).await,
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), tcp).await.map_err(|e| tls_reason(&e))?;
                self.exchange(stream).await
            }
        }
    }

    async fn exchange<S>(&self, stream: S) -> Result<(String, Option<Report>), String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(HEAD_LIMIT)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| hyper_reason(&e))?;
        // the connection is driven beside the request, and ends with this probe
        let _driver = AbortOnDrop(tokio::spawn(connection));
        let mut request = hyper::Request::get(self.path.as_str())
            .header(HOST, &self.host)
            .header(USER_AGENT, AGENT)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let too_many = Arc::new(Notify::new());
        let seen = Arc::new(AtomicUsize::new(0));
        let (alarm, counter) = (too_many.clone(), seen.clone());
        hyper::ext::on_informational(&mut request, move |_| {
            if counter.fetch_add(1, Ordering::Relaxed) + 1 > MAX_INFORMATIONAL {
                alarm.notify_one();
            }
        });
        let too_many_error = || Err(format!("more than {MAX_INFORMATIONAL} informational responses"));
        let response = tokio::select! {
            biased;
            () = too_many.notified() => return too_many_error(),
            response = sender.send_request(request) => response.map_err(|e| hyper_reason(&e))?,
        };
        // the final response may come in the same read as the fifth 1xx: count them
        if seen.load(Ordering::Relaxed) > MAX_INFORMATIONAL {
            return too_many_error();
        }
        let status = response.status().as_u16();
        if !self.expect_status.contains(&status) {
            return Err(format!("status {status}"));
        }
        let report = match &self.agent_header {
            None => None,
            Some(name) => match response.headers().get(name) {
                None => return Err(format!("status {status}, no {name} header")),
                Some(value) => Some(agent::parse(value.as_bytes()).map_err(|e| format!("status {status}, {e}"))?),
            },
        };
        if let Some(needle) = &self.expect_body {
            let body = read_body(response.into_body()).await.map_err(|e| hyper_reason(&e))?;
            if !contains(&body, needle.as_bytes()) {
                return Err(format!("status {status}, body mismatch"));
            }
        }
        match report {
            Some(report) => Ok((format!("status {status}, agent: {report}"), Some(report))),
            None => Ok((format!("status {status}"), None)),
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first BODY_LIMIT bytes of the body; the rest is never read.
async fn read_body(mut body: hyper::body::Incoming) -> Result<Vec<u8>, hyper::Error> {
    let mut read = Vec::new();
    while read.len() < BODY_LIMIT {
        let Some(frame) = body.frame().await else { break };
        if let Ok(data) = frame?.into_data() {
            read.extend_from_slice(&data[..data.len().min(BODY_LIMIT - read.len())]);
        }
    }
    Ok(read)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A short reason for an HTTP failure.
fn hyper_reason(error: &hyper::Error) -> String {
    if error.is_parse_too_large() {
        return format!("response head over {} KiB", HEAD_LIMIT / 1024);
    }
    if error.is_parse() {
        return "not an HTTP response".into();
    }
    if error.is_incomplete_message() {
        return "connection closed before the response ended".into();
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        source = e.source();
    }
    error.to_string()
}

fn tls_reason(error: &std::io::Error) -> String {
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(e)) => format!("certificate: {e:?}"),
        Some(e) => format!("TLS: {e}"),
        None => io_reason(error),
    }
}

/// `tls_verify = false`: any certificate is taken; the handshake's signatures are
/// still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

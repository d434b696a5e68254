//! The admin API's edge (SPEC §4, §7): its own connection loop and the checks every
//! request passes before a handler sees it.
//!
//! Connections: at most [`MAX_CONNECTIONS`] at once (past that new ones wait in the
//! listen queue, taking no descriptor from the probes), HTTP/1.1 only (hyper's http1
//! server), HTTPS when `admin_tls_cert_file` is set (the certificate of the running
//! config, for each new connection), and a connection that sends no complete request
//! header for [`IDLE`] closed, a TLS handshake included.
//!
//! Requests, in this order: HTTP/1.1 (505); a token when the route has one (401,
//! compared in constant time); without one, an allowed `Host` (421) and nothing
//! cross-site (`Origin`, `Sec-Fetch-Site`: 403); a JSON content type on a body (415);
//! at most [`MAX_BODY`] bytes of body (413). Every error reply, from here or any
//! handler or layer, is SPEC §4's JSON document. A refusal is logged once per client
//! address and reason; a change (a non-GET that succeeded) once, with the route, the
//! client address and the token's name.

use super::AdminContext;
use crate::config::service_name;
use crate::state::AdminSettings;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection that sends no complete request header for this long is closed.
pub const IDLE: Duration = Duration::from_secs(10);
/// The largest request body taken.
pub const MAX_BODY: usize = 64 * 1024;
/// (client, reason) pairs remembered for logging refusals once; forgotten when full.
const REFUSALS_REMEMBERED: usize = 10_000;

/// The client's address, for the handlers and the log.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `router` on `listener` until `stop`; then connections finish the request in
/// hand. A failed accept (no descriptors) backs off instead of spinning.
pub async fn serve(listener: TcpListener, context: Arc<AdminContext>, router: axum::Router, stop: CancellationToken) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!("admin accept: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(10);
        let tls = context.state.admin_settings().tls.clone();
        let (router, stop) = (router.clone(), stop.clone());
        connections.spawn(crate::supervise::task("admin", async move {
            let _permit = permit;
            let app = router.layer(axum::Extension(Peer(peer)));
            match tls {
                None => connection(stream, app, &stop).await,
                Some(config) => {
                    let accepting = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                    match tokio::time::timeout(IDLE, accepting).await {
                        Ok(Ok(stream)) => connection(stream, app, &stop).await,
                        Ok(Err(e)) => tracing::debug!("admin TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("admin TLS handshake with {peer}: timed out"),
                    }
                }
            }
        }));
    }
    connections.close();
    connections.wait().await;
}

/// One HTTP/1.1 connection.
async fn connection(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    app: axum::Router,
    stop: &CancellationToken,
) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(IDLE)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(IDLE, connection).await;
        }
    }
}

/// What a route needs.
enum Needs {
    /// `/healthz`, `/metrics`: nothing.
    Nothing,
    /// The admin token.
    Admin,
    /// A registration route of this service (None: the name does not parse; the
    /// handler says so).
    Registration(Option<hickory_proto::rr::Name>),
}

fn needs(method: &Method, path: &str) -> Needs {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] | ["metrics"] => Needs::Nothing,
        ["v1", "services", name, "registrations", ..] if method != Method::GET => {
            Needs::Registration(service_name(name))
        }
        _ => Needs::Admin,
    }
}

/// The tokens that open a route, with their names for the log.
fn accepted<'s>(settings: &'s AdminSettings, needs: &Needs) -> Vec<(&'s str, String)> {
    let mut accepted = Vec::new();
    if matches!(needs, Needs::Nothing) {
        return accepted;
    }
    if let Some(t) = &settings.admin {
        accepted.push((t.as_str(), "the admin token".to_string()));
    }
    if let Needs::Registration(service) = needs {
        let own = |s: &hickory_proto::rr::Name| {
            settings.services.get(s).or_else(|| {
                let template = settings.templates.iter().find(|(t, _)| t.matches(s));
                template.filter(|_| !settings.configured_under_templates.contains(s)).map(|(_, token)| token)
            })
        };
        match service.as_ref().and_then(|s| Some((s, own(s)?))) {
            Some((service, own)) => accepted.push((own.as_str(), format!("the registration token of {service}"))),
            None => {
                if let Some(t) = &settings.registration {
                    accepted.push((t.as_str(), "the registration token".to_string()));
                }
            }
        }
    }
    accepted
}

/// Equal, in time that depends on the lengths only.
fn same(given: &[u8], token: &[u8]) -> bool {
    if given.len() != token.len() {
        return false;
    }
    let difference = given.iter().zip(token).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// A refusal: its status and reason.
struct Refusal(StatusCode, String);

/// The checks of SPEC §4, then the handler; the token's name for the change log.
pub async fn checks(State(context): State<Arc<AdminContext>>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<Peer>().map(|p| p.0);
    let route = format!("{} {}", request.method(), request.uri().path());
    let change = request.method() != Method::GET && request.method() != Method::HEAD;
    match admit(&context.state.admin_settings(), &request) {
        Err(Refusal(status, reason)) => {
            if let Some(peer) = peer {
                context.refusals.log(peer.ip(), &route, &reason);
            }
            error(status, &reason)
        }
        Ok(token) => {
            let response = next.run(request).await;
            let client = peer.map_or_else(|| "?".to_string(), |p| p.ip().to_string());
            if change && response.status().is_success() {
                tracing::info!("admin API: {route} from {client} with {token}: done");
            } else if let Some(peer) = peer.filter(|_| response.status().is_client_error()) {
                context.refusals.log(peer.ip(), &route, response.status().as_str());
            }
            response
        }
    }
}

/// The checks before the handler; Ok with the name of the token that opened it.
fn admit(settings: &AdminSettings, request: &Request) -> Result<String, Refusal> {
    if request.version() != Version::HTTP_11 {
        return Err(Refusal(StatusCode::HTTP_VERSION_NOT_SUPPORTED, "the admin API speaks HTTP/1.1 only".into()));
    }
    let headers = request.headers();
    let needs = needs(request.method(), request.uri().path());
    let accepted = accepted(settings, &needs);
    let token = if accepted.is_empty() {
        same_site(headers, &settings.hosts)?;
        "no token".to_string()
    } else {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // every token is compared, so the time taken says nothing of which one matched
        let matched =
            accepted.iter().fold(
                None,
                |found, (token, name)| {
                    if same(given.as_bytes(), token.as_bytes()) { Some(name) } else { found }
                },
            );
        match matched {
            Some(name) => name.clone(),
            None => {
                return Err(Refusal(StatusCode::UNAUTHORIZED, "missing or wrong Authorization: Bearer token".into()));
            }
        }
    };
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0");
    if has_body {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Refusal(StatusCode::UNSUPPORTED_MEDIA_TYPE, "a request body must be application/json".into()));
        }
    }
    Ok(token)
}

/// Without a token: the `Host` must be one this API answers to (against DNS
/// rebinding), and nothing may come from another site (against forged requests).
fn same_site(headers: &HeaderMap, hosts: &[String]) -> Result<(), Refusal> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !allowed_host(host, hosts) {
        let reason = format!(
            "Host {host:?} is not one this admin API answers to (an IP address, localhost, *.localhost or server.admin_hosts)"
        );
        return Err(Refusal(StatusCode::MISDIRECTED_REQUEST, reason));
    }
    if headers.contains_key(header::ORIGIN) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "a request with an Origin header (from a web page) is refused".into(),
        ));
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = site.filter(|s| !matches!(*s, "none" | "same-origin")) {
        return Err(Refusal(StatusCode::FORBIDDEN, format!("a {site} request (Sec-Fetch-Site) is refused")));
    }
    Ok(())
}

/// An IP literal (IPv6 in brackets), `localhost`, `*.localhost` or one of `hosts`,
/// with or without a port and a trailing dot, in any case.
fn allowed_host(host: &str, hosts: &[String]) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').is_some_and(|(ip, port)| {
            ip.parse::<std::net::Ipv6Addr>().is_ok() && (port.is_empty() || port.strip_prefix(':').is_some_and(is_port))
        });
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || hosts.contains(&name)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// SPEC §4's error document.
pub fn error(status: StatusCode, reason: &str) -> Response {
    let body = crate::api::ErrorBody { error: reason.to_string(), errors: Vec::new() };
    (status, axum::Json(body)).into_response()
}

/// Any error reply that is not JSON yet (axum's rejections: a body too large, an
/// unknown route, a method not allowed) becomes SPEC §4's error document, its text
/// the reason.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), MAX_BODY).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let reason = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_lowercase(),
        text => text.to_string(),
    };
    error(status, &reason)
}

/// Refusals already logged, by client address and reason.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<HashSet<(IpAddr, String)>>);

impl Refusals {
    fn log(&self, client: IpAddr, route: &str, reason: &str) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= REFUSALS_REMEMBERED {
            seen.clear();
        }
        if seen.insert((client, reason.to_string())) {
            tracing::warn!("admin API: refused {route} from {client}: {reason} (logged once per client and reason)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_an_admin_api_answers_to_without_a_token() {
        let extra = vec!["steerdns.internal".to_string()];
        for host in [
            "127.0.0.1",
            "127.0.0.1:8053",
            "[::1]:8053",
            "[::1]",
            "localhost",
            "LOCALHOST:8053",
            "a.b.localhost",
            "localhost.",
            "steerdns.internal:8053",
            "Steerdns.Internal",
        ] {
            assert!(allowed_host(host, &extra), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8053",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "[::1",
            "[::1]x",
            "127.0.0.1:x",
            "notlocalhost",
            "steerdns.internal.evil",
        ] {
            assert!(!allowed_host(host, &extra), "{host}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secreT", b"secret"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"secret"));
    }
}

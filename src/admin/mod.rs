//! The admin HTTP API (SPEC §4): thin axum handlers over the state owner, with errors
//! mapped to status codes in one place; `edge` holds the connection loop and the checks
//! every request passes first (tokens, Host, Origin, content type, limits).

mod edge;

use edge::MAX_BODY;
pub use edge::{Refusals, serve};

use crate::api::{ErrorBody, StateRequest};
use crate::config::service_name;
use crate::state::{RegisterError, ReloadError, ReloadFailure, SetStateError, StateHandle};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// What the handlers share.
pub struct AdminContext {
    pub state: StateHandle,
    pub config_file: PathBuf,
    /// Where DNS is: starting, serving, or stopping (from the moment shutdown starts
    /// or the owner hangs).
    pub phase: Arc<Phase>,
    /// Refusals already logged (once per client and reason).
    pub refusals: Refusals,
}

/// An error response: a status code and a JSON body.
#[derive(Debug)]
pub struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError(status, ErrorBody { error: error.into(), errors: Vec::new() })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        let status = match e {
            RegisterError::UnknownService(_) | RegisterError::NotRegistered(_) => StatusCode::NOT_FOUND,
            RegisterError::Invalid { .. } => StatusCode::BAD_REQUEST,
            RegisterError::Configured(_) | RegisterError::Forbidden { .. } => StatusCode::CONFLICT,
            RegisterError::Closed(_) | RegisterError::Outside { .. } => StatusCode::FORBIDDEN,
            RegisterError::TooMany(_) | RegisterError::TemplateFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            RegisterError::Store(_) | RegisterError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<SetStateError> for ApiError {
    fn from(e: SetStateError) -> Self {
        let status = match e {
            SetStateError::UnknownService(_) => StatusCode::NOT_FOUND,
            SetStateError::Store(_) | SetStateError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

pub fn router(context: Arc<AdminContext>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/services/{name}/targets/{address}/state", put(set_state))
        .route("/v1/reload", post(reload))
        .route("/v1/services/{name}/registrations", post(register))
        .route("/v1/services/{name}/registrations/{address}", axum::routing::delete(deregister))
        .route("/v1/explain", get(explain))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { edge::error(StatusCode::NOT_FOUND, "no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(context.clone(), edge::checks))
        .layer(axum::middleware::from_fn(edge::json_errors))
        // a panic in a handler names the admin API as its task
        .layer(axum::middleware::from_fn(|request, next: axum::middleware::Next| {
            crate::supervise::task("admin", next.run(request))
        }))
        .with_state(context)
}

type Context = State<Arc<AdminContext>>;

async fn status(State(context): Context) -> Response {
    crate::supervise::fault_point("admin");
    Json(&*context.state.status()).into_response()
}

/// `GET /v1/explain?name=&type=&client=IP[/LEN]&source=IP`.
async fn explain(
    State(context): Context,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let bad = |field: &str, message: String| ApiError::new(StatusCode::BAD_REQUEST, format!("{field}: {message}"));
    let name = query.get("name").ok_or_else(|| bad("name", "required".into()))?;
    let name = service_name(name).ok_or_else(|| bad("name", format!("not a domain name: {name:?}")))?;
    let qtype = query.get("type").map_or("A", String::as_str);
    let qtype = qtype
        .to_ascii_uppercase()
        .parse::<hickory_proto::rr::RecordType>()
        .map_err(|_| bad("type", format!("not a record type: {qtype:?}")))?;
    let client = match query.get("client") {
        Some(text) => Some(
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| bad("client", format!("not IP or IP/LEN: {text:?}")))?
                .trunc(),
        ),
        None => None,
    };
    let source = match query.get("source") {
        Some(text) => text.parse().map_err(|_| bad("source", format!("not an IP address: {text:?}")))?,
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let request = crate::state::ExplainRequest { name, qtype, client, source };
    Ok(Json(context.state.explain(&request)).into_response())
}

async fn set_state(
    State(context): Context,
    Path((name, address)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let (service, address) = (parse_service(&name)?, parse_address(&address)?);
    let request: StateRequest = parse_body(&body)?;
    context.state.set_state(service.clone(), address, request.state).await?;
    let done = serde_json::json!({ "service": service.to_string(), "address": address, "state": request.state });
    Ok(Json(done).into_response())
}

async fn register(
    State(context): Context,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let service = parse_service(&name)?;
    let request: crate::api::RegistrationRequest = parse_body(&body)?;
    let reply = context.state.register(service, request).await?;
    Ok(Json(reply).into_response())
}

async fn deregister(
    State(context): Context,
    Path((name, address)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (service, address) = (parse_service(&name)?, parse_address(&address)?);
    context.state.deregister(service.clone(), address).await?;
    Ok(Json(serde_json::json!({ "service": service.to_string(), "address": address, "deregistered": true }))
        .into_response())
}

/// A service name from a path: any case, with or without the trailing dot.
fn parse_service(name: &str) -> Result<hickory_proto::rr::Name, ApiError> {
    service_name(name)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("service name: not a domain name: {name:?}")))
}

/// An address from a path, in canonical form: `::ffff:a.b.c.d` is the IPv4 address
/// a.b.c.d, as the config and the store hold it.
fn parse_address(text: &str) -> Result<IpAddr, ApiError> {
    let address: IpAddr = text
        .parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("address: not an IP address: {text:?}")))?;
    Ok(address.to_canonical())
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

async fn reload(State(context): Context, peer: Option<axum::Extension<edge::Peer>>) -> Result<Response, ApiError> {
    let via = match peer {
        Some(axum::Extension(edge::Peer(peer))) => format!("POST /v1/reload from {}", peer.ip()),
        None => "POST /v1/reload".to_string(),
    };
    match context.state.reload_file(&context.config_file, &via).await {
        Ok(()) => Ok(Json(serde_json::json!({ "reloaded": context.config_file })).into_response()),
        Err(ReloadFailure::Config(errors)) => {
            let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            Err(ApiError(
                StatusCode::BAD_REQUEST,
                ErrorBody { error: format!("{} error(s); the running config is kept", list.len()), errors: list },
            ))
        }
        Err(ReloadFailure::Owner(e @ ReloadError::NeedsRestart(_))) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
        }
        Err(ReloadFailure::Owner(e)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e @ ReloadFailure::Panicked) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn metrics(State(context): Context, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    let format = crate::metrics::Format::from_accept(accept);
    let text = context.state.metrics(format);
    ([(header::CONTENT_TYPE, format.content_type())], text).into_response()
}

/// Where DNS is, for /healthz.
#[derive(Debug, Default)]
pub struct Phase(AtomicU8);

impl Phase {
    const STARTING: u8 = 0;
    const SERVING: u8 = 1;
    const STOPPING: u8 = 2;

    /// DNS answers from now on (unless it is already stopping).
    pub fn serving(&self) {
        let _ = self.0.compare_exchange(Self::STARTING, Self::SERVING, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// DNS answers and shutdown has not started.
    pub fn is_serving(&self) -> bool {
        self.0.load(Ordering::SeqCst) == Self::SERVING
    }

    /// Shutdown has started, or the owner hangs: /healthz says 503 for good.
    pub fn stopping(&self) {
        self.0.store(Self::STOPPING, Ordering::SeqCst);
    }
}

/// 200 while DNS serves a ready picture; 503 `starting` before (SPEC §1 "Ready"), and
/// 503 `not serving` from the moment shutdown starts or the owner hangs.
async fn healthz(State(context): Context) -> Response {
    match context.phase.0.load(Ordering::SeqCst) {
        Phase::STOPPING => (StatusCode::SERVICE_UNAVAILABLE, "not serving\n").into_response(),
        Phase::SERVING if context.state.ready() => (StatusCode::OK, "serving\n").into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
    }
}

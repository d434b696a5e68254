//! The admin API's JSON documents, shared by the server and the CLI (serde only).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// An operator's state for one (service, address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Health decides (the default; setting it deletes the stored state).
    Auto,
    /// Removed from the candidates.
    Drain,
    /// Healthy whatever the probes say.
    Up,
    /// Unhealthy whatever the probes say.
    Down,
}

impl std::fmt::Display for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminState::Auto => "auto",
            AdminState::Drain => "drain",
            AdminState::Up => "up",
            AdminState::Down => "down",
        })
    }
}

/// Body of `PUT /v1/services/{name}/targets/{address}/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRequest {
    pub state: AdminState,
}

/// A stored admin state (in `GET /v1/status`, those that match no target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    pub service: String,
    pub address: IpAddr,
    pub state: AdminState,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The server's identity (`server.identity`) and version.
    #[serde(default)]
    pub identity: String,
    #[serde(default)]
    pub version: String,
    pub store: StoreStatus,
    pub services: Vec<ServiceStatus>,
    /// Stored states of addresses that are no target of their service (now).
    pub unmatched_states: Vec<StoredState>,
    /// Shared health (SPEC §10), when `[health] share` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedStatus>,
}

/// Shared health as this node sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SharedStatus {
    /// Whether the node shares now (a member, the store reachable); else it decides
    /// every target by its own probes.
    pub sharing: bool,
    /// The members and whether each counts as live (a heartbeat within 2 × the
    /// shortest check interval).
    pub members: Vec<(String, bool)>,
    /// Probe keys this node probes, of all it knows.
    pub probed_keys: usize,
    pub keys: usize,
    /// Keys whose counted probers disagree on up or down.
    pub disagreements: usize,
    /// Verdicts ignored: unreadable, or from nodes that are not members.
    pub ignored_verdicts: u64,
}

/// Where run-time state is kept, and whether it can be written now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreStatus {
    /// "memory", "file" or "etcd".
    pub backend: String,
    pub up: bool,
    /// Why it cannot be written, while it cannot.
    #[serde(default)]
    pub error: Option<String>,
    /// While the node answers from the store's copy of its last snapshot (etcd away
    /// since the start): when that copy was saved (Unix time, seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_saved_at: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub policy: String,
    pub order: String,
    pub check: Option<String>,
    /// The `[[templates]]` pattern that made this service, for one a registration made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Targets a client of the default region is answered from now (A and AAAA).
    pub answered: usize,
    /// Every candidate of a client of the default region is down, and they are
    /// answered anyway (fail-open).
    #[serde(default)]
    pub failing_open: bool,
    /// A gslb service: per region, the targets a client placed there is answered from.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub answered_by_region: std::collections::BTreeMap<String, usize>,
    pub targets: Vec<TargetStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetStatus {
    pub address: IpAddr,
    /// "config" or "registration".
    pub origin: String,
    /// A registration's lease expiry (Unix time, seconds).
    #[serde(default)]
    pub expires_at: Option<f64>,
    pub region: Option<String>,
    pub weight: u32,
    /// The backend's last load report (SPEC §9): "up 25%", "drain" or "down".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
    /// The weight answers use: the configured weight × the reported percentage.
    #[serde(default)]
    pub effective_weight: f64,
    pub priority: u8,
    /// "up", "down", "unknown" (not probed yet), or "unchecked" (no check).
    pub health: String,
    pub admin: AdminState,
    pub answered: bool,
    pub probe_address: Option<IpAddr>,
    pub passes: u32,
    pub fails: u32,
    pub last_probe: Option<ProbeStatus>,
    pub last_change: Option<ChangeStatus>,
    pub last_failure: Option<String>,
    /// With shared health (SPEC §10): each node's published verdict on this target's
    /// probe, the ranked probers first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probers: Vec<ProberStatus>,
}

/// One node's verdict on a probe key (shared health).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProberStatus {
    pub node: String,
    /// "up" or "down", with its report ("up 50%", "drain"); None: nothing published.
    pub verdict: Option<String>,
    /// When that verdict was reached (Unix time, seconds).
    pub since: Option<f64>,
    /// Among the ranked probers whose verdicts decide.
    pub counted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// Unix time, seconds.
    pub at: f64,
    pub latency_ms: f64,
    pub passed: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeStatus {
    /// Unix time, seconds.
    pub at: f64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

// The errors of the calls that change state: typed, with the field or cause, so the
// admin API maps each to a status in one place and a client can match variants.

/// Why a reload was refused; the running config is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("{0} changed: this needs a restart (the running config is kept)")]
    NeedsRestart(String),
    #[error("steerdns is stopping")]
    Stopping,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} is a configured target of this service")]
    Configured(IpAddr),
    #[error("the service already has max_registrations = {0} registrations")]
    TooMany(u32),
    /// A template's cap (SPEC §9): `max_services` or `max_registrations_total`.
    #[error("template {pattern} is full: {cap} reached")]
    TemplateFull { pattern: String, cap: String },
    /// A name a template matches but SPEC §2 forbids as a service.
    #[error("{name} cannot be a service: it {reason}")]
    Forbidden { name: String, reason: String },
    #[error("no registration of {0} for this service")]
    NotRegistered(IpAddr),
    #[error("{0} does not accept registrations (accept_registrations)")]
    Closed(String),
    #[error("{field}: {address} is outside this service's registration_networks ({networks})")]
    Outside { field: &'static str, address: IpAddr, networks: String },
    #[error("store unavailable: {0}")]
    Store(String),
    #[error("steerdns is stopping")]
    Stopping,
}

/// Why an admin state was not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetStateError {
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("store unavailable: {0}")]
    Store(String),
    #[error("steerdns is stopping")]
    Stopping,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// Every problem, for a failed reload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// `GET /v1/explain`: why this client gets this answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Explanation {
    pub name: String,
    pub qtype: String,
    /// The ECS option sent, as ADDRESS/SOURCE, when there was one.
    pub client_subnet: Option<String>,
    pub source: Option<IpAddr>,
    /// The zone lookups, in order (CNAME steps, the service reached, …).
    pub steps: Vec<String>,
    pub service: Option<ServiceExplanation>,
    pub answer: ExplainedAnswer,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceExplanation {
    pub name: String,
    pub policy: String,
    pub order: String,
    pub family: String,
    /// The client's address as the answer was steered by.
    pub client_address: Option<IpAddr>,
    pub region: Option<RegionExplanation>,
    pub candidates: Vec<CandidateExplanation>,
    pub policy_steps: Vec<String>,
    pub fail_open: bool,
    pub order_note: String,
    pub max_answers: usize,
    pub ttl: u32,
    pub ttl_note: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegionExplanation {
    pub name: String,
    /// "network 10.1.0.0/16", "GeoIP country DE (database network /24)", "default region".
    pub decided_by: String,
    pub scope: u8,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CandidateExplanation {
    pub address: Option<IpAddr>,
    pub region: Option<String>,
    pub weight: u32,
    /// The configured weight × the backend's reported percentage (SPEC §9).
    #[serde(default)]
    pub effective_weight: f64,
    /// The backend's last load report, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<String>,
    pub priority: u8,
    pub healthy: bool,
    pub health: Option<String>,
    pub admin: Option<String>,
    /// Unix time of the last health change.
    pub since: Option<f64>,
    pub last_failure: Option<String>,
    /// "config" or "registration".
    #[serde(default)]
    pub origin: Option<String>,
    /// A registration's lease expiry, when this node knows it (Unix time, seconds).
    #[serde(default)]
    pub expires_at: Option<f64>,
    /// With shared health: each node's verdict, and which ones decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probers: Vec<ProberStatus>,
    pub kept: bool,
    pub why: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExplainedAnswer {
    pub rcode: String,
    pub authoritative: bool,
    pub records: Vec<String>,
    pub ecs_scope: Option<u8>,
}

/// Body of `POST /v1/services/{name}/registrations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    pub address: IpAddr,
    pub ttl_seconds: u64,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub priority: Option<u8>,
    #[serde(default)]
    pub check_address: Option<IpAddr>,
}

/// The reply to a registration: its lease and the service's answer TTL (a backend
/// that leaves waits that long for resolver caches to drain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationReply {
    pub service: String,
    pub address: IpAddr,
    /// Unix time, seconds.
    pub expires_at: f64,
    pub service_ttl: u32,
}

/// A registration as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRegistration {
    pub service: String,
    pub address: IpAddr,
    pub region: Option<String>,
    pub weight: u32,
    pub priority: u8,
    pub check_address: Option<IpAddr>,
    /// Unix time, seconds.
    pub expires_at: f64,
    #[serde(default)]
    pub ttl_seconds: u64,
}

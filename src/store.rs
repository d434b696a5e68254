//! Run-time state that outlives a restart: admin states and registrations (with their
//! leases), kept in memory, in a file (a JSON snapshot and an append-only journal, each
//! fsynced, so it survives kill -9 and power loss), or in etcd, shared by every node.
//!
//! Every store speaks one protocol with the state owner. The owner sends numbered
//! [`Write`]s; the store reports each one [`Event::Written`] or [`Event::Failed`], and
//! reports what it holds ([`Event::Snapshot`]) and what changed by itself
//! ([`Event::Changes`]: leases that expired, other nodes' writes). Leases are the
//! store's: etcd expires its own, and the local store (memory or file) expires them on
//! its own clock. The owner applies nothing before the store reports it.

#[cfg(feature = "etcd")]
mod copy;
#[cfg(feature = "etcd")]
mod etcd;
mod file;
mod local;

use crate::api::{AdminState, RegistrationRequest, StoredRegistration, StoredState};
use crate::config::StoreConfig;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};

pub use local::Document;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path}: not a valid steerdns state file ({reason}); to start afresh, move it aside (its admin states will be lost)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store: {0}")]
    Etcd(String),
}

/// The state file's document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    pub version: u32,
    pub admin_states: Vec<StoredState>,
    #[serde(default)]
    pub registrations: Vec<StoredRegistration>,
}

/// Numbers a write, so its report finds its caller.
pub type WriteId = u64;

/// A store as the state owner sees it: where writes go, where reports come from, and
/// the task that does the work (spawned by the owner).
pub struct Store {
    /// `memory`, `file` or `etcd`.
    pub backend: &'static str,
    pub writes: mpsc::Sender<(WriteId, Write)>,
    /// What the store read when it opened (the local store's snapshot), for the
    /// owner's first View; etcd reports its first snapshot through `events`.
    pub first: Option<Event>,
    pub events: mpsc::Receiver<Event>,
    /// Asks for a new [`Event::Snapshot`]: after a reload, keys that the old config
    /// refused may be taken now.
    pub reread: Arc<Notify>,
    /// The store's work; it ends when `events` is dropped.
    pub task: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.backend)
    }
}

/// Writes a store takes before it answers "too many writes in flight".
pub const WRITES_IN_FLIGHT: usize = 1024;

/// A change the owner asks the store to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Sets an admin state; `auto` deletes its key.
    State { service: Name, address: IpAddr, state: AdminState },
    /// Puts a registration on a new lease of its TTL, then ends `replaces` (the
    /// registration's previous lease).
    Register { service: Name, request: RegistrationRequest, replaces: Option<i64> },
    /// Keeps `lease` alive for another TTL; when it has already expired, registers
    /// afresh.
    Renew { service: Name, request: RegistrationRequest, lease: i64 },
    /// Deletes a registration and ends its lease.
    Deregister { service: Name, address: IpAddr, lease: Option<i64> },
    /// Publishes this node's verdict on a probe key, on its node lease (shared health,
    /// etcd only; the other stores take it as made and keep nothing).
    Verdict { key: crate::health::ProbeKey, verdict: SharedVerdict },
}

/// One key's new value, as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `auto` when the key was deleted.
    State { service: Name, address: IpAddr, state: AdminState },
    /// The registration and its lease; `None` when the key was deleted.
    Registration { service: Name, address: IpAddr, lease: Option<Lease> },
    /// A node of the shared health (SPEC §10, etcd only) and its last heartbeat (Unix
    /// seconds); `None` when it left (its lease ended).
    Member { identity: String, heartbeat: Option<f64> },
    /// What a node last published of a probe key; `None` when the node left.
    Verdict { key: crate::health::ProbeKey, node: String, verdict: Option<SharedVerdict> },
    /// A verdict key whose value does not parse (skipped, and counted).
    UnreadableVerdict,
}

/// One prober's verdict on a probe key, as it publishes it (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedVerdict {
    pub down: bool,
    /// The backend's reported percentage, when it reports.
    #[serde(default)]
    pub percent: Option<u8>,
    /// The backend reported a drain.
    #[serde(default)]
    pub drain: bool,
    /// When the verdict changed (Unix seconds).
    pub at: f64,
}

/// A registration's lease as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub request: RegistrationRequest,
    pub id: i64,
    /// When it ends (Unix seconds), where the store knows: the local store always,
    /// etcd never (the owner counts a TTL from when it heard).
    pub expires_at: Option<f64>,
}

/// What a store reports to the owner.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Everything the store holds, read at `revision` (at start, after reconnecting, a
    /// compaction or a reread): it replaces what the owner knew, and says the store is
    /// up.
    Snapshot { revision: i64, changes: Vec<Change> },
    /// Changes the owner did not ask for (expired leases, other nodes' writes), in
    /// order, up to `revision`.
    Changes { revision: i64, changes: Vec<Change> },
    /// The store cannot be reached or written; it keeps trying.
    Down(String),
    /// Write `id` was made at `revision` (0 for a renewal, which changes no key): the
    /// owner applies `changes` unless it has already gone past `revision`.
    Written { id: WriteId, revision: i64, changes: Vec<Change> },
    /// Write `id` was not made: nothing changed.
    Failed { id: WriteId, reason: String },
    /// The copy of the last snapshot a shared store kept on disk, saved at `saved_at`
    /// (Unix seconds): the owner starts from it when the store has not answered within
    /// startup_wait, and says so, until the store's own snapshot replaces it.
    Copy { saved_at: f64, changes: Vec<Change> },
}

/// A registration as the file and the copy keep it.
fn stored_registration(service: &Name, request: &RegistrationRequest, expires_at: f64) -> StoredRegistration {
    StoredRegistration {
        service: service.to_string(),
        address: request.address,
        region: request.region.clone(),
        weight: request.weight.unwrap_or(1),
        priority: request.priority.unwrap_or(1),
        check_address: request.check_address,
        expires_at,
        ttl_seconds: request.ttl_seconds,
    }
}

/// The request a kept registration stands for, with `ttl_seconds` (3 to 86400).
fn stored_request(r: StoredRegistration, ttl_seconds: u64) -> RegistrationRequest {
    RegistrationRequest {
        address: r.address,
        ttl_seconds: ttl_seconds.clamp(3, 86400),
        region: r.region,
        weight: Some(r.weight),
        priority: Some(r.priority),
        check_address: r.check_address,
    }
}

/// Admin states as the file and the copy keep them.
fn stored_states<'a>(states: impl Iterator<Item = (&'a (Name, IpAddr), &'a AdminState)>) -> Vec<StoredState> {
    states
        .map(|((service, address), state)| StoredState {
            service: service.to_string(),
            address: *address,
            state: *state,
        })
        .collect()
}

/// This node's membership of the shared health (SPEC §10), for the etcd store.
#[derive(Debug, Clone)]
pub struct Membership {
    pub identity: String,
    pub lease_ttl: std::time::Duration,
    /// How often the heartbeat is written: at most the shortest check interval.
    pub heartbeat: std::time::Duration,
}

/// Opens the store: reads what the file holds (a corrupt file stops the start; its
/// directory is created when missing), or prepares the etcd client (with `membership`
/// when health is shared).
pub fn open(config: &StoreConfig, membership: Option<Membership>) -> Result<Store, StoreError> {
    match config {
        StoreConfig::Memory => Ok(local::start(None, Document::default())),
        StoreConfig::File { path } => local::open(path),
        #[cfg(feature = "etcd")]
        StoreConfig::Etcd(config) => etcd::start(config, membership),
        #[cfg(not(feature = "etcd"))]
        StoreConfig::Etcd(_) => {
            drop(membership);
            Err(StoreError::Etcd("this steerdns was built without the etcd store".into()))
        }
    }
}

//! Run-time state that outlives a restart: admin states and registrations, kept in
//! memory, in one JSON file (written to a temporary file, fsynced, renamed, and the
//! directory fsynced, so it survives kill -9 and power loss), or in etcd, shared by
//! every node.
//!
//! The memory and file stores hold one document that the state owner writes whole.
//! The etcd store works key by key and asynchronously: the owner sends it [`Write`]s
//! and applies what it reports back as [`Event`]s, so the owner never waits on etcd.

#[cfg(feature = "etcd")]
mod etcd;

use crate::api::{AdminState, RegistrationRequest, StoredRegistration, StoredState};
use crate::config::StoreConfig;
use crate::state::Pending;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::sync::mpsc;

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

/// What the store holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    pub version: u32,
    pub admin_states: Vec<StoredState>,
    #[serde(default)]
    pub registrations: Vec<StoredRegistration>,
}

/// Where the state is kept.
pub enum Store {
    Memory,
    File(PathBuf),
    Etcd(Shared),
}

/// The etcd store as the state owner sees it (built with the `etcd` feature).
pub struct Shared {
    /// Writes to make; the store answers each through its [`Pending`].
    pub writes: mpsc::Sender<(Write, Pending)>,
    /// What the store reports: taken by the owner when it starts.
    pub events: Option<mpsc::Receiver<Event>>,
    /// The store's client, spawned by the owner when it starts; it ends when `events`
    /// is dropped.
    pub task: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Asks for a new [`Event::Snapshot`]: after a reload, keys that the old config
    /// refused may be taken now.
    pub reread: std::sync::Arc<tokio::sync::Notify>,
}

/// A change the owner asks the etcd store to make.
#[derive(Debug)]
pub enum Write {
    /// Sets an admin state; `auto` deletes its key.
    State { service: Name, address: IpAddr, state: AdminState },
    /// Puts a registration on a new lease of its TTL, then revokes `replaces` (the
    /// registration's previous lease).
    Register { service: Name, request: RegistrationRequest, replaces: Option<i64> },
    /// Keeps `lease` alive; when it has already expired, registers afresh.
    Renew { service: Name, request: RegistrationRequest, lease: i64 },
    /// Deletes a registration and revokes its lease.
    Deregister { service: Name, address: IpAddr, lease: Option<i64> },
}

/// One key's new value, as the store holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `auto` when the key was deleted.
    State { service: Name, address: IpAddr, state: AdminState },
    /// The registration and its lease; `None` when the key was deleted.
    Registration { service: Name, address: IpAddr, lease: Option<(RegistrationRequest, i64)> },
}

/// What the etcd store reports to the owner.
#[derive(Debug)]
pub enum Event {
    /// Everything under the prefix, read at `revision` (after connecting, reconnecting,
    /// a compaction or a reload): it replaces what the owner knew.
    Snapshot { revision: i64, changes: Vec<Change> },
    /// Changes seen by the watch, in order, up to `revision`.
    Changes { revision: i64, changes: Vec<Change> },
    /// etcd cannot be reached; the store keeps trying.
    Down(String),
    /// A write of this node succeeded at `revision` (0 for a renewal, which changes no
    /// key): the owner applies `changes` unless the watch brought it past them, then
    /// answers the caller.
    Written { revision: i64, changes: Vec<Change>, pending: Pending },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.backend())
    }
}

impl Store {
    /// Opens the store and reads what it holds; the file's directory is created when
    /// missing, and a missing file is an empty store.
    pub fn open(config: &StoreConfig) -> Result<(Store, Stored), StoreError> {
        match config {
            StoreConfig::File { path } => {
                let stored = read(path)?;
                Ok((Store::File(path.clone()), stored))
            }
            StoreConfig::Memory => Ok((Store::Memory, Stored::default())),
            #[cfg(feature = "etcd")]
            StoreConfig::Etcd(config) => Ok((Store::Etcd(etcd::start(config)?), Stored::default())),
            #[cfg(not(feature = "etcd"))]
            StoreConfig::Etcd(_) => Err(StoreError::Etcd("this steerdns was built without the etcd store".into())),
        }
    }

    /// `memory`, `file` or `etcd`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::File(_) => "file",
            Store::Etcd(_) => "etcd",
        }
    }

    /// Persists `stored` (the whole document).
    pub fn save(&self, stored: &Stored) -> Result<(), StoreError> {
        match self {
            Store::Memory | Store::Etcd(_) => Ok(()),
            Store::File(path) => write(path, stored),
        }
    }
}

fn read(path: &Path) -> Result<Stored, StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored { version: 1, ..Stored::default() }),
        Err(e) => Err(io(e)),
    }
}

fn write(path: &Path, stored: &Stored) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: path.to_path_buf(), source };
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(&serde_json::to_vec_pretty(stored).expect("plain data serializes")).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AdminState;

    #[test]
    fn a_file_store_round_trips_and_creates_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/s.json");
        let (store, stored) = Store::open(&StoreConfig::File { path: path.clone() }).unwrap();
        assert!(stored.admin_states.is_empty());
        let stored = Stored {
            version: 1,
            admin_states: vec![StoredState {
                service: "www.lb.example.".into(),
                address: "127.0.0.1".parse().unwrap(),
                state: AdminState::Drain,
            }],
            registrations: Vec::new(),
        };
        store.save(&stored).unwrap();
        assert_eq!(Store::open(&StoreConfig::File { path }).unwrap().1, stored);
    }

    #[test]
    fn a_corrupt_file_is_never_overwritten_and_says_how_to_start_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, "{ not json").unwrap();
        let e = Store::open(&StoreConfig::File { path: path.clone() }).unwrap_err().to_string();
        assert!(e.contains("s.json") && e.contains("move it aside"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
    }
}

//! Run-time state that outlives a restart: admin states, kept in memory or in one JSON
//! file (written to a temporary file, fsynced, renamed, and the directory fsynced, so
//! it survives kill -9 and power loss).

use crate::api::{StoredRegistration, StoredState};
use crate::config::StoreConfig;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{path}: not a valid steerdns state file ({reason}); to start afresh, move it aside (its admin states will be lost)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
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
#[derive(Debug)]
pub enum Store {
    Memory,
    File(PathBuf),
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
            // etcd comes with its issue; until then its state lives in memory
            StoreConfig::Memory | StoreConfig::Etcd(_) => Ok((Store::Memory, Stored::default())),
        }
    }

    /// Persists `stored` (the whole document).
    pub fn save(&self, stored: &Stored) -> Result<(), StoreError> {
        match self {
            Store::Memory => Ok(()),
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

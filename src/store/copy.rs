//! The etcd store's copy of its last snapshot, kept in a file so that a node
//! restarted while etcd is away starts from what it last knew (drains included)
//! instead of from the config alone.

use super::{Change, Event, Lease, Stored};
use crate::api::{AdminState, RegistrationRequest};
use crate::config::service_name;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    /// Unix seconds.
    saved_at: f64,
    stored: Stored,
}

/// What the store knows, key by key, and where its copy goes.
#[derive(Debug)]
pub struct Copy {
    path: PathBuf,
    states: BTreeMap<(Name, IpAddr), AdminState>,
    registrations: BTreeMap<(Name, IpAddr), RegistrationRequest>,
    /// Changed since the last write.
    dirty: bool,
}

impl Copy {
    pub fn new(path: PathBuf) -> Copy {
        Copy { path, states: BTreeMap::new(), registrations: BTreeMap::new(), dirty: false }
    }

    /// A snapshot replaces what was known.
    pub fn replace(&mut self, changes: &[Change]) {
        self.states.clear();
        self.registrations.clear();
        self.apply(changes);
        self.dirty = true;
    }

    pub fn apply(&mut self, changes: &[Change]) {
        // heartbeats and verdicts are not kept: they alone leave the copy as it was
        if changes
            .iter()
            .all(|c| matches!(c, Change::Member { .. } | Change::Verdict { .. } | Change::UnreadableVerdict))
        {
            return;
        }
        for change in changes {
            match change {
                Change::State { service, address, state: AdminState::Auto } => {
                    self.states.remove(&(service.clone(), *address));
                }
                Change::State { service, address, state } => {
                    self.states.insert((service.clone(), *address), *state);
                }
                Change::Registration { service, address, lease: None } => {
                    self.registrations.remove(&(service.clone(), *address));
                }
                Change::Registration { service, address, lease: Some(lease) } => {
                    self.registrations.insert((service.clone(), *address), lease.request.clone());
                }
                // nodes and their verdicts live as long as the nodes do: not kept
                Change::Member { .. } | Change::Verdict { .. } | Change::UnreadableVerdict => {}
            }
        }
        self.dirty = true;
    }

    /// Writes the copy when it changed; a failure is logged and retried next time.
    pub fn save(&mut self) {
        if !self.dirty {
            return;
        }
        let admin_states = super::stored_states(self.states.iter());
        // etcd's leases end when etcd says: the copy keeps no expiry
        let registrations =
            self.registrations.iter().map(|((service, _), r)| super::stored_registration(service, r, 0.0)).collect();
        let saved_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let saved = Saved { saved_at, stored: Stored { version: 1, admin_states, registrations } };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        match super::file::write(&self.path, &saved) {
            Ok(_) => self.dirty = false,
            Err(e) => tracing::warn!("store: cannot keep the copy of etcd's state in {}: {e}", self.path.display()),
        }
    }
}

/// The copy at `path`, as the event the owner falls back on; none when there is no
/// copy, or it does not parse (said in a warning: the node then starts from its
/// config alone).
pub fn read(path: &Path) -> Option<Event> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("store: cannot read the copy {}: {e}", path.display());
            return None;
        }
    };
    let saved: Saved = serde_json::from_slice(&bytes)
        .map_err(|e| tracing::warn!("store: ignoring the copy {}: {e}", path.display()))
        .ok()?;
    let mut changes = Vec::new();
    for s in saved.stored.admin_states {
        let Some(service) = service_name(&s.service) else { continue };
        changes.push(Change::State { service, address: s.address, state: s.state });
    }
    for r in saved.stored.registrations {
        let Some(service) = service_name(&r.service) else { continue };
        let (address, ttl) = (r.address, r.ttl_seconds);
        let request = super::stored_request(r, ttl);
        // the lease is etcd's: a renewal of this one registers afresh
        let lease = Some(Lease { request, id: 0, expires_at: None });
        changes.push(Change::Registration { service, address, lease });
    }
    let saved_at = if saved.saved_at.is_finite() { saved.saved_at } else { 0.0 };
    Some(Event::Copy { saved_at, changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_round_trips_and_a_bad_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/copy.json");
        assert_eq!(read(&path), None);
        let service = service_name("www.lb.example").unwrap();
        let drain = Change::State {
            service: service.clone(),
            address: "127.0.0.10".parse().unwrap(),
            state: AdminState::Drain,
        };
        let request = RegistrationRequest {
            address: "127.0.0.20".parse().unwrap(),
            ttl_seconds: 30,
            region: None,
            weight: Some(1),
            priority: Some(1),
            check_address: None,
        };
        let lease = Some(Lease { request: request.clone(), id: 77, expires_at: None });
        let registered = Change::Registration { service: service.clone(), address: request.address, lease };
        let mut copy = Copy::new(path.clone());
        copy.replace(&[drain.clone(), registered]);
        copy.save();
        let Some(Event::Copy { changes, .. }) = read(&path) else { panic!("no copy") };
        let back = Change::Registration {
            service,
            address: request.address,
            lease: Some(Lease { request, id: 0, expires_at: None }),
        };
        assert_eq!(changes, [drain, back]);
        std::fs::write(&path, "{ broken").unwrap();
        assert_eq!(read(&path), None);
    }
}

//! Keeping admin states and registrations: written whole to the memory or file
//! store, or key by key through the etcd store, whose reports the owner applies.

use super::{RegisterError, Registration, SetStateError, State, from_unix, registration_target, unix};
use crate::api::{self, AdminState, StoredState};
use crate::store::{self, Store, Stored};
use hickory_proto::rr::Name;
use std::net::IpAddr;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};

/// A caller waiting for a write to the etcd store: answered by the store when the
/// write fails, by the owner once it has applied the write.
#[derive(Debug)]
pub enum Pending {
    State(oneshot::Sender<Result<(), SetStateError>>),
    Register {
        key: (Name, IpAddr),
        reply: api::RegistrationReply,
        to: oneshot::Sender<Result<api::RegistrationReply, RegisterError>>,
    },
    Deregister(oneshot::Sender<Result<(), RegisterError>>),
}

impl Pending {
    /// Answers that the store could not make the write: nothing changed.
    pub fn fail(self, reason: String) {
        // a caller that has gone away needs no answer
        match self {
            Pending::State(to) => drop(to.send(Err(SetStateError::Store(reason)))),
            Pending::Register { to, .. } => drop(to.send(Err(RegisterError::Store(reason)))),
            Pending::Deregister(to) => drop(to.send(Err(RegisterError::Store(reason)))),
        }
    }

    pub(super) fn succeed(self) {
        match self {
            Pending::State(to) => drop(to.send(Ok(()))),
            Pending::Register { reply, to, .. } => drop(to.send(Ok(reply))),
            Pending::Deregister(to) => drop(to.send(Ok(()))),
        }
    }
}

/// The next report of the etcd store; never, without one.
pub(super) async fn next(events: &mut Option<mpsc::Receiver<store::Event>>) -> Option<store::Event> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

impl State {
    /// `PUT …/state`: through the etcd store, or stored here before it applies.
    pub(super) fn on_set_state(
        &mut self,
        service: Name,
        address: IpAddr,
        state: AdminState,
        reply: oneshot::Sender<Result<(), SetStateError>>,
    ) {
        if !self.loaded.config.services.iter().any(|s| s.name == service) {
            let _ = reply.send(Err(SetStateError::UnknownService(service.to_string())));
        } else if let Store::Etcd(_) = self.store {
            self.write(store::Write::State { service, address, state }, Pending::State(reply));
        } else {
            let _ = reply.send(self.set_state(service, address, state));
        }
    }

    /// Stores the new state first: if the store fails, nothing changes.
    pub(super) fn set_state(&mut self, service: Name, address: IpAddr, state: AdminState) -> Result<(), SetStateError> {
        let key = (service, address);
        let before = match state {
            AdminState::Auto => self.admin.remove(&key),
            _ => self.admin.insert(key.clone(), state),
        };
        if let Err(e) = self.save() {
            match before {
                Some(old) => self.admin.insert(key, old),
                None => self.admin.remove(&key),
            };
            tracing::error!("admin state not changed: {e}");
            return Err(SetStateError::Store(e.to_string()));
        }
        tracing::info!("admin state of {} on {}: {state}", key.0, key.1);
        self.publish();
        Ok(())
    }

    pub(super) fn stored(&self) -> Stored {
        let admin_states = self
            .admin
            .iter()
            .map(|((service, address), state)| StoredState {
                service: service.to_string(),
                address: *address,
                state: *state,
            })
            .collect();
        let registrations = self
            .registrations
            .iter()
            .map(|((service, address), r)| api::StoredRegistration {
                service: service.to_string(),
                address: *address,
                region: r.target.region.clone(),
                weight: r.target.weight,
                priority: r.target.priority,
                check_address: r.target.check_address,
                expires_at: unix(r.expires),
                ttl_seconds: r.ttl,
            })
            .collect();
        Stored { version: 1, admin_states, registrations }
    }

    pub(super) fn save(&mut self) -> Result<(), String> {
        let saved = self.store.save(&self.stored()).map_err(|e| e.to_string());
        self.store_health(saved.as_ref().err().cloned());
        self.dirty = saved.is_err();
        saved
    }

    pub(super) fn store_health(&mut self, down: Option<String>) {
        self.metrics().store_up.store(down.is_none(), std::sync::atomic::Ordering::Relaxed);
        self.store_down = down;
    }

    /// Hands a write to the etcd store, which answers `pending`; while the store is
    /// down it is refused at once.
    pub(super) fn write(&mut self, write: store::Write, pending: Pending) {
        let Store::Etcd(shared) = &self.store else { unreachable!("only the etcd store takes writes") };
        if let Some(reason) = &self.store_down {
            return pending.fail(reason.clone());
        }
        if let Err(e) = shared.writes.try_send((write, pending)) {
            let (mpsc::error::TrySendError::Full((_, pending)) | mpsc::error::TrySendError::Closed((_, pending))) = e;
            pending.fail("too many writes in flight".into());
        }
    }

    /// Takes one report of the etcd store; true when answers may change. Callers whose
    /// writes are applied go to `done`, to hear back once the View shows them.
    pub(super) fn store_event(&mut self, event: store::Event, done: &mut Vec<Pending>) -> bool {
        let admin_before = self.admin.clone();
        let changed = self.apply_store_event(event, done);
        // an admin state set through any node is logged by every node
        let keys: std::collections::BTreeSet<_> = admin_before.keys().chain(self.admin.keys()).collect();
        for key in keys.into_iter().filter(|k| admin_before.get(k) != self.admin.get(k)) {
            let state = self.admin.get(key).copied().unwrap_or(AdminState::Auto);
            tracing::info!("admin state of {} on {}: {state} (from the store)", key.0, key.1);
        }
        changed
    }

    fn apply_store_event(&mut self, event: store::Event, done: &mut Vec<Pending>) -> bool {
        match event {
            store::Event::Snapshot { revision, changes } => {
                self.admin.clear();
                self.registrations.clear();
                changes.into_iter().for_each(|c| _ = self.store_change(c));
                self.revision = revision;
                self.store_health(None);
                true
            }
            store::Event::Changes { revision, changes } => {
                self.revision = self.revision.max(revision);
                changes.into_iter().fold(false, |changed, c| self.store_change(c) | changed)
            }
            store::Event::Down(reason) => {
                self.store_health(Some(reason));
                false
            }
            store::Event::Written { revision, changes, pending } => {
                // a write the watch has already brought (or gone past) is not applied twice
                let changed = revision > self.revision
                    && changes.into_iter().fold(false, |changed, c| self.store_change(c) | changed);
                if let Pending::Register { key, reply, .. } = &pending
                    && let Some(r) = self.registrations.get_mut(key)
                {
                    r.expires = from_unix(reply.expires_at);
                }
                done.push(pending);
                changed
            }
        }
    }

    /// Applies one key of the etcd store; true when answers may change. A registration
    /// this node's config refuses is skipped with a warning.
    pub(super) fn store_change(&mut self, change: store::Change) -> bool {
        match change {
            store::Change::State { service, address, state } => {
                let key = (service, address);
                let before = match state {
                    AdminState::Auto => self.admin.remove(&key),
                    _ => self.admin.insert(key, state),
                };
                before.unwrap_or(AdminState::Auto) != state
            }
            store::Change::Registration { service, address, lease: None } => {
                self.registrations.remove(&(service, address)).is_some()
            }
            store::Change::Registration { service, address, lease: Some((request, lease)) } => {
                let config = &self.loaded.config;
                let target = match config.services.iter().find(|s| s.name == service) {
                    Some(s) => registration_target(config, s, &request),
                    None => Err(RegisterError::UnknownService(service.to_string())),
                };
                let key = (service, address);
                match target {
                    Ok(target) => {
                        let changed = self.registrations.get(&key).is_none_or(|b| b.target != target);
                        let expires = SystemTime::now() + std::time::Duration::from_secs(request.ttl_seconds);
                        let registration =
                            Registration { target, expires, ttl: request.ttl_seconds, lease: Some(lease) };
                        self.registrations.insert(key, registration);
                        changed
                    }
                    Err(e) => {
                        tracing::warn!("store: skipping the registration of {address} for {}: {e}", key.0);
                        self.registrations.remove(&key).is_some()
                    }
                }
            }
        }
    }
}

//! Registrations: targets announced through the API, held for their lease.

use super::persist::Pending;
use super::{RegisterError, State, from_unix, unix};
use crate::api;
use crate::config::{Config, Service, Target};
use crate::health::Runner;
use crate::store::{self, Store};
use hickory_proto::rr::Name;
use std::net::IpAddr;
use std::time::SystemTime;
use tokio::sync::oneshot;

/// A target announced through the API, until its lease expires.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Registration {
    pub(super) target: Target,
    /// With the etcd store, etcd expires the lease; this node knows the expiry of the
    /// renewals it made, and of others' only until their first renewal.
    pub(super) expires: SystemTime,
    pub(super) ttl: u64,
    /// The etcd lease.
    pub(super) lease: Option<i64>,
}

impl Registration {
    /// The lease expiry, unless it has passed: then it is one this node no longer knows
    /// (another node renewed the etcd lease).
    pub(super) fn known_expiry(&self) -> Option<f64> {
        (self.expires > SystemTime::now()).then(|| unix(self.expires))
    }
}

pub(super) fn origin(registration: Option<&Registration>) -> &'static str {
    if registration.is_some() { "registration" } else { "config" }
}

/// Checks a registration against SPEC §4 and the service's config.
pub(super) fn registration_target(
    config: &Config,
    service: &Service,
    request: &api::RegistrationRequest,
) -> Result<Target, RegisterError> {
    let invalid = |m: String| Err(RegisterError::Invalid(m));
    let unicast = crate::config::is_unicast;
    if !unicast(&request.address) {
        return invalid(format!("address: {} is not a unicast address", request.address));
    }
    if let Some(c) = request.check_address.filter(|c| !unicast(c)) {
        return invalid(format!("check_address: {c} is not a unicast address"));
    }
    if !(3..=86400).contains(&request.ttl_seconds) {
        return invalid(format!("ttl_seconds: must be 3 to 86400, not {}", request.ttl_seconds));
    }
    if let Some(w) = request.weight.filter(|w| *w > 1000) {
        return invalid(format!("weight: must be 0 to 1000, not {w}"));
    }
    if let Some(p) = request.priority.filter(|p| *p == 0) {
        return invalid(format!("priority: must be 1 to 255, not {p}"));
    }
    match &request.region {
        Some(r) if !config.regions.contains_key(r) => return invalid(format!("region: no region {r:?}")),
        None if service.policy == crate::config::Policy::Gslb => {
            return invalid("region: required: every target of a gslb service needs a region".into());
        }
        _ => {}
    }
    if service.targets.iter().any(|t| t.address == request.address) {
        return Err(RegisterError::Configured(request.address));
    }
    Ok(Target {
        address: request.address,
        weight: request.weight.unwrap_or(1),
        region: request.region.clone(),
        priority: request.priority.unwrap_or(1),
        check_address: request.check_address,
    })
}

impl State {
    /// `POST …/registrations`: checked here, then made through the etcd store (a
    /// renewal that changes nothing is a lease keep-alive) or stored here.
    pub(super) fn on_register(
        &mut self,
        service: Name,
        request: api::RegistrationRequest,
        reply: oneshot::Sender<Result<api::RegistrationReply, RegisterError>>,
        runner: &mut Runner,
    ) {
        let (target, answer) = match self.check_registration(&service, &request) {
            Ok(checked) => checked,
            Err(e) => return drop(reply.send(Err(e))),
        };
        if !matches!(self.store, Store::Etcd(_)) {
            return drop(reply.send(self.register(service, request, target, answer, runner)));
        }
        let key = (service.clone(), request.address);
        let lease = self.registrations.get(&key).and_then(|r| Some((r, r.lease?)));
        let write = match lease {
            Some((r, lease)) if r.target == target && r.ttl == request.ttl_seconds => {
                store::Write::Renew { service, request, lease }
            }
            other => store::Write::Register { service, request, replaces: other.map(|(_, l)| l) },
        };
        self.write(write, Pending::Register { key, reply: answer, to: reply });
    }

    /// `DELETE …/registrations/{address}`.
    pub(super) fn on_deregister(
        &mut self,
        key: (Name, IpAddr),
        reply: oneshot::Sender<Result<(), RegisterError>>,
        runner: &mut Runner,
    ) {
        if !self.loaded.config.services.iter().any(|s| s.name == key.0) {
            let _ = reply.send(Err(RegisterError::UnknownService(key.0.to_string())));
        } else if !self.registrations.contains_key(&key) {
            let _ = reply.send(Err(RegisterError::NotRegistered(key.1)));
        } else if let Store::Etcd(_) = self.store {
            let lease = self.registrations[&key].lease;
            let (service, address) = key;
            self.write(store::Write::Deregister { service, address, lease }, Pending::Deregister(reply));
        } else {
            let _ = reply.send(self.deregister(key, runner));
        }
    }

    /// Checks a registration against the config and the service's registrations; the
    /// target it adds, and the reply if it is made now.
    pub(super) fn check_registration(
        &self,
        service: &Name,
        request: &api::RegistrationRequest,
    ) -> Result<(Target, api::RegistrationReply), RegisterError> {
        let config = &self.loaded.config;
        let Some(s) = config.services.iter().find(|s| s.name == *service) else {
            return Err(RegisterError::UnknownService(service.to_string()));
        };
        let target = registration_target(config, s, request)?;
        if !self.registrations.contains_key(&(service.clone(), request.address)) {
            let count = self.registrations.keys().filter(|(name, _)| name == service).count();
            if count >= s.max_registrations as usize {
                return Err(RegisterError::TooMany(s.max_registrations));
            }
        }
        let expires = SystemTime::now() + std::time::Duration::from_secs(request.ttl_seconds);
        let reply = api::RegistrationReply {
            service: service.to_string(),
            address: request.address,
            expires_at: unix(expires),
            service_ttl: s.ttl,
        };
        Ok((target, reply))
    }

    /// Registers or renews with the memory or file store.
    pub(super) fn register(
        &mut self,
        service: Name,
        request: api::RegistrationRequest,
        target: Target,
        reply: api::RegistrationReply,
        runner: &mut Runner,
    ) -> Result<api::RegistrationReply, RegisterError> {
        let key = (service.clone(), request.address);
        let changed = self.registrations.get(&key).is_none_or(|r| r.target != target);
        let expires = from_unix(reply.expires_at);
        let registration = Registration { target, expires, ttl: request.ttl_seconds, lease: None };
        let before = self.registrations.insert(key.clone(), registration);
        if changed {
            if let Err(e) = self.save() {
                match before {
                    Some(old) => self.registrations.insert(key, old),
                    None => self.registrations.remove(&key),
                };
                return Err(RegisterError::Store(e));
            }
            tracing::info!("registered {} for {service}", request.address);
            self.resync(runner);
        } else {
            // a renewal that changes nothing rebuilds nothing; its expiry is written on the next tick
            self.dirty = true;
        }
        Ok(reply)
    }

    /// Deregisters with the memory or file store.
    pub(super) fn deregister(&mut self, key: (Name, IpAddr), runner: &mut Runner) -> Result<(), RegisterError> {
        let Some(old) = self.registrations.remove(&key) else { return Err(RegisterError::NotRegistered(key.1)) };
        if let Err(e) = self.save() {
            self.registrations.insert(key, old);
            return Err(RegisterError::Store(e));
        }
        tracing::info!("deregistered {} from {}", key.1, key.0);
        self.resync(runner);
        Ok(())
    }

    /// Drops expired leases (at most one tick after expiry) and writes pending renewals.
    /// etcd expires its own leases, and its deletions arrive through the watch.
    pub(super) fn expire(&mut self, runner: &mut Runner) {
        if let Store::Etcd(_) = self.store {
            return;
        }
        let now = SystemTime::now();
        let before = self.registrations.len();
        self.registrations.retain(|(service, address), r| {
            let keep = r.expires > now;
            if !keep {
                tracing::info!("registration of {address} for {service} expired");
            }
            keep
        });
        let expired = self.registrations.len() != before;
        if expired || self.dirty {
            let _ = self.save();
        }
        if expired {
            self.resync(runner);
        }
    }
}

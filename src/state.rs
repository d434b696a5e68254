//! The single owner of mutable state. Health verdicts, admin states and reloads arrive
//! here; on a change the owner rebuilds the View and publishes it with one swap.
//! Readers (the query path) never lock, and nothing else writes.

use crate::api::{self, AdminState, StoredState};
use crate::app::Loaded;
use crate::config::{Check, CheckKind, Config};
use crate::health::{Health, ProbeKey, RiseFall, Runner, Verdict};
use crate::steer::{self, Client, Family};
use crate::store::{self, Store, Stored};
use crate::view::View;
use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Why a reload was refused; the running config is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("{0} changed: this needs a restart (the running config is kept)")]
    NeedsRestart(String),
    #[error("steerdns is stopping")]
    Stopping,
}

/// Why a registration was refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is a configured target of this service")]
    Configured(IpAddr),
    #[error("the service already has max_registrations = {0} registrations")]
    TooMany(u32),
    #[error("no registration of {0} for this service")]
    NotRegistered(IpAddr),
    #[error("store unavailable: {0}")]
    Store(String),
    #[error("steerdns is stopping")]
    Stopping,
}

/// Why an admin state was not set; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetStateError {
    #[error("unknown service {0}")]
    UnknownService(String),
    #[error("store unavailable: {0}")]
    Store(String),
    #[error("steerdns is stopping")]
    Stopping,
}

enum Command {
    Reload(Box<Loaded>, oneshot::Sender<Result<(), ReloadError>>),
    SetState(Name, IpAddr, AdminState, oneshot::Sender<Result<(), SetStateError>>),
    Status(oneshot::Sender<api::Status>),
    Metrics(oneshot::Sender<String>),
    Explain(ExplainRequest, oneshot::Sender<api::Explanation>),
    Register(Name, api::RegistrationRequest, oneshot::Sender<Result<api::RegistrationReply, RegisterError>>),
    Deregister(Name, IpAddr, oneshot::Sender<Result<(), RegisterError>>),
}

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

    fn succeed(self) {
        match self {
            Pending::State(to) => drop(to.send(Ok(()))),
            Pending::Register { reply, to, .. } => drop(to.send(Ok(reply))),
            Pending::Deregister(to) => drop(to.send(Ok(()))),
        }
    }
}

/// What `explain` is asked about.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub name: Name,
    pub qtype: hickory_proto::rr::RecordType,
    /// The client subnet sent as ECS, if any.
    pub client: Option<ipnet::IpNet>,
    /// The query's source address.
    pub source: IpAddr,
}

/// Sends commands to the state owner.
#[derive(Clone)]
pub struct StateHandle {
    commands: mpsc::Sender<Command>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl StateHandle {
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Replaces the running config with `loaded` (already validated).
    pub async fn reload(&self, loaded: Loaded) -> Result<(), ReloadError> {
        self.ask(|r| Command::Reload(Box::new(loaded), r)).await.unwrap_or(Err(ReloadError::Stopping))
    }

    /// [`StateHandle::reload`] for callers outside the runtime.
    pub fn reload_blocking(&self, loaded: Loaded) -> Result<(), ReloadError> {
        let (reply, done) = oneshot::channel();
        self.commands.blocking_send(Command::Reload(Box::new(loaded), reply)).map_err(|_| ReloadError::Stopping)?;
        done.blocking_recv().map_err(|_| ReloadError::Stopping)?
    }

    /// Sets the admin state of (service, address), persisted before it applies.
    pub async fn set_state(&self, service: Name, address: IpAddr, state: AdminState) -> Result<(), SetStateError> {
        self.ask(|r| Command::SetState(service, address, state, r)).await.unwrap_or(Err(SetStateError::Stopping))
    }

    /// The status document.
    pub async fn status(&self) -> Option<api::Status> {
        self.ask(Command::Status).await
    }

    /// Registers (or renews) a target of `service`.
    pub async fn register(
        &self,
        service: Name,
        request: api::RegistrationRequest,
    ) -> Result<api::RegistrationReply, RegisterError> {
        self.ask(|r| Command::Register(service, request, r)).await.unwrap_or(Err(RegisterError::Stopping))
    }

    /// Removes a registration.
    pub async fn deregister(&self, service: Name, address: IpAddr) -> Result<(), RegisterError> {
        self.ask(|r| Command::Deregister(service, address, r)).await.unwrap_or(Err(RegisterError::Stopping))
    }

    /// Why a client gets its answer.
    pub async fn explain(&self, request: ExplainRequest) -> Option<api::Explanation> {
        self.ask(|r| Command::Explain(request, r)).await
    }

    /// The Prometheus exposition.
    pub async fn metrics(&self) -> Option<String> {
        self.ask(Command::Metrics).await
    }

    /// Counts a reload that failed before reaching the owner (config errors).
    pub fn count_failed_reload(&self) {
        self.metrics.reloads_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What is known of one probe key.
#[derive(Debug)]
struct KeyHealth {
    check: Check,
    /// The generation of the probe run whose verdicts count.
    generation: u64,
    machine: RiseFall,
    last: Option<Verdict>,
    change: Option<api::ChangeStatus>,
    last_failure: Option<String>,
}

/// A target announced through the API, until its lease expires.
#[derive(Debug, Clone, PartialEq)]
struct Registration {
    target: crate::config::Target,
    /// With the etcd store, etcd expires the lease; this node knows the expiry of the
    /// renewals it made, and of others' only until their first renewal.
    expires: SystemTime,
    ttl: u64,
    /// The etcd lease.
    lease: Option<i64>,
}

impl Registration {
    /// The lease expiry, unless it has passed: then it is one this node no longer knows
    /// (another node renewed the etcd lease).
    fn known_expiry(&self) -> Option<f64> {
        (self.expires > SystemTime::now()).then(|| unix(self.expires))
    }
}

fn origin(registration: Option<&Registration>) -> &'static str {
    if registration.is_some() { "registration" } else { "config" }
}

/// The state owner.
pub struct State {
    loaded: Loaded,
    registrations: BTreeMap<(Name, IpAddr), Registration>,
    /// Renewals not yet written to the store (written on the next tick).
    dirty: bool,
    health: HashMap<ProbeKey, KeyHealth>,
    /// Admin states other than auto, by (service, address).
    admin: BTreeMap<(Name, IpAddr), AdminState>,
    store: Store,
    /// Why the store cannot be written, while it cannot.
    store_down: Option<String>,
    /// The etcd revision the owner's state reflects.
    revision: i64,
    view: Arc<ArcSwap<View>>,
    commands: mpsc::Receiver<Command>,
}

impl State {
    /// The owner of `loaded` and of what `store` holds, publishing to `view`, and a
    /// handle to command it.
    pub fn new(loaded: Loaded, store: Store, stored: Stored, view: Arc<ArcSwap<View>>) -> (State, StateHandle) {
        let (tx, commands) = mpsc::channel(64);
        let admin = stored
            .admin_states
            .into_iter()
            .filter_map(|s| Some(((service_name(&s.service)?, s.address), s.state)))
            .collect();
        // leases that have not expired come back with their remaining time
        let now = SystemTime::now();
        let registrations = stored
            .registrations
            .into_iter()
            .filter_map(|r| {
                let expires = from_unix(r.expires_at);
                let target = crate::config::Target {
                    address: r.address,
                    weight: r.weight,
                    region: r.region,
                    priority: r.priority,
                    check_address: r.check_address,
                };
                let registration = Registration { target, expires, ttl: r.ttl_seconds, lease: None };
                (expires > now).then_some(((service_name(&r.service)?, r.address), registration))
            })
            .collect();
        // the etcd store is down until its first snapshot
        let store_down = matches!(store, Store::Etcd(_)).then(|| "connecting to etcd".to_string());
        let mut state = State {
            loaded,
            registrations,
            dirty: false,
            health: HashMap::new(),
            admin,
            store,
            store_down,
            revision: 0,
            view,
            commands,
        };
        state.track(&wanted_probes(&state.effective().config));
        state.publish();
        state.metrics().store_up.store(state.store_down.is_none(), std::sync::atomic::Ordering::Relaxed);
        let metrics = state.metrics();
        (state, StateHandle { commands: tx, metrics })
    }

    /// Applies verdicts and commands until `shutdown`, then stops the probes.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (tx, mut verdicts) = mpsc::channel(4096);
        let mut runner = Runner::new(tx);
        let started = runner.sync(&wanted_probes(&self.effective().config));
        self.follow(started);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        let mut store_events = None;
        if let Store::Etcd(shared) = &mut self.store {
            store_events = shared.events.take();
            tokio::spawn(shared.task.take().expect("the owner runs once"));
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.expire(&mut runner),
                Some(event) = next(&mut store_events) => {
                    // a burst of events costs one rebuild; callers hear back after it
                    let mut done = Vec::new();
                    let mut changed = self.store_event(event, &mut done);
                    while let Some(more) = store_events.as_mut().and_then(|e| e.try_recv().ok()) {
                        changed |= self.store_event(more, &mut done);
                    }
                    if changed {
                        self.resync(&mut runner);
                    }
                    done.into_iter().for_each(Pending::succeed);
                }
                Some(verdict) = verdicts.recv() => {
                    // a burst of verdicts costs one rebuild
                    let mut changed = self.apply(verdict);
                    while let Ok(more) = verdicts.try_recv() {
                        changed |= self.apply(more);
                    }
                    if changed {
                        self.publish();
                    }
                }
                Some(command) = self.commands.recv() => self.command(command, &mut runner),
            }
        }
        runner.stop().await;
    }

    fn command(&mut self, command: Command, runner: &mut Runner) {
        match command {
            Command::Reload(loaded, reply) => {
                let result = self.reload(*loaded, runner);
                let counter = if result.is_ok() { &self.metrics().reloads_ok } else { &self.metrics().reloads_failed };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = reply.send(result);
            }
            Command::SetState(service, address, state, reply) => {
                if !self.loaded.config.services.iter().any(|s| s.name == service) {
                    let _ = reply.send(Err(SetStateError::UnknownService(service.to_string())));
                } else if let Store::Etcd(_) = self.store {
                    self.write(store::Write::State { service, address, state }, Pending::State(reply));
                } else {
                    let _ = reply.send(self.set_state(service, address, state));
                }
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Register(service, request, reply) => match self.check_registration(&service, &request) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok((target, answer)) if matches!(self.store, Store::Etcd(_)) => {
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
                Ok((target, answer)) => {
                    let _ = reply.send(self.register(service, request, target, answer, runner));
                }
            },
            Command::Deregister(service, address, reply) => {
                let key = (service, address);
                if !self.loaded.config.services.iter().any(|s| s.name == key.0) {
                    let _ = reply.send(Err(RegisterError::UnknownService(key.0.to_string())));
                } else if !self.registrations.contains_key(&key) {
                    let _ = reply.send(Err(RegisterError::NotRegistered(address)));
                } else if let Store::Etcd(_) = self.store {
                    let lease = self.registrations[&key].lease;
                    let (service, address) = key;
                    self.write(store::Write::Deregister { service, address, lease }, Pending::Deregister(reply));
                } else {
                    let _ = reply.send(self.deregister(key, runner));
                }
            }
            Command::Explain(request, reply) => {
                let _ = reply.send(self.explain(&request));
            }
            Command::Metrics(reply) => {
                let view = self.view.load();
                let services: Vec<(String, String, u64, u64)> = self
                    .loaded
                    .config
                    .services
                    .iter()
                    .filter_map(|s| {
                        let counters = &view.services.get(&s.name)?.counters;
                        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                        Some((
                            s.name.to_string(),
                            s.policy.name().into(),
                            load(&counters.answers),
                            load(&counters.fail_opens),
                        ))
                    })
                    .collect();
                let _ = reply.send(self.metrics().render(&self.status(), &services));
            }
        }
    }

    /// Takes one verdict; true when answers may change (a key went down or came back:
    /// unknown and up answer alike). A verdict of a probe the config no longer has
    /// (stopped during a reload) finds no entry and is dropped.
    fn apply(&mut self, verdict: Verdict) -> bool {
        let metrics = self.view.load().metrics.clone();
        let Some(known) = self.health.get_mut(&verdict.key).filter(|k| k.generation == verdict.generation) else {
            return false;
        };
        metrics.observe_probe(&verdict.key.check, verdict.outcome.latency.as_secs_f64());
        let transition = known.machine.observe(verdict.outcome.passed);
        if !verdict.outcome.passed {
            known.last_failure = Some(verdict.outcome.reason.clone());
        }
        if let Some(t) = transition {
            let key = &verdict.key;
            let reason = &verdict.outcome.reason;
            tracing::info!("check {} on {}: {} → {} ({reason})", key.check, key.address, t.from, t.to);
            metrics.count_transition(&key.check, &t.to.to_string());
            known.change = Some(api::ChangeStatus {
                at: unix(verdict.at),
                from: t.from.to_string(),
                to: t.to.to_string(),
                reason: reason.clone(),
            });
        }
        known.last = Some(verdict);
        transition.is_some_and(|t| (t.from == Health::Down) != (t.to == Health::Down))
    }

    /// Keeps the health of probes whose key and check are unchanged; new probes start
    /// at unknown.
    fn track(&mut self, wanted: &BTreeMap<ProbeKey, Check>) {
        self.health.retain(|key, known| wanted.get(key) == Some(&known.check));
        for (key, check) in wanted {
            self.health.entry(key.clone()).or_insert_with(|| KeyHealth {
                check: check.clone(),
                generation: 0,
                machine: RiseFall::new(check.rise, check.fall),
                last: None,
                change: None,
                last_failure: None,
            });
        }
    }

    /// Counts, from now on, only the verdicts of the probe runs just started.
    fn follow(&mut self, started: Vec<(ProbeKey, u64)>) {
        for (key, generation) in started {
            if let Some(known) = self.health.get_mut(&key) {
                known.generation = generation;
            }
        }
    }

    fn reload(&mut self, loaded: Loaded, runner: &mut Runner) -> Result<(), ReloadError> {
        needs_restart(&self.loaded.config, &loaded.config)?;
        self.loaded = loaded;
        if let Store::Etcd(shared) = &self.store {
            // keys the old config refused (an unknown service, say) may be taken now
            shared.reread.notify_one();
        }
        self.resync(runner);
        tracing::info!("reloaded {}", self.loaded.config.file.display());
        Ok(())
    }

    /// Stores the new state first: if the store fails, nothing changes.
    fn set_state(&mut self, service: Name, address: IpAddr, state: AdminState) -> Result<(), SetStateError> {
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

    fn stored(&self) -> Stored {
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

    /// The config with every registration among its service's targets.
    fn effective(&self) -> Loaded {
        let mut config = self.loaded.config.clone();
        for ((service, _), registration) in &self.registrations {
            if let Some(s) = config.services.iter_mut().find(|s| s.name == *service) {
                s.targets.push(registration.target.clone());
            }
        }
        Loaded { config, zones: self.loaded.zones.clone(), geo: self.loaded.geo.clone() }
    }

    /// After the targets changed: probes follow, the View is rebuilt.
    fn resync(&mut self, runner: &mut Runner) {
        let wanted = wanted_probes(&self.effective().config);
        self.track(&wanted);
        let started = runner.sync(&wanted);
        self.follow(started);
        self.publish();
    }

    fn save(&mut self) -> Result<(), String> {
        let saved = self.store.save(&self.stored()).map_err(|e| e.to_string());
        self.store_health(saved.as_ref().err().cloned());
        self.dirty = saved.is_err();
        saved
    }

    fn store_health(&mut self, down: Option<String>) {
        self.metrics().store_up.store(down.is_none(), std::sync::atomic::Ordering::Relaxed);
        self.store_down = down;
    }

    /// Hands a write to the etcd store, which answers `pending`; while the store is
    /// down it is refused at once.
    fn write(&mut self, write: store::Write, pending: Pending) {
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
    fn store_event(&mut self, event: store::Event, done: &mut Vec<Pending>) -> bool {
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
    fn store_change(&mut self, change: store::Change) -> bool {
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
                        let expires = SystemTime::now() + std::time::Duration::from_secs(request.ttl_seconds);
                        let registration =
                            Registration { target, expires, ttl: request.ttl_seconds, lease: Some(lease) };
                        let before = self.registrations.insert(key, registration.clone());
                        before.is_none_or(|b| b.target != registration.target)
                    }
                    Err(e) => {
                        tracing::warn!("store: skipping the registration of {address} for {}: {e}", key.0);
                        self.registrations.remove(&key).is_some()
                    }
                }
            }
        }
    }

    /// Checks a registration against the config and the service's registrations; the
    /// target it adds, and the reply if it is made now.
    fn check_registration(
        &self,
        service: &Name,
        request: &api::RegistrationRequest,
    ) -> Result<(crate::config::Target, api::RegistrationReply), RegisterError> {
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
    fn register(
        &mut self,
        service: Name,
        request: api::RegistrationRequest,
        target: crate::config::Target,
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
    fn deregister(&mut self, key: (Name, IpAddr), runner: &mut Runner) -> Result<(), RegisterError> {
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
    fn expire(&mut self, runner: &mut Runner) {
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

    fn admin_state(&self, service: &Name, address: IpAddr) -> AdminState {
        self.admin.get(&(service.clone(), address)).copied().unwrap_or(AdminState::Auto)
    }

    fn publish(&self) {
        let health = |key: &ProbeKey| self.health.get(key).map_or(Health::Unknown, |k| k.machine.health());
        let admin = |service: &Name, address: IpAddr| self.admin_state(service, address);
        let view = View::build(&self.effective(), Some(&self.view.load()), &health, &admin);
        view.metrics.view_rebuilds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.view.store(Arc::new(view));
    }

    fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.view.load().metrics.clone()
    }

    /// The traced answer, with each candidate's health and admin state, and the
    /// drained targets the View leaves out.
    fn explain(&self, request: &ExplainRequest) -> api::Explanation {
        let view = self.view.load();
        let mut explanation = crate::dns::explain(&view, &request.name, request.qtype, request.client, request.source);
        let Some(service) = explanation.service.as_mut() else { return explanation };
        let effective = self.effective();
        let Some(config) = effective.config.services.iter().find(|s| s.name.to_string() == service.name) else {
            return explanation;
        };
        let probed = config
            .check
            .as_ref()
            .filter(|c| self.loaded.config.checks.get(*c).is_some_and(|c| c.kind != CheckKind::None));
        let v4 = service.family.starts_with("IPv4");
        for target in config.targets.iter().filter(|t| t.address.is_ipv4() == v4) {
            let admin = self.admin_state(&config.name, target.address);
            let index = service.candidates.iter().position(|c| c.address == Some(target.address));
            let candidate = match index {
                Some(i) => &mut service.candidates[i],
                None => {
                    service.candidates.push(api::CandidateExplanation {
                        address: Some(target.address),
                        region: target.region.clone(),
                        weight: target.weight,
                        priority: target.priority,
                        why: "drained by an operator: never answered".into(),
                        ..Default::default()
                    });
                    service.candidates.last_mut().expect("just pushed")
                }
            };
            candidate.admin = Some(admin.to_string());
            let key =
                probed.map(|c| ProbeKey { check: c.clone(), address: target.check_address.unwrap_or(target.address) });
            let known = key.and_then(|k| self.health.get(&k));
            candidate.health = Some(known.map_or("unchecked".into(), |k| k.machine.health().to_string()));
            candidate.since = known.and_then(|k| k.change.as_ref()).map(|c| c.at);
            candidate.last_failure = known.and_then(|k| k.last_failure.clone());
            let registration = self.registrations.get(&(config.name.clone(), target.address));
            candidate.origin = Some(origin(registration).into());
            candidate.expires_at = registration.and_then(Registration::known_expiry);
        }
        explanation
    }

    fn status(&self) -> api::Status {
        let view = self.view.load();
        let effective = self.effective();
        let config = &effective.config;
        let services = config.services.iter().map(|s| self.service_status(s, &view)).collect();
        let unmatched_states = self
            .admin
            .iter()
            .filter(|((service, address), _)| {
                !config.services.iter().any(|s| s.name == *service && s.targets.iter().any(|t| t.address == *address))
            })
            .map(|((service, address), state)| StoredState {
                service: service.to_string(),
                address: *address,
                state: *state,
            })
            .collect();
        let store = api::StoreStatus {
            backend: self.store.backend().into(),
            up: self.store_down.is_none(),
            error: self.store_down.clone(),
        };
        api::Status { store, services, unmatched_states }
    }

    fn service_status(&self, service: &crate::config::Service, view: &View) -> api::ServiceStatus {
        // answered for a client of the default region (address 0.0.0.0 is in no network)
        let client = Client { address: IpAddr::from([0, 0, 0, 0]), ecs_source: None };
        let answered: Vec<IpAddr> = view.services.get(&service.name).map_or_else(Vec::new, |sv| {
            [Family::V4, Family::V6].iter().flat_map(|f| steer::eligible(sv, *f, &client, &view.geo)).collect()
        });
        let probed = service
            .check
            .as_ref()
            .filter(|c| self.loaded.config.checks.get(*c).is_some_and(|c| c.kind != CheckKind::None));
        let targets = service
            .targets
            .iter()
            .map(|t| {
                let probe_address = t.check_address.unwrap_or(t.address);
                let known =
                    probed.and_then(|c| self.health.get(&ProbeKey { check: c.clone(), address: probe_address }));
                let (passes, fails) = known.map_or((0, 0), |k| k.machine.streak());
                let registration = self.registrations.get(&(service.name.clone(), t.address));
                api::TargetStatus {
                    address: t.address,
                    origin: origin(registration).into(),
                    expires_at: registration.and_then(Registration::known_expiry),
                    region: t.region.clone(),
                    weight: t.weight,
                    priority: t.priority,
                    health: known.map_or("unchecked".into(), |k| k.machine.health().to_string()),
                    admin: self.admin_state(&service.name, t.address),
                    answered: answered.contains(&t.address),
                    probe_address: probed.map(|_| probe_address),
                    passes,
                    fails,
                    last_probe: known.and_then(|k| k.last.as_ref()).map(|v| api::ProbeStatus {
                        at: unix(v.at),
                        latency_ms: v.outcome.latency.as_secs_f64() * 1000.0,
                        passed: v.outcome.passed,
                        reason: v.outcome.reason.clone(),
                    }),
                    last_change: known.and_then(|k| k.change.clone()),
                    last_failure: known.and_then(|k| k.last_failure.clone()),
                }
            })
            .collect();
        api::ServiceStatus {
            name: service.name.to_string(),
            policy: service.policy.name().into(),
            order: service.order.name().into(),
            check: service.check.clone(),
            answered: answered.len(),
            targets,
        }
    }
}

/// Checks a registration against SPEC §4 and the service's config.
fn registration_target(
    config: &Config,
    service: &crate::config::Service,
    request: &api::RegistrationRequest,
) -> Result<crate::config::Target, RegisterError> {
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
    Ok(crate::config::Target {
        address: request.address,
        weight: request.weight.unwrap_or(1),
        region: request.region.clone(),
        priority: request.priority.unwrap_or(1),
        check_address: request.check_address,
    })
}

/// A service name as the API and the store write it: any case, with or without the
/// trailing dot.
pub fn service_name(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?.to_lowercase();
    name.set_fqdn(true);
    Some(name)
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn from_unix(seconds: f64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(seconds.max(0.0))
}

/// The next report of the etcd store; never, without one.
async fn next(events: &mut Option<mpsc::Receiver<store::Event>>) -> Option<store::Event> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Every (check, probe address) the config needs probed, with its check.
pub fn wanted_probes(config: &Config) -> BTreeMap<ProbeKey, Check> {
    let mut wanted = BTreeMap::new();
    for service in &config.services {
        let Some((name, check)) = service.check.as_ref().and_then(|c| config.checks.get_key_value(c)) else {
            continue;
        };
        if check.kind == CheckKind::None {
            continue; // always passes: nothing to probe
        }
        for target in &service.targets {
            let address = target.check_address.unwrap_or(target.address);
            wanted.insert(ProbeKey { check: name.clone(), address }, check.clone());
        }
    }
    wanted
}

/// Listen addresses and the store are bound at start: changing them needs a restart.
fn needs_restart(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let changed = [
        ("server.listen", old.server.listen != new.server.listen),
        ("server.admin_listen", old.server.admin_listen != new.server.admin_listen),
        ("[store]", old.store != new.store),
    ];
    let names: Vec<&str> = changed.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect();
    if names.is_empty() { Ok(()) } else { Err(ReloadError::NeedsRestart(names.join(", "))) }
}

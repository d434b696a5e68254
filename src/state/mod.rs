//! The single owner of mutable state. Health verdicts, admin states and reloads arrive
//! here; on a change the owner rebuilds the View and publishes it with one swap.
//! Readers (the query path) never lock, and nothing else writes.

use crate::api::{self, AdminState};
use crate::app::Loaded;
use crate::config::{Check, CheckKind, Config};
use crate::health::{Health, ProbeKey, RiseFall, Runner, Verdict};
use crate::store::{Store, Stored};
use crate::view::View;
use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

mod persist;
mod registrations;
mod report;

pub use persist::Pending;
use persist::next;
use registrations::{Registration, origin, registration_target};

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
            Command::SetState(service, address, state, reply) => self.on_set_state(service, address, state, reply),
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Register(service, request, reply) => self.on_register(service, request, reply, runner),
            Command::Deregister(service, address, reply) => self.on_deregister((service, address), reply, runner),
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

//! The owner's logic as a pure model: [`Model::apply`] takes inputs (verdicts, calls,
//! store reports, ticks) and the time, and returns [`Effects`] (a View to publish,
//! writes for the store, replies, the probe set). It never reads a clock, touches a
//! socket or waits; the shell in `owner` moves messages and time.
//!
//! Every store follows one protocol: the model asks for a write and applies it only
//! when the store reports it made (its own report or its watch, whichever comes
//! first), so a failed write changes nothing and the caller gets the error.

use super::errors::Refused;
use crate::api::{self, AdminState, RegistrationRequest};
use crate::api::{RegisterError, ReloadError, SetStateError};
use crate::config::{Check, CheckKind, Config, Service, Target};
use crate::health::{Health, ProbeKey, ProbeSet, Report, Reported, RiseFall, Verdict};
use crate::loaded::Loaded;
use crate::metrics::Metrics;
use crate::store::{Change, Event, Write, WriteId};
use crate::view::View;
use hickory_proto::rr::Name;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Verdicts sent to the store at once, at most (shared health).
const VERDICTS_IN_FLIGHT: usize = 64;

/// Descriptors kept for the admin API's connections (SPEC §7).
const ADMIN_CONNECTIONS: u64 = 256;

/// Numbers a call, so its reply finds its caller.
pub type CallId = u64;

type Key = (Name, IpAddr);

/// What the model takes.
#[derive(Debug)]
pub enum Input {
    Verdict(Verdict),
    Call(CallId, Call),
    Store(Event),
    /// The shell's clock: a status document is published on a tick, at most.
    Tick,
}

/// What a caller asks of the owner.
#[derive(Debug)]
pub enum Call {
    Reload(Box<Loaded>),
    SetState { service: Name, address: IpAddr, state: AdminState },
    Register { service: Name, request: RegistrationRequest },
    Deregister { service: Name, address: IpAddr },
}

/// The answer to a [`Call`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Reload(Result<(), ReloadError>),
    SetState(Result<(), SetStateError>),
    Register(Result<api::RegistrationReply, RegisterError>),
    Deregister(Result<(), RegisterError>),
}

/// What the shell must do, in this order: change the probes, publish the View and
/// the status, hand the writes to the store, then answer the callers (so a caller
/// hears back once the View shows its change).
#[derive(Debug, Default)]
pub struct Effects {
    pub probes: Option<ProbeSet>,
    pub view: Option<Arc<View>>,
    pub status: Option<Arc<api::Status>>,
    pub writes: Vec<(WriteId, Write)>,
    /// Ask the store for a fresh snapshot (after a reload).
    pub reread: bool,
    /// The server has just become ready (SPEC §1 "Ready"): /healthz may say 200.
    pub ready: bool,
    pub replies: Vec<(CallId, Reply)>,
}

/// A target announced through the API, for its lease.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Registration {
    pub(super) target: Target,
    pub(super) ttl: u64,
    /// The store's lease.
    pub(super) lease: i64,
    /// When the lease ends, as far as this node knows: another node may have renewed it.
    pub(super) expires: SystemTime,
}

impl Registration {
    /// The lease expiry, unless it has passed: then it is one this node no longer knows.
    pub(super) fn known_expiry(&self, now: SystemTime) -> Option<f64> {
        (self.expires > now).then(|| unix(self.expires))
    }
}

/// What is known of one probe key.
#[derive(Debug)]
pub(super) struct KeyHealth {
    pub(super) check: Check,
    /// The generation of the probe run whose verdicts count.
    pub(super) generation: u64,
    pub(super) machine: RiseFall,
    pub(super) last: Option<Verdict>,
    pub(super) change: Option<api::ChangeStatus>,
    pub(super) last_failure: Option<String>,
    /// The backend's last load report (SPEC §9), kept until the next one.
    pub(super) report: Option<Report>,
}

/// A caller waiting for its write.
#[derive(Debug)]
enum Waiting {
    /// This node's verdict on a key, published (shared health): on failure it is
    /// published again after the next probe.
    Verdict(ProbeKey),
    State(CallId),
    Register {
        call: CallId,
        key: Key,
        reply: api::RegistrationReply,
    },
    Deregister(CallId),
}

/// A start not ready yet.
#[derive(Debug)]
struct Starting {
    /// When the first input came.
    since: Option<SystemTime>,
    wait: Duration,
}

/// The store as the model knows it.
#[derive(Debug)]
pub(super) struct StoreState {
    pub(super) backend: &'static str,
    /// Why the store cannot take writes, while it cannot (until its first snapshot too).
    pub(super) down: Option<String>,
    /// The revision the model's state reflects.
    revision: i64,
    /// Whether the first snapshot has come (or the copy was taken instead).
    pub(super) ready: bool,
    /// The store's copy of its last snapshot, until the start needs it.
    fallback: Option<(f64, Vec<Change>)>,
    /// When the copy the model answers from was saved, until the store answers.
    pub(super) from_copy: Option<f64>,
}

/// The owner's state and logic.
#[derive(Debug)]
pub struct Model {
    pub(super) loaded: Loaded,
    /// `loaded` with the registrations among its targets; None without registrations
    /// (then it is `loaded` itself, not a copy: a config of 100,000 services is big).
    with_registrations: Option<Loaded>,
    pub(super) registrations: BTreeMap<Key, Registration>,
    /// How many registrations each service has (for max_registrations).
    registered: HashMap<Name, usize>,
    /// Registrations a snapshot after an outage lacked, kept until then.
    lingering: BTreeMap<Key, SystemTime>,
    /// Closed services whose stored registrations were renewed: warned about once.
    closed_warned: BTreeSet<Name>,
    /// Admin states other than auto.
    pub(super) admin: BTreeMap<Key, AdminState>,
    pub(super) health: HashMap<ProbeKey, KeyHealth>,
    /// Shared health (SPEC §10), with `[health] share`.
    pub(super) shared: Option<super::shared::Shared>,
    /// The probes the runner was last given.
    pub(super) probing: Option<ProbeSet>,
    /// What the shared picture last looked like: per check interval, the live members.
    live: BTreeSet<(Duration, String)>,
    generations: u64,
    pub(super) store: StoreState,
    waiting: HashMap<WriteId, Waiting>,
    next_write: WriteId,
    pub(super) metrics: Arc<Metrics>,
    view: Arc<View>,
    /// Until ready (SPEC §1 "Ready"): when the first input came, and how long to wait.
    starting: Option<Starting>,
    /// The process's open-file limit, when known: TCP connections are clamped so that
    /// probes always have descriptors (SPEC §7).
    pub descriptors: Option<u64>,
    /// The clamped `tcp_max_connections` last logged.
    clamped: Option<usize>,
    /// What this batch of inputs changed.
    targets_changed: bool,
    /// The probes to run may have changed (probe keys, or who probes them).
    probes_changed: bool,
    view_changed: bool,
    status_changed: bool,
    ticked: bool,
    /// Services the last status document saw failing open (logged as they enter and
    /// leave).
    failing_open: std::collections::BTreeSet<String>,
    effects: Effects,
}

impl Model {
    /// The owner of `loaded`, before the store's first snapshot; the first
    /// [`Model::apply`] publishes the View, the status and the probes.
    pub fn new(loaded: Loaded, backend: &'static str, metrics: Arc<Metrics>) -> Model {
        metrics.store_up.store(false, std::sync::atomic::Ordering::Relaxed);
        let wait = loaded.config.startup_wait();
        let starting = (!wait.is_zero()).then_some(Starting { since: None, wait });
        let unknown = |_: &ProbeKey| (Health::Unknown, None);
        let view = Arc::new(View::build(&loaded, None, &unknown, &|_, _| AdminState::Auto, starting.is_some()));
        let (identity, health) = (&loaded.config.server.identity, &loaded.config.health);
        let shared = health.share.then(|| super::shared::Shared::new(identity.clone(), health.probers_per_target));
        Model {
            with_registrations: None,
            loaded,
            registrations: BTreeMap::new(),
            registered: HashMap::new(),
            lingering: BTreeMap::new(),
            closed_warned: BTreeSet::new(),
            admin: BTreeMap::new(),
            health: HashMap::new(),
            shared,
            probing: None,
            live: BTreeSet::new(),
            generations: 0,
            store: StoreState {
                backend,
                down: Some("waiting for the store".into()),
                revision: 0,
                ready: false,
                fallback: None,
                from_copy: None,
            },
            waiting: HashMap::new(),
            next_write: 0,
            metrics,
            view,
            starting,
            descriptors: None,
            clamped: None,
            targets_changed: true,
            probes_changed: true,
            view_changed: true,
            status_changed: true,
            ticked: true,
            failing_open: Default::default(),
            effects: Effects::default(),
        }
    }

    /// Takes a burst of inputs at `now`: one View at most, whatever their number.
    pub fn apply(&mut self, inputs: impl IntoIterator<Item = Input>, now: SystemTime) -> Effects {
        for input in inputs {
            match input {
                Input::Verdict(verdict) => self.verdict(verdict),
                Input::Call(id, call) => self.call(id, call, now),
                Input::Store(event) => self.store_event(event, now),
                Input::Tick => self.ticked = true,
            }
        }
        self.flush(now)
    }

    /// The last View built.
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    fn flush(&mut self, now: SystemTime) -> Effects {
        // readiness counts the probes of the targets as they are now; the store's copy,
        // when the start falls back on it, brings targets of its own
        self.end_lingering(now);
        self.sync_targets();
        self.check_ready(now);
        self.sync_targets();
        if self.ticked {
            self.heard(now);
        }
        if std::mem::take(&mut self.probes_changed) {
            let wanted = self.probe_set(now);
            if self.probing.as_ref() != Some(&wanted) {
                self.probing = Some(wanted.clone());
                self.effects.probes = Some(wanted);
            }
        }
        if std::mem::take(&mut self.view_changed) {
            self.publish(now);
        }
        self.publish_verdicts(now);
        if self.status_changed && std::mem::take(&mut self.ticked) {
            self.status_changed = false;
            let status = self.status(now);
            self.log_fail_open(&status);
            self.effects.status = Some(Arc::new(status));
        }
        std::mem::take(&mut self.effects)
    }

    /// Logs each service that starts or stops failing open, once, with why.
    fn log_fail_open(&mut self, status: &crate::api::Status) {
        let now: std::collections::BTreeSet<String> =
            status.services.iter().filter(|s| s.failing_open).map(|s| s.name.clone()).collect();
        for service in status.services.iter().filter(|s| s.failing_open && !self.failing_open.contains(&s.name)) {
            let why: Vec<String> = service
                .targets
                .iter()
                .filter(|t| t.answered)
                .map(|t| format!("{} {}", t.address, t.last_failure.as_deref().unwrap_or("down")))
                .collect();
            tracing::warn!(
                service = %service.name,
                "failing open: every candidate is down, and all are answered ({})",
                why.join("; ")
            );
        }
        for gone in self.failing_open.difference(&now) {
            tracing::info!(service = %gone, "no longer failing open");
        }
        self.failing_open = now;
    }

    /// After the targets changed: the config with the registrations, and the probes.
    fn sync_targets(&mut self) {
        if !std::mem::take(&mut self.targets_changed) {
            return;
        }
        self.with_registrations = with_registrations(&self.loaded, &self.registrations);
        self.probes_changed |= self.track(&wanted_probes(&self.effective().config));
        self.view_changed = true;
        self.status_changed = true;
    }

    /// Ready once every probe has a verdict and the store has given its first
    /// snapshot, or once the start has waited `startup_wait`; logged once.
    fn check_ready(&mut self, now: SystemTime) {
        let Some(starting) = &mut self.starting else { return };
        let since = *starting.since.get_or_insert(now);
        let waited = now.duration_since(since).unwrap_or_default();
        let measured = self.health.values().all(|k| k.last.is_some());
        if !(self.store.ready && measured) && waited < starting.wait {
            return;
        }
        if !self.store.ready
            && let Some((saved_at, changes)) = self.store.fallback.take()
        {
            self.start_from_copy(saved_at, changes, now);
        }
        self.starting = None;
        self.view_changed = true;
        self.effects.ready = true;
        let unmeasured = self.health.values().filter(|k| k.last.is_none()).count();
        let down = self.health.values().filter(|k| k.machine.health() == Health::Down).count();
        let up = self.health.len() - down - unmeasured;
        let mut line = format!("ready after {waited:.1?}: {up} probed targets up, {down} down");
        if unmeasured > 0 {
            line += &format!(", {unmeasured} not probed yet (startup_wait passed)");
        }
        if !self.store.ready {
            line += ", without the store's first snapshot (startup_wait passed)";
        }
        tracing::info!("{line}");
    }

    /// The store has not answered within startup_wait: what it last held, from its
    /// copy, instead of the config alone (so drains stay drained). The store stays
    /// down, so nothing is written or expired here until it answers.
    fn start_from_copy(&mut self, saved_at: f64, changes: Vec<Change>, now: SystemTime) {
        let age = now.duration_since(from_unix(saved_at)).unwrap_or_default();
        tracing::warn!(
            "the store did not answer within startup_wait: answering from its copy saved {:.0?} ago until it does",
            Duration::from_secs(age.as_secs())
        );
        changes.into_iter().for_each(|c| self.change(c, now));
        // the store's snapshot will come after an outage, as far as the model can tell
        self.store.ready = true;
        self.store.from_copy = Some(saved_at);
        self.metrics.store_from_copy.store(true, std::sync::atomic::Ordering::Relaxed);
        self.targets_changed = true;
        self.status_changed = true;
    }

    /// Whether the server is ready (SPEC §1 "Ready").
    /// The running config with every registration among its service's targets.
    pub(super) fn effective(&self) -> &Loaded {
        self.with_registrations.as_ref().unwrap_or(&self.loaded)
    }

    pub fn ready(&self) -> bool {
        self.starting.is_none()
    }

    fn publish(&mut self, now: SystemTime) {
        let health = |key: &ProbeKey| {
            let Some(known) = self.health.get(key) else { return (Health::Unknown, None) };
            self.decided(key, known, now).map_or((known.machine.health(), known.report), |(h, r, _)| (h, r))
        };
        let admin = |service: &Name, address: IpAddr| self.admin_state(service, address);
        let starting = self.starting.is_some();
        let mut view = View::build(self.effective(), Some(&self.view), &health, &admin, starting);
        view.tcp.max_connections = self.tcp_connections(view.tcp.max_connections);
        self.metrics.view_rebuilds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.view = Arc::new(view);
        self.effects.view = Some(self.view.clone());
        self.status_changed = true;
    }

    /// `configured` TCP connections, clamped to the descriptor limit less the reserve
    /// for probes (2 per probe key, and 64) and the admin API's 256 connections;
    /// logged once per change. With DNS over TLS, TCP and TLS share what is left
    /// (each is bounded by the same `tcp_max_connections`).
    fn tcp_connections(&mut self, configured: usize) -> usize {
        let Some(limit) = self.descriptors else { return configured };
        let reserve = 2 * self.health.len() as u64 + 64 + ADMIN_CONNECTIONS;
        let streams = if self.effective().config.server.tls_listen.is_empty() { 1 } else { 2 };
        let budget = usize::try_from(limit.saturating_sub(reserve) / streams).unwrap_or(usize::MAX).max(1);
        let allowed = configured.min(budget);
        let clamped = (allowed < configured).then_some(allowed);
        if clamped != self.clamped {
            self.clamped = clamped;
            if let Some(n) = clamped {
                let shared = if streams == 2 { " (TCP and DNS over TLS share the rest)" } else { "" };
                tracing::warn!(
                    "tcp_max_connections {configured} clamped to {n}: the open-file limit is {limit}, and {reserve} are kept for probes and the admin API{shared}"
                );
            }
        }
        allowed
    }

    /// Shared health at work: on, and this node a member the store can reach.
    pub(super) fn sharing(&self) -> Option<&super::shared::Shared> {
        self.shared.as_ref().filter(|s| s.joined() && self.store.down.is_none())
    }

    /// What the probers of `key` decided (SPEC §10): the health, the report, and the
    /// probers counted; None when this node decides by its own probe (not sharing, or
    /// no ranked prober has published yet).
    pub(super) fn decided(
        &self,
        key: &ProbeKey,
        known: &KeyHealth,
        now: SystemTime,
    ) -> Option<(Health, Option<Report>, Vec<String>)> {
        let shared = self.sharing()?;
        let ranked = shared.ranked(key, known.check.interval, now);
        let (health, report) = shared.combined(key, &ranked)?;
        Some((health, report, ranked.iter().map(|n| n.to_string()).collect()))
    }

    /// What answers take of `key` now (health and report), and whether the probers
    /// decided it (else this node's own probe did); None for a key it does not know.
    fn outcome(&self, key: &ProbeKey, now: SystemTime) -> Option<((Health, Option<Report>), bool)> {
        let known = self.health.get(key)?;
        Some(match self.decided(key, known, now) {
            Some((health, report, _)) => ((health, report), true),
            None => ((known.machine.health(), known.report), false),
        })
    }

    /// The probes this node runs: every key, or with shared health the keys it ranks
    /// for and those no ranked prober has published yet.
    fn probe_set(&self, now: SystemTime) -> ProbeSet {
        let mine = |key: &ProbeKey, known: &KeyHealth| match self.sharing() {
            None => true,
            Some(shared) => {
                let ranked = shared.ranked(key, known.check.interval, now);
                ranked.contains(&shared.me.as_str()) || shared.combined(key, &ranked).is_none()
            }
        };
        self.health
            .iter()
            .filter(|(key, known)| mine(key, known))
            .map(|(k, h)| (k.clone(), (h.check.clone(), h.generation)))
            .collect()
    }

    /// On a tick: whether a member's heartbeat went stale (or came back), which moves
    /// keys between probers and may change verdicts.
    fn heard(&mut self, now: SystemTime) {
        let Some(shared) = &self.shared else { return };
        let intervals: BTreeSet<Duration> = self.health.values().map(|k| k.check.interval).collect();
        let live: BTreeSet<(Duration, String)> = intervals
            .iter()
            .flat_map(|i| {
                shared
                    .members
                    .iter()
                    .filter(move |(_, heard)| now.duration_since(**heard).unwrap_or_default() <= 2 * *i)
                    .map(move |(id, _)| (*i, id.clone()))
            })
            .collect();
        if live != self.live {
            self.live = live;
            self.probes_changed = true;
            self.view_changed = true;
            self.status_changed = true;
        }
    }

    /// Queues this node's verdict on `key` for publication when it is a ranked prober
    /// and the verdict differs from what it published; at most [`VERDICTS_IN_FLIGHT`]
    /// go to the store at once, so a start (every key at once) never floods it.
    fn share_verdict(&mut self, key: &ProbeKey, now: SystemTime) {
        let Some(verdict) = self.own_verdict(key, now) else { return };
        let Some(shared) = &mut self.shared else { return };
        let same = |p: &crate::store::SharedVerdict| {
            (p.down, p.percent, p.drain) == (verdict.down, verdict.percent, verdict.drain)
        };
        if !shared.published.get(key).is_some_and(same) {
            shared.pending.insert(key.clone());
        }
    }

    /// This node's verdict on `key` to publish, when it is one of the key's ranked
    /// probers and has probed it.
    fn own_verdict(&self, key: &ProbeKey, now: SystemTime) -> Option<crate::store::SharedVerdict> {
        let known = self.health.get(key).filter(|k| k.last.is_some())?;
        let shared = self.sharing()?;
        if !shared.ranked(key, known.check.interval, now).contains(&shared.me.as_str()) {
            return None;
        }
        let report = known.report;
        Some(crate::store::SharedVerdict {
            down: known.machine.health() == Health::Down,
            percent: report.map(|r| r.percent),
            drain: report.is_some_and(|r| r.state == Reported::Drain),
            at: unix(now),
        })
    }

    /// Sends queued verdicts while fewer than [`VERDICTS_IN_FLIGHT`] are in flight.
    fn publish_verdicts(&mut self, now: SystemTime) {
        loop {
            let Some(shared) = &mut self.shared else { return };
            if shared.in_flight >= VERDICTS_IN_FLIGHT {
                return;
            }
            let Some(key) = shared.pending.pop_first() else { return };
            let Some(verdict) = self.own_verdict(&key, now) else { continue };
            let shared = self.shared.as_mut().expect("checked");
            shared.published.insert(key.clone(), verdict);
            shared.in_flight += 1;
            self.write(Write::Verdict { key: key.clone(), verdict }, Waiting::Verdict(key));
        }
    }

    pub(super) fn admin_state(&self, service: &Name, address: IpAddr) -> AdminState {
        self.admin.get(&(service.clone(), address)).copied().unwrap_or(AdminState::Auto)
    }

    fn reply(&mut self, call: CallId, reply: Reply) {
        self.effects.replies.push((call, reply));
    }

    /// Keeps the health of probes whose key and check are unchanged; new probes start
    /// at unknown with a generation of their own. True when the set changed.
    fn track(&mut self, wanted: &BTreeMap<ProbeKey, Check>) -> bool {
        let before = self.health.len();
        self.health.retain(|key, known| wanted.get(key) == Some(&known.check));
        let mut changed = self.health.len() != before;
        for (key, check) in wanted {
            if self.health.contains_key(key) {
                continue;
            }
            self.generations += 1;
            let known = KeyHealth {
                check: check.clone(),
                generation: self.generations,
                machine: RiseFall::new(check.rise, check.fall),
                last: None,
                change: None,
                last_failure: None,
                report: None,
            };
            self.health.insert(key.clone(), known);
            changed = true;
        }
        changed
    }

    /// Takes one verdict of the probe run that counts; a key going down or coming back
    /// changes answers (unknown and up answer alike).
    fn verdict(&mut self, verdict: Verdict) {
        let Some(known) = self.health.get_mut(&verdict.key).filter(|k| k.generation == verdict.generation) else {
            return;
        };
        self.metrics.observe_probe(&verdict.key.check, verdict.outcome.latency.as_secs_f64());
        // a report of down is down at once, without waiting for fall (SPEC §9)
        let transition = match verdict.outcome.report {
            Some(Report { state: Reported::Down, .. }) => known.machine.down_now(),
            _ => known.machine.observe(verdict.outcome.passed),
        };
        if let Some(report) = verdict.outcome.report {
            let before = known.report.replace(report).unwrap_or(Report::FULL);
            if before != report {
                let key = &verdict.key;
                tracing::info!("check {} on {}: reports {report} (was {before})", key.check, key.address);
                self.view_changed = true;
            }
        }
        if !verdict.outcome.passed {
            known.last_failure = Some(verdict.outcome.reason.clone());
        }
        if let Some(t) = transition {
            let (key, reason) = (&verdict.key, &verdict.outcome.reason);
            tracing::info!("check {} on {}: {} → {} ({reason})", key.check, key.address, t.from, t.to);
            self.metrics.count_transition(&key.check, &t.to.to_string());
            let at = unix(verdict.at);
            known.change =
                Some(api::ChangeStatus { at, from: t.from.to_string(), to: t.to.to_string(), reason: reason.clone() });
            self.view_changed |= (t.from == Health::Down) != (t.to == Health::Down);
        }
        // while starting, a first verdict may make a service ready
        self.view_changed |= known.last.is_none() && self.starting.is_some();
        let (key, at) = (verdict.key.clone(), verdict.at);
        known.last = Some(verdict);
        self.status_changed = true;
        if self.shared.is_some() {
            self.share_verdict(&key, at);
        }
    }

    fn call(&mut self, id: CallId, call: Call, now: SystemTime) {
        match call {
            Call::Reload(loaded) => {
                let result = self.reload(*loaded);
                let counter = if result.is_ok() { &self.metrics.reloads_ok } else { &self.metrics.reloads_failed };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.reply(id, Reply::Reload(result));
            }
            Call::SetState { service, address, state } => {
                let write = Write::State { service: service.clone(), address, state };
                match self.writable(&service) {
                    Ok(()) => self.write(write, Waiting::State(id)),
                    Err(e) => self.reply(id, Reply::SetState(Err(e.into()))),
                }
            }
            Call::Register { service, request } => match self.registration(service, request, now) {
                Ok((write, key, reply)) => {
                    let closed = self.loaded.config.services.iter().any(|s| s.name == key.0 && !s.accept_registrations);
                    if closed && self.closed_warned.insert(key.0.clone()) {
                        tracing::warn!(
                            "{} does not accept registrations: those already stored stay renewable until they lapse",
                            key.0
                        );
                    }
                    self.write(write, Waiting::Register { call: id, key, reply })
                }
                Err(e) => self.reply(id, Reply::Register(Err(e))),
            },
            Call::Deregister { service, address } => {
                let key = (service, address);
                let lease = self.registrations.get(&key).map(|r| r.lease);
                match (self.writable(&key.0), lease) {
                    (Err(e), _) => self.reply(id, Reply::Deregister(Err(e.into()))),
                    (Ok(()), None) => self.reply(id, Reply::Deregister(Err(RegisterError::NotRegistered(key.1)))),
                    (Ok(()), Some(lease)) => {
                        let (service, address) = key;
                        self.write(Write::Deregister { service, address, lease: Some(lease) }, Waiting::Deregister(id));
                    }
                }
            }
        }
    }

    fn reload(&mut self, loaded: Loaded) -> Result<(), ReloadError> {
        needs_restart(&self.loaded.config, &loaded.config)?;
        if self.loaded.config.log != loaded.config.log {
            tracing::warn!("[log] changed: the new settings take effect at the next start");
        }
        self.loaded = loaded;
        self.targets_changed = true;
        // keys the old config refused (an unknown service, say) may be taken now
        self.effects.reread = true;
        // logged by the caller, with who asked (StateHandle::reload_file)
        Ok(())
    }

    /// A change of `service` can be asked of the store now.
    fn writable(&self, service: &Name) -> Result<(), Refused> {
        let config = &self.loaded.config;
        if !config.services.iter().any(|s| s.name == *service) && !config.templates.iter().any(|t| t.matches(service)) {
            return Err(Refused::UnknownService(service.to_string()));
        }
        match &self.store.down {
            Some(reason) => Err(Refused::Store(reason.clone())),
            None => Ok(()),
        }
    }

    /// Checks a registration; the write that makes it (a renewal that changes nothing
    /// keeps its lease alive), and the reply once it is made.
    fn registration(
        &self,
        service: Name,
        request: RegistrationRequest,
        now: SystemTime,
    ) -> Result<(Write, Key, api::RegistrationReply), RegisterError> {
        let config = &self.loaded.config;
        let (s, template) = service_of(&self.loaded, &service)?;
        let s = s.as_ref();
        let target = registration_target(config, s, &request)?;
        within_networks(s, &request)?;
        let key = (service.clone(), request.address);
        let known = self.registrations.get(&key);
        if let (Some(t), None) = (template, known) {
            self.template_room(t, &service)?;
        }
        // a closed service: what is stored stays renewable until it lapses
        if !s.accept_registrations && known.is_none() {
            return Err(RegisterError::Closed(service.to_string()));
        }
        if known.is_none() && self.registered.get(&service).copied().unwrap_or(0) >= s.max_registrations as usize {
            return Err(RegisterError::TooMany(s.max_registrations));
        }
        self.writable(&service).map_err(RegisterError::from)?;
        let reply = api::RegistrationReply {
            service: service.to_string(),
            address: request.address,
            expires_at: unix(now + Duration::from_secs(request.ttl_seconds)),
            service_ttl: s.ttl,
        };
        let write = match known {
            Some(r) if r.target == target && r.ttl == request.ttl_seconds => {
                Write::Renew { service, request, lease: r.lease }
            }
            other => Write::Register { service, request, replaces: other.map(|r| r.lease) },
        };
        Ok((write, key, reply))
    }

    /// Whether `template` can take one more registration, for `service` (SPEC §9:
    /// `max_services`, `max_registrations_total`).
    fn template_room(&self, template: &crate::config::Template, service: &Name) -> Result<(), RegisterError> {
        let config = &self.loaded.config;
        let made = self
            .registered
            .iter()
            .filter(|(name, n)| **n > 0 && template.matches(name) && !config.services.iter().any(|s| s.name == **name));
        let (services, registrations) = made.fold((0, 0), |(s, r), (_, n)| (s + 1, r + n));
        let full = |cap: String| Err(RegisterError::TemplateFull { pattern: template.pattern.to_string(), cap });
        if self.registered.get(service).is_none_or(|n| *n == 0) && services >= template.max_services {
            return full(format!("max_services = {}", template.max_services));
        }
        if registrations >= template.max_registrations_total {
            return full(format!("max_registrations_total = {}", template.max_registrations_total));
        }
        Ok(())
    }

    fn write(&mut self, write: Write, waiting: Waiting) {
        self.next_write += 1;
        self.waiting.insert(self.next_write, waiting);
        self.effects.writes.push((self.next_write, write));
    }

    fn store_event(&mut self, event: Event, now: SystemTime) {
        let admin_before = self.store.ready.then(|| self.admin.clone());
        match event {
            Event::Snapshot { revision, changes } => {
                // it replaces what was known: whatever it leaves out is gone, except
                // registrations after an outage (their backends could not renew)
                let outage = self.store.ready && self.store.down.is_some();
                self.admin.clear();
                if let Some(shared) = &mut self.shared {
                    shared.members.clear();
                    shared.verdicts.clear();
                }
                let before = std::mem::take(&mut self.registrations);
                self.registered.clear();
                self.lingering.clear();
                changes.into_iter().for_each(|c| self.change(c, now));
                if outage {
                    self.linger(before, now);
                }
                // what etcd holds of this node's verdicts is what it has published: only
                // those that differ (or ended with an old lease) are published again
                if let Some(shared) = &mut self.shared {
                    let me = shared.me.clone();
                    shared.published =
                        shared.verdicts.iter().filter_map(|(key, by)| Some((key.clone(), *by.get(&me)?))).collect();
                }
                self.targets_changed = true;
                self.store.revision = revision;
                self.store.ready = true;
                self.store.fallback = None;
                self.store.from_copy = None;
                self.metrics.store_from_copy.store(false, std::sync::atomic::Ordering::Relaxed);
                self.store_health(None);
            }
            Event::Changes { revision, changes } => {
                self.store.revision = self.store.revision.max(revision);
                changes.into_iter().for_each(|c| self.change(c, now));
            }
            Event::Down(reason) => self.store_health(Some(reason)),
            Event::Written { id, revision, changes } => {
                // a write the watch has already brought (or gone past) is not applied twice
                if revision > self.store.revision {
                    changes.into_iter().for_each(|c| self.change(c, now));
                }
                self.written(id);
            }
            Event::Failed { id, reason } => self.failed(id, reason),
            Event::Copy { saved_at, changes } => self.store.fallback = Some((saved_at, changes)),
        }
        // an admin state set through any node is logged by every node
        let Some(before) = admin_before else { return };
        let keys: BTreeSet<&Key> = before.keys().chain(self.admin.keys()).collect();
        for key in keys.into_iter().filter(|k| before.get(k) != self.admin.get(k)) {
            let state = self.admin.get(key).copied().unwrap_or(AdminState::Auto);
            tracing::info!("admin state of {} on {}: {state}", key.0, key.1);
        }
    }

    fn store_health(&mut self, down: Option<String>) {
        self.metrics.store_up.store(down.is_none(), std::sync::atomic::Ordering::Relaxed);
        // with shared health, the store's reach decides whose verdicts count
        if self.shared.is_some() && down.is_some() != self.store.down.is_some() {
            self.probes_changed = true;
            self.view_changed = true;
        }
        self.store.down = down;
        self.status_changed = true;
    }

    fn written(&mut self, id: WriteId) {
        match self.waiting.remove(&id) {
            Some(Waiting::Verdict(_)) => {
                if let Some(shared) = &mut self.shared {
                    shared.in_flight -= 1;
                }
            }
            Some(Waiting::State(call)) => self.reply(call, Reply::SetState(Ok(()))),
            Some(Waiting::Register { call, key, reply }) => {
                if let Some(r) = self.registrations.get_mut(&key) {
                    r.expires = from_unix(reply.expires_at);
                    self.status_changed = true;
                }
                self.reply(call, Reply::Register(Ok(reply)));
            }
            Some(Waiting::Deregister(call)) => self.reply(call, Reply::Deregister(Ok(()))),
            None => {}
        }
    }

    fn failed(&mut self, id: WriteId, reason: String) {
        match self.waiting.remove(&id) {
            Some(Waiting::Verdict(key)) => {
                tracing::debug!("publishing the verdict on {} {} failed: {reason}", key.check, key.address);
                // published again after the key's next probe
                if let Some(shared) = &mut self.shared {
                    shared.in_flight -= 1;
                    shared.published.remove(&key);
                }
            }
            Some(Waiting::State(call)) => self.reply(call, Reply::SetState(Err(SetStateError::Store(reason)))),
            Some(Waiting::Register { call, .. }) => {
                self.reply(call, Reply::Register(Err(RegisterError::Store(reason))))
            }
            Some(Waiting::Deregister(call)) => self.reply(call, Reply::Deregister(Err(RegisterError::Store(reason)))),
            None => {}
        }
    }

    /// Applies one key of the store. A registration this node's config refuses is
    /// skipped with a warning.
    fn change(&mut self, change: Change, now: SystemTime) {
        match change {
            Change::State { service, address, state } => {
                let key = (service, address);
                let before = match state {
                    AdminState::Auto => self.admin.remove(&key),
                    _ => self.admin.insert(key, state),
                };
                self.view_changed |= before.unwrap_or(AdminState::Auto) != state;
                self.status_changed = true;
            }
            Change::Member { identity, heartbeat } => {
                let Some(shared) = &mut self.shared else { return };
                let joined = match heartbeat {
                    Some(_) => shared.members.insert(identity.clone(), now).is_none(),
                    None => shared.members.remove(&identity).is_some(),
                };
                if joined {
                    let what = if heartbeat.is_some() { "joined" } else { "left" };
                    tracing::info!("shared health: node {identity} {what}");
                    self.probes_changed = true;
                    self.view_changed = true;
                    self.status_changed = true;
                }
            }
            Change::UnreadableVerdict => {
                if let Some(shared) = &mut self.shared {
                    shared.ignored += 1;
                    self.status_changed = true;
                }
            }
            Change::Verdict { key, node, verdict } => {
                // only a change of what the probers decide rebuilds the View, and only a
                // key gaining or losing its first counted verdict moves probes
                let before = self.outcome(&key, now);
                let Some(shared) = &mut self.shared else { return };
                self.status_changed = true;
                match verdict {
                    Some(_) if !shared.members.contains_key(&node) => {
                        shared.ignored += 1;
                        tracing::debug!(
                            "shared health: ignoring a verdict on {} {} from {node}, no member",
                            key.check,
                            key.address
                        );
                        return;
                    }
                    Some(v) => {
                        shared.verdicts.entry(key.clone()).or_default().insert(node, v);
                    }
                    None => {
                        if let Some(by) = shared.verdicts.get_mut(&key) {
                            by.remove(&node);
                        }
                    }
                }
                let after = self.outcome(&key, now);
                self.view_changed |= before.map(|o| o.0) != after.map(|o| o.0);
                self.probes_changed |= before.is_some_and(|o| o.1) != after.is_some_and(|o| o.1);
            }
            Change::Registration { service, address, lease: None } => self.unregister(&(service, address)),
            Change::Registration { service, address, lease: Some(lease) } => {
                let config = &self.loaded.config;
                let target = service_of(&self.loaded, &service)
                    .and_then(|(s, _)| registration_target(config, s.as_ref(), &lease.request));
                let key = (service, address);
                match target {
                    Ok(target) => {
                        let ttl = lease.request.ttl_seconds;
                        let expires = lease.expires_at.map_or(now + Duration::from_secs(ttl), from_unix);
                        self.targets_changed |= self.registrations.get(&key).is_none_or(|b| b.target != target);
                        let service = key.0.clone();
                        self.lingering.remove(&key);
                        let registration = Registration { target, ttl, lease: lease.id, expires };
                        if self.registrations.insert(key, registration).is_none() {
                            *self.registered.entry(service).or_default() += 1;
                        }
                        self.status_changed = true;
                    }
                    Err(e) => {
                        tracing::warn!("store: skipping the registration of {address} for {}: {e}", key.0);
                        self.unregister(&key);
                    }
                }
            }
        }
    }

    /// Keeps the registrations `before` had and the store's snapshot after an outage
    /// lacks, for one TTL from `now`: their backends renew (and so register afresh)
    /// within it, or they go (SPEC §4: no lease ends until the store has been back for
    /// one TTL).
    fn linger(&mut self, before: BTreeMap<Key, Registration>, now: SystemTime) {
        let missing: Vec<(Key, Registration)> =
            before.into_iter().filter(|(key, _)| !self.registrations.contains_key(key)).collect();
        if !missing.is_empty() {
            tracing::warn!(
                "store: {} registrations missing from it after the outage are kept one TTL for their backends to renew",
                missing.len()
            );
        }
        for (key, mut registration) in missing {
            registration.expires = now + Duration::from_secs(registration.ttl);
            self.lingering.insert(key.clone(), registration.expires);
            *self.registered.entry(key.0.clone()).or_default() += 1;
            self.registrations.insert(key, registration);
        }
    }

    /// Drops the lingering registrations whose TTL since the outage has passed.
    fn end_lingering(&mut self, now: SystemTime) {
        let ended: Vec<Key> =
            self.lingering.iter().filter(|(_, until)| **until <= now).map(|(k, _)| k.clone()).collect();
        for key in ended {
            tracing::info!("registration of {} for {} not renewed since the store came back: dropped", key.1, key.0);
            self.unregister(&key);
        }
    }

    fn unregister(&mut self, key: &Key) {
        self.lingering.remove(key);
        if self.registrations.remove(key).is_some() {
            self.targets_changed = true;
            if let Some(n) = self.registered.get_mut(&key.0) {
                *n -= 1;
            }
        }
    }
}

fn min_address() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}

/// The service a registration for `name` goes to: a configured one, or else the one a
/// template makes (SPEC §9), checked against the zone's data; with that template.
fn service_of<'l>(
    loaded: &'l Loaded,
    name: &Name,
) -> Result<(std::borrow::Cow<'l, Service>, Option<&'l crate::config::Template>), RegisterError> {
    let config = &loaded.config;
    if let Some(s) = config.services.iter().find(|s| s.name == *name) {
        return Ok((std::borrow::Cow::Borrowed(s), None));
    }
    let Some(template) = config.templates.iter().find(|t| t.matches(name)) else {
        return Err(RegisterError::UnknownService(name.to_string()));
    };
    crate::zone::check_service(&loaded.zones, name)
        .map_err(|reason| RegisterError::Forbidden { name: name.to_string(), reason })?;
    Ok((std::borrow::Cow::Owned(template.service(name)), Some(template)))
}

/// The config with every registration among its service's targets, except addresses
/// the config itself lists for that service, and with the services templates make for
/// registrations that no configured service holds.
fn with_registrations(loaded: &Loaded, registrations: &BTreeMap<Key, Registration>) -> Option<Loaded> {
    if registrations.is_empty() {
        return None;
    }
    let mut config = loaded.config.clone();
    let mut held = std::collections::HashSet::new();
    for s in &mut config.services {
        let configured = s.targets.len();
        let range = registrations.range((s.name.clone(), min_address())..).take_while(|(k, _)| k.0 == s.name);
        for (_, r) in range {
            held.insert(s.name.clone());
            if !s.targets[..configured].iter().any(|t| t.address == r.target.address) {
                s.targets.push(r.target.clone());
            }
        }
    }
    // the rest were taken (change) for a template's name: its service, in name order
    for ((name, _), r) in registrations.iter().filter(|((name, _), _)| !held.contains(name)) {
        match config.services.last_mut() {
            Some(last) if last.name == *name => last.targets.push(r.target.clone()),
            _ => {
                let Some(template) = config.templates.iter().find(|t| t.matches(name)) else { continue };
                let mut service = template.service(name);
                service.targets.push(r.target.clone());
                config.services.push(service);
            }
        }
    }
    Some(Loaded {
        config,
        zones: loaded.zones.clone(),
        geo: loaded.geo.clone(),
        tls: loaded.tls.clone(),
        admin_tls: loaded.admin_tls.clone(),
    })
}

/// A registration's address and check_address must lie in the service's
/// `registration_networks` (by default: [`crate::config::registrable`]).
fn within_networks(service: &Service, request: &RegistrationRequest) -> Result<(), RegisterError> {
    let allowed = |address: &IpAddr| match &service.registration_networks {
        Some(networks) => networks.iter().any(|n| n.contains(address)),
        None => crate::config::registrable(address),
    };
    for (field, address) in [("address", Some(request.address)), ("check_address", request.check_address)] {
        if let Some(address) = address.filter(|a| !allowed(a)) {
            let networks = match &service.registration_networks {
                Some(networks) => networks.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                None => "by default any unicast address but link-local, 0.0.0.0/8, 240.0.0.0/4 and ::/96".into(),
            };
            return Err(RegisterError::Outside { field, address, networks });
        }
    }
    Ok(())
}

/// Checks a registration against SPEC §4 and the service's config.
pub(super) fn registration_target(
    config: &Config,
    service: &Service,
    request: &RegistrationRequest,
) -> Result<Target, RegisterError> {
    let invalid = |field: &'static str, reason: String| Err(RegisterError::Invalid { field, reason });
    let unicast = crate::config::is_unicast;
    if !unicast(&request.address) {
        return invalid("address", format!("{} is not a unicast address", request.address));
    }
    if let Some(c) = request.check_address.filter(|c| !unicast(c)) {
        return invalid("check_address", format!("{c} is not a unicast address"));
    }
    if !(3..=86400).contains(&request.ttl_seconds) {
        return invalid("ttl_seconds", format!("must be 3 to 86400, not {}", request.ttl_seconds));
    }
    if let Some(w) = request.weight.filter(|w| *w > 1000) {
        return invalid("weight", format!("must be 0 to 1000, not {w}"));
    }
    if let Some(p) = request.priority.filter(|p| *p == 0) {
        return invalid("priority", format!("must be 1 to 255, not {p}"));
    }
    match &request.region {
        Some(r) if !config.regions.contains_key(r) => return invalid("region", format!("no region {r:?}")),
        None if service.policy == crate::config::Policy::Gslb => {
            return invalid("region", "required: every target of a gslb service needs a region".into());
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
pub(super) fn needs_restart(old: &Config, new: &Config) -> Result<(), ReloadError> {
    let changed = [
        ("server.listen", old.server.listen != new.server.listen),
        ("server.tls_listen", old.server.tls_listen != new.server.tls_listen),
        ("server.admin_listen", old.server.admin_listen != new.server.admin_listen),
        ("[store]", old.store != new.store),
    ];
    let names: Vec<&str> = changed.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect();
    if names.is_empty() { Ok(()) } else { Err(ReloadError::NeedsRestart(names.join(", "))) }
}

pub(super) fn unix(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn from_unix(seconds: f64) -> SystemTime {
    // the store checks what it reads; this only keeps a wild value from panicking
    let seconds = if seconds.is_finite() { seconds.clamp(0.0, 1e12) } else { 0.0 };
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds)
}

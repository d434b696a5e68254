//! The single owner of mutable state. Verdicts, calls (reloads, admin states,
//! registrations) and store reports go through one [`Model`]; its effects publish the
//! View (one atomic swap) and the status document, drive the probes and the store,
//! and answer callers. Readers never lock, and nothing else writes.
//!
//! `model` decides and is pure; [`Owner`] is its shell: one `select!` loop that owns the
//! channels, the clock, the probe runner and the store.

mod errors;
mod model;
mod report;
mod shared;
#[cfg(test)]
mod tests;

pub use crate::api::{RegisterError, ReloadError, SetStateError};
pub use model::{Call, CallId, Effects, Input, Model, Reply, wanted_probes};
pub use report::{ExplainRequest, explain};

use crate::api;
use crate::health::Runner;
use crate::loaded::Loaded;
use crate::metrics::Metrics;
use crate::store::{Event, Store};
use crate::supervise::{self, Heartbeat};
use crate::view::View;
use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How often the owner ticks: the status document is published at most this often.
const TICK: Duration = Duration::from_millis(250);

type Caller = (Call, oneshot::Sender<Reply>);

/// The admin API's settings as the running config has them: its tokens, the host
/// names it answers to, its TLS certificate. A reload replaces them at once.
#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// Opens every route (`server.admin_token_file`).
    pub admin: Option<String>,
    /// Opens the registration routes of every service without a token of its own
    /// (`server.registration_token_file`).
    pub registration: Option<String>,
    /// Services' own registration tokens (`registration_token_file`).
    pub services: std::collections::BTreeMap<hickory_proto::rr::Name, String>,
    /// Templates' registration tokens, for the names they match that no service holds.
    pub templates: Vec<(crate::config::Template, String)>,
    /// Configured services that a template with a token matches (they keep theirs).
    pub configured_under_templates: std::collections::HashSet<hickory_proto::rr::Name>,
    /// `server.admin_hosts`.
    pub hosts: Vec<String>,
    /// HTTPS, when `admin_tls_cert_file` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl AdminSettings {
    fn of(loaded: &Loaded) -> AdminSettings {
        let server = &loaded.config.server;
        AdminSettings {
            admin: server.admin_token.clone(),
            registration: server.registration_token.clone(),
            services: loaded
                .config
                .services
                .iter()
                .filter_map(|s| Some((s.name.clone(), s.registration_token.clone()?)))
                .collect(),
            templates: loaded
                .config
                .templates
                .iter()
                .filter_map(|t| Some((t.clone(), t.service.registration_token.clone()?)))
                .collect(),
            configured_under_templates: loaded
                .config
                .services
                .iter()
                .filter(|s| {
                    loaded.config.templates.iter().any(|t| t.service.registration_token.is_some() && t.matches(&s.name))
                })
                .map(|s| s.name.clone())
                .collect(),
            hosts: server.admin_hosts.clone(),
            tls: loaded.admin_tls.clone(),
        }
    }
}

/// Calls the owner, and reads what it publishes.
#[derive(Clone)]
pub struct StateHandle {
    calls: mpsc::Sender<Caller>,
    tokens: Arc<ArcSwap<AdminSettings>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    view: Arc<ArcSwap<View>>,
    status: Arc<ArcSwap<api::Status>>,
    metrics: Arc<Metrics>,
}

impl StateHandle {
    async fn call(&self, call: Call) -> Option<Reply> {
        let (reply, answer) = oneshot::channel();
        self.calls.send((call, reply)).await.ok()?;
        answer.await.ok()
    }

    /// Replaces the running config with `loaded` (already validated); its tokens work
    /// from then on and the old ones stop.
    pub async fn reload(&self, loaded: Loaded) -> Result<(), ReloadError> {
        let tokens = AdminSettings::of(&loaded);
        match self.call(Call::Reload(Box::new(loaded))).await {
            Some(Reply::Reload(result)) => self.reloaded(result, tokens),
            _ => Err(ReloadError::Stopping),
        }
    }

    /// Reads the config at `path` and every file it names (off the runtime's threads: a
    /// large one takes a while) and hands it to the owner; on any error the running
    /// config stays. The result is logged once, with `via`, whoever asked.
    pub async fn reload_file(&self, path: &std::path::Path, via: &str) -> Result<(), ReloadFailure> {
        let file = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || crate::loaded::load(&file)).await;
        let result = match read {
            Err(_) => Err(ReloadFailure::Panicked),
            Ok(Err(errors)) => Err(ReloadFailure::Config(errors)),
            Ok(Ok(loaded)) => {
                let (zones, services) = (loaded.config.zones.len(), loaded.config.services.len());
                self.reload(loaded).await.map(|()| (zones, services)).map_err(ReloadFailure::Owner)
            }
        };
        match result {
            Ok((zones, services)) => {
                tracing::info!(via, zones, services, "reloaded {}", path.display());
                Ok(())
            }
            Err(failure) => {
                if !matches!(failure, ReloadFailure::Owner(_)) {
                    self.count_failed_reload();
                }
                tracing::error!(via, "reload of {} failed, the running config is kept: {failure}", path.display());
                Err(failure)
            }
        }
    }

    fn reloaded(&self, result: Result<(), ReloadError>, tokens: AdminSettings) -> Result<(), ReloadError> {
        if result.is_ok() {
            self.tokens.store(Arc::new(tokens));
            crate::sys::trim_heap_soon();
        }
        result
    }

    /// The admin API's settings of the running config.
    pub fn admin_settings(&self) -> Arc<AdminSettings> {
        self.tokens.load_full()
    }

    /// [`StateHandle::reload`] for callers outside the runtime.
    pub fn reload_blocking(&self, loaded: Loaded) -> Result<(), ReloadError> {
        let tokens = AdminSettings::of(&loaded);
        let (reply, done) = oneshot::channel();
        let call = (Call::Reload(Box::new(loaded)), reply);
        self.calls.blocking_send(call).map_err(|_| ReloadError::Stopping)?;
        match done.blocking_recv() {
            Ok(Reply::Reload(result)) => self.reloaded(result, tokens),
            _ => Err(ReloadError::Stopping),
        }
    }

    /// Sets the admin state of (service, address); answers once the store has it and
    /// the View shows it.
    pub async fn set_state(&self, service: Name, address: IpAddr, state: api::AdminState) -> Result<(), SetStateError> {
        match self.call(Call::SetState { service, address, state }).await {
            Some(Reply::SetState(result)) => result,
            _ => Err(SetStateError::Stopping),
        }
    }

    /// Registers (or renews) a target of `service`.
    pub async fn register(
        &self,
        service: Name,
        request: api::RegistrationRequest,
    ) -> Result<api::RegistrationReply, RegisterError> {
        match self.call(Call::Register { service, request }).await {
            Some(Reply::Register(result)) => result,
            _ => Err(RegisterError::Stopping),
        }
    }

    /// Removes a registration.
    pub async fn deregister(&self, service: Name, address: IpAddr) -> Result<(), RegisterError> {
        match self.call(Call::Deregister { service, address }).await {
            Some(Reply::Deregister(result)) => result,
            _ => Err(RegisterError::Stopping),
        }
    }

    /// Whether the server is ready (SPEC §1 "Ready"): probes have verdicts and the
    /// store has answered, or `startup_wait` has passed.
    pub fn ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The status document the owner last published (at most a tick old).
    pub fn status(&self) -> Arc<api::Status> {
        self.status.load_full()
    }

    /// Why a client gets its answer: a query on the published View, annotated from
    /// the published status.
    pub fn explain(&self, request: &ExplainRequest) -> api::Explanation {
        explain(&self.view.load(), &self.status.load(), request)
    }

    /// The Prometheus exposition.
    pub fn metrics(&self, format: crate::metrics::Format) -> String {
        let view = self.view.load();
        let status = self.status.load();
        let services: Vec<(String, String, u64, u64)> = status
            .services
            .iter()
            .filter_map(|s| {
                let counters = &view.service(&crate::config::service_name(&s.name)?)?.counters;
                let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
                Some((s.name.clone(), s.policy.clone(), load(&counters.answers), load(&counters.fail_opens)))
            })
            .collect();
        self.metrics.render(&status, &services, view.signatures.as_deref(), format)
    }

    /// Counts a reload that failed before reaching the owner (config errors).
    pub fn count_failed_reload(&self) {
        self.metrics.reloads_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Why a reload of the config file changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadFailure {
    #[error("{}\n{} error(s)", .0, .0.0.len())]
    Config(crate::config::ConfigErrors),
    #[error("{0}")]
    Owner(ReloadError),
    #[error("reading the config panicked")]
    Panicked,
}

/// The shell around the [`Model`].
pub struct Owner {
    model: Model,
    first: Effects,
    store: Store,
    calls: mpsc::Receiver<Caller>,
    view: Arc<ArcSwap<View>>,
    status: Arc<ArcSwap<api::Status>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    heartbeat: Arc<Heartbeat>,
}

impl Owner {
    /// The owner of `loaded` and of what `store` holds, publishing to `view`, and a
    /// handle to call it. The View and the status are published before this returns.
    pub fn new(
        loaded: Loaded,
        mut store: Store,
        metrics: Arc<Metrics>,
        view: Arc<ArcSwap<View>>,
        heartbeat: Arc<Heartbeat>,
        descriptors: Option<u64>,
    ) -> (Owner, StateHandle) {
        let tokens = Arc::new(ArcSwap::from_pointee(AdminSettings::of(&loaded)));
        let mut model = Model::new(loaded, store.backend, metrics.clone());
        model.descriptors = descriptors;
        // the first effects publish the View, the status and the probes; `run` carries
        // them out
        let mut first = model.apply(store.first.take().map(Input::Store), SystemTime::now());
        view.store(model.view().clone());
        let status = first.status.take().expect("the first effects carry a status");
        let status = Arc::new(ArcSwap::new(status));
        let (tx, calls) = mpsc::channel(64);
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(model.ready()));
        let handle = StateHandle {
            calls: tx,
            tokens,
            ready: ready.clone(),
            view: view.clone(),
            status: status.clone(),
            metrics,
        };
        (Owner { model, first, store, calls, view, status, ready, heartbeat }, handle)
    }

    /// Applies inputs until `shutdown`, then stops the probes.
    pub async fn run(self, shutdown: CancellationToken) {
        let Owner { mut model, first, store, mut calls, view, status, ready, heartbeat } = self;
        let Store { writes, mut events, reread, task, .. } = store;
        let store_task = tokio::spawn(supervise::task("store", task));
        let (tx, mut verdicts) = mpsc::channel(4096);
        let runner = Runner::new(tx);
        let mut shell = Shell { runner, writes, reread, view, status, ready, callers: HashMap::new() };
        let mut next_call: CallId = 0;
        let mut tick = tokio::time::interval(TICK);
        let mut inputs = shell.execute(first);
        loop {
            heartbeat.beat();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => inputs.push(Input::Tick),
                event = events.recv() => {
                    // a store that stops reporting leaves the picture frozen: never quietly
                    let event = event.expect("the store task ended");
                    inputs.push(Input::Store(event));
                    while let Ok(more) = events.try_recv() {
                        inputs.push(Input::Store(more));
                    }
                }
                Some(verdict) = verdicts.recv() => {
                    inputs.push(Input::Verdict(verdict));
                    while let Ok(more) = verdicts.try_recv() {
                        inputs.push(Input::Verdict(more));
                    }
                }
                Some(caller) = calls.recv() => {
                    supervise::fault_point("owner");
                    let mut take = |(call, reply): Caller| {
                        next_call += 1;
                        shell.callers.insert(next_call, reply);
                        Input::Call(next_call, call)
                    };
                    inputs.push(take(caller));
                    while let Ok(more) = calls.try_recv() {
                        inputs.push(take(more));
                    }
                }
            }
            // writes the store could not take come back as failures, at once
            while !inputs.is_empty() {
                let effects = model.apply(std::mem::take(&mut inputs), SystemTime::now());
                inputs = shell.execute(effects);
            }
        }
        shell.runner.stop().await;
        drop(events);
        let _ = store_task.await;
    }
}

/// What the owner's effects act on.
struct Shell {
    runner: Runner,
    writes: mpsc::Sender<(crate::store::WriteId, crate::store::Write)>,
    reread: Arc<tokio::sync::Notify>,
    view: Arc<ArcSwap<View>>,
    status: Arc<ArcSwap<api::Status>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    callers: HashMap<CallId, oneshot::Sender<Reply>>,
}

impl Shell {
    /// Carries out `effects` in their order; returns the writes the store refused.
    fn execute(&mut self, effects: Effects) -> Vec<Input> {
        if let Some(probes) = &effects.probes {
            self.runner.sync(probes);
        }
        if let Some(view) = effects.view {
            self.view.store(view);
        }
        if let Some(status) = effects.status {
            self.status.store(status);
        }
        if effects.ready {
            self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let mut refused = Vec::new();
        for (id, write) in effects.writes {
            if self.writes.try_send((id, write)).is_err() {
                let reason = "too many writes in flight".to_string();
                refused.push(Input::Store(Event::Failed { id, reason }));
            }
        }
        if effects.reread {
            self.reread.notify_one();
        }
        for (id, reply) in effects.replies {
            // a caller that has gone away needs no answer
            if let Some(caller) = self.callers.remove(&id) {
                let _ = caller.send(reply);
            }
        }
        refused
    }
}

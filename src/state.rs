//! The single owner of mutable state. Health verdicts and reloads arrive here; on a
//! change the owner rebuilds the View and publishes it with one swap. Readers (the
//! query path) never lock, and nothing else writes.

use crate::app::Loaded;
use crate::config::{Check, CheckKind, Config};
use crate::health::{Health, ProbeKey, RiseFall, Runner, Verdict};
use crate::view::View;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
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

enum Command {
    Reload(Box<Loaded>, oneshot::Sender<Result<(), ReloadError>>),
}

/// Sends commands to the state owner.
#[derive(Clone)]
pub struct StateHandle {
    commands: mpsc::Sender<Command>,
}

impl StateHandle {
    /// Replaces the running config with `loaded` (already validated).
    pub async fn reload(&self, loaded: Loaded) -> Result<(), ReloadError> {
        let (reply, done) = oneshot::channel();
        self.commands.send(Command::Reload(Box::new(loaded), reply)).await.map_err(|_| ReloadError::Stopping)?;
        done.await.map_err(|_| ReloadError::Stopping)?
    }

    /// [`StateHandle::reload`] for callers outside the runtime.
    pub fn reload_blocking(&self, loaded: Loaded) -> Result<(), ReloadError> {
        let (reply, done) = oneshot::channel();
        self.commands.blocking_send(Command::Reload(Box::new(loaded), reply)).map_err(|_| ReloadError::Stopping)?;
        done.blocking_recv().map_err(|_| ReloadError::Stopping)?
    }
}

/// What is known of one probe key.
#[derive(Debug)]
struct KeyHealth {
    check: Check,
    machine: RiseFall,
}

/// The state owner.
pub struct State {
    loaded: Loaded,
    health: HashMap<ProbeKey, KeyHealth>,
    view: Arc<ArcSwap<View>>,
    commands: mpsc::Receiver<Command>,
}

impl State {
    /// The owner of `loaded`, publishing to `view`, and a handle to command it.
    pub fn new(loaded: Loaded, view: Arc<ArcSwap<View>>) -> (State, StateHandle) {
        let (tx, commands) = mpsc::channel(16);
        let mut state = State { loaded, health: HashMap::new(), view, commands };
        state.track(&wanted_probes(&state.loaded.config));
        state.publish();
        (state, StateHandle { commands: tx })
    }

    /// Applies verdicts and commands until `shutdown`, then stops the probes.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (tx, mut verdicts) = mpsc::channel(4096);
        let mut runner = Runner::new(tx);
        runner.sync(&wanted_probes(&self.loaded.config));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
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
                Some(command) = self.commands.recv() => match command {
                    Command::Reload(loaded, reply) => {
                        let _ = reply.send(self.reload(*loaded, &mut runner));
                    }
                },
            }
        }
        runner.stop().await;
    }

    /// Takes one verdict; true when answers may change (a key went down or came back:
    /// unknown and up answer alike). A verdict of a probe the config no longer has
    /// (stopped during a reload) finds no entry and is dropped.
    fn apply(&mut self, verdict: Verdict) -> bool {
        let Some(known) = self.health.get_mut(&verdict.key) else { return false };
        let transition = known.machine.observe(verdict.outcome.passed);
        if let Some(t) = transition {
            let key = &verdict.key;
            tracing::info!(
                "check {} on {}: {} → {} ({})",
                key.check,
                key.address,
                t.from,
                t.to,
                verdict.outcome.reason
            );
        }
        transition.is_some_and(|t| (t.from == Health::Down) != (t.to == Health::Down))
    }

    /// Keeps the health of probes whose key and check are unchanged; new probes start
    /// at unknown.
    fn track(&mut self, wanted: &BTreeMap<ProbeKey, Check>) {
        self.health.retain(|key, known| wanted.get(key) == Some(&known.check));
        for (key, check) in wanted {
            self.health
                .entry(key.clone())
                .or_insert_with(|| KeyHealth { check: check.clone(), machine: RiseFall::new(check.rise, check.fall) });
        }
    }

    fn reload(&mut self, loaded: Loaded, runner: &mut Runner) -> Result<(), ReloadError> {
        needs_restart(&self.loaded.config, &loaded.config)?;
        let wanted = wanted_probes(&loaded.config);
        self.track(&wanted);
        runner.sync(&wanted);
        self.loaded = loaded;
        self.publish();
        tracing::info!("reloaded {}", self.loaded.config.file.display());
        Ok(())
    }

    fn publish(&self) {
        let health = |key: &ProbeKey| self.health.get(key).map_or(Health::Unknown, |k| k.machine.health());
        let view = View::build(&self.loaded, Some(&self.view.load()), &health);
        self.view.store(Arc::new(view));
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

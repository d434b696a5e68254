//! Wiring: open the store, start the state owner (which runs the probes and publishes
//! the View), the admin API and then DNS; on shutdown make /healthz 503, keep
//! answering for a tenth of `shutdown_timeout` (at most 1 s), then stop DNS and let
//! in-flight queries finish, all within `shutdown_timeout`. The process-wide counters
//! are made here and handed to the servers and the owner.

use crate::admin::{self, AdminContext, Phase};
use crate::config::Config;
use crate::dns::Transport;
use crate::loaded::Loaded;
use crate::metrics::Metrics;
use crate::server::{self, Listeners};
use crate::state::{Owner, StateHandle};
use crate::store::{self, StoreError};
use crate::supervise::{self, HEARTBEAT_LIMIT, Heartbeat};
use crate::view::View;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A steerdns ready to run: the published View, and its state owner.
pub struct App {
    config: Config,
    view: Arc<ArcSwap<View>>,
    metrics: Arc<Metrics>,
    owner: Owner,
    handle: StateHandle,
    heartbeat: Arc<Heartbeat>,
    /// End the process when the owner hangs (the binary; not a test's in-process server).
    exit_on_hang: bool,
}

/// With `[health] share`: this node's identity and lease, and a heartbeat at least
/// as often as the shortest check interval and a third of the lease.
fn membership(config: &crate::config::Config) -> Option<store::Membership> {
    let health = &config.health;
    let shortest = config.checks.values().map(|c| c.interval).min().unwrap_or(health.node_lease_ttl);
    health.share.then(|| store::Membership {
        identity: config.server.identity.clone(),
        lease_ttl: health.node_lease_ttl,
        heartbeat: shortest.min(health.node_lease_ttl / 3),
    })
}

impl App {
    /// Opens the store (a corrupt one stops the start) and builds the first View.
    pub fn new(loaded: Loaded) -> Result<App, StoreError> {
        let config = loaded.config.clone();
        let store = store::open(&config.store, membership(&config))?;
        let metrics = Arc::new(Metrics::default());
        let heartbeat = Arc::new(Heartbeat::default());
        heartbeat.beat();
        let view = Arc::new(ArcSwap::from_pointee(View::empty(loaded.geo.clone())));
        let descriptors = crate::health::raise_file_limit();
        let (owner, handle) = Owner::new(loaded, store, metrics.clone(), view.clone(), heartbeat.clone(), descriptors);
        // what reading the config and the zones freed goes back to the system
        crate::sys::trim_heap_soon();
        Ok(App { config, view, metrics, owner, handle, heartbeat, exit_on_hang: false })
    }

    /// Ends the process when the owner's heartbeat is older than [`HEARTBEAT_LIMIT`]
    /// (with the panic hook of [`supervise`], what `steerdns serve` runs).
    pub fn exit_on_hang(mut self) -> Self {
        self.exit_on_hang = true;
        self
    }

    /// Calls for the state owner (reload, admin states, registrations) and what it
    /// publishes.
    pub fn handle(&self) -> StateHandle {
        self.handle.clone()
    }

    /// Serves the admin API, then DNS on `listeners`, until `shutdown` is cancelled;
    /// then /healthz turns 503, DNS stops accepting and in-flight queries finish within
    /// `shutdown_timeout`.
    pub async fn run(self, listeners: Listeners, shutdown: CancellationToken) -> std::io::Result<()> {
        // the admin API and the state owner outlive DNS, so /healthz says 503 while it drains
        let after_dns = CancellationToken::new();
        let background = TaskTracker::new();
        background.spawn(supervise::task("owner", self.owner.run(after_dns.clone())));
        let phase = Arc::new(Phase::default());
        let handle = self.handle.clone();
        let ready = move || handle.ready();
        watch_heartbeat(self.heartbeat.clone(), phase.clone(), ready, self.exit_on_hang, after_dns.clone());
        if let Some(listener) = listeners.admin {
            let context = Arc::new(AdminContext {
                state: self.handle.clone(),
                config_file: self.config.file.clone(),
                phase: phase.clone(),
                refusals: admin::Refusals::default(),
            });
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let router = admin::router(context.clone());
            background.spawn(supervise::task("admin", admin::serve(listener, context, router, after_dns.clone())));
        }
        let dns = TaskTracker::new();
        let dns_stop = CancellationToken::new();
        let mut udp_workers = Vec::new();
        for socket in listeners.udp {
            udp_workers.push(server::serve_udp(socket, self.view.clone(), self.metrics.clone(), dns_stop.clone())?);
        }
        dns.spawn_blocking(move || udp_workers.into_iter().for_each(|w| w.join().unwrap_or(())));
        let streams = listeners.tcp.into_iter().map(|l| (l, Transport::Tcp));
        let streams = streams.chain(listeners.tls.into_iter().map(|l| (l, Transport::Tls)));
        let tcp = streams
            .map(|(l, transport)| Ok((tokio::net::TcpListener::from_std(l)?, transport)))
            .collect::<std::io::Result<Vec<_>>>()?;
        dns.spawn(server::serve_tcp(tcp, self.view.clone(), self.metrics.clone(), dns_stop.clone()));
        dns.close();
        phase.serving();
        shutdown.cancelled().await;
        // /healthz says 503 while DNS still answers for a short grace, so whatever
        // watches it can steer away before the listeners close
        phase.stopping();
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        let deadline = tokio::time::Instant::now() + self.config.server.shutdown_timeout;
        tokio::time::sleep(self.config.server.shutdown_timeout.min(std::time::Duration::from_secs(10)) / 10).await;
        tracing::info!("stopping: finishing in-flight queries");
        dns_stop.cancel();
        if tokio::time::timeout_at(deadline, dns.wait()).await.is_err() {
            tracing::warn!("shutdown_timeout passed with queries in flight; stopping anyway");
        }
        after_dns.cancel();
        background.close();
        let _ = tokio::time::timeout_at(deadline, background.wait()).await;
        Ok(())
    }
}

/// Tells systemd (under `Type=notify`; nothing without `NOTIFY_SOCKET`).
fn notify_systemd(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("cannot notify systemd: {e}");
    }
}

/// A thread of its own (a hung owner may hold a runtime thread) that watches the
/// owner's heartbeat: past [`HEARTBEAT_LIMIT`] /healthz says 503 and, for the binary,
/// the process ends. It tells systemd READY=1 once DNS serves a ready picture (SPEC §1
/// "Ready", when /healthz turns 200), and WATCHDOG=1 at each look while the
/// heartbeat is fresh. It stops with `stop`.
fn watch_heartbeat(
    heartbeat: Arc<Heartbeat>,
    phase: Arc<Phase>,
    ready: impl Fn() -> bool + Send + 'static,
    exit: bool,
    stop: CancellationToken,
) {
    let watch = move || {
        let (mut warned, mut told_ready) = (false, false);
        while !stop.is_cancelled() {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let age = heartbeat.age();
            if age <= HEARTBEAT_LIMIT {
                if !told_ready && phase.is_serving() && ready() {
                    told_ready = true;
                    notify_systemd(&[sd_notify::NotifyState::Ready]);
                }
                notify_systemd(&[sd_notify::NotifyState::Watchdog]);
            }
            if age > HEARTBEAT_LIMIT && !stop.is_cancelled() && !warned {
                warned = true;
                phase.stopping();
                tracing::error!("the state owner has not run for {age:.1?}: answers may be stale");
                if exit {
                    let _ = std::io::Write::write_all(
                        &mut std::io::stderr(),
                        format!("steerdns: the state owner is hung ({age:.1?} without a heartbeat); exiting\n")
                            .as_bytes(),
                    );
                    std::process::exit(supervise::PANIC_EXIT);
                }
            }
        }
    };
    if let Err(e) = std::thread::Builder::new().name("watchdog".into()).spawn(watch) {
        tracing::error!("cannot start the heartbeat watchdog: {e}");
    }
}

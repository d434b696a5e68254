//! Wiring: load the config and zones, open the store, start the state owner (which runs
//! the probes and publishes the View), the admin API and then DNS; on shutdown make
//! /healthz 503, keep answering for a tenth of `shutdown_timeout` (at most 1 s), then
//! stop DNS and let in-flight queries finish, all within `shutdown_timeout`.

use crate::admin::{self, AdminContext};
use crate::config::{self, Config, ConfigErrors};
use crate::geo::Geo;
use crate::server::{self, Listeners};
use crate::state::{State, StateHandle};
use crate::store::{Store, StoreError};
use crate::view::View;
use crate::zone::{self, Zones};
use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A config with its zones and regions, validated together.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub zones: Arc<Zones>,
    pub geo: Arc<Geo>,
}

/// Reads and validates the config file and every file it names.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let config = config::load(path)?;
    let zones = Arc::new(zone::load_zones(&config)?);
    let geo = Arc::new(Geo::build(&config)?);
    Ok(Loaded { config, zones, geo })
}

/// A steerdns ready to run: the published View, and its state owner.
pub struct App {
    config: Config,
    view: Arc<ArcSwap<View>>,
    state: State,
    handle: StateHandle,
}

impl App {
    /// Opens the store (a corrupt one stops the start) and builds the first View.
    pub fn new(loaded: Loaded) -> Result<App, StoreError> {
        let config = loaded.config.clone();
        let (store, stored) = Store::open(&config.store)?;
        let empty = View {
            zones: Arc::default(),
            geo: loaded.geo.clone(),
            services: Default::default(),
            identity: String::new(),
            metrics: Arc::default(),
        };
        let view = Arc::new(ArcSwap::from_pointee(empty));
        let (state, handle) = State::new(loaded, store, stored, view.clone());
        Ok(App { config, view, state, handle })
    }

    /// Commands for the state owner (reload, admin states, status).
    pub fn handle(&self) -> StateHandle {
        self.handle.clone()
    }

    /// Serves the admin API, then DNS on `listeners`, until `shutdown` is cancelled;
    /// then /healthz turns 503, DNS stops accepting and in-flight queries finish within
    /// `shutdown_timeout`.
    pub async fn run(self, listeners: Listeners, shutdown: CancellationToken) -> std::io::Result<()> {
        crate::health::raise_file_limit();
        // the admin API and the state owner outlive DNS, so /healthz says 503 while it drains
        let after_dns = CancellationToken::new();
        let background = TaskTracker::new();
        background.spawn(self.state.run(after_dns.clone()));
        let serving = Arc::new(AtomicBool::new(false));
        if let Some(listener) = listeners.admin {
            let context = AdminContext {
                state: self.handle.clone(),
                config_file: self.config.file.clone(),
                token: self.config.server.admin_token.clone(),
                registration_token: self.config.server.registration_token.clone(),
                serving: serving.clone(),
            };
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let stop = after_dns.clone();
            background.spawn(async move {
                let router = admin::router(Arc::new(context));
                if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await {
                    tracing::error!("admin API stopped: {e}");
                }
            });
        }
        let dns = TaskTracker::new();
        let dns_stop = CancellationToken::new();
        let mut udp_workers = Vec::new();
        for socket in listeners.udp {
            udp_workers.push(server::serve_udp(socket, self.view.clone(), dns_stop.clone())?);
        }
        dns.spawn_blocking(move || udp_workers.into_iter().for_each(|w| w.join().unwrap_or(())));
        let tcp = listeners.tcp.into_iter().map(tokio::net::TcpListener::from_std).collect::<Result<Vec<_>, _>>()?;
        dns.spawn(server::serve_tcp(tcp, self.view.clone(), self.config.server.tcp_idle_timeout, dns_stop.clone()));
        dns.close();
        serving.store(true, Ordering::SeqCst);
        shutdown.cancelled().await;
        // /healthz says 503 while DNS still answers for a short grace, so whatever
        // watches it can steer away before the listeners close
        serving.store(false, Ordering::SeqCst);
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

//! Wiring: load the config and zones, start the state owner (which runs the probes and
//! publishes the View), serve DNS until the shutdown token fires, then drain within
//! `shutdown_timeout`.

use crate::config::{self, Config, ConfigErrors};
use crate::geo::Geo;
use crate::server::{self, Listeners};
use crate::state::{State, StateHandle};
use crate::view::View;
use crate::zone::{self, Zones};
use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::Arc;
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
    pub fn new(loaded: Loaded) -> App {
        let config = loaded.config.clone();
        let empty = View {
            zones: Arc::default(),
            geo: loaded.geo.clone(),
            services: Default::default(),
            identity: String::new(),
        };
        let view = Arc::new(ArcSwap::from_pointee(empty));
        let (state, handle) = State::new(loaded, view.clone());
        App { config, view, state, handle }
    }

    /// Commands for the state owner (reload, …).
    pub fn handle(&self) -> StateHandle {
        self.handle.clone()
    }

    /// Serves DNS on `listeners` until `shutdown` is cancelled, then stops accepting,
    /// lets in-flight queries finish and returns within `shutdown_timeout`.
    pub async fn run(self, listeners: Listeners, shutdown: CancellationToken) -> std::io::Result<()> {
        crate::health::raise_file_limit();
        let tasks = TaskTracker::new();
        tasks.spawn(self.state.run(shutdown.clone()));
        let mut udp_workers = Vec::new();
        for socket in listeners.udp {
            udp_workers.push(server::serve_udp(socket, self.view.clone(), shutdown.clone())?);
        }
        tasks.spawn_blocking(move || udp_workers.into_iter().for_each(|w| w.join().unwrap_or(())));
        let tcp = listeners.tcp.into_iter().map(tokio::net::TcpListener::from_std).collect::<Result<Vec<_>, _>>()?;
        let idle = self.config.server.tcp_idle_timeout;
        tasks.spawn(server::serve_tcp(tcp, self.view.clone(), idle, shutdown.clone()));
        tasks.close();
        shutdown.cancelled().await;
        tracing::info!("stopping: finishing in-flight queries");
        if tokio::time::timeout(self.config.server.shutdown_timeout, tasks.wait()).await.is_err() {
            tracing::warn!("shutdown_timeout passed with queries in flight; stopping anyway");
        }
        Ok(())
    }
}

//! A config with its zones and regions, validated together: what a View is built from
//! and what a reload replaces.

use crate::config::{self, Config, ConfigErrors};
use crate::geo::Geo;
use crate::zone::{self, Zones};
use std::path::Path;
use std::sync::Arc;

/// A config with its zones and regions, validated together.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub zones: Arc<Zones>,
    pub geo: Arc<Geo>,
    /// DNS over TLS's certificate and key, when `tls_cert_file` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Reads and validates the config file and every file it names.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let config = config::load(path)?;
    let zones = Arc::new(zone::load_zones(&config)?);
    let geo = Arc::new(Geo::build(&config)?);
    let tls = config.server.tls.as_ref().map(|files| crate::tls::server_config(&config.file, files)).transpose()?;
    Ok(Loaded { config, zones, geo, tls })
}

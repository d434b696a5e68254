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
    /// The admin API's, when `admin_tls_cert_file` is set.
    pub admin_tls: Option<Arc<rustls::ServerConfig>>,
}

/// Reads and validates the config file and every file it names.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let config = config::load(path)?;
    let zones = Arc::new(zone::load_zones(&config)?);
    let geo = Arc::new(Geo::build(&config)?);
    let server = &config.server;
    let tls = |files: Option<&crate::config::TlsFiles>, prefix, alpn| {
        files.map(|f| crate::tls::server_config(&config.file, f, prefix, alpn)).transpose()
    };
    let dot = tls(server.tls.as_ref(), "tls_", crate::tls::ALPN_DOT)?;
    let admin_tls = tls(server.admin_tls.as_ref(), "admin_tls_", crate::tls::ALPN_HTTP1)?;
    Ok(Loaded { config, zones, geo, tls: dot, admin_tls })
}

//! Configuration: TOML text → raw serde structs (`raw`) → one validated [`Config`]
//! (`validate`). Every error carries file, line, column and key (`error`).
//!
//! [`from_toml`] works on text alone; [`load`] reads the file and resolves every relative
//! path against the config file's directory.

mod defaults;
mod error;
mod raw;
mod validate;

pub use error::{ConfigError, ConfigErrors};

use hickory_proto::rr::Name;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration. Paths are absolute or relative to the working directory
/// (resolved against the config file's directory).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    pub server: ServerConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub zones: Vec<ZoneConfig>,
    pub geo: GeoConfig,
    pub regions: BTreeMap<String, Region>,
    pub checks: BTreeMap<String, Check>,
    pub services: Vec<Service>,
    /// `[[templates]]`: services that registrations create (SPEC §9).
    pub templates: Vec<Template>,
    /// `[health]`: how this node probes (SPEC §2, §10).
    pub health: HealthConfig,
    /// Warnings found while reading the file (an old state file, say); with
    /// [`Config::warnings`].
    pub notes: Vec<String>,
}

/// `[health]` (SPEC §2, §10).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// The source address of this node's probes (default: the kernel's choice).
    pub probe_source: Option<IpAddr>,
    /// Share probing with the other nodes of the etcd store (SPEC §10).
    pub share: bool,
    /// Nodes that probe each key when shared; 0: every node probes every key.
    pub probers_per_target: usize,
    /// How long a node that stops stays a member for the others.
    pub node_lease_ttl: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            probe_source: None,
            share: false,
            probers_per_target: 3,
            node_lease_ttl: Duration::from_secs(10),
        }
    }
}

/// A `[[templates]]` entry: a registration for a name `*.parent` that no service holds
/// creates the service `service` describes, under that name.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// `*.parent`, as written (lower-case, fully qualified).
    pub pattern: Name,
    /// The pattern less its `*`: it always exists as a name.
    pub parent: Name,
    pub max_services: usize,
    pub max_registrations_total: usize,
    /// Every key of the services it creates; its name is the pattern.
    pub service: Service,
}

impl Template {
    /// Whether `name` is one the pattern matches: exactly one label, not `*`, below
    /// the parent.
    pub fn matches(&self, name: &Name) -> bool {
        name.num_labels() == self.parent.num_labels() + 1
            && self.parent.zone_of(name)
            && name.iter().next().is_some_and(|label| label != b"*")
    }

    /// The service `name` gets from this template.
    pub fn service(&self, name: &Name) -> Service {
        Service { name: name.clone(), ..self.service.clone() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<String>,
    pub registration_token: Option<String>,
    pub identity: String,
    pub udp_workers: usize,
    /// The signing budget (SPEC §8): signatures made per second, at most.
    pub dnssec_signatures_per_second: u32,
    pub tcp_idle_timeout: Duration,
    /// TCP connections open at once, over all clients; past it the longest-idle goes.
    pub tcp_max_connections: usize,
    /// TCP connections open at once from one source address.
    pub tcp_max_connections_per_client: usize,
    pub shutdown_timeout: Duration,
    /// As written; [`Config::startup_wait`] gives the default.
    pub startup_wait: Option<Duration>,
    /// DNS over TLS (SPEC §7): its addresses, and the certificate chain and key files,
    /// read at start and on each reload.
    pub tls_listen: Vec<SocketAddr>,
    pub tls: Option<TlsFiles>,
    /// Host names the admin API answers to besides IP literals, `localhost` and
    /// `*.localhost` (lower case).
    pub admin_hosts: Vec<String>,
    /// HTTPS for the admin API.
    pub admin_tls: Option<TlsFiles>,
    /// Response rate limiting; None when `responses_per_second` is 0 (off).
    pub rrl: Option<RrlConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[server.rrl]` (SPEC §7).
#[derive(Debug, Clone, PartialEq)]
pub struct RrlConfig {
    pub responses_per_second: u32,
    /// Every `slip`-th limited reply goes out truncated; 0 drops them all.
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    pub exempt: Vec<IpNet>,
    /// Buckets kept at most.
    pub table_size: usize,
    /// A bucket holds `responses_per_second` × `window` seconds of replies.
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    Memory,
    File { path: PathBuf },
    Etcd(EtcdConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A copy of the last snapshot read from etcd (`store.path`), to start from when
    /// etcd does not answer within startup_wait.
    pub copy: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ZoneConfig {
    /// Lower-case, fully qualified.
    pub origin: Name,
    pub file: PathBuf,
    /// Where `origin` stands in the config file (line, column).
    pub at: (usize, usize),
    /// The zone file with its $INCLUDEs may not be larger.
    pub max_bytes: u64,
    /// Signing keys (BIND key files, SPEC §8), each with where it stands in the config
    /// file; empty: the zone is not signed.
    pub dnssec_keys: Vec<KeyFile>,
    /// Indexes into `dnssec_keys` of the keys published as CDS/CDNSKEY.
    pub dnssec_cds_keys: Vec<usize>,
}

/// A key file named in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFile {
    pub path: PathBuf,
    /// Its config key, `zones[0].dnssec_keys[1]`, and where it stands (line, column).
    pub key: String,
    pub at: (usize, usize),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoConfig {
    pub default_region: Option<String>,
    pub mmdb: Option<PathBuf>,
    /// Where `mmdb` stands in the config file (line, column), for its read errors.
    pub mmdb_at: (usize, usize),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Region {
    pub networks: Vec<IpNet>,
    pub countries: Vec<String>,
    pub continents: Vec<String>,
    pub fallback: Vec<String>,
    /// Latitude and longitude in degrees.
    pub location: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    Http,
    Https,
    Tcp,
    /// A TCP connection that reads the backend's load report (SPEC §9).
    Agent,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Check {
    pub kind: CheckKind,
    pub port: u16,
    pub path: String,
    pub host: Option<String>,
    pub expect_status: Vec<u16>,
    pub expect_body: Option<String>,
    pub tls_verify: bool,
    /// http/https: the response header holding a load report (SPEC §9).
    pub agent_header: Option<String>,
    /// kind = "agent": sent before the report is read.
    pub agent_send: Option<String>,
    /// `[health] probe_source`: the source address of its probes, for targets of the
    /// same family (the kernel chooses for the other).
    pub source: Option<IpAddr>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    All,
    Healthy,
    Failover,
    Gslb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    RoundRobin,
    Weighted,
    Sticky,
}

/// A value the config writes as one of a fixed set of words: the words and their
/// values in one table, read by validation and written back by status.
pub trait Word: Copy + PartialEq + 'static {
    /// The first is the default.
    const WORDS: &'static [(&'static str, Self)];

    /// The word the config uses for this value.
    fn name(self) -> &'static str {
        Self::WORDS.iter().find(|(_, v)| *v == self).map_or("?", |(w, _)| w)
    }
}

impl Word for CheckKind {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("http", CheckKind::Http),
        ("https", CheckKind::Https),
        ("tcp", CheckKind::Tcp),
        ("agent", CheckKind::Agent),
        ("none", CheckKind::None),
    ];
}

/// `[log]` (SPEC §2): read when the server starts; `STEERDNS_LOG` overrides the level.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: a level, or per-module directives.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line a event, colour on a terminal only.
    Text,
    /// One JSON object a line.
    Json,
}

impl Word for LogFormat {
    const WORDS: &'static [(&'static str, Self)] = &[("text", LogFormat::Text), ("json", LogFormat::Json)];
}

impl Word for Policy {
    const WORDS: &'static [(&'static str, Self)] =
        &[("all", Policy::All), ("healthy", Policy::Healthy), ("failover", Policy::Failover), ("gslb", Policy::Gslb)];
}

impl Word for Order {
    const WORDS: &'static [(&'static str, Self)] =
        &[("round-robin", Order::RoundRobin), ("weighted", Order::Weighted), ("sticky", Order::Sticky)];
}

impl Word for WhenAllDown {
    const WORDS: &'static [(&'static str, Self)] = &[("all", WhenAllDown::All), ("none", WhenAllDown::None)];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenAllDown {
    All,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Lower-case, fully qualified.
    pub name: Name,
    pub policy: Policy,
    pub order: Order,
    pub check: Option<String>,
    pub ttl: u32,
    pub max_answers: usize,
    pub when_all_down: WhenAllDown,
    pub max_registrations: u32,
    /// Registrations are taken (SPEC §4); by default only when no target is configured.
    pub accept_registrations: bool,
    /// Where a registration's address and check_address may lie; by default any
    /// unicast address but link-local, 0/8, 240/4 and ::/96 (see [`registrable`]).
    pub registration_networks: Option<Vec<IpNet>>,
    /// This service's own registration token: it opens this service alone, and the
    /// server-wide registration token then does not.
    pub registration_token: Option<String>,
    pub targets: Vec<Target>,
    /// Where `name` stands in the config file (line, column).
    pub at: (usize, usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub address: IpAddr,
    pub weight: u32,
    pub region: Option<String>,
    pub priority: u8,
    pub check_address: Option<IpAddr>,
}

/// SPEC §2's rule for targets: a unicast address (not unspecified, multicast,
/// broadcast or IPv4-mapped IPv6; loopback is allowed).
pub fn is_unicast(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.to_ipv4_mapped().is_some()),
    }
}

/// Whether a registration may name `address` when its service sets no
/// `registration_networks`: a unicast address outside link-local, 0.0.0.0/8, 240.0.0.0/4
/// and ::/96 (but ::1, loopback, as for targets), so that a registration token cannot
/// aim probes at a cloud's metadata service or at addresses that are not hosts.
pub fn registrable(address: &IpAddr) -> bool {
    is_unicast(address)
        && match address {
            IpAddr::V4(a) => !(a.is_link_local() || a.octets()[0] == 0 || a.octets()[0] >= 240),
            IpAddr::V6(a) => !(a.is_unicast_link_local() || (a.segments()[..6] == [0; 6] && !a.is_loopback())),
        }
}

impl Config {
    /// What validates but is likely not what was meant: `check` prints these and
    /// `serve` logs them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.notes.clone();
        let server = &self.server;
        if !server.admin_listen.ip().is_loopback() && server.admin_token.is_some() && server.admin_tls.is_none() {
            warnings.push(format!(
                "server.admin_listen: {} is not a loopback address and the admin API has no TLS \
                 (server.admin_tls_cert_file): its token crosses the network in clear",
                server.admin_listen
            ));
        }
        for zone in self.zones.iter().filter(|z| !z.dnssec_keys.is_empty()) {
            let flooded = self.services.iter().filter(|s| {
                zone.origin.zone_of(&s.name) && matches!(s.order, Order::Weighted | Order::Sticky) && s.max_answers > 1
            });
            for service in flooded {
                warnings.push(format!(
                    "service {}: a {} service with max_answers = {} in the signed zone {} has many distinct \
                     answers, each signed on first use: a flood of them costs SERVFAILs once the signing budget \
                     (server.dnssec_signatures_per_second) is spent",
                    service.name,
                    if service.order == Order::Weighted { "weighted" } else { "sticky" },
                    service.max_answers,
                    zone.origin
                ));
            }
        }
        for address in &self.server.tls_listen {
            if !self.server.listen.iter().any(|l| l.ip() == address.ip()) {
                warnings.push(format!(
                    "server.tls_listen: {address} is not on a `listen` address; resolvers that try DNS over TLS \
                     (RFC 9539) only try it at an address they already query over port 53"
                ));
            }
        }
        warnings
    }

    /// How long a start may wait for first verdicts and the store (SPEC §1 "Ready"):
    /// `server.startup_wait`, by default the longest check timeout plus 1 s.
    pub fn startup_wait(&self) -> Duration {
        let longest = self.checks.values().map(|c| c.timeout).max().unwrap_or_default();
        self.server.startup_wait.unwrap_or(longest + defaults::STARTUP_WAIT_MARGIN)
    }
}

/// A service name as the API and the store write it: any case, with or without the
/// trailing dot; lower-cased and fully qualified, as the config holds it.
pub fn service_name(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?.to_lowercase();
    name.set_fqdn(true);
    Some(name)
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    from_toml(&text, path)
}

/// Validates config text; `file` names it in errors and anchors its relative paths.
pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    validate::validate(text, file)
}

#[cfg(test)]
mod tests;

//! The View: everything a query needs, immutable, built whole and swapped whole.
//!
//! A service's counters (round-robin positions, answers, fail-opens) live in
//! [`ServiceCounters`] that a rebuild carries over from the previous View, so a rebuild
//! resets none of them.

use crate::api::AdminState;
use crate::config::{CheckKind, Order, Policy, Service, WhenAllDown};
use crate::geo::{Geo, RegionId};
use crate::health::{Health, ProbeKey, Report, Reported};
use crate::loaded::Loaded;
use crate::zone::{NameTable, Zones};
use hickory_proto::rr::Name;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock};

/// What is known of a probe key: its health, and the backend's last load report.
pub type Probed = (Health, Option<Report>);

/// One immutable snapshot of what steerdns answers.
#[derive(Debug)]
pub struct View {
    pub zones: Arc<Zones>,
    pub geo: Arc<Geo>,
    /// Service name → its live picture.
    pub services: NameTable<ServiceView>,
    /// The `identity` for CHAOS and NSID.
    pub identity: String,
    /// How TCP connections are bounded (a reload changes them for new connections).
    pub tcp: TcpLimits,
    /// Response rate limiting, when on; kept across rebuilds while its config is the same.
    pub rrl: Option<Arc<crate::rrl::Limiter>>,
    /// DNS over TLS's certificate and key, for new connections.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The signature cache and budget, while a zone is signed; kept across rebuilds.
    pub signatures: Option<Arc<crate::dnssec::Signatures>>,
    /// Each template's parent and TTL: negative answers below it are capped at it.
    pub templates: Vec<(Name, u32)>,
}

/// `tcp_idle_timeout`, `tcp_max_connections`, `tcp_max_connections_per_client`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpLimits {
    pub idle_timeout: std::time::Duration,
    pub max_connections: usize,
    pub max_per_client: usize,
}

impl TcpLimits {
    fn of(server: &crate::config::ServerConfig) -> TcpLimits {
        TcpLimits {
            idle_timeout: server.tcp_idle_timeout,
            max_connections: server.tcp_max_connections,
            max_per_client: server.tcp_max_connections_per_client,
        }
    }
}

/// A service as the query path sees it.
#[derive(Debug)]
pub struct ServiceView {
    pub name: Name,
    /// The keys of its zone, when the zone is signed.
    pub keys: Option<Arc<crate::dnssec::ZoneKeys>>,
    pub policy: Policy,
    pub order: Order,
    pub ttl: u32,
    pub max_answers: usize,
    pub when_all_down: WhenAllDown,
    pub targets: Vec<TargetView>,
    pub counters: Arc<ServiceCounters>,
    /// [IPv4, IPv6]: while the server starts, a candidate of the family whose probe
    /// has no verdict yet (SPEC §1 "Ready"): the answer is SERVFAIL, EDE 14.
    pub not_ready: [bool; 2],
    /// [IPv4, IPv6]: what stages 1 and 2 keep, for a policy that does not look at the
    /// client (all but gslb); worked out by the first query that needs it.
    pub selections: [OnceLock<Selection>; 2],
    /// The same for a gslb service, per client region.
    pub region_selections: Box<[[OnceLock<Selection>; 2]]>,
}

/// A candidate: its address, what the policy and orders need, and its sticky score.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub address: IpAddr,
    /// The configured weight.
    pub weight: u32,
    /// The share of it the backend's load report asks for (100 without one).
    pub percent: u8,
    pub priority: u8,
    pub region: Option<RegionId>,
    pub healthy: bool,
    pub score: f64,
}

/// The candidates a policy kept, whether the TTL is halved, and whether it failed open.
#[derive(Debug, Clone)]
pub struct Selection {
    pub set: Vec<Candidate>,
    pub halve: bool,
    pub failed_open: bool,
}

impl Candidate {
    /// The effective weight in hundredths: weight × percent, so that a reported
    /// percentage scales it as a real number would.
    pub fn load(&self) -> u32 {
        self.weight * u32::from(self.percent)
    }
}

/// One target of a service with its current health.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetView {
    pub address: IpAddr,
    pub weight: u32,
    /// The reported share of `weight` (SPEC §9), 100 without a report.
    pub percent: u8,
    pub priority: u8,
    pub region: Option<RegionId>,
    pub healthy: bool,
}

/// A service's counters, kept across View rebuilds: round-robin positions [IPv4,
/// IPv6], computed answers, and answers given failing open.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    pub rotation: [AtomicUsize; 2],
    pub answers: AtomicU64,
    pub fail_opens: AtomicU64,
}

impl View {
    /// Builds a View from a validated config (with its zones and regions) and the
    /// health of each probe key, keeping the rotation counters of services that
    /// `previous` already had. While `starting`, a service whose answer hangs on a
    /// probe with no verdict yet is not ready.
    pub fn build(
        loaded: &Loaded,
        previous: Option<&View>,
        health: &dyn Fn(&ProbeKey) -> Probed,
        admin: &dyn Fn(&Name, IpAddr) -> AdminState,
        starting: bool,
    ) -> View {
        let config = &loaded.config;
        let mut services = NameTable::default();
        config.services.iter().for_each(|s| {
            let counters =
                previous.and_then(|p| p.service(&s.name)).map_or_else(Arc::default, |old| old.counters.clone());
            // a target is down only when its probe says so: no check, kind none and
            // unknown all count as healthy
            let probed = s.check.as_ref().filter(|c| config.checks.get(*c).is_some_and(|c| c.kind != CheckKind::None));
            let probe = |t: &crate::config::Target| {
                let key =
                    |check: &String| ProbeKey { check: check.clone(), address: t.check_address.unwrap_or(t.address) };
                probed.map_or((Health::Up, None), |check| health(&key(check)))
            };
            // an operator's admin state wins over the backend's report
            let state = |t: &crate::config::Target| match admin(&s.name, t.address) {
                AdminState::Up => Live::Yes(true, Report::FULL),
                AdminState::Down => Live::Yes(false, Report::FULL),
                AdminState::Drain => Live::Drained,
                AdminState::Auto => {
                    let (health, report) = probe(t);
                    let report = report.unwrap_or(Report::FULL);
                    match report.state {
                        Reported::Drain => Live::ReportedDrain(health != Health::Down, report),
                        _ => Live::Yes(health != Health::Down, report),
                    }
                }
            };
            let mut view = ServiceView::new(s, counters, &state, &loaded.geo);
            view.keys = loaded.zones.find(&s.name).and_then(|z| z.keys().cloned());
            if starting && s.policy != Policy::All {
                for t in s.targets.iter().filter(|t| admin(&s.name, t.address) == AdminState::Auto) {
                    view.not_ready[usize::from(t.address.is_ipv6())] |= probe(t).0 == Health::Unknown;
                }
            }
            services.insert(&s.name, view);
        });
        View {
            zones: loaded.zones.clone(),
            geo: loaded.geo.clone(),
            services,
            identity: config.server.identity.clone(),
            tcp: TcpLimits::of(&config.server),
            rrl: crate::rrl::for_config(config.server.rrl.as_ref(), previous.and_then(|p| p.rrl.as_ref())),
            tls: loaded.tls.clone(),
            signatures: loaded.zones.signed().then(|| {
                let budget = config.server.dnssec_signatures_per_second;
                let signatures = previous
                    .and_then(|p| p.signatures.clone())
                    .unwrap_or_else(|| Arc::new(crate::dnssec::Signatures::new(crate::dnssec::CACHE_ENTRIES, budget)));
                signatures.set_budget(budget);
                signatures
            }),
            templates: config.templates.iter().map(|t| (t.parent.clone(), t.service.ttl)).collect(),
        }
    }

    /// The service named `name`, if there is one.
    pub fn service(&self, name: &Name) -> Option<&ServiceView> {
        self.services.get(name)
    }

    /// A View with nothing in it, until the owner publishes its first.
    pub fn empty(geo: Arc<Geo>) -> View {
        let tcp = TcpLimits { idle_timeout: std::time::Duration::from_secs(10), max_connections: 1, max_per_client: 1 };
        View {
            zones: Arc::default(),
            geo,
            services: NameTable::default(),
            identity: String::new(),
            tcp,
            rrl: None,
            tls: None,
            signatures: None,
            templates: Vec::new(),
        }
    }
}

/// Whether a target is among a service's candidates.
#[derive(Debug, Clone, Copy)]
enum Live {
    /// Yes, healthy or not, with what it reported.
    Yes(bool, Report),
    /// Drained by its own report: left out, unless that leaves its family without
    /// candidates (SPEC §9: an overloaded pool beats none).
    ReportedDrain(bool, Report),
    /// Drained by an operator: left out.
    Drained,
}

impl ServiceView {
    fn new(
        service: &Service,
        counters: Arc<ServiceCounters>,
        state: &dyn Fn(&crate::config::Target) -> Live,
        geo: &Geo,
    ) -> Self {
        let states: Vec<Live> = service.targets.iter().map(state).collect();
        // per family: are the reported drains all that is left?
        let mut live = [false; 2];
        for (t, s) in service.targets.iter().zip(&states) {
            live[usize::from(t.address.is_ipv6())] |= matches!(s, Live::Yes(..));
        }
        let targets = service
            .targets
            .iter()
            .zip(states)
            .filter_map(|(t, s)| {
                let (healthy, report) = match s {
                    Live::Yes(healthy, report) => (healthy, report),
                    Live::ReportedDrain(healthy, report) if !live[usize::from(t.address.is_ipv6())] => {
                        (healthy, report)
                    }
                    Live::ReportedDrain(..) | Live::Drained => return None,
                };
                Some(TargetView {
                    address: t.address,
                    weight: t.weight,
                    percent: report.percent,
                    priority: t.priority,
                    region: t.region.as_deref().and_then(|r| geo.id(r)),
                    healthy,
                })
            })
            .collect();
        ServiceView {
            name: service.name.clone(),
            keys: None,
            policy: service.policy,
            order: service.order,
            ttl: service.ttl,
            max_answers: service.max_answers,
            when_all_down: service.when_all_down,
            targets,
            counters,
            not_ready: [false; 2],
            selections: Default::default(),
            region_selections: match service.policy {
                Policy::Gslb => (0..geo.region_count()).map(|_| Default::default()).collect(),
                _ => Box::default(),
            },
        }
    }
}

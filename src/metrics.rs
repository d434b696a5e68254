//! What steerdns counts, and its Prometheus exposition. The query path only bumps
//! atomics (no lock); the state owner records health events; `/metrics` builds a fresh
//! registry from both and from the status document at each scrape, so a target's
//! series disappear with the target.

use crate::api::Status;
use crate::dns::{Rcode, Transport};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

type Labels = Vec<(String, String)>;

const RCODES: [&str; 8] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "dropped"];

/// Process-wide counters.
pub struct Metrics {
    /// [transport][rcode index] (the last index: dropped without a reply).
    queries: [[AtomicU64; RCODES.len()]; 3],
    /// Queries dropped because answering them panicked.
    query_panics: AtomicU64,
    /// UDP replies over their RRL bucket (dropped or slipped), and those slipped.
    rrl_limited: AtomicU64,
    rrl_slipped: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    pub view_rebuilds: AtomicU64,
    pub store_up: AtomicBool,
    /// Answering from the store's copy of its last snapshot (etcd away at start).
    pub store_from_copy: AtomicBool,
    /// (check, new health) → count; written by the state owner only.
    transitions: Mutex<BTreeMap<(String, String), u64>>,
    probe_seconds: Family<Labels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            queries: Default::default(),
            query_panics: AtomicU64::new(0),
            rrl_limited: AtomicU64::new(0),
            rrl_slipped: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            view_rebuilds: AtomicU64::new(0),
            store_up: AtomicBool::new(true),
            store_from_copy: AtomicBool::new(false),
            transitions: Mutex::default(),
            probe_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 14))),
        }
    }
}

/// Log lines lost because stderr could not keep up or was closed.
static LOG_DROPS: std::sync::OnceLock<tracing_appender::non_blocking::ErrorCounter> = std::sync::OnceLock::new();

/// Log lines that stderr refused (a closed pipe, a full disk).
pub static LOG_LINES_UNWRITTEN: AtomicU64 = AtomicU64::new(0);

/// Counts, from now on, the lines the log writer drops.
pub fn count_log_drops(counter: tracing_appender::non_blocking::ErrorCounter) {
    let _ = LOG_DROPS.set(counter);
}

impl Metrics {
    /// Counts one query by transport and the reply's RCODE (None: dropped).
    pub fn count_query(&self, transport: Transport, rcode: Option<Rcode>) {
        let index = match rcode {
            Some(Rcode::NoError) => 0,
            Some(Rcode::FormErr) => 1,
            Some(Rcode::ServFail) => 2,
            Some(Rcode::NxDomain) => 3,
            Some(Rcode::NotImp) => 4,
            Some(Rcode::Refused) => 5,
            Some(Rcode::BadVers) => 6,
            None => 7,
        };
        self.queries[transport as usize][index].fetch_add(1, Relaxed);
    }

    /// Counts a reply RRL held back: dropped, or slipped (sent truncated).
    pub fn count_rrl_limited(&self, slipped: bool) {
        self.rrl_limited.fetch_add(1, Relaxed);
        if slipped {
            self.rrl_slipped.fetch_add(1, Relaxed);
        }
    }

    /// Counts a query dropped because answering it panicked.
    pub fn count_query_panic(&self) {
        self.query_panics.fetch_add(1, Relaxed);
    }

    /// A probe key's health changed (state owner only).
    pub fn count_transition(&self, check: &str, to: &str) {
        let mut map = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((check.to_string(), to.to_string())).or_default() += 1;
    }

    /// One probe's duration (state owner only).
    pub fn observe_probe(&self, check: &str, seconds: f64) {
        self.probe_seconds.get_or_create(&vec![("check".into(), check.into())]).observe(seconds);
    }

    /// The Prometheus text exposition; `services` are (name, policy, answers, fail-opens).
    pub fn render(&self, status: &Status, services: &[(String, String, u64, u64)]) -> String {
        let mut registry = Registry::with_prefix("steerdns");
        let queries = Family::<Labels, Counter>::default();
        for (t, transport) in ["udp", "tcp", "tls"].iter().enumerate() {
            for (i, rcode) in RCODES.iter().enumerate() {
                let labels = vec![("transport".into(), transport.to_string()), ("rcode".into(), rcode.to_string())];
                queries.get_or_create(&labels).inc_by(self.queries[t][i].load(Relaxed));
            }
        }
        registry.register("queries", "DNS queries by transport and response code", queries);
        let panics = Counter::<u64>::default();
        panics.inc_by(self.query_panics.load(Relaxed));
        registry.register("query_panics", "Queries dropped because answering them panicked", panics);
        let limited = Counter::<u64>::default();
        limited.inc_by(self.rrl_limited.load(Relaxed));
        registry.register("rrl_limited", "UDP replies over their rate limit (dropped or slipped)", limited);
        let slipped = Counter::<u64>::default();
        slipped.inc_by(self.rrl_slipped.load(Relaxed));
        registry.register("rrl_slipped", "Rate-limited UDP replies sent truncated (TC=1) instead of dropped", slipped);
        let answers = Family::<Labels, Counter>::default();
        let fail_open = Family::<Labels, Counter>::default();
        for (name, policy, answered, opened) in services {
            answers
                .get_or_create(&vec![("service".into(), name.clone()), ("policy".into(), policy.clone())])
                .inc_by(*answered);
            fail_open.get_or_create(&vec![("service".into(), name.clone())]).inc_by(*opened);
        }
        registry.register("answers", "Computed answers by service and policy", answers);
        registry.register("fail_open", "Answers given with every candidate down (fail-open)", fail_open);
        let up = Family::<Labels, Gauge>::default();
        let latency = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for service in &status.services {
            for t in &service.targets {
                let labels = vec![("service".into(), service.name.clone()), ("address".into(), t.address.to_string())];
                up.get_or_create(&labels).set(i64::from(t.health != "down"));
                if let Some(p) = &t.last_probe {
                    latency.get_or_create(&labels).set(p.latency_ms / 1000.0);
                }
            }
        }
        registry.register("target_up", "1 while a target counts as healthy (up, unknown or unchecked), else 0", up);
        registry.register("target_probe_latency_seconds", "Duration of a target's last probe", latency);
        registry.register("probe_duration_seconds", "Probe durations by check", self.probe_seconds.clone());
        let transitions = Family::<Labels, Counter>::default();
        for ((check, to), n) in self.transitions.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            transitions.get_or_create(&vec![("check".into(), check.clone()), ("to".into(), to.clone())]).inc_by(*n);
        }
        registry.register("health_transitions", "Health changes of probe keys, by check and new health", transitions);
        let reloads = Family::<Labels, Counter>::default();
        reloads.get_or_create(&vec![("result".into(), "ok".into())]).inc_by(self.reloads_ok.load(Relaxed));
        reloads.get_or_create(&vec![("result".into(), "failed".into())]).inc_by(self.reloads_failed.load(Relaxed));
        registry.register("reloads", "Config reloads by result", reloads);
        let rebuilds = Counter::<u64>::default();
        rebuilds.inc_by(self.view_rebuilds.load(Relaxed));
        registry.register("view_rebuilds", "Views built and published", rebuilds);
        let dropped = Counter::<u64>::default();
        let queue = LOG_DROPS.get().map_or(0, |c| c.dropped_lines() as u64);
        dropped.inc_by(queue + LOG_LINES_UNWRITTEN.load(Relaxed));
        registry.register("log_lines_dropped", "Log lines lost because stderr could not take them", dropped);
        let store = Gauge::<i64>::default();
        store.set(i64::from(self.store_up.load(Relaxed)));
        registry.register("store_up", "1 while the run-time state store can be written", store);
        let copy = Gauge::<i64>::default();
        copy.set(i64::from(self.store_from_copy.load(Relaxed)));
        registry.register("store_from_copy", "1 while answering from the store's copy of its last snapshot", copy);
        let mut text = String::new();
        encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

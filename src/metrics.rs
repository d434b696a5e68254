//! What steerdns counts, and its Prometheus exposition. The query path only bumps
//! atomics (no lock); the state owner records health events; `/metrics` builds a fresh
//! registry from both and from the status document at each scrape, so a target's
//! series disappear with the target. OpenMetrics 1.0 when the scraper asks for it,
//! else the text format 0.0.4 (SPEC §4), which older tools (Debian's promtool) read.

use crate::api::{AdminState, Status};
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

    /// The exposition in `format`; `services` are (name, policy, answers, fail-opens).
    /// `signatures`: the DNSSEC signature cache, while a zone is signed.
    pub fn render(
        &self,
        status: &Status,
        services: &[(String, String, u64, u64)],
        signatures: Option<&crate::dnssec::Signatures>,
        format: Format,
    ) -> String {
        let mut root = Registry::default();
        process_metrics(&mut root);
        let registry = root.sub_registry_with_prefix("steerdns");
        let build = Family::<Labels, Gauge>::default();
        let labels = vec![
            ("version".into(), env!("CARGO_PKG_VERSION").into()),
            ("commit".into(), env!("STEERDNS_COMMIT").into()),
            ("features".into(), env!("STEERDNS_FEATURES").into()),
        ];
        build.get_or_create(&labels).set(1);
        registry.register("build_info", "The version, commit and cargo features of this binary (always 1)", build);
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
        if let Some(signatures) = signatures {
            let counters = &signatures.counters;
            for (name, help, value) in [
                ("dnssec_signatures_made", "RRSIGs made (one per key and RRset)", &counters.made),
                ("dnssec_signatures_cached", "Signed RRsets answered from the signature cache", &counters.cached),
                (
                    "dnssec_budget_refused",
                    "Signatures the signing budget refused (each answered SERVFAIL unless an older one was cached)",
                    &counters.refused,
                ),
            ] {
                let counter = Counter::<u64>::default();
                counter.inc_by(value.load(Relaxed));
                registry.register(name, help, counter);
            }
            let cached = Gauge::<i64>::default();
            cached.set(signatures.len() as i64);
            registry.register("dnssec_cache_rrsets", "RRsets whose signatures are cached", cached);
        }
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
        let answered = Family::<Labels, Gauge>::default();
        let admin = Family::<Labels, Gauge>::default();
        let latency = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let weight = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let effective = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let reported = Family::<Labels, Gauge>::default();
        let failing_open = Family::<Labels, Gauge>::default();
        let targets = Family::<Labels, Gauge>::default();
        for service in &status.services {
            let name = || ("service".to_string(), service.name.clone());
            failing_open.get_or_create(&vec![name()]).set(i64::from(service.failing_open));
            let count =
                |f: &dyn Fn(&crate::api::TargetStatus) -> bool| service.targets.iter().filter(|t| f(t)).count() as i64;
            for (state, n) in [
                ("answered", count(&|t| t.answered)),
                (
                    "drained",
                    count(&|t| {
                        t.admin == AdminState::Drain
                            || (t.admin == AdminState::Auto && t.reported.as_deref() == Some("drain"))
                    }),
                ),
                ("down", count(&|t| t.health == "down" || t.admin == AdminState::Down)),
            ] {
                targets.get_or_create(&vec![name(), ("state".into(), state.into())]).set(n);
            }
            // a service a template made gets per-service series only (SPEC §9): its
            // registrations come and go without an operator
            for t in service.targets.iter().filter(|_| service.template.is_none()) {
                let labels = vec![name(), ("address".into(), t.address.to_string())];
                let healthy = match t.admin {
                    AdminState::Auto => t.health != "down",
                    AdminState::Up => true,
                    AdminState::Drain | AdminState::Down => false,
                };
                up.get_or_create(&labels).set(i64::from(healthy));
                answered.get_or_create(&labels).set(i64::from(t.answered));
                weight.get_or_create(&labels).set(f64::from(t.weight));
                effective.get_or_create(&labels).set(t.effective_weight);
                if let Some(r) = &t.reported {
                    for state in ["up", "drain", "down"] {
                        let mut labels = labels.clone();
                        labels.push(("state".into(), state.into()));
                        reported.get_or_create(&labels).set(i64::from(r.starts_with(state)));
                    }
                }
                for state in [AdminState::Auto, AdminState::Drain, AdminState::Up, AdminState::Down] {
                    let mut labels = labels.clone();
                    labels.push(("state".into(), state.to_string()));
                    admin.get_or_create(&labels).set(i64::from(t.admin == state));
                }
                if let Some(p) = &t.last_probe {
                    latency.get_or_create(&labels).set(p.latency_ms / 1000.0);
                }
            }
        }
        registry.register(
            "service_failing_open",
            "1 while a service answers with every candidate down (fail-open), for a client of the default region",
            failing_open,
        );
        registry.register(
            "service_targets",
            "A service's targets answered to a client of the default region, drained, and down (by probe or admin state)",
            targets,
        );
        registry.register(
            "target_up",
            "1 while a target may be answered: healthy (up, unknown or unchecked) or forced up, and neither drained nor forced down",
            up,
        );
        registry.register(
            "target_answered",
            "1 while a client of the default region is answered this target",
            answered,
        );
        registry.register("target_admin_state", "A target's admin state: 1 for the one it is in", admin);
        registry.register("target_probe_latency_seconds", "Duration of a target's last probe", latency);
        registry.register("target_weight", "A target's configured weight", weight);
        registry.register(
            "target_effective_weight",
            "A target's weight as answers use it: the configured weight × its reported percentage",
            effective,
        );
        registry.register(
            "target_reported_state",
            "A target's last load report (SPEC §9): 1 for the state it reported",
            reported,
        );
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
        if let Some(shared) = &status.shared {
            let gauge = |v: usize| {
                let g = Gauge::<i64>::default();
                g.set(i64::try_from(v).unwrap_or(i64::MAX));
                g
            };
            registry.register(
                "shared_sharing",
                "1 while this node shares health (a member, etcd reachable)",
                gauge(usize::from(shared.sharing)),
            );
            registry.register(
                "shared_members_live",
                "Members of the shared health with a fresh heartbeat",
                gauge(shared.members.iter().filter(|m| m.1).count()),
            );
            registry.register("shared_probed_keys", "Probe keys this node probes itself", gauge(shared.probed_keys));
            registry.register(
                "shared_disagreements",
                "Probe keys whose counted probers disagree on up or down",
                gauge(shared.disagreements),
            );
            let ignored = Counter::<u64>::default();
            ignored.inc_by(shared.ignored_verdicts);
            registry.register(
                "shared_verdicts_ignored",
                "Published verdicts ignored: unreadable, or from nodes that are not members",
                ignored,
            );
        }
        let mut text = String::new();
        encode(&mut text, &root).expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => text,
            Format::Text => text_format(&text),
        }
    }
}

/// The exposition formats of `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0, for a scraper whose `Accept` names it.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for every other.
    Text,
}

impl Format {
    /// The format an `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// OpenMetrics text as the text format 0.0.4: a counter's family is named with its
/// samples' `_total` there, and `# UNIT` and `# EOF` are not part of it.
fn text_format(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        open_metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let comment = ["# HELP ", "# TYPE "].into_iter().find(|c| line.starts_with(c));
        match comment.map(|c| (c, line[c.len()..].split_once(' ').unwrap_or((&line[c.len()..], "")))) {
            Some((c, (name, rest))) if counters.contains(name) => {
                out.push_str(&format!("{c}{name}_total {rest}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The process's CPU, memory and descriptors, by Prometheus's standard names (Linux).
fn process_metrics(registry: &mut Registry) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
    // the fields after the command name, which may hold spaces: field 3 on
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as f64;
    if let (Some(user), Some(system)) = (field(14), field(15)) {
        let cpu = Counter::<f64, AtomicU64>::default();
        cpu.inc_by((user + system) / ticks);
        registry.register("process_cpu_seconds", "User and system CPU time spent", cpu);
    }
    if let Some(pages) = field(24) {
        let rss = Gauge::<f64, AtomicU64>::default();
        rss.set(pages * page);
        registry.register("process_resident_memory_bytes", "Resident memory size", rss);
    }
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|b| b.trim().parse::<f64>().ok()));
    if let (Some(boot), Some(start)) = (boot, field(22)) {
        let started = Gauge::<f64, AtomicU64>::default();
        started.set(boot + start / ticks);
        registry.register("process_start_time_seconds", "Start time of the process since the Unix epoch", started);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let open = Gauge::<i64>::default();
        open.set(fds.count() as i64);
        registry.register("process_open_fds", "Open file descriptors", open);
    }
    if let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        let max = Gauge::<i64>::default();
        max.set(i64::try_from(soft).unwrap_or(i64::MAX));
        registry.register("process_max_fds", "The limit on open file descriptors", max);
    }
}

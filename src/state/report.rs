//! What the owner tells: the status document it publishes, and explain, which annotates
//! a traced query with what that document says of each candidate.

use super::model::{Model, Registration, unix};
use crate::api::{self, StoredState};
use crate::config::Word;
use crate::config::{CheckKind, Service};
use crate::health::ProbeKey;
use crate::steer::{self, Client, Family};
use crate::view::View;
use std::net::IpAddr;
use std::time::SystemTime;

/// What `explain` is asked about.
#[derive(Debug, Clone)]
pub struct ExplainRequest {
    pub name: hickory_proto::rr::Name,
    pub qtype: hickory_proto::rr::RecordType,
    /// The client subnet sent as ECS, if any.
    pub client: Option<ipnet::IpNet>,
    /// The query's source address.
    pub source: IpAddr,
}

/// The traced answer of `view` to `request`, with each candidate's health, admin state
/// and origin from `status`, and the drained targets the View leaves out.
pub fn explain(view: &View, status: &api::Status, request: &ExplainRequest) -> api::Explanation {
    let mut explanation = crate::dns::explain(view, &request.name, request.qtype, request.client, request.source);
    let Some(service) = explanation.service.as_mut() else { return explanation };
    let Some(known) = status.services.iter().find(|s| s.name == service.name) else { return explanation };
    let v4 = service.family.starts_with("IPv4");
    for target in known.targets.iter().filter(|t| t.address.is_ipv4() == v4) {
        let index = service.candidates.iter().position(|c| c.address == Some(target.address));
        let candidate = match index {
            Some(i) => &mut service.candidates[i],
            None => {
                let why = match target.admin {
                    api::AdminState::Drain => "drained by an operator: never answered",
                    _ => "drained by its own load report: not answered while other targets are left",
                };
                service.candidates.push(api::CandidateExplanation {
                    address: Some(target.address),
                    region: target.region.clone(),
                    weight: target.weight,
                    priority: target.priority,
                    why: why.into(),
                    ..Default::default()
                });
                service.candidates.last_mut().expect("just pushed")
            }
        };
        candidate.admin = Some(target.admin.to_string());
        candidate.reported = target.reported.clone();
        candidate.probers = target.probers.clone();
        candidate.health = Some(target.health.clone());
        candidate.since = target.last_change.as_ref().map(|c| c.at);
        candidate.last_failure = target.last_failure.clone();
        candidate.origin = Some(target.origin.clone());
        candidate.expires_at = target.expires_at;
    }
    explanation
}

fn origin(registration: Option<&Registration>) -> &'static str {
    if registration.is_some() { "registration" } else { "config" }
}

impl Model {
    /// The status document at `now`.
    pub(super) fn status(&self, now: SystemTime) -> api::Status {
        let view = self.view();
        let config = &self.effective().config;
        // the services templates made come after the configured ones
        let configured = self.loaded.config.services.len();
        let services = config
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut status = self.service_status(s, view, now);
                if i >= configured {
                    status.template =
                        config.templates.iter().find(|t| t.matches(&s.name)).map(|t| t.pattern.to_string());
                }
                status
            })
            .collect();
        let unmatched_states = self
            .admin
            .iter()
            .filter(|((service, address), _)| {
                !config.services.iter().any(|s| s.name == *service && s.targets.iter().any(|t| t.address == *address))
            })
            .map(|((service, address), state)| StoredState {
                service: service.to_string(),
                address: *address,
                state: *state,
            })
            .collect();
        let store = api::StoreStatus {
            backend: self.store.backend.into(),
            up: self.store.down.is_none(),
            error: self.store.down.clone(),
            copy_saved_at: self.store.from_copy,
        };
        api::Status {
            identity: config.server.identity.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            store,
            services,
            unmatched_states,
            shared: self.shared_status(now),
        }
    }

    fn shared_status(&self, now: SystemTime) -> Option<api::SharedStatus> {
        let shared = self.shared.as_ref()?;
        let shortest =
            self.health.values().map(|k| k.check.interval).min().unwrap_or(std::time::Duration::from_secs(1));
        let members = shared
            .members
            .iter()
            .map(|(id, heard)| (id.clone(), now.duration_since(*heard).unwrap_or_default() <= 2 * shortest))
            .collect();
        let disagreements = match self.sharing() {
            Some(s) => {
                self.health.iter().filter(|(key, k)| s.disagree(key, &s.ranked(key, k.check.interval, now))).count()
            }
            None => 0,
        };
        Some(api::SharedStatus {
            sharing: self.sharing().is_some(),
            members,
            probed_keys: self.probing.as_ref().map_or(0, |p| p.len()),
            keys: self.health.len(),
            disagreements,
            ignored_verdicts: shared.ignored,
        })
    }

    /// Every node's verdict on `key`, the ranked ones first (empty without shared health).
    fn probers(&self, key: &ProbeKey, known: &super::model::KeyHealth, now: SystemTime) -> Vec<api::ProberStatus> {
        let Some(shared) = self.sharing() else { return Vec::new() };
        let ranked = shared.ranked(key, known.check.interval, now);
        let published = shared.verdicts.get(key);
        let others = published.into_iter().flat_map(|p| p.keys()).filter(|n| !ranked.contains(&n.as_str()));
        let nodes: Vec<&str> = ranked.iter().copied().chain(others.map(String::as_str)).collect();
        nodes
            .into_iter()
            .map(|node| {
                let verdict = published.and_then(|p| p.get(node));
                api::ProberStatus {
                    node: node.to_string(),
                    verdict: verdict.map(|v| {
                        let health = if v.down { "down" } else { "up" };
                        match (v.drain, v.percent) {
                            (true, _) => format!("{health}, drain"),
                            (false, Some(p)) => format!("{health} {p}%"),
                            (false, None) => health.to_string(),
                        }
                    }),
                    since: verdict.map(|v| v.at),
                    counted: ranked.contains(&node),
                }
            })
            .collect()
    }

    fn service_status(&self, service: &Service, view: &View, now: SystemTime) -> api::ServiceStatus {
        // answered for a client of the default region (address 0.0.0.0 is in no network)
        let client = Client { address: IpAddr::from([0, 0, 0, 0]), ecs_source: None };
        let answered: std::collections::HashSet<IpAddr> =
            view.service(&service.name).map_or_else(Default::default, |sv| {
                [Family::V4, Family::V6].iter().flat_map(|f| steer::eligible(sv, *f, &client, &view.geo)).collect()
            });
        let probed = service
            .check
            .as_ref()
            .filter(|c| self.loaded.config.checks.get(*c).is_some_and(|c| c.kind != CheckKind::None));
        let targets: Vec<api::TargetStatus> = service
            .targets
            .iter()
            .map(|t| {
                let probe_address = t.check_address.unwrap_or(t.address);
                let known =
                    probed.and_then(|c| self.health.get(&ProbeKey { check: c.clone(), address: probe_address }));
                let (passes, fails) = known.map_or((0, 0), |k| k.machine.streak());
                let report = known.and_then(|k| k.report);
                let percent = match self.admin_state(&service.name, t.address) {
                    api::AdminState::Auto => report.map_or(100, |r| r.percent),
                    _ => 100,
                };
                let registration = self.registrations.get(&(service.name.clone(), t.address));
                api::TargetStatus {
                    address: t.address,
                    origin: origin(registration).into(),
                    expires_at: registration.and_then(|r| r.known_expiry(now)),
                    region: t.region.clone(),
                    weight: t.weight,
                    reported: report.map(|r| r.to_string()),
                    effective_weight: f64::from(t.weight) * f64::from(percent) / 100.0,
                    priority: t.priority,
                    // with shared health, what the probers decided
                    health: known.map_or("unchecked".into(), |k| {
                        let key = ProbeKey { check: service.check.clone().unwrap_or_default(), address: probe_address };
                        self.decided(&key, k, now).map_or(k.machine.health(), |d| d.0).to_string()
                    }),
                    admin: self.admin_state(&service.name, t.address),
                    answered: answered.contains(&t.address),
                    probe_address: probed.map(|_| probe_address),
                    passes,
                    fails,
                    last_probe: known.and_then(|k| k.last.as_ref()).map(|v| api::ProbeStatus {
                        at: unix(v.at),
                        latency_ms: v.outcome.latency.as_secs_f64() * 1000.0,
                        passed: v.outcome.passed,
                        reason: v.outcome.reason.clone(),
                    }),
                    last_change: known.and_then(|k| k.change.clone()),
                    last_failure: known.and_then(|k| k.last_failure.clone()),
                    probers: probed
                        .zip(known)
                        .map(|(c, k)| self.probers(&ProbeKey { check: c.clone(), address: probe_address }, k, now))
                        .unwrap_or_default(),
                }
            })
            .collect();
        // fail-open answers down targets: those the admin state forces up do not count
        let failing_open = targets
            .iter()
            .any(|t: &api::TargetStatus| t.answered && t.health == "down" && t.admin == api::AdminState::Auto);
        let mut answered_by_region = std::collections::BTreeMap::new();
        if service.policy == crate::config::Policy::Gslb
            && let Some(sv) = view.service(&service.name)
        {
            for (region, name) in view.geo.regions() {
                let there: std::collections::HashSet<IpAddr> = [Family::V4, Family::V6]
                    .iter()
                    .flat_map(|f| steer::eligible_in(sv, *f, region, &view.geo))
                    .collect();
                answered_by_region.insert(name.to_string(), there.len());
            }
        }
        api::ServiceStatus {
            answered_by_region,
            name: service.name.to_string(),
            policy: service.policy.name().into(),
            order: service.order.name().into(),
            check: service.check.clone(),
            template: None,
            answered: answered.len(),
            failing_open,
            targets,
        }
    }
}

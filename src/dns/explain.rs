//! `explain`: a real query answered by the same code as any other, with a sink that
//! listens. Resolution reports [`Step`]s and the answer stages report
//! [`steer::Event`]s; this module owns the words that render them.

use super::{SocketAddr, Transport};
use crate::api::{CandidateExplanation, ExplainedAnswer, Explanation, RegionExplanation, ServiceExplanation};
use crate::config::Word;
use crate::geo::{Decided, Geo, Placement};
use crate::steer::{Client, Event, Family, Ordered, Quiet, Sink};
use crate::view::{ServiceView, View};
use hickory_proto::rr::{Name, RecordType};

/// One step of resolving a query (SPEC §5.1).
#[derive(Debug)]
pub enum Step<'a> {
    NoZone(&'a Name),
    Zone(&'a Name),
    /// The name is a service: its answer is computed.
    Service(&'a Name),
    Records {
        name: &'a Name,
        rtype: RecordType,
        wildcard: bool,
    },
    Cname {
        name: &'a Name,
        target: &'a Name,
    },
    NoData {
        name: &'a Name,
        rtype: RecordType,
    },
    NxDomain(&'a Name),
    Referral {
        name: &'a Name,
        cut: &'a Name,
    },
    /// A candidate's probe has no verdict yet while the server starts.
    NotReady(&'a ServiceView),
}

/// A sink for resolution's steps as well as the answer stages' events.
pub trait Trace: Sink {
    fn step(&mut self, step: Step<'_>);
}

impl Trace for Quiet {
    fn step(&mut self, _: Step<'_>) {}
}

/// Why `client` (an ECS subnet, or else the `source` address) gets its answer for
/// `name` and `qtype`.
pub fn explain(
    view: &View,
    name: &Name,
    qtype: RecordType,
    client: Option<ipnet::IpNet>,
    source: std::net::IpAddr,
) -> Explanation {
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
    let mut query = Message::query();
    query.add_query(Query::query(name.clone(), qtype));
    if let Some(net) = client {
        let mut edns = Edns::new();
        edns.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(net.network(), net.prefix_len(), 0)));
        query.set_edns(edns);
    }
    let mut sink = Explaining {
        geo: &view.geo,
        explanation: Explanation {
            name: name.to_string(),
            qtype: qtype.to_string(),
            client_subnet: client.map(|n| n.trunc().to_string()),
            source: Some(source),
            ..Default::default()
        },
    };
    let mut out = Vec::new();
    let bytes = query.to_vec().expect("a plain query encodes");
    super::respond_traced(view, &bytes, SocketAddr::new(source, 53), Transport::Tcp, &mut out, &mut sink);
    let mut explanation = sink.explanation;
    // the answer as a resolver reads it
    if let Ok(reply) = Message::from_vec(&out) {
        let scope = reply.edns.as_ref().and_then(|e| match e.option(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(s)) => Some(s.scope_prefix()),
            _ => None,
        });
        explanation.answer = ExplainedAnswer {
            rcode: format!("{:?}", reply.metadata.response_code).to_uppercase(),
            authoritative: reply.metadata.authoritative,
            records: reply.answers.iter().chain(&reply.authorities).map(ToString::to_string).collect(),
            ecs_scope: scope,
        };
    }
    explanation
}

/// Renders what it hears into an [`Explanation`].
struct Explaining<'g> {
    geo: &'g Geo,
    explanation: Explanation,
}

impl Explaining<'_> {
    fn service(&mut self) -> &mut ServiceExplanation {
        self.explanation.service.get_or_insert_with(Default::default)
    }

    fn note(&mut self, text: String) {
        self.service().policy_steps.push(text);
    }
}

impl Trace for Explaining<'_> {
    fn step(&mut self, step: Step<'_>) {
        let text = match step {
            Step::NoZone(name) => format!("{name} is in no configured zone: REFUSED"),
            Step::Zone(origin) => format!("zone {origin}"),
            Step::Service(name) => format!("{name} is a service: its answer is computed"),
            Step::Records { name, rtype, wildcard } => {
                let from = if wildcard { "a wildcard" } else { "the zone file" };
                format!("{name}: {rtype} records from {from}")
            }
            Step::Cname { name, target } => format!("{name} CNAME {target}"),
            Step::NoData { name, rtype } => format!("{name} exists without {rtype} records: NODATA"),
            Step::NxDomain(name) => format!("{name} does not exist: NXDOMAIN"),
            Step::Referral { name, cut } => format!("{name} is at or below the delegation {cut}: referral"),
            Step::NotReady(service) => {
                self.service().name = service.name.to_string();
                self.note("not ready: a candidate's probe has no verdict yet (SERVFAIL, EDE 14)".into());
                return;
            }
        };
        self.explanation.steps.push(text);
    }
}

impl Sink for Explaining<'_> {
    const LISTENING: bool = true;

    fn event(&mut self, event: Event<'_>) {
        let geo = self.geo;
        match event {
            Event::Candidates { service, family, set } => {
                let t = self.service();
                t.name = service.name.to_string();
                t.policy = service.policy.name().into();
                t.order = service.order.name().into();
                t.family = if family == Family::V4 { "IPv4 (A)" } else { "IPv6 (AAAA)" }.into();
                t.candidates = set
                    .iter()
                    .map(|c| CandidateExplanation {
                        address: Some(c.address),
                        region: c.region.map(|r| geo.name(r).to_string()),
                        weight: c.weight,
                        effective_weight: f64::from(c.load()) / 100.0,
                        priority: c.priority,
                        healthy: c.healthy,
                        ..Default::default()
                    })
                    .collect();
            }
            Event::Placed { place, client } => self.service().region = Some(region(place, client, geo)),
            Event::All => self.note("all: every candidate, health ignored".into()),
            Event::Healthy { healthy, of } => self.note(format!("healthy: {healthy} of {of} candidates healthy")),
            Event::Tier { priority, live, all } => {
                let verdict = if live > 0 { ", answered" } else { ", passed over" };
                self.note(format!("priority {priority}: {live} of {all} healthy{verdict}"));
            }
            Event::Region { region, first, live, all } => {
                let role =
                    if first { "the client's region" } else { "next in its order: fallback, nearest, then by name" };
                let verdict = if live > 0 { "answered" } else { "passed over" };
                self.note(format!("region {} ({role}): {live} of {all} healthy, {verdict}", geo.name(region)));
            }
            Event::FailOpen { kept } => self.note(format!(
                "no healthy candidate: fail open (when_all_down = \"all\"): {kept} answered as if healthy"
            )),
            Event::NothingAnswered => {
                self.note("no healthy candidate: nothing answered (when_all_down = \"none\")".into());
            }
            Event::WeightZero { left_out } => {
                self.note(format!("weight 0: {left_out} left out while a target of positive weight remains"));
            }
            Event::Kept { set, failed_open } => {
                let t = self.service();
                t.fail_open = failed_open;
                for c in &mut t.candidates {
                    c.kept = c.address.is_some_and(|a| set.iter().any(|s| s.address == a));
                }
            }
            Event::Ordered(ordered) => self.service().order_note = order_note(ordered),
            Event::Answered { client, out, ttl, halved, max_answers } => {
                let t = self.service();
                t.client_address = Some(client);
                t.ttl = ttl;
                t.max_answers = max_answers;
                t.ttl_note = halved.then(|| "halved: a target whose recovery could change this answer is down".into());
                let fail_open = t.fail_open;
                for c in &mut t.candidates {
                    let answered = c.address.is_some_and(|a| out.contains(&a));
                    c.why = match (c.kept, answered) {
                        (true, true) => "answered".into(),
                        (true, false) => "kept by the policy, cut by max_answers".into(),
                        _ if !c.healthy && !fail_open => "down: dropped by the policy".into(),
                        _ if c.weight == 0 => "weight 0 while a target of positive weight remains".into(),
                        _ => "not in the answered priority tier or region".into(),
                    };
                }
            }
        }
    }
}

fn order_note(ordered: Ordered) -> String {
    match ordered {
        Ordered::RoundRobin { start, of } => format!(
            "round-robin: the next query starts at position {} of {of} (one step further each query)",
            start + 1
        ),
        Ordered::Weighted => {
            "weighted: each position drawn at random by weight (another query may draw another order)".into()
        }
        Ordered::Sticky { network, prefix } => {
            format!("sticky: weighted rendezvous hash of the client network {network}/{prefix}")
        }
    }
}

/// The client's region and what decided it.
fn region(place: &Placement, client: &Client, geo: &Geo) -> RegionExplanation {
    let decided_by = match &place.decided {
        Decided::Network(len) => {
            let net = ipnet::IpNet::new(client.address, *len)
                .map_or_else(|_| client.address.to_string(), |n| n.trunc().to_string());
            format!("network {net}")
        }
        Decided::Country(code, len) => format!("GeoIP country {code} (database network /{len})"),
        Decided::Continent(code, len) => format!("GeoIP continent {code} (database network /{len})"),
        Decided::Default => "default region (no network or database entry decides)".into(),
    };
    RegionExplanation { name: geo.name(place.region).to_string(), decided_by, scope: place.scope }
}

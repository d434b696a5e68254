//! Answers an IN query from the zones and services (SPEC §5.1): referrals, CNAME
//! chains inside a zone, computed service answers, negative answers with the SOA.

use super::explain::{Step, Trace};
use super::wire::Question;
use super::writer::{Owner, Section, Writer};
use super::{Imputed, Rcode, Reply};
use crate::rrl::Kind;
use crate::steer::{self, Client, Family};
use crate::view::{ServiceView, View};
use crate::zone::{Lookup, RRset, WireRecord, Zone};
use hickory_proto::rr::{Name, RecordType};

/// At most this many CNAME steps are followed.
const MAX_CHAIN: usize = 8;

/// How a chain of lookups ended.
enum End {
    /// Records were written.
    Answered,
    /// NODATA or NXDOMAIN: the SOA goes in the authority section, its TTL capped.
    Negative { rcode: Rcode, ttl_cap: u32 },
    /// A static record did not fit: TC=1 with header, question and OPT only.
    Truncated,
    /// A service whose answer hangs on a probe with no verdict yet, while the server
    /// starts: SERVFAIL with EDE 14, so resolvers ask another server of the zone.
    NotReady,
}

/// The reply's flags and codes, and what RRL counts it as (SPEC §7).
pub(super) fn resolve<'v>(
    view: &'v View,
    q: &Question,
    client: &Client,
    writer: &mut Writer,
    trace: &mut impl Trace,
) -> (Reply, Kind, Imputed<'v>) {
    let Some(zone) = view.zones.find(&q.name) else {
        trace.step(Step::NoZone(&q.name));
        return (Reply::error(Rcode::Refused), Kind::Error, Imputed::Root);
    };
    let mut rrl = (Kind::Answer, Imputed::Qname);
    trace.step(Step::Zone(zone.origin()));
    let qtype = RecordType::from(q.qtype);
    let mut reply = Reply { rcode: Rcode::NoError, aa: true, tc: false, ecs_scope: Some(0), ede: None };
    let mut name = q.name.clone();
    let mut seen: Vec<Name> = Vec::new();
    let end = loop {
        // records at the query name point back at the question
        let owner = if seen.is_empty() { Owner::Question } else { Owner::Name(&name) };
        if let Some(service) = view.service(&name)
            && matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY)
        {
            trace.step(Step::Service(&name));
            break computed(service, owner, qtype, client, &view.geo, writer, &mut reply, trace);
        }
        match zone.lookup(&name, qtype) {
            Lookup::Records { rrset, owner: key, wildcard } => {
                trace.step(Step::Records { name: &name, rtype: rrset.rtype, wildcard });
                if wildcard && seen.is_empty() {
                    rrl.1 = Imputed::Key(key);
                }
                break write_rrset(writer, Section::Answer, owner, rrset);
            }
            Lookup::Cname { record, target, .. } => {
                trace.step(Step::Cname { name: &name, target: &target });
                if writer.record(Section::Answer, owner, record.ttl, &record).is_err() {
                    break End::Truncated;
                }
                seen.push(name);
                let stop = seen.len() >= MAX_CHAIN || seen.contains(&target) || !zone.origin().zone_of(&target);
                if stop || zone.cut_above(&target).is_some() {
                    break End::Answered;
                }
                name = target;
            }
            Lookup::NoData => {
                trace.step(Step::NoData { name: &name, rtype: qtype });
                break negative(view, &name, Rcode::NoError);
            }
            Lookup::NxDomain => {
                trace.step(Step::NxDomain(&name));
                break negative(view, &name, Rcode::NxDomain);
            }
            Lookup::Referral { cut, cut_key, ns, glue, required } => {
                trace.step(Step::Referral { name: &name, cut: &cut });
                reply.aa = false;
                rrl = (Kind::Referral, Imputed::Key(cut_key));
                break referral(writer, &cut, ns, &glue, required);
            }
        }
    };
    match end {
        End::Answered => {}
        End::Negative { rcode, ttl_cap } => {
            reply.rcode = rcode;
            rrl = match rcode {
                Rcode::NxDomain => (Kind::NxDomain, Imputed::Name(zone.origin())),
                _ => (Kind::NoData, Imputed::Qname),
            };
            write_soa(writer, zone, ttl_cap, &mut reply);
        }
        End::Truncated => {
            writer.clear_records();
            reply.tc = true;
        }
        End::NotReady => {
            writer.clear_records();
            reply = Reply { ede: Some(super::EDE_NOT_READY), ..Reply::error(Rcode::ServFail) };
            rrl = (Kind::Error, Imputed::Name(zone.origin()));
        }
    }
    (reply, rrl.0, rrl.1)
}

/// A service's computed A/AAAA answer (ANY: A, else AAAA when it has no IPv4
/// candidate), cut to what fits; never TC.
#[allow(clippy::too_many_arguments)] // the query's parts, the writer, and the trace
fn computed(
    service: &ServiceView,
    owner: Owner,
    qtype: RecordType,
    client: &Client,
    geo: &crate::geo::Geo,
    writer: &mut Writer,
    reply: &mut Reply,
    trace: &mut impl Trace,
) -> End {
    let family = match qtype {
        RecordType::AAAA => Family::V6,
        RecordType::ANY if !steer::has_candidates(service, Family::V4) => Family::V6,
        _ => Family::V4,
    };
    if service.not_ready[usize::from(family == Family::V6)] {
        trace.step(Step::NotReady(service));
        return End::NotReady;
    }
    thread_local! {
        // reused across queries, so answering allocates nothing
        static ADDRESSES: std::cell::RefCell<Vec<std::net::IpAddr>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ADDRESSES.with_borrow_mut(|addresses| {
        let answer = steer::answer_to(service, family, client, geo, addresses, trace);
        if addresses.is_empty() {
            // a negative answer depends on no client: scope 0
            return End::Negative { rcode: Rcode::NoError, ttl_cap: answer.ttl };
        }
        reply.ecs_scope = reply.ecs_scope.max(Some(answer.scope));
        for address in addresses.iter() {
            if writer.address(owner, answer.ttl, *address).is_err() {
                break;
            }
        }
        End::Answered
    })
}

/// NODATA or NXDOMAIN at `name`; at a service name the SOA TTL is capped at the
/// service's TTL, so a recovered service is seen within one service TTL.
fn negative(view: &View, name: &Name, rcode: Rcode) -> End {
    let ttl_cap = view.service(name).map_or(u32::MAX, steer::current_ttl);
    End::Negative { rcode, ttl_cap }
}

fn write_soa(writer: &mut Writer, zone: &Zone, ttl_cap: u32, reply: &mut Reply) {
    let soa = zone.negative_soa();
    if writer.record(Section::Authority, Owner::Name(zone.origin()), soa.ttl.min(ttl_cap), &soa).is_err() {
        writer.clear_records();
        reply.tc = true;
    }
}

fn write_rrset(writer: &mut Writer, section: Section, owner: Owner, rrset: RRset) -> End {
    for record in rrset.records() {
        if writer.record(section, owner, record.ttl, &record).is_err() {
            return End::Truncated;
        }
    }
    End::Answered
}

/// NS in the authority section, glue in the additional section (RFC 9471): TC=1 when
/// the NS or the in-domain glue (the first `required`) does not fit; sibling glue goes
/// in as far as it fits.
fn referral(writer: &mut Writer, cut: &Name, ns: RRset, glue: &[(Name, WireRecord)], required: usize) -> End {
    if let End::Truncated = write_rrset(writer, Section::Authority, Owner::Name(cut), ns) {
        return End::Truncated;
    }
    for (i, (owner, record)) in glue.iter().enumerate() {
        if writer.record(Section::Additional, Owner::Name(owner), record.ttl, record).is_err() {
            return if i < required { End::Truncated } else { End::Answered };
        }
    }
    End::Answered
}

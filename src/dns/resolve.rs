//! Answers an IN query from the zones and services (SPEC §5.1): referrals, CNAME
//! chains inside a zone, computed service answers, negative answers with the SOA.

use super::explain::{Step, Trace};
use super::wire::Question;
use super::writer::{Owner, Section, Writer};
use super::{Imputed, Rcode, Reply};
use crate::dnssec::{self, Signatures, Unsigned, ZoneKeys};
use crate::rrl::Kind;
use crate::steer::{self, Client, Family};
use crate::view::{ServiceView, View};
use crate::zone::{Lookup, RRset, WireRecord, Zone};
use hickory_proto::rr::{Name, RecordType};
use std::net::IpAddr;

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
    /// A signature the signing budget refused (SPEC §8): SERVFAIL.
    Unsigned,
}

/// What a query with DO=1 asks of a signed zone's reply (SPEC §8).
#[derive(Clone, Copy)]
pub(super) struct Signer<'v> {
    keys: &'v ZoneKeys,
    signatures: &'v Signatures,
    now: u32,
}

impl Signer<'_> {
    /// Writes the RRSIGs of the RRset of `rtype` at `owner` (signed as `name`) with
    /// these `ttl` and records.
    fn write<'a>(
        &self,
        writer: &mut Writer,
        section: Section,
        (owner, name): (Owner, &Name),
        (rtype, ttl): (u16, u32),
        rdatas: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> Result<(), End> {
        let rrset = dnssec::RRset { owner: name, rtype, class: 1, ttl, rdatas };
        let signed = self.signatures.sign(self.keys, rrset, self.now).map_err(|_: Unsigned| End::Unsigned)?;
        for rdata in signed.rrsigs.iter() {
            let rrsig = WireRecord { rtype: RecordType::RRSIG.into(), class: 1, ttl, rdata };
            writer.record(section, owner, ttl, &rrsig).map_err(|_| End::Truncated)?;
        }
        Ok(())
    }
}

/// The reply's flags and codes, and what RRL counts it as (SPEC §7).
/// `dnssec_ok`: the query set DO, `compact_ok` CO (RFC 9824).
pub(super) fn resolve<'v>(
    view: &'v View,
    q: &Question,
    client: &Client,
    (dnssec_ok, compact_ok): (bool, bool),
    writer: &mut Writer,
    trace: &mut impl Trace,
) -> (Reply, Kind, Imputed<'v>) {
    let Some(zone) = view.zones.find(&q.name) else {
        trace.step(Step::NoZone(&q.name));
        return (Reply::error(Rcode::Refused), Kind::Error, Imputed::Root);
    };
    let signer = match (zone.keys(), &view.signatures) {
        (Some(keys), Some(signatures)) if dnssec_ok => Some(Signer { keys, signatures, now: dnssec::now() }),
        _ => None,
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
            let at = Place { owner, name: &name, signer };
            break computed(service, at, qtype, client, &view.geo, writer, &mut reply, trace);
        }
        match zone.lookup(&name, qtype) {
            Lookup::Records { rrset, owner: key, wildcard } => {
                trace.step(Step::Records { name: &name, rtype: rrset.rtype, wildcard });
                if wildcard && seen.is_empty() {
                    rrl.1 = Imputed::Key(key);
                }
                break write_rrset(writer, Section::Answer, Place { owner, name: &name, signer }, rrset);
            }
            Lookup::Cname { record, target, .. } => {
                trace.step(Step::Cname { name: &name, target: &target });
                if writer.record(Section::Answer, owner, record.ttl, &record).is_err() {
                    break End::Truncated;
                }
                if let Some(signer) = &signer {
                    let rtype = (record.rtype, record.ttl);
                    if let Err(end) =
                        signer.write(writer, Section::Answer, (owner, &name), rtype, [record.rdata].into_iter())
                    {
                        break end;
                    }
                }
                seen.push(name.clone());
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
            // a service a template made exists, though the zone does not know it
            Lookup::NxDomain if view.service(&name).is_some() => {
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
                break referral(writer, zone, &cut, ns, (&glue, required), signer);
            }
        }
    };
    match end {
        End::Answered => {}
        End::Negative { rcode, ttl_cap } => {
            rrl = match rcode {
                Rcode::NxDomain => (Kind::NxDomain, Imputed::Name(zone.origin())),
                _ => (Kind::NoData, Imputed::Qname),
            };
            // a compact denial says NXDOMAIN only to a client that set CO (RFC 9824)
            reply.rcode = if signer.is_some() && !compact_ok { Rcode::NoError } else { rcode };
            let owner = if seen.is_empty() { Owner::Question } else { Owner::Name(&name) };
            let denial = signer.map(|s| (s, Place { owner, name: &name, signer: Some(s) }, rcode == Rcode::NxDomain));
            if let Err(end) = write_negative(writer, view, zone, client, ttl_cap, denial) {
                finish_early(end, writer, &mut reply, &mut rrl, zone);
            }
        }
        end => finish_early(end, writer, &mut reply, &mut rrl, zone),
    }
    (reply, rrl.0, rrl.1)
}

/// A reply that ends without its records: TC=1, or SERVFAIL.
fn finish_early<'v>(end: End, writer: &mut Writer, reply: &mut Reply, rrl: &mut (Kind, Imputed<'v>), zone: &'v Zone) {
    writer.clear_records();
    match end {
        End::Truncated => reply.tc = true,
        End::NotReady | End::Unsigned => {
            let ede = matches!(end, End::NotReady).then_some(super::EDE_NOT_READY);
            *reply = Reply { ede, ..Reply::error(Rcode::ServFail) };
            *rrl = (Kind::Error, Imputed::Name(zone.origin()));
        }
        End::Answered | End::Negative { .. } => {}
    }
}

/// Where an RRset goes: its owner as written, its name, and the signer when the reply
/// is signed.
#[derive(Clone, Copy)]
struct Place<'a, 'v> {
    owner: Owner<'a>,
    name: &'a Name,
    signer: Option<Signer<'v>>,
}

/// A service's computed A/AAAA answer (ANY: A, else AAAA when it has no IPv4
/// candidate), cut to what fits; never TC.
#[allow(clippy::too_many_arguments)] // the query's parts, the writer, and the trace
fn computed(
    service: &ServiceView,
    at: Place,
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
        let Some(signer) = at.signer else {
            for address in addresses.iter() {
                if writer.address(at.owner, answer.ttl, *address).is_err() {
                    break;
                }
            }
            return End::Answered;
        };
        // signed: as many records as fit with their signature, the signature covering
        // exactly those (SPEC §8)
        let owner_len = match at.owner {
            Owner::Question => 2,
            Owner::Name(name) => name.len() + 1,
        };
        let record_len = owner_len + 10 + if family == Family::V4 { 4 } else { 16 };
        let room = writer.room().saturating_sub(signer.keys.rrsigs_len(owner_len));
        let fit = (room / record_len).min(addresses.len());
        if fit == 0 {
            return End::Truncated;
        }
        for address in &addresses[..fit] {
            if writer.address(at.owner, answer.ttl, *address).is_err() {
                return End::Truncated;
            }
        }
        let rtype = if family == Family::V4 { RecordType::A } else { RecordType::AAAA };
        let octets: Vec<([u8; 16], usize)> = addresses[..fit].iter().map(|a| octets(*a)).collect();
        let rdatas = octets.iter().map(|(o, len)| &o[..*len]);
        match signer.write(writer, Section::Answer, (at.owner, at.name), (rtype.into(), answer.ttl), rdatas) {
            Ok(()) => End::Answered,
            Err(end) => end,
        }
    })
}

/// An address's RDATA.
fn octets(address: IpAddr) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    match address {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (out, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// NODATA or NXDOMAIN at `name`; at a service name the SOA TTL is capped at the
/// service's TTL, so a recovered service is seen within one service TTL, and below a
/// template's parent at the template's TTL, so a service it makes is seen within that.
fn negative(view: &View, name: &Name, rcode: Rcode) -> End {
    let ttl_cap = match view.service(name) {
        Some(service) => steer::current_ttl(service),
        // the deepest template's parent above the name
        None => view
            .templates
            .iter()
            .filter(|(parent, _)| parent.zone_of(name) && parent != name)
            .max_by_key(|(parent, _)| parent.num_labels())
            .map_or(u32::MAX, |t| t.1),
    };
    End::Negative { rcode, ttl_cap }
}

/// The SOA of a negative answer, its TTL capped; signed, with the compact denial's
/// NSEC for `at` (RFC 9824: NXNAME when the name does not exist), when `denial` is
/// there.
fn write_negative(
    writer: &mut Writer,
    view: &View,
    zone: &Zone,
    client: &Client,
    ttl_cap: u32,
    denial: Option<(Signer, Place, bool)>,
) -> Result<(), End> {
    let soa = zone.negative_soa();
    let ttl = soa.ttl.min(ttl_cap);
    let apex = Place { owner: Owner::Name(zone.origin()), name: zone.origin(), signer: denial.map(|d| d.0) };
    write_records(writer, Section::Authority, apex, [WireRecord { ttl, ..soa }].into_iter())?;
    let Some((signer, at, nxdomain)) = denial else { return Ok(()) };
    let mut types = if nxdomain { vec![dnssec::NXNAME] } else { denial_types(view, zone, at.name, client) };
    let rdata = dnssec::compact_nsec(at.name, &mut types);
    let nsec = WireRecord { rtype: RecordType::NSEC.into(), class: 1, ttl, rdata: &rdata };
    write_records(writer, Section::Authority, Place { signer: Some(signer), ..at }, [nsec].into_iter())
}

/// Looks at an answer without moving it: no counter, no round-robin step.
struct Peek;

impl steer::Sink for Peek {
    const LISTENING: bool = true;
    fn event(&mut self, _: steer::Event<'_>) {}
}

/// The types a NODATA's NSEC lists at `name`: the zone's, and a service's A or AAAA
/// when this client would get addresses of that family (SPEC §8).
fn denial_types(view: &View, zone: &Zone, name: &Name, client: &Client) -> Vec<u16> {
    let mut types = zone.types_at(name);
    if let Some(service) = view.service(name) {
        let mut addresses = Vec::new();
        for (family, rtype) in [(Family::V4, RecordType::A), (Family::V6, RecordType::AAAA)] {
            if !service.not_ready[usize::from(family == Family::V6)] {
                steer::answer_to(service, family, client, &view.geo, &mut addresses, &mut Peek);
                if !addresses.is_empty() {
                    types.push(rtype.into());
                }
            }
        }
    }
    types
}

/// Writes `records` (one RRset) at `at`, each with its own TTL, and their signature
/// when `at` has a signer (its original TTL the first record's: RRSIG TTLs of a set
/// whose TTLs differ, which RFC 2181 §5.2 deprecates, are capped by validators).
fn write_records<'z>(
    writer: &mut Writer,
    section: Section,
    at: Place,
    records: impl Iterator<Item = WireRecord<'z>> + Clone,
) -> Result<(), End> {
    let Some(first) = records.clone().next() else { return Ok(()) };
    for record in records.clone() {
        writer.record(section, at.owner, record.ttl, &record).map_err(|_| End::Truncated)?;
    }
    match at.signer {
        Some(signer) => {
            let fields = (first.rtype, first.ttl);
            signer.write(writer, section, (at.owner, at.name), fields, records.map(|r| r.rdata))
        }
        None => Ok(()),
    }
}

/// An RRset of the zone at `at`.
fn write_rrset(writer: &mut Writer, section: Section, at: Place, rrset: RRset) -> End {
    match write_records(writer, section, at, rrset.records()) {
        Ok(()) => End::Answered,
        Err(end) => end,
    }
}

/// NS in the authority section, glue in the additional section (RFC 9471): TC=1 when
/// the NS or the in-domain glue (the first `required`) does not fit; sibling glue goes
/// in as far as it fits. Signed, the cut's DS goes with the NS, or an NSEC proving
/// there is none (SPEC §8).
fn referral(
    writer: &mut Writer,
    zone: &Zone,
    cut: &Name,
    ns: RRset,
    (glue, required): (&[(Name, WireRecord)], usize),
    signer: Option<Signer>,
) -> End {
    let at = Place { owner: Owner::Name(cut), name: cut, signer: None };
    if let End::Truncated = write_rrset(writer, Section::Authority, at, ns) {
        return End::Truncated;
    }
    if let Some(signer) = signer {
        let at = Place { signer: Some(signer), ..at };
        let written = match zone.rrset(cut, RecordType::DS) {
            Some(ds) => write_rrset(writer, Section::Authority, at, ds),
            None => {
                let ttl = zone.negative_soa().ttl;
                let rdata = dnssec::compact_nsec(cut, &mut zone.types_at(cut));
                let nsec = WireRecord { rtype: RecordType::NSEC.into(), class: 1, ttl, rdata: &rdata };
                match write_records(writer, Section::Authority, at, [nsec].into_iter()) {
                    Ok(()) => End::Answered,
                    Err(end) => end,
                }
            }
        };
        if !matches!(written, End::Answered) {
            return written;
        }
    }
    for (i, (owner, record)) in glue.iter().enumerate() {
        if writer.record(Section::Additional, Owner::Name(owner), record.ttl, record).is_err() {
            return if i < required { End::Truncated } else { End::Answered };
        }
    }
    End::Answered
}

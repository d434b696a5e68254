//! The fast path (gdnsd's and NSD's idea): a plain query for a name whose answer is
//! precompiled (a static A, AAAA or TXT RRset) or computed (a service's A or AAAA) is
//! answered from the name's key, read straight off the wire: one hash lookup, no
//! `Name` built, records copied, nothing allocated. Everything else goes to the
//! general path, and so does every case here that needs more than copying (a service
//! not ready or with nothing to answer, an answer that does not fit, a signature the
//! budget refuses): it writes the same bytes, which tests and a fuzz target check.
//! With DO=1 in a signed zone the answer's RRSIGs follow it, from the signature cache
//! (made on a miss).

use super::wire::{self, Simple};
use super::writer::{Owner, QuestionWire, Section, Writer};
use super::{Answered, Edge, Imputed, Rcode, Transport, Written};
use crate::dnssec::{self, Signatures, Signed, ZoneKeys};
use crate::rrl::Kind;
use crate::steer::{self, Client, Family};
use crate::view::{ServiceView, View};
use crate::zone::WireRecord;
use crate::zone::wire_name_hash;
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::BinDecodable;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_RRSIG: u16 = 46;

/// Answers `bytes` into `out` when it is a query the fast path answers whole.
pub(super) fn respond(
    view: &View,
    bytes: &[u8],
    client: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    let mut query = wire::parse_simple(bytes)?;
    if let Some(cookie) = query.edns.as_mut().and_then(|e| e.cookie.as_mut()) {
        cookie.judge(client.ip());
    }
    let edns = query.edns.as_ref();
    // DO=1 in a signed zone: the answer carries its RRSIGs
    let signatures = view.signatures.as_deref().filter(|_| edns.is_some_and(|e| e.dnssec_ok));
    let edge = Edge { view, padded: transport == Transport::Tls && edns.is_some_and(|e| e.padding) };
    let ecs = edns.and_then(|e| e.ecs);
    let mut opt = edns.and_then(|e| super::opt_of(&edge, e, Rcode::NoError, ecs.map(|e| (e, 0))));
    let name = &bytes[12..12 + query.name_len];
    let hash = wire_name_hash(name);
    let question = QuestionWire { name, qtype: query.qtype, qclass: 1 };
    let mut writer = Writer::new(out, super::limit(transport, edns), Some(question), opt.as_ref());
    let scope = match view.services.get_wire(name, hash) {
        Some(service) if matches!(query.qtype, TYPE_A | TYPE_AAAA) => {
            let signing = signatures.zip(service.keys.as_deref()).map(|(s, k)| (s, k, name));
            computed(view, service, &query, client, &mut writer, signing)?
        }
        _ => {
            let block = view.zones.precompiled(name, hash, query.qtype)?;
            writer.precompiled(Section::Answer, block.count, block.wire).ok()?;
            if let Some((signatures, keys)) = signatures.zip(block.keys) {
                let ttl = block.records().next()?.ttl;
                let rdatas = block.records().map(|r| r.rdata);
                let signed = signature(signatures, keys, name, (query.qtype, ttl), rdatas)?;
                rrsigs(&mut writer, ttl, &signed)?;
            }
            0
        }
    };
    if let Some(o) = opt.as_mut() {
        o.ecs = ecs.map(|e| (e, scope));
    }
    let flags = 0x8400 | if query.rd { 0x0100 } else { 0 } | if query.cd { 0x0010 } else { 0 };
    writer.finish(query.id, flags, opt.as_ref());
    let written = Written { rcode: Rcode::NoError, kind: Kind::Answer, imputed: Imputed::Qname, scoped: scope > 0 };
    let rrl = (transport == Transport::Udp && view.rrl.is_some())
        .then(|| super::rrl_key_of(bytes, Some((query.qtype, 1)), ecs, &written));
    let cookie = edns.and_then(|e| e.cookie).is_some_and(|c| c.valid);
    Some(Answered { rcode: Rcode::NoError, rrl, cookie })
}

/// The signatures of the RRset of `rtype` and `ttl` at the name `wire` (as sent): from
/// the cache, else made (None when the budget refuses: the general path answers).
fn signature<'a>(
    signatures: &Signatures,
    keys: &ZoneKeys,
    wire: &[u8],
    (rtype, ttl): (u16, u32),
    rdatas: impl Iterator<Item = &'a [u8]> + Clone,
) -> Option<Arc<Signed>> {
    let now = dnssec::now();
    if let Some(signed) = signatures.cached(keys, wire, (rtype, 1, ttl), rdatas.clone(), now) {
        return Some(signed);
    }
    let owner = Name::from_bytes(wire).ok()?;
    signatures.sign(keys, dnssec::RRset { owner: &owner, rtype, class: 1, ttl, rdatas }, now).ok()
}

/// The RRSIG records of `signed`, each with `ttl`, at the question's name.
fn rrsigs(writer: &mut Writer, ttl: u32, signed: &Signed) -> Option<()> {
    for rdata in signed.rrsigs.iter() {
        let rrsig = WireRecord { rtype: TYPE_RRSIG, class: 1, ttl, rdata };
        writer.record(Section::Answer, Owner::Question, ttl, &rrsig).ok()?;
    }
    Some(())
}

/// Writes a service's computed answer; its ECS scope, or None when the answer is not
/// plain records (not ready, or nothing to answer: the general path's cases) or the
/// signing budget refuses its signature. `signing`: the cache, the zone's keys and the
/// name as sent, for a query with DO=1 to a signed zone.
fn computed(
    view: &View,
    service: &ServiceView,
    query: &Simple,
    source: SocketAddr,
    writer: &mut Writer,
    signing: Option<(&Signatures, &ZoneKeys, &[u8])>,
) -> Option<u8> {
    let family = if query.qtype == TYPE_AAAA { Family::V6 } else { Family::V4 };
    if service.not_ready[usize::from(family == Family::V6)] {
        return None;
    }
    let ecs = query.edns.as_ref().and_then(|e| e.ecs);
    // the client: the ECS address when its source prefix is above 0, else the source
    let client = match ecs {
        Some(e) if e.source_prefix() > 0 => Client { address: e.addr(), ecs_source: Some(e.source_prefix()) },
        _ => Client { address: source.ip(), ecs_source: None },
    };
    thread_local! {
        // reused across queries, so answering allocates nothing
        static ADDRESSES: std::cell::RefCell<Vec<IpAddr>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ADDRESSES.with_borrow_mut(|addresses| {
        // an empty answer has no side effects, so the general path may compute it again
        let answer = steer::answer(service, family, &client, &view.geo, addresses);
        if addresses.is_empty() {
            return None;
        }
        let Some((signatures, keys, name)) = signing else {
            for address in addresses.iter() {
                if writer.address(Owner::Question, answer.ttl, *address).is_err() {
                    break;
                }
            }
            return Some(answer.scope);
        };
        // as many records as fit with their signature, as the general path cuts them
        let len = if family == Family::V4 { 4 } else { 16 };
        let room = writer.room().saturating_sub(keys.rrsigs_len(2));
        let fit = (room / (12 + len)).min(addresses.len());
        let mut octets = [[0u8; 16]; 64];
        if fit == 0 || fit > octets.len() {
            return None;
        }
        for (o, address) in octets.iter_mut().zip(&addresses[..fit]) {
            match address {
                IpAddr::V4(a) => o[..4].copy_from_slice(&a.octets()),
                IpAddr::V6(a) => *o = a.octets(),
            }
        }
        let rdatas = octets[..fit].iter().map(|o| &o[..len]);
        let signed = signature(signatures, keys, name, (query.qtype, answer.ttl), rdatas)?;
        for address in &addresses[..fit] {
            writer.address(Owner::Question, answer.ttl, *address).ok()?;
        }
        rrsigs(writer, answer.ttl, &signed)?;
        Some(answer.scope)
    })
}

//! The fast path (gdnsd's and NSD's idea): a plain query for a name whose answer is
//! precompiled (a static A, AAAA or TXT RRset) or computed (a service's A or AAAA) is
//! answered from the name's key, read straight off the wire: one hash lookup, no
//! `Name` built, records copied, nothing allocated. Everything else goes to the
//! general path, and so does every case here that needs more than copying (a service
//! not ready or with nothing to answer, an answer that does not fit): it writes the
//! same bytes, which tests and a fuzz target check.

use super::wire::{self, Simple};
use super::writer::{Owner, QuestionWire, Section, Writer};
use super::{Answered, Edge, Imputed, Rcode, Transport, Written};
use crate::rrl::Kind;
use crate::steer::{self, Client, Family};
use crate::view::{ServiceView, View};
use crate::zone::wire_name_hash;
use std::net::{IpAddr, SocketAddr};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

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
    // a signed answer is the general path's
    if view.signatures.is_some() && edns.is_some_and(|e| e.dnssec_ok) {
        return None;
    }
    let edge = Edge { view, padded: transport == Transport::Tls && edns.is_some_and(|e| e.padding) };
    let ecs = edns.and_then(|e| e.ecs);
    let mut opt = edns.and_then(|e| super::opt_of(&edge, e, Rcode::NoError, ecs.map(|e| (e, 0))));
    let name = &bytes[12..12 + query.name_len];
    let hash = wire_name_hash(name);
    let question = QuestionWire { name, qtype: query.qtype, qclass: 1 };
    let mut writer = Writer::new(out, super::limit(transport, edns), Some(question), opt.as_ref());
    let scope = match view.services.get_wire(name, hash) {
        Some(service) if matches!(query.qtype, TYPE_A | TYPE_AAAA) => {
            computed(view, service, &query, client, &mut writer)?
        }
        _ => {
            let block = view.zones.precompiled(name, hash, query.qtype)?;
            writer.precompiled(Section::Answer, block.count, block.wire).ok()?;
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

/// Writes a service's computed answer; its ECS scope, or None when the answer is not
/// plain records (not ready, or nothing to answer: the general path's cases).
fn computed(view: &View, service: &ServiceView, query: &Simple, source: SocketAddr, writer: &mut Writer) -> Option<u8> {
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
        for address in addresses.iter() {
            if writer.address(Owner::Question, answer.ttl, *address).is_err() {
                break;
            }
        }
        Some(answer.scope)
    })
}

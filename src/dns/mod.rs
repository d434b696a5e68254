//! The per-query path: request bytes → response bytes over one [`View`].
//!
//! [`respond`] is a plain function with no I/O, no locks and no awaiting, called by the
//! UDP loop and the TCP server alike. `wire` parses and checks the request, `resolve`
//! answers IN queries from the zones and services, `writer` emits the response.

mod cookie;
mod explain;
mod fast;
mod resolve;
mod wire;
mod writer;

use crate::rrl::{self, Kind};
use crate::steer::Client;
use crate::steer::Quiet;
use crate::view::View;
use explain::Trace;
pub use explain::explain;
use std::net::SocketAddr;
use wire::{Reject, Request};
use writer::{Opt, Owner, Writer};

/// The EDNS UDP payload size we advertise and the most we send over UDP.
pub const OUR_UDP_SIZE: u16 = 1232;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS: as TCP, with padding when the query asks for it.
    Tls,
}

/// DoT replies are padded to a multiple of this (RFC 8467's block-length strategy).
const PAD_BLOCK: u16 = 468;

/// A reply that was written, and what the edge needs to know of it.
#[derive(Debug, Clone, Copy)]
pub struct Answered {
    pub rcode: Rcode,
    /// What rate limiting counts it as: UDP replies only, and only while RRL is on.
    pub rrl: Option<rrl::Key>,
    /// The query returned a valid server cookie (RFC 7873): the client is who it
    /// says it is, so RRL lets it through.
    pub cookie: bool,
}

/// The name a reply is imputed to, for RRL (SPEC §7).
#[derive(Debug, Clone, Copy)]
enum Imputed<'v> {
    /// The query's name.
    Qname,
    /// A zone.
    Name(&'v hickory_proto::rr::Name),
    /// A wildcard's owner, a cut: the zone index's key (lower-cased wire form).
    Key(&'v [u8]),
    /// No name: a reply outside every zone.
    Root,
}

/// Response codes we send (12-bit values; the upper 8 bits go into OPT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
    BadVers = 16,
}

const CLASS_CH: u16 = 3;
const TYPE_TXT: u16 = 16;
const TYPE_OPT: u16 = 41;
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
const TYPE_ANY: u16 = 255;

/// Flags and codes of a reply, besides what is copied from the request.
#[derive(Debug, Clone, Copy)]
struct Reply {
    rcode: Rcode,
    aa: bool,
    tc: bool,
    /// Echo the query's ECS with this scope (None: no ECS in the reply).
    ecs_scope: Option<u8>,
    /// An Extended DNS Error (RFC 8914) INFO-CODE, when the query had an OPT.
    ede: Option<u16>,
}

/// EDE 14 "Not Ready" (RFC 8914).
const EDE_NOT_READY: u16 = 14;

impl Reply {
    fn error(rcode: Rcode) -> Self {
        Reply { rcode, aa: false, tc: false, ecs_scope: None, ede: None }
    }
}

/// Answers one DNS message into `out`; None when no reply is to be sent (a response,
/// or not even a header).
pub fn respond(
    view: &View,
    request: &[u8],
    client: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    if let Some(answered) = fast::respond(view, request, client, transport, out) {
        return Some(answered);
    }
    respond_traced(view, request, client, transport, out, &mut Quiet)
}

/// [`respond`] without the fast path: every query answered the general way (the fast
/// path must write the same bytes; tests and a fuzz target compare the two).
pub fn respond_general(
    view: &View,
    request: &[u8],
    client: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    respond_traced(view, request, client, transport, out, &mut Quiet)
}

/// The fast path alone: None for a query it leaves to the general path.
pub fn respond_fast(
    view: &View,
    request: &[u8],
    client: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Option<Answered> {
    fast::respond(view, request, client, transport, out)
}

/// [`respond`], reporting how the answer came about to `trace` (for explain).
fn respond_traced(
    view: &View,
    bytes: &[u8],
    client: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    trace: &mut impl Trace,
) -> Option<Answered> {
    let (mut request, formerr) = match wire::parse(bytes) {
        Ok(r) => (r, false),
        Err(Reject::Drop) => return None,
        Err(Reject::FormErr(request)) => (*request, true),
    };
    if let Some(cookie) = request.edns.as_mut().and_then(|e| e.cookie.as_mut()) {
        cookie.judge(client.ip());
    }
    let limit = limit(transport, request.edns.as_ref());
    let edge = Edge { view, padded: transport == Transport::Tls && request.edns.as_ref().is_some_and(|e| e.padding) };
    let written = match precheck(&request) {
        _ if formerr => error(&edge, &request, Reply::error(Rcode::FormErr), limit, out),
        Some(_) if nxname_in_signed_zone(view, &request) => {
            error(&edge, &request, Reply::error(Rcode::FormErr), limit, out)
        }
        Some(reply) => error(&edge, &request, reply, limit, out),
        None => answer(&edge, &request, client, limit, out, trace),
    };
    let rrl = (transport == Transport::Udp && view.rrl.is_some()).then(|| rrl_key(bytes, &request, &written));
    let cookie = request.edns.as_ref().and_then(|e| e.cookie).is_some_and(|c| c.valid);
    Some(Answered { rcode: written.rcode, rrl, cookie })
}

/// A reply as written, with what RRL counts it as.
struct Written<'v> {
    rcode: Rcode,
    kind: Kind,
    imputed: Imputed<'v>,
    /// The reply's ECS scope is above 0.
    scoped: bool,
}

/// What a reply is written against: the View, and whether its OPT is padded.
struct Edge<'v> {
    view: &'v View,
    padded: bool,
}

/// The RRL key of a written reply: its kind, its imputed name, and the ECS address
/// when the reply's ECS scope is above 0. The query's name is hashed from the query's
/// bytes, as sent.
fn rrl_key(bytes: &[u8], request: &Request, written: &Written) -> rrl::Key {
    let question = request.question.as_ref().map(|q| (q.qtype, q.qclass));
    rrl_key_of(bytes, question, request.edns.as_ref().and_then(|e| e.ecs), written)
}

fn rrl_key_of(
    bytes: &[u8],
    question: Option<(u16, u16)>,
    ecs: Option<hickory_proto::rr::rdata::opt::ClientSubnet>,
    written: &Written,
) -> rrl::Key {
    let name = match written.imputed {
        Imputed::Qname => rrl::wire_name_hash(wire::question_name(bytes)),
        Imputed::Name(name) => rrl::name_hash(name.iter()),
        Imputed::Key(key) => rrl::wire_name_hash(key),
        Imputed::Root => rrl::wire_name_hash(&[0]),
    };
    let kind = written.kind;
    rrl::Key {
        kind,
        name,
        qtype: if matches!(kind, Kind::Answer | Kind::NoData) { question.map_or(0, |q| q.0) } else { 0 },
        class: question.map_or(0, |q| q.1),
        ecs: ecs.filter(|_| written.scoped).map(|e| e.addr()),
    }
}

/// Turns the reply in `out` to `request` into its slipped form (RRL): the same header
/// with TC=1, the question and the OPT (with a fresh server cookie) and no records, so
/// a real client retries over TCP.
pub fn slip(view: &View, request: &[u8], client: SocketAddr, rcode: Rcode, out: &mut Vec<u8>) {
    let Some(flags) = out.get(2..4).map(|f| u16::from_be_bytes([f[0], f[1]]) | 0x0200) else { return };
    let mut request = match wire::parse(request) {
        Ok(r) => r,
        Err(Reject::Drop) => return,
        Err(Reject::FormErr(request)) => *request,
    };
    if let Some(cookie) = request.edns.as_mut().and_then(|e| e.cookie.as_mut()) {
        cookie.judge(client.ip());
    }
    let edge = Edge { view, padded: false };
    let question = request.question.as_ref().filter(|_| request.qdcount == 1).map(wire::Question::wire);
    let opt = opt_for(&edge, &request, rcode, None);
    let limit = limit(Transport::Udp, request.edns.as_ref());
    Writer::new(out, limit, question, opt.as_ref()).finish(request.id, flags, opt.as_ref());
}

/// The most a reply may take: 65,535 bytes over TCP and TLS; over UDP the query's EDNS
/// payload size within [512, 1232], or 512 without EDNS.
fn limit(transport: Transport, edns: Option<&wire::Edns>) -> usize {
    match (transport, edns) {
        (Transport::Tcp | Transport::Tls, _) => u16::MAX as usize,
        (Transport::Udp, Some(e)) => e.payload.clamp(512, OUR_UDP_SIZE) as usize,
        (Transport::Udp, None) => 512,
    }
}

/// The cases that get an error RCODE before any lookup, in SPEC §5's order.
fn precheck(request: &Request) -> Option<Reply> {
    if let Some(edns) = &request.edns {
        if edns.version > 0 {
            return Some(Reply::error(Rcode::BadVers));
        }
        if edns.option_error {
            return Some(Reply::error(Rcode::FormErr));
        }
    }
    if request.opcode != 0 {
        return Some(Reply::error(Rcode::NotImp));
    }
    let Some(q) = request.question.as_ref().filter(|_| request.qdcount == 1) else {
        return Some(Reply::error(Rcode::FormErr));
    };
    let rcode = match (q.qtype, q.qclass) {
        (0 | TYPE_OPT, _) => Rcode::FormErr,
        (_, writer::CLASS_IN | CLASS_CH) if q.qtype == TYPE_AXFR || q.qtype == TYPE_IXFR => Rcode::Refused,
        (128..=254, writer::CLASS_IN | CLASS_CH) => Rcode::NotImp,
        (_, writer::CLASS_IN | CLASS_CH) => return None,
        _ => Rcode::Refused,
    };
    Some(Reply::error(rcode))
}

/// A query for the NXNAME type in a signed zone: FORMERR (RFC 9824, SPEC §5 and §8).
fn nxname_in_signed_zone(view: &View, request: &Request) -> bool {
    let Some(q) =
        request.question.as_ref().filter(|q| q.qtype == crate::dnssec::NXNAME && q.qclass == writer::CLASS_IN)
    else {
        return false;
    };
    view.zones.find(&q.name).is_some_and(|z| z.keys().is_some())
}

fn answer<'v>(
    edge: &Edge<'v>,
    request: &Request,
    source: SocketAddr,
    limit: usize,
    out: &mut Vec<u8>,
    trace: &mut impl Trace,
) -> Written<'v> {
    let q = request.question.as_ref().expect("checked by precheck");
    if q.qclass == CLASS_CH {
        return chaos(edge, request, limit, out);
    }
    let ecs = request.edns.as_ref().and_then(|e| e.ecs);
    // the client: the ECS address (already checked to hold no bits past its prefix)
    // when its source prefix is above 0, else the query's source address
    let client = match ecs {
        Some(e) if e.source_prefix() > 0 => Client { address: e.addr(), ecs_source: Some(e.source_prefix()) },
        _ => Client { address: source.ip(), ecs_source: None },
    };
    let opt = opt_for(edge, request, Rcode::NoError, ecs.map(|e| (e, 0)));
    let mut writer = Writer::new(out, limit, Some(q.wire()), opt.as_ref());
    let dnssec = request.edns.as_ref().map_or((false, false), |e| (e.dnssec_ok, e.compact_ok));
    let (reply, kind, imputed) = resolve::resolve(edge.view, q, &client, dnssec, &mut writer, trace);
    let opt = opt.map(|mut o| {
        o.ecs = ecs.zip(reply.ecs_scope);
        o.ede = reply.ede;
        o
    });
    writer.finish(request.id, flags(request, reply), opt.as_ref());
    Written { rcode: reply.rcode, kind, imputed, scoped: ecs.is_some() && reply.ecs_scope.is_some_and(|s| s > 0) }
}

/// CHAOS TXT id.server. / hostname.bind. → identity; every other CHAOS query → REFUSED.
fn chaos<'v>(edge: &Edge<'v>, request: &Request, limit: usize, out: &mut Vec<u8>) -> Written<'v> {
    let q = request.question.as_ref().expect("checked by precheck");
    let name = q.name.to_lowercase().to_ascii();
    let known = matches!(name.as_str(), "id.server." | "hostname.bind.");
    if !known || !matches!(q.qtype, TYPE_TXT | TYPE_ANY) {
        return error(edge, request, Reply::error(Rcode::Refused), limit, out);
    }
    let opt = opt_for(edge, request, Rcode::NoError, None);
    let mut writer = Writer::new(out, limit, Some(q.wire()), opt.as_ref());
    let mut reply = Reply::error(Rcode::NoError);
    if writer.txt(Owner::Question, CLASS_CH, edge.view.identity.as_bytes()).is_err() {
        reply.tc = true;
    }
    writer.finish(request.id, flags(request, reply), opt.as_ref());
    Written { rcode: reply.rcode, kind: Kind::Answer, imputed: Imputed::Qname, scoped: false }
}

/// An error reply: header, question and OPT, counted by RRL against the zone.
fn error<'v>(edge: &Edge<'v>, request: &Request, reply: Reply, limit: usize, out: &mut Vec<u8>) -> Written<'v> {
    let question = request.question.as_ref().filter(|_| request.qdcount == 1).map(wire::Question::wire);
    let opt = opt_for(edge, request, reply.rcode, None);
    Writer::new(out, limit, question, opt.as_ref()).finish(request.id, flags(request, reply), opt.as_ref());
    let imputed = match request.question.as_ref().and_then(|q| edge.view.zones.find(&q.name)) {
        Some(zone) => Imputed::Name(zone.origin()),
        None => Imputed::Root,
    };
    Written { rcode: reply.rcode, kind: Kind::Error, imputed, scoped: false }
}

/// Our OPT when the request had one: DO copied, NSID when asked, the extended RCODE
/// bits, our cookie when the query had one, padding over TLS when asked; BADVERS
/// carries no options.
fn opt_for<'v>(
    edge: &Edge<'v>,
    request: &Request,
    rcode: Rcode,
    ecs: Option<(hickory_proto::rr::rdata::opt::ClientSubnet, u8)>,
) -> Option<Opt<'v>> {
    opt_of(edge, request.edns.as_ref()?, rcode, ecs)
}

fn opt_of<'v>(
    edge: &Edge<'v>,
    edns: &wire::Edns,
    rcode: Rcode,
    ecs: Option<(hickory_proto::rr::rdata::opt::ClientSubnet, u8)>,
) -> Option<Opt<'v>> {
    let plain = rcode == Rcode::BadVers;
    Some(Opt {
        dnssec_ok: edns.dnssec_ok,
        compact_ok: edns.dnssec_ok && edns.compact_ok,
        extended_rcode: (rcode as u16 >> 4) as u8,
        ecs: if plain { None } else { ecs },
        nsid: (edns.nsid && !plain).then_some(edge.view.identity.as_bytes()),
        ede: None,
        cookie: edns.cookie.filter(|_| !plain).map(|c| (c.client, c.reply)),
        pad_to: (edge.padded && !plain).then_some(PAD_BLOCK),
    })
}

/// QR, the request's opcode, RD and CD copied (for QUERY only: other opcodes get them
/// clear, SPEC §5); AA and TC as decided; RA, AD and Z 0.
fn flags(request: &Request, reply: Reply) -> u16 {
    let mut flags = 0x8000 | (u16::from(request.opcode) << 11) | (reply.rcode as u16 & 0xF);
    let query = request.opcode == 0;
    let copied = [(request.rd && query, 0x0100), (request.cd && query, 0x0010)];
    for (set, bit) in [(reply.aa, 0x0400), (reply.tc, 0x0200)].into_iter().chain(copied) {
        if set {
            flags |= bit;
        }
    }
    flags
}

//! Request parsing: the header, the question, and the OPT record with its options,
//! checked as SPEC §5 says (one OPT, in the additional section, with a root owner;
//! BADVERS before any option error; strict ECS and COOKIE).

use hickory_proto::rr::rdata::opt::ClientSubnet;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, Restrict};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::writer::QuestionWire;
use crate::zone::wire_name_len;

const OPT: u16 = 41;
const OPTION_NSID: u16 = 3;
const OPTION_ECS: u16 = 8;
const OPTION_COOKIE: u16 = 10;
const OPTION_PADDING: u16 = 12;

/// A request that parsed far enough to be answered.
#[derive(Debug)]
pub struct Request {
    pub id: u16,
    pub opcode: u8,
    pub rd: bool,
    pub cd: bool,
    pub qdcount: u16,
    /// The first question, with the name's letter case as sent.
    pub question: Option<Question>,
    pub edns: Option<Edns>,
}

#[derive(Debug)]
pub struct Question {
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
    /// The name in wire form as sent (pointers expanded), for the reply's question.
    spelled: Spelled,
}

impl Question {
    fn new(name: Name, qtype: u16, qclass: u16) -> Question {
        let mut spelled = Spelled { bytes: [0; 255], len: 0 };
        let mut at = 0;
        for label in name.iter() {
            spelled.bytes[at] = label.len() as u8;
            spelled.bytes[at + 1..at + 1 + label.len()].copy_from_slice(label);
            at += 1 + label.len();
        }
        spelled.len = (at + 1) as u8;
        Question { name, qtype, qclass, spelled }
    }

    /// The question as it goes into the reply.
    pub fn wire(&self) -> QuestionWire<'_> {
        QuestionWire {
            name: &self.spelled.bytes[..usize::from(self.spelled.len)],
            qtype: self.qtype,
            qclass: self.qclass,
        }
    }
}

/// A name in wire form as the client spelled it.
#[derive(Debug)]
struct Spelled {
    bytes: [u8; 255],
    len: u8,
}

#[derive(Debug)]
pub struct Edns {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    /// The CO flag (RFC 9824): the client takes NXDOMAIN with a compact denial.
    pub compact_ok: bool,
    pub ecs: Option<ClientSubnet>,
    pub nsid: bool,
    /// The COOKIE option (RFC 7873), judged by `respond` once the client is known.
    pub cookie: Option<super::cookie::Cookie>,
    /// The query asked for padding (RFC 7830): replies over TLS are padded.
    pub padding: bool,
    /// A malformed or repeated option: FORMERR, after the version check.
    pub option_error: bool,
}

/// Why a request gets no normal answer.
#[derive(Debug)]
pub enum Reject {
    /// Not even a query header, or a response (QR=1): no reply at all.
    Drop,
    /// Malformed past the header: FORMERR, with what parsed of the request (its
    /// question when exactly one parsed, and its OPT when it had one).
    FormErr(Box<Request>),
}

/// Parses a request, checking every record: its framing, its owner, and the RDATA of
/// the types hickory knows (lengths, names), with nothing left over after the last.
pub fn parse(bytes: &[u8]) -> Result<Request, Reject> {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return Err(Reject::Drop);
    }
    let word = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let (id, flags) = (word(0), word(2));
    let counts = [word(4), word(6), word(8), word(10)];
    let mut request = Request {
        id,
        opcode: ((flags >> 11) & 0xF) as u8,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        qdcount: counts[0],
        question: None,
        edns: None,
    };
    let mut decoder = BinDecoder::new(bytes);
    decoder.read_slice(12).map_err(|_| Reject::Drop)?;
    for _ in 0..counts[0] {
        match read_question(&mut decoder) {
            Some(question) => drop(request.question.get_or_insert(question)),
            None => return Err(Reject::FormErr(Box::new(request))),
        }
    }
    // a record whose framing holds but whose content does not is noted, and the rest
    // read on, so that the FORMERR can carry the OPT
    let mut malformed = false;
    for (section, count) in counts.iter().enumerate().skip(1) {
        for _ in 0..*count {
            let Some(record) = read_record(bytes, &mut decoder) else {
                return Err(Reject::FormErr(Box::new(request)));
            };
            match record {
                Record::Opt { owner_is_root, class, ttl, rdata } => {
                    let misplaced = section != 3 || !owner_is_root || request.edns.is_some();
                    malformed |= misplaced;
                    if !misplaced {
                        request.edns = Some(read_edns(class, ttl, rdata));
                    }
                }
                Record::Other { rdata_ok } => malformed |= !rdata_ok,
            }
        }
    }
    malformed |= !decoder.is_empty();
    if malformed { Err(Reject::FormErr(Box::new(request))) } else { Ok(request) }
}

/// A query the fast path may answer whole: QUERY with QR clear, exactly one IN
/// question whose name is plain labels, no records but at most one OPT (root owner,
/// version 0, well-formed options), and nothing after.
#[derive(Debug)]
pub struct Simple {
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    /// The question's name as sent is `bytes[12..12 + name_len]`.
    pub name_len: usize,
    pub qtype: u16,
    pub edns: Option<Edns>,
}

/// Reads a [`Simple`] query; None for anything else (the general parser's to judge).
pub fn parse_simple(bytes: &[u8]) -> Option<Simple> {
    let header = bytes.get(..12)?;
    let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let flags = word(2);
    // QR and OPCODE clear; one question; no answer or authority records
    if flags & 0xF800 != 0 || word(4) != 1 || word(6) != 0 || word(8) != 0 || word(10) > 1 {
        return None;
    }
    let name_len = wire_name_len(&bytes[12..])?;
    let at = 12 + name_len;
    let fixed = bytes.get(at..at + 4)?;
    let (qtype, qclass) = (u16::from_be_bytes([fixed[0], fixed[1]]), u16::from_be_bytes([fixed[2], fixed[3]]));
    if qclass != super::writer::CLASS_IN {
        return None;
    }
    let mut at = at + 4;
    let edns = if word(10) == 1 {
        let record = bytes.get(at..at + 11)?;
        let field = |i: usize| u16::from_be_bytes([record[i], record[i + 1]]);
        if record[0] != 0 || field(1) != OPT {
            return None;
        }
        let ttl = u32::from_be_bytes([record[5], record[6], record[7], record[8]]);
        let len = usize::from(field(9));
        let edns = read_edns(field(3), ttl, bytes.get(at + 11..at + 11 + len)?);
        if edns.version != 0 || edns.option_error {
            return None;
        }
        at += 11 + len;
        Some(edns)
    } else {
        None
    };
    (at == bytes.len()).then_some(Simple {
        id: word(0),
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        name_len,
        qtype,
        edns,
    })
}

/// The first question's name as sent, in wire form (its root label included), read
/// from the bytes of a query that parsed; empty when it does not hold one.
pub fn question_name(bytes: &[u8]) -> &[u8] {
    let mut at = 12;
    while let Some(&len) = bytes.get(at) {
        // a parsed question holds labels only (a pointer would point backwards,
        // into the header): stop at anything else
        if len == 0 || len > 63 {
            return bytes.get(12..=at).unwrap_or_default();
        }
        at += 1 + usize::from(len);
    }
    &[]
}

fn read_question(decoder: &mut BinDecoder<'_>) -> Option<Question> {
    let name = Name::read(decoder).ok()?;
    let qtype = decoder.read_u16().ok()?.unverified();
    let qclass = decoder.read_u16().ok()?.unverified();
    Some(Question::new(name, qtype, qclass))
}

/// One resource record of a query, as far as the parser needs it.
enum Record<'a> {
    Opt {
        owner_is_root: bool,
        class: u16,
        ttl: u32,
        rdata: &'a [u8],
    },
    /// Whether its RDATA is well formed for its type (any bytes, for a type hickory
    /// does not know).
    Other {
        rdata_ok: bool,
    },
}

/// Reads one resource record; None when its framing does not hold (the owner name,
/// the fixed fields, or an RDLENGTH past the message).
fn read_record<'a>(message: &'a [u8], decoder: &mut BinDecoder<'a>) -> Option<Record<'a>> {
    let owner_is_root = decoder.peek()?.unverified() == 0;
    Name::read(decoder).ok()?;
    let rtype = decoder.read_u16().ok()?.unverified();
    let class = decoder.read_u16().ok()?.unverified();
    let ttl = decoder.read_u32().ok()?.unverified();
    let len = decoder.read_u16().ok()?.unverified();
    let start = decoder.index();
    let rdata = decoder.read_slice(len as usize).ok()?.unverified();
    if rtype == OPT {
        return Some(Record::Opt { owner_is_root, class, ttl, rdata });
    }
    // names in RDATA may point anywhere before them: read it in the whole message
    let mut check = BinDecoder::new(message);
    let rdata_ok =
        check.read_slice(start).is_ok() && RData::read(&mut check, RecordType::from(rtype), Restrict::new(len)).is_ok();
    Some(Record::Other { rdata_ok })
}

fn read_edns(class: u16, ttl: u32, mut rdata: &[u8]) -> Edns {
    let mut edns = Edns {
        payload: class,
        version: (ttl >> 16) as u8,
        dnssec_ok: ttl & 0x8000 != 0,
        compact_ok: ttl & 0x4000 != 0,
        ecs: None,
        nsid: false,
        cookie: None,
        padding: false,
        option_error: false,
    };
    while !rdata.is_empty() {
        let Some((code, data, rest)) = split_option(rdata) else {
            edns.option_error = true;
            break;
        };
        rdata = rest;
        match code {
            OPTION_ECS if edns.ecs.is_some() => edns.option_error = true,
            OPTION_ECS => match read_ecs(data) {
                Some(ecs) => edns.ecs = Some(ecs),
                None => edns.option_error = true,
            },
            OPTION_NSID => edns.nsid = true,
            OPTION_COOKIE if edns.cookie.is_some() => edns.option_error = true,
            OPTION_COOKIE => match super::cookie::Cookie::parse(data) {
                Some(cookie) => edns.cookie = Some(cookie),
                None => edns.option_error = true,
            },
            OPTION_PADDING => edns.padding = true,
            _ => {}
        }
    }
    edns
}

fn split_option(rdata: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let code = u16::from_be_bytes([*rdata.first()?, *rdata.get(1)?]);
    let len = u16::from_be_bytes([*rdata.get(2)?, *rdata.get(3)?]) as usize;
    let data = rdata.get(4..4 + len)?;
    Some((code, data, &rdata[4 + len..]))
}

/// RFC 7871 §6: FAMILY 1 or 2, SOURCE within the family, exactly ceil(SOURCE/8) address
/// bytes, and no address bit set beyond SOURCE.
pub fn read_ecs(data: &[u8]) -> Option<ClientSubnet> {
    let [f0, f1, source, scope, address @ ..] = data else { return None };
    let max = match u16::from_be_bytes([*f0, *f1]) {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if *source > max || address.len() != source.div_ceil(8) as usize {
        return None;
    }
    if source % 8 != 0 && address.last().is_some_and(|b| b & (0xFF >> (source % 8)) != 0) {
        return None;
    }
    let addr = if max == 32 {
        let mut b = [0u8; 4];
        b[..address.len()].copy_from_slice(address);
        IpAddr::V4(Ipv4Addr::from(b))
    } else {
        let mut b = [0u8; 16];
        b[..address.len()].copy_from_slice(address);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    Some(ClientSubnet::new(addr, *source, *scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecs_rules() {
        assert!(read_ecs(&[0, 1, 24, 0, 10, 1, 2]).is_some());
        assert!(read_ecs(&[0, 1, 0, 0]).is_some());
        assert!(read_ecs(&[0, 0, 24, 0, 10, 1, 2]).is_none(), "family 0");
        assert!(read_ecs(&[0, 1, 33, 0, 10, 1, 2, 3, 4]).is_none(), "prefix too long");
        assert!(read_ecs(&[0, 1, 24, 0, 10, 1, 2, 3]).is_none(), "too many address bytes");
        assert!(read_ecs(&[0, 1, 20, 0, 10, 1, 0x21]).is_none(), "bits beyond the prefix");
        assert!(read_ecs(&[0, 1, 20, 0, 10, 1, 0x20]).is_some());
        assert!(read_ecs(&[0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 1]).is_some());
    }

    #[test]
    fn short_packets_and_responses_are_dropped() {
        assert!(matches!(parse(&[0; 11]), Err(Reject::Drop)));
        let mut response = [0u8; 12];
        response[2] = 0x80;
        assert!(matches!(parse(&response), Err(Reject::Drop)));
    }
}

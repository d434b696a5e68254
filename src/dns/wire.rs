//! Request parsing: the header, the question, and the OPT record with its options,
//! checked as SPEC §5 says (one OPT, in the additional section, with a root owner;
//! BADVERS before any option error; strict ECS).

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::opt::ClientSubnet;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const OPT: u16 = 41;
const OPTION_NSID: u16 = 3;
const OPTION_ECS: u16 = 8;

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
}

#[derive(Debug)]
pub struct Edns {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    pub ecs: Option<ClientSubnet>,
    pub nsid: bool,
    /// A malformed or repeated option: FORMERR, after the version check.
    pub option_error: bool,
}

/// Why a request gets no normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not even a query header, or a response (QR=1): no reply at all.
    Drop,
    /// Malformed past the header: FORMERR with the header's id, opcode and RD.
    FormErr { id: u16, opcode: u8, rd: bool },
}

/// Parses a request.
pub fn parse(bytes: &[u8]) -> Result<Request, Reject> {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return Err(Reject::Drop);
    }
    let word = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let (id, flags) = (word(0), word(2));
    let opcode = ((flags >> 11) & 0xF) as u8;
    let rd = flags & 0x0100 != 0;
    let formerr = Reject::FormErr { id, opcode, rd };
    let counts = [word(4), word(6), word(8), word(10)];
    let mut decoder = BinDecoder::new(bytes);
    decoder.read_slice(12).map_err(|_| Reject::Drop)?;
    let mut request =
        Request { id, opcode, rd, cd: flags & 0x0010 != 0, qdcount: counts[0], question: None, edns: None };
    for _ in 0..counts[0] {
        let question = read_question(&mut decoder).ok_or(formerr)?;
        request.question.get_or_insert(question);
    }
    for _ in 0..counts[1] as u32 + counts[2] as u32 {
        let (_, rtype, _, _, _) = read_record(&mut decoder).ok_or(formerr)?;
        if rtype == OPT {
            return Err(formerr);
        }
    }
    for _ in 0..counts[3] {
        let (owner_is_root, rtype, class, ttl, rdata) = read_record(&mut decoder).ok_or(formerr)?;
        if rtype != OPT {
            continue;
        }
        if !owner_is_root || request.edns.is_some() {
            return Err(formerr);
        }
        request.edns = Some(read_edns(class, ttl, rdata));
    }
    Ok(request)
}

fn read_question(decoder: &mut BinDecoder<'_>) -> Option<Question> {
    let name = Name::read(decoder).ok()?;
    let qtype = decoder.read_u16().ok()?.unverified();
    let qclass = decoder.read_u16().ok()?.unverified();
    Some(Question { name, qtype, qclass })
}

/// Reads one resource record: (owner is root, type, class, ttl, rdata).
fn read_record<'a>(decoder: &mut BinDecoder<'a>) -> Option<(bool, u16, u16, u32, &'a [u8])> {
    let owner_is_root = decoder.peek()?.unverified() == 0;
    Name::read(decoder).ok()?;
    let rtype = decoder.read_u16().ok()?.unverified();
    let class = decoder.read_u16().ok()?.unverified();
    let ttl = decoder.read_u32().ok()?.unverified();
    let len = decoder.read_u16().ok()?.unverified() as usize;
    let rdata = decoder.read_slice(len).ok()?.unverified();
    Some((owner_is_root, rtype, class, ttl, rdata))
}

fn read_edns(class: u16, ttl: u32, mut rdata: &[u8]) -> Edns {
    let mut edns = Edns {
        payload: class,
        version: (ttl >> 16) as u8,
        dnssec_ok: ttl & 0x8000 != 0,
        ecs: None,
        nsid: false,
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
        assert_eq!(parse(&[0; 11]).unwrap_err(), Reject::Drop);
        let mut response = [0u8; 12];
        response[2] = 0x80;
        assert_eq!(parse(&response).unwrap_err(), Reject::Drop);
    }
}

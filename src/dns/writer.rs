//! Writes a response straight into a reused buffer: header, question, records and OPT,
//! rolling back any record that does not fit the size limit.

use hickory_proto::rr::rdata::opt::ClientSubnet;
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use std::net::IpAddr;

/// The record did not fit in the size limit (and was not written).
#[derive(Debug)]
pub struct Full;

pub const CLASS_IN: u16 = 1;

/// The OPT record of a response.
#[derive(Debug, Default)]
pub struct Opt<'a> {
    pub dnssec_ok: bool,
    /// Upper 8 bits of the 12-bit RCODE.
    pub extended_rcode: u8,
    /// The query's ECS, echoed with this scope.
    pub ecs: Option<(ClientSubnet, u8)>,
    pub nsid: Option<&'a [u8]>,
    /// An Extended DNS Error INFO-CODE, without EXTRA-TEXT.
    pub ede: Option<u16>,
    /// The client cookie and our server cookie (RFC 7873).
    pub cookie: Option<([u8; 8], [u8; 16])>,
    /// Pad the whole message to a multiple of this many bytes (RFC 7830, RFC 8467).
    pub pad_to: Option<u16>,
}

impl Opt<'_> {
    /// Encoded size: root owner, type, class, TTL, RDLENGTH, options.
    fn len(&self) -> usize {
        let ecs = self.ecs.map_or(0, |(e, _)| 8 + e.source_prefix().div_ceil(8) as usize);
        let cookie = self.cookie.map_or(0, |_| 4 + 24);
        11 + ecs + self.nsid.map_or(0, |n| 4 + n.len()) + self.ede.map_or(0, |_| 6) + cookie
    }

    /// Padding bytes that make a message of `length` bytes (this OPT and the padding
    /// option's own four bytes included) a multiple of the block; none past 65,535.
    fn padding(&self, length: usize) -> Option<usize> {
        let block = usize::from(self.pad_to?);
        let unpadded = length + self.len() + 4;
        let padding = (block - unpadded % block) % block;
        (unpadded + padding <= usize::from(u16::MAX)).then_some(padding)
    }
}

/// The owner name of a record: the question's name, written as a pointer to the
/// question (so the client's spelling is echoed and the record costs two bytes), or
/// any other name.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    Question,
    Name(&'a Name),
}

impl Owner<'_> {
    fn emit(self, enc: &mut BinEncoder<'_>) -> Result<(), hickory_proto::ProtoError> {
        match self {
            // the question's name always starts right after the 12-byte header
            Owner::Question => enc.emit_u16(0xC000 | 12),
            Owner::Name(name) => name.emit(enc),
        }
    }
}

/// Response sections, written strictly in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

pub struct Writer<'b> {
    enc: BinEncoder<'b>,
    counts: [u16; 4],
    question_end: usize,
}

impl<'b> Writer<'b> {
    /// Starts a response of at most `limit` bytes (OPT included) to `question`.
    pub fn new(buf: &'b mut Vec<u8>, limit: usize, question: Option<(&Name, u16, u16)>, opt: Option<&Opt>) -> Self {
        buf.clear();
        let mut enc = BinEncoder::new(buf);
        let reserve = opt.map_or(0, Opt::len);
        enc.set_max_size(limit.saturating_sub(reserve).clamp(12, u16::MAX as usize) as u16);
        let mut counts = [0; 4];
        let header = [0u8; 12];
        let mut writer = Writer { enc, counts, question_end: 12 };
        let _ = writer.enc.emit_vec(&header);
        if let Some((name, qtype, qclass)) = question {
            let before = writer.enc.offset();
            let written = emit_labels(&mut writer.enc, name)
                .and_then(|_| writer.enc.emit_u16(qtype))
                .and_then(|_| writer.enc.emit_u16(qclass));
            if written.is_ok() {
                counts[0] = 1;
            } else {
                writer.rollback(before);
            }
        }
        writer.counts = counts;
        writer.question_end = writer.enc.offset();
        writer
    }

    fn rollback(&mut self, offset: usize) {
        self.enc.set_offset(offset);
        self.enc.trim();
    }

    /// Writes `record` with `owner` as its owner name (the query name for answers at
    /// it and for wildcard synthesis) and `ttl`.
    pub fn record(&mut self, section: Section, owner: Owner, ttl: u32, record: &Record) -> Result<(), Full> {
        self.write(section, |enc| {
            owner.emit(enc)?;
            enc.emit_u16(record.record_type().into())?;
            enc.emit_u16(record.dns_class.into())?;
            enc.emit_u32(ttl)?;
            let place = enc.place::<u16>()?;
            record.data.emit(enc)?;
            let len = enc.len_since_place(&place) as u16;
            place.replace(enc, len)
        })
    }

    /// Writes an A or AAAA record (built whole on the stack, then one write).
    pub fn address(&mut self, owner: Owner, ttl: u32, address: IpAddr) -> Result<(), Full> {
        let mut fixed = [0u8; 10 + 16];
        let (rtype, data): (u16, &[u8]) = match &address {
            IpAddr::V4(a) => (1, &a.octets()[..]),
            IpAddr::V6(a) => (28, &a.octets()[..]),
        };
        fixed[..2].copy_from_slice(&rtype.to_be_bytes());
        fixed[2..4].copy_from_slice(&CLASS_IN.to_be_bytes());
        fixed[4..8].copy_from_slice(&ttl.to_be_bytes());
        fixed[8..10].copy_from_slice(&(data.len() as u16).to_be_bytes());
        fixed[10..10 + data.len()].copy_from_slice(data);
        let fixed = &fixed[..10 + data.len()];
        self.write(Section::Answer, |enc| {
            owner.emit(enc)?;
            enc.emit_vec(fixed)
        })
    }

    /// Writes a TXT record with one character-string (CHAOS identity).
    pub fn txt(&mut self, owner: Owner, class: u16, text: &[u8]) -> Result<(), Full> {
        self.write(Section::Answer, |enc| {
            owner.emit(enc)?;
            enc.emit_u16(16)?;
            enc.emit_u16(class)?;
            enc.emit_u32(0)?;
            enc.emit_u16(text.len() as u16 + 1)?;
            enc.emit_character_data(text)
        })
    }

    fn write(
        &mut self,
        section: Section,
        emit: impl FnOnce(&mut BinEncoder<'b>) -> Result<(), hickory_proto::ProtoError>,
    ) -> Result<(), Full> {
        let before = self.enc.offset();
        if emit(&mut self.enc).is_err() {
            self.rollback(before);
            return Err(Full);
        }
        self.counts[1 + section as usize] += 1;
        Ok(())
    }

    /// Drops every record, keeping header and question (for a TC=1 reply).
    pub fn clear_records(&mut self) {
        let end = self.question_end;
        self.rollback(end);
        self.counts[1..].fill(0);
    }

    /// Appends the OPT record and writes the header.
    pub fn finish(mut self, id: u16, flags: u16, opt: Option<&Opt>) {
        self.enc.set_max_size(u16::MAX);
        if let Some(opt) = opt {
            // the space was reserved at `new`, so this cannot fail
            let padding = opt.padding(self.enc.offset());
            let _ = emit_opt(&mut self.enc, opt, padding);
            self.counts[3] += 1;
        }
        let mut header = [0u8; 12];
        header[..2].copy_from_slice(&id.to_be_bytes());
        header[2..4].copy_from_slice(&flags.to_be_bytes());
        for (i, c) in self.counts.iter().enumerate() {
            header[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        let end = self.enc.offset();
        self.enc.set_offset(0);
        let _ = self.enc.emit_vec(&header);
        self.enc.set_offset(end);
    }
}

/// Writes a name label by label, uncompressed (the question, first in the message),
/// assembled on the stack and written at once.
fn emit_labels(enc: &mut BinEncoder<'_>, name: &Name) -> Result<(), hickory_proto::ProtoError> {
    let mut wire = [0u8; 256];
    let mut len = 0;
    for label in name.iter() {
        wire[len] = label.len() as u8;
        wire[len + 1..len + 1 + label.len()].copy_from_slice(label);
        len += 1 + label.len();
    }
    enc.emit_vec(&wire[..=len])
}

/// Our OPT: payload 1232, version 0, DO copied, the ECS echo, NSID, EDE, the cookie
/// and padding.
fn emit_opt(enc: &mut BinEncoder<'_>, opt: &Opt, padding: Option<usize>) -> Result<(), hickory_proto::ProtoError> {
    enc.emit(0)?;
    enc.emit_u16(41)?;
    enc.emit_u16(super::OUR_UDP_SIZE)?;
    enc.emit_u32((u32::from(opt.extended_rcode) << 24) | if opt.dnssec_ok { 0x8000 } else { 0 })?;
    enc.emit_u16((opt.len() - 11 + padding.map_or(0, |p| 4 + p)) as u16)?;
    if let Some((ecs, scope)) = opt.ecs {
        let bytes = ecs.source_prefix().div_ceil(8) as usize;
        let (family, address) = match ecs.addr() {
            IpAddr::V4(a) => (1, a.octets().to_vec()),
            IpAddr::V6(a) => (2, a.octets().to_vec()),
        };
        enc.emit_u16(8)?;
        enc.emit_u16(4 + bytes as u16)?;
        enc.emit_u16(family)?;
        enc.emit(ecs.source_prefix())?;
        enc.emit(scope)?;
        enc.emit_vec(&address[..bytes])?;
    }
    if let Some(nsid) = opt.nsid {
        enc.emit_u16(3)?;
        enc.emit_u16(nsid.len() as u16)?;
        enc.emit_vec(nsid)?;
    }
    if let Some(code) = opt.ede {
        enc.emit_u16(15)?;
        enc.emit_u16(2)?;
        enc.emit_u16(code)?;
    }
    if let Some((client, server)) = &opt.cookie {
        enc.emit_u16(10)?;
        enc.emit_u16(24)?;
        enc.emit_vec(client)?;
        enc.emit_vec(server)?;
    }
    if let Some(padding) = padding {
        enc.emit_u16(12)?;
        enc.emit_u16(padding as u16)?;
        enc.emit_vec(&[0; 468][..padding.min(468)])?;
    }
    Ok(())
}

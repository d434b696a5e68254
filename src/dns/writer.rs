//! Writes a response straight into a reused buffer: header, question, records and OPT,
//! names compressed in every section (RFC 1035 §4.1.4), rolling back any record that
//! does not fit the size limit.

use crate::zone::{WireRecord, wire_name_len};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::opt::ClientSubnet;
use std::net::IpAddr;

/// The record did not fit in the size limit (and was not written).
#[derive(Debug)]
pub struct Full;

pub const CLASS_IN: u16 = 1;

/// Label starts remembered as compression targets; names past these are written whole
/// (64 is what hickory's encoder kept; zeroing more costs every reply).
const MAX_TARGETS: usize = 64;

/// The OPT record of a response.
#[derive(Debug, Default)]
pub struct Opt<'a> {
    pub dnssec_ok: bool,
    /// Echo the CO flag (RFC 9824).
    pub compact_ok: bool,
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

/// Response sections, written strictly in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

/// The question as it goes into a reply: its name in wire form, as sent (letter case
/// kept, no pointers), its type and class.
#[derive(Debug, Clone, Copy)]
pub struct QuestionWire<'a> {
    pub name: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
}

pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    /// The most the message may take before the OPT.
    limit: usize,
    counts: [u16; 4],
    question_end: usize,
    /// The question's labels are among the targets (they are added when the first
    /// name is written: most replies write none).
    question_targets: bool,
    /// Where the labels written so far start, for later names to point at.
    targets: [u16; MAX_TARGETS],
    target_count: usize,
}

impl<'b> Writer<'b> {
    /// Starts a response of at most `limit` bytes (OPT included) to `question`.
    pub fn new(buf: &'b mut Vec<u8>, limit: usize, question: Option<QuestionWire>, opt: Option<&Opt>) -> Self {
        buf.clear();
        buf.extend_from_slice(&[0; 12]);
        let reserve = opt.map_or(0, Opt::len);
        let limit = limit.saturating_sub(reserve).clamp(12, u16::MAX as usize);
        let mut writer = Writer {
            buf,
            limit,
            counts: [0; 4],
            question_end: 12,
            question_targets: false,
            targets: [0; _],
            target_count: 0,
        };
        if let Some(q) = question
            && 12 + q.name.len() + 4 <= limit
        {
            writer.buf.extend_from_slice(q.name);
            writer.buf.extend_from_slice(&q.qtype.to_be_bytes());
            writer.buf.extend_from_slice(&q.qclass.to_be_bytes());
            writer.counts[0] = 1;
        }
        writer.question_end = writer.buf.len();
        writer
    }

    /// Adds the question's labels to the targets, once, before any other.
    fn question_targets(&mut self) {
        if self.question_targets || self.counts[0] == 0 {
            return;
        }
        self.question_targets = true;
        let mut at = 12;
        while self.buf[at] > 0 {
            self.target(at);
            at += 1 + usize::from(self.buf[at]);
        }
    }

    /// Bytes left before the limit.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    fn target(&mut self, at: usize) {
        if at < 0x4000 && self.target_count < MAX_TARGETS {
            self.targets[self.target_count] = at as u16;
            self.target_count += 1;
        }
    }

    fn rollback(&mut self, offset: usize, targets: usize) {
        self.buf.truncate(offset);
        self.target_count = targets;
        // the question's targets come first: with none left, add them again when needed
        if targets == 0 {
            self.question_targets = false;
        }
    }

    /// Writes `record` with `owner` as its owner name (the query name for answers at
    /// it and for wildcard synthesis) and `ttl`, compressing the names in its RDATA
    /// where RFC 1035 allows it.
    pub fn record(&mut self, section: Section, owner: Owner, ttl: u32, record: &WireRecord) -> Result<(), Full> {
        self.write(section, |w| {
            w.owner(owner);
            w.fixed(record.rtype, record.class, ttl);
            let start = w.buf.len();
            w.rdata(record.rtype, record.rdata);
            let len = (w.buf.len() - start) as u16;
            w.buf[start - 2..start].copy_from_slice(&len.to_be_bytes());
            Ok(())
        })
    }

    /// Writes an A or AAAA record (at the question's name: built whole on the stack,
    /// then one copy).
    pub fn address(&mut self, owner: Owner, ttl: u32, address: IpAddr) -> Result<(), Full> {
        if let Owner::Question = owner {
            let mut record = [0u8; 28];
            record[..2].copy_from_slice(&(0xC000u16 | 12).to_be_bytes());
            let (rtype, len) = match address {
                IpAddr::V4(a) => {
                    record[12..16].copy_from_slice(&a.octets());
                    (1u16, 4u16)
                }
                IpAddr::V6(a) => {
                    record[12..28].copy_from_slice(&a.octets());
                    (28, 16)
                }
            };
            record[2..4].copy_from_slice(&rtype.to_be_bytes());
            record[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
            record[6..10].copy_from_slice(&ttl.to_be_bytes());
            record[10..12].copy_from_slice(&len.to_be_bytes());
            // constant lengths: the copies are inlined
            let record = if len == 4 { &record[..16] } else { &record[..] };
            return self.precompiled(Section::Answer, 1, record);
        }
        self.write(Section::Answer, |w| {
            w.owner(owner);
            match address {
                IpAddr::V4(a) => {
                    w.fixed(1, CLASS_IN, ttl);
                    w.set_rdlength(4);
                    w.buf.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    w.fixed(28, CLASS_IN, ttl);
                    w.set_rdlength(16);
                    w.buf.extend_from_slice(&a.octets());
                }
            }
            Ok(())
        })
    }

    /// Appends `count` records written ahead of time (a precompiled RRset whose owners
    /// point at the question and whose RDATA holds no names), whole or not at all.
    pub fn precompiled(&mut self, section: Section, count: u16, wire: &[u8]) -> Result<(), Full> {
        if wire.len() > self.room() {
            return Err(Full);
        }
        self.buf.extend_from_slice(wire);
        self.counts[1 + section as usize] += count;
        Ok(())
    }

    /// Writes a TXT record with one character-string (CHAOS identity).
    pub fn txt(&mut self, owner: Owner, class: u16, text: &[u8]) -> Result<(), Full> {
        self.write(Section::Answer, |w| {
            w.owner(owner);
            w.fixed(16, class, 0);
            w.set_rdlength(text.len() as u16 + 1);
            w.buf.push(text.len() as u8);
            w.buf.extend_from_slice(text);
            Ok(())
        })
    }

    /// Type, class, TTL and a zero RDLENGTH.
    fn fixed(&mut self, rtype: u16, class: u16, ttl: u32) {
        let mut fixed = [0u8; 10];
        fixed[..2].copy_from_slice(&rtype.to_be_bytes());
        fixed[2..4].copy_from_slice(&class.to_be_bytes());
        fixed[4..8].copy_from_slice(&ttl.to_be_bytes());
        self.buf.extend_from_slice(&fixed);
    }

    fn set_rdlength(&mut self, len: u16) {
        let end = self.buf.len();
        self.buf[end - 2..].copy_from_slice(&len.to_be_bytes());
    }

    fn owner(&mut self, owner: Owner) {
        match owner {
            // the question's name always starts right after the 12-byte header
            Owner::Question => self.buf.extend_from_slice(&(0xC000u16 | 12).to_be_bytes()),
            Owner::Name(name) => self.name(name),
        }
    }

    /// RDATA, with the names of the types RFC 3597 §4 lets us compress compressed;
    /// every other type as hickory writes it, its names whole.
    /// RDATA whose names (uncompressed, as the zone index holds them) are compressed in
    /// the types of RFC 1035 only (RFC 3597 §4): NS, CNAME, PTR, MX, SOA.
    fn rdata(&mut self, rtype: u16, rdata: &[u8]) {
        let names = match rtype {
            2 | 5 | 12 => 0..1,
            15 => 2..3,
            6 => 0..2,
            _ => 0..0,
        };
        let mut at = 0;
        if names.start > 0 {
            self.buf.extend_from_slice(&rdata[..names.start.min(rdata.len())]);
            at = names.start;
        }
        for _ in names {
            let Some(len) = rdata.get(at..).and_then(wire_name_len) else { break };
            self.wire_name(&rdata[at..at + len]);
            at += len;
        }
        self.buf.extend_from_slice(rdata.get(at..).unwrap_or_default());
    }

    /// Writes the uncompressed name `wire`, pointing at the longest suffix already in the
    /// message.
    fn wire_name(&mut self, wire: &[u8]) {
        let mut labels: [&[u8]; 128] = [&[]; 128];
        let mut n = 0;
        let mut at = 0;
        while let Some(&len) = wire.get(at).filter(|&&l| l > 0) {
            labels[n] = &wire[at + 1..at + 1 + usize::from(len)];
            n += 1;
            at += 1 + usize::from(len);
        }
        self.labels_compressed(&labels[..n]);
    }

    /// Writes `name`, pointing at the longest suffix already in the message.
    fn name(&mut self, name: &Name) {
        let mut labels: [&[u8]; 128] = [&[]; 128];
        let mut n = 0;
        for label in name.iter() {
            labels[n] = label;
            n += 1;
        }
        self.labels_compressed(&labels[..n]);
    }

    fn labels_compressed(&mut self, labels: &[&[u8]]) {
        self.question_targets();
        for i in 0..labels.len() {
            if let Some(to) = self.find(&labels[i..]) {
                self.labels(&labels[..i]);
                self.buf.extend_from_slice(&(0xC000 | to).to_be_bytes());
                return;
            }
        }
        self.labels(labels);
        self.buf.push(0);
    }

    fn labels(&mut self, labels: &[&[u8]]) {
        for label in labels {
            self.target(self.buf.len());
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label);
        }
    }

    /// A remembered label start where `labels` (to the root) are written, ignoring case.
    fn find(&self, labels: &[&[u8]]) -> Option<u16> {
        let first = labels[0];
        self.targets[..self.target_count].iter().copied().find(|&at| {
            self.buf[usize::from(at)] as usize == first.len() && suffix_at(self.buf, usize::from(at), labels)
        })
    }

    fn write(&mut self, section: Section, emit: impl FnOnce(&mut Self) -> Result<(), Full>) -> Result<(), Full> {
        let (before, targets) = (self.buf.len(), self.target_count);
        if emit(self).is_err() || self.buf.len() > self.limit {
            self.rollback(before, targets);
            return Err(Full);
        }
        self.counts[1 + section as usize] += 1;
        Ok(())
    }

    /// Drops every record, keeping header and question (for a TC=1 reply).
    pub fn clear_records(&mut self) {
        self.rollback(self.question_end, 0);
        self.counts[1..].fill(0);
    }

    /// Appends the OPT record and writes the header.
    pub fn finish(mut self, id: u16, flags: u16, opt: Option<&Opt>) {
        if let Some(opt) = opt {
            // the space was reserved at `new`
            let padding = opt.padding(self.buf.len());
            emit_opt(self.buf, opt, padding);
            self.counts[3] += 1;
        }
        let header = &mut self.buf[..12];
        header[..2].copy_from_slice(&id.to_be_bytes());
        header[2..4].copy_from_slice(&flags.to_be_bytes());
        for (i, c) in self.counts.iter().enumerate() {
            header[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
    }
}

/// Whether the name written at `at` in `message` (pointers followed) is `labels` and
/// then the root, ignoring ASCII case.
fn suffix_at(message: &[u8], mut at: usize, labels: &[&[u8]]) -> bool {
    let step = |at: &mut usize| -> Option<usize> {
        // pointers in our own output always point backwards: this ends
        loop {
            let len = *message.get(*at)?;
            if len & 0xC0 == 0xC0 {
                *at = usize::from(u16::from_be_bytes([len, *message.get(*at + 1)?]) & 0x3FFF);
            } else {
                return Some(usize::from(len));
            }
        }
    };
    for label in labels {
        let Some(len) = step(&mut at) else { return false };
        if len != label.len() || !message.get(at + 1..at + 1 + len).is_some_and(|l| l.eq_ignore_ascii_case(label)) {
            return false;
        }
        at += 1 + len;
    }
    step(&mut at) == Some(0)
}

/// Our OPT: payload 1232, version 0, DO copied, the ECS echo, NSID, EDE, the cookie
/// and padding.
fn emit_opt(buf: &mut Vec<u8>, opt: &Opt, padding: Option<usize>) {
    let ttl = (u32::from(opt.extended_rcode) << 24)
        | if opt.dnssec_ok { 0x8000 } else { 0 }
        | if opt.compact_ok { 0x4000 } else { 0 };
    let rdlength = (opt.len() - 11 + padding.map_or(0, |p| 4 + p)) as u16;
    let mut fixed = [0u8; 11];
    fixed[1..3].copy_from_slice(&41u16.to_be_bytes());
    fixed[3..5].copy_from_slice(&super::OUR_UDP_SIZE.to_be_bytes());
    fixed[5..9].copy_from_slice(&ttl.to_be_bytes());
    fixed[9..11].copy_from_slice(&rdlength.to_be_bytes());
    buf.extend_from_slice(&fixed);
    if let Some((ecs, scope)) = opt.ecs {
        // code, length, family, source, scope, then the address to the source prefix
        let bytes = ecs.source_prefix().div_ceil(8) as usize;
        let mut option = [0u8; 24];
        option[..2].copy_from_slice(&8u16.to_be_bytes());
        option[2..4].copy_from_slice(&(4 + bytes as u16).to_be_bytes());
        match ecs.addr() {
            IpAddr::V4(a) => {
                option[5] = 1;
                option[8..12].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                option[5] = 2;
                option[8..24].copy_from_slice(&a.octets());
            }
        }
        option[6] = ecs.source_prefix();
        option[7] = scope;
        buf.extend_from_slice(&option[..8 + bytes]);
    }
    let mut option = |code: u16, data: &[&[u8]]| {
        let len: usize = data.iter().map(|d| d.len()).sum();
        buf.extend_from_slice(&code.to_be_bytes());
        buf.extend_from_slice(&(len as u16).to_be_bytes());
        for d in data {
            buf.extend_from_slice(d);
        }
    };
    if let Some(nsid) = opt.nsid {
        option(3, &[nsid]);
    }
    if let Some(code) = opt.ede {
        option(15, &[&code.to_be_bytes()]);
    }
    if let Some((client, server)) = &opt.cookie {
        option(10, &[client, server]);
    }
    if let Some(padding) = padding {
        option(12, &[&[0; 468][..padding.min(468)]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::{A, MX, NS, SOA};
    use hickory_proto::rr::{RData, Record};
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

    /// Writes a hickory record as the zone index holds it: RDATA names uncompressed.
    fn record(w: &mut Writer, section: Section, owner: Owner, ttl: u32, record: &Record) -> Result<(), Full> {
        let mut rdata = Vec::new();
        let mut encoder = BinEncoder::new(&mut rdata);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        record.data.emit(&mut encoder).unwrap();
        w.record(section, owner, ttl, &WireRecord { rtype: record.record_type().into(), class: 1, ttl, rdata: &rdata })
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    const QUESTION: &[u8] = b"\x03www\x02lb\x07example\x00";

    fn writer(buf: &mut Vec<u8>, limit: usize) -> Writer<'_> {
        Writer::new(buf, limit, Some(QuestionWire { name: QUESTION, qtype: 1, qclass: 1 }), None)
    }

    #[test]
    fn names_point_at_the_longest_suffix_written_before_whatever_its_case() {
        let mut buf = Vec::new();
        let mut w = writer(&mut buf, 512);
        let ns = Record::from_rdata(name("LB.Example."), 60, RData::NS(NS(name("ns1.lb.example."))));
        record(&mut w, Section::Authority, Owner::Name(&name("LB.Example.")), 60, &ns).unwrap();
        w.finish(7, 0x8400, None);
        let record = &buf[12 + QUESTION.len() + 4..];
        // owner: a pointer to "lb" in the question (offset 12 + 4)
        assert_eq!(&record[..2], &[0xC0, 16]);
        // RDATA: "ns1", then a pointer to the same place
        assert_eq!(&record[10..12], &[0, 6]);
        assert_eq!(&record[12..], b"\x03ns1\xc0\x10");
    }

    #[test]
    fn a_full_message_reads_back_with_every_name_and_field() {
        let mut buf = Vec::new();
        let mut w = writer(&mut buf, 1232);
        let soa = SOA::new(name("ns1.lb.example."), name("hostmaster.lb.example."), 5, 3600, 600, 86400, 300);
        let records = [
            Record::from_rdata(name("www.lb.example."), 60, RData::MX(MX::new(10, name("mail.other.example.")))),
            Record::from_rdata(name("lb.example."), 300, RData::SOA(soa)),
            Record::from_rdata(name("mail.other.example."), 60, RData::A(A::new(127, 0, 0, 1))),
        ];
        let sections = [Section::Answer, Section::Authority, Section::Additional];
        for (r, section) in records.iter().zip(sections) {
            record(&mut w, section, Owner::Name(&r.name), r.ttl, r).unwrap();
        }
        w.finish(7, 0x8400, None);
        let message = Message::from_vec(&buf).unwrap();
        let back: Vec<&Record> =
            message.answers.iter().chain(&message.authorities).chain(&message.additionals).collect();
        assert_eq!(back, records.iter().collect::<Vec<_>>());
        // the A record's owner is a pointer to the MX's exchange
        assert_eq!(&buf[buf.len() - 16..buf.len() - 14], &[0xC0, (12 + QUESTION.len() + 4 + 14) as u8]);
    }

    #[test]
    fn a_record_that_does_not_fit_leaves_nothing_behind_to_point_at() {
        let mut buf = Vec::new();
        let long = name("a-rather-long-label-that-does-not-fit.other.example.");
        let mut w = writer(&mut buf, 12 + QUESTION.len() + 4 + 20);
        let ns = Record::from_rdata(name("lb.example."), 60, RData::NS(NS(long.clone())));
        assert!(record(&mut w, Section::Authority, Owner::Question, 60, &ns).is_err());
        let short = Record::from_rdata(name("lb.example."), 60, RData::NS(NS(name("other.example."))));
        record(&mut w, Section::Authority, Owner::Question, 60, &short).unwrap();
        w.finish(7, 0x8400, None);
        let message = Message::from_vec(&buf).unwrap();
        assert_eq!(message.authorities.len(), 1);
        assert_eq!(message.authorities[0].data, RData::NS(NS(name("other.example."))));
    }
}

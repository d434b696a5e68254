//! The zone index: per owner name, one block holding its RRsets in wire form; the
//! names that exist without records; the zone cuts. Every table is keyed by the name's
//! lower-cased wire form ([`NameTable`]).
//!
//! A node's block is a flags byte, then per RRset (in type order) its type, record
//! count and length (two bytes each), then its records as they go into an answer at
//! the query's name: a pointer to the question's name, type, class, TTL, RDLENGTH and
//! RDATA, the names in RDATA uncompressed. The fast path copies an RRset whole; the
//! general path reads the records and compresses the names.

use super::ZoneError;
use super::key::{NameKey, NameTable, wire_name_len};
use super::text::Entry;
use crate::dnssec::ZoneKeys;
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use std::path::Path;
use std::sync::Arc;

/// The node's name gets its records whole from this zone: above every cut, without a
/// CNAME, in no deeper zone.
pub(super) const ANSWERABLE: u8 = 1;

/// An RRset of one owner name and type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RRset<'z> {
    pub rtype: RecordType,
    count: u16,
    wire: &'z [u8],
}

/// One record of an RRset: the RDATA's names uncompressed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireRecord<'z> {
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata: &'z [u8],
}

impl<'z> RRset<'z> {
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records as they go into an answer at the query's name, and their count.
    pub fn precompiled(&self) -> (u16, &'z [u8]) {
        (self.count, self.wire)
    }

    pub fn records(&self) -> impl Iterator<Item = WireRecord<'z>> + Clone + use<'z> {
        wire_records(self.wire)
    }

    pub fn first(&self) -> Option<WireRecord<'z>> {
        self.records().next()
    }
}

/// The records of an RRset as a node block holds them (see the module's words).
pub(super) fn wire_records(wire: &[u8]) -> impl Iterator<Item = WireRecord<'_>> + Clone {
    let mut rest = wire;
    std::iter::from_fn(move || {
        let [_, _, t0, t1, c0, c1, l0, l1, l2, l3, r0, r1, tail @ ..] = rest else { return None };
        let (rdata, next) = tail.split_at(usize::from(u16::from_be_bytes([*r0, *r1])).min(tail.len()));
        rest = next;
        Some(WireRecord {
            rtype: u16::from_be_bytes([*t0, *t1]),
            class: u16::from_be_bytes([*c0, *c1]),
            ttl: u32::from_be_bytes([*l0, *l1, *l2, *l3]),
            rdata,
        })
    })
}

impl WireRecord<'_> {
    /// The name at the start of the RDATA (NS, CNAME, PTR).
    pub fn name(&self) -> Option<Name> {
        Name::from_bytes(self.rdata).ok()
    }
}

/// The RRsets of a node block: raw type, count, records.
fn entries(node: &[u8]) -> impl Iterator<Item = (u16, u16, &[u8])> {
    let mut rest = node.get(1..).unwrap_or_default();
    std::iter::from_fn(move || {
        let [t0, t1, c0, c1, l0, l1, tail @ ..] = rest else { return None };
        let (wire, next) = tail.split_at(usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len()));
        rest = next;
        Some((u16::from_be_bytes([*t0, *t1]), u16::from_be_bytes([*c0, *c1]), wire))
    })
}

fn sets(node: &[u8]) -> impl Iterator<Item = RRset<'_>> {
    entries(node).map(|(rtype, count, wire)| RRset { rtype: RecordType::from(rtype), count, wire })
}

/// The types answered whole by the fast path: their RDATA holds no names, so an RRset
/// reads the same wherever it lands in a message.
const PRECOMPILED_TYPES: [u16; 3] = [1, 28, 16];

/// The records of `rtype` (A, AAAA or TXT) at a node, as precompiled: only nodes
/// flagged [`ANSWERABLE`] have them.
#[inline]
pub(super) fn precompiled(node: &[u8], rtype: u16) -> Option<(u16, &[u8])> {
    let [flags, rest @ ..] = node else { return None };
    let mut rest = rest;
    if flags & ANSWERABLE == 0 {
        return None;
    }
    while let [t0, t1, c0, c1, l0, l1, tail @ ..] = rest {
        let (wire, next) = tail.split_at_checked(usize::from(u16::from_be_bytes([*l0, *l1])))?;
        if u16::from_be_bytes([*t0, *t1]) == rtype {
            return PRECOMPILED_TYPES.contains(&rtype).then_some((u16::from_be_bytes([*c0, *c1]), wire));
        }
        rest = next;
    }
    None
}

/// One static zone.
#[derive(Debug)]
pub struct Zone {
    origin: Name,
    /// The SOA's TTL lowered to MINIMUM, for negative answers (RFC 2308), and its RDATA.
    negative_soa: (u32, Box<[u8]>),
    /// Owner name → its block.
    nodes: NameTable<Box<[u8]>>,
    /// Names that exist without owning records: services and the ancestors of owners
    /// and services up to the origin (empty non-terminals).
    existing: NameTable<()>,
    /// Delegation points: names below the origin that own NS records.
    cuts: NameTable<()>,
    /// The keys that sign it, when it is signed.
    keys: Option<Arc<ZoneKeys>>,
}

/// What the zone says about one name and type.
#[derive(Debug, PartialEq)]
pub enum Lookup<'z> {
    /// Records of the asked type (for ANY: the one RRset chosen, RFC 8482);
    /// `wildcard` when synthesised, so the owner must be rewritten to the query name;
    /// `owner` is the owning node's name (lower-cased, wire form).
    Records {
        rrset: RRset<'z>,
        owner: &'z [u8],
        wildcard: bool,
    },
    /// The name owns a CNAME (to `target`) and another type was asked.
    Cname {
        record: WireRecord<'z>,
        target: Name,
        wildcard: bool,
    },
    /// The name exists without the type (RFC 8020), or is a service (the caller answers).
    NoData,
    NxDomain,
    /// The name is at or below the zone cut `cut` (`cut_key` its stored wire form): its
    /// NS, and the glue this zone holds for them, in-domain glue (names below the cut)
    /// first, then sibling glue (other names of this zone); RFC 9471 makes only the
    /// first `required` a must.
    Referral {
        cut: Name,
        cut_key: &'z [u8],
        ns: RRset<'z>,
        glue: Vec<(Name, WireRecord<'z>)>,
        required: usize,
    },
}

impl Zone {
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The keys that sign it (SPEC §8), when it is signed.
    pub fn keys(&self) -> Option<&Arc<ZoneKeys>> {
        self.keys.as_ref()
    }

    /// The SOA for negative answers, its TTL already min(SOA TTL, MINIMUM).
    pub fn negative_soa(&self) -> WireRecord<'_> {
        let (ttl, rdata) = &self.negative_soa;
        WireRecord { rtype: RecordType::SOA.into(), class: 1, ttl: *ttl, rdata }
    }

    /// The SOA's serial.
    pub fn serial(&self) -> u32 {
        let rdata = &self.negative_soa.1;
        // MNAME and RNAME, uncompressed, then the serial
        let names = wire_name_len(rdata).and_then(|m| Some(m + wire_name_len(&rdata[m..])?));
        names.and_then(|at| rdata.get(at..at + 4)).map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    /// All records at `name` of `rtype`, regardless of cuts (for glue and checks).
    pub fn rrset(&self, name: &Name, rtype: RecordType) -> Option<RRset<'_>> {
        sets(self.nodes.get(name)?).find(|s| s.rtype == rtype)
    }

    /// Every record with its owner (lower-cased wire form), in no order.
    #[cfg(test)]
    pub(super) fn all_records(&self) -> Vec<(&[u8], WireRecord<'_>)> {
        self.nodes
            .iter()
            .flat_map(|(key, node)| sets(node).flat_map(move |s| s.records().map(move |r| (key, r))))
            .collect()
    }

    pub(super) fn nodes(&self) -> &NameTable<Box<[u8]>> {
        &self.nodes
    }

    /// Sets each node's [`ANSWERABLE`] flag; `deeper` are the origins (lower-cased wire
    /// form) of the other zones below this one.
    pub(super) fn flag_answerable(&mut self, deeper: &[Box<[u8]>]) {
        let cname = u16::from(RecordType::CNAME);
        let (cuts, origin_len) = (&self.cuts, NameKey::of(&self.origin).as_bytes().len());
        for (key, node) in self.nodes.iter_mut() {
            let whole = !entries(node).any(|e| e.0 == cname)
                && cut_in(cuts, key, origin_len).is_none()
                && !deeper.iter().any(|d| suffixes(key).any(|s| s == &**d));
            node[0] = if whole { ANSWERABLE } else { 0 };
        }
    }

    /// Marks `names` (services of this zone) and their ancestors as existing, so that
    /// a query for another type gets NODATA, not NXDOMAIN.
    pub(crate) fn add_names(&mut self, names: &[Name]) {
        let origin_len = NameKey::of(&self.origin).as_bytes().len();
        for name in names {
            mark(&self.nodes, &mut self.existing, NameKey::of(name).as_bytes(), origin_len);
        }
    }

    /// Whether `name` exists: it owns records, is a service, or has either below it.
    fn exists(&self, name: &Name) -> bool {
        self.nodes.get(name).is_some() || self.existing.get(name).is_some()
    }

    /// The zone cut at or above `name`, if any: a name strictly between the origin and
    /// `name`, or `name` itself.
    pub fn cut_above(&self, name: &Name) -> Option<Name> {
        if self.cuts.is_empty() {
            return None;
        }
        let key = NameKey::of(name);
        let at = cut_in(&self.cuts, key.as_bytes(), NameKey::of(&self.origin).as_bytes().len())?;
        // the cut's labels, its root label not counted
        Some(name.trim_to(suffixes(&key.as_bytes()[at..]).count() - 1))
    }

    /// Looks `name` (inside this zone) up for `rtype`, following SPEC §5.1.
    pub fn lookup(&self, name: &Name, rtype: RecordType) -> Lookup<'_> {
        if let Some(cut) = self.cut_above(name) {
            // DS at the cut itself is answered from the parent side (this zone)
            if !(rtype == RecordType::DS && cut == *name) {
                return self.referral(cut);
            }
            return match self.node(name).and_then(|(owner, node)| Some((owner, sets(node).find(|s| s.rtype == rtype)?)))
            {
                Some((owner, rrset)) => Lookup::Records { rrset, owner, wildcard: false },
                None => Lookup::NoData,
            };
        }
        if let Some((owner, node)) = self.node(name) {
            return Self::select(owner, node, rtype, false);
        }
        if self.existing.get(name).is_some() {
            return Lookup::NoData;
        }
        self.wildcard(name, rtype)
    }

    fn node(&self, name: &Name) -> Option<(&[u8], &[u8])> {
        let key = NameKey::of(name);
        self.nodes.key_value_wire(key.as_bytes()).map(|(k, v)| (k, &**v))
    }

    /// RFC 4592: only the closest encloser's `*` child synthesises.
    fn wildcard(&self, name: &Name, rtype: RecordType) -> Lookup<'_> {
        match self.wildcard_node(name) {
            Some((owner, node)) => Self::select(owner, node, rtype, true),
            None => Lookup::NxDomain,
        }
    }

    /// The node of the closest encloser's `*` child of `name` (a name that does not
    /// exist), if there is one.
    fn wildcard_node(&self, name: &Name) -> Option<(&[u8], &[u8])> {
        let mut encloser = name.base_name();
        while !self.exists(&encloser) {
            if encloser.num_labels() <= self.origin.num_labels() {
                return None;
            }
            encloser = encloser.base_name();
        }
        self.node(&encloser.prepend_label("*").ok()?)
    }

    /// The types of the records that answer for `name`: its own, or the wildcard's that
    /// synthesises for it; none for a name that exists without records. What a
    /// compact denial's NSEC lists (SPEC §8).
    pub fn types_at(&self, name: &Name) -> Vec<u16> {
        let node = match self.node(name) {
            Some((_, node)) => Some(node),
            None if self.existing.get(name).is_some() => None,
            None => self.wildcard_node(name).map(|(_, node)| node),
        };
        node.map(|n| entries(n).map(|e| e.0).collect()).unwrap_or_default()
    }

    fn select<'z>(owner: &'z [u8], node: &'z [u8], rtype: RecordType, wildcard: bool) -> Lookup<'z> {
        if rtype != RecordType::CNAME
            && let Some(cname) = sets(node).find(|s| s.rtype == RecordType::CNAME)
            && let Some(record) = cname.first()
            && let Some(target) = record.name()
        {
            return Lookup::Cname { record, target, wildcard };
        }
        let found = if rtype == RecordType::ANY {
            // RFC 8482: one RRset, preferring the types a client most likely wants
            [RecordType::A, RecordType::AAAA, RecordType::MX]
                .iter()
                .find_map(|t| sets(node).find(|s| s.rtype == *t))
                .or_else(|| sets(node).next())
        } else {
            sets(node).find(|s| s.rtype == rtype)
        };
        match found {
            Some(rrset) => Lookup::Records { rrset, owner, wildcard },
            None => Lookup::NoData,
        }
    }

    fn referral(&self, cut: Name) -> Lookup<'_> {
        let (cut_key, node) = self.node(&cut).expect("a cut owns NS");
        let ns = sets(node).find(|s| s.rtype == RecordType::NS).expect("a cut owns NS");
        let (mut glue, mut sibling) = (Vec::new(), Vec::new());
        for target in ns.records().filter_map(|r| r.name()) {
            // glue only for names in this zone: below the cut, or siblings
            if !self.origin.zone_of(&target) {
                continue;
            }
            let to = if cut.zone_of(&target) { &mut glue } else { &mut sibling };
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = self.rrset(&target, rtype) {
                    to.extend(set.records().map(|r| (target.clone(), r)));
                }
            }
        }
        let required = glue.len();
        glue.append(&mut sibling);
        Lookup::Referral { cut, cut_key, ns, glue, required }
    }
}

/// The start in `key` of the topmost cut at or above it (strictly below the origin,
/// whose wire form is `origin_len` bytes long).
fn cut_in(cuts: &NameTable<()>, key: &[u8], origin_len: usize) -> Option<usize> {
    if cuts.is_empty() {
        return None;
    }
    let mut starts = [0u8; 128];
    let n = suffixes(key).filter(|s| s.len() > origin_len).fold(0, |n, s| {
        starts[n] = (key.len() - s.len()) as u8;
        n + 1
    });
    starts[..n].iter().rev().map(|&at| usize::from(at)).find(|&at| cuts.contains_wire(&key[at..]))
}

/// A name in wire form and each of its ancestors, the root last.
fn suffixes(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = Some(0usize);
    std::iter::from_fn(move || {
        let here = at?;
        let rest = wire.get(here..)?;
        let len = usize::from(*rest.first()?);
        at = (len > 0).then_some(here + 1 + len);
        Some(rest)
    })
}

/// Adds the name `key` and its ancestors down to the origin to `existing`, but for
/// those that own records; stops at one already there (its ancestors are too).
fn mark(nodes: &NameTable<Box<[u8]>>, existing: &mut NameTable<()>, key: &[u8], origin_len: usize) {
    for name in suffixes(key).filter(|s| s.len() >= origin_len) {
        if !nodes.contains_wire(name) && !existing.insert_new(name, ()) {
            break;
        }
    }
}

/// Builds a [`Zone`] from the records of its file, as they are read.
pub(super) struct Builder {
    origin: Name,
    /// Every record as read: the offset of its owner's next record ([`NONE`] for the
    /// last), type, class, TTL, line (4 bytes), RDLENGTH and RDATA. One arena, so that
    /// a name costs no allocation of its own until its block is built.
    records: Vec<u8>,
    /// Per owner: the offsets of its first and last record.
    owners: NameTable<Option<(u32, u32)>>,
    cuts: NameTable<()>,
    keys: Option<Arc<ZoneKeys>>,
}

/// The end of an owner's chain of records.
const NONE: u32 = u32::MAX;

const DNSSEC_TYPES: [RecordType; 5] =
    [RecordType::DNSKEY, RecordType::RRSIG, RecordType::NSEC, RecordType::NSEC3, RecordType::NSEC3PARAM];

impl Builder {
    pub fn new(origin: Name) -> Self {
        Builder { origin, records: Vec::new(), owners: NameTable::default(), cuts: NameTable::default(), keys: None }
    }

    /// Takes one record; an error says why it cannot be served.
    pub fn add(&mut self, entry: &Entry) -> Result<(), String> {
        if !self.origin.zone_of(entry.owner) {
            return Err(format!("lies outside the zone {}", self.origin));
        }
        if DNSSEC_TYPES.contains(&entry.rtype) {
            return Err(format!(
                "{} records cannot be in a zone file: steerdns signs a zone itself with its dnssec_keys",
                entry.rtype
            ));
        }
        if entry.rtype == RecordType::NS && *entry.owner != self.origin {
            self.cuts.insert(entry.owner, ());
        }
        self.push(entry)
    }

    fn push(&mut self, entry: &Entry) -> Result<(), String> {
        let rdlen = u16::try_from(entry.rdata.len()).map_err(|_| "the RDATA is over 65,535 bytes".to_string())?;
        let at = u32::try_from(self.records.len()).ok().filter(|&a| a != NONE).ok_or("the zone is over 4 GB")?;
        let chain = self.owners.get_or_default(entry.owner);
        match chain {
            Some((_, last)) => {
                let last = *last as usize;
                self.records[last..last + 4].copy_from_slice(&at.to_be_bytes());
                *chain = chain.map(|(first, _)| (first, at));
            }
            None => *chain = Some((at, at)),
        }
        let records = &mut self.records;
        records.extend_from_slice(&NONE.to_be_bytes());
        records.extend_from_slice(&u16::from(entry.rtype).to_be_bytes());
        records.extend_from_slice(&entry.class.to_be_bytes());
        records.extend_from_slice(&entry.ttl.to_be_bytes());
        records.extend_from_slice(&(entry.line as u32).to_be_bytes());
        records.extend_from_slice(&rdlen.to_be_bytes());
        records.extend_from_slice(entry.rdata);
        Ok(())
    }

    /// The TTL of the first SOA record at the origin, if any.
    fn soa_ttl(&self) -> Option<u32> {
        let mut at = self.owners.get(&self.origin).copied().flatten()?.0;
        while at != NONE {
            let r = &self.records[at as usize..];
            if u16::from_be_bytes([r[4], r[5]]) == u16::from(RecordType::SOA) {
                return Some(u32::from_be_bytes([r[8], r[9], r[10], r[11]]));
            }
            at = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
        }
        None
    }

    /// Signs the zone with `keys`: the apex gains their DNSKEY, CDS and CDNSKEY
    /// records, with the SOA's TTL (SPEC §8). Call after the file's last record.
    pub fn sign_with(&mut self, keys: Arc<ZoneKeys>) {
        if let Some(ttl) = self.soa_ttl() {
            let origin = self.origin.clone();
            for (rtype, rdata) in keys.apex_records() {
                let entry = Entry { line: 0, owner: &origin, class: 1, ttl, rtype, rdata: &rdata };
                // a key's RDATA is far below 65,535 bytes
                let _ = self.push(&entry);
            }
        }
        self.keys = Some(keys);
    }

    /// The zone, or why it cannot be served: CNAME rules, the apex's SOA and NS.
    pub fn finish(self, path: &Path) -> Result<Zone, Vec<ZoneError>> {
        let Builder { origin, records, owners, cuts, keys } = self;
        let mut errors = Vec::new();
        let mut scratch = Vec::new();
        let nodes = owners.filter_map(|key, chain| match node(&records, chain?.0, &mut scratch) {
            Ok(block) => Some(block),
            Err((line, message)) => {
                let owner = Name::from_bytes(key).map_or_else(|_| String::new(), |n| n.to_string());
                errors.push(ZoneError { file: path.to_path_buf(), line, column: 0, key: owner, message });
                None
            }
        });
        let apex = |rtype| NameTable::get(&nodes, &origin).and_then(|n| sets(n).find(|s| s.rtype == rtype));
        let zone_error = |message: String| ZoneError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: origin.to_string(),
            message,
        };
        let soa = apex(RecordType::SOA).and_then(|s| s.first().filter(|_| s.len() == 1));
        let soa = match soa {
            Some(soa) if soa.rdata.len() >= 4 => {
                let minimum = u32::from_be_bytes(soa.rdata[soa.rdata.len() - 4..].try_into().expect("4 bytes"));
                Some((soa.ttl.min(minimum), Box::from(soa.rdata)))
            }
            _ => {
                errors.push(zone_error("the zone needs one SOA record at its apex".into()));
                None
            }
        };
        if apex(RecordType::NS).is_none() {
            errors.push(zone_error("the zone needs an NS record at its apex".into()));
        }
        let Some(negative_soa) = soa.filter(|_| errors.is_empty()) else {
            errors.sort_by_key(|e| (e.file.clone(), e.line));
            return Err(errors);
        };
        let mut zone = Zone { origin, negative_soa, nodes, existing: NameTable::default(), cuts, keys };
        let origin_len = NameKey::of(&zone.origin).as_bytes().len();
        for (key, _) in zone.nodes.iter() {
            // an owner's parent first: the owner itself is in `nodes`
            // the origin exists: it owns the SOA
            if let Some(parent) = suffixes(key).nth(1).filter(|p| p.len() > origin_len) {
                mark(&zone.nodes, &mut zone.existing, parent, origin_len);
            }
        }
        zone.existing.shrink_to_fit();
        zone.nodes.shrink_to_fit();
        Ok(zone)
    }
}

/// A node's block from its chain of records in the arena (see [`Builder::records`])
/// starting at `first`: RRsets in type order, records in file order, duplicates
/// dropped (RFC 2181 §5); or the line and words of a CNAME that shares its name.
fn node(
    records: &[u8],
    first: u32,
    scratch: &mut Vec<(u16, usize, usize, usize)>,
) -> Result<Box<[u8]>, (usize, String)> {
    // (type, start of class, end of record, line)
    scratch.clear();
    let mut at = first;
    while at != NONE {
        let s = at as usize;
        let field = |from: usize, len: usize| {
            records[s + from..s + from + len].iter().fold(0u32, |v, b| v << 8 | u32::from(*b))
        };
        let end = s + 18 + field(16, 2) as usize;
        scratch.push((field(4, 2) as u16, s + 6, end, field(12, 4) as usize));
        at = field(0, 4);
    }
    scratch.sort_by_key(|r| r.0);
    // the same type, class and RDATA (from RDLENGTH on) as a record kept before
    let same = |a: &(u16, usize, usize, usize), b: &(u16, usize, usize, usize)| {
        a.0 == b.0 && records[a.1..a.1 + 2] == records[b.1..b.1 + 2] && records[a.1 + 10..a.2] == records[b.1 + 10..b.2]
    };
    let mut kept = 0;
    for i in 0..scratch.len() {
        let record = scratch[i];
        if !scratch[..kept].iter().rev().take_while(|k| k.0 == record.0).any(|k| same(k, &record)) {
            scratch[kept] = record;
            kept += 1;
        }
    }
    scratch.truncate(kept);
    let cname = u16::from(RecordType::CNAME);
    if let Some(c) = scratch.iter().find(|r| r.0 == cname) {
        if scratch.len() > 1 && scratch.iter().any(|r| r.0 != cname) {
            return Err((c.3, "a CNAME cannot share its owner name with other records".into()));
        }
        if scratch.len() > 1 {
            return Err((scratch[1].3, "a name can own only one CNAME".into()));
        }
    }
    let mut block = vec![0u8];
    for set in scratch.chunk_by(|a, b| a.0 == b.0) {
        let start = block.len();
        block.extend_from_slice(&set[0].0.to_be_bytes());
        block.extend_from_slice(&(set.len() as u16).to_be_bytes());
        block.extend_from_slice(&[0, 0]);
        for r in set {
            block.extend_from_slice(&[0xC0, 12]);
            block.extend_from_slice(&r.0.to_be_bytes());
            // class and TTL as read, then RDLENGTH and RDATA past the line
            block.extend_from_slice(&records[r.1..r.1 + 6]);
            block.extend_from_slice(&records[r.1 + 10..r.2]);
        }
        let len =
            u16::try_from(block.len() - start - 6).map_err(|_| (set[0].3, "the RRset is over 65,535 bytes".into()))?;
        block[start + 4..start + 6].copy_from_slice(&len.to_be_bytes());
    }
    Ok(block.into_boxed_slice())
}

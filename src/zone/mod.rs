//! Static zones: RFC 1035 files read with hickory's parser into steerdns's own index.
//!
//! [`Zone::lookup`] implements the existence rules of SPEC §5.1 (delegations, empty
//! non-terminals, wildcards, CNAME) in O(labels) hash lookups; negative answers never
//! scan the zone. `load` also checks the services against the zones they live in.

mod index;
mod key;
mod load;

pub use index::{Lookup, RRset, Zone};
pub use key::{NameKey, NameTable, wire_name_hash, wire_name_len};
pub use load::{ZoneError, load_zones, parse_zone};

use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// All configured zones; a name belongs to the zone with the longest matching origin.
#[derive(Debug, Default)]
pub struct Zones {
    zones: Vec<Zone>,
    /// Answers compiled to wire form once, when the zones load: per name, one block of
    /// entries, each its type, record count and length (two bytes each), then its
    /// records (one allocation per name).
    precompiled: NameTable<Box<[u8]>>,
}

/// An RRset in wire form as it goes into the answer section at the query name: each
/// record's owner a pointer to the question, then type, class, TTL, RDATA.
#[derive(Debug, Clone, Copy)]
pub struct Precompiled<'z> {
    pub count: u16,
    pub wire: &'z [u8],
}

/// The types answered from precompiled blocks: their RDATA holds no names, so a block
/// reads the same wherever it lands in a message.
const PRECOMPILED_TYPES: [RecordType; 3] = [RecordType::A, RecordType::AAAA, RecordType::TXT];

impl Zones {
    pub fn new(mut zones: Vec<Zone>) -> Self {
        // longest origin first, so the first match is the closest enclosing zone
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin().num_labels()));
        Zones { zones, precompiled: NameTable::default() }
    }

    /// Compiles the answers a query at a name owning them gets whole from this zone:
    /// A, AAAA and TXT RRsets of names in the zone that owns them, above every cut,
    /// without a CNAME.
    pub(crate) fn precompile(&mut self) {
        let mut precompiled = NameTable::default();
        for (i, zone) in self.zones.iter().enumerate() {
            for (name, sets) in zone.answerable() {
                if !self.find(name).is_some_and(|z| std::ptr::eq(z, &self.zones[i])) {
                    continue;
                }
                let mut entries = Vec::new();
                for set in sets.iter().filter(|s| PRECOMPILED_TYPES.contains(&s.rtype)) {
                    compile(set, &mut entries);
                }
                if !entries.is_empty() {
                    precompiled.insert(name, entries.into_boxed_slice());
                }
            }
        }
        precompiled.shrink_to_fit();
        self.precompiled = precompiled;
    }

    /// The precompiled answer for the name `wire` (in wire form, any letter case, with
    /// `hash` its [`wire_name_hash`]) and type `rtype`, if there is one.
    pub fn precompiled(&self, wire: &[u8], hash: u64, rtype: u16) -> Option<Precompiled<'_>> {
        let mut entries: &[u8] = self.precompiled.get_wire(wire, hash)?;
        while let [t0, t1, c0, c1, l0, l1, rest @ ..] = entries {
            let len = usize::from(u16::from_be_bytes([*l0, *l1]));
            let (block, next) = rest.split_at(len.min(rest.len()));
            if u16::from_be_bytes([*t0, *t1]) == rtype {
                return Some(Precompiled { count: u16::from_be_bytes([*c0, *c1]), wire: block });
            }
            entries = next;
        }
        None
    }

    /// The zone that holds `name`, if any.
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.zones.iter().find(|z| z.origin().zone_of(name))
    }

    fn find_mut(&mut self, name: &Name) -> Option<&mut Zone> {
        self.zones.iter_mut().find(|z| z.origin().zone_of(name))
    }
}

/// Appends `rrset`'s entry to `entries` (nothing when it does not encode, or its
/// count or length would not fit two bytes).
fn compile(rrset: &RRset, entries: &mut Vec<u8>) {
    let mut wire = Vec::new();
    for record in &rrset.records {
        wire.extend_from_slice(&[0xC0, 12]);
        wire.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
        wire.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
        wire.extend_from_slice(&record.ttl.to_be_bytes());
        let start = wire.len() + 2;
        wire.extend_from_slice(&[0, 0]);
        let mut enc = BinEncoder::with_offset(&mut wire, start as u32);
        enc.set_name_encoding(NameEncoding::Uncompressed);
        if record.data.emit(&mut enc).is_err() {
            return;
        }
        let Ok(len) = u16::try_from(wire.len() - start) else { return };
        wire[start - 2..start].copy_from_slice(&len.to_be_bytes());
    }
    let (Ok(count), Ok(len)) = (u16::try_from(rrset.records.len()), u16::try_from(wire.len())) else { return };
    entries.extend_from_slice(&u16::from(rrset.rtype).to_be_bytes());
    entries.extend_from_slice(&count.to_be_bytes());
    entries.extend_from_slice(&len.to_be_bytes());
    entries.extend_from_slice(&wire);
}

#[cfg(test)]
mod tests;

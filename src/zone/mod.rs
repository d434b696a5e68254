//! Static zones: RFC 1035 files read in one pass ([`text`]) into steerdns's own index
//! of wire-form RRsets.
//!
//! [`Zone::lookup`] implements the existence rules of SPEC §5.1 (delegations, empty
//! non-terminals, wildcards, CNAME) in O(labels) hash lookups; negative answers never
//! scan the zone. `load` also checks the services against the zones they live in.

mod index;
mod key;
mod load;
mod text;

pub use index::{Lookup, RRset, WireRecord, Zone};
pub use key::{NameKey, NameTable, wire_name_hash, wire_name_len};
pub use load::{ZoneError, check_service, load_zones, parse_signed_zone, parse_zone};

use hickory_proto::rr::Name;

/// All configured zones; a name belongs to the zone with the longest matching origin.
#[derive(Debug, Default)]
pub struct Zones {
    zones: Vec<Zone>,
}

/// An RRset in wire form as it goes into the answer section at the query name: each
/// record's owner a pointer to the question, then type, class, TTL, RDATA.
#[derive(Debug, Clone, Copy)]
pub struct Precompiled<'z> {
    pub count: u16,
    pub wire: &'z [u8],
    /// The keys of its zone, when the zone is signed.
    pub keys: Option<&'z std::sync::Arc<crate::dnssec::ZoneKeys>>,
}

impl<'z> Precompiled<'z> {
    pub fn records(&self) -> impl Iterator<Item = WireRecord<'z>> + Clone + use<'z> {
        index::wire_records(self.wire)
    }
}

impl Zones {
    /// The zones, each node flagged when a query at its name gets its records whole.
    pub fn new(mut zones: Vec<Zone>) -> Self {
        // longest origin first, so the first match is the closest enclosing zone
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin().num_labels()));
        let origins: Vec<(Name, Box<[u8]>)> =
            zones.iter().map(|z| (z.origin().clone(), NameKey::of(z.origin()).as_bytes().into())).collect();
        for zone in &mut zones {
            let deeper: Vec<Box<[u8]>> = origins
                .iter()
                .filter(|(o, _)| o != zone.origin() && zone.origin().zone_of(o))
                .map(|(_, key)| key.clone())
                .collect();
            zone.flag_answerable(&deeper);
        }
        Zones { zones }
    }

    /// The precompiled answer for the name `wire` (in wire form, any letter case, with
    /// `hash` its [`wire_name_hash`]) and type `rtype`, if there is one: an A, AAAA or
    /// TXT RRset that the name's zone answers whole.
    pub fn precompiled(&self, wire: &[u8], hash: u64, rtype: u16) -> Option<Precompiled<'_>> {
        // a name is answerable in its deepest zone only: the first zone holding it decides
        let (zone, node) = match &self.zones[..] {
            [zone] => (zone, zone.nodes().get_wire(wire, hash)?),
            zones => zones.iter().find_map(|z| Some((z, z.nodes().get_wire(wire, hash)?)))?,
        };
        let (count, wire) = index::precompiled(node, rtype)?;
        Some(Precompiled { count, wire, keys: zone.keys() })
    }

    /// Each zone with its SOA serial, for the start-up log: "lb.example. (serial 1), …".
    pub fn summary(&self) -> String {
        let zones: Vec<String> = self.zones.iter().map(|z| format!("{} (serial {})", z.origin(), z.serial())).collect();
        if zones.is_empty() { "none".into() } else { zones.join(", ") }
    }

    /// Whether any zone is signed.
    pub fn signed(&self) -> bool {
        self.zones.iter().any(|z| z.keys().is_some())
    }

    /// The zones, deepest origin first.
    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }

    /// The zone that holds `name`, if any.
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.zones.iter().find(|z| z.origin().zone_of(name))
    }

    fn find_mut(&mut self, name: &Name) -> Option<&mut Zone> {
        self.zones.iter_mut().find(|z| z.origin().zone_of(name))
    }
}

#[cfg(test)]
mod tests;

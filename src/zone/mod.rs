//! Static zones: RFC 1035 files read with hickory's parser into steerdns's own index.
//!
//! [`Zone::lookup`] implements the existence rules of SPEC §5.1 (delegations, empty
//! non-terminals, wildcards, CNAME) in O(labels) hash lookups; negative answers never
//! scan the zone. `load` also checks the services against the zones they live in.

mod index;
mod load;

pub use index::{Lookup, RRset, Zone};
pub use load::{ZoneError, load_zones, parse_zone};

use hickory_proto::rr::Name;

/// All configured zones; a name belongs to the zone with the longest matching origin.
#[derive(Debug, Default)]
pub struct Zones {
    zones: Vec<Zone>,
}

impl Zones {
    pub fn new(mut zones: Vec<Zone>) -> Self {
        // longest origin first, so the first match is the closest enclosing zone
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin().num_labels()));
        Zones { zones }
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

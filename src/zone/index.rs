//! The zone index: records by owner name, the names that exist, and the zone cuts.

use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

/// The records of one owner name and type.
#[derive(Debug, Clone, PartialEq)]
pub struct RRset {
    pub rtype: RecordType,
    pub records: Vec<Record>,
}

/// One static zone.
#[derive(Debug)]
pub struct Zone {
    origin: Name,
    /// The SOA with its TTL lowered to MINIMUM, ready for negative answers (RFC 2308).
    negative_soa: Record,
    /// Owner name → its RRsets (small: a name rarely has more than a few types).
    nodes: HashMap<Name, Vec<RRset>>,
    /// Names that exist without owning records: services and the ancestors of owners
    /// and services up to the origin (empty non-terminals); owners are `nodes`.
    existing: HashSet<Name>,
    /// Delegation points: names below the origin that own NS records.
    cuts: HashSet<Name>,
}

/// Adds `name` and its ancestors up to `origin` to `existing`, but for those that own
/// records; stops at one already there (its ancestors are too).
fn mark(nodes: &HashMap<Name, Vec<RRset>>, existing: &mut HashSet<Name>, origin: &Name, name: &Name) {
    let mut n = name.clone();
    while n.num_labels() >= origin.num_labels() {
        if !nodes.contains_key(&n) && !existing.insert(n.clone()) {
            break;
        }
        n = n.base_name();
    }
}

/// What the zone says about one name and type.
#[derive(Debug, PartialEq)]
pub enum Lookup<'z> {
    /// Records of the asked type (for ANY: the one RRset chosen, RFC 8482);
    /// `wildcard` when synthesised, so the owner must be rewritten to the query name.
    Records {
        rrset: &'z RRset,
        wildcard: bool,
    },
    /// The name owns a CNAME and another type was asked.
    Cname {
        record: &'z Record,
        wildcard: bool,
    },
    /// The name exists without the type (RFC 8020), or is a service (the caller answers).
    NoData,
    NxDomain,
    /// The name is at or below a zone cut: its NS, and the glue this zone holds for
    /// them, in-domain glue (names below the cut) first, then sibling glue (other
    /// names of this zone); RFC 9471 makes only the first `required` a must.
    Referral {
        ns: &'z RRset,
        glue: Vec<&'z Record>,
        required: usize,
    },
}

impl Zone {
    /// Builds the index. `records` must hold an SOA and NS at the origin (checked by load).
    pub(crate) fn new(origin: Name, records: Vec<Record>, services: &[Name]) -> Self {
        let mut nodes: HashMap<Name, Vec<RRset>> = HashMap::default();
        for record in records {
            let sets = nodes.entry(record.name.clone()).or_default();
            match sets.iter_mut().find(|s| s.rtype == record.record_type()) {
                Some(set) => set.records.push(record),
                None => sets.push(RRset { rtype: record.record_type(), records: vec![record] }),
            }
        }
        let soa = nodes[&origin].iter().find(|s| s.rtype == RecordType::SOA).expect("checked by load");
        let mut negative_soa = soa.records[0].clone();
        if let RData::SOA(s) = &negative_soa.data {
            negative_soa.ttl = negative_soa.ttl.min(s.minimum);
        }
        let cuts = nodes
            .iter()
            .filter(|(name, sets)| **name != origin && sets.iter().any(|s| s.rtype == RecordType::NS))
            .map(|(name, _)| name.clone())
            .collect();
        let mut existing = HashSet::default();
        for name in nodes.keys() {
            mark(&nodes, &mut existing, &origin, name);
        }
        let mut zone = Zone { origin, negative_soa, nodes, existing, cuts };
        zone.add_names(services);
        zone
    }

    /// Marks `names` (services of this zone) and their ancestors as existing, so that
    /// a query for another type gets NODATA, not NXDOMAIN.
    pub(crate) fn add_names(&mut self, names: &[Name]) {
        for name in names {
            mark(&self.nodes, &mut self.existing, &self.origin, name);
        }
    }

    /// Whether `name` exists: it owns records, is a service, or has either below it.
    fn exists(&self, name: &Name) -> bool {
        self.nodes.contains_key(name) || self.existing.contains(name)
    }

    /// The names whose records a query at them gets as they are: above every cut,
    /// without a CNAME.
    pub(super) fn answerable(&self) -> impl Iterator<Item = (&Name, &[RRset])> {
        self.nodes
            .iter()
            .filter(|(name, sets)| !sets.iter().any(|s| s.rtype == RecordType::CNAME) && self.cut_above(name).is_none())
            .map(|(name, sets)| (name, sets.as_slice()))
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA for negative answers, its TTL already min(SOA TTL, MINIMUM).
    pub fn negative_soa(&self) -> &Record {
        &self.negative_soa
    }

    /// All records at `name` of `rtype`, regardless of cuts (for glue and checks).
    pub fn rrset(&self, name: &Name, rtype: RecordType) -> Option<&RRset> {
        self.nodes.get(name)?.iter().find(|s| s.rtype == rtype)
    }

    /// The zone cut at or above `name`, if any: a name strictly between the origin and
    /// `name`, or `name` itself.
    pub fn cut_above(&self, name: &Name) -> Option<Name> {
        if self.cuts.is_empty() {
            return None;
        }
        let top = self.origin.num_labels() + 1;
        (top..=name.num_labels()).map(|n| name.trim_to(n as usize)).find(|n| self.cuts.contains(n))
    }

    /// Looks `name` (inside this zone) up for `rtype`, following SPEC §5.1.
    pub fn lookup(&self, name: &Name, rtype: RecordType) -> Lookup<'_> {
        if let Some(cut) = self.cut_above(name) {
            // DS at the cut itself is answered from the parent side (this zone)
            if !(rtype == RecordType::DS && cut == *name) {
                return self.referral(&cut);
            }
            return match self.rrset(name, RecordType::DS) {
                Some(rrset) => Lookup::Records { rrset, wildcard: false },
                None => Lookup::NoData,
            };
        }
        if let Some(sets) = self.nodes.get(name) {
            return Self::select(sets, rtype, false);
        }
        if self.existing.contains(name) {
            return Lookup::NoData;
        }
        self.wildcard(name, rtype)
    }

    /// RFC 4592: only the closest encloser's `*` child synthesises.
    fn wildcard(&self, name: &Name, rtype: RecordType) -> Lookup<'_> {
        let mut encloser = name.base_name();
        while !self.exists(&encloser) {
            if encloser.num_labels() <= self.origin.num_labels() {
                return Lookup::NxDomain;
            }
            encloser = encloser.base_name();
        }
        let Ok(star) = encloser.prepend_label("*") else { return Lookup::NxDomain };
        match self.nodes.get(&star) {
            Some(sets) => Self::select(sets, rtype, true),
            None => Lookup::NxDomain,
        }
    }

    fn select(sets: &[RRset], rtype: RecordType, wildcard: bool) -> Lookup<'_> {
        if let Some(cname) = sets.iter().find(|s| s.rtype == RecordType::CNAME)
            && rtype != RecordType::CNAME
        {
            return Lookup::Cname { record: &cname.records[0], wildcard };
        }
        let found = if rtype == RecordType::ANY {
            // RFC 8482: one RRset, preferring the types a client most likely wants
            [RecordType::A, RecordType::AAAA, RecordType::MX]
                .iter()
                .find_map(|t| sets.iter().find(|s| s.rtype == *t))
                .or_else(|| sets.first())
        } else {
            sets.iter().find(|s| s.rtype == rtype)
        };
        match found {
            Some(rrset) => Lookup::Records { rrset, wildcard },
            None => Lookup::NoData,
        }
    }

    fn referral(&self, cut: &Name) -> Lookup<'_> {
        let ns = self.rrset(cut, RecordType::NS).expect("a cut owns NS");
        let (mut glue, mut sibling) = (Vec::new(), Vec::new());
        for record in &ns.records {
            let RData::NS(target) = &record.data else { continue };
            // glue only for names in this zone: below the cut, or siblings
            if !self.origin.zone_of(&target.0) {
                continue;
            }
            let to = if cut.zone_of(&target.0) { &mut glue } else { &mut sibling };
            for rtype in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = self.rrset(&target.0, rtype) {
                    to.extend(set.records.iter());
                }
            }
        }
        let required = glue.len();
        glue.append(&mut sibling);
        Lookup::Referral { ns, glue, required }
    }
}

//! The regions' networks compiled into a binary trie that answers, in one walk, the
//! client's region and the largest block around the client that maps to one region
//! (the ECS scope). Networks may nest across regions: the longest prefix wins.

use std::net::IpAddr;

/// Region ids are indexes into the sorted region names.
pub type RegionId = u16;

/// One family's trie.
#[derive(Debug)]
pub struct Trie {
    nodes: Vec<Node>,
    bits: u8,
    /// For a large trie: the walk through the first `START_BITS` bits done ahead of
    /// time for every value of them (a tenth of the levels of a /24 saved per query).
    start: Option<Box<[Start]>>,
}

/// The trie's first levels, indexed by an address's top `START_BITS` bits.
const START_BITS: u8 = 16;

/// Tries of fewer nodes are walked from the root: their walks are short.
const START_FROM_NODES: usize = 1024;

/// Where the walk through the first `START_BITS` bits of an address ends.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// Above `START_BITS`: the answer for every address under these bits.
    Done(Found),
    /// At this node, at depth `START_BITS`, with the deciding network so far.
    At { node: u32, network_len: Option<u8> },
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Children by the next address bit; 0 means none (the root is never a child).
    child: [u32; 2],
    /// A configured network ends here, of this region.
    own: Option<RegionId>,
    /// The region of the longest configured network covering this block.
    label: Option<RegionId>,
    /// Every address in this block maps to `label`.
    uniform: bool,
}

/// Where an address falls: its region (None: no configured network covers it), the
/// deciding network's prefix length, and the ECS scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub region: Option<RegionId>,
    pub network_len: Option<u8>,
    pub scope: u8,
}

impl Trie {
    pub fn new(bits: u8) -> Trie {
        Trie { nodes: vec![Node::default()], bits, start: None }
    }

    /// Adds a network (address bits left-aligned in a u128) of `region`.
    pub fn insert(&mut self, address: u128, len: u8, region: RegionId) {
        let mut node = 0;
        for depth in 0..len {
            let bit = bit(address, depth);
            if self.nodes[node].child[bit] == 0 {
                self.nodes.push(Node::default());
                let index = (self.nodes.len() - 1) as u32;
                self.nodes[node].child[bit] = index;
            }
            node = self.nodes[node].child[bit] as usize;
        }
        self.nodes[node].own = Some(region);
    }

    /// Computes every node's label and uniformity; call once after the inserts.
    pub fn finish(&mut self) {
        self.finish_node(0, None);
        self.start = None;
        if self.nodes.len() >= START_FROM_NODES {
            let start = (0..1u128 << START_BITS)
                .map(|top| match self.walk(0, 0, top << (128 - START_BITS), None, START_BITS) {
                    Ok(found) => Start::Done(found),
                    Err((node, network_len)) => Start::At { node: node as u32, network_len },
                })
                .collect();
            self.start = Some(start);
        }
    }

    fn finish_node(&mut self, node: usize, inherited: Option<RegionId>) -> bool {
        let label = self.nodes[node].own.or(inherited);
        self.nodes[node].label = label;
        let mut uniform = true;
        for bit in 0..2 {
            let child = self.nodes[node].child[bit] as usize;
            if child != 0 {
                let child_uniform = self.finish_node(child, label);
                uniform &= child_uniform && self.nodes[child].label == label;
            }
        }
        self.nodes[node].uniform = uniform;
        uniform
    }

    /// The region of `address` and the largest uniform block around it.
    pub fn find(&self, address: u128) -> Found {
        let Some(start) = &self.start else { return self.walk_from_root(address) };
        match start[(address >> (128 - START_BITS)) as usize] {
            Start::Done(found) => found,
            Start::At { node, network_len } => {
                let walked = self.walk(node as usize, START_BITS, address << START_BITS, network_len, u8::MAX);
                walked.unwrap_or_else(|_| unreachable!("a walk without a stop depth ends with an answer"))
            }
        }
    }

    fn walk_from_root(&self, address: u128) -> Found {
        let walked = self.walk(0, 0, address, None, u8::MAX);
        walked.unwrap_or_else(|_| unreachable!("a walk without a stop depth ends with an answer"))
    }

    /// Walks from `node` at `depth`, `rest` the address's bits from `depth` on (the next
    /// one on top: a shift by one per level is cheaper than a variable 128-bit shift);
    /// stops at depth `stop` without an answer with the node reached there.
    fn walk(
        &self,
        mut node: usize,
        mut depth: u8,
        mut rest: u128,
        mut network_len: Option<u8>,
        stop: u8,
    ) -> Result<Found, (usize, Option<u8>)> {
        loop {
            if depth == stop {
                return Err((node, network_len));
            }
            let n = &self.nodes[node];
            if n.own.is_some() {
                network_len = Some(depth);
            }
            if n.uniform || depth == self.bits {
                return Ok(Found { region: n.label, network_len, scope: depth });
            }
            match n.child[(rest >> 127) as usize] {
                // the missing child's block holds no network: uniform with this label
                0 => return Ok(Found { region: n.label, network_len, scope: depth + 1 }),
                child => node = child as usize,
            }
            rest <<= 1;
            depth += 1;
        }
    }
}

fn bit(address: u128, depth: u8) -> usize {
    ((address >> (127 - depth)) & 1) as usize
}

/// An address's bits, left-aligned in a u128.
pub fn bits(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(networks: &[(&str, RegionId)]) -> Trie {
        let mut t = Trie::new(32);
        for (net, region) in networks {
            let net: ipnet::IpNet = net.parse().unwrap();
            t.insert(bits(net.addr()), net.prefix_len(), *region);
        }
        t.finish();
        t
    }

    fn find(t: &Trie, address: &str) -> (Option<RegionId>, Option<u8>, u8) {
        let f = t.find(bits(address.parse().unwrap()));
        (f.region, f.network_len, f.scope)
    }

    #[test]
    fn nested_networks_narrow_the_scope() {
        // us owns 10/8 but eu carves 10.1/16 out of it: a client in 10.2/16 gets /15
        let t = trie(&[("10.0.0.0/8", 0), ("10.1.0.0/16", 1)]);
        assert_eq!(find(&t, "10.2.3.4"), (Some(0), Some(8), 15));
        assert_eq!(find(&t, "10.1.3.4"), (Some(1), Some(16), 16));
        assert_eq!(find(&t, "10.128.0.1"), (Some(0), Some(8), 9));
        assert_eq!(find(&t, "10.0.0.1"), (Some(0), Some(8), 16), "10.0/16 is the sibling of 10.1/16");
    }

    #[test]
    fn outside_every_network_the_scope_is_the_largest_empty_block() {
        let t = trie(&[("10.1.0.0/16", 1)]);
        assert_eq!(find(&t, "192.0.2.1"), (None, None, 1));
        assert_eq!(find(&t, "10.0.0.1"), (None, None, 16));
        assert_eq!(find(&t, "10.2.0.1"), (None, None, 15));
        let empty = trie(&[]);
        assert_eq!(find(&empty, "10.0.0.1"), (None, None, 0));
    }

    #[test]
    fn the_same_region_nested_stays_one_block() {
        let t = trie(&[("10.0.0.0/8", 0), ("10.1.0.0/16", 0)]);
        assert_eq!(find(&t, "10.1.2.3"), (Some(0), Some(8), 8));
    }

    #[test]
    fn the_precomputed_first_levels_find_what_the_walk_from_the_root_finds() {
        // many networks of every length, nested, in a few regions: a large trie
        let mut random = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        let mask = |len: u8| !(u128::MAX.checked_shr(u32::from(len)).unwrap_or(0));
        for bits in [32, 128] {
            let mut t = Trie::new(bits);
            let mut networks: Vec<(u128, u8)> = Vec::new();
            for _ in 0..3000 {
                let len = (next() % u64::from(bits.min(40) + 1)) as u8;
                let random = u128::from(next()) << 64 | u128::from(next());
                // half of them nested in an earlier one, so walks cross the first levels
                // with a deciding network already found
                let address = match networks.get((next() % 2000) as usize) {
                    Some(&(outer, outer_len)) if outer_len < len => outer | (random & !mask(outer_len)),
                    _ => random,
                };
                networks.push((address & mask(len), len));
                t.insert(address & mask(len), len, (next() % 4) as u16);
            }
            t.finish();
            assert!(t.start.is_some(), "{} nodes", t.nodes.len());
            for i in 0..40_000 {
                let random = u128::from(next()) << 64 | u128::from(next());
                let (network, len) = networks[i % networks.len()];
                let address = if i % 2 == 0 { random } else { network | (random & !mask(len)) };
                assert_eq!(t.find(address), t.walk_from_root(address), "{address:#x}");
            }
        }
    }

    #[test]
    fn host_routes_and_ipv6() {
        let t = trie(&[("10.0.0.1/32", 2)]);
        assert_eq!(find(&t, "10.0.0.1"), (Some(2), Some(32), 32));
        assert_eq!(find(&t, "10.0.0.0"), (None, None, 32));
        let mut v6 = Trie::new(128);
        let net: ipnet::IpNet = "2001:db8:1::/48".parse().unwrap();
        v6.insert(bits(net.addr()), 48, 3);
        v6.finish();
        assert_eq!(v6.find(bits("2001:db8:1:2::1".parse().unwrap())).scope, 48);
        assert_eq!(v6.find(bits("2001:db8:2::1".parse().unwrap())).scope, 47);
    }
}

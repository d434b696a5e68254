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
        Trie { nodes: vec![Node::default()], bits }
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
        let (mut node, mut depth, mut network_len) = (0usize, 0u8, None);
        // the address's bits from `depth` on, the next one on top: a shift by one per
        // level is cheaper than a variable 128-bit shift
        let mut rest = address;
        loop {
            let n = &self.nodes[node];
            if n.own.is_some() {
                network_len = Some(depth);
            }
            if n.uniform || depth == self.bits {
                return Found { region: n.label, network_len, scope: depth };
            }
            match n.child[(rest >> 127) as usize] {
                // the missing child's block holds no network: uniform with this label
                0 => return Found { region: n.label, network_len, scope: depth + 1 },
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

//! Shared health (SPEC §10), pure: which nodes probe a key (rendezvous hashing over the
//! live members), and what their published verdicts add up to.

use crate::health::{Health, ProbeKey, Report, Reported};
use crate::store::SharedVerdict;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::time::{Duration, SystemTime};

/// What this node knows of the others, from the store.
#[derive(Debug)]
pub struct Shared {
    /// This node's identity.
    pub me: String,
    /// `[health] probers_per_target` (0: every live node).
    pub probers_per_target: usize,
    /// Members, and when this node last heard their heartbeat (its own clock, so the
    /// nodes' clocks need not agree).
    pub members: BTreeMap<String, SystemTime>,
    /// Each key's verdicts, by the node that published them.
    pub verdicts: HashMap<ProbeKey, BTreeMap<String, SharedVerdict>>,
    /// What this node last published (or is publishing) per key.
    pub published: HashMap<ProbeKey, SharedVerdict>,
    /// Keys whose verdict waits to be published, and the writes in flight.
    pub pending: std::collections::BTreeSet<ProbeKey>,
    pub in_flight: usize,
    /// Verdicts ignored: unreadable, or from nodes that are not members.
    pub ignored: u64,
}

impl Shared {
    pub fn new(me: String, probers_per_target: usize) -> Shared {
        Shared {
            me,
            probers_per_target,
            members: BTreeMap::new(),
            verdicts: HashMap::new(),
            published: HashMap::new(),
            pending: Default::default(),
            in_flight: 0,
            ignored: 0,
        }
    }

    /// Whether this node takes part: it has seen its own membership.
    pub fn joined(&self) -> bool {
        self.members.contains_key(&self.me)
    }

    /// The members heard from within 2 × `interval` of `now`.
    fn live(&self, interval: Duration, now: SystemTime) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(move |(_, heard)| now.duration_since(**heard).unwrap_or_default() <= 2 * interval)
            .map(|(id, _)| id.as_str())
    }

    /// The k = min(probers_per_target, live members) nodes that probe `key`, best
    /// ranked first.
    pub fn ranked(&self, key: &ProbeKey, interval: Duration, now: SystemTime) -> Vec<&str> {
        let mut live: Vec<(u64, &str)> = self.live(interval, now).map(|id| (rank(id, key), id)).collect();
        live.sort_unstable_by(|a, b| b.cmp(a));
        let k = if self.probers_per_target == 0 { live.len() } else { self.probers_per_target.min(live.len()) };
        live.into_iter().take(k).map(|(_, id)| id).collect()
    }

    /// What `ranked` have published of `key`, combined; None when none of them has
    /// published (the node then uses its own probe).
    pub fn combined(&self, key: &ProbeKey, ranked: &[&str]) -> Option<(Health, Option<Report>)> {
        let published = self.verdicts.get(key)?;
        let verdicts: Vec<&SharedVerdict> = ranked.iter().filter_map(|node| published.get(*node)).collect();
        (!verdicts.is_empty()).then(|| combine(ranked.len(), &verdicts))
    }

    /// Whether `ranked` disagree on whether `key` is down.
    pub fn disagree(&self, key: &ProbeKey, ranked: &[&str]) -> bool {
        let Some(published) = self.verdicts.get(key) else { return false };
        let downs = ranked.iter().filter(|node| published.get(**node).is_some_and(|v| v.down)).count();
        downs > 0 && downs < ranked.len()
    }
}

/// A node's rendezvous rank for a key: SipHash-1-3 with a zero key, so every node
/// ranks alike.
pub fn rank(node: &str, key: &ProbeKey) -> u64 {
    let mut h = siphasher::sip::SipHasher13::new();
    h.write(node.as_bytes());
    h.write_u8(0);
    h.write(key.check.as_bytes());
    h.write_u8(0);
    match key.address {
        std::net::IpAddr::V4(a) => h.write(&a.octets()),
        std::net::IpAddr::V6(a) => h.write(&a.octets()),
    }
    h.finish()
}

/// SPEC §10: down when ⌊k/2⌋ + 1 of the k ranked probers published down (a missing
/// verdict counts as up); reports as the median percentage, drain on a majority.
pub fn combine(k: usize, verdicts: &[&SharedVerdict]) -> (Health, Option<Report>) {
    let majority = k / 2 + 1;
    let down = verdicts.iter().filter(|v| v.down).count() >= majority;
    let mut percents: Vec<u8> = verdicts.iter().filter_map(|v| v.percent).collect();
    let report = (!percents.is_empty()).then(|| {
        percents.sort_unstable();
        let middle = percents.len() / 2;
        let percent = if percents.len() % 2 == 1 {
            percents[middle]
        } else {
            ((u16::from(percents[middle - 1]) + u16::from(percents[middle])) / 2) as u8
        };
        let drain = verdicts.iter().filter(|v| v.drain).count() >= majority || percent == 0;
        Report { percent, state: if drain { Reported::Drain } else { Reported::Up } }
    });
    (if down { Health::Down } else { Health::Up }, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(down: bool, percent: Option<u8>, drain: bool) -> SharedVerdict {
        SharedVerdict { down, percent, drain, at: 0.0 }
    }

    #[test]
    fn down_takes_a_majority_of_the_ranked_and_missing_counts_as_up() {
        let (up, down) = (v(false, None, false), v(true, None, false));
        assert_eq!(combine(3, &[&down, &down]).0, Health::Down);
        assert_eq!(combine(3, &[&down, &up, &up]).0, Health::Up);
        assert_eq!(combine(3, &[&down]).0, Health::Up, "two of three have not said: up");
        assert_eq!(combine(2, &[&down, &up]).0, Health::Up, "⌊2/2⌋ + 1 = 2");
        assert_eq!(combine(2, &[&down, &down]).0, Health::Down);
        assert_eq!(combine(1, &[&down]).0, Health::Down);
    }

    #[test]
    fn reports_combine_as_the_median_and_drain_on_a_majority() {
        let r = |percents: &[(u8, bool)]| {
            let vs: Vec<SharedVerdict> = percents.iter().map(|(p, d)| v(false, Some(*p), *d)).collect();
            combine(vs.len(), &vs.iter().collect::<Vec<_>>()).1.unwrap()
        };
        assert_eq!(r(&[(10, false), (90, false), (50, false)]).percent, 50);
        assert_eq!(r(&[(10, false), (50, false)]).percent, 30);
        assert_eq!(r(&[(100, true), (100, false), (100, true)]).state, Reported::Drain);
        assert_eq!(r(&[(100, true), (100, false), (100, false)]).state, Reported::Up);
        assert_eq!(combine(2, &[&v(false, None, false)]).1, None, "no report");
    }

    #[test]
    fn ranking_is_stable_takes_k_live_nodes_and_moves_only_a_leaving_nodes_keys() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut s = Shared::new("a".into(), 2);
        for node in ["a", "b", "c", "d"] {
            s.members.insert(node.into(), now);
        }
        let keys: Vec<ProbeKey> = (1..=200)
            .map(|i| ProbeKey {
                check: "web".into(),
                address: format!("127.0.{}.{}", i / 100, i % 100).parse().unwrap(),
            })
            .collect();
        let second = Duration::from_secs(1);
        let before: Vec<Vec<String>> =
            keys.iter().map(|k| s.ranked(k, second, now).iter().map(|n| n.to_string()).collect()).collect();
        assert!(before.iter().all(|r| r.len() == 2));
        let per_node = |node: &str| before.iter().filter(|r| r.iter().any(|n| n == node)).count();
        assert!(["a", "b", "c", "d"].iter().all(|n| (60..=140).contains(&per_node(n))), "spread over the nodes");
        // d's heartbeat is older than 2 × interval: absent
        s.members.insert("d".into(), now - 3 * second);
        for (key, was) in keys.iter().zip(&before) {
            let now_ranked: Vec<&str> = s.ranked(key, second, now);
            if !was.iter().any(|n| n == "d") {
                assert_eq!(now_ranked, was.iter().map(String::as_str).collect::<Vec<_>>(), "only d's keys move");
            } else {
                assert!(!now_ranked.contains(&"d") && now_ranked.len() == 2);
            }
        }
        s.probers_per_target = 0;
        assert_eq!(s.ranked(&keys[0], second, now).len(), 3, "0: every live node");
    }
}

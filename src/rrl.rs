//! Response rate limiting (SPEC §7, the design of BIND, Knot and NSD): UDP replies are
//! counted in token buckets keyed by the client's prefix, the class and the name the
//! reply is imputed to; past a bucket's tokens a reply is dropped, except every
//! `slip`-th, which goes out truncated so that a real client retries over TCP.
//!
//! One [`Limiter`] serves every UDP worker: a bounded table of `table_size` buckets,
//! split into small sets (four buckets each) behind their own lock, so two workers
//! meet only when their replies hash to the same set; a full set gives up its least
//! recently used bucket. Time is an argument. The table's hash is keyed with a secret
//! chosen at start, so nobody can aim replies at another client's bucket.

use crate::config::RrlConfig;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;

/// Buckets per set.
const WAYS: usize = 4;
/// Counted per ECS subnet, at most this many buckets per client prefix.
const ECS_BUCKETS: u64 = 10;
/// Token amounts are in thousandths of a reply.
const MILLI: u64 = 1000;

/// What a reply is counted as: with [`Key::name`], the bucket's name part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Records for the qname and qtype (the wildcard's owner when synthesised).
    Answer,
    /// An existing name without the asked type: the qname and qtype.
    NoData,
    /// NXDOMAIN: the zone.
    NxDomain,
    /// A referral: the cut.
    Referral,
    /// Any error RCODE: the zone (or no name, outside every zone).
    Error,
}

/// A reply as RRL sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub kind: Kind,
    /// [`wire_name_hash`] of the imputed name.
    pub name: u64,
    /// For [`Kind::Answer`] and [`Kind::NoData`]; 0 for the others.
    pub qtype: u16,
    pub class: u16,
    /// The query's ECS address when the answer's scope is above 0.
    pub ecs: Option<IpAddr>,
}

pub use crate::zone::wire_name_hash;

/// [`wire_name_hash`] of a name given as its labels.
pub fn name_hash<'a>(labels: impl Iterator<Item = &'a [u8]>) -> u64 {
    let mut wire = [0u8; 256];
    let mut len = 0;
    for label in labels {
        let end = (len + 1 + label.len()).min(255);
        wire[len] = label.len() as u8;
        wire[len + 1..end].copy_from_slice(&label[..end - len - 1]);
        len = end;
    }
    wire_name_hash(&wire[..=len.min(255)])
}

/// What becomes of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    Drop,
    /// Send TC=1 with the question and the OPT and no records.
    Slip,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// 0: empty.
    key: u64,
    /// Thousandths of a reply.
    tokens: u64,
    /// When the last reply was counted, in [`clock_ms`] milliseconds.
    last: u64,
    /// Replies limited so far, for `slip`.
    limited: u32,
}

/// The limiter of one `[server.rrl]` config.
#[derive(Debug)]
pub struct Limiter {
    config: RrlConfig,
    sets: Box<[Mutex<[Bucket; WAYS]>]>,
    secret: [u64; 4],
    /// Thousandths of a reply a bucket holds: `responses_per_second` × `window`.
    capacity: u64,
}

impl Limiter {
    /// An empty table; `secret` keys its hash.
    pub fn new(config: RrlConfig, secret: [u64; 4]) -> Limiter {
        let sets = config.table_size.div_ceil(WAYS).max(1);
        let window = u64::try_from(config.window.as_millis()).unwrap_or(u64::MAX);
        let capacity = (u64::from(config.responses_per_second) * MILLI).saturating_mul(window) / 1000;
        let sets = (0..sets).map(|_| Mutex::new([Bucket::default(); WAYS])).collect();
        Limiter { sets, config, secret, capacity }
    }

    /// Counts one UDP reply to `client` at `now` ([`clock_ms`]).
    pub fn check(&self, client: IpAddr, key: &Key, now: u64) -> Verdict {
        if self.config.exempt.iter().any(|n| n.contains(&client)) {
            return Verdict::Send;
        }
        let hash = self.bucket_hash(client, key);
        let (rate, capacity) = (u64::from(self.config.responses_per_second), self.capacity);
        let set = &self.sets[(hash % self.sets.len() as u64) as usize];
        // a poisoned set only means another worker panicked mid-update: the counts stay usable
        let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match set.iter().position(|b| b.key == hash) {
            Some(i) => &mut set[i],
            None => {
                let oldest = set.iter().enumerate().min_by_key(|(_, b)| (b.key != 0, b.last)).map_or(0, |(i, _)| i);
                set[oldest] = Bucket { key: hash, tokens: capacity, last: now, limited: 0 };
                &mut set[oldest]
            }
        };
        // tokens flow in at `rate` per second, up to the capacity
        let elapsed = now.saturating_sub(bucket.last);
        bucket.tokens = bucket.tokens.saturating_add(elapsed.saturating_mul(rate)).min(capacity);
        bucket.last = now;
        if bucket.tokens >= MILLI {
            bucket.tokens -= MILLI;
            return Verdict::Send;
        }
        bucket.limited = bucket.limited.wrapping_add(1);
        let slip = self.config.slip;
        if slip > 0 && bucket.limited % slip == 0 { Verdict::Slip } else { Verdict::Drop }
    }

    /// The bucket's hash (never 0): client prefix, class, kind, name, qtype and, for
    /// answers with an ECS scope, one of ten slots per prefix for the ECS subnet.
    ///
    /// Folded 128-bit multiplies under the secret (wyhash's mixing): nobody outside
    /// sees a hash, and what a collision could buy, a bucket that starts full again, an
    /// attacker already has by asking for more names, so SipHash's strength is not
    /// worth its cost on every reply.
    fn bucket_hash(&self, client: IpAddr, key: &Key) -> u64 {
        let [k0, k1, k2, k3] = self.secret;
        let slot = key.ecs.map_or(0, |ecs| {
            let ecs = u128::from_be_bytes(self.prefix(ecs));
            1 + fold(fold((ecs >> 64) as u64 ^ k3, ecs as u64 ^ k2), k1) % ECS_BUCKETS
        });
        let fields = u64::from(key.qtype) | u64::from(key.class) << 16 | (key.kind as u64) << 32 | slot << 40;
        let prefix = u128::from_be_bytes(self.prefix(client)) ^ u128::from(client.is_ipv6());
        let mixed = fold((prefix >> 64) as u64 ^ k0, prefix as u64 ^ k1);
        fold(mixed ^ key.name ^ k2, fields ^ k3).max(1)
    }

    /// The address's prefix bits (IPv4 in the first four bytes), the rest zero.
    fn prefix(&self, address: IpAddr) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        match address {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & (u32::MAX.checked_shl(32 - u32::from(self.config.ipv4_prefix)).unwrap_or(0));
                bytes[..4].copy_from_slice(&bits.to_be_bytes());
            }
            IpAddr::V6(a) => {
                let shift = 128 - u32::from(self.config.ipv6_prefix);
                let bits = u128::from(a) & u128::MAX.checked_shl(shift).unwrap_or(0);
                bytes.copy_from_slice(&bits.to_be_bytes());
            }
        }
        bytes
    }
}
/// Milliseconds on the system's monotonic clock, coarse (a few ms; no system call):
/// RRL's time, read once per batch of queries.
pub fn clock_ms() -> u64 {
    // it cannot fail on Linux; were it to, time would stand still and buckets not refill
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .map_or(0, |now| (now.tv_sec() as u64) * 1000 + (now.tv_nsec() as u64) / 1_000_000)
}

/// The two halves of a 128-bit product, folded.
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ (product >> 64) as u64
}

/// A limiter for `config`: `previous` itself (its counts kept) when its config is the
/// same, else a new one with a fresh secret.
pub fn for_config(config: Option<&RrlConfig>, previous: Option<&Arc<Limiter>>) -> Option<Arc<Limiter>> {
    let config = config?;
    if let Some(p) = previous.filter(|p| p.config == *config) {
        return Some(p.clone());
    }
    let mut secret = [0u8; 32];
    // without the OS's randomness the table still limits; only its hash is guessable
    let _ = getrandom::fill(&mut secret);
    let word = |i: usize| u64::from_le_bytes(secret[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    Some(Arc::new(Limiter::new(config.clone(), [word(0), word(1), word(2), word(3)])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(rate: u32, slip: u32) -> RrlConfig {
        RrlConfig {
            responses_per_second: rate,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec!["192.0.2.128/25".parse().unwrap()],
            table_size: 1000,
            window: Duration::from_secs(2),
        }
    }

    fn key(name: &str) -> Key {
        Key { kind: Kind::Answer, name: name_hash(name.split('.').map(str::as_bytes)), qtype: 1, class: 1, ecs: None }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Sends `n` replies at `at`, returning (sent, dropped, slipped).
    fn burst(limiter: &Limiter, client: &str, key: &Key, n: usize, at: u64) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for _ in 0..n {
            match limiter.check(ip(client), key, at) {
                Verdict::Send => counts.0 += 1,
                Verdict::Drop => counts.1 += 1,
                Verdict::Slip => counts.2 += 1,
            }
        }
        counts
    }

    #[test]
    fn a_bucket_holds_rate_times_window_and_refills_at_rate() {
        let t0 = 1_000_000;
        let limiter = Limiter::new(config(10, 2), [1, 2, 3, 4]);
        let www = key("www.example");
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 30, t0), (20, 5, 5), "20 = 10/s × 2 s; every 2nd limited slips");
        // half a second refills five replies
        let later = t0 + 500;
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 10, later).0, 5);
        // an idle bucket refills to its capacity and no further
        let much_later = t0 + 60_000;
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 30, much_later).0, 20);
    }

    #[test]
    fn buckets_are_per_prefix_and_name_and_case_blind() {
        let t0 = 1_000_000;
        let limiter = Limiter::new(config(1, 0), [1, 2, 3, 4]);
        let www = key("www.example");
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 5, t0), (2, 3, 0), "slip 0 drops every limited reply");
        assert_eq!(burst(&limiter, "192.0.2.77", &www, 1, t0), (0, 1, 0), "same /24, same bucket");
        assert_eq!(burst(&limiter, "198.51.100.1", &www, 1, t0), (1, 0, 0), "another /24");
        assert_eq!(burst(&limiter, "192.0.2.1", &key("mail.example"), 1, t0), (1, 0, 0), "another name");
        assert_eq!(burst(&limiter, "192.0.2.1", &key("WWW.Example"), 1, t0), (0, 1, 0), "case does not matter");
        let nx = Key { kind: Kind::NxDomain, ..www };
        assert_eq!(burst(&limiter, "192.0.2.1", &nx, 1, t0), (1, 0, 0), "another kind");
        assert_eq!(burst(&limiter, "192.0.2.200", &www, 10, t0), (10, 0, 0), "exempt network");
        let v6 = Limiter::new(config(1, 0), [1, 2, 3, 4]);
        assert_eq!(burst(&v6, "2001:db8:0:1::1", &www, 3, t0).0, 2);
        assert_eq!(burst(&v6, "2001:db8:0:2::1", &www, 3, t0).0, 0, "same /56");
        assert_eq!(burst(&v6, "2001:db8:0:100::1", &www, 3, t0).0, 2, "another /56");
    }

    #[test]
    fn a_name_hashes_alike_from_its_labels_and_its_wire_form_in_any_case() {
        let labels = name_hash(["www", "example"].iter().map(|l| l.as_bytes()));
        assert_eq!(labels, wire_name_hash(b"\x03WWW\x07Example\x00"));
        assert_ne!(labels, wire_name_hash(b"\x03www\x08examples\x00"));
        assert_eq!(name_hash(std::iter::empty()), wire_name_hash(&[0]), "the root");
    }

    #[test]
    fn ecs_subnets_get_at_most_ten_buckets_per_prefix() {
        let t0 = 1_000_000;
        let limiter = Limiter::new(config(1, 0), [1, 2, 3, 4]);
        let mut sent = 0;
        for i in 0..=255u8 {
            let ecs = Key { ecs: Some(IpAddr::from([10, 0, i, 1])), ..key("www.example") };
            sent += burst(&limiter, "192.0.2.1", &ecs, 2, t0).0;
        }
        // 256 ECS subnets from one prefix share at most ten buckets of two replies each
        assert!((2..=20).contains(&sent), "{sent} replies went out");
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_least_recently_used() {
        let t0 = 1_000_000;
        let limiter = Limiter::new(config(1, 0), [1, 2, 3, 4]);
        let www = key("www.example");
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 3, t0).0, 2);
        // 100,000 other prefixes pass through a 1,000-bucket table
        for i in 0..100_000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + (i << 8)));
            limiter.check(client, &www, t0 + 1);
        }
        assert_eq!(limiter.sets.len(), 250);
        // the first bucket was evicted, so it starts full again
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 3, t0 + 2).0, 2);
    }

    #[test]
    fn a_reload_keeps_the_limiter_unless_its_config_changed() {
        let first = for_config(Some(&config(10, 2)), None).unwrap();
        let same = for_config(Some(&config(10, 2)), Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        let other = for_config(Some(&config(20, 2)), Some(&first)).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert!(for_config(None, Some(&first)).is_none());
    }
}

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
use ipnet::IpNet;
use siphasher::sip::SipHasher13;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets per set.
const WAYS: usize = 4;
/// Counted per ECS subnet, at most this many buckets per client prefix.
const ECS_BUCKETS: u64 = 10;
/// Token amounts are in thousandths of a reply.
const MILLI: u64 = 1000;

/// What a reply is counted as: with [`Key::name`], the bucket's name part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// [`name_hash`] of the imputed name.
    pub name: u64,
    /// For [`Kind::Answer`] and [`Kind::NoData`]; 0 for the others.
    pub qtype: u16,
    pub class: u16,
    /// The query's ECS address when the answer's scope is above 0.
    pub ecs: Option<IpAddr>,
}

/// A hash of a name's labels, lower-cased: names that differ in case share a bucket.
pub fn name_hash<'a>(labels: impl Iterator<Item = &'a [u8]>) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    for label in labels {
        hasher.write_u8(label.len() as u8);
        for byte in label {
            hasher.write_u8(byte.to_ascii_lowercase());
        }
    }
    hasher.finish()
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
    /// Milliseconds since the limiter's epoch, of the last reply counted.
    last: u64,
    /// Replies limited so far, for `slip`.
    limited: u32,
}

/// The limiter of one `[server.rrl]` config.
#[derive(Debug)]
pub struct Limiter {
    config: RrlConfig,
    sets: Box<[Mutex<[Bucket; WAYS]>]>,
    secret: (u64, u64),
    epoch: Instant,
}

impl Limiter {
    /// An empty table; `secret` keys its hash, `epoch` is when its clock starts.
    pub fn new(config: RrlConfig, secret: (u64, u64), epoch: Instant) -> Limiter {
        let sets = config.table_size.div_ceil(WAYS).max(1);
        Limiter { sets: (0..sets).map(|_| Mutex::new([Bucket::default(); WAYS])).collect(), config, secret, epoch }
    }

    pub fn config(&self) -> &RrlConfig {
        &self.config
    }

    /// Counts one UDP reply to `client` at `now`.
    pub fn check(&self, client: IpAddr, key: &Key, now: Instant) -> Verdict {
        if self.config.exempt.iter().any(|n| n.contains(&client)) {
            return Verdict::Send;
        }
        let hash = self.bucket_hash(client, key);
        let now = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let rate = u64::from(self.config.responses_per_second);
        let capacity = (rate * MILLI).saturating_mul(self.config.window.as_millis() as u64) / 1000;
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
    fn bucket_hash(&self, client: IpAddr, key: &Key) -> u64 {
        let mut hasher = SipHasher13::new_with_keys(self.secret.0, self.secret.1);
        self.prefix(client).hash(&mut hasher);
        (key.kind, key.name, key.qtype, key.class).hash(&mut hasher);
        if let Some(ecs) = key.ecs {
            let mut slot = SipHasher13::new_with_keys(self.secret.1, self.secret.0);
            self.prefix(ecs).hash(&mut slot);
            (1 + slot.finish() % ECS_BUCKETS).hash(&mut hasher);
        }
        hasher.finish().max(1)
    }

    fn prefix(&self, address: IpAddr) -> IpNet {
        let length = match address {
            IpAddr::V4(_) => self.config.ipv4_prefix,
            IpAddr::V6(_) => self.config.ipv6_prefix,
        };
        IpNet::new(address, length).map_or(IpNet::from(address), |n| n.trunc())
    }
}

/// A limiter for `config`: `previous` itself (its counts kept) when its config is the
/// same, else a new one with a fresh secret.
pub fn for_config(config: Option<&RrlConfig>, previous: Option<&Arc<Limiter>>) -> Option<Arc<Limiter>> {
    let config = config?;
    if let Some(p) = previous.filter(|p| p.config == *config) {
        return Some(p.clone());
    }
    let mut secret = [0u8; 16];
    // without the OS's randomness the table still limits; only its hash is guessable
    let _ = getrandom::fill(&mut secret);
    let half = |i: usize| u64::from_le_bytes(secret[i..i + 8].try_into().expect("8 bytes"));
    Some(Arc::new(Limiter::new(config.clone(), (half(0), half(8)), Instant::now())))
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
    fn burst(limiter: &Limiter, client: &str, key: &Key, n: usize, at: Instant) -> (usize, usize, usize) {
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
        let t0 = Instant::now();
        let limiter = Limiter::new(config(10, 2), (1, 2), t0);
        let www = key("www.example");
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 30, t0), (20, 5, 5), "20 = 10/s × 2 s; every 2nd limited slips");
        // half a second refills five replies
        let later = t0 + Duration::from_millis(500);
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 10, later).0, 5);
        // an idle bucket refills to its capacity and no further
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 30, much_later).0, 20);
    }

    #[test]
    fn buckets_are_per_prefix_and_name_and_case_blind() {
        let t0 = Instant::now();
        let limiter = Limiter::new(config(1, 0), (1, 2), t0);
        let www = key("www.example");
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 5, t0), (2, 3, 0), "slip 0 drops every limited reply");
        assert_eq!(burst(&limiter, "192.0.2.77", &www, 1, t0), (0, 1, 0), "same /24, same bucket");
        assert_eq!(burst(&limiter, "198.51.100.1", &www, 1, t0), (1, 0, 0), "another /24");
        assert_eq!(burst(&limiter, "192.0.2.1", &key("mail.example"), 1, t0), (1, 0, 0), "another name");
        assert_eq!(burst(&limiter, "192.0.2.1", &key("WWW.Example"), 1, t0), (0, 1, 0), "case does not matter");
        let nx = Key { kind: Kind::NxDomain, ..www };
        assert_eq!(burst(&limiter, "192.0.2.1", &nx, 1, t0), (1, 0, 0), "another kind");
        assert_eq!(burst(&limiter, "192.0.2.200", &www, 10, t0), (10, 0, 0), "exempt network");
        let v6 = Limiter::new(config(1, 0), (1, 2), t0);
        assert_eq!(burst(&v6, "2001:db8:0:1::1", &www, 3, t0).0, 2);
        assert_eq!(burst(&v6, "2001:db8:0:2::1", &www, 3, t0).0, 0, "same /56");
        assert_eq!(burst(&v6, "2001:db8:0:100::1", &www, 3, t0).0, 2, "another /56");
    }

    #[test]
    fn ecs_subnets_get_at_most_ten_buckets_per_prefix() {
        let t0 = Instant::now();
        let limiter = Limiter::new(config(1, 0), (1, 2), t0);
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
        let t0 = Instant::now();
        let limiter = Limiter::new(config(1, 0), (1, 2), t0);
        let www = key("www.example");
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 3, t0).0, 2);
        // 100,000 other prefixes pass through a 1,000-bucket table
        for i in 0..100_000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + (i << 8)));
            limiter.check(client, &www, t0 + Duration::from_millis(1));
        }
        assert_eq!(limiter.sets.len(), 250);
        // the first bucket was evicted, so it starts full again
        assert_eq!(burst(&limiter, "192.0.2.1", &www, 3, t0 + Duration::from_millis(2)).0, 2);
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

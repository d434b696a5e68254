//! The four answer stages of SPEC §1 as pure functions: candidates → policy → order →
//! cap. No I/O, no time, no locks: the only shared state touched is a service's
//! round-robin counter (one atomic add).

use crate::config::{Order, Policy, WhenAllDown};
use crate::geo::{Geo, RegionId};
use crate::view::{Candidate, Selection, ServiceView};
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
pub use trace::{Event, Ordered, Quiet, Sink};

pub mod trace;

/// The address family a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn matches(self, address: &IpAddr) -> bool {
        matches!((self, address), (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_)))
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Who is asking: the client's address (SPEC §1) and, when the query carried ECS with
/// SOURCE PREFIX-LENGTH > 0, that length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub address: IpAddr,
    pub ecs_source: Option<u8>,
}

/// The computed answer's TTL and ECS scope (the addresses go to the caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub ttl: u32,
    pub scope: u8,
}

/// Whether the service has any candidate of `family` (used by ANY: A, else AAAA).
pub fn has_candidates(service: &ServiceView, family: Family) -> bool {
    service.targets.iter().any(|t| family.matches(&t.address))
}

/// Computes the answer for one query into `out` (cleared first).
pub fn answer(service: &ServiceView, family: Family, client: &Client, geo: &Geo, out: &mut Vec<IpAddr>) -> Answer {
    answer_to(service, family, client, geo, out, &mut Quiet)
}

/// [`answer`], reporting each stage's decisions to `sink` (for explain: the same code;
/// with a listening sink, round-robin peeks at its counter instead of advancing it
/// and no counter moves).
pub fn answer_to<S: Sink>(
    service: &ServiceView,
    family: Family,
    client: &Client,
    geo: &Geo,
    out: &mut Vec<IpAddr>,
    sink: &mut S,
) -> Answer {
    thread_local! {
        // reused across queries, so answering allocates nothing
        static SET: std::cell::RefCell<Vec<Candidate>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    out.clear();
    let mut scope = 0;
    let mut halve = false;
    // only gslb asks where the client is; its answer then holds for the client's block
    let placement = (service.policy == Policy::Gslb).then(|| geo.locate(client.address)).flatten();
    SET.with_borrow_mut(|set| {
        let failed_open: bool;
        // stages 1 and 2 look at no more of the client than its region: worked out once
        // per View (and region)
        let memo = match (service.policy, &placement) {
            (Policy::Gslb, Some(place)) => service.region_selections.get(usize::from(place.region)),
            (Policy::Gslb, None) => None,
            _ => Some(&service.selections),
        };
        if let Some(memo) = memo.filter(|_| !S::LISTENING) {
            let selection = memo[family.index()].get_or_init(|| {
                let mut set = Vec::new();
                let halve = select(service, family, placement.as_ref(), geo, &mut set, &mut Quiet);
                let failed_open = self::failed_open(service, &set);
                Selection { set, halve, failed_open }
            });
            set.clear();
            set.extend_from_slice(&selection.set);
            (halve, failed_open) = (selection.halve, selection.failed_open);
        } else {
            if let Some(place) = &placement {
                sink.event(Event::Placed { place, client });
            }
            halve = select(service, family, placement.as_ref(), geo, set, sink);
            failed_open = self::failed_open(service, set);
            sink.event(Event::Kept { set, failed_open });
        }
        if failed_open && !S::LISTENING {
            service.counters.fail_opens.fetch_add(1, Ordering::Relaxed);
        }
        scope = placement.as_ref().map_or(0, |p| p.scope);
        let ordered = match service.order {
            Order::RoundRobin => {
                Ordered::RoundRobin { start: round_robin(service, family, set, out, S::LISTENING), of: set.len() }
            }
            Order::Weighted => {
                weighted(set, service.max_answers, out);
                Ordered::Weighted
            }
            Order::Sticky => {
                let (network, prefix) = client_network(client);
                sticky(set, network, prefix, service.max_answers, out);
                scope = scope.max(prefix);
                Ordered::Sticky { network, prefix }
            }
        };
        sink.event(Event::Ordered(ordered));
    });
    if client.ecs_source.is_none() {
        // without ECS the answer depends on the resolver, not on a client subnet
        scope = 0;
    }
    out.truncate(service.max_answers);
    if !out.is_empty() && !S::LISTENING {
        service.counters.answers.fetch_add(1, Ordering::Relaxed);
    }
    let ttl = if halve { halved(service.ttl) } else { service.ttl };
    let max_answers = service.max_answers;
    sink.event(Event::Answered { client: client.address, out, ttl, halved: halve, max_answers });
    Answer { ttl, scope }
}

/// Only failing open keeps an unhealthy candidate.
fn failed_open(service: &ServiceView, set: &[Candidate]) -> bool {
    service.policy != Policy::All && set.iter().any(|c| !c.healthy)
}

/// Stages 1 and 2 (and the weight-0 rule): the set the order then arranges. Returns
/// whether the TTL is halved.
fn select(
    service: &ServiceView,
    family: Family,
    placement: Option<&crate::geo::Placement>,
    geo: &Geo,
    set: &mut Vec<Candidate>,
    sink: &mut impl Sink,
) -> bool {
    candidates(service, family, set);
    sink.event(Event::Candidates { service, family, set });
    let halve = match placement {
        Some(place) => gslb(service, set, geo.order(place.region), sink),
        None => policy(service, set, sink),
    };
    let zero = set.iter().filter(|c| c.load() == 0).count();
    positive_weights(set);
    if zero > 0 && set.iter().any(|c| c.load() > 0) {
        sink.event(Event::WeightZero { left_out: zero });
    }
    halve
}

/// The addresses a client would be answered from (before order and cap), without
/// touching any counter: for status and explain.
pub fn eligible(service: &ServiceView, family: Family, client: &Client, geo: &Geo) -> Vec<IpAddr> {
    let placement = (service.policy == Policy::Gslb).then(|| geo.locate(client.address)).flatten();
    let mut set = Vec::new();
    select(service, family, placement.as_ref(), geo, &mut set, &mut Quiet);
    set.iter().map(|c| c.address).collect()
}

/// [`eligible`] for a client placed in `region` (a gslb service's answer there).
pub fn eligible_in(service: &ServiceView, family: Family, region: crate::geo::RegionId, geo: &Geo) -> Vec<IpAddr> {
    let placement = crate::geo::Placement { region, decided: crate::geo::Decided::Default, scope: 0 };
    let mut set = Vec::new();
    select(service, family, Some(&placement), geo, &mut set, &mut Quiet);
    set.iter().map(|c| c.address).collect()
}

/// The TTL while a target that could change the answer is down: half, at least 1 s,
/// and 0 stays 0.
fn halved(ttl: u32) -> u32 {
    if ttl == 0 { 0 } else { (ttl / 2).max(1) }
}

/// The service's answer TTL for a query that computes no answer (other types at the
/// service name): halved while any of its targets is down, for every policy but `all`.
pub fn current_ttl(service: &ServiceView) -> u32 {
    let down = service.policy != Policy::All && service.targets.iter().any(|t| !t.healthy);
    if down { halved(service.ttl) } else { service.ttl }
}

/// Stage 1: the targets of the query's family.
fn candidates(service: &ServiceView, family: Family, set: &mut Vec<Candidate>) {
    set.clear();
    set.extend(service.targets.iter().filter(|t| family.matches(&t.address)).map(|t| Candidate {
        address: t.address,
        weight: t.weight,
        percent: t.percent,
        priority: t.priority,
        region: t.region,
        healthy: t.healthy,
        score: 0.0,
    }));
}

/// Stage 2: keeps the set the policy answers from. Returns whether a target whose
/// recovery could change this answer is down (the TTL rule of SPEC §1).
fn policy<S: Sink>(service: &ServiceView, set: &mut Vec<Candidate>, sink: &mut S) -> bool {
    match service.policy {
        Policy::All => {
            sink.event(Event::All);
            false
        }
        // gslb without any region to place the client in (no default_region: only
        // possible when no service is gslb) answers as healthy
        Policy::Healthy | Policy::Gslb => {
            let down = set.iter().any(|c| !c.healthy);
            let healthy = set.iter().filter(|c| c.healthy).count();
            sink.event(Event::Healthy { healthy, of: set.len() });
            if healthy > 0 {
                set.retain(|c| c.healthy);
            } else {
                fail_open(service, set, |_| true, sink);
            }
            down
        }
        Policy::Failover => {
            if S::LISTENING {
                // explain: each tier looked at, lowest first, up to the answered one
                let mut tiers: Vec<u8> = set.iter().map(|c| c.priority).collect();
                tiers.sort_unstable();
                tiers.dedup();
                for &priority in &tiers {
                    let all = set.iter().filter(|c| c.priority == priority).count();
                    let live = set.iter().filter(|c| c.priority == priority && c.healthy).count();
                    sink.event(Event::Tier { priority, live, all });
                    if live > 0 {
                        break;
                    }
                }
            }
            match set.iter().filter(|c| c.healthy).map(|c| c.priority).min() {
                Some(tier) => {
                    let down = set.iter().any(|c| !c.healthy && c.priority <= tier);
                    set.retain(|c| c.healthy && c.priority == tier);
                    down
                }
                None => {
                    let lowest = set.iter().map(|c| c.priority).min();
                    fail_open(service, set, |c| Some(c.priority) == lowest, sink);
                    lowest.is_some()
                }
            }
        }
    }
}

/// gslb: the healthy candidates of the first region in the client's try order that has
/// any (the client's region, its fallback list, the nearest, then by name). Returns
/// whether a candidate is down in a region tried up to the answered one.
fn gslb(service: &ServiceView, set: &mut Vec<Candidate>, order: &[RegionId], sink: &mut impl Sink) -> bool {
    let mut down = false;
    for (step, &region) in order.iter().enumerate() {
        let all = set.iter().filter(|c| c.region == Some(region)).count();
        let live = set.iter().filter(|c| c.region == Some(region) && c.healthy).count();
        down |= live < all;
        if all > 0 || step == 0 {
            sink.event(Event::Region { region, first: step == 0, live, all });
        }
        if live > 0 {
            set.retain(|c| c.healthy && c.region == Some(region));
            return down;
        }
    }
    // all down: the same order as if every candidate were healthy
    let first = order.iter().copied().find(|&r| set.iter().any(|c| c.region == Some(r)));
    fail_open(service, set, |c| c.region == first, sink);
    down
}

/// All down: with `when_all_down = "all"` the policy runs again as if every candidate
/// were healthy (`keep` says which it then picks); with "none" nothing is answered.
fn fail_open(service: &ServiceView, set: &mut Vec<Candidate>, keep: impl Fn(&Candidate) -> bool, sink: &mut impl Sink) {
    match service.when_all_down {
        WhenAllDown::All => {
            set.retain(keep);
            sink.event(Event::FailOpen { kept: set.len() });
        }
        WhenAllDown::None => {
            set.clear();
            sink.event(Event::NothingAnswered);
        }
    }
}

/// Weight-0 targets (configured 0, or reported 0% when the reported drains are all
/// that is left) are answered only when none of positive weight is left; then they all
/// count as weight 1, so every order still spreads over them.
fn positive_weights(set: &mut Vec<Candidate>) {
    if set.iter().any(|c| c.load() > 0) {
        set.retain(|c| c.load() > 0);
    } else {
        set.iter_mut().for_each(|c| (c.weight, c.percent) = (1, 100));
    }
}

/// The set rotated by one position per query (one counter per service and family);
/// `peek` reads the counter without moving it. Returns the start position.
fn round_robin(service: &ServiceView, family: Family, set: &[Candidate], out: &mut Vec<IpAddr>, peek: bool) -> usize {
    if set.is_empty() {
        return 0;
    }
    let counter = &service.counters.rotation[family.index()];
    let position = if peek { counter.load(Ordering::Relaxed) } else { counter.fetch_add(1, Ordering::Relaxed) };
    let start = position % set.len();
    out.extend(set[start..].iter().chain(&set[..start]).map(|c| c.address));
    start
}

/// Sequential weighted sampling without replacement: each position is drawn with
/// probability w / Σw among the targets left (w the effective weight).
fn weighted(set: &mut Vec<Candidate>, cap: usize, out: &mut Vec<IpAddr>) {
    let mut total: u64 = set.iter().map(|c| u64::from(c.load())).sum();
    while !set.is_empty() && out.len() < cap {
        let mut ticket = random_below(total);
        let index = set
            .iter()
            .position(|c| {
                let w = u64::from(c.load());
                ticket < w || {
                    ticket -= w;
                    false
                }
            })
            .unwrap_or(set.len() - 1);
        let chosen = set.swap_remove(index);
        total -= u64::from(chosen.load());
        out.push(chosen.address);
    }
}

/// The client's network for sticky hashing: /24 (IPv4) or /56 (IPv6), or the ECS
/// source prefix when that is shorter.
pub fn client_network(client: &Client) -> (IpAddr, u8) {
    let default = if client.address.is_ipv4() { 24 } else { 56 };
    let prefix = client.ecs_source.map_or(default, |s| s.min(default));
    let network = ipnet::IpNet::new(client.address, prefix).map_or(client.address, |n| n.network());
    (network, prefix)
}

/// Weighted rendezvous hashing: targets in descending −w ⁄ ln((h+1) ⁄ 2⁶⁴), h the
/// SipHash-2-4 (zero key) of the client network and the target address; ties (equal
/// scores) go to the lower address.
/// The `max` highest-scoring targets, best first (the cap keeps no more).
fn sticky(set: &mut [Candidate], network: IpAddr, prefix: u8, max: usize, out: &mut Vec<IpAddr>) {
    // with one weight for all, −w ⁄ ln(u) rises with u (ties where u ties): ordering by
    // u orders by score, without a logarithm per target
    let one_weight = set.windows(2).all(|pair| pair[0].load() == pair[1].load());
    for c in set.iter_mut() {
        let unit = sticky_unit(network, prefix, c.address);
        c.score = if one_weight { unit } else { score(unit, c.load()) };
    }
    let better = |x: &Candidate, y: &Candidate| y.score.total_cmp(&x.score).then_with(|| x.address.cmp(&y.address));
    if max == 1 {
        // the default cap: one pass, no sort
        out.extend(set.iter().min_by(|x, y| better(x, y)).map(|c| c.address));
    } else {
        set.sort_unstable_by(better);
        out.extend(set.iter().take(max).map(|c| c.address));
    }
}

/// One target's rendezvous score for one client network (SPEC §1 `sticky`).
pub fn sticky_score(network: IpAddr, prefix: u8, target: IpAddr, weight: u32) -> f64 {
    score(sticky_unit(network, prefix, target), weight)
}

/// (h + 1) ⁄ 2⁶⁴ for one target and client network.
fn sticky_unit(network: IpAddr, prefix: u8, target: IpAddr) -> f64 {
    let sip = siphasher::sip::SipHasher24::new();
    let h = match (network, target) {
        // the common case in a fixed-size array, so the copies are inlined
        (IpAddr::V4(n), IpAddr::V4(t)) => {
            let (n, t) = (n.octets(), t.octets());
            sip.hash(&[4, prefix, n[0], n[1], n[2], n[3], t[0], t[1], t[2], t[3]])
        }
        _ => {
            // 34 bytes at most: two IPv6 addresses
            let mut bytes = [0u8; 34];
            bytes[0] = if network.is_ipv4() { 4 } else { 6 };
            bytes[1] = prefix;
            let mut len = 2;
            for address in [network, target] {
                let octets: &[u8] = match &address {
                    IpAddr::V4(a) => &a.octets(),
                    IpAddr::V6(a) => &a.octets(),
                };
                bytes[len..len + octets.len()].copy_from_slice(octets);
                len += octets.len();
            }
            sip.hash(&bytes[..len])
        }
    };
    (h as f64 + 1.0) / 18_446_744_073_709_551_616.0
}

fn score(unit: f64, weight: u32) -> f64 {
    let ln = unit.ln();
    if ln == 0.0 { f64::INFINITY } else { -f64::from(weight) / ln }
}

thread_local! {
    static RANDOM: Cell<u64> = Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish() | 1);
}

/// Makes this thread's next draws repeatable (for comparing two ways of answering).
pub fn seed_random(seed: u64) {
    RANDOM.set(seed | 1);
}

/// A uniform draw in [0, bound) from a per-thread xorshift64* generator, seeded from
/// the standard library's random hasher keys.
fn random_below(bound: u64) -> u64 {
    RANDOM.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        // multiply-shift maps the 64-bit draw onto [0, bound) without a division
        ((u128::from(x.wrapping_mul(0x2545_F491_4F6C_DD1D)) * u128::from(bound)) >> 64) as u64
    })
}

#[cfg(test)]
mod tests;

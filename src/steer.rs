//! The four answer stages of SPEC §1 as pure functions: candidates → policy → order →
//! cap. No I/O, no time, no locks: the only shared state touched is a service's
//! round-robin counter (one atomic add).

use crate::view::{ServiceView, TargetView};
use std::net::IpAddr;
use std::sync::atomic::Ordering;

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

/// The computed answer: addresses in answer order, their TTL and the ECS scope.
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
pub fn answer(service: &ServiceView, family: Family, out: &mut Vec<IpAddr>) -> Answer {
    out.clear();
    let candidates = || service.targets.iter().filter(move |t| family.matches(&t.address));
    let positive = candidates().any(|t| t.weight > 0);
    // weight-0 targets are answered only when no target of positive weight is left
    let chosen = || candidates().filter(move |t| t.weight > 0 || !positive);
    round_robin(service, family, chosen, out);
    out.truncate(service.max_answers);
    Answer { ttl: service.ttl, scope: 0 }
}

/// The set rotated by one position per query.
fn round_robin<'s, I>(service: &ServiceView, family: Family, set: impl Fn() -> I, out: &mut Vec<IpAddr>)
where
    I: Iterator<Item = &'s TargetView>,
{
    let n = set().count();
    if n == 0 {
        return;
    }
    let start = service.rotation.0[family.index()].fetch_add(1, Ordering::Relaxed) % n;
    out.extend(set().skip(start).chain(set().take(start)).map(|t| t.address));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Order, Policy, WhenAllDown};

    fn service(targets: &[(&str, u32)], max_answers: usize) -> ServiceView {
        ServiceView {
            name: "s.example.".parse().unwrap(),
            policy: Policy::All,
            order: Order::RoundRobin,
            ttl: 30,
            max_answers,
            when_all_down: WhenAllDown::All,
            targets: targets
                .iter()
                .map(|(a, w)| TargetView {
                    address: a.parse().unwrap(),
                    weight: *w,
                    priority: 1,
                    region: None,
                    healthy: true,
                })
                .collect(),
            rotation: Default::default(),
        }
    }

    fn run(s: &ServiceView, family: Family) -> Vec<String> {
        let mut out = Vec::new();
        answer(s, family, &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn round_robin_rotates_one_position_per_query_and_family() {
        let s = service(&[("127.0.0.1", 1), ("127.0.0.2", 1), ("::1", 1), ("127.0.0.3", 1)], 8);
        assert_eq!(run(&s, Family::V4), ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
        assert_eq!(run(&s, Family::V6), ["::1"]);
        assert_eq!(run(&s, Family::V4), ["127.0.0.2", "127.0.0.3", "127.0.0.1"]);
        assert_eq!(run(&s, Family::V4), ["127.0.0.3", "127.0.0.1", "127.0.0.2"]);
    }

    #[test]
    fn cap_keeps_the_first_of_the_rotation() {
        let s = service(&[("127.0.0.1", 1), ("127.0.0.2", 1), ("127.0.0.3", 1)], 2);
        assert_eq!(run(&s, Family::V4), ["127.0.0.1", "127.0.0.2"]);
        assert_eq!(run(&s, Family::V4), ["127.0.0.2", "127.0.0.3"]);
    }

    #[test]
    fn weight_zero_is_answered_only_without_positive_weights() {
        let s = service(&[("127.0.0.1", 0), ("127.0.0.2", 3)], 8);
        assert_eq!(run(&s, Family::V4), ["127.0.0.2"]);
        let s = service(&[("127.0.0.1", 0), ("127.0.0.2", 0)], 8);
        assert_eq!(run(&s, Family::V4).len(), 2);
    }

    #[test]
    fn no_candidate_of_the_family_answers_nothing() {
        let s = service(&[("127.0.0.1", 1)], 8);
        assert!(run(&s, Family::V6).is_empty());
        assert!(!has_candidates(&s, Family::V6));
    }
}

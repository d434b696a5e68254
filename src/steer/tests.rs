use super::*;
use crate::config::{Order, Policy, WhenAllDown};
use crate::view::{ServiceView, TargetView};

fn service(order: Order, targets: &[(&str, u32)], max_answers: usize) -> ServiceView {
    ServiceView {
        keys: None,
        name: "s.example.".parse().unwrap(),
        policy: Policy::All,
        order,
        ttl: 30,
        max_answers,
        when_all_down: WhenAllDown::All,
        targets: targets
            .iter()
            .map(|(a, w)| TargetView {
                address: a.parse().unwrap(),
                weight: *w,
                percent: 100,
                priority: 1,
                region: None,
                healthy: true,
            })
            .collect(),
        counters: Default::default(),
        not_ready: [false; 2],
        selections: Default::default(),
        region_selections: Box::default(),
    }
}

/// A Geo built from `regions` (TOML tables) with default region `default`.
fn regions(regions: &str, default: &str) -> crate::geo::Geo {
    let text = format!("[geo]\ndefault_region = \"{default}\"\n{regions}");
    let config = crate::config::from_toml(&text, std::path::Path::new("t.toml")).unwrap();
    crate::geo::Geo::build(&config).unwrap()
}

fn no_regions() -> &'static crate::geo::Geo {
    static GEO: std::sync::OnceLock<crate::geo::Geo> = std::sync::OnceLock::new();
    GEO.get_or_init(|| {
        crate::geo::Geo::build(&crate::config::from_toml("", std::path::Path::new("t.toml")).unwrap()).unwrap()
    })
}

fn client(address: &str, ecs_source: Option<u8>) -> Client {
    Client { address: address.parse().unwrap(), ecs_source }
}

fn run(s: &ServiceView, family: Family, c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    answer(s, family, c, no_regions(), &mut out);
    out.iter().map(ToString::to_string).collect()
}

fn anyone() -> Client {
    client("127.0.0.1", None)
}

#[test]
fn round_robin_rotates_one_position_per_query_and_family() {
    let s = service(Order::RoundRobin, &[("127.0.0.1", 1), ("127.0.0.2", 1), ("::1", 1), ("127.0.0.3", 1)], 8);
    assert_eq!(run(&s, Family::V4, &anyone()), ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    assert_eq!(run(&s, Family::V6, &anyone()), ["::1"]);
    assert_eq!(run(&s, Family::V4, &anyone()), ["127.0.0.2", "127.0.0.3", "127.0.0.1"]);
    assert_eq!(run(&s, Family::V4, &anyone()), ["127.0.0.3", "127.0.0.1", "127.0.0.2"]);
}

#[test]
fn cap_keeps_the_first_of_the_order() {
    let s = service(Order::RoundRobin, &[("127.0.0.1", 1), ("127.0.0.2", 1), ("127.0.0.3", 1)], 2);
    assert_eq!(run(&s, Family::V4, &anyone()), ["127.0.0.1", "127.0.0.2"]);
    assert_eq!(run(&s, Family::V4, &anyone()), ["127.0.0.2", "127.0.0.3"]);
}

#[test]
fn weight_zero_is_answered_only_without_positive_weights_in_every_order() {
    for order in [Order::RoundRobin, Order::Weighted, Order::Sticky] {
        let s = service(order, &[("127.0.0.1", 0), ("127.0.0.2", 3)], 8);
        assert_eq!(run(&s, Family::V4, &anyone()), ["127.0.0.2"], "{order:?}");
        let s = service(order, &[("127.0.0.1", 0), ("127.0.0.2", 0)], 8);
        assert_eq!(run(&s, Family::V4, &anyone()).len(), 2, "{order:?}");
    }
}

#[test]
fn weighted_first_position_follows_the_weights() {
    let s = service(Order::Weighted, &[("127.0.0.1", 1), ("127.0.0.2", 3)], 1);
    let n = 40_000;
    let heavy = (0..n).filter(|_| run(&s, Family::V4, &anyone()) == ["127.0.0.2"]).count();
    // expected 30 000; the standard deviation is about 87, so ±1 000 cannot flake
    assert!((29_000..=31_000).contains(&heavy), "{heavy}");
}

#[test]
fn weighted_draws_without_replacement() {
    let s = service(Order::Weighted, &[("127.0.0.1", 1), ("127.0.0.2", 1000), ("127.0.0.3", 1)], 3);
    for _ in 0..100 {
        let mut got = run(&s, Family::V4, &anyone());
        got.sort();
        assert_eq!(got, ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    }
}

#[test]
fn client_network_is_24_or_56_or_the_shorter_ecs_prefix() {
    assert_eq!(client_network(&client("10.1.2.3", None)), ("10.1.2.0".parse().unwrap(), 24));
    assert_eq!(client_network(&client("10.1.0.0", Some(16))), ("10.1.0.0".parse().unwrap(), 16));
    assert_eq!(client_network(&client("10.1.2.0", Some(32))).1, 24);
    assert_eq!(client_network(&client("2001:db8:1:2ff::1", None)), ("2001:db8:1:200::".parse().unwrap(), 56));
}

/// Pinned values: every node, restart and version must hash the same way.
#[test]
fn sticky_scores_are_stable_across_versions() {
    let net: IpAddr = "10.1.2.0".parse().unwrap();
    let a = sticky_score(net, 24, "127.0.0.1".parse().unwrap(), 1);
    let b = sticky_score(net, 24, "127.0.0.2".parse().unwrap(), 1);
    assert_eq!((a, b), (STICKY_A, STICKY_B), "{a:?} {b:?}");
    assert_eq!(sticky_score(net, 24, "127.0.0.1".parse().unwrap(), 2), 2.0 * a);
}

// Computed with an independent SipHash-2-4 (checked against the reference vector of
// Aumasson and Bernstein) over [4, 24, 10, 1, 2, 0, 127, 0, 0, 1|2], then −1 ⁄ ln((h+1) ⁄ 2⁶⁴).
const STICKY_A: f64 = 1582.729070804832;
const STICKY_B: f64 = 0.4775365351179793;

#[test]
fn sticky_keeps_a_client_on_its_targets_and_moves_only_a_lost_targets_clients() {
    let targets = [("127.0.0.1", 1), ("127.0.0.2", 1), ("127.0.0.3", 1), ("127.0.0.4", 1)];
    let all = service(Order::Sticky, &targets, 1);
    let without_2 = service(Order::Sticky, &[targets[0], targets[2], targets[3]], 1);
    let mut per_target = std::collections::HashMap::new();
    for i in 0..2000u32 {
        let c = client(&format!("10.{}.{}.7", i / 256, i % 256), None);
        let first = run(&all, Family::V4, &c);
        assert_eq!(run(&all, Family::V4, &c), first, "stable for one client");
        *per_target.entry(first[0].clone()).or_insert(0) += 1;
        if first[0] != "127.0.0.2" {
            assert_eq!(run(&without_2, Family::V4, &c), first, "only the lost target's clients move");
        }
    }
    // 2000 clients over 4 equal targets: about 500 each
    assert!(per_target.values().all(|n| (350..=650).contains(n)), "{per_target:?}");
}

#[test]
fn sticky_weights_shift_the_share() {
    let s = service(Order::Sticky, &[("127.0.0.1", 1), ("127.0.0.2", 3)], 1);
    let heavy = (0..4000u32)
        .filter(|i| run(&s, Family::V4, &client(&format!("10.{}.{}.0", i / 256, i % 256), None)) == ["127.0.0.2"])
        .count();
    assert!((2700..=3300).contains(&heavy), "{heavy}");
}

#[test]
fn sticky_scope_is_the_hashed_prefix_only_with_ecs() {
    let s = service(Order::Sticky, &[("127.0.0.1", 1)], 1);
    let mut out = Vec::new();
    assert_eq!(answer(&s, Family::V4, &client("10.1.2.0", Some(24)), no_regions(), &mut out).scope, 24);
    assert_eq!(answer(&s, Family::V4, &client("10.1.0.0", Some(16)), no_regions(), &mut out).scope, 16);
    assert_eq!(answer(&s, Family::V4, &client("10.1.2.3", None), no_regions(), &mut out).scope, 0);
    let rr = service(Order::RoundRobin, &[("127.0.0.1", 1)], 1);
    assert_eq!(answer(&rr, Family::V4, &client("10.1.2.0", Some(24)), no_regions(), &mut out).scope, 0);
}

#[test]
fn no_candidate_of_the_family_answers_nothing() {
    let s = service(Order::RoundRobin, &[("127.0.0.1", 1)], 8);
    assert!(run(&s, Family::V6, &anyone()).is_empty());
    assert!(!has_candidates(&s, Family::V6));
}

/// A service of `policy` whose targets are (address, priority, healthy).
fn with_health(policy: Policy, targets: &[(&str, u8, bool)], when_all_down: WhenAllDown) -> ServiceView {
    let mut s = service(Order::RoundRobin, &[], 8);
    s.policy = policy;
    s.when_all_down = when_all_down;
    s.targets = targets
        .iter()
        .map(|(a, p, h)| TargetView {
            address: a.parse().unwrap(),
            weight: 1,
            percent: 100,
            priority: *p,
            region: None,
            healthy: *h,
        })
        .collect();
    s
}

fn sorted_answer(s: &ServiceView) -> (Vec<String>, u32) {
    let mut out = Vec::new();
    let a = answer(s, Family::V4, &anyone(), no_regions(), &mut out);
    let mut got: Vec<String> = out.iter().map(ToString::to_string).collect();
    got.sort();
    (got, a.ttl)
}

#[test]
fn policies_fail_open_and_halve_the_ttl() {
    use Policy::*;
    use WhenAllDown::{All as Open, None as Closed};
    type Case<'a> = (Policy, &'a [(&'a str, u8, bool)], WhenAllDown, &'a [&'a str], u32);
    let cases: &[Case] = &[
        // all: health ignored, TTL never halved
        (All, &[("127.0.0.1", 1, false), ("127.0.0.2", 1, true)], Open, &["127.0.0.1", "127.0.0.2"], 30),
        // healthy: only the healthy; a down candidate halves the TTL
        (Healthy, &[("127.0.0.1", 1, false), ("127.0.0.2", 1, true)], Open, &["127.0.0.2"], 15),
        (Healthy, &[("127.0.0.1", 1, true), ("127.0.0.2", 1, true)], Open, &["127.0.0.1", "127.0.0.2"], 30),
        (Healthy, &[("127.0.0.1", 1, false), ("127.0.0.2", 1, false)], Open, &["127.0.0.1", "127.0.0.2"], 15),
        (Healthy, &[("127.0.0.1", 1, false)], Closed, &[], 15),
        // failover: the first tier with a healthy candidate
        (Failover, &[("127.0.0.1", 1, true), ("127.0.0.2", 2, true)], Open, &["127.0.0.1"], 30),
        (
            Failover,
            &[("127.0.0.1", 1, false), ("127.0.0.2", 2, true), ("127.0.0.3", 3, true)],
            Open,
            &["127.0.0.2"],
            15,
        ),
        // a down target in a later tier cannot change this answer: no halving
        (Failover, &[("127.0.0.1", 1, true), ("127.0.0.2", 2, false)], Open, &["127.0.0.1"], 30),
        // all tiers down: the priority-1 tier, not every tier
        (
            Failover,
            &[("127.0.0.1", 1, false), ("127.0.0.4", 1, false), ("127.0.0.2", 2, false)],
            Open,
            &["127.0.0.1", "127.0.0.4"],
            15,
        ),
        (Failover, &[("127.0.0.2", 2, false), ("127.0.0.3", 3, false)], Open, &["127.0.0.2"], 15),
        (Failover, &[("127.0.0.1", 1, false)], Closed, &[], 15),
    ];
    for (policy, targets, down, want, ttl) in cases {
        let s = with_health(*policy, targets, *down);
        let (got, got_ttl) = sorted_answer(&s);
        assert_eq!(
            (got, got_ttl),
            (want.iter().map(ToString::to_string).collect::<Vec<_>>(), *ttl),
            "{policy:?} {targets:?} {down:?}"
        );
    }
}

#[test]
fn halving_keeps_at_least_one_second_and_zero_stays_zero() {
    assert_eq!((halved(30), halved(1), halved(0), halved(3)), (15, 1, 0, 1));
    let mut s = with_health(Policy::Healthy, &[("127.0.0.1", 1, false), ("127.0.0.2", 1, true)], WhenAllDown::All);
    assert_eq!(current_ttl(&s), 15);
    s.policy = Policy::All;
    assert_eq!(current_ttl(&s), 30);
}

#[test]
fn policies_compose_with_weights_and_orders() {
    // a healthy weight-0 target is answered when the only positive one is down
    let mut s = with_health(Policy::Healthy, &[("127.0.0.1", 1, false), ("127.0.0.2", 1, true)], WhenAllDown::All);
    s.targets[1].weight = 0;
    assert_eq!(sorted_answer(&s).0, ["127.0.0.2"]);
    s.order = Order::Sticky;
    s.max_answers = 1;
    assert_eq!(sorted_answer(&s).0, ["127.0.0.2"]);
}

const REGIONS: &str = r#"
[regions.eu]
networks = ["10.1.0.0/16"]
fallback = ["us"]
location = [50.1, 8.7]
[regions.us]
networks = ["10.2.0.0/16"]
location = [39.0, -77.5]
[regions.asia]
networks = ["10.3.0.0/16"]
location = [35.7, 139.7]
[regions.africa]
networks = ["10.4.0.0/16"]
location = [-1.3, 36.8]
[regions.zz]
networks = ["10.5.0.0/16"]
fallback = ["asia"]
"#;

/// A gslb service with targets (address, region id by name, healthy).
fn gslb_service(geo: &crate::geo::Geo, targets: &[(&str, &str, bool)]) -> ServiceView {
    let mut s = service(Order::RoundRobin, &[], 8);
    s.policy = Policy::Gslb;
    s.targets = targets
        .iter()
        .map(|(a, r, h)| TargetView {
            address: a.parse().unwrap(),
            weight: 1,
            percent: 100,
            priority: 1,
            region: geo.id(r),
            healthy: *h,
        })
        .collect();
    // as View::build does: the selections are kept per region
    s.region_selections = (0..geo.region_count()).map(|_| Default::default()).collect();
    s
}

fn gslb_answer(geo: &crate::geo::Geo, s: &ServiceView, from: &str) -> (Vec<String>, u32, u8) {
    let mut out = Vec::new();
    let a = answer(s, Family::V4, &client(from, Some(24)), geo, &mut out);
    let mut got: Vec<String> = out.iter().map(ToString::to_string).collect();
    got.sort();
    (got, a.ttl, a.scope)
}

#[test]
fn gslb_answers_the_clients_region_then_fallback_then_nearest_then_by_name() {
    let geo = regions(REGIONS, "eu");
    let all_up = [
        ("127.0.1.1", "eu", true),
        ("127.0.2.1", "us", true),
        ("127.0.3.1", "asia", true),
        ("127.0.4.1", "africa", true),
    ];
    let s = gslb_service(&geo, &all_up);
    assert_eq!(gslb_answer(&geo, &s, "10.1.7.0"), (vec!["127.0.1.1".into()], 30, 16));
    assert_eq!(gslb_answer(&geo, &s, "10.2.7.0").0, ["127.0.2.1"]);
    assert_eq!(gslb_answer(&geo, &s, "192.0.2.0").0, ["127.0.1.1"], "the default region");
    // eu down: its fallback (us), TTL halved
    let mut down = all_up;
    down[0].2 = false;
    let s = gslb_service(&geo, &down);
    assert_eq!(gslb_answer(&geo, &s, "10.1.7.0"), (vec!["127.0.2.1".into()], 15, 16));
    // a later region's failure cannot change the answer: full TTL
    assert_eq!(gslb_answer(&geo, &s, "10.2.7.0"), (vec!["127.0.2.1".into()], 30, 16));
    // eu and us down: fallback lists are not transitive, so the nearest to eu: africa
    down[1].2 = false;
    let s = gslb_service(&geo, &down);
    assert_eq!(gslb_answer(&geo, &s, "10.1.7.0").0, ["127.0.4.1"]);
    // zz has no location and no candidates: its fallback asia
    assert_eq!(gslb_answer(&geo, &s, "10.5.7.0").0, ["127.0.3.1"]);
}

#[test]
fn gslb_without_location_goes_by_region_name() {
    let geo = regions(REGIONS, "eu");
    let s = gslb_service(&geo, &[("127.0.1.1", "eu", true), ("127.0.2.1", "us", true)]);
    // zz: fallback asia has no candidates, zz has no location: by name, eu before us
    assert_eq!(gslb_answer(&geo, &s, "10.5.0.1").0, ["127.0.1.1"]);
}

#[test]
fn gslb_all_down_fails_open_to_the_clients_region_first() {
    let geo = regions(REGIONS, "eu");
    let targets = [("127.0.1.1", "eu", false), ("127.0.2.1", "us", false), ("127.0.3.1", "asia", false)];
    let s = gslb_service(&geo, &targets);
    assert_eq!(gslb_answer(&geo, &s, "10.2.0.1"), (vec!["127.0.2.1".into()], 15, 16), "its own region, never all");
    assert_eq!(gslb_answer(&geo, &s, "10.4.0.1").0, ["127.0.1.1"], "africa has none: nearest with candidates");
    let mut closed = gslb_service(&geo, &targets);
    closed.when_all_down = WhenAllDown::None;
    assert!(gslb_answer(&geo, &closed, "10.2.0.1").0.is_empty());
}

#[test]
fn gslb_scope_is_raised_to_the_sticky_prefix_and_zero_without_ecs() {
    let geo = regions("[regions.eu]\nnetworks = [\"10.0.0.0/8\"]\n[regions.us]\nnetworks = [\"10.1.0.0/16\"]\n", "eu");
    let mut s = gslb_service(&geo, &[("127.0.1.1", "eu", true), ("127.0.2.1", "us", true)]);
    assert_eq!(gslb_answer(&geo, &s, "10.2.0.0").2, 15);
    s.order = Order::Sticky;
    s.max_answers = 1;
    assert_eq!(gslb_answer(&geo, &s, "10.2.0.0").2, 24);
    let mut out = Vec::new();
    assert_eq!(answer(&s, Family::V4, &client("10.2.0.0", None), &geo, &mut out).scope, 0);
}

/// With one weight for all targets, sticky orders by the hash alone; the order must be
/// the order of SPEC §1's scores, for IPv4 and IPv6 clients alike.
#[test]
fn sticky_with_equal_weights_orders_as_the_scores_do() {
    let targets: Vec<(String, u32)> = (1..=8).map(|i| (format!("127.0.0.{i}"), 3)).collect();
    let targets: Vec<(&str, u32)> = targets.iter().map(|(a, w)| (a.as_str(), *w)).collect();
    let s = service(Order::Sticky, &targets, 8);
    for i in 0..500u32 {
        for address in [format!("10.{}.{}.9", i / 256, i % 256), format!("2001:db8:{i:x}::1")] {
            let c = client(&address, None);
            let (network, prefix) = client_network(&c);
            let mut expected: Vec<(f64, IpAddr)> =
                s.targets.iter().map(|t| (sticky_score(network, prefix, t.address, t.weight), t.address)).collect();
            expected.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            let expected: Vec<String> = expected.iter().map(|(_, a)| a.to_string()).collect();
            assert_eq!(run(&s, Family::V4, &c), expected, "client {address}");
        }
    }
}

//! The owner's model without sockets or a clock: every input and its effects, with
//! time as an argument.

use super::*;
use crate::api::{AdminState, RegistrationRequest};
use crate::health::{Health, Outcome, ProbeKey, Verdict};
use crate::steer::{Client, Family};
use crate::store::{Change, Event, Lease, Write};
use std::time::{Duration, SystemTime};

const ZONE: &str = include_str!("../../zones/lb.example.zone");

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:5353"]
startup_wait = "0s"

[store]
backend = "memory"

[[zones]]
origin = "lb.example."
file = "lb.example.zone"

[geo]
default_region = "eu"

[regions.eu]
[regions.us]

[checks.web]
kind = "tcp"
port = 80
interval = "1s"
timeout = "500ms"
fall = 2

[[services]]
name = "www.lb.example."
policy = "healthy"
check = "web"
targets = ["127.0.0.10", "127.0.0.11"]

[[services]]
name = "reg.lb.example."
policy = "healthy"
check = "web"
max_registrations = 2

[[services]]
name = "geo.lb.example."
policy = "gslb"
check = "web"
accept_registrations = true
targets = [{ address = "127.0.0.30", region = "eu" }]
"#;

/// The model of `config` (with the test zone beside it).
fn model_of(config: &str) -> Model {
    Model::new(loaded(config), "memory", Arc::default())
}

fn loaded(config: &str) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.example.zone"), ZONE).unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    crate::loaded::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A model whose store has given its (empty) first snapshot, its first effects taken.
fn model() -> Model {
    let mut m = model_of(CONFIG);
    m.apply([snapshot(1, vec![])], at(0));
    m
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn unix_of(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn name(text: &str) -> Name {
    crate::config::service_name(text).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn snapshot(revision: i64, changes: Vec<Change>) -> Input {
    Input::Store(Event::Snapshot { revision, changes })
}

fn written(id: u64, revision: i64, changes: Vec<Change>) -> Input {
    Input::Store(Event::Written { id, revision, changes })
}

fn key(address: &str) -> ProbeKey {
    ProbeKey { check: "web".into(), address: ip(address) }
}

/// The generation of `address`'s probe, as the model asked the runner for it.
fn generation(m: &Model, address: &str) -> u64 {
    m.health[&key(address)].generation
}

fn verdict(m: &Model, address: &str, passed: bool) -> Input {
    let outcome = Outcome {
        passed,
        latency: Duration::from_millis(3),
        reason: if passed { "ok" } else { "refused" }.into(),
        report: None,
    };
    Input::Verdict(Verdict { key: key(address), generation: generation(m, address), outcome, at: at(1) })
}

fn request(address: &str, ttl: u64) -> RegistrationRequest {
    RegistrationRequest {
        address: ip(address),
        ttl_seconds: ttl,
        region: None,
        weight: None,
        priority: None,
        check_address: None,
    }
}

fn register(id: CallId, service: &str, request: RegistrationRequest) -> Input {
    Input::Call(id, Call::Register { service: name(service), request })
}

fn set_state(id: CallId, service: &str, address: &str, state: AdminState) -> Input {
    Input::Call(id, Call::SetState { service: name(service), address: ip(address), state })
}

fn lease(request: RegistrationRequest, id: i64, expires: SystemTime) -> Option<Lease> {
    Some(Lease { request, id, expires_at: Some(unix_of(expires)) })
}

fn registered(service: &str, request: RegistrationRequest, id: i64, expires: SystemTime) -> Change {
    Change::Registration { service: name(service), address: request.address, lease: lease(request, id, expires) }
}

/// The addresses of `service` a client of the default region is answered from.
fn answered(view: &View, service: &str) -> Vec<IpAddr> {
    let client = Client { address: ip("127.0.0.1"), ecs_source: None };
    let s = &view.service(&name(service)).unwrap();
    let mut got = crate::steer::eligible(s, Family::V4, &client, &view.geo);
    got.sort();
    got
}

fn addresses(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| ip(a)).collect()
}

/// The one write of `effects`.
fn the_write(effects: &Effects) -> (u64, Write) {
    assert_eq!(effects.writes.len(), 1, "{:?}", effects.writes);
    effects.writes[0].clone()
}

fn rebuilds(m: &Model) -> u64 {
    m.metrics.view_rebuilds.load(std::sync::atomic::Ordering::Relaxed)
}

// ---- start ----

#[test]
fn the_first_apply_publishes_the_view_the_status_and_the_probes() {
    let mut m = model_of(CONFIG);
    let e = m.apply([], at(0));
    assert!(e.view.is_some() && e.status.is_some());
    let probes = e.probes.unwrap();
    assert_eq!(probes.keys().cloned().collect::<Vec<_>>(), [key("127.0.0.10"), key("127.0.0.11"), key("127.0.0.30")]);
    assert_ne!(probes[&key("127.0.0.10")].1, probes[&key("127.0.0.11")].1, "each run has its own generation");
}

#[test]
fn before_the_first_snapshot_changes_are_refused() {
    let mut m = model_of(CONFIG);
    let e = m.apply([set_state(1, "www.lb.example", "127.0.0.10", AdminState::Drain)], at(0));
    assert!(e.writes.is_empty());
    assert!(matches!(&e.replies[..], [(1, Reply::SetState(Err(SetStateError::Store(_))))]), "{:?}", e.replies);
    let e = m.apply([register(2, "reg.lb.example", request("127.0.0.20", 30))], at(0));
    assert!(matches!(&e.replies[..], [(2, Reply::Register(Err(RegisterError::Store(_))))]), "{:?}", e.replies);
}

#[test]
fn a_snapshot_brings_states_and_registrations_into_the_view() {
    let mut m = model_of(CONFIG);
    let drain = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    let reg = registered("reg.lb.example", request("127.0.0.20", 30), 7, at(30));
    let e = m.apply([snapshot(3, vec![drain, reg])], at(0));
    let view = e.view.unwrap();
    assert_eq!(answered(&view, "www.lb.example"), addresses(&["127.0.0.11"]));
    assert_eq!(answered(&view, "reg.lb.example"), addresses(&["127.0.0.20"]));
    assert!(e.probes.unwrap().contains_key(&key("127.0.0.20")), "a registration read back is probed");
    assert!(m.store.down.is_none() && m.store.ready);
}

#[test]
fn nothing_changed_publishes_nothing() {
    let mut m = model();
    let e = m.apply([], at(1));
    assert!(e.view.is_none() && e.status.is_none() && e.probes.is_none() && e.writes.is_empty());
    let e = m.apply([Input::Tick], at(1));
    assert!(e.status.is_none(), "an unchanged status is not published again");
}

// ---- verdicts ----

#[test]
fn a_failed_first_probe_drops_its_target_at_once() {
    let mut m = model();
    let e = m.apply([verdict(&m, "127.0.0.10", false)], at(1));
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]));
}

#[test]
fn a_burst_of_verdicts_publishes_one_view() {
    let mut m = model();
    let before = rebuilds(&m);
    let burst =
        vec![verdict(&m, "127.0.0.10", false), verdict(&m, "127.0.0.11", false), verdict(&m, "127.0.0.10", true)];
    let e = m.apply(burst, at(1));
    assert!(e.view.is_some());
    assert_eq!(rebuilds(&m), before + 1);
}

#[test]
fn verdicts_of_an_old_probe_run_or_an_unknown_key_are_dropped() {
    let mut m = model();
    let mut stale = verdict(&m, "127.0.0.10", false);
    if let Input::Verdict(v) = &mut stale {
        v.generation -= 1;
    }
    let outcome = Outcome { passed: false, latency: Duration::ZERO, reason: "x".into(), report: None };
    let unknown = Input::Verdict(Verdict { key: key("127.0.0.99"), generation: 1, outcome, at: at(1) });
    let e = m.apply([stale, unknown], at(1));
    assert!(e.view.is_none());
    assert_eq!(m.health[&key("127.0.0.10")].machine.health(), Health::Unknown);
}

#[test]
fn unknown_to_up_changes_no_answer_and_rebuilds_nothing() {
    let mut m = model();
    let e = m.apply([verdict(&m, "127.0.0.10", true)], at(1));
    assert!(e.view.is_none(), "unknown and up answer alike");
    let e = m.apply([Input::Tick], at(1));
    assert_eq!(e.status.unwrap().services[0].targets[0].health, "up", "the status shows it on the next tick");
}

#[test]
fn after_the_first_probe_fall_failures_make_a_target_down() {
    let mut m = model();
    m.apply([verdict(&m, "127.0.0.10", true)], at(1));
    let e = m.apply([verdict(&m, "127.0.0.10", false)], at(2));
    assert!(e.view.is_none(), "one failure of fall = 2");
    let e = m.apply([verdict(&m, "127.0.0.10", false)], at(3));
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]));
}

#[test]
fn the_status_is_published_on_ticks_only() {
    let mut m = model();
    let e = m.apply([verdict(&m, "127.0.0.10", false)], at(1));
    assert!(e.view.is_some() && e.status.is_none());
    let e = m.apply([Input::Tick], at(1));
    let status = e.status.unwrap();
    let target = &status.services[0].targets[0];
    assert_eq!((target.health.as_str(), target.last_failure.as_deref()), ("down", Some("refused")));
}

#[test]
fn every_down_fails_open_and_all_up_again_restores() {
    let mut m = model();
    let e = m.apply([verdict(&m, "127.0.0.10", false), verdict(&m, "127.0.0.11", false)], at(1));
    let view = e.view.unwrap();
    let s = &view.service(&name("www.lb.example")).unwrap();
    assert!(s.targets.iter().all(|t| !t.healthy));
    assert_eq!(answered(&view, "www.lb.example"), addresses(&["127.0.0.10", "127.0.0.11"]), "fail-open");
}

// ---- admin states ----

#[test]
fn a_state_applies_when_the_store_has_it_and_the_caller_hears_after_the_view() {
    let mut m = model();
    let e = m.apply([set_state(1, "www.lb.example", "127.0.0.10", AdminState::Drain)], at(1));
    let (id, write) = the_write(&e);
    assert_eq!(
        write,
        Write::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain }
    );
    assert!(e.view.is_none() && e.replies.is_empty(), "nothing applies before the store reports");
    let change = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    let e = m.apply([written(id, 2, vec![change])], at(1));
    assert_eq!(answered(e.view.as_ref().unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]));
    assert_eq!(e.replies, [(1, Reply::SetState(Ok(())))]);
}

#[test]
fn a_state_of_an_unknown_service_is_404_and_writes_nothing() {
    let mut m = model();
    let e = m.apply([set_state(1, "nope.lb.example", "127.0.0.10", AdminState::Drain)], at(1));
    assert!(e.writes.is_empty());
    assert_eq!(e.replies, [(1, Reply::SetState(Err(SetStateError::UnknownService("nope.lb.example.".into()))))]);
}

#[test]
fn a_state_while_the_store_is_down_is_refused() {
    let mut m = model();
    m.apply([Input::Store(Event::Down("disk full".into()))], at(1));
    let e = m.apply([set_state(1, "www.lb.example", "127.0.0.10", AdminState::Drain)], at(1));
    assert!(e.writes.is_empty());
    assert_eq!(e.replies, [(1, Reply::SetState(Err(SetStateError::Store("disk full".into()))))]);
}

#[test]
fn a_failed_write_changes_nothing_and_the_caller_gets_the_error() {
    let mut m = model();
    let e = m.apply([set_state(1, "www.lb.example", "127.0.0.10", AdminState::Drain)], at(1));
    let (id, _) = the_write(&e);
    let e = m.apply([Input::Store(Event::Failed { id, reason: "EIO".into() })], at(1));
    assert!(e.view.is_none());
    assert_eq!(e.replies, [(1, Reply::SetState(Err(SetStateError::Store("EIO".into()))))]);
    assert!(m.admin.is_empty());
}

#[test]
fn auto_deletes_a_state_and_an_unchanged_state_rebuilds_nothing() {
    let mut m = model();
    let drain = |state| Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state };
    m.apply([Input::Store(Event::Changes { revision: 2, changes: vec![drain(AdminState::Drain)] })], at(1));
    let e = m.apply([Input::Store(Event::Changes { revision: 3, changes: vec![drain(AdminState::Drain)] })], at(1));
    assert!(e.view.is_none(), "the same state again changes no answer");
    let e = m.apply([Input::Store(Event::Changes { revision: 4, changes: vec![drain(AdminState::Auto)] })], at(1));
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.10", "127.0.0.11"]));
    assert!(m.admin.is_empty());
}

#[test]
fn down_counts_as_unhealthy_and_up_as_healthy_whatever_the_probes_say() {
    let mut m = model();
    let state = |address, state| Change::State { service: name("www.lb.example"), address: ip(address), state };
    let changes = vec![state("127.0.0.10", AdminState::Down), state("127.0.0.11", AdminState::Up)];
    m.apply([verdict(&m, "127.0.0.11", false)], at(1));
    let e = m.apply([Input::Store(Event::Changes { revision: 2, changes })], at(1));
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]));
}

#[test]
fn a_state_of_an_address_that_is_no_target_is_kept_and_listed() {
    let mut m = model();
    let change = Change::State { service: name("www.lb.example"), address: ip("127.9.9.9"), state: AdminState::Drain };
    let e = m.apply([Input::Store(Event::Changes { revision: 2, changes: vec![change] }), Input::Tick], at(1));
    let status = e.status.unwrap();
    assert_eq!(status.unmatched_states.len(), 1);
    assert_eq!(status.unmatched_states[0].address, ip("127.9.9.9"));
}

// ---- registrations ----

/// Registers `address` for reg.lb.example through the store; the lease id is `lease`.
fn make_registration(m: &mut Model, call: CallId, address: &str, lease: i64, now: SystemTime) -> Effects {
    let e = m.apply([register(call, "reg.lb.example", request(address, 30))], now);
    let (id, write) = the_write(&e);
    assert!(matches!(write, Write::Register { replaces: None, .. }), "{write:?}");
    let change = registered("reg.lb.example", request(address, 30), lease, now + Duration::from_secs(30));
    m.apply([written(id, 10 + lease, vec![change])], now)
}

#[test]
fn a_registration_is_answered_probed_and_replied_with_its_lease() {
    let mut m = model();
    let e = make_registration(&mut m, 1, "127.0.0.20", 5, at(10));
    assert_eq!(answered(e.view.as_ref().unwrap(), "reg.lb.example"), addresses(&["127.0.0.20"]));
    assert!(e.probes.unwrap().contains_key(&key("127.0.0.20")));
    let [(1, Reply::Register(Ok(reply)))] = &e.replies[..] else { panic!("{:?}", e.replies) };
    assert_eq!((reply.expires_at, reply.service_ttl), (unix_of(at(40)), 30));
}

#[test]
fn a_renewal_that_changes_nothing_keeps_the_lease_alive_and_rebuilds_nothing() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(10));
    let before = rebuilds(&m);
    let e = m.apply([register(2, "reg.lb.example", request("127.0.0.20", 30))], at(20));
    let (id, write) = the_write(&e);
    assert!(matches!(write, Write::Renew { lease: 5, .. }), "{write:?}");
    let e = m.apply([written(id, 0, vec![])], at(20));
    assert!(e.view.is_none() && e.probes.is_none());
    assert_eq!(rebuilds(&m), before);
    let [(2, Reply::Register(Ok(reply)))] = &e.replies[..] else { panic!("{:?}", e.replies) };
    assert_eq!(reply.expires_at, unix_of(at(50)));
    let e = m.apply([Input::Tick], at(21));
    assert_eq!(e.status.unwrap().services[1].targets[0].expires_at, Some(unix_of(at(50))));
}

#[test]
fn a_renewal_with_new_fields_moves_to_a_new_lease() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(10));
    let mut heavier = request("127.0.0.20", 30);
    heavier.weight = Some(5);
    let e = m.apply([register(2, "reg.lb.example", heavier)], at(20));
    assert!(matches!(the_write(&e).1, Write::Register { replaces: Some(5), .. }));
}

#[test]
fn registrations_are_checked_field_by_field() {
    let mut m = model();
    let mut cases: Vec<(RegistrationRequest, &str)> = Vec::new();
    cases.push((request("224.0.0.1", 30), "address"));
    cases.push((request("127.0.0.20", 2), "ttl_seconds"));
    cases.push((request("127.0.0.20", 86401), "ttl_seconds"));
    let mut r = request("127.0.0.20", 30);
    r.weight = Some(1001);
    cases.push((r, "weight"));
    let mut r = request("127.0.0.20", 30);
    r.priority = Some(0);
    cases.push((r, "priority"));
    let mut r = request("127.0.0.20", 30);
    r.check_address = Some(ip("0.0.0.0"));
    cases.push((r, "check_address"));
    let mut r = request("127.0.0.20", 30);
    r.region = Some("mars".into());
    cases.push((r, "region"));
    for (i, (request, field)) in cases.into_iter().enumerate() {
        let e = m.apply([register(i as u64, "reg.lb.example", request)], at(1));
        assert!(e.writes.is_empty());
        match &e.replies[..] {
            [(_, Reply::Register(Err(RegisterError::Invalid { field: f, .. })))] => assert_eq!(*f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

fn refused(e: &Effects) -> &RegisterError {
    assert!(e.writes.is_empty(), "{:?}", e.writes);
    match &e.replies[..] {
        [(_, Reply::Register(Err(error)))] => error,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_service_with_configured_targets_takes_no_registration_unless_it_says_so() {
    let mut m = model();
    // www lists targets and does not set accept_registrations
    let e = m.apply([register(1, "www.lb.example", request("127.0.0.21", 30))], at(1));
    assert_eq!(refused(&e), &RegisterError::Closed("www.lb.example.".into()));
    // geo lists one and accepts; reg lists none
    let mut r = request("127.0.0.31", 30);
    r.region = Some("eu".into());
    assert_eq!(m.apply([register(2, "geo.lb.example", r)], at(1)).writes.len(), 1);
    assert_eq!(m.apply([register(3, "reg.lb.example", request("127.0.0.21", 30))], at(1)).writes.len(), 1);
}

#[test]
fn a_closed_service_keeps_renewing_what_is_stored_until_it_lapses() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    let closed = CONFIG.replace("max_registrations = 2", "max_registrations = 2\naccept_registrations = false");
    reload(&mut m, 2, &closed);
    let e = m.apply([register(3, "reg.lb.example", request("127.0.0.20", 30))], at(6));
    assert!(matches!(the_write(&e).1, Write::Renew { .. }), "the stored one renews");
    let e = m.apply([register(4, "reg.lb.example", request("127.0.0.22", 30))], at(6));
    assert_eq!(refused(&e), &RegisterError::Closed("reg.lb.example.".into()), "a new one is refused");
}

#[test]
fn registrations_stay_inside_their_networks() {
    let mut m = model();
    // the default: any unicast address but link-local, 0/8, 240/4 and ::/96 (not ::1)
    for (address, check) in [
        ("169.254.169.254", None),
        ("0.0.0.1", None),
        ("240.0.0.1", None),
        ("::5", None),
        ("fe80::1", None),
        ("127.0.0.20", Some("169.254.169.254")),
    ] {
        let mut r = request(address, 30);
        r.check_address = check.map(ip);
        let e = m.apply([register(1, "reg.lb.example", r)], at(1));
        let field = if check.is_some() { "check_address" } else { "address" };
        assert!(matches!(refused(&e), RegisterError::Outside { field: f, .. } if *f == field), "{address} {check:?}");
    }
    assert_eq!(m.apply([register(2, "reg.lb.example", request("::1", 30))], at(1)).writes.len(), 1);
    // a service's own networks
    let config =
        CONFIG.replace("max_registrations = 2", "max_registrations = 2\nregistration_networks = [\"127.0.5.0/24\"]");
    reload(&mut m, 3, &config);
    let e = m.apply([register(4, "reg.lb.example", request("127.0.0.23", 30))], at(6));
    let RegisterError::Outside { field: "address", networks, .. } = refused(&e) else { panic!() };
    assert_eq!(networks, "127.0.5.0/24");
    let mut r = request("127.0.5.1", 30);
    r.check_address = Some(ip("127.0.0.1"));
    assert!(matches!(
        refused(&m.apply([register(5, "reg.lb.example", r)], at(6))),
        RegisterError::Outside { field: "check_address", .. }
    ));
    assert_eq!(m.apply([register(6, "reg.lb.example", request("127.0.5.1", 30))], at(6)).writes.len(), 1);
}

#[test]
fn a_gslb_registration_needs_a_region() {
    let mut m = model();
    let e = m.apply([register(1, "geo.lb.example", request("127.0.0.31", 30))], at(1));
    assert!(matches!(&e.replies[..], [(1, Reply::Register(Err(RegisterError::Invalid { field: "region", .. })))]));
    let mut r = request("127.0.0.31", 30);
    r.region = Some("us".into());
    let e = m.apply([register(2, "geo.lb.example", r)], at(1));
    assert_eq!(e.writes.len(), 1);
}

#[test]
fn a_configured_address_is_409_and_an_unknown_service_404() {
    let mut m = model();
    let e = m.apply([register(1, "www.lb.example", request("127.0.0.10", 30))], at(1));
    assert_eq!(e.replies, [(1, Reply::Register(Err(RegisterError::Configured(ip("127.0.0.10")))))]);
    let e = m.apply([register(2, "nope.lb.example", request("127.0.0.20", 30))], at(1));
    assert_eq!(e.replies, [(2, Reply::Register(Err(RegisterError::UnknownService("nope.lb.example.".into()))))]);
}

#[test]
fn past_max_registrations_new_addresses_get_429_and_renewals_go_on() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    make_registration(&mut m, 2, "127.0.0.21", 6, at(1));
    let e = m.apply([register(3, "reg.lb.example", request("127.0.0.22", 30))], at(2));
    assert_eq!(e.replies, [(3, Reply::Register(Err(RegisterError::TooMany(2))))]);
    let e = m.apply([register(4, "reg.lb.example", request("127.0.0.21", 30))], at(2));
    assert!(matches!(the_write(&e).1, Write::Renew { lease: 6, .. }));
}

#[test]
fn renewals_while_the_store_is_down_are_refused() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    m.apply([Input::Store(Event::Down("etcd: unreachable".into()))], at(2));
    let e = m.apply([register(2, "reg.lb.example", request("127.0.0.20", 30))], at(2));
    assert!(e.writes.is_empty());
    assert_eq!(e.replies, [(2, Reply::Register(Err(RegisterError::Store("etcd: unreachable".into()))))]);
    assert_eq!(m.registrations.len(), 1, "nothing expires here while the store is away");
}

#[test]
fn a_failed_registration_leaves_no_target() {
    let mut m = model();
    let e = m.apply([register(1, "reg.lb.example", request("127.0.0.20", 30))], at(1));
    let (id, _) = the_write(&e);
    let e = m.apply([Input::Store(Event::Failed { id, reason: "too many writes in flight".into() })], at(1));
    assert!(e.view.is_none() && m.registrations.is_empty());
    assert!(matches!(&e.replies[..], [(1, Reply::Register(Err(RegisterError::Store(_))))]));
}

#[test]
fn deregistering_ends_the_lease_and_the_target_leaves() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    let e = m.apply(
        [Input::Call(2, Call::Deregister { service: name("reg.lb.example"), address: ip("127.0.0.20") })],
        at(2),
    );
    let (id, write) = the_write(&e);
    assert_eq!(write, Write::Deregister { service: name("reg.lb.example"), address: ip("127.0.0.20"), lease: Some(5) });
    let gone = Change::Registration { service: name("reg.lb.example"), address: ip("127.0.0.20"), lease: None };
    let e = m.apply([written(id, 20, vec![gone])], at(2));
    assert!(answered(e.view.as_ref().unwrap(), "reg.lb.example").is_empty());
    assert!(!e.probes.unwrap().contains_key(&key("127.0.0.20")), "its probe stops");
    assert_eq!(e.replies, [(2, Reply::Deregister(Ok(())))]);
}

#[test]
fn deregistering_what_is_not_registered_is_404() {
    let mut m = model();
    let e = m.apply(
        [Input::Call(1, Call::Deregister { service: name("reg.lb.example"), address: ip("127.0.0.20") })],
        at(1),
    );
    assert_eq!(e.replies, [(1, Reply::Deregister(Err(RegisterError::NotRegistered(ip("127.0.0.20")))))]);
    let e = m
        .apply([Input::Call(2, Call::Deregister { service: name("no.lb.example"), address: ip("127.0.0.20") })], at(1));
    assert!(matches!(&e.replies[..], [(2, Reply::Deregister(Err(RegisterError::UnknownService(_))))]));
}

// ---- store reports ----

#[test]
fn an_expired_lease_takes_its_target_and_probe_away() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    let gone = Change::Registration { service: name("reg.lb.example"), address: ip("127.0.0.20"), lease: None };
    let e = m.apply([Input::Store(Event::Changes { revision: 30, changes: vec![gone] })], at(31));
    assert!(answered(e.view.as_ref().unwrap(), "reg.lb.example").is_empty());
    assert!(e.probes.unwrap().is_empty() || !m.health.contains_key(&key("127.0.0.20")));
}

#[test]
fn a_watch_event_before_the_writes_own_report_is_applied_once() {
    let mut m = model();
    let e = m.apply([set_state(1, "www.lb.example", "127.0.0.10", AdminState::Drain)], at(1));
    let (id, _) = the_write(&e);
    let drain = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    let e = m.apply([Input::Store(Event::Changes { revision: 5, changes: vec![drain.clone()] })], at(1));
    assert!(e.view.is_some() && e.replies.is_empty());
    let before = rebuilds(&m);
    let e = m.apply([written(id, 5, vec![drain])], at(1));
    assert!(e.view.is_none(), "already applied");
    assert_eq!(rebuilds(&m), before);
    assert_eq!(e.replies, [(1, Reply::SetState(Ok(())))]);
}

#[test]
fn a_write_reported_after_a_newer_watch_event_does_not_undo_it() {
    let mut m = model();
    let e = m.apply([set_state(1, "www.lb.example", "127.0.0.10", AdminState::Drain)], at(1));
    let (id, _) = the_write(&e);
    let state = |s| Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: s };
    // another node set `down` after our drain; the watch brought both
    m.apply(
        [Input::Store(Event::Changes {
            revision: 6,
            changes: vec![state(AdminState::Drain), state(AdminState::Down)],
        })],
        at(1),
    );
    m.apply([written(id, 5, vec![state(AdminState::Drain)])], at(1));
    assert_eq!(m.admin_state(&name("www.lb.example"), ip("127.0.0.10")), AdminState::Down);
}

#[test]
fn a_write_reported_after_the_watch_applies_it_then() {
    let mut m = model();
    let e = m.apply([set_state(1, "www.lb.example", "127.0.0.10", AdminState::Drain)], at(1));
    let (id, _) = the_write(&e);
    let drain = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    let e = m.apply([written(id, 5, vec![drain.clone()])], at(1));
    assert!(e.view.is_some());
    let e = m.apply([Input::Store(Event::Changes { revision: 5, changes: vec![drain] })], at(1));
    assert!(e.view.is_none(), "the watch's copy changes nothing");
}

#[test]
fn a_snapshot_replaces_what_was_known() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    let drain = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    let e = m.apply([snapshot(40, vec![drain])], at(2));
    let view = e.view.unwrap();
    assert!(answered(&view, "reg.lb.example").is_empty());
    assert_eq!(answered(&view, "www.lb.example"), addresses(&["127.0.0.11"]));
}

#[test]
fn the_store_goes_down_and_a_snapshot_brings_it_back() {
    let mut m = model();
    let e = m.apply([Input::Store(Event::Down("etcd: refused".into())), Input::Tick], at(1));
    let status = e.status.unwrap();
    assert_eq!((status.store.up, status.store.error.as_deref()), (false, Some("etcd: refused")));
    assert!(!m.metrics.store_up.load(std::sync::atomic::Ordering::Relaxed));
    let e = m.apply([snapshot(9, vec![]), Input::Tick], at(2));
    assert!(e.status.unwrap().store.up);
    assert!(m.metrics.store_up.load(std::sync::atomic::Ordering::Relaxed));
}

#[test]
fn a_registration_the_config_refuses_is_skipped() {
    let mut m = model();
    let unknown = registered("gone.lb.example", request("127.0.0.20", 30), 3, at(30));
    let configured = registered("www.lb.example", request("127.0.0.10", 30), 4, at(30));
    let e = m.apply([snapshot(2, vec![unknown, configured])], at(1));
    assert!(m.registrations.is_empty());
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.10", "127.0.0.11"]));
}

#[test]
fn a_lease_seen_through_the_watch_expires_a_ttl_from_then() {
    let mut m = model();
    let change = Change::Registration {
        service: name("reg.lb.example"),
        address: ip("127.0.0.20"),
        lease: Some(Lease { request: request("127.0.0.20", 30), id: 9, expires_at: None }),
    };
    let e = m.apply([Input::Store(Event::Changes { revision: 2, changes: vec![change] }), Input::Tick], at(100));
    assert_eq!(e.status.unwrap().services[1].targets[0].expires_at, Some(unix_of(at(130))));
    let e = m.apply([verdict(&m, "127.0.0.20", true), Input::Tick], at(131));
    let status = e.status.unwrap();
    assert_eq!(status.services[1].targets[0].expires_at, None, "past it, another node may have renewed it");
    assert_eq!(status.services[1].targets[0].origin, "registration");
}

// ---- reloads ----

fn reload(m: &mut Model, id: CallId, config: &str) -> Effects {
    m.apply([Input::Call(id, Call::Reload(Box::new(loaded(config))))], at(5))
}

#[test]
fn a_drain_survives_a_reload() {
    let mut m = model();
    let drain = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    m.apply([Input::Store(Event::Changes { revision: 2, changes: vec![drain] })], at(1));
    let e = reload(&mut m, 1, &CONFIG.replace("policy = \"healthy\"\ncheck", "policy = \"all\"\ncheck"));
    assert_eq!(e.replies, [(1, Reply::Reload(Ok(())))]);
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]));
}

#[test]
fn a_reload_that_changes_listen_is_refused_and_the_config_kept() {
    let mut m = model();
    let e = reload(&mut m, 1, &CONFIG.replace("127.0.0.1:5353", "127.0.0.1:5354"));
    assert_eq!(e.replies, [(1, Reply::Reload(Err(ReloadError::NeedsRestart("server.listen".into()))))]);
    assert!(e.view.is_none() && !e.reread);
    assert_eq!(m.metrics.reloads_failed.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_reload_that_changes_tls_listen_needs_a_restart_and_a_new_certificate_does_not() {
    let tls = |address: &str, cert: &str| {
        let text =
            format!("[server]\ntls_listen = [\"{address}\"]\ntls_cert_file = \"{cert}\"\ntls_key_file = \"k\"\n");
        crate::config::from_toml(&text, std::path::Path::new("c.toml")).unwrap()
    };
    let moved = super::model::needs_restart(&tls("127.0.0.1:853", "c"), &tls("127.0.0.1:854", "c"));
    assert_eq!(moved, Err(ReloadError::NeedsRestart("server.tls_listen".into())));
    assert_eq!(super::model::needs_restart(&tls("127.0.0.1:853", "c"), &tls("127.0.0.1:853", "new")), Ok(()));
}

#[test]
fn a_reload_keeps_verdicts_of_unchanged_probes_and_restarts_changed_ones() {
    let mut m = model();
    m.apply([verdict(&m, "127.0.0.10", false)], at(1));
    let generation_before = generation(&m, "127.0.0.10");
    let e = reload(&mut m, 1, CONFIG);
    assert!(e.probes.is_none(), "the same probes keep running");
    assert_eq!(m.health[&key("127.0.0.10")].machine.health(), Health::Down);
    let e = reload(&mut m, 2, &CONFIG.replace("fall = 2", "fall = 3"));
    let probes = e.probes.unwrap();
    assert_ne!(probes[&key("127.0.0.10")].1, generation_before, "a changed check is a new probe run");
    assert_eq!(m.health[&key("127.0.0.10")].machine.health(), Health::Unknown);
    assert_eq!(m.metrics.reloads_ok.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn a_reload_asks_the_store_to_read_again() {
    let mut m = model();
    let e = reload(&mut m, 1, CONFIG);
    assert!(e.reread);
}

#[test]
fn a_reload_that_lists_a_registered_address_answers_it_once() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    let config = CONFIG.replace("max_registrations = 2", "max_registrations = 2\ntargets = [\"127.0.0.20\"]");
    let e = reload(&mut m, 2, &config);
    let view = e.view.unwrap();
    let targets = &view.service(&name("reg.lb.example")).unwrap().targets;
    assert_eq!(targets.len(), 1, "{targets:?}");
}

#[test]
fn a_reload_that_drops_a_service_drops_its_registrations_from_answers() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    let config = CONFIG.replace("name = \"reg.lb.example.\"", "name = \"other.lb.example.\"");
    let e = reload(&mut m, 2, &config);
    let view = e.view.unwrap();
    assert!(view.service(&name("reg.lb.example")).is_none());
    assert!(!m.health.contains_key(&key("127.0.0.20")));
}

// ---- probes of registrations ----

#[test]
fn a_registration_with_a_check_address_is_probed_there() {
    let mut m = model();
    let mut r = request("127.0.0.20", 30);
    r.check_address = Some(ip("127.0.0.120"));
    let change = registered("reg.lb.example", r, 5, at(30));
    let e = m.apply([Input::Store(Event::Changes { revision: 2, changes: vec![change] })], at(1));
    let probes = e.probes.unwrap();
    assert!(probes.contains_key(&key("127.0.0.120")) && !probes.contains_key(&key("127.0.0.20")));
    let e = m.apply([verdict(&m, "127.0.0.120", false)], at(2));
    assert!(e.view.unwrap().service(&name("reg.lb.example")).unwrap().targets.iter().all(|t| !t.healthy));
}

#[test]
fn calls_in_one_burst_are_answered_in_one_batch() {
    let mut m = model();
    let e = m.apply(
        [
            set_state(1, "www.lb.example", "127.0.0.10", AdminState::Drain),
            register(2, "reg.lb.example", request("127.0.0.20", 30)),
            set_state(3, "nope.lb.example", "127.0.0.10", AdminState::Drain),
        ],
        at(1),
    );
    assert_eq!(e.writes.len(), 2);
    assert_eq!(e.replies.len(), 1, "only the refusal is answered at once");
    let ids: Vec<u64> = e.writes.iter().map(|(id, _)| *id).collect();
    assert_ne!(ids[0], ids[1]);
}

// ---- readiness (SPEC §1 "Ready") ----

fn starting_model() -> Model {
    let mut m = model_of(&CONFIG.replace("startup_wait = \"0s\"", "startup_wait = \"3s\""));
    let e = m.apply([], at(0));
    assert!(!e.ready && !m.ready());
    m
}

fn not_ready(view: &View, service: &str) -> bool {
    view.service(&name(service)).unwrap().not_ready[0]
}

#[test]
fn a_service_with_an_unmeasured_probe_is_not_ready_until_its_verdict() {
    let mut m = starting_model();
    assert!(not_ready(m.view(), "www.lb.example") && !not_ready(m.view(), "reg.lb.example"));
    let e = m.apply([snapshot(1, vec![]), verdict(&m, "127.0.0.10", false)], at(1));
    assert!(!e.ready, "127.0.0.11 and 127.0.0.30 have no verdict yet");
    assert!(not_ready(e.view.as_ref().unwrap(), "www.lb.example"));
    let e = m.apply([verdict(&m, "127.0.0.11", true), verdict(&m, "127.0.0.30", true)], at(1));
    assert!(e.ready && m.ready());
    let view = e.view.unwrap();
    assert!(!not_ready(&view, "www.lb.example"));
    assert_eq!(answered(&view, "www.lb.example"), addresses(&["127.0.0.11"]), "the dead one was never answered");
}

#[test]
fn without_the_stores_snapshot_the_start_waits() {
    let mut m = starting_model();
    let verdicts =
        vec![verdict(&m, "127.0.0.10", true), verdict(&m, "127.0.0.11", true), verdict(&m, "127.0.0.30", true)];
    let e = m.apply(verdicts, at(1));
    assert!(!e.ready, "the store has not answered");
    let e = m.apply([snapshot(1, vec![])], at(1));
    assert!(e.ready);
}

#[test]
fn startup_wait_ends_the_start_whatever_is_missing() {
    let mut m = starting_model();
    let e = m.apply([Input::Tick], at(2));
    assert!(!e.ready);
    let e = m.apply([Input::Tick], at(3));
    assert!(e.ready);
    assert!(!not_ready(&e.view.unwrap(), "www.lb.example"), "unknown counts as healthy from now on");
}

#[test]
fn a_registration_read_back_is_waited_for_and_a_drained_target_is_not() {
    let mut m = starting_model();
    let reg = registered("reg.lb.example", request("127.0.0.20", 30), 7, at(30));
    let drain = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    let e = m.apply([snapshot(1, vec![reg, drain])], at(1));
    let view = e.view.unwrap();
    assert!(not_ready(&view, "reg.lb.example"));
    let e = m.apply([verdict(&m, "127.0.0.11", true), verdict(&m, "127.0.0.30", true)], at(1));
    assert!(!not_ready(e.view.as_ref().unwrap(), "www.lb.example"), "the drained target's probe does not hold it");
    assert!(not_ready(e.view.as_ref().unwrap(), "reg.lb.example"));
    let e = m.apply([verdict(&m, "127.0.0.10", true), verdict(&m, "127.0.0.20", true)], at(1));
    assert!(e.ready);
}

#[test]
fn a_target_that_appears_after_the_start_counts_as_healthy() {
    let mut m = model();
    let e = make_registration(&mut m, 1, "127.0.0.20", 5, at(10));
    assert!(!not_ready(e.view.as_ref().unwrap(), "reg.lb.example"));
    assert_eq!(answered(e.view.as_ref().unwrap(), "reg.lb.example"), addresses(&["127.0.0.20"]));
}

#[test]
fn without_the_store_a_start_falls_back_on_its_copy_until_the_store_answers() {
    let mut m = model_of(&CONFIG.replace("startup_wait = \"0s\"", "startup_wait = \"3s\""));
    let drain = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    m.apply([Input::Store(Event::Copy { saved_at: unix_of(at(0)) - 60.0, changes: vec![drain] })], at(0));
    let e = m.apply([Input::Tick], at(1));
    assert!(!e.ready && e.view.is_none(), "the copy waits for startup_wait");
    let e = m.apply([Input::Tick], at(3));
    assert!(e.ready);
    assert_eq!(answered(e.view.as_ref().unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]));
    let store = e.status.unwrap().store.clone();
    assert_eq!((store.up, store.copy_saved_at), (false, Some(unix_of(at(0)) - 60.0)));
    let e = m.apply([set_state(1, "www.lb.example", "127.0.0.10", AdminState::Auto)], at(4));
    assert!(
        matches!(&e.replies[..], [(1, Reply::SetState(Err(SetStateError::Store(_))))]),
        "nothing is written meanwhile"
    );
    let e = m.apply([snapshot(5, vec![]), Input::Tick], at(5));
    assert_eq!(answered(e.view.as_ref().unwrap(), "www.lb.example"), addresses(&["127.0.0.10", "127.0.0.11"]));
    assert_eq!(e.status.unwrap().store.copy_saved_at, None);
}

#[test]
fn a_store_that_answers_in_time_makes_the_copy_moot() {
    let mut m = model_of(&CONFIG.replace("startup_wait = \"0s\"", "startup_wait = \"3s\""));
    let drain = Change::State { service: name("www.lb.example"), address: ip("127.0.0.10"), state: AdminState::Drain };
    m.apply([Input::Store(Event::Copy { saved_at: 0.0, changes: vec![drain] }), snapshot(1, vec![])], at(0));
    let e = m.apply([Input::Tick], at(5));
    assert!(e.ready);
    assert_eq!(answered(e.view.as_ref().unwrap(), "www.lb.example"), addresses(&["127.0.0.10", "127.0.0.11"]));
}

#[test]
fn after_an_outage_a_registration_the_store_lost_stays_one_ttl_for_its_backend_to_renew() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    make_registration(&mut m, 2, "127.0.0.21", 6, at(1));
    m.apply([Input::Store(Event::Down("etcd: unreachable".into()))], at(2));
    // etcd expired both leases meanwhile; its snapshot after the outage has neither
    let e = m.apply([snapshot(50, vec![])], at(100));
    assert_eq!(answered(e.view.as_ref().unwrap(), "reg.lb.example"), addresses(&["127.0.0.20", "127.0.0.21"]));
    // one backend renews: its renewal registers afresh and it stays
    let e = m.apply([register(3, "reg.lb.example", request("127.0.0.20", 30))], at(110));
    let (id, write) = the_write(&e);
    assert!(matches!(write, Write::Renew { lease: 5, .. }), "{write:?}");
    let change = registered("reg.lb.example", request("127.0.0.20", 30), 9, at(140));
    m.apply([written(id, 51, vec![change])], at(110));
    let e = m.apply([Input::Tick], at(129));
    assert!(e.view.is_none(), "both kept within the TTL");
    let e = m.apply([Input::Tick], at(130));
    assert_eq!(answered(e.view.as_ref().unwrap(), "reg.lb.example"), addresses(&["127.0.0.20"]), "the other one went");
}

#[test]
fn a_snapshot_without_an_outage_drops_what_it_lacks_at_once() {
    let mut m = model();
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    let e = m.apply([snapshot(50, vec![])], at(2));
    assert!(answered(e.view.as_ref().unwrap(), "reg.lb.example").is_empty());
}

#[test]
fn tcp_connections_leave_descriptors_for_the_probes_and_the_admin_api() {
    let mut m = model_of(CONFIG);
    m.descriptors = Some(1000);
    let e = m.apply([snapshot(1, vec![])], at(0));
    // three probe keys: 2 × 3 + 64 + 256 kept
    assert_eq!(e.view.unwrap().tcp.max_connections, 1000 - 326);
    make_registration(&mut m, 1, "127.0.0.20", 5, at(1));
    assert_eq!(m.view().tcp.max_connections, 1000 - 328, "a new probe key takes two more");
    m.descriptors = Some(1_000_000);
    let e = reload(&mut m, 2, CONFIG);
    assert_eq!(e.view.unwrap().tcp.max_connections, 1024, "the configured limit when it fits");
}

// ---- load reports and templates (SPEC §9) ----

fn reported(m: &Model, address: &str, report: crate::health::Report) -> Input {
    let passed = report.state != crate::health::Reported::Down;
    let outcome =
        Outcome { passed, latency: Duration::from_millis(3), reason: format!("agent: {report}"), report: Some(report) };
    Input::Verdict(Verdict { key: key(address), generation: generation(m, address), outcome, at: at(1) })
}

fn report(percent: u8, state: crate::health::Reported) -> crate::health::Report {
    crate::health::Report { percent, state }
}

#[test]
fn a_changed_report_rebuilds_the_view_and_the_same_report_does_not() {
    use crate::health::Reported::*;
    let mut m = model();
    let e = m.apply([reported(&m, "127.0.0.10", report(100, Up))], at(1));
    assert!(e.view.is_none(), "full weight, as without a report");
    let e = m.apply([reported(&m, "127.0.0.10", report(25, Up))], at(2));
    let view = e.view.expect("a new weight answers at once");
    let targets = &view.service(&name("www.lb.example")).unwrap().targets;
    assert_eq!(targets.iter().map(|t| t.percent).collect::<Vec<_>>(), [25, 100]);
    assert!(m.apply([reported(&m, "127.0.0.10", report(25, Up))], at(3)).view.is_none());
    // a drain leaves it out while the other is left; both drained, both come back
    let e = m.apply([reported(&m, "127.0.0.10", report(100, Drain))], at(4));
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]));
    let e = m.apply([reported(&m, "127.0.0.11", report(0, Drain))], at(5));
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.10"]), "0% is weight 0");
    // an admin state wins
    let e = m.apply(
        [snapshot(
            2,
            vec![Change::State { service: name("www.lb.example"), address: ip("127.0.0.11"), state: AdminState::Up }],
        )],
        at(6),
    );
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]));
}

#[test]
fn a_reported_down_is_down_at_once_and_rise_brings_it_back() {
    use crate::health::Reported::*;
    let mut m = model();
    m.apply([verdict(&m, "127.0.0.10", true)], at(1));
    let e = m.apply([reported(&m, "127.0.0.10", report(100, Down))], at(2));
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example"), addresses(&["127.0.0.11"]), "fall = 2 not waited for");
    // rise = 2 (the default)
    assert!(
        m.apply([reported(&m, "127.0.0.10", report(50, Up))], at(3)).view.is_some_and(|v| answered(
            &v,
            "www.lb.example"
        )
        .len()
            == 1)
    );
    let e = m.apply([reported(&m, "127.0.0.10", report(50, Up))], at(4));
    assert_eq!(answered(&e.view.unwrap(), "www.lb.example").len(), 2);
}

const TEMPLATE: &str = r#"
[[templates]]
pattern = "*.svc.lb.example."
max_services = 1
max_registrations_total = 2
"#;

#[test]
fn a_template_makes_a_service_for_its_registrations_and_caps_them() {
    let mut m = model_of(&format!("{CONFIG}{TEMPLATE}"));
    m.apply([snapshot(1, vec![])], at(0));
    let e = m.apply([register(1, "api.svc.lb.example", request("127.0.0.40", 30))], at(1));
    let (id, write) = the_write(&e);
    assert!(matches!(write, Write::Register { .. }), "{write:?}");
    let made = registered("api.svc.lb.example", request("127.0.0.40", 30), 5, at(31));
    let e = m.apply([written(id, 2, vec![made])], at(1));
    assert_eq!(answered(e.view.as_ref().unwrap(), "api.svc.lb.example"), addresses(&["127.0.0.40"]));
    let refused = |e: &Effects| match &e.replies[..] {
        [(_, Reply::Register(Err(e)))] => e.clone(),
        other => panic!("{other:?}"),
    };
    let e = m.apply([register(2, "web.svc.lb.example", request("127.0.0.41", 30))], at(2));
    assert!(matches!(refused(&e), RegisterError::TemplateFull { ref cap, .. } if cap == "max_services = 1"));
    let e = m.apply([register(3, "api.svc.lb.example", request("127.0.0.41", 30))], at(2));
    assert_eq!(the_write(&e).0, 2, "a second registration of the service made");
    let e = m.apply([register(4, "a.b.svc.lb.example", request("127.0.0.41", 30))], at(2));
    assert!(matches!(refused(&e), RegisterError::UnknownService(_)));
    // its lease ends: the service goes
    let gone = Change::Registration { service: name("api.svc.lb.example"), address: ip("127.0.0.40"), lease: None };
    let e = m.apply([Input::Store(Event::Changes { revision: 3, changes: vec![gone] })], at(40));
    assert!(e.view.unwrap().service(&name("api.svc.lb.example")).is_none());
}

// ---- shared health (SPEC §10) ----

#[cfg(feature = "etcd")]
mod shared {
    use super::*;

    /// A node "a" sharing health with "b", 100 targets probed by both (0: every node).
    fn sharing_model() -> Model {
        let targets: Vec<String> = (1..=100).map(|i| format!("\"127.0.5.{i}\"")).collect();
        let config = CONFIG
            .replace("backend = \"memory\"", "backend = \"etcd\"\nendpoints = [\"http://127.0.0.1:1\"]")
            .replace("[server]\n", "[server]\nidentity = \"a\"\n")
            + &format!(
                "[health]\nshare = true\nprobers_per_target = 0\n[[services]]\nname = \"many.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\ntargets = [{}]\n",
                targets.join(", ")
            );
        let mut m = model_of(&config);
        let member = |id: &str| Change::Member { identity: id.into(), heartbeat: Some(1.0) };
        m.apply([snapshot(1, vec![member("a"), member("b")])], at(0));
        m
    }

    fn verdicts(e: &Effects) -> usize {
        e.writes.iter().filter(|(_, w)| matches!(w, Write::Verdict { .. })).count()
    }

    #[test]
    fn verdicts_go_out_at_most_64_at_a_time_and_only_when_they_change() {
        let mut m = sharing_model();
        let probes: Vec<Input> = (1..=100).map(|i| verdict(&m, &format!("127.0.5.{i}"), true)).collect();
        let e = m.apply(probes, at(1));
        assert_eq!(verdicts(&e), 64, "the rest wait for room");
        let written: Vec<Input> = e.writes.iter().map(|(id, _)| written(*id, 0, vec![])).collect();
        let e = m.apply(written, at(1));
        assert_eq!(verdicts(&e), 36);
        // the same verdict again publishes nothing
        let again: Vec<Input> = (1..=100).map(|i| verdict(&m, &format!("127.0.5.{i}"), true)).collect();
        assert_eq!(verdicts(&m.apply(again, at(2))), 0);
    }

    #[test]
    fn a_key_is_down_on_a_majority_of_its_probers_and_up_on_a_tie() {
        let mut m = sharing_model();
        let key = ProbeKey { check: "web".into(), address: ip("127.0.5.1") };
        let said = |node: &str, down: bool| Change::Verdict {
            key: key.clone(),
            node: node.into(),
            verdict: Some(crate::store::SharedVerdict { down, percent: None, drain: false, at: 1.0 }),
        };
        let e = m.apply([Input::Store(Event::Changes { revision: 2, changes: vec![said("b", true)] })], at(1));
        let view = e.view.unwrap();
        assert!(answered(&view, "many.lb.example").contains(&ip("127.0.5.1")), "one of two: ⌊2/2⌋ + 1 = 2 needed");
        let e = m.apply([Input::Store(Event::Changes { revision: 3, changes: vec![said("a", true)] })], at(1));
        assert!(!answered(&e.view.unwrap(), "many.lb.example").contains(&ip("127.0.5.1")), "two of two");
        // a stranger's verdict is ignored and counted
        let stranger = Change::Verdict {
            key: key.clone(),
            node: "ghost".into(),
            verdict: Some(crate::store::SharedVerdict { down: false, percent: None, drain: false, at: 1.0 }),
        };
        m.apply([Input::Store(Event::Changes { revision: 4, changes: vec![stranger] })], at(1));
        assert_eq!(m.shared.as_ref().unwrap().ignored, 1);
    }
}

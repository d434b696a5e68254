//! Services with `policy = "all"`: the full round-robin list, families, the cap, and
//! NODATA with its capped TTL.

use crate::harness::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

#[test]
fn the_full_list_rotates_one_position_per_query() {
    let s = TestServer::quickstart();
    let first = addresses(&s.ask("www.lb.example.", RecordType::A));
    assert_eq!(first.len(), 3);
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, ["127.0.0.10", "127.0.0.11", "127.0.0.12"]);
    let mut expected = first.clone();
    for _ in 0..6 {
        expected.rotate_left(1);
        assert_eq!(addresses(&s.ask("www.lb.example.", RecordType::A)), expected);
    }
    // TCP shares the same rotation
    expected.rotate_left(1);
    assert_eq!(addresses(&s.tcp(&query("www.lb.example.", RecordType::A))), expected);
}

#[test]
fn answers_carry_the_service_ttl_and_the_family_asked() {
    let s = TestServer::quickstart();
    let r = s.ask("www.lb.example.", RecordType::AAAA);
    assert_eq!(addresses(&r), ["::1"]);
    assert!(r.answers.iter().all(|a| a.ttl == 30 && a.record_type() == RecordType::AAAA));
    let r = s.ask("api.lb.example.", RecordType::A);
    assert!(r.answers.iter().all(|a| a.ttl == 60));
}

#[test]
fn max_answers_caps_the_rotated_list() {
    let s = TestServer::quickstart();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..4 {
        let got = addresses(&s.ask("api.lb.example.", RecordType::A));
        assert_eq!(got.len(), 2);
        seen.extend(got);
    }
    assert_eq!(seen.len(), 4, "every target is answered in turn: {seen:?}");
}

#[test]
fn no_candidate_of_the_family_is_nodata_with_the_soa_ttl_capped() {
    let s = TestServer::quickstart();
    for (name, rtype) in [("empty.lb.example.", RecordType::A), ("api.lb.example.", RecordType::AAAA)] {
        let r = s.ask(name, rtype);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative && r.answers.is_empty());
        let soa = &r.authorities[0];
        assert!(matches!(soa.data, RData::SOA(_)));
        let service_ttl = if name.starts_with("api") { 60 } else { 30 };
        assert_eq!(soa.ttl, service_ttl, "{name}: min(SOA TTL, MINIMUM = 300) capped at the service TTL");
    }
    // other types at a service name come from the zone file, or NODATA with the cap
    let r = s.ask("www.lb.example.", RecordType::TXT);
    assert_eq!(types(&r.answers), [RecordType::TXT]);
    let r = s.ask("www.lb.example.", RecordType::MX);
    assert_eq!((r.answers.len(), r.authorities[0].ttl), (0, 30));
}

#[test]
fn weight_zero_targets_answer_only_when_no_positive_weight_is_left() {
    let config = format!(
        "{}\n[[services]]\nname = \"zero.lb.example.\"\ntargets = [{{ address = \"127.0.0.7\", weight = 0 }}, \"127.0.0.8\", {{ address = \"::2\", weight = 0 }}]\n",
        quickstart_config()
    );
    let s = TestServer::start(&config);
    for _ in 0..3 {
        assert_eq!(addresses(&s.ask("zero.lb.example.", RecordType::A)), ["127.0.0.8"]);
    }
    assert_eq!(addresses(&s.ask("zero.lb.example.", RecordType::AAAA)), ["::2"]);
}

#[test]
fn ttl_zero_stays_zero() {
    let config = format!("{}\n[[services]]\nname = \"t0.lb.example.\"\nttl = 0\n", quickstart_config());
    let s = TestServer::start(&config);
    let r = s.ask("t0.lb.example.", RecordType::A);
    assert_eq!(r.authorities[0].ttl, 0, "NODATA at a ttl = 0 service");
}

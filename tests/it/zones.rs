//! SPEC §5.1 over the wire: referrals, DS at a cut, existence, wildcards, CNAME chains.

use crate::harness::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

#[test]
fn below_a_cut_gets_a_referral_with_glue_and_no_aa() {
    let s = TestServer::quickstart();
    for name in ["child.lb.example.", "www.child.lb.example."] {
        let r = s.ask(name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(!r.metadata.authoritative && r.answers.is_empty(), "{name}");
        assert_eq!(types(&r.authorities), [RecordType::NS]);
        assert_eq!(addresses(&crate::harness::additional_only(&r)), ["127.0.0.55"]);
    }
}

#[test]
fn ds_at_the_cut_is_authoritative() {
    let s = TestServer::quickstart();
    let r = s.ask("child.lb.example.", RecordType::DS);
    assert!(r.metadata.authoritative);
    assert_eq!(types(&r.answers), [RecordType::DS]);
}

#[test]
fn nxdomain_and_nodata_carry_the_soa_with_its_negative_ttl() {
    let s = TestServer::quickstart();
    let r = s.ask("nope.lb.example.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.metadata.authoritative);
    assert_eq!((types(&r.authorities), r.authorities[0].ttl), (vec![RecordType::SOA], 300));
    assert_eq!(r.authorities[0].name.to_ascii(), "lb.example.");
    let r = s.ask("static.lb.example.", RecordType::MX);
    assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0));
    assert_eq!(r.authorities[0].ttl, 300);
}

#[test]
fn empty_non_terminals_are_nodata_not_nxdomain() {
    let s = TestServer::quickstart();
    for name in ["_tcp.lb.example.", "wild.lb.example."] {
        let r = s.ask(name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(r.answers.is_empty());
    }
}

#[test]
fn wildcards_synthesise_with_the_query_name_as_owner() {
    let s = TestServer::quickstart();
    let r = s.ask("Anything.Wild.lb.example.", RecordType::A);
    assert_eq!(addresses(&r), ["127.0.0.99"]);
    assert_eq!(r.answers[0].name.to_ascii(), "Anything.Wild.lb.example.");
    let r = s.ask("a.b.wild.lb.example.", RecordType::TXT);
    assert_eq!(types(&r.answers), [RecordType::TXT]);
    let r = s.ask("x.wild.lb.example.", RecordType::MX);
    assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0));
}

fn chain_server() -> TestServer {
    let zone = "$ORIGIN c.test.\n$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 127.0.0.1\n\
        loop1 CNAME loop2\nloop2 CNAME loop1\nout CNAME www.elsewhere.example.\ndead CNAME missing\n\
        s0 CNAME s1\ns1 CNAME s2\ns2 CNAME s3\ns3 CNAME s4\ns4 CNAME s5\ns5 CNAME s6\ns6 CNAME s7\ns7 CNAME s8\ns8 CNAME s9\ns9 A 127.0.0.9\n\
        tosvc CNAME svc\n*.wc CNAME svc\n";
    let config = "[[zones]]\norigin = \"c.test.\"\nfile = \"c.zone\"\n[[services]]\nname = \"svc.c.test.\"\ntargets = [\"127.0.0.20\"]\n";
    TestServer::with_files(config, &[("c.zone", zone)])
}

#[test]
fn cname_chains_are_followed_inside_the_zone_to_a_computed_service() {
    let s = chain_server();
    let r = s.udp(&with_ecs(query("tosvc.c.test.", RecordType::A), "10.9.0.0/16"));
    assert_eq!(types(&r.answers), [RecordType::CNAME, RecordType::A]);
    assert_eq!(addresses(&r), ["127.0.0.20"]);
    assert_eq!(ecs_of(&r).unwrap().2, 0, "scope: the longest of the steps");
    let r = s.ask("x.wc.c.test.", RecordType::A);
    assert_eq!(r.answers[0].name.to_ascii(), "x.wc.c.test.");
    assert_eq!(addresses(&r), ["127.0.0.20"]);
}

#[test]
fn chains_stop_at_loops_at_eight_steps_and_at_the_zone_edge() {
    let s = chain_server();
    let r = s.ask("loop1.c.test.", RecordType::A);
    assert_eq!(types(&r.answers), [RecordType::CNAME, RecordType::CNAME]);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let r = s.ask("s0.c.test.", RecordType::A);
    assert_eq!(r.answers.len(), 8, "at most 8 steps");
    assert!(r.answers.iter().all(|a| a.record_type() == RecordType::CNAME));
    let r = s.ask("s2.c.test.", RecordType::A);
    assert_eq!(types(&r.answers).last(), Some(&RecordType::A), "7 CNAMEs then the A");
    let r = s.ask("out.c.test.", RecordType::A);
    assert_eq!((types(&r.answers), r.metadata.response_code), (vec![RecordType::CNAME], ResponseCode::NoError));
}

#[test]
fn a_chain_ending_nowhere_takes_the_last_steps_rcode() {
    let s = chain_server();
    let r = s.ask("dead.c.test.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(types(&r.answers), [RecordType::CNAME]);
    assert_eq!(types(&r.authorities), [RecordType::SOA]);
    let RData::CNAME(target) = &r.answers[0].data else { panic!() };
    assert_eq!(target.0.to_ascii(), "missing.c.test.");
}

#[test]
fn cname_in_the_quickstart_reaches_the_service() {
    let s = TestServer::quickstart();
    let r = s.ask("alias.lb.example.", RecordType::A);
    assert_eq!(types(&r.answers), [RecordType::CNAME, RecordType::A, RecordType::A, RecordType::A]);
    let r = s.ask("docs.lb.example.", RecordType::AAAA);
    assert_eq!(addresses(&r), ["::1"]);
}

/// A delegation to 24 name servers elsewhere in the zone (sibling glue, RFC 9471)
/// fits a 1,232-byte reply as in NSD and Knot: the NS records whole, as much glue as
/// fits, no TC. Glue below the cut is a must: when it does not fit, TC.
#[test]
fn a_large_referral_fits_1232_bytes_and_only_in_domain_glue_forces_tc() {
    let mut zone = ZONE.to_string();
    for i in 0..24 {
        zone.push_str(&format!(
            "big IN NS ns{i}.hosting.lb.example.
"
        ));
        zone.push_str(&format!(
            "ns{i}.hosting IN A 127.0.9.{i}
ns{i}.hosting IN AAAA ::1
"
        ));
        zone.push_str(&format!(
            "deep IN NS ns{i}.deep.lb.example.
"
        ));
        zone.push_str(&format!(
            "ns{i}.deep IN A 127.0.10.{i}
ns{i}.deep IN AAAA ::1
"
        ));
    }
    let s = TestServer::with_files(&quickstart_config(), &[("lb.example.zone", &zone)]);
    let reply = s.udp(&with_edns(query("www.big.lb.example.", RecordType::A), 1232));
    assert!(!reply.metadata.truncation, "sibling glue that does not fit is left out, without TC");
    assert_eq!(reply.authorities.len(), 24);
    let glue = additional_only(&reply).answers.len();
    // every name compressed (RFC 1035 §4.1.4): the NS owners and the glue owners are
    // pointers, each NS name "nsN" and a pointer; 499 bytes to the last NS, 11 for the
    // OPT, and 16 + 28 bytes per A and AAAA pair leave room for 33 glue records
    assert!((33..48).contains(&glue), "{glue} glue records");
    assert!(reply.to_vec().unwrap().len() <= 1232);
    // over TCP, all of it
    let reply = s.tcp(&query("www.big.lb.example.", RecordType::A));
    assert_eq!(additional_only(&reply).answers.len(), 48);
    // in-domain glue that does not fit: TC
    let reply = s.udp(&with_edns(query("www.deep.lb.example.", RecordType::A), 1232));
    assert!(reply.metadata.truncation);
    assert_eq!(s.tcp(&query("www.deep.lb.example.", RecordType::A)).additionals.len(), 48);
}

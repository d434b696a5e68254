//! SPEC §5 over real sockets: flags, EDNS, ECS, truncation, error codes, CHAOS.

use crate::harness::{raw, *};
use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use std::time::Duration;

const A: u16 = 1;
const IN: u16 = 1;

#[test]
fn answers_are_authoritative_with_rd_copied_and_ra_ad_clear() {
    let s = TestServer::quickstart();
    let mut q = query("www.lb.example.", RecordType::A);
    q.metadata.checking_disabled = true;
    let r = s.udp(&q);
    let m = &r.metadata;
    assert!(m.authoritative && m.recursion_desired && m.checking_disabled);
    assert!(!m.recursion_available && !m.authentic_data && !m.truncation);
    assert_eq!(r.metadata.id, q.metadata.id);
    let mut q = query("static.lb.example.", RecordType::A);
    q.metadata.recursion_desired = false;
    assert!(!s.udp(&q).metadata.recursion_desired);
}

#[test]
fn names_outside_our_zones_are_refused() {
    let s = TestServer::quickstart();
    for name in ["example.org.", "example.", "."] {
        let r = s.ask(name, RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!r.metadata.authoritative && r.answers.is_empty());
    }
}

#[test]
fn responses_are_dropped_without_reply() {
    let s = TestServer::quickstart();
    let mut q = query("www.lb.example.", RecordType::A);
    q.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert!(udp_raw(s.addr, &q.to_vec().unwrap(), Duration::from_millis(300)).is_none());
    assert!(udp_raw(s.addr, &[1, 2, 3], Duration::from_millis(300)).is_none(), "shorter than a header");
}

#[test]
fn opt_is_echoed_only_when_asked_with_our_size_and_do_copied() {
    let s = TestServer::quickstart();
    assert!(s.ask("www.lb.example.", RecordType::A).edns.is_none());
    let mut q = with_edns(query("www.lb.example.", RecordType::A), 4096);
    q.edns.as_mut().unwrap().set_dnssec_ok(true);
    q.edns.as_mut().unwrap().options_mut().insert(EdnsOption::Unknown(65001, vec![1, 2]));
    let r = s.udp(&q);
    let e = r.edns.as_ref().expect("OPT in the reply");
    assert_eq!((e.max_payload(), e.version()), (1232, 0));
    assert!(e.flags().dnssec_ok);
    assert!(e.option(EdnsCode::Unknown(65001)).is_none(), "unknown options are not echoed");
}

/// A zone with one name whose TXT RRset is about 2 KB.
fn big_server() -> TestServer {
    let mut zone =
        String::from("$ORIGIN big.test.\n$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 127.0.0.1\nsmall TXT \"x\"\n");
    for i in 0..40 {
        zone.push_str(&format!("big TXT \"{i:02}-{}\"\n", "y".repeat(40)));
    }
    let mut config = String::from("[[zones]]\norigin = \"big.test.\"\nfile = \"big.zone\"\n");
    config.push_str("[[services]]\nname = \"many.big.test.\"\nmax_answers = 64\ntargets = [");
    for i in 0..64 {
        config.push_str(&format!("\"::1:{i:x}\", "));
    }
    config.push_str("]\n");
    TestServer::with_files(&config, &[("big.zone", &zone)])
}

#[test]
fn static_data_too_big_for_udp_gets_tc_with_header_question_and_opt() {
    let s = big_server();
    for payload in [None, Some(512), Some(1232), Some(4096)] {
        let q = query("big.big.test.", RecordType::TXT);
        let q = match payload {
            Some(p) => with_edns(q, p),
            None => q,
        };
        let bytes = udp_raw(s.addr, &q.to_vec().unwrap(), Duration::from_secs(2)).unwrap();
        let limit = payload.map_or(512, |p| p.clamp(512, 1232)) as usize;
        assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
        let r = hickory_proto::op::Message::from_vec(&bytes).unwrap();
        assert!(r.metadata.truncation, "{payload:?}");
        assert_eq!((r.queries.len(), r.answers.len(), r.authorities.len()), (1, 0, 0));
        assert_eq!(r.edns.is_some(), payload.is_some(), "OPT kept on TC");
    }
    let r = s.tcp(&query("big.big.test.", RecordType::TXT));
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 40, "TCP carries the whole RRset");
}

#[test]
fn computed_answers_are_cut_to_fit_and_never_truncated() {
    let s = big_server();
    let r = s.ask("many.big.test.", RecordType::AAAA);
    assert!(!r.metadata.truncation);
    let n = r.answers.len();
    assert!(n > 5 && n < 64, "cut to what fits in 512 bytes: {n}");
    let r = s.udp(&with_edns(query("many.big.test.", RecordType::AAAA), 1232));
    assert!(!r.metadata.truncation && r.answers.len() > n);
    let r = s.tcp(&query("many.big.test.", RecordType::AAAA));
    assert_eq!(r.answers.len(), 64);
    let r = s.ask("many.big.test.", RecordType::ANY);
    assert!(!r.metadata.truncation && r.answers.len() == n, "ANY: the AAAA answer, no IPv4 candidate");
}

#[test]
fn ecs_is_echoed_with_scope_zero_and_only_when_sent() {
    let s = TestServer::quickstart();
    for (name, rtype) in [
        ("www.lb.example.", RecordType::A),
        ("static.lb.example.", RecordType::A),
        ("nope.lb.example.", RecordType::A),
        ("empty.lb.example.", RecordType::A),
    ] {
        let r = s.udp(&with_ecs(query(name, rtype), "10.1.2.0/24"));
        assert_eq!(ecs_of(&r), Some(("10.1.2.0".parse().unwrap(), 24, 0)), "{name}");
        let r = s.udp(&with_edns(query(name, rtype), 1232));
        assert_eq!(ecs_of(&r), None, "{name}");
    }
    let r = s.udp(&with_ecs(query("www.lb.example.", RecordType::AAAA), "2001:db8:1::/48"));
    assert_eq!(ecs_of(&r), Some(("2001:db8:1::".parse().unwrap(), 48, 0)));
    let r = s.udp(&with_ecs(query("www.lb.example.", RecordType::A), "0.0.0.0/0"));
    assert_eq!(ecs_of(&r), Some(("0.0.0.0".parse().unwrap(), 0, 0)));
}

fn raw_reply(s: &TestServer, packet: &[u8]) -> Vec<u8> {
    udp_raw(s.addr, packet, Duration::from_secs(2)).expect("a reply")
}

#[test]
fn malformed_ecs_opt_and_question_counts_get_formerr() {
    let s = TestServer::quickstart();
    let q = [("www.lb.example.", A, IN)];
    let root = raw::name(".");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("ECS family 0", raw::query(0x0100, &q, [&[], &[], &[raw::opt(&root, 0, &raw::ecs(0, 24, &[10, 1, 2]))]])),
        ("ECS /33", raw::query(0x0100, &q, [&[], &[], &[raw::opt(&root, 0, &raw::ecs(1, 33, &[10, 1, 2, 3, 4]))]])),
        (
            "ECS bits past prefix",
            raw::query(0x0100, &q, [&[], &[], &[raw::opt(&root, 0, &raw::ecs(1, 20, &[10, 1, 0x21]))]]),
        ),
        ("ECS address too long", raw::query(0x0100, &q, [&[], &[], &[raw::opt(&root, 0, &raw::ecs(1, 8, &[10, 1]))]])),
        ("two OPT", raw::query(0x0100, &q, [&[], &[], &[raw::opt(&root, 0, &[]), raw::opt(&root, 0, &[])]])),
        ("OPT in answers", raw::query(0x0100, &q, [&[raw::opt(&root, 0, &[])], &[], &[]])),
        ("OPT not at root", raw::query(0x0100, &q, [&[], &[], &[raw::opt(&raw::name("x."), 0, &[])]])),
        ("no question", raw::query(0x0100, &[], [&[], &[], &[]])),
        ("two questions", raw::query(0x0100, &[q[0], q[0]], [&[], &[], &[]])),
        ("QTYPE 0", raw::query(0x0100, &[("www.lb.example.", 0, IN)], [&[], &[], &[]])),
        ("QTYPE OPT", raw::query(0x0100, &[("www.lb.example.", 41, IN)], [&[], &[], &[]])),
        ("truncated question", raw::query(0x0100, &q, [&[], &[], &[]])[..20].to_vec()),
    ];
    for (what, packet) in cases {
        let reply = raw_reply(&s, &packet);
        let (rcode, flags, ..) = raw::summary(&reply);
        assert_eq!(rcode, 1, "{what}: FORMERR");
        assert_eq!(&reply[..2], &[0x12, 0x34], "{what}: id copied");
        assert!(flags & 0x8000 != 0 && flags & 0x0100 != 0, "{what}: QR set, RD copied");
    }
}

/// An A record with `rdata`, owned by the root.
fn a_record(rdata: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 1, 0, 1, 0, 0, 0, 60];
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    out
}

#[test]
fn every_record_is_checked_and_formerr_carries_the_question_and_the_opt() {
    let s = TestServer::quickstart();
    let q = [("www.lb.example.", A, IN)];
    let opt = raw::opt(&raw::name("."), 0, &[]);
    let mut trailing = raw::query(0x0100, &q, [&[], &[], std::slice::from_ref(&opt)]);
    trailing.extend_from_slice(&[1, 2, 3]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an A record of 3 bytes", raw::query(0x0100, &q, [&[], &[], &[a_record(&[1, 2, 3]), opt.clone()]])),
        (
            "an A record of 5 bytes",
            raw::query(0x0100, &q, [&[], &[a_record(&[1, 2, 3, 4, 5])], std::slice::from_ref(&opt)]),
        ),
        ("bytes after the last record", trailing),
    ];
    for (what, packet) in cases {
        for (transport, reply) in [("UDP", raw_reply(&s, &packet)), ("TCP", tcp_raw(s.addr, &packet))] {
            let (rcode, flags, qdcount, ancount, arcount) = raw::summary(&reply);
            assert_eq!(rcode, 1, "{what} over {transport}: FORMERR");
            assert!(flags & 0x0100 != 0, "{what}: RD copied");
            assert_eq!((qdcount, ancount, arcount), (1, 0, 1), "{what} over {transport}: the question and an OPT");
        }
    }
    // a well-formed record of a known type is fine
    let fine = raw::query(0x0100, &q, [&[], &[], &[a_record(&[1, 2, 3, 4]), opt]]);
    assert_eq!(raw::summary(&raw_reply(&s, &fine)).0, 0);
}

#[test]
fn a_query_larger_than_4096_bytes_is_read_whole() {
    let s = TestServer::quickstart();
    // EDNS padding (option 12) of 5,000 bytes
    let mut padding = vec![0, 12];
    padding.extend_from_slice(&5000u16.to_be_bytes());
    padding.extend(std::iter::repeat_n(0, 5000));
    let packet =
        raw::query(0x0100, &[("static.lb.example.", A, IN)], [&[], &[], &[raw::opt(&raw::name("."), 0, &padding)]]);
    assert!(packet.len() > 5000);
    let reply = raw_reply(&s, &packet);
    let (rcode, _, qdcount, ancount, _) = raw::summary(&reply);
    assert_eq!((rcode, qdcount, ancount), (0, 1, 1), "answered");
}

#[test]
fn other_opcodes_get_rd_and_cd_clear() {
    let s = TestServer::quickstart();
    // opcode 2 (STATUS) with RD and CD set
    let packet = raw::query(0x1110, &[("www.lb.example.", A, IN)], [&[], &[], &[]]);
    let (rcode, flags, ..) = raw::summary(&raw_reply(&s, &packet));
    assert_eq!(rcode, 4, "NOTIMP");
    assert_eq!(flags & 0x0110, 0, "RD and CD clear: {flags:04x}");
    assert_eq!(flags & 0x7800, 0x1000, "the opcode echoed");
}

#[test]
fn edns_version_above_zero_gets_badvers_before_any_option_error() {
    let s = TestServer::quickstart();
    let q = [("www.lb.example.", A, IN)];
    let root = raw::name(".");
    for options in [vec![], raw::ecs(0, 24, &[10, 1, 2])] {
        let reply = raw_reply(&s, &raw::query(0x0100, &q, [&[], &[], &[raw::opt(&root, 1, &options)]]));
        let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
        assert_eq!(u16::from(m.metadata.response_code), 16, "BADVERS (hickory calls 16 BADSIG)");
        let e = m.edns.as_ref().expect("OPT carries the extended RCODE");
        assert_eq!(e.version(), 0);
        assert!(m.answers.is_empty() && e.options().as_ref().is_empty());
    }
}

#[test]
fn opcodes_types_and_classes_we_do_not_serve() {
    let s = TestServer::quickstart();
    let mut notify = query("www.lb.example.", RecordType::A);
    notify.metadata.op_code = OpCode::Notify;
    assert_eq!(s.udp(&notify).metadata.response_code, ResponseCode::NotImp);
    let mut update = query("www.lb.example.", RecordType::A);
    update.metadata.op_code = OpCode::Update;
    assert_eq!(s.udp(&update).metadata.response_code, ResponseCode::NotImp);
    for t in [RecordType::AXFR, RecordType::IXFR] {
        assert_eq!(s.ask("lb.example.", t).metadata.response_code, ResponseCode::Refused, "{t}");
        assert_eq!(s.tcp(&query("lb.example.", t)).metadata.response_code, ResponseCode::Refused, "{t} over TCP");
    }
    for t in [128u16, 249, 250, 253, 254] {
        let r = s.ask("lb.example.", RecordType::from(t));
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp, "meta type {t}");
    }
    let r = s.ask("static.lb.example.", RecordType::from(65000));
    assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0), "unknown type: NODATA");
    assert_eq!(types(&r.authorities), [RecordType::SOA]);
    for class in [DNSClass::HS, DNSClass::NONE, DNSClass::ANY] {
        let r = s.udp(&query_class("www.lb.example.", RecordType::A, class));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{class:?}");
    }
}

#[test]
fn question_case_is_echoed_as_sent() {
    let s = TestServer::quickstart();
    for name in ["WwW.Lb.ExAmPlE.", "STATIC.lb.EXAMPLE."] {
        let r = s.ask(name, RecordType::A);
        assert_eq!(r.queries[0].name().to_ascii(), name);
        assert!(r.answers.iter().all(|a| a.name.to_ascii() == name), "owner spelled as asked");
    }
}

#[test]
fn chaos_identity_and_nsid() {
    let s = TestServer::quickstart();
    for name in ["id.server.", "hostname.bind.", "ID.SERVER."] {
        let r = s.udp(&with_ecs(query_class(name, RecordType::TXT, DNSClass::CH), "10.0.0.0/8"));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(!r.metadata.authoritative);
        let RData::TXT(txt) = &r.answers[0].data else { panic!("TXT") };
        assert_eq!(txt.to_string(), "steerdns-quickstart");
        assert_eq!(ecs_of(&r), None, "no ECS on CHAOS");
    }
    let r = s.udp(&query_class("version.bind.", RecordType::TXT, DNSClass::CH));
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let mut q = with_edns(query("www.lb.example.", RecordType::A), 1232);
    q.edns.as_mut().unwrap().options_mut().insert(EdnsOption::NSID(NSIDPayload::new(vec![]).unwrap()));
    let r = s.udp(&q);
    let Some(EdnsOption::NSID(nsid)) = r.edns.as_ref().unwrap().option(EdnsCode::NSID) else { panic!("NSID") };
    assert_eq!(nsid.as_ref(), b"steerdns-quickstart");
}

#[test]
fn any_at_a_static_name_is_one_rrset() {
    let s = TestServer::quickstart();
    let r = s.ask("static.lb.example.", RecordType::ANY);
    assert_eq!(types(&r.answers), [RecordType::A]);
    let r = s.ask("www.lb.example.", RecordType::ANY);
    assert_eq!(addresses(&r).len(), 3, "a service's ANY is its A answer");
    assert!(r.answers.iter().all(|a| a.record_type() == RecordType::A));
}

#[test]
fn every_listen_address_serves_udp_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.example.zone"), ZONE).unwrap();
    std::fs::write(dir.path().join("c.toml"), quickstart_config()).unwrap();
    let path = dir.path().join("c.toml");
    let s = TestServer::start_on(dir, path, &["127.0.0.1:0".parse().unwrap(), "127.0.0.2:0".parse().unwrap()]);
    assert_eq!(s.addrs.len(), 2);
    for addr in &s.addrs {
        let r = udp_exchange(*addr, &query("static.lb.example.", RecordType::A)).unwrap();
        assert_eq!(addresses(&r), ["127.0.0.80"], "UDP {addr}");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp_send(&mut stream, &query("static.lb.example.", RecordType::A).to_vec().unwrap());
        let r = hickory_proto::op::Message::from_vec(&tcp_read(&mut stream).unwrap()).unwrap();
        assert_eq!(addresses(&r), ["127.0.0.80"], "TCP {addr}");
    }
}

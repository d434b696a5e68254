use super::*;
use hickory_proto::dnssec::TBS;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::dnssec::rdata::{DNSKEY, NSEC, RRSIG};
use hickory_proto::dnssec::{PublicKeyBuf, Verifier};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record};
use hickory_proto::serialize::binary::BinEncodable;
use hickory_proto::serialize::binary::{BinDecoder, Restrict};

fn rdata(rtype: RecordType, bytes: &[u8]) -> DNSSECRData {
    match RData::read(&mut BinDecoder::new(bytes), rtype, Restrict::new(bytes.len() as u16)).unwrap() {
        RData::DNSSEC(data) => data,
        other => panic!("not DNSSEC: {other:?}"),
    }
}

fn rrsig(bytes: &[u8]) -> RRSIG {
    match rdata(RecordType::RRSIG, bytes) {
        DNSSECRData::RRSIG(r) => r,
        other => panic!("not an RRSIG: {other:?}"),
    }
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn zone_keys(algorithm: u8) -> (tempfile::TempDir, ZoneKeys) {
    let dir = tempfile::tempdir().unwrap();
    let origin = name("lb.example.");
    let made = generate(&origin, algorithm, dir.path()).unwrap();
    // read back from the files, as the server does
    let key = read_key(&made.file, &origin).unwrap();
    assert_eq!((key.tag, &key.dnskey), (made.tag, &made.dnskey));
    (dir, ZoneKeys::new(origin, vec![key], vec![0]))
}

fn a_records(addresses: &[[u8; 4]]) -> Vec<Record> {
    addresses
        .iter()
        .map(|a| Record::from_rdata(name("www.lb.example."), 30, RData::A(A::from(std::net::Ipv4Addr::from(*a)))))
        .collect()
}

fn verify(keys: &ZoneKeys, owner: &Name, rrsig: &[u8], records: &[Record]) {
    let rrsig = self::rrsig(rrsig);
    let key = &keys.keys[0];
    let dnskey = DNSKEY::with_flags(
        u16::from_be_bytes([key.dnskey[0], key.dnskey[1]]),
        PublicKeyBuf::new(key.dnskey[4..].to_vec(), Algorithm::from_u8(key.algorithm)),
    );
    dnskey.verify_rrsig(owner, DNSClass::IN, &rrsig, records.iter()).unwrap();
    assert_eq!(rrsig.input().key_tag, dnskey.calculate_key_tag().unwrap());
}

#[test]
fn signatures_of_both_algorithms_verify_with_hickory() {
    for algorithm in [ECDSAP256, ED25519] {
        let (_dir, keys) = zone_keys(algorithm);
        let records = a_records(&[[127, 0, 0, 1], [127, 0, 0, 2]]);
        let rdatas: Vec<Vec<u8>> = records.iter().map(|r| r.data.to_bytes().unwrap()).collect();
        let owner = name("WWW.lb.example.");
        let rrset = RRset { owner: &owner, rtype: 1, class: 1, ttl: 30, rdatas: rdatas.iter().map(|r| &r[..]) };
        let signatures = Signatures::new(100, 100);
        let signed = signatures.sign(&keys, rrset, now()).unwrap();
        verify(&keys, &name("www.lb.example."), &signed.rrsigs[0], &records);
    }
}

#[test]
fn a_rotation_reuses_the_signature_and_another_ttl_does_not() {
    let (_dir, keys) = zone_keys(ED25519);
    let owner = name("www.lb.example.");
    let (a, b) = ([127u8, 0, 0, 1], [127u8, 0, 0, 2]);
    let signatures = Signatures::new(100, 100);
    let sign = |ttl, rdatas: [&[u8]; 2]| {
        signatures
            .sign(&keys, RRset { owner: &owner, rtype: 1, class: 1, ttl, rdatas: rdatas.into_iter() }, now())
            .unwrap()
    };
    let first = sign(30, [&a, &b]);
    let rotated = sign(30, [&b, &a]);
    assert!(Arc::ptr_eq(&first, &rotated));
    let halved = sign(15, [&a, &b]);
    assert!(!Arc::ptr_eq(&first, &halved));
    assert_eq!(signatures.counters.made.load(Relaxed), 2);
    assert_eq!(signatures.counters.cached.load(Relaxed), 1);
}

/// Signs the A record 127.0.0.`i` at www.lb.example. at `now`.
fn sign_address(signatures: &Signatures, keys: &ZoneKeys, i: u8, now: u32) -> Result<Arc<Signed>, Unsigned> {
    let owner = name("www.lb.example.");
    let rdata = [127, 0, 0, i];
    signatures.sign(keys, RRset { owner: &owner, rtype: 1, class: 1, ttl: 30, rdatas: [&rdata[..]].into_iter() }, now)
}

#[test]
fn the_budget_refuses_past_its_second_and_opens_again_in_the_next() {
    let (_dir, keys) = zone_keys(ED25519);
    let signatures = Signatures::new(100, 3);
    let sign = |i: u8, now| sign_address(&signatures, &keys, i, now);
    let t = 1_800_000_000;
    assert!((1..=3).all(|i| sign(i, t).is_ok()));
    assert_eq!(sign(4, t).unwrap_err(), Unsigned::Budget);
    // a cached one costs nothing
    assert!(sign(1, t).is_ok());
    assert!(sign(4, t + 1).is_ok());
    assert_eq!(signatures.counters.refused.load(Relaxed), 1);
}

#[test]
fn a_signature_past_half_its_life_is_made_again_and_kept_when_the_budget_refuses() {
    let (_dir, keys) = zone_keys(ED25519);
    let signatures = Signatures::new(100, 1);
    let sign = |i: u8, now| sign_address(&signatures, &keys, i, now);
    let t = 1_800_000_000;
    let life = (VALIDITY + INCEPTION_BACK) / 2;
    let first = sign(1, t).unwrap();
    let half = t - INCEPTION_BACK + life;
    assert!(Arc::ptr_eq(&first, &sign(1, half - 1).unwrap()));
    let again = sign(1, half).unwrap();
    assert!(!Arc::ptr_eq(&first, &again));
    // inception an hour back, expiry seven days on
    let rrsig = self::rrsig(&again.rrsigs[0]);
    assert_eq!(rrsig.input().sig_inception.get(), half - 3600);
    assert_eq!(rrsig.input().sig_expiration.get(), half + 7 * 86_400);
    // past half its life again, in a second whose budget another RRset has spent
    let later = half - INCEPTION_BACK + life;
    sign(2, later).unwrap();
    assert!(Arc::ptr_eq(&again, &sign(1, later).unwrap()));
    assert_eq!(signatures.counters.refused.load(Relaxed), 1);
}

#[test]
fn the_ds_is_what_hickory_computes_from_the_dnskey() {
    let (_dir, keys) = zone_keys(ECDSAP256);
    let key = &keys.keys[0];
    let dnskey = DNSKEY::with_flags(257, PublicKeyBuf::new(key.dnskey[4..].to_vec(), Algorithm::ECDSAP256SHA256));
    let digest = dnskey.to_digest(&keys.origin, hickory_proto::dnssec::DigestType::SHA256).unwrap();
    assert_eq!(&key.ds(&keys.origin)[4..], digest.as_ref());
    assert_eq!(key.tag, dnskey.calculate_key_tag().unwrap());
    assert!(key.ds_text(&keys.origin).starts_with(&format!("lb.example. IN DS {} 13 2 ", key.tag)));
}

#[test]
fn a_compact_nsec_is_the_next_name_and_the_bitmap_hickory_writes() {
    let mut types = vec![1, 28, 16, 257];
    let rdata = compact_nsec(&name("Nope.LB.example."), &mut types);
    let next = b"\x01\x00\x04nope\x02lb\x07example\x00";
    assert_eq!(&rdata[..next.len()], next);
    // hickory cannot hold a \000 label: compare the bitmap behind a plain next name
    let want = [RecordType::A, RecordType::TXT, RecordType::AAAA, RecordType::RRSIG, RecordType::NSEC, RecordType::CAA];
    let theirs = NSEC::new(Name::root(), want).to_bytes().unwrap();
    assert_eq!(&rdata[next.len()..], &theirs[1..]);
}

#[test]
fn key_files_that_are_wrong_say_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let origin = name("lb.example.");
    let key = generate(&origin, ECDSAP256, dir.path()).unwrap();
    let other = read_key(&key.file, &name("other.example.")).unwrap_err();
    assert!(other.contains("belongs to lb.example., not to the zone other.example."), "{other}");
    let private = std::fs::read_to_string(&key.file).unwrap();
    std::fs::write(&key.file, private.replace("Algorithm: 13", "Algorithm: 8")).unwrap();
    let rsa = read_key(&key.file, &origin).unwrap_err();
    assert!(rsa.contains("algorithm 8 is not supported") && rsa.contains(".private"), "{rsa}");
    // another key's private part
    let second = generate(&origin, ECDSAP256, dir.path()).unwrap();
    std::fs::write(&key.file, std::fs::read_to_string(&second.file).unwrap()).unwrap();
    let mismatch = read_key(&key.file, &origin).unwrap_err();
    assert!(mismatch.contains("does not match the public key"), "{mismatch}");
    let missing = read_key(&dir.path().join("Knope.+013+00001.private"), &origin).unwrap_err();
    assert!(missing.contains("cannot read") && missing.contains("Knope.+013+00001.private"), "{missing}");
}

#[test]
fn our_data_to_sign_is_hickorys_for_every_type_with_names() {
    use hickory_proto::rr::rdata::{CNAME, MX, NS, SOA, SRV, TXT};
    let owner = name("Www.LB.example.");
    let sets: Vec<Vec<RData>> = vec![
        // hickory orders records by RDATA as written, RFC 4034 §6.3 by its canonical
        // form: the two agree when letter case does not decide the order
        vec![RData::NS(NS(name("ns2.Lb.example."))), RData::NS(NS(name("ns1.lb.example.")))],
        vec![RData::CNAME(CNAME(name("Target.Example.")))],
        vec![RData::MX(MX::new(20, name("Mail.Example."))), RData::MX(MX::new(10, name("mx.example.")))],
        vec![RData::SOA(SOA::new(name("NS1.lb.example."), name("Host.Master."), 7, 3600, 600, 86400, 300))],
        vec![RData::SRV(SRV::new(1, 2, 443, name("Srv.Example.")))],
        vec![RData::TXT(TXT::new(vec!["B".into()])), RData::TXT(TXT::new(vec!["a".into()]))],
    ];
    for set in sets {
        let rtype = set[0].record_type();
        let records: Vec<Record> = set.iter().map(|d| Record::from_rdata(owner.clone(), 60, d.clone())).collect();
        let input = SigInput {
            type_covered: rtype,
            algorithm: Algorithm::ED25519,
            num_labels: 3,
            original_ttl: 60,
            sig_expiration: SerialNumber::new(2),
            sig_inception: SerialNumber::new(1),
            key_tag: 7,
            signer_name: name("lb.example."),
        };
        let mut rrsig = Vec::new();
        input.emit(&mut BinEncoder::new(&mut rrsig)).unwrap();
        // RDATA as the zone index holds it: names uncompressed, letter case as written
        let rdatas: Vec<Vec<u8>> = set.iter().map(|d| d.to_bytes().unwrap()).collect();
        let rrset =
            RRset { owner: &owner, rtype: rtype.into(), class: 1, ttl: 60, rdatas: rdatas.iter().map(|r| &r[..]) };
        let ours = tbs(&rrsig, &rrset).unwrap();
        let theirs = TBS::from_input(&owner, DNSClass::IN, &input, records.iter()).unwrap();
        assert_eq!(ours, theirs.as_ref(), "{rtype}");
    }
}

#[test]
fn the_fast_paths_lookup_by_wire_name_finds_what_signing_by_name_cached() {
    let (_dir, keys) = zone_keys(ECDSAP256);
    let signatures = Signatures::new(100, 100);
    let owner = name("WWW.lb.example.");
    let (a, b) = ([127u8, 0, 0, 1], [127u8, 0, 0, 2]);
    let rrset = RRset { owner: &owner, rtype: 1, class: 1, ttl: 30, rdatas: [&a[..], &b[..]].into_iter() };
    let signed = signatures.sign(&keys, rrset, now()).unwrap();
    let wire = b"\x03www\x02LB\x07example\x00";
    let found = signatures.cached(&keys, wire, (1, 1, 30), [&b[..], &a[..]].into_iter(), now()).unwrap();
    assert!(Arc::ptr_eq(&signed, &found));
    assert!(signatures.cached(&keys, wire, (1, 1, 31), [&b[..], &a[..]].into_iter(), now()).is_none());
    assert!(signatures.cached(&keys, wire, (1, 1, 30), [&a[..]].into_iter(), now()).is_none());
}

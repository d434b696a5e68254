//! The zone index against each rule of SPEC §5.1.

use super::*;
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};
use std::path::Path;

const ZONE: &str = "$ORIGIN z.example.
$TTL 300
@          SOA  ns.z.example. h.z.example. 1 2 3 4 60
@          NS   ns
ns         A    127.0.0.53
a.b.c      A    127.0.0.1
cname      CNAME a.b.c
*.w        A    127.0.0.9
*.w        TXT  \"wild\"
x.w        TXT  \"real\"
sub        NS   ns.sub
sub        NS   ns.elsewhere.example.
sub        DS   1 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
ns.sub     A    127.0.0.54
ns.sub     AAAA ::1
multi      A    127.0.0.2
multi      MX   10 ns
multi      TXT  \"t\"
";

fn zone(services: &[&str]) -> Zone {
    let mut zone = parse_zone(&name("z.example."), Path::new("z.zone"), ZONE).unwrap();
    let services: Vec<Name> = services.iter().map(|s| s.parse().unwrap()).collect();
    zone.add_names(&services);
    zone
}

/// A record's RDATA in presentation form.
fn data(record: &WireRecord) -> RData {
    let mut decoder = BinDecoder::new(record.rdata);
    RData::read(&mut decoder, RecordType::from(record.rtype), Restrict::new(record.rdata.len() as u16)).unwrap()
}

fn name(s: &str) -> Name {
    s.parse().unwrap()
}

fn types(lookup: &Lookup) -> (RecordType, bool) {
    match lookup {
        Lookup::Records { rrset, wildcard, .. } => (rrset.rtype, *wildcard),
        other => panic!("expected records, got {other:?}"),
    }
}

#[test]
fn exact_records_and_nodata() {
    let z = zone(&[]);
    assert_eq!(types(&z.lookup(&name("a.b.c.z.example."), RecordType::A)), (RecordType::A, false));
    assert_eq!(z.lookup(&name("a.b.c.z.example."), RecordType::AAAA), Lookup::NoData);
    assert_eq!(z.lookup(&name("nope.z.example."), RecordType::A), Lookup::NxDomain);
}

#[test]
fn lookups_ignore_letter_case() {
    let z = zone(&[]);
    assert_eq!(types(&z.lookup(&name("A.B.C.Z.Example."), RecordType::A)).0, RecordType::A);
}

#[test]
fn empty_non_terminals_exist() {
    let z = zone(&["svc.deep.z.example."]);
    for ent in ["b.c.z.example.", "c.z.example.", "deep.z.example."] {
        assert_eq!(z.lookup(&name(ent), RecordType::A), Lookup::NoData, "{ent}");
    }
    // a service name exists for types it does not compute
    assert_eq!(z.lookup(&name("svc.deep.z.example."), RecordType::TXT), Lookup::NoData);
    assert_eq!(z.lookup(&name("x.b.c.z.example."), RecordType::A), Lookup::NxDomain);
}

#[test]
fn referral_below_and_at_a_cut_with_in_domain_glue() {
    let z = zone(&[]);
    for q in ["sub.z.example.", "host.sub.z.example.", "ns.sub.z.example."] {
        let Lookup::Referral { cut, ns, glue, required, .. } = z.lookup(&name(q), RecordType::A) else { panic!("{q}") };
        assert_eq!(cut, name("sub.z.example."));
        assert_eq!(required, glue.len(), "all of it below the cut");
        assert_eq!(ns.len(), 2);
        assert!(glue.iter().all(|(owner, _)| *owner == name("ns.sub.z.example.")));
        let glue: Vec<String> = glue.iter().map(|(_, r)| data(r).to_string()).collect();
        assert_eq!(glue, ["127.0.0.54", "::1"], "out-of-domain NS targets get no glue");
    }
}

#[test]
fn ds_at_the_cut_is_answered_from_the_parent_side() {
    let z = zone(&[]);
    assert_eq!(types(&z.lookup(&name("sub.z.example."), RecordType::DS)), (RecordType::DS, false));
    assert!(matches!(z.lookup(&name("x.sub.z.example."), RecordType::DS), Lookup::Referral { .. }));
}

#[test]
fn wildcards_synthesise_only_from_the_closest_encloser() {
    let z = zone(&[]);
    assert_eq!(types(&z.lookup(&name("a.w.z.example."), RecordType::A)), (RecordType::A, true));
    assert_eq!(types(&z.lookup(&name("q.r.w.z.example."), RecordType::TXT)), (RecordType::TXT, true));
    assert_eq!(z.lookup(&name("a.w.z.example."), RecordType::MX), Lookup::NoData);
    // an existing name blocks synthesis, also for types it lacks
    let Lookup::Records { rrset, wildcard: false, .. } = z.lookup(&name("x.w.z.example."), RecordType::TXT) else {
        panic!()
    };
    assert_eq!(data(&rrset.first().unwrap()).to_string(), "real");
    assert_eq!(z.lookup(&name("x.w.z.example."), RecordType::A), Lookup::NoData);
    // below an existing name that is not the wildcard's parent: no synthesis
    assert_eq!(z.lookup(&name("q.x.w.z.example."), RecordType::A), Lookup::NxDomain);
    // an empty non-terminal blocks it too
    let z = zone(&["s.e.w.z.example."]);
    assert_eq!(z.lookup(&name("e.w.z.example."), RecordType::A), Lookup::NoData);
}

#[test]
fn cname_is_returned_for_other_types() {
    let z = zone(&[]);
    let Lookup::Cname { record, target, wildcard: false } = z.lookup(&name("cname.z.example."), RecordType::A) else {
        panic!()
    };
    assert_eq!(target, name("a.b.c.z.example."));
    assert!(matches!(data(&record), RData::CNAME(t) if t.0 == target));
    assert_eq!(types(&z.lookup(&name("cname.z.example."), RecordType::CNAME)).0, RecordType::CNAME);
}

#[test]
fn any_returns_one_rrset() {
    let z = zone(&[]);
    assert_eq!(types(&z.lookup(&name("multi.z.example."), RecordType::ANY)).0, RecordType::A);
}

#[test]
fn negative_soa_ttl_is_the_soa_minimum() {
    let z = zone(&[]);
    assert_eq!(z.negative_soa().ttl, 60);
    assert_eq!(z.rrset(&name("z.example."), RecordType::SOA).unwrap().first().unwrap().ttl, 300);
}

#[test]
fn zones_find_the_closest_enclosing_zone() {
    let parent = zone(&[]);
    let origin = name("sub.z.example.");
    let child_text = "$ORIGIN sub.z.example.\n@ 60 SOA ns h 1 2 3 4 5\n@ 60 NS ns\nns 60 A 127.0.0.54\n";
    let child = parse_zone(&origin, Path::new("child.zone"), child_text).unwrap();
    let zones = Zones::new(vec![parent, child]);
    assert_eq!(zones.find(&name("a.sub.z.example.")).unwrap().origin(), &name("sub.z.example."));
    assert_eq!(zones.find(&name("a.z.example.")).unwrap().origin(), &name("z.example."));
    assert!(zones.find(&name("example.")).is_none());
}

/// Loads `zone_text` as z.example. beside a config with `services`; the errors' lines.
fn load_errors(zone_text: &str, services: &[&str]) -> Vec<crate::config::ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("z.zone"), zone_text).unwrap();
    let mut toml = "[[zones]]\norigin = \"z.example.\"\nfile = \"z.zone\"\n".to_string();
    for s in services {
        toml.push_str(&format!("[[services]]\nname = \"{s}\"\n"));
    }
    let config = crate::config::from_toml(&toml, &dir.path().join("c.toml")).unwrap();
    load_zones(&config).map(|_| ()).unwrap_err().0
}

const HEAD: &str = "$ORIGIN z.example.\n$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 127.0.0.1\n";

#[test]
fn zone_file_errors_name_file_owner_and_line() {
    let e = load_errors(&format!("{HEAD}www A 127.0.0.1\nwww CNAME ns\n"), &[]);
    assert_eq!(e.len(), 1, "{e:#?}");
    // the line of the CNAME the message is about
    assert!(e[0].file.ends_with("z.zone") && e[0].key == "www.z.example." && e[0].line == 7, "{}", e[0]);
    assert!(e[0].message.contains("CNAME"), "{}", e[0]);
    let e = load_errors("$ORIGIN z.example.\n$TTL 60\n@ NS ns\n", &[]);
    assert!(e[0].message.contains("SOA"), "{}", e[0]);
    let e = load_errors(&format!("{HEAD}x A 127.0.0.1\ny BOGUS 1\n"), &[]);
    assert!(e[0].message.contains("cannot parse") && e[0].line == 7, "{}", e[0]);
    let e = load_errors(&format!("{HEAD}@ DNSKEY 257 3 13 AAAA\n"), &[]);
    assert!(e[0].message.contains("DNSKEY"), "{}", e[0]);
}

#[test]
fn services_must_lie_in_a_zone_above_any_cut_without_clashing_records() {
    let text = format!("{HEAD}sub NS ns.sub\nns.sub A 127.0.0.2\ntaken A 127.0.0.3\n");
    let cases = [
        ("www.other.example.", "lies in no configured zone"),
        ("sub.z.example.", "delegation"),
        ("a.sub.z.example.", "delegation"),
        ("taken.z.example.", "A records"),
    ];
    for (service, words) in cases {
        let e = load_errors(&text, &[service]);
        assert_eq!(e.len(), 1, "{service}: {e:#?}");
        assert!(e[0].message.contains(words) && e[0].line == 5, "{service}: {}", e[0]);
    }
}

#[test]
fn a_templates_parent_lies_in_a_zone_above_any_cut_and_always_exists() {
    let text = format!("{HEAD}sub NS ns.sub\nns.sub A 127.0.0.2\n");
    let template = |pattern: &str| format!("[[templates]]\npattern = \"{pattern}\"\n");
    for (pattern, words) in [("*.other.example.", "lies in no configured zone"), ("*.a.sub.z.example.", "delegation")] {
        let e = load_with(&text, &[], &template(pattern)).unwrap_err();
        assert_eq!(e.len(), 1, "{pattern}: {e:#?}");
        assert!(e[0].message.contains(words) && e[0].key == format!("template {pattern}"), "{pattern}: {}", e[0]);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("z.zone"), &text).unwrap();
    let toml = format!("[[zones]]\norigin = \"z.example.\"\nfile = \"z.zone\"\n{}", template("*.svc.deep.z.example."));
    let config = crate::config::from_toml(&toml, &dir.path().join("c.toml")).unwrap();
    let zones = load_zones(&config).unwrap();
    let zone = zones.find(&name("svc.deep.z.example.")).unwrap();
    for existing in ["svc.deep.z.example.", "deep.z.example."] {
        assert_eq!(zone.lookup(&name(existing), RecordType::A), Lookup::NoData, "{existing}");
    }
    assert_eq!(zone.lookup(&name("api.svc.deep.z.example."), RecordType::A), Lookup::NxDomain);
}

/// Loads z.zone (`text`) with `others` beside it, under `zone_extra` keys of its
/// [[zones]] table; the errors, or none.
fn load_with(text: &str, others: &[(&str, &str)], zone_extra: &str) -> Result<(), Vec<crate::config::ConfigError>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("z.zone"), text).unwrap();
    for (name, content) in others {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let toml = format!("[[zones]]\norigin = \"z.example.\"\nfile = \"z.zone\"\n{zone_extra}");
    let config = crate::config::from_toml(&toml, &dir.path().join("c.toml")).unwrap();
    load_zones(&config).map(|_| ()).map_err(|e| e.0)
}

#[test]
fn includes_are_regular_files_under_the_config_directory_within_max_zone_bytes() {
    let inc = [("more.zone", "more A 127.0.0.7\n")];
    assert_eq!(load_with(&format!("{HEAD}$INCLUDE more.zone\n"), &inc, ""), Ok(()));
    let e = load_with(&format!("{HEAD}$INCLUDE /dev/zero\n"), &[], "").unwrap_err();
    assert!(e[0].message.contains("not a regular file") && e[0].line == 6, "{}", e[0]);
    let e = load_with(&format!("{HEAD}$include /etc/hostname\n"), &[], "").unwrap_err();
    assert!(e[0].message.contains("outside the config's directory"), "{}", e[0]);
    let e = load_with(&format!("{HEAD}$INCLUDE ../escape.zone\n"), &[], "").unwrap_err();
    assert!(e[0].message.contains("escape.zone"), "{}", e[0]);
    let e = load_with(&format!("{HEAD}$INCLUDE more.zone\n"), &inc, "max_zone_bytes = \"100B\"").unwrap_err();
    assert!(e[0].message.contains("max_zone_bytes"), "{}", e[0]);
    let looped = [("loop.zone", "$INCLUDE loop.zone\n")];
    let e = load_with(&format!("{HEAD}$INCLUDE loop.zone\n"), &looped, "").unwrap_err();
    assert!(e[0].message.contains("nest deeper"), "{}", e[0]);
}

#[test]
fn a_zone_file_that_is_no_regular_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[[zones]]\norigin = \"z.example.\"\nfile = \"/dev/zero\"\n";
    let config = crate::config::from_toml(toml, &dir.path().join("c.toml")).unwrap();
    let e = load_zones(&config).unwrap_err().0;
    assert!(e[0].message.contains("not a regular file"), "{}", e[0]);
}

/// A record: owner (lower-cased wire form), type, class, TTL, RDATA.
type Flat = (Vec<u8>, u16, u16, u32, Vec<u8>);

/// Every record of a zone text as hickory's parser reads it: owner (lower-cased wire
/// form), type, class, TTL and RDATA with names uncompressed, sorted.
fn by_hickory(origin: &Name, text: &str) -> Vec<Flat> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
    let (_, sets) = hickory_proto::serialize::txt::Parser::new(text, None, Some(origin.clone())).parse().unwrap();
    let mut all: Vec<_> = sets
        .into_values()
        .flat_map(|s| s.into_parts().records)
        .map(|r| {
            let mut rdata = Vec::new();
            let mut encoder = BinEncoder::new(&mut rdata);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            r.data.emit(&mut encoder).unwrap();
            let key = NameKey::of(&r.name).as_bytes().to_vec();
            (key, u16::from(r.record_type()), u16::from(r.dns_class), r.ttl, rdata)
        })
        .collect();
    all.sort();
    all
}

fn ours(origin: &Name, text: &str) -> Vec<Flat> {
    let zone = parse_zone(origin, Path::new("z.zone"), text).unwrap();
    let mut all: Vec<_> =
        zone.all_records().into_iter().map(|(k, r)| (k.to_vec(), r.rtype, r.class, r.ttl, r.rdata.to_vec())).collect();
    all.sort();
    all
}

#[test]
fn the_zone_reader_reads_what_hickorys_parser_reads() {
    let text = r#"$ORIGIN Z.example.
$TTL 1h
@   IN  SOA ns.z.example. hostmaster ( 2026112601 ; serial
            2h 30m 2w   ; refresh, retry, expire
            300 )       ; minimum
    IN  NS  ns
    NS  ns.Other.example.
ns  60 IN A 127.0.0.53
ns  IN 60 AAAA ::1
@   MX  10 mail
mail CNAME ns
txt TXT "a; not a comment" "quote \" and \\ and \X" plain
srv._tcp SRV 0 5 443 ns
caa CAA 0 issue "letsencrypt.org"
ssh SSHFP 1 1 0123456789abcdef0123456789abcdef01234567
hinfo HINFO "PC" "Linux"
ptr PTR ns.z.example.
dup A 127.0.0.7
dup A 127.0.0.7
$ORIGIN sub.z.example.
deep A 127.0.0.8
"#;
    let origin = name("z.example.");
    assert_eq!(ours(&origin, text), by_hickory(&origin, text));
    assert_eq!(
        ours(&origin, text).iter().filter(|r| r.0 == b"\x03dup\x01z\x07example\x00").count(),
        1,
        "duplicates dropped"
    );
}

#[test]
fn txt_strings_follow_rfc_1035_inside_parentheses_and_with_decimal_escapes() {
    // hickory 0.26 keeps the quotes of strings inside parentheses and reads \DDD as
    // something else than the byte DDD: these are read by the RFC here
    let text = format!("{HEAD}t TXT ( \"multi\"\n  \"line\" ) \"\\065\\066\\255\"\nbad TXT \"\\256\"\n");
    let e = parse_zone(&name("z.example."), Path::new("z.zone"), &text).unwrap_err();
    assert!(e.len() == 1 && e[0].line == 8 && e[0].message.contains("DDD"), "{e:#?}");
    let zone = parse_zone(&name("z.example."), Path::new("z.zone"), text.split("bad").next().unwrap()).unwrap();
    let txt = zone.rrset(&name("t.z.example."), RecordType::TXT).unwrap().first().unwrap();
    assert_eq!(txt.rdata, b"\x05multi\x04line\x03AB\xff");
}

#[test]
fn the_zone_reader_names_the_line_of_each_error_and_goes_on() {
    let text = format!("{HEAD}a A 127.0.0.1\nb A not-an-address\nc ( A\n  127.0.0.2 )\nd TXT \"open\nx BOGUS 1\n");
    let e = parse_zone(&name("z.example."), Path::new("z.zone"), &text).unwrap_err();
    let found: Vec<(usize, &str)> = e.iter().map(|e| (e.line, e.key.as_str())).collect();
    // the unterminated quote swallows the rest of the file: its error ends the reading
    assert_eq!(found, [(7, "b.z.example."), (10, "")], "{e:#?}");
    assert!(e[0].message.contains("cannot parse the A record"), "{}", e[0]);
    assert!(e[1].message.contains("quote"), "{}", e[1]);
    let e = parse_zone(&name("z.example."), Path::new("z.zone"), &format!("{HEAD}a ( A 127.0.0.1\n")).unwrap_err();
    assert!(e[0].line == 6 && e[0].message.contains("'('"), "{e:#?}");
    let e = parse_zone(&name("z.example."), Path::new("z.zone"), " A 127.0.0.1\n").unwrap_err();
    assert!(e[0].line == 1 && e[0].message.contains("owner"), "{e:#?}");
}

#[test]
fn ttls_default_to_the_last_one_given_without_a_ttl_line() {
    let text = "$ORIGIN z.example.\n@ 300 SOA ns h 1 2 3 4 5\n@ NS ns\nns 60 A 127.0.0.1\nx A 127.0.0.2\n";
    let zone = parse_zone(&name("z.example."), Path::new("z.zone"), text).unwrap();
    assert_eq!(zone.rrset(&name("z.example."), RecordType::NS).unwrap().first().unwrap().ttl, 300);
    assert_eq!(zone.rrset(&name("x.z.example."), RecordType::A).unwrap().first().unwrap().ttl, 60);
    let e =
        parse_zone(&name("z.example."), Path::new("z.zone"), "$ORIGIN z.example.\n@ SOA ns h 1 2 3 4 5\n").unwrap_err();
    assert!(e[0].message.contains("TTL"), "{e:#?}");
}

#[test]
fn includes_take_an_origin_and_report_their_own_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("more.zone"), "a A 127.0.0.7\nb A bad\n").unwrap();
    let path = dir.path().join("z.zone");
    let text = format!("{HEAD}$INCLUDE more.zone sub\nc A 127.0.0.9\n");
    let e = parse_zone(&name("z.example."), &path, &text).unwrap_err();
    assert!(e[0].file.ends_with("more.zone") && e[0].line == 2 && e[0].key == "b.sub.z.example.", "{e:#?}");
    std::fs::write(dir.path().join("more.zone"), "a A 127.0.0.7\n").unwrap();
    let zone = parse_zone(&name("z.example."), &path, &text).unwrap();
    assert!(zone.rrset(&name("a.sub.z.example."), RecordType::A).is_some());
    // the origin given applies to the included file only
    assert!(zone.rrset(&name("c.z.example."), RecordType::A).is_some());
}

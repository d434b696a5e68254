//! The zone index against each rule of SPEC §5.1.

use super::*;
use hickory_proto::rr::{RData, RecordType};
use hickory_proto::serialize::txt::Parser;

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
    let origin: Name = "z.example.".parse().unwrap();
    let (_, sets) = Parser::new(ZONE, None, Some(origin.clone())).parse().unwrap();
    let records = sets.values().flat_map(|s| s.records_without_rrsigs().cloned()).collect();
    let services: Vec<Name> = services.iter().map(|s| s.parse().unwrap()).collect();
    Zone::new(origin, records, &services)
}

fn name(s: &str) -> Name {
    s.parse().unwrap()
}

fn types(lookup: &Lookup) -> (RecordType, bool) {
    match lookup {
        Lookup::Records { rrset, wildcard } => (rrset.rtype, *wildcard),
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
        let Lookup::Referral { ns, glue, required } = z.lookup(&name(q), RecordType::A) else { panic!("{q}") };
        assert_eq!(required, glue.len(), "all of it below the cut");
        assert_eq!(ns.records.len(), 2);
        let glue: Vec<String> = glue.iter().map(|r| r.data.to_string()).collect();
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
    let Lookup::Records { rrset, wildcard: false } = z.lookup(&name("x.w.z.example."), RecordType::TXT) else {
        panic!()
    };
    assert_eq!(rrset.records[0].data.to_string(), "real");
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
    let Lookup::Cname { record, wildcard: false } = z.lookup(&name("cname.z.example."), RecordType::A) else {
        panic!()
    };
    assert!(matches!(&record.data, RData::CNAME(t) if t.0 == name("a.b.c.z.example.")));
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
    assert_eq!(z.rrset(&name("z.example."), RecordType::SOA).unwrap().records[0].ttl, 300);
}

#[test]
fn zones_find_the_closest_enclosing_zone() {
    let parent = zone(&[]);
    let origin = name("sub.z.example.");
    let child_text = "$ORIGIN sub.z.example.\n@ 60 SOA ns h 1 2 3 4 5\n@ 60 NS ns\nns 60 A 127.0.0.54\n";
    let (_, sets) = Parser::new(child_text, None, Some(origin.clone())).parse().unwrap();
    let child = Zone::new(origin, sets.values().flat_map(|s| s.records_without_rrsigs().cloned()).collect(), &[]);
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
    assert!(e[0].file.ends_with("z.zone") && e[0].key == "www.z.example." && e[0].line == 6, "{}", e[0]);
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

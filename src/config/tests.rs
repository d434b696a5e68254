//! Validation tests: one per kind of error, and an unknown key in every table.

use super::*;

/// A config that uses every table and validates.
const FULL: &str = r#"
[server]
listen = ["127.0.0.1:5353", "[::1]:5353"]
admin_listen = "127.0.0.1:8053"
identity = "ns1"
udp_workers = 2
tcp_idle_timeout = "10s"
shutdown_timeout = "5s"

[store]
backend = "file"
path = "state/s.json"

[[zones]]
origin = "lb.example."
file = "zones/lb.example.zone"

[geo]
default_region = "eu"

[regions.eu]
networks = ["10.1.0.0/16"]
countries = ["DE"]
fallback = ["us"]
location = [50.1, 8.7]

[regions.us]
networks = ["10.2.0.0/16"]
continents = ["NA"]

[checks.web]
kind = "http"
port = 8080
interval = "1s"
timeout = "500ms"

[[services]]
name = "www.lb.example."
policy = "gslb"
check = "web"
targets = [
  { address = "127.0.0.1", region = "eu", weight = 2, priority = 1, check_address = "127.0.0.2" },
]
"#;

fn errors(text: &str) -> Vec<ConfigError> {
    from_toml(text, Path::new("/etc/steerdns/c.toml")).expect_err("must not validate").0
}

/// Asserts exactly one error, on `line`, for `key`, whose message contains `words`.
fn one_error(text: &str, line: usize, key: &str, words: &str) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert_eq!((e.line, e.key.as_str()), (line, key), "{e}");
    assert!(e.message.contains(words), "{e}");
    assert_eq!(e.file, Path::new("/etc/steerdns/c.toml"));
}

fn replace(from: &str, to: &str) -> String {
    assert!(FULL.contains(from), "{from}");
    FULL.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn the_full_config_validates_with_defaults_filled_in() {
    let c = from_toml(FULL, Path::new("/etc/steerdns/c.toml")).unwrap();
    assert_eq!(c.zones[0].file, Path::new("/etc/steerdns/zones/lb.example.zone"));
    assert_eq!(c.store, StoreConfig::File { path: "/etc/steerdns/state/s.json".into() });
    let s = &c.services[0];
    assert_eq!((s.ttl, s.max_answers, s.when_all_down), (30, 8, WhenAllDown::All));
    assert_eq!(s.targets[0].check_address, Some("127.0.0.2".parse().unwrap()));
    let check = &c.checks["web"];
    assert_eq!((check.rise, check.fall, check.expect_status.as_slice()), (2, 3, &[200][..]));
}

#[test]
fn minimal_config_takes_every_default() {
    let c = from_toml("", Path::new("c.toml")).unwrap();
    assert_eq!(c.server.listen, vec!["127.0.0.1:5353".parse().unwrap()]);
    assert_eq!(c.server.admin_listen, "127.0.0.1:8053".parse().unwrap());
    assert!(!c.server.identity.is_empty());
}

#[test]
fn syntax_error_names_line_and_column() {
    let e = errors("[server]\nlisten = [\"127.0.0.1:53\"\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].message.starts_with("TOML syntax error"), "{}", e[0]);
    assert!(e[0].line >= 2, "{}", e[0]);
}

#[test]
fn unknown_key_in_every_table_is_an_error() {
    let tables = [
        ("[server]", "server"),
        ("[store]", "store"),
        ("[[zones]]", "zones[0]"),
        ("[geo]", "geo"),
        ("[regions.eu]", "regions.eu"),
        ("[checks.web]", "checks.web"),
        ("[[services]]", "services[0]"),
    ];
    for (header, key) in tables {
        let text = replace(header, &format!("{header}\nbogus_key = 1"));
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{header}: {errors:#?}");
        assert!(errors[0].key.starts_with(key), "{}", errors[0]);
        assert!(errors[0].message.contains("bogus_key"), "{}", errors[0]);
        assert_eq!(errors[0].line, line_of(&text, "bogus_key"), "{}", errors[0]);
    }
    let text = replace("check_address = \"127.0.0.2\"", "check_address = \"127.0.0.2\", bogus_key = 1");
    assert!(errors(&text)[0].message.contains("bogus_key"));
    one_error(&format!("{FULL}\n[bogus]\n"), line_of(&format!("{FULL}\n[bogus]\n"), "[bogus]"), "bogus", "unknown key");
}

#[test]
fn every_type_error_is_reported_at_once() {
    let text = FULL.replace("identity = \"ns1\"", "identity = 5");
    let text = text.replace("port = 8080", "port = \"8080\"").replace("origin = \"lb.example.\"", "origin = 7");
    let errors = errors(&text);
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["server.identity", "zones[0].origin", "checks.web.port"], "{errors:#?}");
}

#[test]
fn bad_listen_addresses() {
    let text = replace("\"[::1]:5353\"", "\"localhost:53\"");
    one_error(&text, 3, "server.listen", "IP:PORT");
    one_error(&replace("\"[::1]:5353\"", "\"127.0.0.1:5353\""), 3, "server.listen", "twice");
    one_error(
        &replace("admin_listen = \"127.0.0.1:8053\"", "admin_listen = \"0.0.0.0:8053\""),
        4,
        "server.admin_listen",
        "admin_token_file",
    );
}

#[test]
fn token_files_must_exist_and_hold_a_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty"), "  \n").unwrap();
    std::fs::write(dir.path().join("token"), "  s3cret \n").unwrap();
    let file = dir.path().join("c.toml");
    let c = from_toml("[server]\nadmin_token_file = \"token\"\n", &file).unwrap();
    assert_eq!(c.server.admin_token.as_deref(), Some("s3cret"));
    for (value, words) in [("empty", "is empty"), ("missing", "cannot read")] {
        let e = from_toml(&format!("[server]\nadmin_token_file = \"{value}\"\n"), &file).unwrap_err().0;
        assert!(e[0].message.contains(words) && e[0].key == "server.admin_token_file", "{}", e[0]);
    }
}

#[test]
fn durations_need_a_unit_and_must_be_positive() {
    one_error(
        &replace("tcp_idle_timeout = \"10s\"", "tcp_idle_timeout = \"10\""),
        7,
        "server.tcp_idle_timeout",
        "unit",
    );
    one_error(
        &replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"0s\""),
        8,
        "server.shutdown_timeout",
        "positive",
    );
    one_error(
        &replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"5s\"\nstartup_wait = \"3\""),
        9,
        "server.startup_wait",
        "unit",
    );
}

#[test]
fn startup_wait_is_the_longest_check_timeout_and_a_second_unless_set() {
    let config = from_toml(FULL, Path::new("/etc/steerdns/c.toml")).unwrap();
    let longest = config.checks.values().map(|c| c.timeout).max().unwrap_or_default();
    assert_eq!(config.startup_wait(), longest + std::time::Duration::from_secs(1));
    let off = replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"5s\"\nstartup_wait = \"0s\"");
    assert_eq!(from_toml(&off, Path::new("/etc/steerdns/c.toml")).unwrap().startup_wait(), std::time::Duration::ZERO);
}

#[test]
fn zone_sizes_have_units() {
    let text =
        replace("file = \"zones/lb.example.zone\"", "file = \"zones/lb.example.zone\"\nmax_zone_bytes = \"1 parsec\"");
    one_error(&text, 17, "zones[0].max_zone_bytes", "size");
    let text =
        replace("file = \"zones/lb.example.zone\"", "file = \"zones/lb.example.zone\"\nmax_zone_bytes = \"512MiB\"");
    assert_eq!(from_toml(&text, Path::new("/etc/steerdns/c.toml")).unwrap().zones[0].max_bytes, 512 << 20);
}

#[test]
fn numbers_out_of_range() {
    one_error(&replace("udp_workers = 2", "udp_workers = 0"), 6, "server.udp_workers", "1 to 1024");
    let line = line_of(FULL, "port = 8080");
    one_error(&replace("port = 8080", "port = 70000"), line, "checks.web.port", "1 to 65535");
    let text = replace("weight = 2", "weight = 1001");
    one_error(&text, line_of(&text, "weight"), "services[0].targets[0].weight", "0 to 1000");
    let text = replace("priority = 1", "priority = 0");
    one_error(&text, line_of(&text, "priority"), "services[0].targets[0].priority", "1 to 255");
    let text = replace("check = \"web\"", "check = \"web\"\nttl = 86401");
    one_error(&text, line_of(&text, "ttl ="), "services[0].ttl", "0 to 86400");
    let text = replace("check = \"web\"", "check = \"web\"\nmax_answers = 65");
    one_error(&text, line_of(&text, "max_answers"), "services[0].max_answers", "1 to 64");
}

#[test]
fn store_rules() {
    one_error(
        &replace("backend = \"file\"", "backend = \"disk\""),
        11,
        "store.backend",
        "\"file\", \"memory\" or \"etcd\"",
    );
    one_error(&replace("backend = \"file\"", "backend = \"memory\""), 12, "store.path", "only for backend = \"file\"");
    let text = replace("backend = \"file\"\npath = \"state/s.json\"", "backend = \"etcd\"");
    let e: Vec<_> = errors(&text).into_iter().filter(|e| e.key == "store.endpoints").collect();
    assert!(e.len() == 1 && e[0].line == 11 && e[0].message.contains("required"), "{e:#?}");
    let text = replace("path = \"state/s.json\"", "endpoints = [\"http://127.0.0.1:2379\"]");
    one_error(&text, 12, "store.endpoints", "only for backend = \"etcd\"");
    let text = replace(
        "backend = \"file\"\npath = \"state/s.json\"",
        "backend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/x\"\ncert_file = \"c.pem\"\nusername = \"u\"",
    );
    // (without the etcd feature, store.backend has an error of its own)
    let e: Vec<_> = errors(&text).into_iter().filter(|e| e.key != "store.backend").collect();
    let got: Vec<_> = e.iter().map(|e| (e.line, e.key.as_str(), e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (13, "store.prefix", "must end with \"/\" (so that it is a directory of keys: \"/steerdns/\")"),
            (14, "store.cert_file", "needs store.key_file too"),
            (15, "store.username", "needs store.password_file too"),
        ]
    );
}

#[test]
fn health_rules() {
    let with = |health: &str| format!("{FULL}\n[health]\n{health}\n");
    let c = from_toml(&with("probe_source = \"127.0.0.51\""), Path::new("c.toml")).unwrap();
    assert_eq!(c.health.probe_source, Some("127.0.0.51".parse().unwrap()));
    assert!(c.checks.values().all(|check| check.source == c.health.probe_source), "every probe takes it");
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let at = |t: &str, n: &str| line_of(t, n);
    let text = with("probe_source = \"224.0.0.1\"");
    one_error(&text, at(&text, "224"), "health.probe_source", "not a unicast address");
    let text = with("share = true");
    one_error(&text, at(&text, "share"), "health.share", "needs the etcd store");
    let text = with("share = true").replace("identity = \"ns1\"", "identity = \"dc1/ns1\"");
    let e: Vec<_> = errors(&text).into_iter().filter(|e| e.key == "server.identity").collect();
    assert!(e.len() == 1 && e[0].message.contains("no '/'") && e[0].line == line_of(&text, "dc1/ns1"), "{e:#?}");
    let text = with("probers_per_target = 101");
    one_error(&text, at(&text, "probers_per_target"), "health.probers_per_target", "0 to 100");
    let text = with("node_lease_ttl = \"500ms\"");
    one_error(&text, at(&text, "node_lease_ttl"), "health.node_lease_ttl", "2 s to 1 h");
    let c = from_toml(&with("probers_per_target = 2\nnode_lease_ttl = \"5s\""), Path::new("c.toml")).unwrap();
    assert_eq!((c.health.share, c.health.probers_per_target, c.health.node_lease_ttl.as_secs()), (false, 2, 5));
}

#[test]
fn the_etcd_store_needs_its_cargo_feature() {
    let text = replace(
        "backend = \"file\"\npath = \"state/s.json\"",
        "backend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]",
    );
    if cfg!(feature = "etcd") {
        from_toml(&text, Path::new("/etc/steerdns/c.toml")).unwrap();
    } else {
        one_error(&text, 11, "store.backend", "--features etcd");
    }
}

#[test]
fn zone_rules() {
    one_error(&replace("origin = \"lb.example.\"", "origin = \"bad..name\""), 15, "zones[0].origin", "domain name");
    let text = replace("[geo]", "[[zones]]\norigin = \"LB.example\"\nfile = \"x\"\n\n[geo]");
    one_error(&text, line_of(&text, "LB.example"), "zones[1].origin", "configured twice");
}

#[test]
fn region_rules() {
    let at = |text: &str, needle: &str| line_of(text, needle);
    let text = replace("\"10.1.0.0/16\"", "\"10.1.0.0/33\"");
    one_error(&text, at(&text, "10.1.0.0/33"), "regions.eu.networks", "CIDR");
    let text = replace("\"10.1.0.0/16\"", "\"10.1.0.1/16\"");
    one_error(&text, at(&text, "10.1.0.1/16"), "regions.eu.networks", "did you mean \"10.1.0.0/16\"");
    let text = replace("\"10.2.0.0/16\"", "\"10.1.0.0/16\"");
    one_error(&text, at(&text, "continents") - 1, "regions.us.networks", "also in region eu");
    let text = replace("continents = [\"NA\"]", "continents = [\"NA\"]\ncountries = [\"DE\"]");
    one_error(&text, at(&text, "NA") + 1, "regions.us.countries", "also in region eu");
    let text = replace("countries = [\"DE\"]", "countries = [\"XX\"]");
    one_error(&text, at(&text, "XX"), "regions.eu.countries", "ISO 3166-1");
    let text = replace("continents = [\"NA\"]", "continents = [\"EA\"]");
    one_error(&text, at(&text, "EA"), "regions.us.continents", "continent");
    let text = replace("fallback = [\"us\"]", "fallback = [\"asia\"]");
    one_error(&text, at(&text, "asia"), "regions.eu.fallback", "names no region");
    let text = replace("fallback = [\"us\"]", "fallback = [\"eu\"]");
    one_error(&text, at(&text, "fallback"), "regions.eu.fallback", "itself");
    let text = replace("location = [50.1, 8.7]", "location = [91.0, 8.7]");
    one_error(&text, at(&text, "location"), "regions.eu.location", "latitude");
}

#[test]
fn geo_rules() {
    let text = replace("default_region = \"eu\"", "default_region = \"mars\"");
    one_error(&text, at_line(&text, "mars"), "geo.default_region", "names no region");
    let text = replace("default_region = \"eu\"", "");
    one_error(&text, at_line(&text, "www.lb.example"), "geo.default_region", "gslb");
}

fn at_line(text: &str, needle: &str) -> usize {
    line_of(text, needle)
}

#[test]
fn check_rules() {
    let at = |t: &str, n: &str| line_of(t, n);
    let text = replace("kind = \"http\"", "kind = \"icmp\"");
    one_error(&text, at(&text, "icmp"), "checks.web.kind", "\"http\", \"https\", \"tcp\", \"agent\" or \"none\"");
    let text = replace("kind = \"http\"\nport = 8080", "kind = \"tcp\"");
    one_error(&text, at(&text, "\"tcp\""), "checks.web.port", "required");
    let text = replace("timeout = \"500ms\"", "timeout = \"1s\"");
    one_error(&text, at(&text, "timeout = \"1s\""), "checks.web.timeout", "less than interval");
    let text = replace("port = 8080", "port = 8080\nexpect_status = [200, 999]");
    one_error(&text, at(&text, "999"), "checks.web.expect_status", "100 to 599");
    let text = replace("kind = \"http\"", "kind = \"https\"");
    one_error(&text, at(&text, "https"), "checks.web.host", "required");
    let text = replace("kind = \"http\"", "kind = \"https\"\ntls_verify = false");
    assert!(from_toml(&text, Path::new("c.toml")).is_ok());
    let text = replace("port = 8080", "port = 8080\npath = \"healthz\"");
    one_error(&text, at(&text, "healthz"), "checks.web.path", "start with /");
    let text = replace("port = 8080", "port = 8080\nrise = 0");
    one_error(&text, at(&text, "rise"), "checks.web.rise", "1 to 100");
    // load reports (SPEC §9)
    let text = replace("kind = \"http\"\nport = 8080", "kind = \"agent\"");
    one_error(&text, at(&text, "\"agent\""), "checks.web.port", "required for kind = \"agent\"");
    let text = replace("port = 8080", "port = 8080\nagent_header = \"X Agent\"");
    one_error(&text, at(&text, "X Agent"), "checks.web.agent_header", "HTTP header name");
    let text = replace("port = 8080", "port = 8080\nagent_send = \"status\\n\"");
    one_error(&text, at(&text, "agent_send"), "checks.web.agent_send", "only for kind = \"agent\"");
    let text = replace("kind = \"http\"", "kind = \"tcp\"\nagent_header = \"X-Agent\"");
    one_error(&text, at(&text, "X-Agent"), "checks.web.agent_header", "only for kind = \"http\" or \"https\"");
    let text = replace("kind = \"http\"", "kind = \"agent\"\nagent_send = \"status\\n\"");
    let c = from_toml(&text, Path::new("c.toml")).unwrap();
    assert_eq!((c.checks["web"].kind, c.checks["web"].agent_send.as_deref()), (CheckKind::Agent, Some("status\n")));
}

#[test]
fn template_rules() {
    let at = |t: &str, n: &str| line_of(t, n);
    let with = |template: &str| format!("{FULL}\n[[templates]]\n{template}\n");
    let c = from_toml(&with("pattern = \"*.svc.lb.example.\"\nmax_services = 5"), Path::new("c.toml")).unwrap();
    let t = &c.templates[0];
    assert_eq!(
        (t.parent.to_string(), t.max_services, t.max_registrations_total),
        ("svc.lb.example.".into(), 5, 10_000)
    );
    assert!(t.service.accept_registrations && t.service.targets.is_empty());
    assert!(t.matches(&"api.svc.lb.example.".parse().unwrap()));
    assert!(t.matches(&"API.svc.lb.example".parse().unwrap()));
    assert!(!t.matches(&"a.b.svc.lb.example.".parse().unwrap()), "* is one label");
    assert!(!t.matches(&"svc.lb.example.".parse().unwrap()));
    assert!(!t.matches(&"*.svc.lb.example.".parse().unwrap()));
    for bad in ["svc.lb.example.", "*.*.lb.example.", "a*.lb.example.", "*."] {
        let text = with(&format!("pattern = \"{bad}\""));
        one_error(&text, at(&text, "pattern ="), "templates[0].pattern", "must be \"*.\" and a name");
    }
    let text = with("pattern = \"*.svc.lb.example.\"\npolicy = \"healthy\"");
    one_error(&text, at(&text, "pattern ="), "templates[0].check", "required for every policy but \"all\"");
    let text = with("pattern = \"*.svc.lb.example.\"\nmax_services = 0");
    one_error(&text, at(&text, "max_services"), "templates[0].max_services", "1 to 1000000");
    let text = with("pattern = \"*.svc.lb.example.\"\ntargets = []");
    one_error(&text, at(&text, "targets = []"), "templates[0]", "unknown field `targets`");
    let text = format!("{}[[templates]]\npattern = \"*.SVC.lb.example.\"\n", with("pattern = \"*.svc.lb.example.\""));
    one_error(&text, at(&text, "SVC"), "templates[1].pattern", "earlier template");
}

#[test]
fn service_rules() {
    let at = |t: &str, n: &str| line_of(t, n);
    let text = replace("policy = \"gslb\"", "policy = \"random\"");
    one_error(&text, at(&text, "random"), "services[0].policy", "\"all\", \"healthy\"");
    let text = replace("policy = \"gslb\"", "policy = \"gslb\"\norder = \"fastest\"");
    one_error(&text, at(&text, "fastest"), "services[0].order", "must be \"round-robin\", \"weighted\" or \"sticky\"");
    let text = replace("policy = \"gslb\"", "policy = \"gslb\"\nwhen_all_down = \"some\"");
    one_error(&text, at(&text, "some"), "services[0].when_all_down", "must be \"all\" or \"none\"");
    let text = replace("check = \"web\"", "check = \"db\"");
    one_error(&text, at(&text, "\"db\""), "services[0].check", "names no check");
    let text = replace("check = \"web\"\n", "");
    one_error(&text, at(&text, "www.lb.example"), "services[0].check", "required");
    let text = replace("check = \"web\"", "check = \"web\"\nwhen_all_down = \"some\"");
    one_error(&text, at(&text, "some"), "services[0].when_all_down", "\"all\" or \"none\"");
    let text = replace("name = \"www.lb.example.\"", "name = \"www..lb\"");
    one_error(&text, at(&text, "www..lb"), "services[0].name", "domain name");
    let dup = format!("{FULL}\n[[services]]\nname = \"WWW.lb.example\"\n");
    one_error(&dup, at(&dup, "WWW.lb"), "services[1].name", "configured twice");
}

#[test]
fn target_rules() {
    let at = |t: &str, n: &str| line_of(t, n);
    for bad in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "::ffff:127.0.0.1", "ff02::1"] {
        let text = replace("address = \"127.0.0.1\"", &format!("address = \"{bad}\""));
        one_error(&text, at(&text, &format!("\"{bad}\"")), "services[0].targets[0].address", "not a unicast address");
    }
    let text = replace("address = \"127.0.0.1\"", "address = \"host.example\"");
    one_error(&text, at(&text, "host.example"), "services[0].targets[0].address", "IPv4 or IPv6");
    let text = replace("region = \"eu\",", "region = \"mars\",");
    one_error(&text, at(&text, "mars"), "services[0].targets[0].region", "names no region");
    let text = replace("region = \"eu\", ", "");
    one_error(&text, at(&text, "weight = 2"), "services[0].targets[0].region", "gslb");
    let text = replace("check_address = \"127.0.0.2\"", "check_address = \"0.0.0.0\"");
    one_error(&text, at(&text, "0.0.0.0"), "services[0].targets[0].check_address", "unicast");
    let text = "[[services]]\nname = \"a.example.\"\ntargets = [\"127.0.0.1\", \"127.0.0.01\", \"127.0.0.1\"]\n";
    let e = errors(text);
    assert!(e.iter().any(|e| e.message.contains("listed twice")), "{e:#?}");
    let text = "[[services]]\nname = \"a.example.\"\ntargets = [5]\n";
    assert!(errors(text)[0].message.contains("an address string or a table"));
}

#[test]
fn errors_display_file_line_column_and_key() {
    let e = &errors(&replace("udp_workers = 2", "udp_workers = 0"))[0];
    assert_eq!(e.to_string(), "/etc/steerdns/c.toml:6:15: server.udp_workers: must be 1 to 1024, not 0");
}

#[test]
fn rrl_is_off_by_default_and_takes_defaults() {
    assert_eq!(from_toml("", Path::new("c.toml")).unwrap().server.rrl, None);
    let off = "[server.rrl]\nresponses_per_second = 0\nslip = 3\n";
    assert_eq!(from_toml(off, Path::new("c.toml")).unwrap().server.rrl, None);
    let on = "[server.rrl]\nresponses_per_second = 5\nexempt = [\"10.0.0.0/8\"]\n";
    let rrl = from_toml(on, Path::new("c.toml")).unwrap().server.rrl.unwrap();
    assert_eq!((rrl.responses_per_second, rrl.slip, rrl.ipv4_prefix, rrl.ipv6_prefix), (5, 2, 24, 56));
    assert_eq!((rrl.table_size, rrl.window), (100_000, Duration::from_secs(15)));
    assert_eq!(rrl.exempt, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
}

#[test]
fn rrl_errors_name_their_key() {
    let rrl = |body: &str| format!("[server.rrl]\nresponses_per_second = 5\n{body}\n");
    one_error(&rrl("slip = 11"), 3, "server.rrl.slip", "0 to 10");
    one_error(&rrl("ipv4_prefix = 33"), 3, "server.rrl.ipv4_prefix", "8 to 32");
    one_error(&rrl("ipv6_prefix = 8"), 3, "server.rrl.ipv6_prefix", "16 to 128");
    one_error(&rrl("table_size = 10"), 3, "server.rrl.table_size", "1000 to");
    one_error(&rrl("window = \"2h\""), 3, "server.rrl.window", "at most 1h");
    one_error(&rrl("window = \"0s\""), 3, "server.rrl.window", "positive");
    one_error(&rrl("exempt = [\"10.0.0.1/8\"]"), 3, "server.rrl.exempt", "beyond the prefix");
    one_error(&rrl("burst = 3"), 3, "server", "burst");
    one_error("[server.rrl]\nresponses_per_second = -1\n", 2, "server.rrl.responses_per_second", "0 to");
}

#[test]
fn tls_needs_its_certificate_and_key_and_warns_off_the_listen_addresses() {
    let tls = |body: &str| format!("[server]\nlisten = [\"127.0.0.1:53\"]\n{body}\n");
    one_error(&tls("tls_listen = [\"127.0.0.1:853\"]"), 3, "server.tls_listen", "tls_cert_file");
    one_error(&tls("tls_cert_file = \"c.pem\""), 3, "server.tls_cert_file", "server.tls_key_file too");
    one_error(&tls("tls_key_file = \"k.pem\""), 3, "server.tls_key_file", "server.tls_cert_file too");
    one_error(
        &tls("tls_listen = [\"127.0.0.1\"]\ntls_cert_file = \"c\"\ntls_key_file = \"k\""),
        3,
        "server.tls_listen",
        "IP:PORT",
    );
    let files = "tls_cert_file = \"tls/c.pem\"\ntls_key_file = \"tls/k.pem\"";
    let on =
        from_toml(&tls(&format!("tls_listen = [\"127.0.0.1:853\"]\n{files}")), Path::new("/etc/s/c.toml")).unwrap();
    assert_eq!(on.server.tls.as_ref().unwrap().cert_file, Path::new("/etc/s/tls/c.pem"));
    assert!(on.warnings().is_empty(), "{:?}", on.warnings());
    let off = from_toml(&tls(&format!("tls_listen = [\"127.0.0.2:853\"]\n{files}")), Path::new("c.toml")).unwrap();
    assert_eq!(off.warnings().len(), 1);
    assert!(off.warnings()[0].contains("127.0.0.2:853"), "{:?}", off.warnings());
}

#[test]
fn registration_scope_keys() {
    let c = from_toml(FULL, Path::new("c.toml")).unwrap();
    assert!(!c.services[0].accept_registrations, "configured targets close a service by default");
    let open = replace(
        "policy = \"gslb\"",
        "policy = \"gslb\"\naccept_registrations = true\nregistration_networks = [\"10.2.0.0/16\"]",
    );
    let c = from_toml(&open, Path::new("c.toml")).unwrap();
    assert!(c.services[0].accept_registrations);
    assert_eq!(c.services[0].registration_networks, Some(vec!["10.2.0.0/16".parse().unwrap()]));
    let text = replace("policy = \"gslb\"", "policy = \"gslb\"\nmax_registrations = 0\naccept_registrations = true");
    one_error(
        &text,
        line_of(&text, "accept_registrations"),
        "services[0].accept_registrations",
        "max_registrations is 0",
    );
    let text = replace("policy = \"gslb\"", "policy = \"gslb\"\nregistration_networks = [\"10.2.0.1/16\"]");
    one_error(&text, line_of(&text, "registration_networks"), "services[0].registration_networks", "beyond the prefix");
    let text = replace("policy = \"gslb\"", "policy = \"gslb\"\nregistration_token_file = \"nope\"");
    one_error(&text, line_of(&text, "registration_token_file"), "services[0].registration_token_file", "cannot read");
}

#[test]
fn admin_edge_keys() {
    let server = |body: &str| format!("[server]\n{body}\n");
    let c = from_toml(&server("admin_hosts = [\"Steerdns.Internal.\"]"), Path::new("c.toml")).unwrap();
    assert_eq!(c.server.admin_hosts, vec!["steerdns.internal".to_string()]);
    one_error(&server("admin_hosts = [\"a.example:8053\"]"), 2, "server.admin_hosts", "host name");
    one_error(&server("admin_tls_cert_file = \"c.pem\""), 2, "server.admin_tls_cert_file", "admin_tls_key_file too");
    // a non-loopback admin API with a token and no TLS: a warning
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let path = dir.path().join("c.toml");
    let text = server("admin_listen = \"0.0.0.0:8053\"\nadmin_token_file = \"token\"");
    let c = from_toml(&text, &path).unwrap();
    assert!(c.warnings().iter().any(|w| w.contains("in clear")), "{:?}", c.warnings());
    let text = format!("{text}\nadmin_tls_cert_file = \"c.pem\"\nadmin_tls_key_file = \"k.pem\"");
    assert!(from_toml(&text, &path).unwrap().warnings().is_empty());
}

/// A config over a mebibyte: `services` [[services]] tables, with other tables before,
/// between and after them.
fn large_config(services: usize, service: impl Fn(usize) -> String) -> String {
    let mut text = String::from(
        "[server]\nlisten = [\"127.0.0.1:5353\"]\n\n[[zones]]\norigin = \"lb.example.\"\nfile = \"z.zone\"\n\n",
    );
    for i in 0..services {
        if i == services / 2 {
            text.push_str("[checks.web]\nkind = \"tcp\"\nport = 80\n\n[regions.eu]\nnetworks = [\"127.9.0.0/16\"]\n\n");
        }
        text.push_str(&service(i));
    }
    text.push_str("[geo]\ndefault_region = \"eu\"\n");
    assert!(text.len() > (1 << 20) + 1000, "{} bytes: not over a mebibyte", text.len());
    text
}

fn service_table(i: usize) -> String {
    format!(
        "[[services]]\nname = \"s{i}.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\n\
         targets = [\"127.1.{}.{}\", \"127.2.{}.{}\", {{ address = \"127.3.0.1\", weight = 5 }}]\n\n",
        i / 250,
        i % 250,
        i / 250,
        i % 250
    )
}

#[test]
fn a_large_config_read_in_parts_is_the_config_read_whole() {
    let file = Path::new("/etc/steerdns/large.toml");
    let text = large_config(9000, service_table);
    let whole = validate::whole(&text, file).unwrap();
    assert_eq!(whole.services.len(), 9000);
    assert_eq!(validate::in_parts(&text, file).expect("read in parts").unwrap(), whole);
    // errors in a later part: the same, lines and keys numbered through the file
    let bad = large_config(9000, |i| match i {
        8000 => service_table(i).replace("policy = \"healthy\"", "policy = \"fastest\""),
        8500 => service_table(1),
        _ => service_table(i),
    });
    let whole = validate::whole(&bad, file).unwrap_err();
    assert_eq!(validate::in_parts(&bad, file).expect("read in parts").unwrap_err(), whole);
    let keys: Vec<&str> = whole.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["services[8000].policy", "services[8500].name"], "{whole}");
    assert_eq!(whole.0[0].line, line_of(&bad, "policy = \"fastest\""));
}

#[test]
fn a_large_config_that_does_not_split_is_read_whole() {
    let file = Path::new("/etc/steerdns/large.toml");
    // a sub-table of the last service, and a header line inside a multi-line string:
    // the parts would not read as the file does, so it is read whole
    for odd in
        ["[services.extra]\nx = 1\n", "[checks.text]\nkind = \"tcp\"\nport = 1\nbody = \"\"\"\n[[services]]\n\"\"\"\n"]
    {
        let text =
            large_config(9000, |i| if i == 4000 { format!("{}{odd}", service_table(i)) } else { service_table(i) });
        assert!(validate::in_parts(&text, file).is_none(), "{odd}");
        assert!(validate::whole(&text, file).is_err(), "{odd}: each is a mistake in this config");
    }
}

/// The fields a raw section takes, as serde lists them when it refuses an unknown one.
fn fields_of<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let error = toml::from_str::<T>("no_such_key_here = 1").err().expect("an unknown field is refused").to_string();
    let expected =
        error.split("expected one of ").nth(1).or_else(|| error.split("expected ").nth(1)).unwrap_or_default();
    expected.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn the_reference_config_shows_every_key() {
    use super::raw::*;
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/reference.toml")).unwrap();
    // a key is shown set, or commented out where it needs a file the example lacks
    let shown = |key: &str| {
        reference.lines().any(|l| {
            let l = l.trim_start().trim_start_matches('#').trim_start();
            l.starts_with(&format!("{key} ="))
                || l.starts_with('[') && l.contains(&format!(".{key}]"))
                || l.contains(&format!("{{ {key} ="))
                || l.contains(&format!(", {key} ="))
        })
    };
    let sections = [
        ("server", fields_of::<RawServer>()),
        ("server.rrl", fields_of::<RawRrl>()),
        ("log", fields_of::<RawLog>()),
        ("store", fields_of::<RawStore>()),
        ("zones", fields_of::<RawZone>()),
        ("geo", fields_of::<RawGeo>()),
        ("regions", fields_of::<RawRegion>()),
        ("checks", fields_of::<RawCheck>()),
        ("services", fields_of::<RawService>()),
        ("services.targets", fields_of::<RawTargetTable>()),
        ("templates", fields_of::<RawTemplate>()),
        ("health", fields_of::<RawHealth>()),
    ];
    let mut missing = Vec::new();
    for (section, fields) in &sections {
        assert!(fields.len() >= 2, "{section}: no field list read from serde: {fields:?}");
        missing.extend(fields.iter().filter(|f| !shown(f)).map(|f| format!("{section}.{f}")));
    }
    assert!(missing.is_empty(), "examples/reference.toml does not show {missing:?}");
}

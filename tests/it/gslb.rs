//! GSLB over real sockets: regions from ECS or the source address, nested networks and
//! their scopes, the GeoIP database, fallback, the nearest region, and fail-open.

use crate::backend::{Backend, Mode};
use crate::harness::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use std::net::UdpSocket;
use std::time::Duration;

const EU: &str = "127.0.62.1";
const US: &str = "127.0.62.2";
const ASIA: &str = "127.0.62.3";

fn config(port: u16) -> String {
    let mmdb = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/geo-test.mmdb");
    format!(
        r#"{}
[geo]
default_region = "eu"
mmdb = "{mmdb}"

[regions.eu]
networks = ["10.0.0.0/8", "127.0.60.0/24", "2001:db8:1::/48"]
countries = ["DE", "FR"]
location = [50.1, 8.7]

[regions.us]
networks = ["10.1.0.0/16", "127.0.61.0/24"]
continents = ["NA"]
fallback = ["eu"]
location = [39.0, -77.5]

[regions.asia]
networks = ["10.3.0.0/16"]
location = [35.7, 139.7]

[checks.web]
port = {port}
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1

[[services]]
name = "g.lb.example."
policy = "gslb"
check = "web"
targets = [
  {{ address = "{EU}", region = "eu" }},
  {{ address = "{US}", region = "us" }},
  {{ address = "{ASIA}", region = "asia" }},
]
"#,
        quickstart_config()
    )
}

struct Setup {
    server: TestServer,
    backends: [Backend; 3],
}

fn setup() -> Setup {
    let eu = Backend::http(EU, 0, Mode::Status(200, "OK"));
    let port = eu.addr.port();
    let us = Backend::http(US, port, Mode::Status(200, "OK"));
    let asia = Backend::http(ASIA, port, Mode::Status(200, "OK"));
    let server = TestServer::start(&config(port));
    Setup { server, backends: [eu, us, asia] }
}

/// (addresses, TTL, ECS scope) for a client subnet.
fn from_subnet(s: &TestServer, subnet: &str) -> (Vec<String>, u32, u8) {
    let r = s.udp(&with_ecs(query("g.lb.example.", RecordType::A), subnet));
    (addresses(&r), r.answers.first().map_or(0, |a| a.ttl), ecs_of(&r).map_or(255, |e| e.2))
}

#[test]
fn regions_and_scopes_from_ecs() {
    let s = setup();
    let cases = [
        // (client subnet, region's target, scope)
        ("10.2.5.0/24", EU, 16), // eu's 10/8, narrowed by us's 10.1/16 and asia's 10.3/16
        ("10.5.5.0/24", EU, 14), // 10.4/14 holds no other region's network
        ("10.1.5.0/24", US, 16),
        ("10.3.5.0/24", ASIA, 16),
        ("10.128.0.0/16", EU, 9),
        ("2001:db8:1:2::/64", EU, 48),
        ("127.0.50.0/24", EU, 24),    // database: DE, a /24
        ("127.0.51.0/24", US, 24),    // database: US, mapped by its continent NA
        ("127.0.52.0/24", EU, 22),    // database: JP/AS, mapped to nothing: default, its /22
        ("2001:db8:50::/56", EU, 48), // database: FR
        ("192.0.2.0/24", EU, 1),      // nothing decides: the default region
    ];
    for (subnet, target, scope) in cases {
        let (got, _, got_scope) = from_subnet(&s.server, subnet);
        assert_eq!((got, got_scope), (vec![target.to_string()], scope), "{subnet}");
    }
    // SOURCE 0: the resolver's own address decides (127.0.0.1: the default region), scope 0
    assert_eq!(from_subnet(&s.server, "0.0.0.0/0"), (vec![EU.to_string()], 30, 0));
}

/// Asks from a socket bound to `source` (every 127/8 address is usable on Linux).
fn from_source(s: &TestServer, source: &str) -> Vec<String> {
    let socket = UdpSocket::bind((source, 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query("g.lb.example.", RecordType::A).to_vec().unwrap();
    for _ in 0..3 {
        socket.send_to(&q, s.addr).unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = socket.recv(&mut buf) {
            let r = Message::from_vec(&buf[..n]).unwrap();
            assert!(r.edns.is_none(), "no ECS asked, none answered");
            return addresses(&r);
        }
    }
    panic!("no reply to {source}");
}

#[test]
fn regions_from_the_source_address_without_ecs() {
    let s = setup();
    assert_eq!(from_source(&s.server, "127.0.61.7"), [US]);
    assert_eq!(from_source(&s.server, "127.0.60.7"), [EU]);
    assert_eq!(from_source(&s.server, "127.0.50.9"), [EU], "database country");
    assert_eq!(from_source(&s.server, "127.0.51.9"), [US], "database continent");
}

#[test]
fn fallback_then_nearest_and_back_when_healed() {
    let s = setup();
    let [eu, us, asia] = &s.backends;
    eventually("probed", || eu.hits() > 0 && us.hits() > 0 && asia.hits() > 0);
    us.set(Mode::Down);
    // us falls back to eu, its fallback, with the TTL halved
    eventually("us → eu", || from_subnet(&s.server, "10.1.5.0/24") == (vec![EU.into()], 15, 16));
    us.set(Mode::Status(200, "OK"));
    eventually("us back", || from_subnet(&s.server, "10.1.5.0/24") == (vec![US.into()], 30, 16));
    // asia has no fallback: the nearest region with a live target (eu is nearer than us)
    asia.set(Mode::Down);
    eventually("asia → nearest", || from_subnet(&s.server, "10.3.5.0/24").0 == [EU]);
    // eu down too: the fallback lists are not transitive; asia's nearest live is us
    eu.set(Mode::Down);
    eventually("asia → us", || from_subnet(&s.server, "10.3.5.0/24").0 == [US]);
    // every region down: each client gets its own region, never every region at once
    us.set(Mode::Down);
    eventually("all down", || from_subnet(&s.server, "10.1.5.0/24") == (vec![US.into()], 15, 16));
    assert_eq!(from_subnet(&s.server, "10.3.5.0/24").0, [ASIA]);
    assert_eq!(from_subnet(&s.server, "10.2.5.0/24").0, [EU]);
}

#[test]
fn a_broken_database_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.mmdb"), b"not a database").unwrap();
    let text = "[geo]\ndefault_region = \"eu\"\nmmdb = \"bad.mmdb\"\n[regions.eu]\n";
    std::fs::write(dir.path().join("c.toml"), text).unwrap();
    let e = steerdns::loaded::load(&dir.path().join("c.toml")).unwrap_err();
    assert!(e.to_string().contains("c.toml:3:8: geo.mmdb: cannot read the GeoIP database"), "{e}");
}

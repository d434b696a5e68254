//! The fuzz harnesses: one function per kind of outside bytes, shared by the cargo-fuzz
//! targets (`fuzz/`) and by `cargo test`, which replays every corpus file through them
//! (`fuzz/corpus/TARGET/`). Each panics when an invariant breaks; none touches a
//! socket.
//!
//! - [`respond_udp`], [`respond_tcp`], [`respond_structured`] (well-formed queries
//!   built from the fuzzer's bytes): a query (or a TCP byte stream) answered from a
//!   View of the quickstart's zone and services; every reply must decode with
//!   hickory-proto, echo the ID with QR set, and keep to the size limit (512 bytes
//!   without EDNS, 1232 with it, over UDP; 65,535 over TCP).
//!   The zone is signed (SPEC §8), so a query with DO=1 reaches the signer.
//! - [`zone_text`], [`config_text`], [`api_body`], [`key_file`]: zone files, configs,
//!   the admin API's JSON bodies and DNSSEC key files, which must give a value or an
//!   error, never a panic or a hang.

use crate::api::{RegistrationRequest, StateRequest};
use crate::dns::{self, Transport};
use crate::view::View;
use hickory_proto::op::Message;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;

const CONFIG: &str = include_str!("../examples/quickstart.toml");
const ZONE: &str = include_str!("../zones/lb.example.zone");

/// An Ed25519 key for lb.example. that signs the fuzzed zone (made for this and used
/// for nothing else).
const KEY: (&str, &str) = (
    "lb.example. IN DNSKEY 257 3 15 tTMz5CprqPr6cipGjOw6gINQmBArGvQ6Z4takFrxinc=\n",
    "Private-key-format: v1.3\nAlgorithm: 15 (ED25519)\nPrivateKey: EkmL79SzcWHl1QurEDA+HDwbEaHVswLywRQ6gRyD1HI=\n",
);

/// The View every respond harness answers from: the quickstart, built once.
pub fn view() -> &'static View {
    static VIEW: OnceLock<View> = OnceLock::new();
    VIEW.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("steerdns-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(dir.join("lb.example.zone"), ZONE).expect("the zone written");
        std::fs::write(dir.join("K.key"), KEY.0).expect("the key written");
        std::fs::write(dir.join("K.private"), KEY.1).expect("the key written");
        // with RRL on, so that every reply's RRL key is computed too; signed, with a
        // budget no fuzzer reaches
        let config = CONFIG
            .replace("../zones/lb.example.zone\"", "lb.example.zone\"\ndnssec_keys = [\"K.private\"]")
            .replace("[server]\n", "[server]\ndnssec_signatures_per_second = 10000000\n")
            + "\n[server.rrl]\nresponses_per_second = 1000000\n";
        std::fs::write(dir.join("c.toml"), config).expect("the config written");
        let loaded = crate::loaded::load(&dir.join("c.toml")).expect("the quickstart loads");
        let _ = std::fs::remove_dir_all(&dir);
        let health = |_: &crate::health::ProbeKey| (crate::health::Health::Unknown, None);
        View::build(&loaded, None, &health, &|_, _| crate::api::AdminState::Auto, false)
    })
}

/// Services of every policy and order for [`fast_is_general`], in a signed zone;
/// targets ending in .2 and ::2 are down, .3 and ::3 report 50%, .4 and ::4 drain.
const DIFFERENTIAL: &str = r#"
[server]
listen = ["127.0.0.1:5353"]
identity = "steerdns-differential"

[[zones]]
origin = "lb.example."
file = "lb.example.zone"
dnssec_keys = ["K.private"]

[geo]
default_region = "east"

[regions.west]
networks = ["127.1.0.0/16", "2001:db8:1::/48"]
[regions.east]
networks = ["127.2.0.0/16"]

[checks.tcp]
kind = "tcp"
port = 80

[[services]]
name = "www.lb.example."
ttl = 30
targets = ["127.0.0.10", "127.0.0.11", "127.0.0.12", "::1"]

[[services]]
name = "api.lb.example."
policy = "healthy"
check = "tcp"
max_answers = 2
targets = ["127.0.1.1", "127.0.1.2", "127.0.1.3", "::1", "::2"]

[[services]]
name = "down.lb.example."
policy = "healthy"
check = "tcp"
when_all_down = "none"
targets = ["127.0.2.2", "::2"]

[[services]]
name = "open.lb.example."
policy = "healthy"
check = "tcp"
targets = ["127.0.3.2", "127.0.4.2"]

[[services]]
name = "failover.lb.example."
policy = "failover"
check = "tcp"
targets = [{ address = "127.0.5.2", priority = 1 }, { address = "127.0.5.3", priority = 2 }, { address = "127.0.5.4", priority = 2 }]

[[services]]
name = "gslb.lb.example."
policy = "gslb"
check = "tcp"
targets = [{ address = "127.0.6.1", region = "west" }, { address = "127.0.6.2", region = "east" }, { address = "127.0.6.3", region = "east" }, { address = "2001:db8::1", region = "west" }]

[[services]]
name = "weighted.lb.example."
order = "weighted"
check = "tcp"
max_answers = 3
targets = [{ address = "127.0.7.1", weight = 1 }, { address = "127.0.7.3", weight = 5 }, { address = "127.0.7.4", weight = 0 }, { address = "127.0.7.5", weight = 2 }]

[[services]]
name = "sticky.lb.example."
order = "sticky"
check = "tcp"
targets = ["127.0.8.1", "127.0.8.3", "127.0.8.4", "::3", "::4"]

[[services]]
name = "v6.lb.example."
targets = ["::5", "::6"]
"#;

fn build(config: &str) -> View {
    let dir =
        std::env::temp_dir().join(format!("steerdns-fuzz-{}-{:?}", std::process::id(), std::thread::current().id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    std::fs::write(dir.join("lb.example.zone"), ZONE).expect("the zone written");
    std::fs::write(dir.join("K.key"), KEY.0).expect("the key written");
    std::fs::write(dir.join("K.private"), KEY.1).expect("the key written");
    std::fs::write(dir.join("c.toml"), config).expect("the config written");
    let loaded = crate::loaded::load(&dir.join("c.toml")).unwrap_or_else(|e| panic!("the config loads: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    // .3 and ::3 report half their weight, .4 and ::4 a drain (SPEC §9)
    let health = |key: &crate::health::ProbeKey| {
        use crate::health::{Health, Report, Reported};
        match key.address.to_string() {
            a if a.ends_with(".2") || a.ends_with("::2") => (Health::Down, None),
            a if a.ends_with(".3") || a.ends_with("::3") => {
                (Health::Up, Some(Report { percent: 50, state: Reported::Up }))
            }
            a if a.ends_with(".4") || a.ends_with("::4") => {
                (Health::Up, Some(Report { percent: 100, state: Reported::Drain }))
            }
            _ => (Health::Up, None),
        }
    };
    View::build(&loaded, None, &health, &|_, _| crate::api::AdminState::Auto, false)
}

thread_local! {
    // two Views built alike, one for each path, so that their round-robin counters
    // move in step (per thread: tests run side by side)
    static TWINS: (View, View) = twins();
}

/// Two Views of [`DIFFERENTIAL`] sharing one signature cache: the general path's
/// signatures are the ones the fast path finds.
fn twins() -> (View, View) {
    let fast = build(DIFFERENTIAL);
    let mut general = build(DIFFERENTIAL);
    general.signatures = fast.signatures.clone();
    (fast, general)
}

/// The fast path, where it answers `query`, writes the general path's reply byte for
/// byte, with the same RCODE, RRL key and cookie verdict. Whether it answered.
pub fn fast_is_general(query: &[u8], client: SocketAddr, transport: Transport) -> bool {
    TWINS.with(|(fast, general)| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        crate::steer::seed_random(7);
        let Some(x) = dns::respond_fast(fast, query, client, transport, &mut a) else { return false };
        crate::steer::seed_random(7);
        let y = dns::respond_general(general, query, client, transport, &mut b).expect("the general path answers too");
        assert_eq!(a, b, "fast and general replies differ for the query {query:02x?}");
        assert_eq!(format!("{x:?}"), format!("{y:?}"), "for the query {query:02x?}");
        true
    })
}

const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 53000);

/// One datagram, answered as the UDP loop answers it, and then as RRL's slip
/// answers it: TC=1 with nothing but the question and the OPT.
pub fn respond_udp(query: &[u8]) {
    let _ = fast_is_general(query, CLIENT, Transport::Udp);
    let mut out = Vec::new();
    if let Some(answered) = dns::respond(view(), query, CLIENT, Transport::Udp, &mut out) {
        check_reply(query, &out, Transport::Udp);
        assert!(answered.rrl.is_some(), "every UDP reply has an RRL key while RRL is on");
        dns::slip(view(), query, CLIENT, answered.rcode, &mut out);
        check_reply(query, &out, Transport::Udp);
        let slipped = Message::from_vec(&out).expect("checked");
        assert!(slipped.metadata.truncation, "a slip has TC=1");
        assert!(slipped.answers.is_empty() && slipped.authorities.is_empty() && slipped.additionals.is_empty());
    }
}

/// A TCP byte stream: each two-byte-framed message answered in turn, as the TCP loop
/// does, until the stream ends, a frame is incomplete, or a zero-length message
/// closes it.
pub fn respond_tcp(mut stream: &[u8]) {
    let mut out = Vec::new();
    while let [high, low, rest @ ..] = stream {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        if len == 0 || rest.len() < len {
            return;
        }
        let (query, next) = rest.split_at(len);
        // over TCP, and over TLS (which pads when asked)
        for transport in [Transport::Tcp, Transport::Tls] {
            let _ = fast_is_general(query, CLIENT, transport);
            if dns::respond(view(), query, CLIENT, transport, &mut out).is_some() {
                check_reply(query, &out, transport);
            }
        }
        stream = next;
    }
}

/// A well-formed query built from `data` (names of the zone in any case, every kind
/// of type and class, EDNS with ECS, NSID, padding and unknown options, other
/// opcodes, extra records), answered over UDP and over TCP: the fuzzer reaches deep
/// into resolution instead of stopping at the parser.
pub fn respond_structured(data: &[u8]) {
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(query) = structured_query(&mut u) else { return };
    respond_udp(&query);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    respond_tcp(&framed);
}

const NAMES: &[&str] = &[
    "www.lb.example.",
    "api.lb.example.",
    "empty.lb.example.",
    "static.lb.example.",
    "alias.lb.example.",
    "nope.lb.example.",
    "lb.example.",
    "x.lb.example.",
    "example.org.",
    "id.server.",
    "hostname.bind.",
    ".",
];
const TYPES: &[u16] = &[1, 28, 255, 6, 2, 15, 16, 5, 43, 33, 257, 252, 251, 0, 41, 65000, 128, 249];

fn structured_query(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let opcode: u16 = *u.choose(&[0, 0, 0, 0, 1, 2, 4, 5, 15])?;
    let flags = (opcode << 11) | (u16::from(u.arbitrary::<bool>()?) << 8) | (u16::from(u.arbitrary::<bool>()?) << 4);
    let extra: u8 = u.int_in_range(0..=2)?;
    let edns = u.ratio(3, 4)?;
    let mut out = Vec::new();
    out.extend_from_slice(&u.arbitrary::<u16>()?.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns) + extra]);
    // the question: a name of the zone, maybe under more labels, in any case
    let mut name = String::new();
    for _ in 0..u.int_in_range(0..=2)? {
        name.push_str(u.choose(&["a", "b", "*", "_tcp", "xn--d1a"])?);
        name.push('.');
    }
    name.push_str(u.choose(NAMES)?);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        for byte in label.bytes() {
            out.push(if u.arbitrary::<bool>()? { byte.to_ascii_uppercase() } else { byte });
        }
    }
    out.push(0);
    let qtype = if u.ratio(1, 8)? { u.arbitrary::<u16>()? } else { *u.choose(TYPES)? };
    let qclass: u16 = *u.choose(&[1, 1, 1, 3, 255, 254, 4])?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    for _ in 0..extra {
        // an A record of 4 bytes, or of a length the fuzzer picks
        let len: u16 = if u.ratio(3, 4)? { 4 } else { u.int_in_range(0..=8)? };
        out.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend(std::iter::repeat_n(7, usize::from(len)));
    }
    if edns {
        let options = edns_options(u)?;
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&u.arbitrary::<u16>()?.to_be_bytes());
        let version: u8 = if u.ratio(1, 8)? { 1 } else { 0 };
        out.extend_from_slice(&[0, version, if u.arbitrary::<bool>()? { 0x80 } else { 0 }, 0]);
        out.extend_from_slice(&(options.len() as u16).to_be_bytes());
        out.extend_from_slice(&options);
    }
    Ok(out)
}

fn edns_options(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let (code, data): (u16, Vec<u8>) = match u.int_in_range(0..=4)? {
            0 => {
                let family: u16 = *u.choose(&[1, 2, 0, 3])?;
                let source: u8 = u.int_in_range(0..=130)?;
                let scope: u8 = u.arbitrary()?;
                let len = if u.ratio(7, 8)? { usize::from(source.div_ceil(8)) } else { u.int_in_range(0..=17)? };
                let mut data = family.to_be_bytes().to_vec();
                data.extend_from_slice(&[source, scope]);
                for _ in 0..len {
                    data.push(u.arbitrary()?);
                }
                (8, data)
            }
            1 => (3, Vec::new()),
            2 => (12, vec![0; u.int_in_range(0..=600)?]),
            3 => (10, (0..*u.choose(&[8usize, 24, 5])?).map(|i| i as u8).collect()),
            _ => (u.arbitrary()?, (0..u.int_in_range(0..=20)?).map(|i| i as u8).collect()),
        };
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Ok(out)
}

/// The invariants of SPEC §5 every reply keeps.
fn check_reply(query: &[u8], reply: &[u8], transport: Transport) {
    // hickory cannot hold the \000 label of a compact denial's NSEC (RFC 9824): read a
    // copy with that label's one byte made a letter
    let readable = without_compact_labels(reply);
    let message =
        Message::from_vec(&readable).unwrap_or_else(|e| panic!("the reply does not decode: {e}\n{reply:02x?}"));
    assert_eq!(reply[..2], query[..2], "the ID is echoed");
    assert!(message.metadata.message_type == hickory_proto::op::MessageType::Response, "QR is set");
    let limit = match transport {
        Transport::Tcp | Transport::Tls => usize::from(u16::MAX),
        Transport::Udp if message.edns.is_some() => usize::from(dns::OUR_UDP_SIZE),
        Transport::Udp => 512,
    };
    assert!(reply.len() <= limit, "a reply of {} bytes over {transport:?}", reply.len());
    assert!(message.queries.len() <= 1, "at most the one question");
}

/// `reply` with the first label of every NSEC's next name, when it is `\000`, made
/// `-`; unchanged when it does not parse (then hickory says why).
fn without_compact_labels(reply: &[u8]) -> Vec<u8> {
    let mut out = reply.to_vec();
    let skip_name = |at: &mut usize| -> Option<()> {
        loop {
            let len = *reply.get(*at)?;
            if len & 0xC0 == 0xC0 {
                *at += 2;
                return Some(());
            }
            *at += 1 + usize::from(len);
            if len == 0 {
                return Some(());
            }
        }
    };
    let count = |i: usize| reply.get(i..i + 2).map_or(0, |c| usize::from(u16::from_be_bytes([c[0], c[1]])));
    let mut at = 12;
    for _ in 0..count(4) {
        if skip_name(&mut at).is_none() {
            return out;
        }
        at += 4;
    }
    for _ in 0..count(6) + count(8) + count(10) {
        if skip_name(&mut at).is_none() {
            return out;
        }
        let (rtype, rdlength) = (count(at), count(at + 8));
        let rdata = at + 10;
        if rtype == 47 && reply.get(rdata..rdata + 2) == Some(&[1, 0]) {
            out[rdata + 1] = b'-';
        }
        at = rdata + rdlength;
    }
    out
}

/// A DNSSEC key: the fuzzer's bytes up to the first NUL as the `.private` file, the
/// rest as the `.key` file.
pub fn key_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (private, public) = text.split_once('\0').unwrap_or((text, ""));
    let origin: hickory_proto::rr::Name = "lb.example.".parse().expect("a name");
    let _ = crate::dnssec::parse_key(private, Path::new("K.private"), public, Path::new("K.key"), &origin);
}

/// A load report (SPEC §9) as an agent's reply: its first line, parsed. Whatever the
/// bytes, a report that parses holds a percentage of 0–100, and says drain at 0%.
pub fn agent_line(data: &[u8]) {
    use crate::health::agent;
    let closed = data.len() < agent::MAX_LINE;
    let read = &data[..data.len().min(agent::MAX_LINE)];
    let Some(Ok(line)) = agent::first_line(read, closed) else { return };
    if let Ok(report) = agent::parse(line) {
        assert!(report.percent <= 100, "{report:?} from {line:?}");
        assert!(report.percent > 0 || report.state != agent::Reported::Up, "{report:?} from {line:?}");
        // the same words in another case say the same
        assert_eq!(agent::parse(&line.to_ascii_uppercase()), Ok(report), "{line:?}");
    }
}

/// A zone file's text, parsed and checked; its $INCLUDEs are never followed here.
pub fn zone_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.to_ascii_lowercase().contains("$include") {
        return;
    }
    let origin: hickory_proto::rr::Name = "lb.example.".parse().expect("a name");
    let _ = crate::zone::parse_zone(&origin, Path::new("/fuzz/z.zone"), text);
}

/// A config's text, validated (paths it names are not read: they do not exist).
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = crate::config::from_toml(text, Path::new("/nonexistent/fuzz/c.toml")) {
        // every error renders, with its location
        let _ = errors.to_string();
    }
}

/// The admin API's JSON bodies: a state and a registration.
pub fn api_body(data: &[u8]) {
    let _ = serde_json::from_slice::<StateRequest>(data);
    if let Ok(request) = serde_json::from_slice::<RegistrationRequest>(data) {
        let _ = serde_json::to_vec(&request).expect("a parsed body serializes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every file of `fuzz/corpus/TARGET` through `harness`; the count.
    fn replay(target: &str, harness: fn(&[u8])) -> usize {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if let Err(e) = std::panic::catch_unwind(|| harness(&bytes)) {
                std::panic::resume_unwind(Box::new(format!("{}: {e:?}", path.display())));
            }
            count += 1;
        }
        count
    }

    #[test]
    fn every_corpus_replays_through_its_harness() {
        for (target, harness, least) in [
            ("respond_udp", respond_udp as fn(&[u8]), 5),
            ("respond_tcp", respond_tcp, 2),
            ("respond_structured", respond_structured, 1),
            ("zone", zone_text, 1),
            ("config", config_text, 2),
            ("api_body", api_body, 2),
            ("key_file", key_file, 2),
            ("agent_line", agent_line, 4),
        ] {
            let count = replay(target, harness);
            assert!(count >= least, "{target}: {count} corpus files");
        }
    }

    /// Every name of the zone and every service, in two spellings, for every type the
    /// tests ask, with and without EDNS (small and large payloads, DO, ECS of several
    /// clients and prefixes, a cookie, NSID, padding), from several sources, over each
    /// transport, three times (round-robin moves): the fast path's replies are the
    /// general path's, byte for byte. The fast path must answer a good share of them.
    #[test]
    fn the_fast_path_writes_what_the_general_path_writes() {
        use hickory_proto::op::{Edns, Message, Query};
        use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
        use hickory_proto::rr::{Name, RecordType};
        let names = [
            "www",
            "api",
            "down",
            "open",
            "failover",
            "gslb",
            "weighted",
            "sticky",
            "v6",
            "@",
            "ns1",
            "ns2",
            "mail",
            "static",
            "alias",
            "docs",
            "x.wild",
            "*.wild",
            "_http._tcp",
            "child",
            "ns.child",
            "a.child",
            "nope",
        ];
        let types = [1u16, 28, 16, 15, 255, 6, 2, 5, 33, 257, 43, 99];
        let subnet = |a: &str, prefix| Some(EdnsOption::Subnet(ClientSubnet::new(a.parse().unwrap(), prefix, 0)));
        let options: [(Option<u16>, bool, Option<EdnsOption>); 9] = [
            (None, false, None),
            (Some(1232), false, None),
            (Some(512), true, None),
            (Some(4096), false, subnet("127.1.7.0", 24)),
            (Some(1232), false, subnet("127.2.0.0", 16)),
            (Some(1232), true, subnet("2001:db8:1::", 48)),
            (Some(1232), false, subnet("0.0.0.0", 0)),
            (Some(1232), false, Some(EdnsOption::Unknown(10, (1..=8).collect()))),
            (Some(1232), false, Some(EdnsOption::Unknown(3, Vec::new()))),
        ];
        let sources = ["127.0.0.1:5300", "127.1.0.9:5300", "127.2.3.4:5300", "[::1]:5300"];
        let (mut fast, mut total) = (0, 0);
        for name in names {
            for spelled in [name.to_string(), name.to_uppercase()] {
                let full = if spelled == "@" { "lb.example.".to_string() } else { format!("{spelled}.lb.EXAMPLE.") };
                for qtype in types {
                    for (payload, dnssec_ok, option) in &options {
                        let mut query = Message::query();
                        query.metadata.id = total as u16;
                        query.metadata.recursion_desired = total % 2 == 0;
                        query.add_query(Query::query(Name::from_ascii(&full).unwrap(), RecordType::from(qtype)));
                        if let Some(payload) = payload {
                            let mut edns = Edns::new();
                            edns.set_max_payload(*payload);
                            edns.set_dnssec_ok(*dnssec_ok);
                            if let Some(o) = option {
                                edns.options_mut().insert(o.clone());
                            }
                            query.set_edns(edns);
                        }
                        let bytes = query.to_vec().unwrap();
                        for source in sources {
                            for transport in [Transport::Udp, Transport::Tcp, Transport::Tls] {
                                for _ in 0..3 {
                                    total += 1;
                                    fast += usize::from(fast_is_general(&bytes, source.parse().unwrap(), transport));
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(fast * 16 > total, "the fast path answered {fast} of {total}");
    }

    #[test]
    #[should_panic(expected = "the ID is echoed")]
    fn the_invariants_can_fail() {
        let query = [0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut reply = Vec::new();
        dns::respond(view(), &query, CLIENT, Transport::Udp, &mut reply);
        reply[1] ^= 1;
        check_reply(&query, &reply, Transport::Udp);
    }
}

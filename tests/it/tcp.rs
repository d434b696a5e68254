//! steerdns's own TCP loop (SPEC §7), over real sockets: frames that close a
//! connection, the connection limits, and replies that are the ones UDP gives.

use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn server(limits: &str) -> TestServer {
    TestServer::start(
        &quickstart_config().edit("tcp_idle_timeout = \"10s\"", &format!("tcp_idle_timeout = \"10s\"\n{limits}")),
    )
}

fn asks(stream: &mut TcpStream) -> bool {
    let q = query("static.lb.example.", RecordType::A);
    if stream
        .write_all(&[&(q.to_vec().unwrap().len() as u16).to_be_bytes()[..], &q.to_vec().unwrap()].concat())
        .is_err()
    {
        return false;
    }
    tcp_read(stream).is_some_and(|r| hickory_proto::op::Message::from_vec(&r).unwrap().metadata.id == q.metadata.id)
}

/// Whether the server has closed `stream` (reading gives EOF or a reset), within the
/// read timeout.
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        Ok(_) => false,
    }
}

#[test]
fn a_zero_length_message_closes_at_once() {
    let s = server("");
    let mut stream = tcp_from("127.0.95.1", s.addr);
    assert!(asks(&mut stream));
    let start = Instant::now();
    stream.write_all(&[0, 0]).unwrap();
    assert!(closed(&mut stream));
    // the idle timeout is 10 s: this was the zero-length message
    assert!(start.elapsed() < Duration::from_secs(5), "closed after {:?}", start.elapsed());
}

#[test]
fn a_length_prefix_never_completed_closes_at_the_idle_timeout() {
    let s = TestServer::start(&quickstart_config().edit("tcp_idle_timeout = \"10s\"", "tcp_idle_timeout = \"300ms\""));
    for partial in [&[0u8][..], &[0, 40, 1, 2, 3][..]] {
        let mut stream = tcp_from("127.0.95.2", s.addr);
        stream.write_all(partial).unwrap();
        let start = Instant::now();
        assert!(closed(&mut stream), "{partial:?}");
        assert!(start.elapsed() < Duration::from_secs(5), "closed after {:?}", start.elapsed());
    }
    assert!(asks(&mut tcp_from("127.0.95.2", s.addr)), "the next connection is served");
}

#[test]
fn past_the_per_client_limit_the_longest_idle_connection_of_that_client_goes() {
    let s = server("tcp_max_connections_per_client = 2");
    let mut first = tcp_from("127.0.95.3", s.addr);
    let mut second = tcp_from("127.0.95.3", s.addr);
    let mut other = tcp_from("127.0.95.4", s.addr);
    assert!(asks(&mut first) && asks(&mut other));
    // `second` has not asked since it was accepted, after `first` asked: it is the idlest
    assert!(asks(&mut second));
    assert!(asks(&mut first), "first asked last");
    let mut third = tcp_from("127.0.95.3", s.addr);
    assert!(asks(&mut third), "the new connection is served");
    assert!(closed(&mut second), "the longest-idle of that client was closed");
    assert!(asks(&mut first) && asks(&mut other), "the others are served");
}

#[test]
fn past_the_total_limit_the_longest_idle_connection_of_all_goes() {
    let s = server("tcp_max_connections = 3");
    let mut streams: Vec<TcpStream> = (1..=3).map(|i| tcp_from(&format!("127.0.96.{i}"), s.addr)).collect();
    for stream in &mut streams {
        assert!(asks(stream));
    }
    let mut fourth = tcp_from("127.0.96.4", s.addr);
    assert!(asks(&mut fourth));
    assert!(closed(&mut streams[0]), "the longest idle of all was closed");
    assert!(asks(&mut streams[1]) && asks(&mut streams[2]));
}

#[test]
fn tcp_replies_are_the_replies_udp_gives_but_tc() {
    let s = TestServer::quickstart();
    let bad_ecs = raw::ecs(1, 33, &[10, 0, 0, 0, 0]);
    let cases: Vec<Vec<u8>> = vec![
        // EDNS version 1 with a malformed option: BADVERS before any option error
        raw::query(0x0100, &[("www.lb.example.", 1, 1)], [&[], &[], &[raw::opt(&[0], 1, &bad_ecs)]]),
        raw::query(0x0100, &[("www.lb.example.", 1, 1)], [&[], &[], &[raw::opt(&[0], 0, &bad_ecs)]]),
        raw::query(0x0100, &[("www.lb.example.", 1, 1), ("static.lb.example.", 1, 1)], [&[], &[], &[]]),
        raw::query(0x2100, &[("www.lb.example.", 1, 1)], [&[], &[], &[]]),
        raw::query(0x0100, &[("www.lb.example.", 252, 1)], [&[], &[], &[]]),
        raw::query(0x0100, &[], [&[], &[], &[]]),
        // an A record of 3 bytes beside the OPT
        raw::query(
            0x0100,
            &[("www.lb.example.", 1, 1)],
            [&[], &[], &[vec![0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 3, 1, 2, 3], raw::opt(&[0], 0, &[])]],
        ),
        // opcode STATUS with RD and CD
        raw::query(0x1110, &[("www.lb.example.", 1, 1)], [&[], &[], &[]]),
    ];
    for bytes in cases {
        let udp = udp_raw(s.addr, &bytes, Duration::from_secs(2)).expect("a UDP reply");
        let mut stream = tcp_from("127.0.95.9", s.addr);
        tcp_send(&mut stream, &bytes);
        let tcp = tcp_read(&mut stream).expect("a TCP reply");
        assert_eq!(raw::summary(&tcp), raw::summary(&udp), "{bytes:02x?}");
        assert_eq!(tcp, udp, "the same bytes: {bytes:02x?}");
    }
}

/// With 512 descriptors and 600 clients holding connections, the server keeps what its
/// probes and the admin API need: the probe keeps its verdict, UDP and the admin API
/// answer, and the clamp is logged.
#[test]
fn clients_never_take_the_descriptors_probes_need() {
    use crate::backend::{Backend, Mode};
    let backend = Backend::http("127.0.97.1", 0, Mode::Status(200, "OK"));
    let port = backend.addr.port();
    let dir = quickstart_dir();
    let path = dir.path().join("c.toml");
    let config = std::fs::read_to_string(&path).unwrap()
        + &format!(
            "\n[checks.web]\nport = {port}\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\n\
             [[services]]\nname = \"h.lb.example.\"\npolicy = \"healthy\"\ncheck = \"web\"\n\
             targets = [\"127.0.97.1\", \"127.0.97.2\"]\n"
        );
    std::fs::write(&path, config).unwrap();
    // the server starts under a soft and hard limit of 512 open files
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n 512 && exec {} serve --config {}", env!("CARGO_BIN_EXE_steerdns"), path.display()))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (dns, admin) = addresses_from(child.stderr.take().unwrap(), Some(lines.clone()));
    let _server = Server(child);
    wait_ready(&admin);
    let before = target_status(&admin, "h.lb.example.", "127.0.97.1");
    assert_eq!(before.health, "up");
    // twelve sources of fifty: under the per-client limit, over the descriptors
    let clients: Vec<TcpStream> = (0..600).map(|i| tcp_from(&format!("127.0.98.{}", 1 + i / 50), dns)).collect();
    // every connection a query: the server has accepted them all by then
    let mut asked = 0;
    for mut c in clients.iter().take(50) {
        let q = query("static.lb.example.", RecordType::A).to_vec().unwrap();
        asked += usize::from(c.write_all(&[&(q.len() as u16).to_be_bytes()[..], &q].concat()).is_ok());
    }
    assert!(asked > 0);
    // some probes later, the target is still up, with no change since
    let probed = |t: &steerdns::api::TargetStatus| t.last_probe.as_ref().map(|p| p.at);
    let first = probed(&before);
    eventually("more probes", || probed(&target_status(&admin, "h.lb.example.", "127.0.97.1")) > first);
    eventually("two more", || {
        let t = target_status(&admin, "h.lb.example.", "127.0.97.1");
        probed(&t) > first.map(|f| f + 0.5)
    });
    let after = target_status(&admin, "h.lb.example.", "127.0.97.1");
    assert_eq!((after.health.as_str(), after.fails), ("up", 0), "{after:?}");
    let reply = udp_exchange(dns, &query("h.lb.example.", RecordType::A)).expect("UDP answers");
    assert_eq!(addresses(&reply), ["127.0.97.1"]);
    assert!(lines.lock().unwrap().iter().any(|l| l.contains("tcp_max_connections 1024 clamped to")));
    drop(clients);
}

/// 5,000 idle connections from a hundred addresses: the limits keep what is open
/// bounded, and UDP, the probes and the admin API go on as before.
#[test]
fn five_thousand_idle_connections_are_held_off() {
    let (_backend, s) = crate::backend::probed_server("127.0.99.1", "healthy", r#"["127.0.99.1", "127.0.99.2"]"#);
    let idle: Vec<TcpStream> =
        (0..5000).map(|i| tcp_from(&format!("127.0.{}.{}", 100 + i / 2500, 1 + (i / 50) % 50), s.addr)).collect();
    let first = target_status(&s.admin, "h.lb.example.", "127.0.99.1").last_probe.map(|p| p.at);
    eventually("probes after the flood", || {
        target_status(&s.admin, "h.lb.example.", "127.0.99.1").last_probe.map(|p| p.at) > first.map(|f| f + 0.5)
    });
    let t = target_status(&s.admin, "h.lb.example.", "127.0.99.1");
    assert_eq!((t.health.as_str(), t.fails), ("up", 0), "{t:?}");
    assert_eq!(addresses(&s.ask("h.lb.example.", RecordType::A)), ["127.0.99.1"]);
    assert!(asks(&mut tcp_from("127.0.101.200", s.addr)), "a new client is served");
    drop(idle);
}

//! steerdns's own TCP loop (SPEC §7), over real sockets: frames that close a
//! connection, the connection limits, and replies that are the ones UDP gives.

use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn server(limits: &str) -> TestServer {
    TestServer::start(
        &quickstart_config().edit("tcp_idle_timeout = \"10s\"", &format!("tcp_idle_timeout = \"10s\"\n{limits}")),
    )
}

/// A connection from `source` (a loopback address of the test's own).
fn connect(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from.parse().unwrap(), 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream
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
    let mut stream = connect("127.0.95.1", s.addr);
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
        let mut stream = connect("127.0.95.2", s.addr);
        stream.write_all(partial).unwrap();
        let start = Instant::now();
        assert!(closed(&mut stream), "{partial:?}");
        assert!(start.elapsed() < Duration::from_secs(5), "closed after {:?}", start.elapsed());
    }
    assert!(asks(&mut connect("127.0.95.2", s.addr)), "the next connection is served");
}

#[test]
fn past_the_per_client_limit_the_longest_idle_connection_of_that_client_goes() {
    let s = server("tcp_max_connections_per_client = 2");
    let mut first = connect("127.0.95.3", s.addr);
    let mut second = connect("127.0.95.3", s.addr);
    let mut other = connect("127.0.95.4", s.addr);
    assert!(asks(&mut first) && asks(&mut other));
    // `second` has not asked since it was accepted, after `first` asked: it is the idlest
    assert!(asks(&mut second));
    assert!(asks(&mut first), "first asked last");
    let mut third = connect("127.0.95.3", s.addr);
    assert!(asks(&mut third), "the new connection is served");
    assert!(closed(&mut second), "the longest-idle of that client was closed");
    assert!(asks(&mut first) && asks(&mut other), "the others are served");
}

#[test]
fn past_the_total_limit_the_longest_idle_connection_of_all_goes() {
    let s = server("tcp_max_connections = 3");
    let mut streams: Vec<TcpStream> = (1..=3).map(|i| connect(&format!("127.0.96.{i}"), s.addr)).collect();
    for stream in &mut streams {
        assert!(asks(stream));
    }
    let mut fourth = connect("127.0.96.4", s.addr);
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
        let mut stream = connect("127.0.95.9", s.addr);
        tcp_send(&mut stream, &bytes);
        let tcp = tcp_read(&mut stream).expect("a TCP reply");
        assert_eq!(raw::summary(&tcp), raw::summary(&udp), "{bytes:02x?}");
        assert_eq!(tcp, udp, "the same bytes: {bytes:02x?}");
    }
}

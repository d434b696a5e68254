//! Garbage never stops the server: malformed packets, TCP pipelining, idle timeouts.

use crate::harness::*;
use hickory_proto::rr::RecordType;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift), so every run sends the same garbage.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn still_answers(s: &TestServer) {
    let r = s.ask("static.lb.example.", RecordType::A);
    assert_eq!(addresses(&r), ["127.0.0.80"]);
}

#[test]
fn garbage_datagrams_then_a_valid_query() {
    let s = TestServer::quickstart();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let valid = with_ecs(query("www.lb.example.", RecordType::A), "10.0.0.0/8").to_vec().unwrap();
    let mut noise = Noise(0x5eed);
    // every prefix of a valid query, random bytes, and bit flips of a valid query
    for len in 0..valid.len() {
        socket.send_to(&valid[..len], s.addr).unwrap();
    }
    for _ in 0..3000 {
        let mut packet = valid.clone();
        for _ in 0..1 + noise.next() % 4 {
            let i = (noise.next() as usize) % packet.len();
            packet[i] ^= 1 << (noise.next() % 8);
        }
        socket.send_to(&packet, s.addr).unwrap();
        let random: Vec<u8> = (0..noise.next() % 600).map(|_| noise.next() as u8).collect();
        socket.send_to(&random, s.addr).unwrap();
    }
    // a header that claims 65535 of everything, and a compression-pointer loop
    socket.send_to(&[0, 1, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255], s.addr).unwrap();
    socket.send_to(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1], s.addr).unwrap();
    still_answers(&s);
}

#[test]
fn tcp_pipelined_queries_are_all_answered() {
    let s = TestServer::quickstart();
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let names = ["static.lb.example.", "www.lb.example.", "nope.lb.example.", "api.lb.example."];
    let mut batch = Vec::new();
    let mut ids = Vec::new();
    for name in names {
        let q = query(name, RecordType::A);
        ids.push(q.metadata.id);
        let bytes = q.to_vec().unwrap();
        batch.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        batch.extend_from_slice(&bytes);
    }
    stream.write_all(&batch).unwrap();
    let mut got: Vec<u16> = (0..names.len())
        .map(|_| hickory_proto::op::Message::from_vec(&tcp_read(&mut stream).unwrap()).unwrap().metadata.id)
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "every pipelined query answered (in any order)");
}

#[test]
fn idle_tcp_connections_are_closed_after_tcp_idle_timeout() {
    let config = quickstart_config().replace("tcp_idle_timeout = \"10s\"", "tcp_idle_timeout = \"300ms\"");
    let s = TestServer::start(&config);
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp_send(&mut stream, &query("static.lb.example.", RecordType::A).to_vec().unwrap());
    assert!(tcp_read(&mut stream).is_some());
    let start = Instant::now();
    assert!(tcp_read(&mut stream).is_none(), "closed by the server, not by our read timeout");
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn bad_tcp_frames_do_not_stop_the_server() {
    let s = TestServer::quickstart();
    // a frame that announces 65535 bytes and stops, a zero-length frame, garbage
    for frame in [vec![0xff, 0xff, 1, 2, 3], vec![0, 0], vec![0, 5, 1, 2, 3, 4, 5]] {
        let mut stream = TcpStream::connect(s.addr).unwrap();
        stream.write_all(&frame).unwrap();
        drop(stream);
    }
    let r = s.tcp(&query("static.lb.example.", RecordType::A));
    assert_eq!(addresses(&r), ["127.0.0.80"]);
    still_answers(&s);
}

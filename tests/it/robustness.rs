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
    let valid = with_ecs(query("www.lb.example.", RecordType::A), "10.0.0.0/8").to_vec().unwrap();
    let mut noise = Noise(0x5eed);
    // SO_REUSEPORT hashes each source to one worker: sixteen sources reach all of them,
    // and each source's own valid query afterwards goes to the worker it fed garbage
    let sockets: Vec<std::net::UdpSocket> =
        (1..=16).map(|i| std::net::UdpSocket::bind(format!("127.0.7.{i}:0")).unwrap()).collect();
    for socket in &sockets {
        // every prefix of a valid query, random bytes, and bit flips of a valid query
        for len in 0..valid.len() {
            socket.send_to(&valid[..len], s.addr).unwrap();
        }
        for _ in 0..200 {
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
    }
    let marker = query("static.lb.example.", RecordType::A);
    for socket in &sockets {
        // replies to the garbage may fill the socket's buffer: read them away, and
        // send the marker again if its reply was the one dropped
        socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut buf = vec![0u8; 65535];
        let answered = (0..5).any(|_| {
            socket.send_to(&marker.to_vec().unwrap(), s.addr).unwrap();
            while let Ok(n) = socket.recv(&mut buf) {
                let reply = hickory_proto::op::Message::from_vec(&buf[..n]);
                if reply.is_ok_and(|m| m.metadata.id == marker.metadata.id) {
                    return true;
                }
            }
            false
        });
        assert!(answered, "the worker that took {:?}'s garbage still answers", socket.local_addr());
    }
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
    let config = quickstart_config().edit("tcp_idle_timeout = \"10s\"", "tcp_idle_timeout = \"300ms\"");
    let s = TestServer::start(&config);
    let mut stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    tcp_send(&mut stream, &query("static.lb.example.", RecordType::A).to_vec().unwrap());
    assert!(tcp_read(&mut stream).is_some());
    let start = Instant::now();
    assert!(tcp_read(&mut stream).is_none(), "closed by the server, not by our read timeout");
    // well past 300 ms on a loaded machine, well short of the 10 s default
    assert!(start.elapsed() < Duration::from_secs(5), "closed after {:?}: the setting was ignored", start.elapsed());
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

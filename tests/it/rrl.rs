//! Response rate limiting and DNS cookies (SPEC §7), over real sockets from distinct
//! loopback source addresses: one /24 sending ten times its limit is held to the limit
//! plus truncated slips, while other prefixes, exempt networks, TCP and clients that
//! return a valid server cookie are answered as before.

use crate::harness::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const RATE: u32 = 20;

/// www.lb.example. has three IPv4 targets.
const WWW_A: usize = 3;

fn server(slip: u32, extra: &str) -> TestServer {
    let rrl =
        format!("[server.rrl]\nresponses_per_second = {RATE}\nwindow = \"1s\"\nslip = {slip}\n{extra}\n\n[[zones]]");
    TestServer::start(&quickstart_config().edit("[[zones]]", &rrl))
}

fn socket(from: &str) -> UdpSocket {
    let socket = UdpSocket::bind((from, 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    socket
}

fn www() -> Message {
    with_edns(query("www.lb.example.", RecordType::A), 1232)
}

/// A query with a COOKIE option holding `cookie` (client cookie, maybe a server's).
fn with_cookie(mut m: Message, cookie: &[u8]) -> Message {
    let mut edns = m.edns.take().unwrap_or_default();
    edns.options_mut().insert(EdnsOption::Unknown(10, cookie.to_vec()));
    m.set_edns(edns);
    m
}

fn cookie_of(m: &Message) -> Option<Vec<u8>> {
    match m.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(10, data) => Some(data.clone()),
        other => panic!("a cookie decoded as {other:?}"),
    }
}

/// Replies received on `socket` until it is quiet: (full answers, slipped).
fn drain(socket: &UdpSocket) -> (usize, usize) {
    let mut counts = (0, 0);
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        let reply = Message::from_vec(&buf[..n]).unwrap();
        if reply.metadata.truncation {
            // a slip: the question and the OPT, nothing else
            assert!(reply.answers.is_empty() && reply.authorities.is_empty() && reply.additionals.is_empty());
            assert_eq!(reply.queries.len(), 1);
            assert!(reply.edns.is_some(), "a slip carries the OPT");
            counts.1 += 1;
        } else {
            assert_eq!(addresses(&reply).len(), WWW_A, "{reply:?}");
            counts.0 += 1;
        }
    }
    counts
}

/// Sends `per_second` queries a second for `seconds` from `socket`, paced in steps of
/// 10 ms, asking `also` once every 100 ms; returns the time taken.
fn flood(to: SocketAddr, socket: &UdpSocket, per_second: u32, seconds: u32, also: &mut dyn FnMut()) -> Duration {
    let start = Instant::now();
    let bytes = www().to_vec().unwrap();
    for step in 0..seconds * 100 {
        for _ in 0..per_second / 100 {
            socket.send_to(&bytes, to).unwrap();
        }
        if step % 10 == 0 {
            also();
        }
        let next = start + Duration::from_millis(10 * u64::from(step + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    start.elapsed()
}

#[test]
fn one_prefix_at_ten_times_its_limit_gets_the_limit_and_slips_and_others_are_answered() {
    let s = server(2, "exempt = [\"127.0.98.0/24\"]");
    let attacker = socket("127.0.96.1");
    // replies are read on another thread while the flood goes on, so none is lost to
    // a full receive buffer; it stops once the flood is over and the socket is quiet
    let reader = attacker.try_clone().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooded = done.clone();
    let counted = std::thread::spawn(move || {
        let mut total = (0, 0);
        loop {
            let over = flooded.load(std::sync::atomic::Ordering::SeqCst);
            let (full, slipped) = drain(&reader);
            total = (total.0 + full, total.1 + slipped);
            if over && full + slipped == 0 {
                return total;
            }
        }
    });
    let (mut other_asked, mut other_answered) = (0, 0);
    let (mut exempt_asked, mut exempt_answered) = (0, 0);
    let neighbour = socket("127.0.97.1");
    let exempt = socket("127.0.98.1");
    let took = flood(s.addr, &attacker, 10 * RATE, 3, &mut || {
        // 10/s from the neighbouring /24 (20/s allowed), 30/s from the exempt one
        for (socket, n, asked, answered) in [
            (&neighbour, 1, &mut other_asked, &mut other_answered),
            (&exempt, 3, &mut exempt_asked, &mut exempt_answered),
        ] {
            for _ in 0..n {
                *asked += 1;
                socket.send_to(&www().to_vec().unwrap(), s.addr).unwrap();
            }
            let mut buf = [0u8; 4096];
            for _ in 0..n {
                if let Ok(n) = socket.recv(&mut buf) {
                    let reply = Message::from_vec(&buf[..n]).unwrap();
                    *answered += usize::from(!reply.metadata.truncation && addresses(&reply).len() == WWW_A);
                }
            }
        }
    });
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (full, slipped) = counted.join().unwrap();
    let sent = 10 * RATE as usize * 3;
    // a bucket holds one second (window) and refills at RATE a second
    let allowed = RATE as usize * (1 + took.as_secs_f64().ceil() as usize);
    assert!(full <= allowed, "{full} full answers of {sent} queries in {took:?}; at most {allowed}");
    assert!(full >= RATE as usize, "{full} full answers");
    // slip = 2: every second limited reply goes out truncated
    let limited = sent - full;
    assert!(slipped.abs_diff(limited / 2) <= 2, "{slipped} slips of {limited} limited replies");
    assert_eq!(other_answered, other_asked, "the neighbouring prefix");
    assert_eq!(exempt_answered, exempt_asked, "the exempt prefix");
    let metrics = get_ok(&s.admin, "/metrics");
    let counter = |name: &str| -> usize {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(counter("steerdns_rrl_limited_total"), limited);
    assert_eq!(counter("steerdns_rrl_slipped_total"), slipped);
}

#[test]
fn tcp_is_never_limited() {
    let s = server(0, "");
    let attacker = socket("127.0.96.2");
    let bytes = www().to_vec().unwrap();
    for _ in 0..3 {
        for _ in 0..3 * RATE {
            attacker.send_to(&bytes, s.addr).unwrap();
        }
        // the same client over TCP, right after its UDP bucket was emptied
        let mut stream = tcp_from("127.0.96.2", s.addr);
        tcp_send(&mut stream, &bytes);
        let reply = Message::from_vec(&tcp_read(&mut stream).unwrap()).unwrap();
        assert_eq!(addresses(&reply).len(), WWW_A);
    }
    let (full, slipped) = drain(&attacker);
    assert!(full < 3 * RATE as usize && slipped == 0, "{full} answered, {slipped} slipped over UDP");
}

#[test]
fn a_client_that_returns_its_server_cookie_is_not_limited() {
    let s = server(0, "");
    let client = socket("127.0.96.3");
    let client_cookie = [1, 2, 3, 4, 5, 6, 7, 8];
    client.send_to(&with_cookie(www(), &client_cookie).to_vec().unwrap(), s.addr).unwrap();
    let mut buf = [0u8; 4096];
    let n = client.recv(&mut buf).unwrap();
    let cookie = cookie_of(&Message::from_vec(&buf[..n]).unwrap()).expect("a cookie in the reply");
    assert_eq!(cookie.len(), 24, "client cookie and a 16-byte server cookie");
    assert_eq!(cookie[..8], client_cookie);
    assert_eq!(cookie[8..12], [1, 0, 0, 0], "RFC 9018 version 1");
    // with it, ten times the limit goes through
    let with = with_cookie(www(), &cookie).to_vec().unwrap();
    let mut answered = 0;
    for _ in 0..10 * RATE {
        client.send_to(&with, s.addr).unwrap();
        if let Ok(n) = client.recv(&mut buf) {
            let reply = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(cookie_of(&reply).unwrap()[..8], client_cookie);
            answered += usize::from(addresses(&reply).len() == WWW_A);
        }
    }
    assert_eq!(answered, 10 * RATE as usize);
    // a forged server cookie is answered like none, so it is limited
    let mut forged = cookie.clone();
    forged[23] ^= 0xFF;
    let forged = with_cookie(www(), &forged).to_vec().unwrap();
    for _ in 0..3 * RATE {
        client.send_to(&forged, s.addr).unwrap();
    }
    let (full, _) = drain(&client);
    assert!(full <= 2 * RATE as usize, "{full} answered with a forged cookie");
}

#[test]
fn cookies_are_answered_without_rrl_and_malformed_ones_are_formerr() {
    let s = TestServer::quickstart();
    let reply = s.udp(&with_cookie(www(), &[9; 8]));
    let cookie = cookie_of(&reply).expect("a cookie in the reply");
    assert_eq!((cookie.len(), &cookie[..8]), (24, &[9u8; 8][..]));
    // a returned cookie gets a fresh one back, over TCP too
    let again = s.tcp(&with_cookie(www(), &cookie));
    assert_eq!(cookie_of(&again).unwrap()[..8], [9; 8]);
    assert_eq!(addresses(&again).len(), WWW_A);
    for bad in [&[1u8; 5][..], &[1; 12], &[1; 41]] {
        let reply = s.udp(&with_cookie(www(), bad));
        assert_eq!(reply.metadata.response_code, hickory_proto::op::ResponseCode::FormErr, "{} bytes", bad.len());
        assert_eq!(reply.queries.len(), 1);
        assert!(reply.edns.is_some());
    }
}

/// Sends one query for each name from `socket` at once; (replies, time taken to send).
fn burst(s: &TestServer, socket: &UdpSocket, names: &[String]) -> (usize, Duration) {
    let start = Instant::now();
    for name in names {
        socket.send_to(&with_edns(query(name, RecordType::A), 1232).to_vec().unwrap(), s.addr).unwrap();
    }
    let took = start.elapsed();
    let mut replies = 0;
    let mut buf = [0u8; 4096];
    while socket.recv(&mut buf).is_ok() {
        replies += 1;
    }
    (replies, took)
}

#[test]
fn replies_are_counted_against_the_wildcard_the_zone_and_the_cut() {
    let s = server(0, "");
    let client = socket("127.0.96.4");
    let many = |pattern: &str| (0..2 * RATE).map(|i| pattern.replace('N', &i.to_string())).collect::<Vec<_>>();
    // distinct names that share one bucket each: a wildcard's owner, the zone for
    // NXDOMAIN, the cut for referrals
    for pattern in ["hN.wild.lb.example.", "nope-N.lb.example.", "hN.child.lb.example."] {
        let (replies, took) = burst(&s, &client, &many(pattern));
        let allowed = RATE as usize + (took.as_secs_f64() * f64::from(RATE)).ceil() as usize;
        assert!(replies <= allowed, "{pattern}: {replies} of {} replies; at most {allowed}", 2 * RATE);
        assert!(replies >= RATE as usize, "{pattern}: {replies} replies");
    }
    // positive answers for distinct names count apart: 4 names × 15 < 4 buckets × 20
    let names: Vec<String> = ["static", "mail", "ns1", "ns2"]
        .iter()
        .flat_map(|n| std::iter::repeat_n(format!("{n}.lb.example."), 15))
        .collect();
    assert_eq!(burst(&s, &client, &names).0, 60);
}

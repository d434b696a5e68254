//! `weighted` and `sticky` over real UDP: the distribution, stickiness per client
//! network (by ECS and by source address), a lost target's clients only moving, and
//! the ECS scope of sticky answers.

use crate::harness::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

fn config(order: &str, targets: &str, extra: &str) -> String {
    format!(
        "{}\n[[services]]\nname = \"o.lb.example.\"\norder = \"{order}\"\n{extra}\ntargets = [{targets}]\n",
        quickstart_config()
    )
}

const FOUR: &str = "\"127.0.2.1\", \"127.0.2.2\", \"127.0.2.3\", \"127.0.2.4\"";

#[test]
fn weighted_answers_follow_the_weights() {
    let s = TestServer::start(&config(
        "weighted",
        "{ address = \"127.0.2.1\", weight = 1 }, { address = \"127.0.2.2\", weight = 3 }",
        "",
    ));
    let n = 3000;
    let mut heavy = 0;
    for _ in 0..n {
        let got = addresses(&s.ask("o.lb.example.", RecordType::A));
        assert_eq!(got.len(), 1, "max_answers defaults to 1 for weighted");
        heavy += usize::from(got[0] == "127.0.2.2");
    }
    // expected 2250 with a standard deviation of about 24: ±250 cannot flake
    assert!((2000..=2500).contains(&heavy), "{heavy} of {n}");
}

#[test]
fn weighted_with_a_larger_cap_lists_distinct_targets() {
    let s = TestServer::start(&config("weighted", FOUR, "max_answers = 4"));
    for _ in 0..50 {
        let mut got = addresses(&s.ask("o.lb.example.", RecordType::A));
        got.sort();
        assert_eq!(got, ["127.0.2.1", "127.0.2.2", "127.0.2.3", "127.0.2.4"]);
    }
}

fn sticky_answer(s: &TestServer, net: &str) -> (String, u8) {
    let r = s.udp(&with_ecs(query("o.lb.example.", RecordType::A), net));
    (addresses(&r)[0].clone(), ecs_of(&r).unwrap().2)
}

#[test]
fn sticky_keeps_each_client_network_and_moves_only_a_lost_targets_clients() {
    let s = TestServer::start(&config("sticky", FOUR, ""));
    let networks: Vec<String> = (0..400).map(|i| format!("10.{}.{}.0/24", i / 200, i % 200)).collect();
    let before: Vec<(String, u8)> = networks.iter().map(|n| sticky_answer(&s, n)).collect();
    assert!(before.iter().all(|(_, scope)| *scope == 24), "scope: the hashed prefix");
    for (n, first) in networks.iter().zip(&before).step_by(7) {
        assert_eq!(&sticky_answer(&s, n), first, "stable for {n}");
    }
    let mut spread: HashMap<&str, usize> = HashMap::new();
    for (target, _) in &before {
        *spread.entry(target).or_default() += 1;
    }
    assert_eq!(spread.len(), 4, "{spread:?}");
    assert!(spread.values().all(|&c| (50..=150).contains(&c)), "{spread:?}");

    s.reload(&config("sticky", "\"127.0.2.1\", \"127.0.2.3\", \"127.0.2.4\"", "")).unwrap();
    for (n, (target, _)) in networks.iter().zip(&before) {
        let (now, _) = sticky_answer(&s, n);
        if target == "127.0.2.2" {
            assert_ne!(now, "127.0.2.2");
        } else {
            assert_eq!(&now, target, "{n} kept its target");
        }
    }
}

#[test]
fn sticky_scope_follows_a_shorter_ecs_prefix() {
    let s = TestServer::start(&config("sticky", FOUR, ""));
    assert_eq!(sticky_answer(&s, "10.1.0.0/16").1, 16);
    assert_eq!(sticky_answer(&s, "10.1.2.128/25").1, 24);
    let r = s.udp(&with_ecs(query("o.lb.example.", RecordType::AAAA), "2001:db8::/32"));
    assert_eq!(ecs_of(&r).unwrap().2, 0, "no AAAA candidate: NODATA, scope 0");
    let r = s.udp(&with_ecs(query("o.lb.example.", RecordType::A), "0.0.0.0/0"));
    assert_eq!(ecs_of(&r).unwrap().2, 0, "SOURCE 0: the resolver's own address decides, scope 0");
}

/// Queries from a socket bound to `source` (any 127/8 address works on Linux).
fn ask_from(s: &TestServer, source: &str) -> String {
    let socket = UdpSocket::bind((source, 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query("o.lb.example.", RecordType::A);
    for _ in 0..3 {
        socket.send_to(&q.to_vec().unwrap(), s.addr).unwrap();
        let mut buf = [0u8; 512];
        if let Ok(n) = socket.recv(&mut buf) {
            return addresses(&Message::from_vec(&buf[..n]).unwrap())[0].clone();
        }
    }
    panic!("no reply to {source}");
}

#[test]
fn sticky_by_source_address_without_ecs() {
    let s = TestServer::start(&config("sticky", FOUR, ""));
    let mut seen = HashMap::new();
    for net in 0..60 {
        let first = ask_from(&s, &format!("127.0.{}.{}", 100 + net, 1));
        // another host of the same /24 gets the same target
        assert_eq!(ask_from(&s, &format!("127.0.{}.{}", 100 + net, 200)), first);
        *seen.entry(first).or_insert(0) += 1;
    }
    assert!(seen.len() >= 3, "60 networks spread over the targets: {seen:?}");
}

//! A wildcard listen address answers each query from the address it was sent to.

use crate::harness::*;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

fn wildcard_server(listen: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lb.example.zone"), ZONE).unwrap();
    std::fs::write(dir.path().join("c.toml"), quickstart_config()).unwrap();
    let path = dir.path().join("c.toml");
    TestServer::start_on(dir, path, &[listen.parse().unwrap()])
}

/// Sends a query to `to` and returns the address the reply came from.
fn reply_source(to: SocketAddr) -> SocketAddr {
    let socket = UdpSocket::bind(SocketAddr::new(to.ip(), 0)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query("static.lb.example.", RecordType::A).to_vec().unwrap();
    for _ in 0..3 {
        socket.send_to(&q, to).unwrap();
        let mut buf = [0u8; 512];
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            assert_eq!(addresses(&Message::from_vec(&buf[..n]).unwrap()), ["127.0.0.80"]);
            return from;
        }
    }
    panic!("no reply from {to}");
}

#[test]
fn ipv4_wildcard_replies_from_the_address_asked() {
    let s = wildcard_server("0.0.0.0:0");
    let port = s.addr.port();
    for ip in ["127.0.0.2", "127.0.0.3", "127.1.2.3"] {
        let to = SocketAddr::new(ip.parse().unwrap(), port);
        assert_eq!(reply_source(to), to);
    }
}

#[test]
fn ipv6_wildcard_is_v6_only_and_replies_from_the_address_asked() {
    let s = wildcard_server("[::]:0");
    let to: SocketAddr = format!("[::1]:{}", s.addr.port()).parse().unwrap();
    assert_eq!(reply_source(to), to);
    // V6ONLY: the IPv4 side of the port is not ours, so an IPv4 server can share it
    let v4 = UdpSocket::bind(("127.0.0.1", s.addr.port()));
    assert!(v4.is_ok(), "an IPv6 wildcard socket must not take the IPv4 port: {v4:?}");
}

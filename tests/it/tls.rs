//! DNS over TLS (SPEC §7), over real sockets with a rustls client: ALPN `dot`, replies
//! that are TCP's byte for byte, padding to 468-byte blocks when asked, a handshake
//! that never comes closed at the idle timeout, and a certificate replaced by a reload
//! (a broken one keeps the one in use).

use crate::harness::*;
use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::EdnsOption;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM, certificate DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    (cert.cert.pem(), cert.signing_key.serialize_pem(), cert.cert.der().clone())
}

fn config(idle: &str) -> String {
    quickstart_config().edit("tcp_idle_timeout = \"10s\"", &format!(
        "tcp_idle_timeout = \"{idle}\"\ntls_listen = [\"127.0.0.1:0\"]\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\""
    ))
}

fn server(idle: &str) -> (TestServer, CertificateDer<'static>) {
    let (cert, key, der) = certificate();
    let s = TestServer::with_files(&config(idle), &[("lb.example.zone", ZONE), ("cert.pem", &cert), ("key.pem", &key)]);
    (s, der)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection that trusts `trusted` and offers ALPN `dot`.
fn connect(to: SocketAddr, trusted: &CertificateDer<'static>) -> Tls {
    connect_alpn(to, trusted, b"dot")
}

fn connect_alpn(to: SocketAddr, trusted: &CertificateDer<'static>, alpn: &[u8]) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let stream = TcpStream::connect(to).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(connection, stream)
}

fn exchange(tls: &mut Tls, bytes: &[u8]) -> Vec<u8> {
    tls.write_all(&[&(bytes.len() as u16).to_be_bytes()[..], bytes].concat()).unwrap();
    tls.flush().unwrap();
    let mut len = [0u8; 2];
    tls.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tls.read_exact(&mut reply).unwrap();
    reply
}

#[test]
fn dot_answers_as_tcp_does_with_alpn_dot() {
    let (s, der) = server("10s");
    let mut tls = connect(s.tls_addrs[0], &der);
    let bad_ecs = raw::ecs(1, 33, &[10, 0, 0, 0, 0]);
    let cases: Vec<Vec<u8>> = vec![
        // static names: a service's answer rotates from one query to the next
        query("static.lb.example.", RecordType::A).to_vec().unwrap(),
        with_edns(query("child.lb.example.", RecordType::A), 1232).to_vec().unwrap(),
        raw::query(0x0100, &[("www.lb.example.", 1, 1)], [&[], &[], &[raw::opt(&[0], 1, &bad_ecs)]]),
        raw::query(0x0100, &[("www.lb.example.", 1, 1)], [&[], &[], &[raw::opt(&[0], 0, &bad_ecs)]]),
        raw::query(0x0100, &[("www.lb.example.", 252, 1)], [&[], &[], &[]]),
        raw::query(0x1110, &[("www.lb.example.", 1, 1)], [&[], &[], &[]]),
        raw::query(0x0100, &[("nope.example.", 1, 1)], [&[], &[], &[]]),
    ];
    for bytes in cases {
        let reply = exchange(&mut tls, &bytes);
        assert_eq!(reply, tcp_raw(s.addr, &bytes), "TLS and TCP differ for {bytes:02x?}");
    }
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"dot"[..]));
    // a client that offers only another protocol is refused
    let mut h2 = connect_alpn(s.tls_addrs[0], &der, b"h2");
    let refused = h2.write_all(&[0, 12]).and_then(|_| h2.flush()).and_then(|_| h2.read_exact(&mut [0u8; 2]));
    assert!(refused.is_err(), "{refused:?}");
}

#[test]
fn replies_are_padded_to_468_byte_blocks_when_the_query_asks() {
    let (s, der) = server("10s");
    let mut tls = connect(s.tls_addrs[0], &der);
    let padded = |name: &str| {
        let mut m = query(name, RecordType::A);
        let mut edns = Edns::new();
        edns.options_mut().insert(EdnsOption::Unknown(12, vec![0; 20]));
        m.set_edns(edns);
        m.to_vec().unwrap()
    };
    for name in ["www.lb.example.", "api.lb.example.", "nope.lb.example.", "child.lb.example."] {
        let reply = exchange(&mut tls, &padded(name));
        assert_eq!(reply.len() % 468, 0, "{name}: {} bytes", reply.len());
        let message = Message::from_vec(&reply).unwrap();
        assert_eq!(message.queries[0].name().to_string(), name);
        // the same query over TCP is not padded
        assert_ne!(tcp_raw(s.addr, &padded(name)).len() % 468, 0, "{name} over TCP");
    }
    // without the option, no padding over TLS either
    let plain = with_edns(query("static.lb.example.", RecordType::A), 1232).to_vec().unwrap();
    assert_eq!(exchange(&mut tls, &plain), tcp_raw(s.addr, &plain));
}

#[test]
fn a_handshake_that_never_comes_is_closed_at_the_idle_timeout() {
    let (s, der) = server("300ms");
    let mut silent = TcpStream::connect(s.tls_addrs[0]).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let read = silent.read(&mut [0u8; 1]);
    let timed_out =
        |e: &std::io::Error| matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut);
    assert!(matches!(&read, Ok(0)) || read.as_ref().is_err_and(|e| !timed_out(e)), "not closed: {read:?}");
    // and a connection that does handshake is served
    let mut tls = connect(s.tls_addrs[0], &der);
    let reply = exchange(&mut tls, &query("www.lb.example.", RecordType::A).to_vec().unwrap());
    assert_eq!(addresses(&Message::from_vec(&reply).unwrap()).len(), 3);
}

#[test]
fn a_reload_takes_up_a_new_certificate_and_a_broken_one_keeps_the_old() {
    let (s, old) = server("10s");
    let (cert, key, new) = certificate();
    std::fs::write(s.dir().join("cert.pem"), &cert).unwrap();
    std::fs::write(s.dir().join("key.pem"), &key).unwrap();
    s.reload(&config("10s")).unwrap();
    let ask = |trusted: &CertificateDer<'static>| {
        let mut tls = connect(s.tls_addrs[0], trusted);
        let bytes = query("www.lb.example.", RecordType::A).to_vec().unwrap();
        tls.write_all(&[&(bytes.len() as u16).to_be_bytes()[..], &bytes].concat()).and_then(|_| tls.flush()).is_ok()
            && tls.read_exact(&mut [0u8; 2]).is_ok()
    };
    assert!(ask(&new), "the new certificate is served");
    assert!(!ask(&old), "the old one is not");
    // a key that does not parse fails the reload, naming the key, and keeps the new one
    std::fs::write(s.dir().join("key.pem"), "not a key").unwrap();
    let path = s.dir().join("steerdns.toml");
    let error = steerdns::loaded::load(&path).unwrap_err().to_string();
    assert!(error.contains("server.tls_key_file") && error.contains("key.pem"), "{error}");
    assert!(ask(&new), "still served after the failed load");
}

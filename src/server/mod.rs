//! Sockets: binding the listen addresses, and steerdns's own UDP and TCP loops, which
//! both answer through [`respond`].

mod tcp;
mod udp;

pub use tcp::serve_tcp;
pub use udp::serve_udp;

use crate::dns::{self, Transport};
use crate::metrics::Metrics;
use crate::supervise;
use crate::view::View;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Bound sockets for every listen address: `udp_workers` UDP sockets sharing each
/// address (SO_REUSEPORT) and one TCP listener.
#[derive(Debug)]
pub struct Listeners {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    /// DNS over TLS listeners.
    pub tls: Vec<std::net::TcpListener>,
    /// The admin API's listener, when it is served.
    pub admin: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds UDP and TCP on each address; port 0 gets one free port shared by UDP and TCP.
    pub fn bind(addresses: &[SocketAddr], udp_workers: usize) -> io::Result<Listeners> {
        let mut listeners = Listeners { udp: Vec::new(), tcp: Vec::new(), tls: Vec::new(), admin: None };
        for address in addresses {
            let tcp = bind_tcp(*address)?;
            let address = tcp.local_addr()?;
            for _ in 0..udp_workers.max(1) {
                listeners.udp.push(bind_udp(address)?);
            }
            listeners.tcp.push(tcp);
        }
        Ok(listeners)
    }

    /// Adds DNS over TLS listeners on `addresses` (port 0: a free port each).
    pub fn with_tls(mut self, addresses: &[SocketAddr]) -> io::Result<Listeners> {
        for address in addresses {
            self.tls.push(bind_tcp(*address)?);
        }
        Ok(self)
    }

    /// The addresses DNS over TLS is served on (with the ports actually bound).
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// Adds the admin API's listener.
    pub fn with_admin(mut self, address: SocketAddr) -> io::Result<Listeners> {
        self.admin = Some(bind_tcp(address)?);
        Ok(self)
    }

    /// The admin API's address (with the port actually bound).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The addresses DNS is served on (with the ports actually bound).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.tcp.iter().filter_map(|l| l.local_addr().ok()).collect()
    }
}

/// [`dns::respond`], counted; a panic while answering drops this query alone (the View
/// is immutable, so nothing is left half-changed) and is counted and logged, at most
/// once a minute, with the query in hex.
pub fn respond(
    view: &View,
    query: &[u8],
    client: SocketAddr,
    transport: Transport,
    out: &mut Vec<u8>,
    metrics: &Metrics,
) -> Option<dns::Answered> {
    static LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let answer = || {
        // a test's fault point: a query for panic.* panics here (debug builds only)
        if supervise::fault_is("query-panic") && query.windows(6).any(|w| w == b"\x05panic") {
            panic!("forced by STEERDNS_FAULT=query-panic");
        }
        dns::respond(view, query, client, transport, out)
    };
    match supervise::contained(answer) {
        Ok(answered) => {
            metrics.count_query(transport, answered.map(|a| a.rcode));
            answered
        }
        Err(panic) => {
            metrics.count_query_panic();
            if supervise::once_a_minute(&LOGGED) {
                let hex: String = query.iter().map(|b| format!("{b:02x}")).collect();
                tracing::error!("a query from {client} panicked ({panic}); dropped it. query: {hex}");
            }
            out.clear();
            None
        }
    }
}

fn socket(address: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), kind, Some(protocol))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_udp(address: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = socket(address, Type::DGRAM, Protocol::UDP)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into()).map_err(|e| with_address(e, "UDP", address))?;
    Ok(socket.into())
}

fn bind_tcp(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket(address, Type::STREAM, Protocol::TCP)?;
    socket.bind(&address.into()).map_err(|e| with_address(e, "TCP", address))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn with_address(e: io::Error, what: &str, address: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("cannot bind {what} {address}: {e}"))
}

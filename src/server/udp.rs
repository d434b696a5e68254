//! steerdns's own UDP loop: one thread per socket (SO_REUSEPORT spreads flows across
//! them), queries received and replies sent in batches (recvmmsg/sendmmsg), buffers
//! reused, one View load per batch. Replies pass response rate limiting (SPEC §7)
//! when it is on; a client with a valid server cookie is not limited. On a wildcard
//! address each reply is sent from the address its query was sent to (IP_PKTINFO /
//! IPV6_RECVPKTINFO).

use crate::dns::{self, Transport};
use crate::metrics::Metrics;
use crate::rrl::Verdict;
use crate::view::View;
use arc_swap::ArcSwap;
use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage, recvmmsg, sendmmsg,
    setsockopt, sockopt,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Datagrams handled per system call.
const BATCH: usize = 32;
/// Largest query we read: any datagram, whole (SPEC §7); the buffers are untouched
/// memory until a large datagram comes.
const MAX_QUERY: usize = 65_535;
/// How often an idle worker looks at the shutdown token.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Starts a worker thread answering queries on `socket` until `shutdown`; the batch
/// in hand is finished first.
pub fn serve_udp(
    socket: UdpSocket,
    view: Arc<ArcSwap<View>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let wildcard = socket.local_addr()?.ip().is_unspecified();
    if wildcard {
        match socket.local_addr()? {
            SocketAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?,
            SocketAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?,
        }
    }
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(IDLE_CHECK))?;
    std::thread::Builder::new().name("steerdns-udp".into()).spawn(move || {
        let mut worker = Worker::new(wildcard);
        while !shutdown.is_cancelled() {
            worker.round(&socket, &view, &metrics);
        }
    })
}

/// One received datagram: its length, sender and the local address it was sent to.
#[derive(Clone, Copy)]
struct Received {
    len: usize,
    from: Option<SockaddrStorage>,
    to: Option<IpAddr>,
}

struct Worker {
    wildcard: bool,
    queries: Vec<Vec<u8>>,
    replies: Vec<Vec<u8>>,
    received: Vec<Received>,
    /// (reply index, destination, source address) of the replies to send.
    outgoing: Vec<(usize, SockaddrStorage, Option<IpAddr>)>,
    /// The destinations of one sendmmsg call.
    destinations: Vec<Option<SockaddrStorage>>,
    receive_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
    /// How many datagrams the next receive asks for: twice the last batch, at least
    /// MIN_BATCH, so that a quiet socket does not pay for preparing BATCH headers.
    want: usize,
}

/// The fewest datagrams a receive asks for.
const MIN_BATCH: usize = 4;

impl Worker {
    fn new(wildcard: bool) -> Self {
        let cmsg = || wildcard.then(|| nix::cmsg_space!(libc::in6_pktinfo));
        Worker {
            wildcard,
            queries: vec![vec![0; MAX_QUERY]; BATCH],
            replies: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
            received: Vec::with_capacity(BATCH),
            outgoing: Vec::with_capacity(BATCH),
            destinations: Vec::with_capacity(BATCH),
            receive_headers: MultiHeaders::preallocate(BATCH, cmsg()),
            send_headers: MultiHeaders::preallocate(BATCH, cmsg()),
            want: MIN_BATCH,
        }
    }

    /// Receives one batch (waiting up to IDLE_CHECK for its first datagram), answers
    /// it and sends the replies.
    fn round(&mut self, socket: &UdpSocket, view: &ArcSwap<View>, metrics: &Metrics) {
        if let Err(e) = self.receive(socket) {
            if !matches!(e, Errno::EAGAIN | Errno::EINTR) {
                tracing::debug!("udp receive: {e}");
            }
            return;
        }
        let view = view.load();
        // RRL's clock, read once per batch
        let now = view.rrl.as_ref().map(|_| crate::rrl::clock_ms());
        self.outgoing.clear();
        for (i, r) in self.received.iter().enumerate() {
            let Some((from, client)) = r.from.and_then(|a| Some((a, socket_addr(&a)?))) else { continue };
            let query = &self.queries[i][..r.len.min(MAX_QUERY)];
            let Some(answered) = super::respond(&view, query, client, Transport::Udp, &mut self.replies[i], metrics)
            else {
                continue;
            };
            if let (Some(limiter), Some(key), Some(now)) = (&view.rrl, &answered.rrl, now)
                && !answered.cookie
            {
                match limiter.check(client.ip(), key, now) {
                    Verdict::Send => {}
                    Verdict::Drop => {
                        metrics.count_rrl_limited(false);
                        continue;
                    }
                    Verdict::Slip => {
                        metrics.count_rrl_limited(true);
                        dns::slip(&view, query, client, answered.rcode, &mut self.replies[i]);
                    }
                }
            }
            self.outgoing.push((i, from, r.to));
        }
        drop(view);
        self.send(socket);
    }

    /// Receives into the reused buffers: nothing is allocated per batch.
    fn receive(&mut self, socket: &UdpSocket) -> nix::Result<()> {
        let mut buffers = self.queries.iter_mut();
        let mut slices: [[IoSliceMut; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(buffers.next().expect("BATCH query buffers"))]);
        let want = self.want;
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.receive_headers,
            slices[..want].iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )?;
        self.received.clear();
        for message in results {
            let to = if self.wildcard { destination(&message) } else { None };
            self.received.push(Received { len: message.bytes, from: message.address, to });
        }
        self.want = (2 * self.received.len()).clamp(MIN_BATCH, BATCH);
        Ok(())
    }

    /// Sends the replies with one sendmmsg per run of replies that share a source address.
    fn send(&mut self, socket: &UdpSocket) {
        let mut start = 0;
        while start < self.outgoing.len() {
            let source = self.outgoing[start].2;
            let end = start + self.outgoing[start..].iter().take_while(|o| o.2 == source).count();
            self.send_run(socket, start, end, source);
            start = end;
        }
    }

    fn send_run(&mut self, socket: &UdpSocket, mut start: usize, end: usize, source: Option<IpAddr>) {
        let info = source.map(PacketInfo::from);
        let cmsg = info.as_ref().map(PacketInfo::message);
        while start < end {
            let run = &self.outgoing[start..end];
            let replies = &self.replies;
            let slices: [[IoSlice; 1]; BATCH] =
                std::array::from_fn(|k| [IoSlice::new(run.get(k).map_or(&[][..], |(i, ..)| &replies[*i]))]);
            self.destinations.clear();
            self.destinations.extend(run.iter().map(|(_, to, _)| Some(*to)));
            let sent = sendmmsg(
                socket.as_raw_fd(),
                &mut self.send_headers,
                &slices[..run.len()],
                &self.destinations,
                cmsg.as_slice(),
                MsgFlags::empty(),
            );
            match sent {
                Ok(results) => start += results.count().max(1),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    // one reply the kernel refuses (an unreachable client) must not
                    // hold back the others
                    tracing::debug!("udp send: {e}");
                    start += 1;
                }
            }
        }
    }
}

/// The local address a datagram was sent to, from its PKTINFO control message.
fn destination(message: &nix::sys::socket::RecvMsg<'_, '_, SockaddrStorage>) -> Option<IpAddr> {
    message.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::Ipv4PacketInfo(info) => {
            Some(IpAddr::from(std::net::Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))))
        }
        ControlMessageOwned::Ipv6PacketInfo(info) => Some(IpAddr::from(info.ipi6_addr.s6_addr)),
        _ => None,
    })
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    match address.family()? {
        nix::sys::socket::AddressFamily::Inet => address.as_sockaddr_in().map(|a| SocketAddr::from(*a)),
        nix::sys::socket::AddressFamily::Inet6 => address.as_sockaddr_in6().map(|a| SocketAddr::from(*a)),
        _ => None,
    }
}

/// The source address to send a reply from.
enum PacketInfo {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

impl From<IpAddr> for PacketInfo {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(a) => PacketInfo::V4(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr { s_addr: u32::from(a).to_be() },
                ipi_addr: libc::in_addr { s_addr: 0 },
            }),
            IpAddr::V6(a) => {
                PacketInfo::V6(libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: a.octets() }, ipi6_ifindex: 0 })
            }
        }
    }
}

impl PacketInfo {
    fn message(&self) -> ControlMessage<'_> {
        match self {
            PacketInfo::V4(info) => ControlMessage::Ipv4PacketInfo(info),
            PacketInfo::V6(info) => ControlMessage::Ipv6PacketInfo(info),
        }
    }
}

//! steerdns's own UDP loop: one thread per socket (SO_REUSEPORT spreads flows across
//! them), queries received and replies sent in batches (recvmmsg/sendmmsg), buffers
//! reused, one View load per batch. Replies pass response rate limiting (SPEC §7)
//! when it is on; a client with a valid server cookie is not limited. On a wildcard
//! address each reply is sent from the address its query was sent to (IP_PKTINFO /
//! IPV6_RECVPKTINFO).

use crate::dns::{self, Transport};
use crate::metrics::Metrics;
use crate::rrl::Verdict;
use crate::sys::mmsg::Batch;
use crate::view::View;
use arc_swap::ArcSwap;
use nix::sys::socket::{setsockopt, sockopt};
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
        // the View as of the last swap, checked with one atomic load per batch
        let mut view = arc_swap::Cache::new(&*view);
        let mut rounds: u32 = 0;
        // the token takes a lock: look at it when idle, and every SHUTDOWN_CHECK batches
        loop {
            let idle = !worker.round(&socket, &mut view, &metrics);
            if idle {
                // let go of a View swapped out meanwhile, so a reload's old one is freed
                view.load();
            }
            rounds = rounds.wrapping_add(1);
            if (idle || rounds.is_multiple_of(SHUTDOWN_CHECK)) && shutdown.is_cancelled() {
                break;
            }
        }
    })
}

type ViewCache<'a> = arc_swap::Cache<&'a ArcSwap<View>, Arc<View>>;

/// A busy worker looks at the shutdown token once per this many batches.
const SHUTDOWN_CHECK: u32 = 64;

struct Worker {
    wildcard: bool,
    received: Batch,
    sending: Batch,
    replies: Vec<Vec<u8>>,
    /// (reply index, destination, source address) of the replies to send.
    outgoing: Vec<(usize, SocketAddr, Option<IpAddr>)>,
    /// How many datagrams the next receive asks for: twice the last batch, at least
    /// MIN_BATCH, so that a quiet socket does not pay for preparing BATCH headers.
    want: usize,
}

/// The fewest datagrams a receive asks for.
const MIN_BATCH: usize = 4;

impl Worker {
    fn new(wildcard: bool) -> Self {
        Worker {
            wildcard,
            received: Batch::new(BATCH, MAX_QUERY),
            sending: Batch::new(BATCH, 0),
            replies: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
            outgoing: Vec::with_capacity(BATCH),
            want: MIN_BATCH,
        }
    }

    /// Receives one batch (waiting up to IDLE_CHECK for its first datagram), answers
    /// it and sends the replies; false when nothing came.
    fn round(&mut self, socket: &UdpSocket, view: &mut ViewCache, metrics: &Metrics) -> bool {
        let count = match self.received.receive(socket.as_raw_fd(), self.want, self.wildcard) {
            Ok(count) => count,
            Err(e) => {
                if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) {
                    tracing::debug!("udp receive: {e}");
                }
                return false;
            }
        };
        self.want = (2 * count).clamp(MIN_BATCH, BATCH);
        // the View as it is now that the batch is in, not as it was before the wait
        let view: &View = view.load();
        // RRL's clock, read once per batch
        let now = view.rrl.as_ref().map(|_| crate::rrl::clock_ms());
        self.outgoing.clear();
        for i in 0..count {
            let (query, from, to) = self.received.datagram(i);
            let Some(client) = from else { continue };
            let Some(answered) = super::respond(view, query, client, Transport::Udp, &mut self.replies[i], metrics)
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
                        dns::slip(view, query, client, answered.rcode, &mut self.replies[i]);
                    }
                }
            }
            self.outgoing.push((i, client, to));
        }
        self.send(socket);
        true
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
        while start < end {
            let replies = &self.replies;
            let run = self.outgoing[start..end].iter().map(|(i, to, _)| (&replies[*i][..], *to));
            match self.sending.send(socket.as_raw_fd(), run, source) {
                Ok(sent) => start += sent.max(1),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
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

//! steerdns's own TCP loop (SPEC §7): two-byte framing, queries answered in turn by
//! the same [`super::respond`] as UDP (so every reply is the one UDP gives, but TC),
//! replies batched into one write while more queries are already buffered. DNS over
//! TLS is the same loop behind a TLS handshake (tokio-rustls), with the same limits
//! counted apart; a handshake that does not finish within `tcp_idle_timeout` closes.
//!
//! A connection closes on a zero-length message, on a length prefix or message it does
//! not complete, and after `tcp_idle_timeout` without a complete query (a client that
//! never reads its replies is closed by the same clock). `tcp_max_connections` and
//! `tcp_max_connections_per_client` bound what is open: past either, the longest-idle
//! connection (of that client, or of all) is closed to make room. An accept that fails
//! (no descriptors left) backs off instead of spinning.

use crate::dns::Transport;
use crate::metrics::Metrics;
use crate::view::View;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest pause after a failed accept.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Serves DNS over TCP (and over TLS, for listeners given [`Transport::Tls`]) until
/// `shutdown`; connections then finish the query in hand and close. Returns once every
/// connection has.
pub async fn serve_tcp(
    listeners: Vec<(TcpListener, Transport)>,
    view: Arc<ArcSwap<View>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    // TCP and TLS connections are bounded apart, each by the same limits
    let (tcp, tls) = (Arc::new(Open::default()), Arc::new(Open::default()));
    let connections = TaskTracker::new();
    let accepts = TaskTracker::new();
    for (listener, transport) in listeners {
        let open = if transport == Transport::Tls { tls.clone() } else { tcp.clone() };
        let (view, metrics, shutdown, connections) =
            (view.clone(), metrics.clone(), shutdown.clone(), connections.clone());
        accepts.spawn(crate::supervise::task("tcp", async move {
            accept(listener, transport, view, metrics, open, shutdown, connections).await;
        }));
    }
    accepts.close();
    accepts.wait().await;
    connections.close();
    connections.wait().await;
}

async fn accept(
    listener: TcpListener,
    transport: Transport,
    view: Arc<ArcSwap<View>>,
    metrics: Arc<Metrics>,
    open: Arc<Open>,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: wait for descriptors to come back
                tracing::debug!("tcp accept: {e}");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        let limits = Limits::of(&view.load());
        let connection = open.admit(peer.ip(), &limits);
        let (view, metrics, open, shutdown) = (view.clone(), metrics.clone(), open.clone(), shutdown.clone());
        let _ = stream.set_nodelay(true);
        connections.spawn(crate::supervise::task("tcp", async move {
            crate::supervise::fault_point("tcp");
            let serving =
                Serving { peer, transport, view: &view, metrics: &metrics, open: &open, connection: &connection };
            match transport {
                Transport::Tls => match handshake(stream, &serving, limits.idle, &shutdown).await {
                    Ok(stream) => serving.serve(stream, limits.idle, &shutdown).await,
                    Err(end) => tracing::trace!("tls {peer}: {end}"),
                },
                _ => serving.serve(stream, limits.idle, &shutdown).await,
            }
            open.leave(&connection);
        }));
    }
}

/// The limits of the View in force when a connection was accepted.
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle: Duration,
    total: usize,
    per_client: usize,
}

impl Limits {
    fn of(view: &View) -> Limits {
        Limits { idle: view.tcp.idle_timeout, total: view.tcp.max_connections, per_client: view.tcp.max_per_client }
    }
}

/// One open connection, as the limits see it.
#[derive(Debug)]
struct Connection {
    id: u64,
    peer: IpAddr,
    /// When its last complete query came (or its accept), on the [`Open::clock`]:
    /// the lowest is the longest idle.
    active: AtomicU64,
    /// Cancelled to make room for a newer connection.
    close: CancellationToken,
}

/// Every open connection.
#[derive(Debug)]
struct Open {
    /// Counts accepts and queries: a strict order of activity, ties impossible.
    clock: AtomicU64,
    next: AtomicU64,
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Default for Open {
    fn default() -> Self {
        Open { clock: AtomicU64::new(0), next: AtomicU64::new(0), connections: Mutex::default() }
    }
}

impl Open {
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a new connection from `peer`, closing the longest-idle one of that
    /// client, or of all, when it would pass a limit.
    fn admit(&self, peer: IpAddr, limits: &Limits) -> Arc<Connection> {
        let connection = Arc::new(Connection {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            peer,
            active: AtomicU64::new(self.now()),
            close: CancellationToken::new(),
        });
        let mut open = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let closing = |c: &&Arc<Connection>| !c.close.is_cancelled();
        let idlest = |of: &mut dyn Iterator<Item = &Arc<Connection>>| {
            of.min_by_key(|c| c.active.load(Ordering::Relaxed)).map(|c| c.close.cancel())
        };
        if open.values().filter(closing).filter(|c| c.peer == peer).count() >= limits.per_client {
            idlest(&mut open.values().filter(closing).filter(|c| c.peer == peer));
        }
        if open.values().filter(closing).count() >= limits.total {
            idlest(&mut open.values().filter(closing));
        }
        open.insert(connection.id, connection.clone());
        connection
    }

    fn leave(&self, connection: &Connection) {
        self.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&connection.id);
    }
}

/// Why a connection ends, for the trace log.
enum End {
    Closed,
    Idle,
    ZeroLength,
    Replaced,
    Stopping,
    Io(std::io::Error),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed => f.write_str("closed by the client"),
            End::Idle => f.write_str("idle timeout"),
            End::ZeroLength => f.write_str("a zero-length message"),
            End::Replaced => f.write_str("closed for a newer connection (limits)"),
            End::Stopping => f.write_str("stopping"),
            End::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A TLS handshake with the certificate in force, within `idle`.
async fn handshake(
    stream: tokio::net::TcpStream,
    serving: &Serving<'_>,
    idle: Duration,
    shutdown: &CancellationToken,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, End> {
    let Some(config) = serving.view.load().tls.clone() else { return Err(End::Stopping) };
    let accepting = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    tokio::select! {
        _ = shutdown.cancelled() => Err(End::Stopping),
        _ = serving.connection.close.cancelled() => Err(End::Replaced),
        done = tokio::time::timeout(idle, accepting) => match done {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(End::Io(e)),
            Err(_) => Err(End::Idle),
        },
    }
}

/// One connection being served.
struct Serving<'a> {
    peer: SocketAddr,
    transport: Transport,
    view: &'a ArcSwap<View>,
    metrics: &'a Metrics,
    open: &'a Open,
    connection: &'a Connection,
}

impl Serving<'_> {
    async fn serve(&self, stream: impl AsyncRead + AsyncWrite + Unpin, idle: Duration, shutdown: &CancellationToken) {
        let (peer, connection) = (self.peer, self.connection);
        let mut stream = BufReader::with_capacity(4096, stream);
        let (mut query, mut replies, mut reply) = (Vec::new(), Vec::new(), Vec::new());
        let end = loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break End::Stopping,
                _ = connection.close.cancelled() => break End::Replaced,
                next = tokio::time::timeout(idle, frame(&mut stream, &mut query)) => next,
            };
            match next {
                Err(_) => break End::Idle,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break End::Closed,
                Ok(Err(e)) => break End::Io(e),
                Ok(Ok(0)) => break End::ZeroLength,
                Ok(Ok(_)) => {}
            }
            connection.active.store(self.open.now(), Ordering::Relaxed);
            let answered = super::respond(&self.view.load(), &query, peer, self.transport, &mut reply, self.metrics);
            if answered.is_some() && !reply.is_empty() {
                replies.extend_from_slice(&(reply.len() as u16).to_be_bytes());
                replies.extend_from_slice(&reply);
            }
            // one write for every query already in hand: flush unless a whole next
            // message is buffered
            if !whole_message(stream.buffer()) && !replies.is_empty() {
                match tokio::time::timeout(idle, send(stream.get_mut(), &replies)).await {
                    Ok(Ok(())) => replies.clear(),
                    Ok(Err(e)) => break End::Io(e),
                    Err(_) => break End::Idle,
                }
            }
        };
        let _ = tokio::time::timeout(idle, async {
            if !replies.is_empty() {
                send(stream.get_mut(), &replies).await?;
            }
            // TLS: close_notify; TCP: FIN
            stream.get_mut().shutdown().await
        })
        .await;
        tracing::trace!("{:?} {peer}: {end}", self.transport);
    }
}

/// Writes `bytes` and flushes them (TLS holds records until flushed).
async fn send(stream: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Whether `buffered` begins with a complete two-byte-framed message.
fn whole_message(buffered: &[u8]) -> bool {
    match buffered {
        [high, low, rest @ ..] => rest.len() >= usize::from(u16::from_be_bytes([*high, *low])),
        _ => false,
    }
}

/// Reads one message into `query`: its length, 0 for a zero-length message.
async fn frame(read: &mut (impl AsyncRead + Unpin), query: &mut Vec<u8>) -> std::io::Result<usize> {
    let len = read.read_u16().await? as usize;
    query.resize(len, 0);
    read.read_exact(query).await?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_message_is_one_whose_length_and_bytes_are_all_buffered() {
        assert!(!whole_message(&[]));
        assert!(!whole_message(&[0]));
        assert!(whole_message(&[0, 0]));
        assert!(!whole_message(&[0, 3, 1, 2]));
        assert!(whole_message(&[0, 3, 1, 2, 3]));
        assert!(whole_message(&[0, 1, 9, 0, 5]));
    }

    fn limits(total: usize, per_client: usize) -> Limits {
        Limits { idle: Duration::from_secs(10), total, per_client }
    }

    #[test]
    fn the_longest_idle_connection_makes_room() {
        let open = Open::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let first = open.admit(a, &limits(3, 2));
        let second = open.admit(a, &limits(3, 2));
        first.active.store(open.now(), Ordering::Relaxed);
        let third = open.admit(a, &limits(3, 2));
        assert!(second.close.is_cancelled() && !first.close.is_cancelled(), "per client: the idlest of a");
        open.leave(&second);
        let other = open.admit(b, &limits(3, 2));
        let fourth = open.admit(b, &limits(3, 2));
        assert!(first.close.is_cancelled(), "in all: the idlest of every client");
        assert!(![&third, &other, &fourth].iter().any(|c| c.close.is_cancelled()));
    }
}

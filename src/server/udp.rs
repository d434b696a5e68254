//! steerdns's own UDP loop: one socket per worker, buffers reused across queries.

use crate::dns::{self, Transport};
use crate::view::View;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Answers queries on one socket until `shutdown`; a reply being sent is finished.
pub async fn serve_udp(socket: UdpSocket, view: Arc<ArcSwap<View>>, shutdown: CancellationToken) {
    let mut request = vec![0u8; 65535];
    let mut response = Vec::with_capacity(4096);
    loop {
        let (len, client) = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut request) => match received {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; keep serving
                    tracing::debug!("udp receive: {e}");
                    continue;
                }
            },
        };
        let answered = dns::respond(&view.load(), &request[..len], client, Transport::Udp, &mut response);
        if answered && let Err(e) = socket.send_to(&response, client).await {
            tracing::debug!("udp send to {client}: {e}");
        }
    }
}

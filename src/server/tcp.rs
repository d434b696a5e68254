//! TCP through hickory-server's `Server` (connection handling, framing, idle timeout),
//! with a thin handler that calls the same `dns::respond` as UDP.
//!
//! hickory decodes each request before the handler runs (undecodable requests get its
//! own FORMERR) and sends a structured response, so the handler decodes our response
//! bytes once more: TCP is rare, and this keeps one answer path.

use crate::dns::Transport;
use crate::metrics::Metrics;
use crate::view::View;
use arc_swap::ArcSwap;
use hickory_proto::op::{Header, Message, ResponseCode};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::sync::Arc;
use std::time::Duration;

struct Handler {
    view: Arc<ArcSwap<View>>,
    metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, handle: R) -> ResponseInfo {
        crate::supervise::task("tcp", self.handle(request, handle)).await
    }
}

impl Handler {
    async fn handle<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        crate::supervise::fault_point("tcp");
        let mut bytes = Vec::new();
        let view = self.view.load();
        let rcode = super::respond(&view, request.as_slice(), request.src(), Transport::Tcp, &mut bytes, &self.metrics);
        let message = match Message::from_vec(&bytes) {
            Ok(m) if rcode.is_some() => m,
            _ => return failed(request),
        };
        let builder = MessageResponseBuilder::new(&request.queries, message.edns.as_ref());
        let response = builder.build(
            message.metadata,
            message.answers.iter(),
            message.authorities.iter(),
            std::iter::empty(),
            message.additionals.iter(),
        );
        handle.send_response(response).await.unwrap_or_else(|e| {
            tracing::debug!("tcp send to {}: {e}", request.src());
            failed(request)
        })
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = hickory_proto::op::Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    Header { metadata, counts: Default::default() }.into()
}

/// Serves DNS over TCP on `listeners` until `shutdown`, then lets connections finish
/// their in-flight queries.
pub async fn serve_tcp(
    listeners: Vec<tokio::net::TcpListener>,
    view: Arc<ArcSwap<View>>,
    metrics: Arc<Metrics>,
    idle_timeout: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut server = Server::new(Handler { view, metrics });
    for listener in listeners {
        server.register_listener(listener, idle_timeout, 64);
    }
    tokio::select! {
        result = server.block_until_done() => {
            if let Err(e) = result {
                tracing::error!("tcp server stopped: {e}");
            }
        }
        _ = shutdown.cancelled() => {
            if let Err(e) = server.shutdown_gracefully().await {
                tracing::warn!("tcp shutdown: {e}");
            }
        }
    }
}

//! The HTTP server (DESIGN 3): accepts connections on a bound listener, serves each with
//! hyper's HTTP/1.1 under the bounds below, and drains on shutdown. The only server-side
//! module that touches hyper; it translates requests into `node` calls (see `handler`).

mod assets;
mod body;
mod content;
mod error;
mod handler;
mod peer;
mod range;
mod route;
mod sign;
mod upload;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use body::{Body, FileBody};
pub use content::{LISTING_PAGE, LISTING_PAGE_BYTES};
pub use error::{ApiError, RETRY_AFTER_SECS};
pub use handler::{BODY_READ_TIMEOUT, Handler};
pub use range::ByteRange;
pub use route::{Route, RouteError};
pub use sign::{LABEL, REUSE_SECS, ResponseSigner};
pub use upload::MAX_UPLOAD_BYTES;

use crate::node::Node;

/// Time a client has to send a request's headers (also the idle time allowed between
/// requests on a kept-alive connection before the next request's headers).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of request line and headers hyper buffers (it answers 431 beyond). Ours
/// are short; browsers' are a few KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Longest time shutdown waits for in-flight requests before closing their connections.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Pause after a failed accept (out of descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Settings of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Wait for absent blocks when the request gives no `?wait=`.
    pub default_wait: Duration,
    /// Time allowed for a request's headers to arrive.
    pub header_read_timeout: Duration,
}

impl ServerOptions {
    /// The production bounds, with the node's default wait.
    pub fn new(max_connections: usize, default_wait: Duration) -> ServerOptions {
        ServerOptions {
            max_connections,
            default_wait,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `node` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (up to `DRAIN_DEADLINE`) and returns.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let handler = Arc::new(Handler::new(node, options.default_wait));
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed; treat as shutdown
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler.handle(req).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_DEADLINE) => tracing::warn!("drain deadline passed; closing"),
    }
    Ok(())
}

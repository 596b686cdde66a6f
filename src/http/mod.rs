//! The HTTP server (DESIGN 3): accepts connections on a bound listener, serves each with
//! hyper's HTTP/1.1 under the bounds below, and drains on shutdown. Beside it a
//! housekeeping task watches the server's activity and, when a burst is over, forgets
//! stale response signatures and gives the freed memory back (`memory`). The only server-side
//! module that touches hyper; it translates requests into `node` calls (see `handler`).

mod answer;
mod assets;
mod batch;
mod body;
mod conn;
mod content;
mod error;
mod gateway;
mod handler;
mod origin;
mod peer;
mod range;
mod route;
mod sign;
mod upload;

pub use answer::answer_peer;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

pub use body::{Body, FileBody};
pub use conn::{PRESSED_ALLOWANCE, RESERVE_DIVISOR};
pub use content::{LISTING_PAGE, LISTING_PAGE_BYTES, NOT_FOUND_PAGE};
pub use error::{ApiError, RETRY_AFTER_SECS};
pub use handler::{BODY_RATE_GRACE, BODY_READ_TIMEOUT, Handler, MIN_BODY_RATE};
pub use origin::{LABEL_LEN, from_label, label, origin_name};
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

/// Connections the kernel may hold waiting for a slot (the listen backlog; Linux caps
/// it at `net.core.somaxconn`, 4096 by default). tokio's `bind` asks for 128: under a
/// thousand attacking connections the queue overflowed, and a client whose SYN is
/// dropped waits at least a second to try again; a queued connection costs the kernel
/// little and is accepted as soon as a slot frees.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Pause after a failed accept (out of descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How often housekeeping looks whether a burst of connections or requests is over (to
/// give its memory back): often enough that memory is back well within a second of the
/// burst's end, and each look is two atomic operations.
pub const HOUSEKEEPING_TICK: Duration = Duration::from_millis(250);

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Wait for absent blocks when the request gives no `?wait=`.
    pub default_wait: Duration,
    /// Time allowed for a request's headers to arrive.
    pub header_read_timeout: Duration,
    /// The domain bundles get their own origins under (`<id>.<key>.<domain>`), besides
    /// `localhost`; as `config` validated it.
    pub domain: Option<String>,
}

impl ServerOptions {
    /// The production bounds, with the node's default wait.
    pub fn new(max_connections: usize, default_wait: Duration) -> ServerOptions {
        ServerOptions {
            max_connections,
            default_wait,
            header_read_timeout: HEADER_READ_TIMEOUT,
            domain: None,
        }
    }
}

/// A listener on `addr` with a `LISTEN_BACKLOG` queue (and `SO_REUSEADDR`, as
/// `TcpListener::bind` sets it, so a restart does not wait for old connections).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `node` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (up to `DRAIN_DEADLINE`) and returns.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = conn::Slots::new(options.max_connections);
    let handler = Arc::new(
        Handler::new(node, options.default_wait)
            .with_slots(slots.clone())
            .with_origins(origin::Origins::new(options.domain.clone())),
    );
    // Connections opened and closed and requests answered since housekeeping last looked.
    let traffic = Arc::new(AtomicU64::new(0));
    let housekeeping = tokio::spawn(housekeep(Arc::downgrade(&handler), traffic.clone()));
    let graceful = GracefulShutdown::new();
    // Set when the server stops: connections that have sent nothing yet close at once.
    let stopping = tokio::sync::watch::Sender::new(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.acquire() => match slot {
                Some(s) => s,
                None => break, // never closed; treat as shutdown
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
        traffic.fetch_add(1, Ordering::Relaxed);
        let activity = conn::Activity::new();
        let local = stream.local_addr().ok().map(peer::LocalAddr);
        let handler = handler.clone();
        let in_flight = activity.clone();
        let answered = traffic.clone();
        let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(local) = local {
                req.extensions_mut().insert(local);
            }
            let handler = handler.clone();
            let busy = in_flight.begin();
            let answered = answered.clone();
            async move {
                let response = handler.handle(req).await;
                answered.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(response.map(|b| conn::Tracked::new(b, busy)))
            }
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let watched = activity.clone();
        let (header_timeout, stopping) = (options.header_read_timeout, stopping.subscribe());
        let connection = async move {
            if !first_bytes(&stream, header_timeout, stopping).await {
                return Ok(());
            }
            let io = TokioIo::new(conn::Watched::new(stream, watched));
            // Boxed: the task of a connection still silent then holds no room for it.
            Box::pin(watcher.watch(builder.serve_connection(io, service))).await
        };
        let pressure = slots.pressure();
        let closed = traffic.clone();
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                // Dropping the connection closes it: slots are scarce and it is idle.
                () = activity.evicted(pressure) => {
                    tracing::debug!(%peer, "idle connection closed to free its slot");
                }
            }
            drop(slot);
            closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    drop(listener);
    stopping.send_replace(true);
    housekeeping.abort();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_DEADLINE) => tracing::warn!("drain deadline passed; closing"),
    }
    Ok(())
}

/// Waits until `stream` has bytes to read, and says whether it should be served: false
/// when its peer closed it, it stayed silent for `timeout` or the server is `stopping`. hyper takes its two 8 KiB buffers as soon as it has a connection; waiting
/// for the first bytes first makes a connected but silent client (a burst of them
/// opening before they send, or an idle pre-connect) cost a task, not 16 KiB.
async fn first_bytes(
    stream: &tokio::net::TcpStream,
    timeout: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut first = [0u8; 1];
    tokio::select! {
        // `peek`, not `readable`: a fresh socket may be reported readable with nothing
        // to read, and a peek that finds nothing waits again.
        peeked = tokio::time::timeout(timeout, stream.peek(&mut first)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        _ = stopping.wait_for(|stop| *stop) => false,
    }
}

/// Every `HOUSEKEEPING_TICK`, counts the server's `traffic` since the last look; once a
/// burst is over (`memory::Bursts`), drops the response signatures too old to reuse and
/// gives the allocator's free memory back. Ends with the handler.
async fn housekeep(handler: Weak<Handler>, traffic: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut bursts = crate::memory::Bursts::default();
    loop {
        tick.tick().await;
        if !bursts.tick(traffic.swap(0, Ordering::Relaxed)) {
            continue;
        }
        let Some(handler) = handler.upgrade() else {
            return;
        };
        let purged = handler.purge_signatures();
        drop(handler);
        let released = tokio::task::spawn_blocking(crate::memory::release_free_memory)
            .await
            .unwrap_or(false);
        tracing::debug!(purged, released, "a burst is over: memory given back");
    }
}

//! How the mesh reaches its peers. `Transport` makes one `PeerLink` per peer: the seam
//! where tests (and simulations) put an in-process transport in place of HTTP. The HTTP
//! one (`HttpTransport`, a `Link` per peer) is a worker task with a bounded queue and
//! its own pool of kept-alive HTTP/1.1 connections. Every request it sends is signed
//! (RFC 9421, DESIGN 4) and every reply is verified against the peer's key before anyone
//! sees it. A full queue refuses at once (`Busy`) rather than letting work for a slow
//! peer pile up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::client::{Client, ClientError, NodeKey, Reply, unix_now, verify_reply};
use crate::identity::{Identity, RequestTarget, digest_header, sign_request};

/// Requests queued for one peer before further ones are refused.
pub const PEER_QUEUE: usize = 64;

/// Requests in flight to one peer at once (each on its own kept-alive connection).
pub const PEER_IN_FLIGHT: usize = 4;

/// One request for a peer.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method.
    pub method: Method,
    /// Path and query, e.g. `/sha256/<id>?wait=1.5`.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (empty for none).
    pub body: Bytes,
    /// SHA-256 of the body when the caller knows it (a block's id): saves a hash.
    pub digest: Option<[u8; 32]>,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Call {
    /// A bodiless request.
    pub fn new(method: Method, path: String, timeout: Duration) -> Call {
        Call {
            method,
            path,
            headers: Vec::new(),
            body: Bytes::new(),
            digest: None,
            timeout,
        }
    }
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The peer's queue is full.
    #[error("peer busy: {PEER_QUEUE} requests queued")]
    Busy,
    /// The worker stopped (the peer was dropped).
    #[error("link closed")]
    Closed,
    /// No reply within the call's timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The exchange failed or the reply did not verify.
    #[error(transparent)]
    Client(#[from] ClientError),
}

struct Job {
    call: Call,
    reply: oneshot::Sender<Result<Reply, LinkError>>,
}

/// A reply to come from a peer.
pub type ReplyFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, LinkError>> + Send + 'a>>;

/// One peer as the mesh talks to it: requests in, replies (already checked to come from
/// that peer) out.
pub trait PeerLink: Send + Sync {
    /// Sends `call`; its reply, or why there is none.
    fn call(&self, call: Call) -> ReplyFuture<'_>;
}

/// Makes the link to each peer the mesh adds.
pub trait Transport: Send + Sync {
    /// The link to `peer`, reached at `url`, for requests from `me`.
    fn link(&self, url: &str, peer: NodeKey, me: Arc<Identity>) -> Arc<dyn PeerLink>;
}

/// The real transport: signed HTTP requests through a `Link` per peer.
pub struct HttpTransport;

impl Transport for HttpTransport {
    fn link(&self, url: &str, peer: NodeKey, me: Arc<Identity>) -> Arc<dyn PeerLink> {
        Arc::new(Link::spawn(url, peer, me))
    }
}

impl PeerLink for Link {
    fn call(&self, call: Call) -> ReplyFuture<'_> {
        Box::pin(self.request(call))
    }
}

/// A handle on one peer's worker; dropping every handle stops the worker.
#[derive(Clone)]
pub struct Link {
    tx: mpsc::Sender<Job>,
}

impl Link {
    /// Starts the worker for the peer `peer` at `url`; requests are signed by `me`.
    pub fn spawn(url: &str, peer: NodeKey, me: Arc<Identity>) -> Link {
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let worker = Worker {
            client: Client::new(url),
            authority: authority_of(url),
            peer,
            me,
            in_flight: Arc::new(Semaphore::new(PEER_IN_FLIGHT)),
        };
        tokio::spawn(worker.run(rx));
        Link { tx }
    }

    /// Sends `call` through the worker; the reply is signed by the peer and its body
    /// matches its digest.
    pub async fn request(&self, call: Call) -> Result<Reply, LinkError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Job { call, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::Busy,
            mpsc::error::TrySendError::Closed(_) => LinkError::Closed,
        })?;
        rx.await.map_err(|_| LinkError::Closed)?
    }
}

struct Worker {
    client: Client,
    authority: String,
    peer: NodeKey,
    me: Arc<Identity>,
    in_flight: Arc<Semaphore>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let this = Arc::new(self);
        while let Some(job) = rx.recv().await {
            let Ok(permit) = this.in_flight.clone().acquire_owned().await else {
                return;
            };
            let this = this.clone();
            tokio::spawn(async move {
                let timeout = job.call.timeout;
                let result = tokio::time::timeout(timeout, this.send(job.call))
                    .await
                    .unwrap_or(Err(LinkError::Timeout(timeout)));
                let _ = job.reply.send(result);
                drop(permit);
            });
        }
    }

    async fn send(&self, call: Call) -> Result<Reply, LinkError> {
        let (path, query) = match call.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (call.path.as_str(), None),
        };
        let digest = (!call.body.is_empty() || call.digest.is_some()).then(|| {
            digest_header(
                &call
                    .digest
                    .unwrap_or_else(|| Sha256::digest(&call.body).into()),
            )
        });
        let fields = sign_request(
            self.me.signing_key(),
            &self.me.id().to_string(),
            unix_now(),
            &RequestTarget {
                method: call.method.as_str(),
                authority: &self.authority,
                path,
                query,
                content_digest: digest.as_deref(),
            },
        );
        let mut headers: Vec<(&str, &str)> = vec![
            ("signature-input", &fields.input),
            ("signature", &fields.signature),
        ];
        if let Some(d) = &digest {
            headers.push(("content-digest", d));
        }
        for (name, value) in &call.headers {
            headers.push((name, value));
        }
        let method = call.method.as_str().to_owned();
        let reply = self
            .client
            .send(call.method, &call.path, &headers, call.body)
            .await?;
        verify_reply(&reply, &method, &call.path, &self.peer, unix_now())?;
        Ok(reply)
    }
}

/// `host:port` of a base URL (what the `Host` header will say).
pub fn authority_of(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_is_host_and_port() {
        assert_eq!(authority_of("http://127.0.0.1:8042"), "127.0.0.1:8042");
        assert_eq!(authority_of("http://Node.example:80/x"), "node.example:80");
        assert_eq!(authority_of("https://a"), "a");
    }
}

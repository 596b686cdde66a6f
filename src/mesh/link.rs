//! How the mesh reaches its peers: the typed peer API. The mesh asks a peer for
//! something (`Ask`: get, has, offer, announce, like, holds...) and gets an `Answer`;
//! `Transport` makes one `PeerLink` per peer and is the seam where tests and the
//! simulation put an in-process transport in place of HTTP. The HTTP one
//! (`HttpTransport`, a `Link` per peer) turns each ask into one signed request of the
//! wire contract (DESIGN 3, 6) and each reply back into an answer; its worker task has a
//! bounded queue and its own pool of kept-alive HTTP/1.1 connections. Every request it
//! sends is signed (RFC 9421, DESIGN 4) and every reply is verified against the peer's
//! key before anyone sees it. A full queue refuses at once (`Busy`) rather than letting
//! work for a slow peer pile up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::client::{Client, ClientError, NodeKey, Reply, unix_now, verify_reply};
use crate::id::BlockId;
use crate::identity::{Identity, RequestTarget, digest_header, sign_request};
use crate::proto::{
    Announce, HOLDS_PATH, HOPS_HEADER, HoldState, Holds, HoldsAnswer, KEEP_HEADER, NodeInfo,
    PUSH_HEADER, PeersView, REQUEST_HEADER, like_answer_ids,
};

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
    /// The transport answered with something that does not fit the ask.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// The exchange failed or the reply did not verify.
    #[error(transparent)]
    Client(#[from] ClientError),
}

struct Job {
    call: Call,
    reply: oneshot::Sender<Result<Reply, LinkError>>,
}

/// What the mesh asks of a peer.
#[derive(Debug, Clone)]
pub enum Ask {
    /// The block `id`, looked up further with `hops` forwards left, within `wait`
    /// (`GET /sha256/{id}?wait=` with the hop and request-id headers).
    Get {
        /// The block.
        id: BlockId,
        /// Forwards the peer may still make.
        hops: u32,
        /// The request id shared along the chain of forwards.
        request: u64,
        /// How long the peer may wait for it.
        wait: Duration,
    },
    /// Whether the peer holds `id` now (`HEAD /sha256/{id}?wait=0`).
    Has {
        /// The block.
        id: BlockId,
    },
    /// A push: the block, with its heat here and, for custody, until when to keep it
    /// (`PUT /sha256/{id}` with `Libernet-Push` and `Libernet-Keep`).
    Offer {
        /// The block's id.
        id: BlockId,
        /// Its bytes (they hash to `id`).
        block: Bytes,
        /// Its heat at the sender.
        heat: f32,
        /// Custody asked until this unix second.
        keep_until: Option<u64>,
    },
    /// Many pushes in one request (`POST /sha256/batch` with `Libernet-Push`, and
    /// `Libernet-Keep` for custody), stored with one group commit at the peer.
    OfferMany {
        /// The blocks (each hashes to its id), at most `MAX_BATCH_BLOCKS`.
        blocks: Vec<(BlockId, Bytes)>,
        /// The warmest of their heats at the sender (the batch carries one).
        heat: f32,
        /// Custody asked until this unix second.
        keep_until: Option<u64>,
    },
    /// This node's identity block, so the peer can check what it signs (a plain
    /// `PUT /sha256/{me}`).
    Introduce {
        /// The identity block.
        block: Bytes,
    },
    /// `PUT /peers`: who this node is and whom it knows.
    Announce(Announce),
    /// The peer's own blocks near `id` (`GET /sha256/like/{id}`, no forwards).
    Like {
        /// The id to match.
        id: BlockId,
        /// The request id.
        request: u64,
    },
    /// Which of `ids` the peer holds, renewing custody until `keep_until` of those it
    /// holds (`POST /sha256/holds`).
    Holds {
        /// At most `MAX_HOLDS_IDS` ids.
        ids: Vec<BlockId>,
        /// Custody asked until this unix second.
        keep_until: Option<u64>,
    },
    /// A plain `GET` of `path` (the survey's `/node` and `/metrics`).
    Read {
        /// Path and query.
        path: String,
    },
}

impl Ask {
    /// Body bytes this ask sends (for the peer's traffic figures).
    pub fn body_len(&self) -> u64 {
        match self {
            Ask::Offer { block, .. } | Ask::Introduce { block } => block.len() as u64,
            Ask::OfferMany { blocks, .. } => blocks
                .iter()
                .map(|(_, b)| (b.len() + crate::proto::FRAME_HEADER) as u64)
                .sum(),
            Ask::Holds { ids, .. } => ids.len() as u64 * 67,
            Ask::Announce(a) => 64 + a.peers.len() as u64 * 100,
            _ => 0,
        }
    }
}

/// A peer's answer to an `Ask`.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `Get`: the block (it hashes to the id asked) and how many hops beyond the peer
    /// it came from (0: the peer held it).
    Block {
        /// The bytes.
        bytes: Bytes,
        /// Hops beyond the peer.
        hops: u32,
    },
    /// `Get` or `Has`: not there (`404`/`504`).
    Missing,
    /// `Has`: there; `Offer`, `Introduce`: already held (`200`).
    Held,
    /// `Offer`, `Introduce`: stored (`201`).
    Stored,
    /// `Announce`: the peer's view of its peers.
    Peers(PeersView),
    /// `Like`: the peer's blocks near the id, with sizes.
    Like(Vec<(BlockId, u64)>),
    /// `Holds`: one state per id asked, in order.
    Holds(Vec<HoldState>),
    /// `OfferMany`: the status of each block offered, in order, as a single push would
    /// have had it (201 stored, 200 held, else refused); blocks past the end of the
    /// list were not read.
    Batch(Vec<u16>),
    /// `Read`: the reply as it came.
    Raw(Reply),
    /// Anything else: the status and the start of the reason.
    Refused {
        /// The status.
        status: StatusCode,
        /// Why, as the peer said it (at most 200 characters).
        reason: String,
    },
}

impl Answer {
    /// Body bytes this answer brought.
    pub fn body_len(&self) -> u64 {
        match self {
            Answer::Block { bytes, .. } => bytes.len() as u64,
            Answer::Raw(r) => r.body.len() as u64,
            Answer::Peers(v) => 100 * v.peers.len() as u64,
            Answer::Like(found) => 86 * found.len() as u64,
            Answer::Holds(states) => states.len() as u64,
            Answer::Batch(results) => 4 * results.len() as u64,
            _ => 0,
        }
    }
}

/// An answer to come from a peer.
pub type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, LinkError>> + Send + 'a>>;

/// One peer as the mesh talks to it: asks in, answers (already checked to come from
/// that peer) out, each within its `timeout`.
pub trait PeerLink: Send + Sync {
    /// Sends `ask`; the peer's answer, or why there is none.
    fn send(&self, ask: Ask, timeout: Duration) -> AnswerFuture<'_>;
}

/// The node at a URL, as it says it is: its key and its `/node` answer.
pub type Introduction = (NodeKey, NodeInfo);

/// A node to come from a URL.
pub type IntroductionFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Introduction, ClientError>> + Send + 'a>>;

/// Makes the link to each peer the mesh adds.
pub trait Transport: Send + Sync {
    /// The link to `peer`, reached at `url`, for requests from `me`.
    fn link(&self, url: &str, peer: NodeKey, me: Arc<Identity>) -> Arc<dyn PeerLink>;

    /// Who the node at `url` is (`GET /node`, its signature checked against the key
    /// it names): how a node meets a seed or a gossiped candidate.
    fn introduce(&self, url: &str) -> IntroductionFuture<'_>;
}

/// The real transport: signed HTTP requests through a `Link` per peer.
pub struct HttpTransport;

impl Transport for HttpTransport {
    fn link(&self, url: &str, peer: NodeKey, me: Arc<Identity>) -> Arc<dyn PeerLink> {
        Arc::new(Link::spawn(url, peer, me))
    }

    fn introduce(&self, url: &str) -> IntroductionFuture<'_> {
        let client = Client::new(url);
        Box::pin(async move { client.node_key().await })
    }
}

impl PeerLink for Link {
    fn send(&self, ask: Ask, timeout: Duration) -> AnswerFuture<'_> {
        Box::pin(async move {
            let call = to_call(&ask, timeout);
            let reply = self.request(call).await?;
            Ok(to_answer(&ask, reply))
        })
    }
}

/// The HTTP request of `ask` (DESIGN 3, 6; README "Mesh" and "Signed requests between
/// nodes").
fn to_call(ask: &Ask, timeout: Duration) -> Call {
    match ask {
        Ask::Get {
            id,
            hops,
            request,
            wait,
        } => {
            let path = format!("/sha256/{id}?wait={:.3}", wait.as_secs_f64());
            let mut call = Call::new(Method::GET, path, timeout);
            call.headers = vec![
                (HOPS_HEADER, hops.to_string()),
                (REQUEST_HEADER, format!("{request:016x}")),
            ];
            call
        }
        Ask::Has { id } => Call::new(Method::HEAD, format!("/sha256/{id}?wait=0"), timeout),
        Ask::Offer {
            id,
            block,
            heat,
            keep_until,
        } => {
            let mut call = Call::new(Method::PUT, format!("/sha256/{id}"), timeout);
            call.body = block.clone();
            call.digest = Some(id.0);
            call.headers = vec![(PUSH_HEADER, format!("{heat:.3}"))];
            if let Some(until) = keep_until {
                call.headers.push((KEEP_HEADER, until.to_string()));
            }
            call
        }
        Ask::OfferMany {
            blocks,
            heat,
            keep_until,
        } => {
            let mut body = Vec::with_capacity(blocks.iter().map(|(_, b)| b.len() + 36).sum());
            for (id, block) in blocks {
                crate::proto::encode_frame(&mut body, id, block);
            }
            let mut call = Call::new(Method::POST, crate::proto::BATCH_PATH.to_owned(), timeout);
            call.digest = Some(Sha256::digest(&body).into());
            call.body = Bytes::from(body);
            call.headers = vec![
                ("content-type", crate::proto::BATCH_MEDIA_TYPE.to_owned()),
                (PUSH_HEADER, format!("{heat:.3}")),
            ];
            if let Some(until) = keep_until {
                call.headers.push((KEEP_HEADER, until.to_string()));
            }
            call
        }
        Ask::Introduce { block } => {
            let id = BlockId::of(block);
            let mut call = Call::new(Method::PUT, format!("/sha256/{id}"), timeout);
            call.body = block.clone();
            call.digest = Some(id.0);
            call
        }
        Ask::Announce(announce) => {
            let mut call = Call::new(Method::PUT, "/peers".to_owned(), timeout);
            call.body = Bytes::from(serde_json::to_vec(announce).unwrap_or_default());
            call.headers = vec![("content-type", "application/json".to_owned())];
            call
        }
        Ask::Like { id, request } => {
            let mut call = Call::new(Method::GET, format!("/sha256/like/{id}"), timeout);
            call.headers = vec![
                (HOPS_HEADER, "0".to_owned()),
                (REQUEST_HEADER, format!("{request:016x}")),
            ];
            call
        }
        Ask::Holds { ids, keep_until } => {
            let body = Holds {
                ids: ids.iter().map(ToString::to_string).collect(),
                keep_until: *keep_until,
            };
            let mut call = Call::new(Method::POST, HOLDS_PATH.to_owned(), timeout);
            call.body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            call.headers = vec![("content-type", "application/json".to_owned())];
            call
        }
        Ask::Read { path } => Call::new(Method::GET, path.clone(), timeout),
    }
}

/// The answer a verified `reply` to `ask` gives.
fn to_answer(ask: &Ask, reply: Reply) -> Answer {
    let refused = |reply: &Reply| Answer::Refused {
        status: reply.status,
        reason: String::from_utf8_lossy(&reply.body)
            .chars()
            .take(200)
            .collect(),
    };
    let missing = |s: StatusCode| s == StatusCode::NOT_FOUND || s == StatusCode::GATEWAY_TIMEOUT;
    match ask {
        Ask::Get { id, .. } => match reply.status {
            StatusCode::OK if BlockId::of(&reply.body) == *id => Answer::Block {
                hops: reply
                    .header(HOPS_HEADER)
                    .and_then(|h| h.parse().ok())
                    .unwrap_or(0),
                bytes: reply.body,
            },
            s if missing(s) => Answer::Missing,
            _ => refused(&reply),
        },
        Ask::Has { .. } => match reply.status {
            StatusCode::OK => Answer::Held,
            s if missing(s) => Answer::Missing,
            _ => refused(&reply),
        },
        Ask::Offer { .. } | Ask::Introduce { .. } => match reply.status {
            StatusCode::CREATED => Answer::Stored,
            StatusCode::OK => Answer::Held,
            _ => refused(&reply),
        },
        Ask::Announce(_) => match serde_json::from_slice::<PeersView>(&reply.body) {
            Ok(view) if reply.status == StatusCode::OK => Answer::Peers(view),
            _ => refused(&reply),
        },
        Ask::Like { .. } => match reply.status {
            StatusCode::NOT_FOUND => Answer::Like(Vec::new()),
            StatusCode::OK => match like_answer_ids(&reply.body) {
                Some(found) => Answer::Like(found),
                None => refused(&reply),
            },
            _ => refused(&reply),
        },
        Ask::OfferMany { blocks, .. } => {
            match serde_json::from_slice::<crate::proto::BatchAnswer>(&reply.body) {
                Ok(answer)
                    if reply.status == StatusCode::OK && answer.results.len() <= blocks.len() =>
                {
                    Answer::Batch(answer.results)
                }
                _ => refused(&reply),
            }
        }
        Ask::Holds { ids, .. } => match serde_json::from_slice::<HoldsAnswer>(&reply.body) {
            Ok(answer) if reply.status == StatusCode::OK && answer.state.len() == ids.len() => {
                Answer::Holds(answer.state.chars().map(HoldState::from_char).collect())
            }
            _ => refused(&reply),
        },
        Ask::Read { .. } => Answer::Raw(reply),
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

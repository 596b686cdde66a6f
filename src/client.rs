//! An HTTP client for nodes that trusts nothing it is not able to check: each reply's
//! `Content-Digest` must match its body, and its RFC 9421 signature must verify against the
//! node's key and cover the status, the digest, and the request's method, path and
//! query. Used by the tests now, by the CLI and by peers later.
//!
//! One exception, where the content proves itself: a block GET answered 200 with bytes
//! whose SHA-256 is the id asked for is taken without its signature (`get_block`). The
//! id came from a checked source (a manifest, a URL), so the bytes are the block
//! whoever sent them; the signature would only add which node sent them, at about 50
//! us of client CPU per block (`examples/verify_cost.rs`, docs/benchmarks.md, issue 16):
//! a restore of 15,000 blocks spent most of a second on it. Every answer that claims
//! anything else (absence, an error, JSON) is verified, and a batch upload's answer
//! (`put_blocks`) is one signed reply for many blocks, verified once.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ed25519_dalek::VerifyingKey;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

use crate::id::BlockId;
use crate::identity::{
    ComponentId, SignatureFields, VerifyError, parse_digest_header, parse_identity_block,
    verify_fields,
};
use crate::proto::NodeInfo;

pub use crate::identity::RESPONSE_LABEL as LABEL;

pub mod batch;

/// Failures of a request or of checking its reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or request could not be built.
    #[error("bad request: {0}")]
    Request(String),
    /// Connecting or exchanging failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The node's `/node` answer is inconsistent (id is not the identity block's hash).
    #[error("node identity is inconsistent: {0}")]
    Identity(String),
    /// `Content-Digest` missing or not matching the body.
    #[error("content digest: {0}")]
    Digest(String),
    /// The signature is missing, wrong, stale, or does not cover what it must.
    #[error("signature: {0}")]
    Signature(#[from] VerifyError),
    /// The node does not have the block (404) or could not find it in time (504).
    #[error("block {0} not found")]
    NotFound(BlockId),
    /// A block's bytes do not hash to its id.
    #[error("block {0} does not hash to its id")]
    HashMismatch(BlockId),
    /// Any other unexpected answer, with the node's own words.
    #[error("{method} {path}: {status} {message}")]
    Status {
        /// Request method.
        method: &'static str,
        /// Request path.
        path: String,
        /// Answer status.
        status: StatusCode,
        /// The `message` of the JSON error body, or the body.
        message: String,
    },
}

impl ClientError {
    /// True for "the thing asked for is not there" and "what came back did not verify":
    /// the CLI's exit code 1.
    pub fn is_not_found_or_unverified(&self) -> bool {
        matches!(
            self,
            ClientError::NotFound(_)
                | ClientError::HashMismatch(_)
                | ClientError::Digest(_)
                | ClientError::Signature(_)
                | ClientError::Identity(_)
        )
    }
}

/// A node's id and key, as learned from its `/node` and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeKey {
    /// The node id.
    pub id: BlockId,
    /// Its ed25519 public key.
    pub key: VerifyingKey,
}

/// A reply as received.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (empty for HEAD).
    pub body: Bytes,
}

impl Reply {
    /// A header as text, if present and ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A connection pool to one node.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:8042`).
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request and reads the whole reply. Checks nothing: see `verify_reply`.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, ClientError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body.into()))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ClientError::Transport(transport_message(&e)))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Fetches `/node`, checks that its id is the hash of its identity block and that the
    /// reply is signed by that key, and returns the key.
    pub async fn node_key(&self) -> Result<(NodeKey, NodeInfo), ClientError> {
        let reply = self.send(Method::GET, "/node", &[], Bytes::new()).await?;
        let info: NodeInfo = serde_json::from_slice(&reply.body)
            .map_err(|e| ClientError::Identity(format!("/node is not node JSON: {e}")))?;
        let block = info.identity_block.as_bytes();
        let id = BlockId::of(block);
        if id.to_string() != info.id {
            return Err(ClientError::Identity(format!(
                "id {} is not sha256 of its identity block",
                info.id
            )));
        }
        let key = parse_identity_block(block).map_err(|e| ClientError::Identity(e.to_string()))?;
        let node = NodeKey { id, key };
        verify_reply(&reply, "GET", "/node", &node, unix_now())?;
        Ok((node, info))
    }
}

/// A node whose identity has been checked: every reply is verified against its key.
#[derive(Clone)]
pub struct Remote {
    client: Client,
    node: NodeKey,
    info: NodeInfo,
    /// The node's admin token, for pins (`with_token`).
    token: Option<std::sync::Arc<str>>,
    /// Whether the node takes batch uploads (`has_batches`): `BATCHES_UNKNOWN` until
    /// asked; without them `put_blocks` sends one PUT per block.
    batches: std::sync::Arc<std::sync::atomic::AtomicU8>,
    /// False once the node refused `POST /sha256/holds` from a client: `holds` then asks
    /// with one HEAD per id.
    ask_holds: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// `Remote::batches`: not asked yet, batch uploads taken, or not.
const BATCHES_UNKNOWN: u8 = 0;
const BATCHES_YES: u8 = 1;
const BATCHES_NO: u8 = 2;

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The node stored the block (201).
    Stored,
    /// The node already had it (200 to the PUT, or to a HEAD before it).
    AlreadyThere,
}

impl Remote {
    /// Connects to the node at `base`, learning and checking its key from `/node`.
    pub async fn connect(base: &str) -> Result<Remote, ClientError> {
        let client = Client::new(base);
        let (node, info) = client.node_key().await?;
        Ok(Remote {
            client,
            node,
            info,
            token: None,
            batches: std::sync::Arc::new(BATCHES_UNKNOWN.into()),
            ask_holds: std::sync::Arc::new(true.into()),
        })
    }

    /// This remote, sending `token` as the admin bearer token on admin calls.
    pub fn with_token(mut self, token: &str) -> Remote {
        self.token = Some(token.trim().into());
        self
    }

    /// True when admin calls carry a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The node's `/node` answer.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The node's base URL, as given.
    pub fn base(&self) -> &str {
        &self.client.base
    }

    /// Sends a request and verifies the reply's digest and signature.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, ClientError> {
        let method_name = method.as_str().to_owned();
        let reply = self
            .client
            .send(method, path_and_query, headers, body)
            .await?;
        verify_reply(&reply, &method_name, path_and_query, &self.node, unix_now())?;
        Ok(reply)
    }

    /// The block `id`, its hash checked. `wait` is the node's `?wait=` (seconds).
    ///
    /// A 200 whose body hashes to `id` is taken without checking its signature: the id,
    /// which the caller learned from a verified source (a manifest, a URL), proves the
    /// bytes, and the signature would only add that this node sent them (module doc). Every other answer (404, 504, errors, and a 200 that
    /// does not hash to `id`) is verified as any reply before it is believed.
    pub async fn get_block(&self, id: &BlockId, wait: Option<f64>) -> Result<Bytes, ClientError> {
        let path = match wait {
            Some(w) => format!("/sha256/{id}?wait={w}"),
            None => format!("/sha256/{id}"),
        };
        let reply = self
            .client
            .send(Method::GET, &path, &[], Bytes::new())
            .await?;
        if reply.status == StatusCode::OK && BlockId::of(&reply.body) == *id {
            return Ok(reply.body);
        }
        verify_reply(&reply, "GET", &path, &self.node, unix_now())?;
        match reply.status {
            // Signed, but the bytes are not the block's: the node's store is corrupt.
            StatusCode::OK => Err(ClientError::HashMismatch(*id)),
            StatusCode::NOT_FOUND | StatusCode::GATEWAY_TIMEOUT => Err(ClientError::NotFound(*id)),
            _ => Err(status_error("GET", path, &reply)),
        }
    }

    /// True when the node holds `id` now (a HEAD that does not wait).
    pub async fn has_block(&self, id: &BlockId) -> Result<bool, ClientError> {
        let path = format!("/sha256/{id}?wait=0");
        let reply = self.request(Method::HEAD, &path, &[], Bytes::new()).await?;
        match reply.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND | StatusCode::GATEWAY_TIMEOUT => Ok(false),
            _ => Err(status_error("HEAD", path, &reply)),
        }
    }

    /// Stores `block` under `id` (the caller computed `id` from the bytes).
    pub async fn put_block(&self, id: &BlockId, block: Bytes) -> Result<Sent, ClientError> {
        let path = format!("/sha256/{id}");
        let reply = self.request(Method::PUT, &path, &[], block).await?;
        match reply.status {
            StatusCode::CREATED => Ok(Sent::Stored),
            StatusCode::OK => Ok(Sent::AlreadyThere),
            _ => Err(status_error("PUT", path, &reply)),
        }
    }

    /// Ids near `id` that the node knows, with sizes, nearest first.
    pub async fn like(&self, id: &BlockId) -> Result<Vec<(BlockId, u64)>, ClientError> {
        let path = format!("/sha256/like/{id}");
        let reply = self.request(Method::GET, &path, &[], Bytes::new()).await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(Vec::new()),
            _ => return Err(status_error("GET", path, &reply)),
        }
        let mut found = crate::proto::like_answer_ids(&reply.body).ok_or_else(|| {
            status_error("GET", path.clone(), &reply).with_message("not a LIKE answer".into())
        })?;
        // JSON objects carry no order; restore the node's nearest-first order.
        found.sort_by_key(|(found_id, _)| found_id.distance(id));
        Ok(found)
    }
}

impl Remote {
    /// The node's peers (`GET /peers`).
    pub async fn peers(&self) -> Result<crate::proto::PeersView, ClientError> {
        let reply = self
            .request(Method::GET, "/peers", &[], Bytes::new())
            .await?;
        if reply.status != StatusCode::OK {
            return Err(status_error("GET", "/peers".into(), &reply));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| status_error("GET", "/peers".into(), &reply).with_message(e.to_string()))
    }
}

/// Batched calls: many blocks in one request, one signed answer verified once.
impl Remote {
    /// Stores `blocks` (each `(id, bytes)`, the caller computed `id` from the bytes) in
    /// one `POST /sha256/batch`, pinned for `holder` from before they are stored when
    /// given (the remote needs the admin token). Returns one outcome per block, in
    /// order: what a single PUT of that block would have said, a refused block as the
    /// `ClientError::Status` its PUT would have given. The caller keeps a batch within
    /// `proto::MAX_BATCH_BLOCKS` frames and `proto::MAX_BATCH_BYTES` of block bytes.
    ///
    /// A node without the batch route (an older one, see `has_batches`) gets one PUT
    /// per block instead.
    pub async fn put_blocks(
        &self,
        blocks: &[(BlockId, Bytes)],
        holder: Option<&str>,
    ) -> Result<Vec<Result<Sent, ClientError>>, ClientError> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        if !self.has_batches().await? {
            return self.put_each(blocks, holder).await;
        }
        let body = batch::encode(blocks)?;
        let auth = match holder {
            Some(_) => Some(self.bearer()?),
            None => None,
        };
        let mut headers = vec![("content-type", crate::proto::BATCH_MEDIA_TYPE)];
        if let (Some(auth), Some(holder)) = (auth.as_deref(), holder) {
            headers.push(("authorization", auth));
            headers.push((crate::proto::PIN_HEADER, holder));
        }
        let path = crate::proto::BATCH_PATH;
        let reply = self.request(Method::POST, path, &headers, body).await?;
        match reply.status {
            StatusCode::OK => {}
            _ => return Err(status_error("POST", path.into(), &reply)),
        }
        let answer: crate::proto::BatchAnswer =
            serde_json::from_slice(&reply.body).map_err(|e| {
                status_error("POST", path.into(), &reply)
                    .with_message(format!("not a batch answer: {e}"))
            })?;
        batch::outcomes(&answer, blocks)
            .map_err(|e| status_error("POST", path.into(), &reply).with_message(e))
    }

    /// True when the node takes batch uploads: asked once per remote with an empty
    /// batch (an older node answers 400, reading the path as a malformed block id, or
    /// 404 or 405; it may close the connection without reading a large body, so the
    /// question is asked without one).
    async fn has_batches(&self) -> Result<bool, ClientError> {
        use std::sync::atomic::Ordering::Relaxed;
        match self.batches.load(Relaxed) {
            BATCHES_YES => return Ok(true),
            BATCHES_NO => return Ok(false),
            _ => {}
        }
        let path = crate::proto::BATCH_PATH;
        let reply = self.request(Method::POST, path, &[], Bytes::new()).await?;
        let yes = match reply.status {
            StatusCode::OK => true,
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!("the node has no batch route: one PUT per block");
                false
            }
            _ => return Err(status_error("POST", path.into(), &reply)),
        };
        self.batches
            .store(if yes { BATCHES_YES } else { BATCHES_NO }, Relaxed);
        Ok(yes)
    }

    /// `put_blocks` one PUT at a time, for nodes without the batch route.
    async fn put_each(
        &self,
        blocks: &[(BlockId, Bytes)],
        holder: Option<&str>,
    ) -> Result<Vec<Result<Sent, ClientError>>, ClientError> {
        let mut out = Vec::with_capacity(blocks.len());
        for (id, block) in blocks {
            let sent = match holder {
                Some(holder) => self.put_block_pinned(id, block.clone(), holder).await,
                None => self.put_block(id, block.clone()).await,
            };
            // A refusal is this block's outcome; anything else ends the batch.
            match sent {
                Err(ClientError::Status { .. }) | Ok(_) => out.push(sent),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Which of `ids` the node holds now, in order, in one `POST /sha256/holds` per
    /// `MAX_HOLDS_IDS` ids (unsigned: a client asks without `keep_until`). A node that
    /// refuses the question from a client (401, 403) or lacks the route (404, 405) is
    /// asked with one HEAD per id instead.
    pub async fn holds(&self, ids: &[BlockId]) -> Result<Vec<bool>, ClientError> {
        let mut held = Vec::with_capacity(ids.len());
        for part in ids.chunks(crate::proto::MAX_HOLDS_IDS) {
            if !self.ask_holds.load(std::sync::atomic::Ordering::Relaxed) {
                for id in part {
                    held.push(self.has_block(id).await?);
                }
                continue;
            }
            match self.holds_once(part).await? {
                Some(states) => held.extend(states),
                None => {
                    tracing::debug!("the node does not answer holds to clients: one HEAD per id");
                    self.ask_holds
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    for id in part {
                        held.push(self.has_block(id).await?);
                    }
                }
            }
        }
        Ok(held)
    }

    /// One `POST /sha256/holds` of at most `MAX_HOLDS_IDS` ids; `None` when the node
    /// does not answer clients there.
    async fn holds_once(&self, ids: &[BlockId]) -> Result<Option<Vec<bool>>, ClientError> {
        let path = crate::proto::HOLDS_PATH;
        let ask = crate::proto::Holds {
            ids: ids.iter().map(BlockId::to_string).collect(),
            keep_until: None,
        };
        let body = serde_json::to_vec(&ask).map_err(|e| ClientError::Request(e.to_string()))?;
        let headers = [("content-type", "application/json")];
        let reply = self.request(Method::POST, path, &headers, body).await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED => return Ok(None),
            _ => return Err(status_error("POST", path.into(), &reply)),
        }
        let answer: crate::proto::HoldsAnswer = serde_json::from_slice(&reply.body)
            .map_err(|e| status_error("POST", path.into(), &reply).with_message(e.to_string()))?;
        let states: Vec<bool> = answer
            .state
            .chars()
            .map(|c| crate::proto::HoldState::from_char(c) != crate::proto::HoldState::Absent)
            .collect();
        if states.len() != ids.len() {
            return Err(
                status_error("POST", path.into(), &reply).with_message(format!(
                    "{} states for {} ids",
                    states.len(),
                    ids.len()
                )),
            );
        }
        Ok(Some(states))
    }
}

/// Admin calls (pins), which need `with_token`.
impl Remote {
    fn bearer(&self) -> Result<String, ClientError> {
        self.token
            .as_deref()
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| ClientError::Request("no admin token for this node".into()))
    }

    /// Pins `id` for `holder` if the node holds it: true when it does (and it is pinned
    /// now), false when it does not (nothing pinned).
    pub async fn pin_if_held(&self, id: &BlockId, holder: &str) -> Result<bool, ClientError> {
        let path = format!("/pins/{id}?holder={holder}&held=1");
        let auth = self.bearer()?;
        let headers = [("authorization", auth.as_str())];
        let reply = self
            .request(Method::PUT, &path, &headers, Bytes::new())
            .await?;
        match reply.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error("PUT", path, &reply)),
        }
    }

    /// Stores `block` under `id`, pinned for `holder` from before it is stored.
    pub async fn put_block_pinned(
        &self,
        id: &BlockId,
        block: Bytes,
        holder: &str,
    ) -> Result<Sent, ClientError> {
        let path = format!("/sha256/{id}");
        let auth = self.bearer()?;
        let headers = [
            ("authorization", auth.as_str()),
            (crate::proto::PIN_HEADER, holder),
        ];
        let reply = self.request(Method::PUT, &path, &headers, block).await?;
        match reply.status {
            StatusCode::CREATED => Ok(Sent::Stored),
            StatusCode::OK => Ok(Sent::AlreadyThere),
            _ => Err(status_error("PUT", path, &reply)),
        }
    }

    /// The ids `holder` pins on the node.
    pub async fn pins_of(&self, holder: &str) -> Result<Vec<BlockId>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Pins {
            pins: Vec<BlockId>,
        }
        let path = format!("/pins?holder={holder}");
        let auth = self.bearer()?;
        let headers = [("authorization", auth.as_str())];
        let reply = self
            .request(Method::GET, &path, &headers, Bytes::new())
            .await?;
        if reply.status != StatusCode::OK {
            return Err(status_error("GET", path, &reply));
        }
        serde_json::from_slice::<Pins>(&reply.body)
            .map(|p| p.pins)
            .map_err(|e| status_error("GET", path, &reply).with_message(e.to_string()))
    }

    /// Pins `pin` and unpins `unpin` for `holder` in one request (at most
    /// `node::MAX_REPIN` ids in all). Returns the pinned ids the node does not hold.
    pub async fn repin(
        &self,
        holder: &str,
        pin: &[BlockId],
        unpin: &[BlockId],
    ) -> Result<Vec<BlockId>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Repinned {
            absent: Vec<BlockId>,
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "holder": holder, "pin": pin, "unpin": unpin,
        }))
        .map_err(|e| ClientError::Request(e.to_string()))?;
        let auth = self.bearer()?;
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let reply = self.request(Method::POST, "/pins", &headers, body).await?;
        if reply.status != StatusCode::OK {
            return Err(status_error("POST", "/pins".into(), &reply));
        }
        serde_json::from_slice::<Repinned>(&reply.body)
            .map(|r| r.absent)
            .map_err(|e| status_error("POST", "/pins".into(), &reply).with_message(e.to_string()))
    }
}

impl ClientError {
    fn with_message(mut self, text: String) -> ClientError {
        if let ClientError::Status { message, .. } = &mut self {
            *message = text;
        }
        self
    }
}

/// An unexpected status, with the JSON error body's `message` when there is one.
fn status_error(method: &'static str, path: String, reply: &Reply) -> ClientError {
    let message = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&reply.body)
                .chars()
                .take(200)
                .collect()
        });
    ClientError::Status {
        method,
        path,
        status: reply.status,
        message,
    }
}

/// What a transport error says when the node refused the connection (nothing
/// listens there); the CLI turns it into "no node at URL".
pub const CONNECTION_REFUSED: &str = "connection refused";

/// A transport failure as text: hyper's message, plus `CONNECTION_REFUSED` when that
/// is the cause (hyper's message alone says only "Connect"). No OS error text.
fn transport_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{e:#}");
    let mut source = e.source();
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            text.push_str(": ");
            text.push_str(CONNECTION_REFUSED);
            break;
        }
        source = cause.source();
    }
    text
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks a reply to `method path_and_query` from `node` at time `now`: the body matches
/// `Content-Digest` (skipped for HEAD, which has no body), and the `node` signature
/// verifies and covers `@status`, `content-digest`, `@method;req`, `@path;req` and, if the
/// request had a query, `@query;req`.
pub fn verify_reply(
    reply: &Reply,
    method: &str,
    path_and_query: &str,
    node: &NodeKey,
    now: u64,
) -> Result<(), ClientError> {
    let digest = reply
        .header("content-digest")
        .ok_or_else(|| ClientError::Digest("missing".into()))?;
    let named = parse_digest_header(digest)
        .ok_or_else(|| ClientError::Digest(format!("no sha-256 in {digest:?}")))?;
    if method != "HEAD" && named != <[u8; 32]>::from(Sha256::digest(&reply.body)) {
        return Err(ClientError::Digest("body does not match".into()));
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let fields = SignatureFields {
        input: reply.header("signature-input").unwrap_or("").to_owned(),
        signature: reply.header("signature").unwrap_or("").to_owned(),
    };
    let status = reply.status.as_u16().to_string();
    let resolve = |c: &ComponentId| -> Option<String> {
        match (c.name.as_str(), c.req) {
            ("@status", false) => Some(status.clone()),
            ("@method", true) => Some(method.to_owned()),
            ("@path", true) => Some(path.to_owned()),
            ("@query", true) => Some(format!("?{}", query.unwrap_or(""))),
            (name, false) if !name.starts_with('@') => {
                reply.header(name).map(|v| v.trim().to_owned())
            }
            _ => None,
        }
    };
    let verified = verify_fields(
        &fields,
        LABEL,
        &node.id.to_string(),
        &node.key,
        now,
        resolve,
    )?;
    let mut required = vec![
        ComponentId::new("@status"),
        ComponentId::new("content-digest"),
        ComponentId::req("@method"),
        ComponentId::req("@path"),
    ];
    if query.is_some() {
        required.push(ComponentId::req("@query"));
    }
    for c in required {
        if !verified.components.contains(&c) {
            return Err(VerifyError::NotCovered(c.to_string()).into());
        }
    }
    Ok(())
}

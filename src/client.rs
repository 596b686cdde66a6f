//! An HTTP client for nodes that trusts nothing it is not able to check: each reply's
//! `Content-Digest` must match its body, and its RFC 9421 signature must verify against the
//! node's key and cover the status, the digest, and the request's method, path and
//! query. Used by the tests now, by the CLI and by peers later.

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
}

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
    pub async fn get_block(&self, id: &BlockId, wait: Option<f64>) -> Result<Bytes, ClientError> {
        let path = match wait {
            Some(w) => format!("/sha256/{id}?wait={w}"),
            None => format!("/sha256/{id}"),
        };
        let reply = self.request(Method::GET, &path, &[], Bytes::new()).await?;
        match reply.status {
            StatusCode::OK => {
                // `request` checked the body against its Content-Digest; a digest equal
                // to the id proves the bytes hash to it without hashing them again.
                let digest = reply.header("content-digest").and_then(parse_digest_header);
                if digest != Some(id.0) {
                    return Err(ClientError::HashMismatch(*id));
                }
                Ok(reply.body)
            }
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

//! Request handling: one `match` from `Route` to node use cases, replies with the
//! protocol's headers, and the finishing step every response goes through (content
//! digest, signature, request log line). Translation only; the decisions live in `node`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::assets::DASHBOARD_POLICY;
use super::body::{Body, FileBody};
use super::conn::{PRESSED_ALLOWANCE, Slots};
use super::content::{Form, wants_json};
use super::error::ApiError;
use super::gateway::blob_preflight;
use super::origin::{Origins, Site, accepts_html};
use super::peer::{Caller, check_body_digest, holder_of, json_reply};
use super::range::{self, ByteRange};
use super::route::{Route, RouteError};
use super::sign::{Covered, ResponseSigner};
use crate::config::parse_wait;
use crate::id::{BlockId, MAX_BLOCK_SIZE};
use crate::identity::digest_header;
use crate::mesh::Origin;
use crate::node::{HISTORY_STEP, Node, UploadHasher};
use crate::proto::{HOPS_HEADER, KEEP_HEADER, PIN_HEADER, PUSH_HEADER};
use crate::store::PutOutcome;

/// Longest time a PUT body may take to arrive (1 MiB at 35 KB/s).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes per second a request body must average (from its first byte's wait on) once
/// its grace has passed: a body trickled at a byte every few seconds held a connection
/// slot for all of `BODY_READ_TIMEOUT` (a thousand of them kept every client out). A
/// 1 MiB block at this rate takes 64 s, so `BODY_READ_TIMEOUT` still bounds a whole body.
pub const MIN_BODY_RATE: u64 = 16 * 1024;

/// Time a body has before `MIN_BODY_RATE` is checked (a connection's slow start); when
/// connection slots are scarce it is `PRESSED_ALLOWANCE` instead.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(2);

/// Cache lifetime of immutable content: 336 days, as DESIGN 3 fixes.
pub(super) const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// The policy of an HTML error page: an opaque origin, no script, no resource at all
/// but its own inline style.
const ERROR_PAGE_POLICY: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'";

pub(super) static REPR_DIGEST: HeaderName = HeaderName::from_static("repr-digest");
static CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
static SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
static SIGNATURE: HeaderName = HeaderName::from_static("signature");
static X_REASON: HeaderName = HeaderName::from_static("x-reason");

/// Most bytes of an error's `X-Reason` header: the message is one line for people, and
/// a header is no place for more.
const MAX_REASON_BYTES: usize = 200;

/// An answer before digest and signature are added.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    /// SHA-256 of the content sent when already known (a whole block: its id; a
    /// streamed file: computed beforehand).
    pub(super) digest: Option<[u8; 32]>,
    /// Content length when `body` is not what is sent (a HEAD answered from the index,
    /// a streamed file).
    pub(super) length: Option<u64>,
    /// The content, streamed, instead of `body`.
    pub(super) stream: Option<crate::node::FileStream>,
}

impl Reply {
    pub(super) fn new(
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Reply {
            status,
            headers,
            body: body.into(),
            digest: None,
            length: None,
            stream: None,
        }
    }

    pub(super) fn json(status: StatusCode, body: impl Into<Bytes>) -> Reply {
        let mut reply = Reply::new(status, "application/json", body);
        reply
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        reply
    }

    pub(super) fn error(e: &ApiError) -> Reply {
        Reply::error_as(e, "application/json", e.body())
    }

    /// An error of a browsing route for a browser: the same status and headers as
    /// `error`, an HTML page for a body (`ApiError::html`), sandboxed and allowed no
    /// resources but its inline style.
    pub(super) fn error_page(e: &ApiError) -> Reply {
        let mut reply = Reply::error_as(e, "text/html; charset=utf-8", e.html());
        reply.headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(ERROR_PAGE_POLICY),
        );
        reply
    }

    fn error_as(e: &ApiError, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        let mut reply = Reply::new(e.status, content_type, body);
        reply
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(allow) = e.allow {
            reply
                .headers
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = e.retry_after {
            reply
                .headers
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // Blossom clients (BUD-01) show `X-Reason` to their users; browsers let pages
        // read it only when exposed.
        reply
            .headers
            .insert(X_REASON.clone(), header_value(&reason(&e.message)));
        reply.headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("*"),
        );
        reply
    }

    /// `416` for a range outside content of `len` bytes, with `Content-Range: bytes */len`.
    pub(super) fn unsatisfiable(len: u64) -> Reply {
        let e = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the content has {len} bytes"),
        );
        let mut reply = Reply::error(&e);
        reply.headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes */{len}")),
        );
        reply
    }

    /// Headers every block answer carries (DESIGN 3), with `tag` as its entity tag.
    fn block(status: StatusCode, id: &BlockId, tag: &str, body: Bytes) -> Reply {
        let mut reply = Reply::new(status, "application/octet-stream", body);
        let h = &mut reply.headers;
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::ETAG, header_value(tag));
        h.insert(REPR_DIGEST.clone(), digest_value(id.as_bytes()));
        reply
    }
}

/// Serves requests for one node.
pub struct Handler {
    pub(super) node: Arc<Node>,
    signer: ResponseSigner,
    pub(super) default_wait: Duration,
    /// The server's connection slots, to learn whether they are scarce.
    slots: Option<Arc<Slots>>,
    /// The names bundles have their own origins under (see `origin.rs`).
    pub(super) origins: Origins,
}

impl Handler {
    /// A handler for `node`; absent blocks are waited for `default_wait` unless the
    /// request says `?wait=`.
    pub fn new(node: Arc<Node>, default_wait: Duration) -> Handler {
        let signer = ResponseSigner::new(node.identity().id().to_string());
        Handler {
            node,
            signer,
            default_wait,
            slots: None,
            origins: Origins::default(),
        }
    }

    /// This handler, serving bundles on their own origins under `origins`' names.
    pub(super) fn with_origins(mut self, origins: Origins) -> Handler {
        self.origins = origins;
        self
    }

    /// This handler, shortening body grace periods while `slots` are scarce.
    pub(super) fn with_slots(mut self, slots: Arc<Slots>) -> Handler {
        self.slots = Some(slots);
        self
    }

    /// The time a request body has before its rate is checked: short while connection
    /// slots are scarce.
    fn body_grace(&self) -> Duration {
        if self.slots.as_ref().is_some_and(|s| s.pressed()) {
            PRESSED_ALLOWANCE
        } else {
            BODY_RATE_GRACE
        }
    }

    /// Reads a request body of `len` bytes under the size cap, hashing as it goes. After
    /// its grace (shortened as soon as slots become scarce) it must have averaged
    /// `MIN_BODY_RATE`, and it must be whole by `BODY_READ_TIMEOUT`; else `408` (and
    /// the connection closes: the rest of the body is never read).
    pub(super) async fn read_body(
        &self,
        body: Incoming,
        len: usize,
    ) -> Result<crate::node::Upload, ApiError> {
        let mut hasher = UploadHasher::new(len);
        let mut paced = self.paced(body, MAX_BLOCK_SIZE, BODY_READ_TIMEOUT);
        while let Some(data) = paced.next().await? {
            hasher.push(&data);
        }
        if hasher.len() != len {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "body length differs from Content-Length",
            ));
        }
        Ok(hasher.finish())
    }

    /// `body`, read piece by piece under the pace rules of `read_body`, at most `limit`
    /// bytes and whole by `timeout`.
    pub(super) fn paced(&self, body: Incoming, limit: usize, timeout: Duration) -> PacedBody<'_> {
        PacedBody {
            handler: self,
            body: Limited::new(body, limit),
            pressure: self.slots.as_ref().map(|s| s.pressure()),
            started: tokio::time::Instant::now(),
            received: 0,
            timeout,
        }
    }

    /// Answers one request; never fails (errors become signed error answers).
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let route = match self.origins.site(&parts) {
            Site::Node { .. } => Route::parse(&parts.method, parts.uri.path()),
            Site::Bundle(locator) => Route::on_origin(&parts.method, locator, parts.uri.path()),
            Site::Bad => Err(RouteError::BadHost),
        };
        // A browser opening a page gets the errors of the browsing routes as a page.
        let browsing = matches!(
            route,
            Ok(Route::Content { .. } | Route::Site { .. }) | Err(RouteError::BadHost)
        );
        let html_errors = browsing && !wants_json(&parts.headers) && accepts_html(&parts.headers);
        let route_name = route.as_ref().map_or("none", Route::name);
        let caller = self.caller(&parts);
        let peer = caller.peer();
        let bytes_in = content_length(&parts.headers).unwrap_or(0) as u64;
        let reply = match route {
            Ok(route) => self.dispatch(route, caller, &parts, body).await,
            Err(e) => Err(ApiError::from(e)),
        };
        let reply = reply.unwrap_or_else(|e| {
            if html_errors {
                Reply::error_page(&e)
            } else {
                Reply::error(&e)
            }
        });
        let status = reply.status.as_u16();
        let response = self.finish(reply, &parts);
        let bytes = if parts.method == Method::HEAD {
            0
        } else {
            hyper::body::Body::size_hint(response.body())
                .exact()
                .unwrap_or(0)
        };
        crate::node::Metrics::add(&self.node.metrics().bytes_out, bytes);
        self.node.metrics().record_request(route_name, status);
        if let Some(peer) = peer {
            self.node.mesh().heard_from(&peer, bytes_in, bytes);
            self.node.rates().answered_peer(bytes_in, bytes).await;
        }
        tracing::debug!(
            method = %parts.method,
            path = %redact_key(parts.uri.path()),
            status,
            bytes,
            peer = peer.map(|p| p.to_string()[..16].to_owned()),
            ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1e3),
            "request"
        );
        response
    }

    async fn dispatch(
        &self,
        route: Route<'_>,
        caller: Caller,
        parts: &Parts,
        body: Incoming,
    ) -> Result<Reply, ApiError> {
        match route {
            Route::GetBlock { id } => self.get_block(id, &caller, parts).await,
            Route::PutBlock { id } => self.put_block(id, &caller, parts, body).await,
            Route::Like { id } => Ok(self.like(&id, self.origin(&caller, parts)).await),
            Route::Peers => self.peers(),
            Route::Announce => self.announce(caller, parts, body).await,
            Route::Holds => self.holds(caller, parts, body).await,
            Route::Batch => self.batch(&caller, parts, body).await,
            Route::Stats => self.stats(parts),
            Route::History => {
                let body = serde_json::to_vec(&serde_json::json!({
                    "step_secs": HISTORY_STEP.as_secs(),
                    "points": self.node.history(),
                }))
                .map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                })?;
                Ok(Reply::json(StatusCode::OK, body))
            }
            Route::Pins => self.pins(parts),
            Route::Repin => self.repin(parts, body).await,
            Route::Pin { id } => self.pin(id, true, parts).await,
            Route::Unpin { id } => self.pin(id, false, parts).await,
            Route::DeleteBlock { id } => self.delete_block(id, parts).await,
            Route::Content { locator, rest } => {
                self.content(locator, rest, parts, Form::Path).await
            }
            Route::Site { locator, rest } => {
                self.content(locator, Some(rest), parts, Form::Origin).await
            }
            Route::Node => {
                let info = serde_json::to_vec(&self.node.info()).map_err(|e| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
                })?;
                Ok(Reply::json(StatusCode::OK, info))
            }
            Route::Metrics => Ok(Reply::new(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.node.render_metrics(),
            )),
            Route::Asset(asset) => {
                let mut reply = Reply::new(StatusCode::OK, asset.content_type(), asset.body());
                let h = &mut reply.headers;
                // Small, and new with every release: always revalidated.
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(DASHBOARD_POLICY),
                );
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                Ok(reply)
            }
            Route::Mesh => json_reply(StatusCode::OK, &self.node.mesh_view().await),
            Route::Upload => self.upload(parts, body).await,
            Route::Ipfs { cid } => self.ipfs(cid, &caller, parts).await,
            Route::Blob { id } => self.blob(id, &caller, parts).await,
            Route::BlobPreflight => Ok(blob_preflight()),
        }
    }

    async fn get_block(
        &self,
        id: BlockId,
        caller: &Caller,
        parts: &Parts,
    ) -> Result<Reply, ApiError> {
        let wait = wait_param(parts.uri.query(), self.default_wait)?;
        self.block_reply(id, caller, parts, wait, &format!("\"{id}\""))
            .await
    }

    /// A block's answer, whichever route names it: `304` when `If-None-Match` names
    /// `tag`, the size for a `HEAD`, the bytes (or a `Range` of them) for a `GET`, waiting
    /// up to `wait` for the mesh to bring a block not held here.
    pub(super) async fn block_reply(
        &self,
        id: BlockId,
        caller: &Caller,
        parts: &Parts,
        mut wait: Duration,
        tag: &str,
    ) -> Result<Reply, ApiError> {
        let origin = self.origin(caller, parts);
        if origin.from.is_some() && origin.hops == 0 {
            wait = Duration::ZERO; // a peer asking for this node's own copy only
        }
        if if_none_match(&parts.headers, tag) {
            let mut reply = Reply::block(StatusCode::NOT_MODIFIED, &id, tag, Bytes::new());
            reply.headers.remove(header::CONTENT_TYPE);
            return Ok(reply);
        }
        let range_header = parts
            .headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        let range_header = range_header.filter(|_| if_range_allows(&parts.headers, tag));
        if parts.method == Method::HEAD && range_header.is_none() {
            let size = self.node.block_size(id, wait, origin).await?;
            let mut reply = Reply::block(StatusCode::OK, &id, tag, Bytes::new());
            reply.digest = Some(id.0);
            reply.length = Some(u64::from(size));
            return Ok(reply);
        }
        let fetched = self.node.fetch(id, wait, origin).await?;
        let bytes = fetched.bytes;
        let len = bytes.len() as u64;
        match range::parse(range_header, len) {
            ByteRange::Whole => {
                let mut reply = Reply::block(StatusCode::OK, &id, tag, bytes);
                reply.digest = Some(id.0);
                // How far away the block was found (0: held here): peers add it up
                // along a chain of forwards; clients and benchmarks may read it.
                reply
                    .headers
                    .insert(HOPS_HEADER, HeaderValue::from(fetched.hops));
                Ok(reply)
            }
            ByteRange::Part { start, end } => {
                let part = bytes.slice(start as usize..=end as usize);
                let mut reply = Reply::block(StatusCode::PARTIAL_CONTENT, &id, tag, part);
                let content_range = format!("bytes {start}-{end}/{len}");
                reply
                    .headers
                    .insert(header::CONTENT_RANGE, header_value(&content_range));
                Ok(reply)
            }
            ByteRange::Unsatisfiable => Ok(Reply::unsatisfiable(len)),
        }
    }

    async fn put_block(
        &self,
        id: BlockId,
        caller: &Caller,
        parts: &Parts,
        body: Incoming,
    ) -> Result<Reply, ApiError> {
        let len = content_length(&parts.headers)?;
        let upload = self.read_body(body, len).await?;
        let push = parts
            .headers
            .get(PUSH_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f32>().ok());
        let keep = parts
            .headers
            .get(KEEP_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let pin = match parts.headers.get(PIN_HEADER) {
            Some(value) => {
                self.require_admin(parts)?;
                Some(holder_of(value.to_str().unwrap_or(""))?)
            }
            None => None,
        };
        let outcome = match (caller.peer(), push, pin) {
            (Some(from), Some(hint), None) => {
                check_body_digest(&parts.headers, &upload)?;
                self.node.accept_push(id, upload, hint, from, keep).await?
            }
            (_, _, pin) => self.node.put_block_pinned(id, upload, pin).await?,
        };
        let status = match outcome {
            PutOutcome::Stored => StatusCode::CREATED,
            PutOutcome::AlreadyHeld => StatusCode::OK,
        };
        let mut reply = Reply::json(status, format!("{{\"id\":\"{id}\"}}"));
        reply
            .headers
            .insert(header::LOCATION, header_value(&id.path()));
        Ok(reply)
    }

    async fn like(&self, id: &BlockId, origin: Origin) -> Reply {
        let found = self.node.like(id, origin).await;
        let body = crate::proto::like_body(&found);
        let status = if found.is_empty() {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        Reply::json(status, body)
    }

    /// Forgets the response signatures too old to be reused; how many went.
    pub(super) fn purge_signatures(&self) -> usize {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.signer.purge_expired(now)
    }

    /// Adds `Content-Digest` and the signature, and the body (none for HEAD).
    fn finish(&self, reply: Reply, parts: &Parts) -> Response<Body> {
        let digest = reply
            .digest
            .unwrap_or_else(|| Sha256::digest(&reply.body).into());
        let content_digest = digest_value(&digest);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (input, signature) = self.signer.sign(
            self.node.identity(),
            &Covered {
                status: reply.status.as_u16(),
                content_digest: content_digest.to_str().unwrap_or(""),
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query(),
            },
            now,
        );
        let length = reply.length.unwrap_or(reply.body.len() as u64);
        let body = match reply.stream {
            Some(stream) if parts.method != Method::HEAD => {
                let (rx, guard) = stream.into_parts();
                Body::Right(FileBody::new(rx, guard, length))
            }
            _ if parts.method == Method::HEAD => Body::Left(Full::new(Bytes::new())),
            _ => Body::Left(Full::new(reply.body)),
        };
        let mut response = Response::new(body);
        *response.status_mut() = reply.status;
        let headers = response.headers_mut();
        *headers = reply.headers;
        headers.insert(CONTENT_DIGEST.clone(), content_digest);
        // Everything a node serves is public or a capability URL; no credentials ride
        // on cookies, so any page may read it (sandboxed bundles need this: see
        // `content`).
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(SIGNATURE_INPUT.clone(), input);
        headers.insert(SIGNATURE.clone(), signature);
        if reply.status != StatusCode::NOT_MODIFIED {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        if reply.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a slow body is not worth waiting for: the connection closes.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The path with the key of a content URL replaced by `KEY`: keys are capabilities and
/// stay out of logs.
pub(super) fn redact_key(path: &str) -> std::borrow::Cow<'_, str> {
    let mut parts = path.splitn(6, '/');
    let head: Vec<&str> = parts.by_ref().take(5).collect();
    match head.as_slice() {
        ["", "sha256", id, mode @ ("aes256" | "passphrase"), _key] => {
            let rest = parts.next().map(|r| format!("/{r}")).unwrap_or_default();
            format!("/sha256/{id}/{mode}/KEY{rest}").into()
        }
        _ => path.into(),
    }
}

/// `?wait=SECS`, defaulting to the node's wait; capped at `MAX_WAIT`.
pub(super) fn wait_param(query: Option<&str>, default: Duration) -> Result<Duration, ApiError> {
    let Some(value) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.strip_prefix("wait="))
        .next_back()
    else {
        return Ok(default);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_wait",
            "wait must be a number of seconds >= 0",
        )
    };
    let secs: f64 = value.parse().map_err(|_| bad())?;
    parse_wait(secs).map_err(|_| bad())
}

/// True when `If-None-Match` names `tag` (a quoted entity tag; weak comparison, RFC
/// 9110). `*` is not honoured: whether "a representation exists" may depend on waiting
/// for the mesh.
pub(super) fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// False when `If-Range` is present and names another tag than `tag`: then the whole
/// representation is sent.
pub(super) fn if_range_allows(headers: &HeaderMap, tag: &str) -> bool {
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) => v.trim() == tag,
    }
}

/// The body length of a PUT: `Content-Length`, at most 1 MiB. A body of unknown length
/// (chunked) is refused with 411; no length and no transfer coding is an empty body
/// (RFC 9112 section 6.3).
pub(super) fn content_length(headers: &HeaderMap) -> Result<usize, ApiError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        if headers.contains_key(header::TRANSFER_ENCODING) {
            return Err(ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                "length_required",
                "a PUT body needs Content-Length",
            ));
        }
        return Ok(0);
    };
    let n: u64 = value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_length",
                "Content-Length is not a number",
            )
        })?;
    if n > MAX_BLOCK_SIZE as u64 {
        return Err(too_large());
    }
    Ok(n as usize)
}

/// A request body read under the node's pace rules (see `Handler::read_body`).
pub(super) struct PacedBody<'h> {
    handler: &'h Handler,
    body: Limited<Incoming>,
    pressure: Option<tokio::sync::watch::Receiver<bool>>,
    started: tokio::time::Instant,
    received: u64,
    timeout: Duration,
}

impl PacedBody<'_> {
    /// The next piece of the body, `None` at its end; `408` when it falls below
    /// `MIN_BODY_RATE` after its grace or is not whole by its timeout, `413` past its
    /// limit, `400` when it breaks off.
    pub(super) async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        loop {
            let earned = Duration::from_secs_f64(self.received as f64 / MIN_BODY_RATE as f64);
            let grace = self.handler.body_grace();
            let deadline = self.started + grace.max(earned).min(self.timeout);
            let pressure = self.pressure.as_mut();
            let pressure_changed = async {
                let changed = match pressure {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => false,
                };
                if !changed {
                    std::future::pending::<()>().await;
                }
            };
            let frame = tokio::select! {
                frame = self.body.frame() => frame,
                () = tokio::time::sleep_until(deadline) => return Err(too_slow(self.timeout)),
                // The grace may have become shorter: compute the deadline again.
                () = pressure_changed => continue,
            };
            let Some(frame) = frame else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    too_large()
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        "the body ended early or was malformed",
                    )
                }
            })?;
            if let Ok(data) = frame.into_data() {
                self.received += data.len() as u64;
                return Ok(Some(data));
            }
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("a block is at most {MAX_BLOCK_SIZE} bytes"),
    )
}

fn too_slow(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the body must arrive at {} KiB/s or more, within {} s",
            MIN_BODY_RATE / 1024,
            timeout.as_secs()
        ),
    )
}

/// An error message fit for a header: visible ASCII and spaces (anything else
/// becomes `?`), at most `MAX_REASON_BYTES`.
fn reason(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON_BYTES)
        .collect()
}

pub(super) fn digest_value(sha256: &[u8; 32]) -> HeaderValue {
    header_value(&digest_header(sha256))
}

/// A header value from text this module built (ASCII only).
pub(super) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_param_cases() {
        let d = Duration::from_secs(3);
        assert_eq!(wait_param(None, d).unwrap(), d);
        assert_eq!(wait_param(Some("wait=0"), d).unwrap(), Duration::ZERO);
        assert_eq!(
            wait_param(Some("x=1&wait=0.5"), d).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            wait_param(Some("wait=9999"), d).unwrap(),
            crate::config::MAX_WAIT
        );
        for bad in ["wait=", "wait=-1", "wait=abc", "wait=NaN", "wait=inf"] {
            assert_eq!(
                wait_param(Some(bad), d).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_stay_out_of_logs() {
        let key = "ab".repeat(32);
        assert_eq!(
            redact_key(&format!("/sha256/00/aes256/{key}/a/b.html")),
            "/sha256/00/aes256/KEY/a/b.html"
        );
        assert_eq!(
            redact_key(&format!("/sha256/00/passphrase/{key}")),
            "/sha256/00/passphrase/KEY"
        );
        assert_eq!(redact_key("/sha256/00"), "/sha256/00");
        assert_eq!(redact_key("/sha256/like/00"), "/sha256/like/00");
    }

    #[test]
    fn reasons_fit_in_a_header() {
        assert_eq!(reason("bad id: x"), "bad id: x");
        assert_eq!(reason("é\r\nSet-Cookie: a"), "???Set-Cookie: a");
        assert_eq!(reason(&"a".repeat(500)).len(), MAX_REASON_BYTES);
        let e = ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such resource");
        let reply = Reply::error(&e);
        assert_eq!(reply.headers[&X_REASON], "no such resource");
    }

    #[test]
    fn etag_matching() {
        let id = BlockId::of(b"a");
        let tag = format!("\"{id}\"");
        let mut h = HeaderMap::new();
        assert!(!if_none_match(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            header_value(&format!("\"x\", W/\"{id}\"")),
        );
        assert!(if_none_match(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!if_none_match(&h, &tag));
    }
}

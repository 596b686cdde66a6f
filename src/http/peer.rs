//! Who is calling, and the routes for peers and the operator. A request carrying a
//! `Signature-Input` is checked as a node's (DESIGN 4); only a verified peer's hop and
//! request-id headers and push offers are honoured, and only a verified peer may
//! announce itself. Everything else is an ordinary client. Admin routes need the bearer
//! token. Translation only: the checks and actions are `node`'s.

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};

use super::error::ApiError;
use super::handler::{Handler, Reply, content_length};
use crate::id::BlockId;
use crate::identity::{RequestTarget, SignatureFields, parse_digest_header};
use crate::mesh::Origin;
use crate::node::{NodeError, Repin, Upload};
use crate::proto::{HOPS_HEADER, HoldState, Holds, HoldsAnswer, MAX_HOLDS_IDS, REQUEST_HEADER};
use crate::store::{BadHolder, Holder};

/// The address a request's connection arrived at (this end of the socket), put in the
/// request's extensions by the accept loop: a peer's signed `@authority` must name it
/// (or the node's public URL).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalAddr(pub(crate) std::net::SocketAddr);

/// Who sent a request.
#[derive(Debug)]
pub(super) enum Caller {
    /// No signature: an ordinary client.
    Client,
    /// A node whose signature verified.
    Peer(BlockId),
    /// A signature that did not verify (logged; the request is served as a client's,
    /// except for peer-only routes, which refuse it with this error).
    Refused(NodeError),
}

impl Caller {
    /// The verified peer, for a route only peers may use (`what` names the request in
    /// the refusal).
    fn peer_only(self, what: &str) -> Result<BlockId, ApiError> {
        match self {
            Caller::Peer(id) => Ok(id),
            Caller::Refused(e) => Err(e.into()),
            Caller::Client => {
                Err(NodeError::PeerAuth(format!("{what} must be signed by its node")).into())
            }
        }
    }

    /// The peer, if verified.
    pub(super) fn peer(&self) -> Option<BlockId> {
        match self {
            Caller::Peer(id) => Some(*id),
            _ => None,
        }
    }
}

impl Handler {
    /// Checks the request's signature, if it has one.
    pub(super) fn caller(&self, parts: &Parts) -> Caller {
        let h = &parts.headers;
        let (Some(input), Some(signature)) = (text(h, "signature-input"), text(h, "signature"))
        else {
            return Caller::Client;
        };
        let authority = text(h, header::HOST.as_str())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let has_body =
            h.contains_key(header::CONTENT_LENGTH) || h.contains_key(header::TRANSFER_ENCODING);
        let digest = text(h, "content-digest");
        if has_body && digest.is_none() && parts.method == Method::PUT {
            return Caller::Refused(NodeError::PeerAuth(
                "a signed request with a body must carry Content-Digest".into(),
            ));
        }
        let fields = SignatureFields {
            input: input.to_owned(),
            signature: signature.to_owned(),
        };
        let target = RequestTarget {
            method: parts.method.as_str(),
            authority: &authority,
            path: parts.uri.path(),
            query: parts.uri.query(),
            content_digest: digest,
        };
        let local = parts.extensions.get::<LocalAddr>().map(|a| a.0);
        match self.node.verify_peer(&fields, &target, local) {
            Ok(id) => Caller::Peer(id),
            Err(e) => {
                let path = parts.uri.path();
                // A joining node's first push of its identity block is signed with the
                // key that block brings: expected, and served as a client's upload.
                if self
                    .node
                    .is_introduction(input, parts.method.as_str(), path)
                {
                    tracing::debug!(error = %e, path, "a node introduces itself");
                } else {
                    tracing::warn!(error = %e, path, "signed request refused as a peer's");
                }
                Caller::Refused(e)
            }
        }
    }

    /// Where a block request comes from: a client of this node, or a peer forwarding
    /// with its hop budget and request id (a request id seen before means a loop: then
    /// no further hops).
    pub(super) fn origin(&self, caller: &Caller, parts: &Parts) -> Origin {
        let mut origin = Origin::client();
        // A HEAD asks whether a block is there (the CLI before an upload, a peer before
        // a push); only GETs count toward a block's popularity.
        origin.counted = parts.method != Method::HEAD;
        let Some(peer) = caller.peer() else {
            return origin;
        };
        let h = &parts.headers;
        let hops = text(h, HOPS_HEADER).and_then(|v| v.parse::<u32>().ok());
        let request = text(h, REQUEST_HEADER).and_then(|v| u64::from_str_radix(v, 16).ok());
        self.node
            .mesh()
            .forwarded(peer, hops.unwrap_or(0), request, origin.counted)
    }

    /// Refuses the request unless it carries `Authorization: Bearer <admin token>`.
    pub(super) fn require_admin(&self, parts: &Parts) -> Result<(), ApiError> {
        let token = text(&parts.headers, header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token {
            Some(t) if self.node.is_admin(t) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this needs Authorization: Bearer <token from the store's admin.token>",
            )),
        }
    }

    /// `PUT /peers`: only from a verified node.
    pub(super) async fn announce(
        &self,
        caller: Caller,
        parts: &Parts,
        body: Incoming,
    ) -> Result<Reply, ApiError> {
        let from = caller.peer_only("an announcement")?;
        let len = content_length(&parts.headers)?;
        let upload = self.read_body(body, len).await?;
        check_body_digest(&parts.headers, &upload)?;
        let view = self.node.announce(from, upload.bytes())?;
        json_reply(StatusCode::OK, &view)
    }

    /// `POST /sha256/holds`: which of many ids are held here. Anyone may ask; only a
    /// verified node may ask for custody (`keep_until`).
    pub(super) async fn holds(
        &self,
        caller: Caller,
        parts: &Parts,
        body: Incoming,
    ) -> Result<Reply, ApiError> {
        let from = match caller {
            Caller::Peer(id) => Some(id),
            Caller::Refused(e) => return Err(e.into()),
            Caller::Client => None,
        };
        let len = content_length(&parts.headers)?;
        if len > MAX_HOLDS_BODY {
            return Err(NodeError::BadRequest(format!(
                "a holds check is at most {MAX_HOLDS_BODY} bytes"
            ))
            .into());
        }
        let upload = self.read_body(body, len).await?;
        check_body_digest(&parts.headers, &upload)?;
        let asked: Holds = serde_json::from_slice(upload.bytes())
            .map_err(|e| NodeError::BadRequest(format!("not a holds check: {e}")))?;
        let ids = parse_holds(&asked)?;
        let states = match (from, asked.keep_until) {
            (Some(from), keep_until) => self.node.holds(from, &ids, keep_until).await?,
            (None, None) => self.node.held(&ids).await?,
            (None, Some(_)) => {
                return Err(NodeError::PeerAuth(
                    "custody (keep_until) must be asked by a signed node".into(),
                )
                .into());
            }
        };
        let state = states.into_iter().map(HoldState::as_char).collect();
        json_reply(StatusCode::OK, &HoldsAnswer { state })
    }

    /// `GET /peers`.
    pub(super) fn peers(&self) -> Result<Reply, ApiError> {
        json_reply(StatusCode::OK, &self.node.peers())
    }

    /// `GET /stats?after=<id>&limit=N` or `?top=N` (admin).
    pub(super) fn stats(&self, parts: &Parts) -> Result<Reply, ApiError> {
        self.require_admin(parts)?;
        let params = query_params(parts.uri.query());
        let bad = |what: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", what.to_owned());
        let number = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| bad("limit and top are numbers"))
        };
        let mut after = None;
        let mut limit = 100;
        let mut top = None;
        for (k, v) in params {
            match k {
                "after" => after = Some(v.parse::<BlockId>().map_err(|_| bad("after is an id"))?),
                "limit" => limit = number(v)?,
                "top" => top = Some(number(v)?),
                _ => return Err(bad("known parameters: after, limit, top")),
            }
        }
        let page = match top {
            Some(n) => self.node.stats_top(n),
            None => self.node.stats_page(after, limit),
        };
        json_reply(StatusCode::OK, &page)
    }

    /// `GET /pins` (admin): `{"pins": [id, ...], "holders": {id: [holder, ...]}}`, or
    /// with `?holder=H` only that holder's ids.
    pub(super) fn pins(&self, parts: &Parts) -> Result<Reply, ApiError> {
        self.require_admin(parts)?;
        let mut holder = None;
        for (k, v) in query_params(parts.uri.query()) {
            match k {
                "holder" => holder = Some(holder_of(v)?),
                _ => return Err(bad_query("known parameter: holder")),
            }
        }
        let pins = self.node.pins(holder.as_ref());
        let ids: Vec<String> = pins.iter().map(|(id, _)| id.to_string()).collect();
        if holder.is_some() {
            return json_reply(StatusCode::OK, &serde_json::json!({ "pins": ids }));
        }
        let holders: serde_json::Map<String, serde_json::Value> = pins
            .iter()
            .map(|(id, h)| {
                let names: Vec<&str> = h.iter().map(Holder::as_str).collect();
                (id.to_string(), serde_json::json!(names))
            })
            .collect();
        json_reply(
            StatusCode::OK,
            &serde_json::json!({ "pins": ids, "holders": holders }),
        )
    }

    /// `PUT /pins/{id}[?holder=H][&held=1]` and `DELETE /pins/{id}[?holder=H]`
    /// (admin). The holder defaults to `admin`; `DELETE ...?holder=*` takes back every
    /// holder's pin. `held=1` pins only a block held here, else answers 404.
    pub(super) async fn pin(
        &self,
        id: BlockId,
        pin: bool,
        parts: &Parts,
    ) -> Result<Reply, ApiError> {
        self.require_admin(parts)?;
        let mut holder = Some(Holder::admin());
        let mut held = false;
        for (k, v) in query_params(parts.uri.query()) {
            match (k, v) {
                ("holder", "*") if !pin => holder = None,
                ("holder", v) => holder = Some(holder_of(v)?),
                ("held", "1") if pin => held = true,
                _ => return Err(bad_query("known parameters: holder, and held=1 on PUT")),
            }
        }
        let outcome = match (pin, holder) {
            (true, Some(holder)) => self.node.pin(id, holder, held).await?,
            (true, None) => unreachable!("holder=* is refused on PUT"),
            (false, holder) => self.node.unpin(id, holder).await?,
        };
        let status = match (pin, outcome.local, held) {
            (true, false, true) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_held",
                    format!("block {id} is not held here; nothing pinned"),
                ));
            }
            (true, false, false) => StatusCode::ACCEPTED,
            _ => StatusCode::OK,
        };
        json_reply(status, &outcome)
    }

    /// `POST /pins` (admin): `{"holder": H, "pin": [ids], "unpin": [ids]}`.
    pub(super) async fn repin(&self, parts: &Parts, body: Incoming) -> Result<Reply, ApiError> {
        self.require_admin(parts)?;
        let len = content_length(&parts.headers)?;
        let upload = self.read_body(body, len).await?;
        let change: Repin = serde_json::from_slice(upload.bytes()).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("expected {{\"holder\", \"pin\": [ids], \"unpin\": [ids]}}: {e}"),
            )
        })?;
        json_reply(StatusCode::OK, &self.node.repin(change).await?)
    }

    /// `DELETE /sha256/{id}` (admin).
    pub(super) async fn delete_block(&self, id: BlockId, parts: &Parts) -> Result<Reply, ApiError> {
        self.require_admin(parts)?;
        if self.node.delete(id).await? {
            json_reply(
                StatusCode::OK,
                &serde_json::json!({ "id": id.to_string(), "deleted": true }),
            )
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_held",
                format!("block {id} is not held here"),
            ))
        }
    }
}

/// For a signed request with a body: the body must match its `Content-Digest`.
/// Largest body of `POST /sha256/holds`: `MAX_HOLDS_IDS` quoted hex ids and room for
/// the rest.
const MAX_HOLDS_BODY: usize = MAX_HOLDS_IDS * 67 + 256;

/// The ids of a holds check, at most `MAX_HOLDS_IDS`, each a valid id.
pub(crate) fn parse_holds(asked: &Holds) -> Result<Vec<BlockId>, NodeError> {
    if asked.ids.len() > MAX_HOLDS_IDS {
        return Err(NodeError::BadRequest(format!(
            "at most {MAX_HOLDS_IDS} ids per holds check"
        )));
    }
    asked
        .ids
        .iter()
        .map(|id| {
            id.parse()
                .map_err(|e| NodeError::BadRequest(format!("bad id {id:?}: {e}")))
        })
        .collect()
}

pub(super) fn check_body_digest(headers: &HeaderMap, upload: &Upload) -> Result<(), ApiError> {
    let Some(value) = text(headers, "content-digest") else {
        return Ok(());
    };
    match parse_digest_header(value) {
        Some(d) if d == upload.sha256().0 => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_digest",
            "the body does not match Content-Digest",
        )),
    }
}

/// A pin holder from a query value or header.
pub(super) fn holder_of(text: &str) -> Result<Holder, ApiError> {
    text.parse()
        .map_err(|e: BadHolder| ApiError::new(StatusCode::BAD_REQUEST, "bad_holder", e.to_string()))
}

fn bad_query(what: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", what.to_owned())
}

pub(super) fn json_reply(
    status: StatusCode,
    value: &impl serde::Serialize,
) -> Result<Reply, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Reply::json(status, body))
}

fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn query_params(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

//! Other readers of the same store: the blocks of `/sha256/{id}` under the names two
//! other systems' clients ask for, read-only.
//!
//! - IPFS trustless gateway (specs.ipfs.tech, "Trustless Gateway" and "Path Gateway"):
//!   `GET`/`HEAD /ipfs/{cid}` for a CIDv1 raw sha2-256 (`crate::cid`), answered as
//!   `application/vnd.ipld.raw` when the request asks for it (`?format=raw`, which wins,
//!   or `Accept: application/vnd.ipld.raw`); no `Accept` at all is a `400`, another
//!   format (`car`, `tar`, ...) a `406`. The empty identity CID `bafkqaaa` is the probe.
//!   `Cache-Control: only-if-cached` looks only here (`412` when absent).
//! - Blossom BUD-01: `GET`/`HEAD /{sha256}[.ext]` answers the blob as
//!   `application/octet-stream` (the node never knows a blob's type, and a type guessed
//!   from the extension would let a stored page run on the node's own origin), and
//!   `OPTIONS` the CORS preflight.
//!
//! Both go through the raw route's `block_reply` (the same store, the same wait for the
//! mesh, `Range`, `304`) and the one finishing step that digests and signs every answer.
//! A block absent after the wait is a `404` here, as both specifications require, where
//! `/sha256/` answers `504`. Nothing here decides anything `node` does not already.

use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request::Parts;

use super::error::ApiError;
use super::handler::{Handler, IMMUTABLE, Reply, header_value, if_none_match, wait_param};
use super::peer::Caller;
use crate::cid::RawCid;
use crate::id::BlockId;

/// The media type of one raw block (IANA: application/vnd.ipld.raw).
pub const RAW_TYPE: &str = "application/vnd.ipld.raw";

/// `?format=` values of the path gateway that name another response type than a raw
/// block: a well-formed request for something this node does not make (`406`), as
/// against a value that means nothing (`400`).
const OTHER_FORMATS: [&str; 7] = [
    "car",
    "tar",
    "dag-json",
    "dag-cbor",
    "json",
    "cbor",
    "ipns-record",
];

/// How long a browser may keep a blob preflight's answer: the 24 hours BUD-01 suggests.
const PREFLIGHT_MAX_AGE: &str = "86400";

impl Handler {
    /// `GET`/`HEAD /ipfs/{cid}`: the raw block, with the trustless gateway's headers.
    pub(super) async fn ipfs(
        &self,
        cid: RawCid,
        caller: &Caller,
        parts: &Parts,
    ) -> Result<Reply, ApiError> {
        let negotiated = raw_requested(parts.uri.query(), &parts.headers)?;
        let only_cached = only_if_cached(&parts.headers);
        let wait = if only_cached {
            Duration::ZERO
        } else {
            wait_param(parts.uri.query(), self.default_wait)?
        };
        let name = cid.to_string();
        let tag = format!("\"{name}.raw\"");
        let mut reply = match cid {
            RawCid::Block(id) => self
                .block_reply(id, caller, parts, wait, &tag)
                .await
                .map_err(|e| absent(e, only_cached))?,
            RawCid::Empty => empty_block(&parts.headers, &tag),
        };
        let h = &mut reply.headers;
        if matches!(reply.status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(RAW_TYPE));
            h.insert(
                header::CONTENT_DISPOSITION,
                header_value(&format!("attachment; filename=\"{name}.bin\"")),
            );
        }
        // The answer depends on `Accept`; caches keep it apart from other formats' (and
        // from the `?format=raw` URL said below).
        h.insert(header::VARY, HeaderValue::from_static("Accept"));
        if negotiated == Negotiated::ByAccept {
            h.insert(
                header::CONTENT_LOCATION,
                header_value(&format!("/ipfs/{name}?format=raw")),
            );
        }
        h.insert("x-ipfs-path", header_value(&format!("/ipfs/{name}")));
        h.insert("x-ipfs-roots", header_value(&name));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("*"),
        );
        Ok(reply)
    }

    /// `GET`/`HEAD /{sha256}[.ext]` (BUD-01): the blob, as `/sha256/{id}` answers it.
    pub(super) async fn blob(
        &self,
        id: BlockId,
        caller: &Caller,
        parts: &Parts,
    ) -> Result<Reply, ApiError> {
        let wait = wait_param(parts.uri.query(), self.default_wait)?;
        let mut reply = self
            .block_reply(id, caller, parts, wait, &format!("\"{id}\""))
            .await
            .map_err(|e| absent(e, false))?;
        reply.headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("*"),
        );
        Ok(reply)
    }
}

/// `OPTIONS /{sha256}[.ext]`: the CORS preflight answer BUD-01 requires. It lists the
/// methods and headers BUD-01 names as the least a server allows, so that a browser
/// sends the real request and its client reads this node's own answer (a `405` with a
/// reason for an upload or a delete) rather than an opaque CORS failure.
pub(super) fn blob_preflight() -> Reply {
    let mut reply = Reply::new(StatusCode::OK, "text/plain", Bytes::new());
    let h = &mut reply.headers;
    h.remove(header::CONTENT_TYPE);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, PUT, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, *"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    reply
}

/// How a request asked for a raw block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Negotiated {
    /// `?format=raw`.
    ByQuery,
    /// `Accept: application/vnd.ipld.raw`, without `format`.
    ByAccept,
}

/// Whether the request asks for a raw block: `format` in the query wins over `Accept`
/// (every `format` given must be `raw`); without either, `400`; another format, `406`.
fn raw_requested(query: Option<&str>, headers: &HeaderMap) -> Result<Negotiated, ApiError> {
    let formats: Vec<&str> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.strip_prefix("format="))
        .collect();
    if !formats.is_empty() {
        for format in formats {
            if format == "raw" {
                continue;
            }
            if OTHER_FORMATS.contains(&format) {
                return Err(not_acceptable());
            }
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_format",
                "format must be raw: this gateway serves raw blocks only",
            ));
        }
        return Ok(Negotiated::ByQuery);
    }
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if accept.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "format_required",
            format!("say which format: Accept: {RAW_TYPE} or ?format=raw"),
        ));
    }
    if accept
        .iter()
        .flat_map(|v| v.split(','))
        .any(accepts_raw_range)
    {
        Ok(Negotiated::ByAccept)
    } else {
        Err(not_acceptable())
    }
}

/// True when one media range of `Accept` names the raw block type with a weight above
/// zero. Wildcards do not count: a trustless response is asked for by name.
fn accepts_raw_range(range: &str) -> bool {
    let mut fields = range.split(';').map(str::trim);
    let media = fields.next().unwrap_or("");
    if !media.eq_ignore_ascii_case(RAW_TYPE) {
        return false;
    }
    fields.all(|param| {
        let Some((name, value)) = param.split_once('=') else {
            return true;
        };
        !name.trim().eq_ignore_ascii_case("q") || value.trim().parse::<f32>().is_ok_and(|q| q > 0.0)
    })
}

fn not_acceptable() -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "not_acceptable",
        format!("this gateway serves raw blocks only ({RAW_TYPE}, ?format=raw)"),
    )
}

/// True when the request says `Cache-Control: only-if-cached`.
fn only_if_cached(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("only-if-cached"))
}

/// A block absent after the wait: `404` (the trustless gateway and BUD-01 both say so
/// for a block the server cannot give), or `412` when the client asked for held blocks
/// only. The body keeps what was asked and how long it waited.
fn absent(e: ApiError, only_cached: bool) -> ApiError {
    if e.status != StatusCode::GATEWAY_TIMEOUT || e.code != "not_found" {
        return e;
    }
    let (status, code, message) = if only_cached {
        (
            StatusCode::PRECONDITION_FAILED,
            "not_cached",
            "the block is not held here and only-if-cached forbids asking the mesh",
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            "the block is not held here and the mesh did not bring it in time",
        )
    };
    ApiError {
        status,
        code,
        message: message.to_owned(),
        retry_after: None,
        ..e
    }
}

/// The empty block of the identity probe `bafkqaaa`: held by every gateway.
fn empty_block(headers: &HeaderMap, tag: &str) -> Reply {
    let status = if if_none_match(headers, tag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let mut reply = Reply::new(status, RAW_TYPE, Bytes::new());
    let h = &mut reply.headers;
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::ETAG, header_value(tag));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, header_value(value));
        h
    }

    #[test]
    fn format_and_accept_negotiation() {
        let none = HeaderMap::new();
        let raw = accept(RAW_TYPE);
        let status = |q: Option<&str>, h: &HeaderMap| raw_requested(q, h).map_err(|e| e.status);
        assert_eq!(status(Some("format=raw"), &none), Ok(Negotiated::ByQuery));
        assert_eq!(
            status(Some("wait=0&format=raw"), &raw),
            Ok(Negotiated::ByQuery)
        );
        assert_eq!(status(None, &raw), Ok(Negotiated::ByAccept));
        assert_eq!(status(Some("wait=1"), &raw), Ok(Negotiated::ByAccept));
        for value in [
            "application/vnd.ipld.raw; q=0.5",
            "text/html, APPLICATION/VND.IPLD.RAW",
            "application/vnd.ipld.car;q=1, application/vnd.ipld.raw;q=0.1",
        ] {
            assert_eq!(
                status(None, &accept(value)),
                Ok(Negotiated::ByAccept),
                "{value}"
            );
        }
        assert_eq!(status(None, &none), Err(StatusCode::BAD_REQUEST));
        for value in [
            "*/*",
            "application/*",
            "text/html",
            "application/vnd.ipld.car",
            "application/vnd.ipld.raw;q=0",
            "application/vnd.ipld.rawx",
        ] {
            assert_eq!(
                status(None, &accept(value)),
                Err(StatusCode::NOT_ACCEPTABLE),
                "{value}"
            );
        }
        // `format` wins over `Accept`.
        assert_eq!(
            status(Some("format=car"), &raw),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
        assert_eq!(
            status(Some("format=raw&format=car"), &raw),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
        assert_eq!(status(Some("format="), &raw), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            status(Some("format=RAW2"), &raw),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn only_if_cached_is_one_directive_among_others() {
        let mut h = HeaderMap::new();
        assert!(!only_if_cached(&h));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, Only-If-Cached"),
        );
        assert!(only_if_cached(&h));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        assert!(!only_if_cached(&h));
    }
}

//! The one mapping from failures to HTTP answers: every `RouteError` and `NodeError`
//! variant gets a status and a stable JSON `error` code here, in exhaustive matches (no
//! catch-all, so a new variant forces a decision). OS errors and paths are logged, never
//! sent.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::content::escape_html;
use super::route::RouteError;
use crate::cid::CidError;
use crate::node::NodeError;

/// Seconds a client is told to wait before asking again for a block that did not come.
pub const RETRY_AFTER_SECS: u64 = 5;

/// An error answer: status, stable code, human message, optional extra fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// One line for people.
    pub message: String,
    /// Extra JSON fields merged into the body.
    pub extra: Option<Value>,
    /// `Allow` header for 405.
    pub allow: Option<&'static str>,
    /// `Retry-After` header, seconds.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no extras.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
            allow: None,
            retry_after: None,
        }
    }

    /// The JSON body: `{"error": code, "message": ..., extras...}`.
    pub fn body(&self) -> Vec<u8> {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let (Some(Value::Object(extra)), Value::Object(map)) = (&self.extra, &mut body) {
            map.extend(extra.clone());
        }
        body.to_string().into_bytes()
    }

    /// The same error as a small HTML page for people (browsers opening a page): the
    /// status, the message and the stable code. Text only, escaped; no script.
    pub fn html(&self) -> String {
        let status = escape_html(&format!(
            "{} {}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("Error")
        ));
        let message = escape_html(&self.message);
        let code = escape_html(self.code);
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{status}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:40rem}}\
             small{{color:#666}}</style></head>\
             <body><h1>{status}</h1><p>{message}</p>\
             <p><small>libernet node, error <code>{code}</code></small></p></body></html>\n"
        )
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> ApiError {
        match e {
            RouteError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "no_route", e.to_string()),
            RouteError::BadId(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad_id", e.to_string()),
            RouteError::BadKey(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_key", e.to_string())
            }
            RouteError::BadHost => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_host", e.to_string())
            }
            RouteError::BadCid(ref cid) => {
                let code = match cid {
                    CidError::Empty
                    | CidError::TooLong(_)
                    | CidError::Multibase(_)
                    | CidError::Encoding(_)
                    | CidError::Truncated
                    | CidError::Varint
                    | CidError::Trailing => "bad_cid",
                    // Well-formed CIDs of something this store never holds.
                    CidError::Version0
                    | CidError::Version(_)
                    | CidError::Codec(_)
                    | CidError::Hash(_)
                    | CidError::DigestLength(_)
                    | CidError::Identity => "unsupported_cid",
                };
                ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
            }
            RouteError::IpfsPath => {
                ApiError::new(StatusCode::BAD_REQUEST, "ipfs_path", e.to_string())
            }
            RouteError::BadExtension => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_extension", e.to_string())
            }
            RouteError::PathTooLong => {
                ApiError::new(StatusCode::URI_TOO_LONG, "path_too_long", e.to_string())
            }
            RouteError::MethodNotAllowed { allow } => ApiError {
                allow: Some(allow),
                ..ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    e.to_string(),
                )
            },
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        match e {
            NodeError::HashMismatch(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "hash_mismatch",
                e.to_string(),
            ),
            NodeError::TooLarge => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            NodeError::Full(_) => {
                tracing::warn!(error = %e, "refused: store full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "store_full",
                    "the store is full",
                )
            }
            NodeError::NotFound {
                id,
                waited,
                ref asked,
            } => ApiError {
                extra: Some(json!({
                    "id": id.to_string(),
                    "waited_ms": waited.as_millis() as u64,
                    "asked": asked,
                })),
                retry_after: Some(RETRY_AFTER_SECS),
                ..ApiError::new(StatusCode::GATEWAY_TIMEOUT, "not_found", e.to_string())
            },
            NodeError::WrongKey(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "wrong_key", e.to_string())
            }
            NodeError::BadUpload(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_upload", e.to_string())
            }
            NodeError::BadBundle(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_bundle",
                e.to_string(),
            ),
            NodeError::Declined => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "declined", e.to_string())
            }
            NodeError::Deleted(_) => ApiError::new(StatusCode::CONFLICT, "deleted", e.to_string()),
            NodeError::Protected(_) => {
                ApiError::new(StatusCode::CONFLICT, "protected", e.to_string())
            }
            NodeError::PeerAuth(_) => {
                tracing::warn!(error = %e, "peer request refused");
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string())
            }
            NodeError::BadRequest(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
            }
            NodeError::BadAnnounce(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_announcement", e.to_string())
            }
            NodeError::Busy(busy) => ApiError {
                extra: Some(json!({
                    "waiting": busy.waiting,
                    "limit": busy.limit,
                    "bound": busy.bound,
                })),
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string())
            },
            NodeError::Store(_) | NodeError::Identity(_) | NodeError::Task(_) => {
                tracing::error!(error = %e, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the node's log",
                )
            }
        }
    }
}

//! Signing responses (DESIGN 3, RFC 9421): every answer carries `Signature-Input` and
//! `Signature` labelled `node`, covering `"@status"`, `"content-digest"`,
//! `"@method";req`, `"@path";req` and, when the request had a query, `"@query";req`.
//!
//! ed25519 signatures are deterministic: the same base signed with the same key gives the
//! same bytes. A block's responses differ only in `created`, so a signature made within
//! the last `REUSE_SECS` seconds for the same covered values is reused, with its
//! (truthful) `created`. Hot blocks then cost one signature per `REUSE_SECS`, not one per
//! request, and a reused signature still has minutes of validity left for verifiers.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use hyper::header::HeaderValue;
use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::identity::{ALG, ComponentId, Identity, SignatureParams, sign_fields};

pub use crate::identity::RESPONSE_LABEL as LABEL;

/// How long a signature is reused for identical responses (verifiers accept 300 s).
pub const REUSE_SECS: u64 = 30;

/// Signatures remembered for reuse: about 10 MB at most.
const CACHE_ENTRIES: usize = 65_536;

/// What a response signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Covered<'a> {
    /// Response status code.
    pub status: u16,
    /// The response's `Content-Digest` value.
    pub content_digest: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Request path, as received.
    pub path: &'a str,
    /// Request query without `?`, if any.
    pub query: Option<&'a str>,
}

struct Cached {
    created: u64,
    input: HeaderValue,
    signature: HeaderValue,
}

/// Signs responses, remembering recent signatures.
pub struct ResponseSigner {
    keyid: String,
    cache: Mutex<LruCache<[u8; 32], Cached>>,
}

impl ResponseSigner {
    /// A signer for the node with id `keyid`.
    pub fn new(keyid: String) -> ResponseSigner {
        ResponseSigner {
            keyid,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// `(Signature-Input, Signature)` for a response covering `c`, made at `now` (unix
    /// seconds) or reused from one made less than `REUSE_SECS` before.
    pub fn sign(
        &self,
        identity: &Identity,
        c: &Covered<'_>,
        now: u64,
    ) -> (HeaderValue, HeaderValue) {
        let key = cache_key(c);
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(hit) = cache.get(&key)
                && now.saturating_sub(hit.created) < REUSE_SECS
                && hit.created <= now
            {
                return (hit.input.clone(), hit.signature.clone());
            }
        }
        let status = c.status.to_string();
        let query = c.query.map(|q| format!("?{q}"));
        let mut components = vec![
            ComponentId::new("@status"),
            ComponentId::new("content-digest"),
            ComponentId::req("@method"),
            ComponentId::req("@path"),
        ];
        let mut values = vec![status.as_str(), c.content_digest, c.method, c.path];
        if let Some(q) = &query {
            components.push(ComponentId::req("@query"));
            values.push(q);
        }
        let params = SignatureParams {
            components,
            created: now,
            keyid: self.keyid.clone(),
            alg: Some(ALG.to_owned()),
        };
        let fields = sign_fields(identity.signing_key(), LABEL, &params, &values);
        // Both fields are built from ASCII only (hex, base64, digits, quotes).
        let input = HeaderValue::from_str(&fields.input).unwrap_or(HeaderValue::from_static(""));
        let signature =
            HeaderValue::from_str(&fields.signature).unwrap_or(HeaderValue::from_static(""));
        let cached = Cached {
            created: now,
            input: input.clone(),
            signature: signature.clone(),
        };
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(key, cached);
        (input, signature)
    }
}

/// A collision-free key for the covered values (lengths prefix each part).
fn cache_key(c: &Covered<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(c.status.to_be_bytes());
    for part in [
        c.content_digest,
        c.method,
        c.path,
        c.query.unwrap_or("\u{0}"),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.update([u8::from(c.query.is_some())]);
    h.finalize().into()
}

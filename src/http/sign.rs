//! Signing responses (DESIGN 3, RFC 9421): every answer carries `Signature-Input` and
//! `Signature` labelled `node`, covering `"@status"`, `"content-digest"`,
//! `"@method";req`, `"@path";req` and, when the request had a query, `"@query";req`.
//!
//! ed25519 signatures are deterministic: the same base signed with the same key gives the
//! same bytes. A block's responses differ only in `created`, so a signature made within
//! the last `REUSE_SECS` seconds for the same covered values is reused, with its
//! (truthful) `created`. Hot blocks then cost one signature per `REUSE_SECS`, not one per
//! request, and a reused signature still has minutes of validity left for verifiers.
//! Error answers are not remembered: their bodies rarely repeat (a 504 tells how long it
//! waited), and anyone can make up as many as they like.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use hyper::header::HeaderValue;
use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::identity::{ALG, ComponentId, Identity, SignatureParams, sign_fields};

pub use crate::identity::RESPONSE_LABEL as LABEL;

/// How long a signature is reused for identical responses (verifiers accept 300 s).
pub const REUSE_SECS: u64 = 30;

/// Bytes the remembered signatures may take. Every distinct successful response adds
/// one (a block asked for with any made-up query, say), so the cache is full after any
/// burst: at the former 65,536 entries it kept about 34 MB. 4 MiB remembers the last
/// 6,500 distinct answers, far more than a node signs anew in `REUSE_SECS` for the blocks
/// that are actually hot.
pub const CACHE_BUDGET: usize = 4 << 20;

/// What one remembered signature takes: the LRU node (key, created, two header values,
/// links: 136 bytes, a 144-byte allocation), its slot in the table (16 bytes, up to twice
/// that after the table grows), `Signature-Input` (about 180 bytes) and `Signature` (95),
/// each with the 32-byte shared header `Bytes` allocates when cloned; rounded up.
pub const ENTRY_COST: usize = 640;

/// Signatures remembered for reuse: what `CACHE_BUDGET` pays for.
const CACHE_ENTRIES: usize = CACHE_BUDGET / ENTRY_COST;

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
        if c.status < 400 {
            let cached = Cached {
                created: now,
                input: input.clone(),
                signature: signature.clone(),
            };
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(key, cached);
        }
        (input, signature)
    }
}

impl ResponseSigner {
    /// Drops the signatures too old to be reused at `now` (unix seconds), so that a
    /// quiet node does not keep a burst's signatures; returns how many went.
    pub fn purge_expired(&self, now: u64) -> usize {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let stale: Vec<[u8; 32]> = cache
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.created) >= REUSE_SECS || c.created > now)
            .map(|(k, _)| *k)
            .collect();
        for key in &stale {
            cache.pop(key);
        }
        stale.len()
    }

    /// Signatures remembered now.
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(path: &str, status: u16) -> Covered<'_> {
        Covered {
            status,
            content_digest: "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
            method: "GET",
            path,
            query: Some("wait=0"),
        }
    }

    #[test]
    fn distinct_answers_stay_within_the_byte_budget_and_expire() {
        let temp = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(temp.path()).unwrap();
        let signer = ResponseSigner::new(identity.id().to_string());
        let paths: Vec<String> = (0..CACHE_ENTRIES + 500)
            .map(|i| format!("/sha256/{i:064x}"))
            .collect();
        for path in &paths {
            signer.sign(&identity, &covered(path, 200), 1000);
        }
        assert!(
            signer.cached() * ENTRY_COST <= CACHE_BUDGET && CACHE_BUDGET <= 4 << 20,
            "{} signatures kept",
            signer.cached()
        );
        // A reused signature keeps its `created`.
        let last = paths.last().unwrap();
        assert_eq!(
            signer.sign(&identity, &covered(last, 200), 1010),
            signer.sign(&identity, &covered(last, 200), 1000 + REUSE_SECS - 1)
        );
        assert_eq!(signer.purge_expired(1000 + REUSE_SECS - 1), 0);
        assert_eq!(signer.purge_expired(1000 + REUSE_SECS), CACHE_ENTRIES);
        assert_eq!(signer.cached(), 0);
    }

    #[test]
    fn error_answers_are_signed_but_not_remembered() {
        let temp = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(temp.path()).unwrap();
        let signer = ResponseSigner::new(identity.id().to_string());
        let path = format!("/sha256/{}", "ab".repeat(32));
        for status in [404, 503, 504] {
            let (input, signature) = signer.sign(&identity, &covered(&path, status), 1000);
            assert!(!input.is_empty() && !signature.is_empty());
        }
        assert_eq!(signer.cached(), 0);
        signer.sign(&identity, &covered(&path, 304), 1000);
        assert_eq!(signer.cached(), 1);
    }
}

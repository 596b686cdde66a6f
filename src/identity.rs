//! Node identity and HTTP message signatures (DESIGN 4).
//!
//! Owns the node's ed25519 key (a 0600 file in the store), its identity block (compact
//! JSON naming the public key; the node id is its SHA-256), and RFC 9421 signature bases:
//! building them, signing them, and verifying a received signature against a key. It
//! works on component names and values only: no HTTP types, no I/O beyond the key file.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sfv::{BareItem, FieldType, ListEntry, Parser};

use crate::fsutil;
use crate::id::BlockId;

/// File in the store holding the key's 32-byte seed as hex.
pub const KEY_FILE: &str = "node.key";

/// Signatures whose `created` is further than this from now (either way) are refused.
pub const MAX_SIGNATURE_SKEW_SECS: u64 = 5 * 60;

/// Label of a node's response signature (`Signature-Input: node=(...)`).
pub const RESPONSE_LABEL: &str = "node";

/// The only signature algorithm this protocol uses.
pub const ALG: &str = "ed25519";

/// Errors of loading or creating an identity, or reading someone's identity block.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// Where the key file is.
        path: String,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The key file exists but does not hold a 32-byte hex seed.
    #[error("key file {0} is not 64 hex digits")]
    KeyFormat(String),
    /// An identity block that is not `{"alg":"ed25519","public_key":"<hex>"}`.
    #[error("not an identity block")]
    BadBlock,
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `Signature-Input` or `Signature` is missing, or has no member with the label.
    #[error("no signature labelled {0:?}")]
    Missing(String),
    /// The fields do not parse as RFC 9421 / RFC 8941 structured fields.
    #[error("malformed signature field: {0}")]
    Malformed(String),
    /// `alg` names something other than ed25519.
    #[error("unsupported signature algorithm {0:?}")]
    Algorithm(String),
    /// `keyid` is not the key the caller expected.
    #[error("signed by {got:?}, expected {want:?}")]
    KeyId {
        /// The keyid in the signature.
        got: String,
        /// The keyid the caller expected.
        want: String,
    },
    /// `created` is more than five minutes from now.
    #[error("signature created at {created}, now is {now}: too old or in the future")]
    Stale {
        /// The `created` parameter.
        created: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// A component the verifier needs is not covered by the signature.
    #[error("signature does not cover {0}")]
    NotCovered(String),
    /// A covered component is absent from the message.
    #[error("covered component {0} is absent from the message")]
    Absent(String),
    /// The ed25519 check failed: the message or the signature was changed.
    #[error("signature does not match the message")]
    Mismatch,
}

/// A component identifier of a signature: a field name or derived component (`@path`),
/// optionally with `;req` (taken from the request a response answers).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComponentId {
    /// Lowercase field name or `@`-derived component name.
    pub name: String,
    /// The `req` flag: the value comes from the request, not the response.
    pub req: bool,
}

impl ComponentId {
    /// A component of the message itself.
    pub fn new(name: &str) -> ComponentId {
        ComponentId {
            name: name.to_owned(),
            req: false,
        }
    }

    /// A component of the request a response answers (`;req`).
    pub fn req(name: &str) -> ComponentId {
        ComponentId {
            name: name.to_owned(),
            req: true,
        }
    }

    /// The serialized identifier as it appears in the signature base.
    fn serialize(&self) -> String {
        if self.req {
            format!("\"{}\";req", self.name)
        } else {
            format!("\"{}\"", self.name)
        }
    }
}

impl std::fmt::Display for ComponentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.serialize())
    }
}

/// The signature parameters this project writes: covered components, `created`, `keyid`
/// and, when given, `alg`, in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    /// Covered components, in order.
    pub components: Vec<ComponentId>,
    /// Unix seconds when the signature was made.
    pub created: u64,
    /// Who signed: a node id in hex (or the RFC's test key name).
    pub keyid: String,
    /// `alg` parameter, written when present.
    pub alg: Option<String>,
}

impl SignatureParams {
    /// The serialized inner list: the value of `@signature-params` and of the
    /// `Signature-Input` member.
    pub fn serialize(&self) -> String {
        let mut out = String::from("(");
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&c.serialize());
        }
        out.push_str(&format!(
            ");created={};keyid=\"{}\"",
            self.created, self.keyid
        ));
        if let Some(alg) = &self.alg {
            out.push_str(&format!(";alg=\"{alg}\""));
        }
        out
    }
}

/// The RFC 9421 section 2.5 signature base: one `"<id>": <value>` line per covered
/// component, then the `@signature-params` line, joined by `\n` with none at the end.
pub fn signature_base(values: &[(&ComponentId, &str)], serialized_params: &str) -> String {
    let mut out = String::with_capacity(256);
    for (id, value) in values {
        out.push_str(&id.serialize());
        out.push_str(": ");
        out.push_str(value);
        out.push('\n');
    }
    out.push_str("\"@signature-params\": ");
    out.push_str(serialized_params);
    out
}

/// `Content-Digest` / `Repr-Digest` value for a SHA-256 digest (RFC 9530).
pub fn digest_header(sha256: &[u8; 32]) -> String {
    format!("sha-256=:{}:", BASE64.encode(sha256))
}

/// The SHA-256 named by a `Content-Digest` / `Repr-Digest` value, if it has one.
pub fn parse_digest_header(value: &str) -> Option<[u8; 32]> {
    let dict: sfv::Dictionary = Parser::new(value).parse().ok()?;
    match dict.get("sha-256")? {
        ListEntry::Item(item) => item.bare_item.as_byte_sequence()?.try_into().ok(),
        ListEntry::InnerList(_) => None,
    }
}

/// A `Signature-Input` / `Signature` pair of field values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFields {
    /// The `Signature-Input` field, e.g. `node=("@status" ...);created=...`.
    pub input: String,
    /// The `Signature` field, e.g. `node=:<base64>:`.
    pub signature: String,
}

/// Signs `params` over the component `values` (same order as `params.components`)
/// and returns the two fields under `label`.
pub fn sign_fields(
    key: &SigningKey,
    label: &str,
    params: &SignatureParams,
    values: &[&str],
) -> SignatureFields {
    let serialized = params.serialize();
    let pairs: Vec<(&ComponentId, &str)> = params
        .components
        .iter()
        .zip(values.iter().copied())
        .collect();
    let base = signature_base(&pairs, &serialized);
    let signature = key.sign(base.as_bytes());
    SignatureFields {
        input: format!("{label}={serialized}"),
        signature: format!("{label}=:{}:", BASE64.encode(signature.to_bytes())),
    }
}

/// What a verified signature said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Covered components, in the order signed.
    pub components: Vec<ComponentId>,
    /// Unix seconds when it was made.
    pub created: u64,
    /// The `keyid` parameter.
    pub keyid: String,
}

/// Verifies the signature labelled `label` in `fields` with `key`.
///
/// `resolve` gives the value of each covered component (None when the message lacks it).
/// The `@signature-params` line is rebuilt from the parameters in the order received.
/// Succeeds only if the ed25519 signature matches, `keyid` equals `want_keyid`, `alg` is
/// absent or ed25519, and `created` is within five minutes of `now`. The caller still
/// checks that the components it relies on are in `Verified::components`.
pub fn verify_fields(
    fields: &SignatureFields,
    label: &str,
    want_keyid: &str,
    key: &VerifyingKey,
    now: u64,
    resolve: impl Fn(&ComponentId) -> Option<String>,
) -> Result<Verified, VerifyError> {
    let malformed = |e: sfv::Error| VerifyError::Malformed(e.to_string());
    let inputs: sfv::Dictionary = Parser::new(&fields.input).parse().map_err(malformed)?;
    let Some(ListEntry::InnerList(list)) = inputs.get(label) else {
        return Err(VerifyError::Missing(label.to_owned()));
    };
    let verified = read_params(list)?;
    if verified.keyid != want_keyid {
        return Err(VerifyError::KeyId {
            got: verified.keyid,
            want: want_keyid.to_owned(),
        });
    }
    if now.abs_diff(verified.created) > MAX_SIGNATURE_SKEW_SECS {
        return Err(VerifyError::Stale {
            created: verified.created,
            now,
        });
    }
    let values = verified
        .components
        .iter()
        .map(|c| resolve(c).ok_or_else(|| VerifyError::Absent(c.to_string())))
        .collect::<Result<Vec<String>, VerifyError>>()?;
    let pairs: Vec<(&ComponentId, &str)> = verified
        .components
        .iter()
        .zip(values.iter().map(String::as_str))
        .collect();
    let serialized = vec![ListEntry::InnerList(list.clone())]
        .serialize()
        .ok_or_else(|| VerifyError::Malformed("empty signature input".into()))?;
    let base = signature_base(&pairs, &serialized);
    let signature = read_signature(&fields.signature, label)?;
    key.verify_strict(base.as_bytes(), &signature)
        .map_err(|_| VerifyError::Mismatch)?;
    Ok(verified)
}

/// What a node-to-node request signature covers (DESIGN 4): method, path, authority,
/// the query when there is one, and the body's `Content-Digest` when there is a body.
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    /// Request method, e.g. `GET`.
    pub method: &'a str,
    /// `host:port` the request is sent to (the `Host` header).
    pub authority: &'a str,
    /// Request path, as sent.
    pub path: &'a str,
    /// Query without `?`, if any.
    pub query: Option<&'a str>,
    /// The `Content-Digest` field value of the body, if the request has one.
    pub content_digest: Option<&'a str>,
}

impl RequestTarget<'_> {
    /// The components covered, and their values, in signing order.
    fn components(&self) -> Vec<(ComponentId, String)> {
        let mut out = vec![
            (ComponentId::new("@method"), self.method.to_owned()),
            (ComponentId::new("@path"), self.path.to_owned()),
            (
                ComponentId::new("@authority"),
                self.authority.to_ascii_lowercase(),
            ),
        ];
        if let Some(q) = self.query {
            out.push((ComponentId::new("@query"), format!("?{q}")));
        }
        if let Some(d) = self.content_digest {
            out.push((ComponentId::new("content-digest"), d.trim().to_owned()));
        }
        out
    }
}

/// Signs a request from node `keyid` at unix time `created` (label `node`).
pub fn sign_request(
    key: &SigningKey,
    keyid: &str,
    created: u64,
    target: &RequestTarget<'_>,
) -> SignatureFields {
    let (components, values): (Vec<ComponentId>, Vec<String>) =
        target.components().into_iter().unzip();
    let params = SignatureParams {
        components,
        created,
        keyid: keyid.to_owned(),
        alg: Some(ALG.to_owned()),
    };
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    sign_fields(key, RESPONSE_LABEL, &params, &values)
}

/// Verifies a request signed by node `keyid` with `key`: the signature must match,
/// be at most five minutes from `now`, and cover everything `sign_request` covers for
/// this `target`.
pub fn verify_request(
    fields: &SignatureFields,
    keyid: &str,
    key: &VerifyingKey,
    now: u64,
    target: &RequestTarget<'_>,
) -> Result<Verified, VerifyError> {
    let components = target.components();
    let resolve = |c: &ComponentId| {
        components
            .iter()
            .find(|(id, _)| id == c)
            .map(|(_, value)| value.clone())
    };
    let verified = verify_fields(fields, RESPONSE_LABEL, keyid, key, now, resolve)?;
    for (c, _) in &components {
        if !verified.components.contains(c) {
            return Err(VerifyError::NotCovered(c.to_string()));
        }
    }
    Ok(verified)
}

/// The `keyid` of the `node` member of a `Signature-Input` field, read without
/// verifying anything (to find which key to verify with).
pub fn signature_keyid(input: &str) -> Option<String> {
    let inputs: sfv::Dictionary = Parser::new(input).parse().ok()?;
    let Some(ListEntry::InnerList(list)) = inputs.get(RESPONSE_LABEL) else {
        return None;
    };
    read_params(list).ok().map(|v| v.keyid)
}

/// Reads the covered components and parameters of one `Signature-Input` member.
fn read_params(list: &sfv::InnerList) -> Result<Verified, VerifyError> {
    let mut components = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let name = item
            .bare_item
            .as_string()
            .ok_or_else(|| VerifyError::Malformed("component is not a string".into()))?;
        let mut id = ComponentId::new(name.as_str());
        for (k, v) in &item.params {
            match (k.as_str(), v) {
                ("req", BareItem::Boolean(true)) => id.req = true,
                _ => return Err(VerifyError::Malformed(format!("component parameter {k}"))),
            }
        }
        components.push(id);
    }
    let mut created = None;
    let mut keyid = None;
    for (k, v) in &list.params {
        match (k.as_str(), v) {
            ("created", BareItem::Integer(n)) => {
                created = Some(
                    u64::try_from(i64::from(*n))
                        .map_err(|_| VerifyError::Malformed("negative created".into()))?,
                );
            }
            ("keyid", BareItem::String(s)) => keyid = Some(s.as_str().to_owned()),
            ("alg", BareItem::String(s)) if s.as_str() == ALG => {}
            ("alg", other) => return Err(VerifyError::Algorithm(format!("{other:?}"))),
            // Other parameters (nonce, tag, expires) are signed over as received.
            _ => {}
        }
    }
    Ok(Verified {
        components,
        created: created.ok_or_else(|| VerifyError::Malformed("no created".into()))?,
        keyid: keyid.ok_or_else(|| VerifyError::Malformed("no keyid".into()))?,
    })
}

/// Reads the 64-byte signature labelled `label` from a `Signature` field.
fn read_signature(field: &str, label: &str) -> Result<ed25519_dalek::Signature, VerifyError> {
    let dict: sfv::Dictionary = Parser::new(field)
        .parse()
        .map_err(|e: sfv::Error| VerifyError::Malformed(e.to_string()))?;
    let Some(ListEntry::Item(item)) = dict.get(label) else {
        return Err(VerifyError::Missing(label.to_owned()));
    };
    let bytes: [u8; 64] = item
        .bare_item
        .as_byte_sequence()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| VerifyError::Malformed("signature is not 64 bytes".into()))?;
    Ok(ed25519_dalek::Signature::from_bytes(&bytes))
}

/// A node's key pair and the identity block naming its public half.
pub struct Identity {
    key: SigningKey,
    block: Vec<u8>,
    id: BlockId,
}

impl Identity {
    /// Loads the key from `dir/node.key`, creating it (0600) at first start.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join(KEY_FILE);
        let io_err = |source| IdentityError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let seed = match fsutil::read_private(&path) {
            Ok(text) => parse_seed(&text)
                .ok_or_else(|| IdentityError::KeyFormat(path.display().to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                fsutil::random_bytes(&mut seed).map_err(io_err)?;
                fsutil::create_private(&path, format!("{}\n", hex::encode(seed)).as_bytes())
                    .map_err(io_err)?;
                seed
            }
            Err(e) => return Err(io_err(e)),
        };
        Ok(Identity::from_seed(&seed))
    }

    /// The identity of a given 32-byte ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        let key = SigningKey::from_bytes(seed);
        let block = identity_block(&key.verifying_key());
        let id = BlockId::of(&block);
        Identity { key, block, id }
    }

    /// The node id: SHA-256 of the identity block.
    pub fn id(&self) -> BlockId {
        self.id
    }

    /// The identity block's bytes.
    pub fn block(&self) -> &[u8] {
        &self.block
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The signing key, for `sign_fields`.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// The identity block of a public key: `{"alg":"ed25519","public_key":"<hex>"}`.
pub fn identity_block(key: &VerifyingKey) -> Vec<u8> {
    format!(
        "{{\"alg\":\"{ALG}\",\"public_key\":\"{}\"}}",
        hex::encode(key.to_bytes())
    )
    .into_bytes()
}

/// The public key named by an identity block; only the exact canonical form is accepted,
/// so one key has one identity block and one node id.
pub fn parse_identity_block(block: &[u8]) -> Result<VerifyingKey, IdentityError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        alg: String,
        public_key: String,
    }
    let raw: Raw = serde_json::from_slice(block).map_err(|_| IdentityError::BadBlock)?;
    let mut bytes = [0u8; 32];
    if raw.alg != ALG || hex::decode_to_slice(&raw.public_key, &mut bytes).is_err() {
        return Err(IdentityError::BadBlock);
    }
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| IdentityError::BadBlock)?;
    if identity_block(&key) != block {
        return Err(IdentityError::BadBlock);
    }
    Ok(key)
}

fn parse_seed(text: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text, &mut seed).ok()?;
    Some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    // RFC 9421 Appendix B.1.4 test-key-ed25519 (JWK "d" and "x"), and B.2.6's request.
    const B14_SEED: &str = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU";
    const B14_PUBLIC: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
    const B26_SIGNATURE: &str =
        "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==";
    const B26_BASE: &str = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
\"@method\": POST\n\
\"@path\": /foo\n\
\"@authority\": example.com\n\
\"content-type\": application/json\n\
\"content-length\": 18\n\
\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";

    fn b26() -> (SigningKey, SignatureParams, Vec<&'static str>) {
        let seed: [u8; 32] = URL_SAFE_NO_PAD
            .decode(B14_SEED)
            .unwrap()
            .try_into()
            .unwrap();
        let names = [
            "date",
            "@method",
            "@path",
            "@authority",
            "content-type",
            "content-length",
        ];
        let params = SignatureParams {
            components: names.iter().map(|n| ComponentId::new(n)).collect(),
            created: 1618884473,
            keyid: "test-key-ed25519".into(),
            alg: None,
        };
        let values = vec![
            "Tue, 20 Apr 2021 02:07:55 GMT",
            "POST",
            "/foo",
            "example.com",
            "application/json",
            "18",
        ];
        (SigningKey::from_bytes(&seed), params, values)
    }

    #[test]
    fn rfc9421_b26_vector_byte_for_byte() {
        let (key, params, values) = b26();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            B14_PUBLIC
        );
        let pairs: Vec<_> = params.components.iter().zip(values.clone()).collect();
        assert_eq!(signature_base(&pairs, &params.serialize()), B26_BASE);
        let fields = sign_fields(&key, "sig-b26", &params, &values);
        assert_eq!(
            fields.input,
            "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
        );
        assert_eq!(fields.signature, format!("sig-b26=:{B26_SIGNATURE}:"));
    }

    fn resolve_b26(c: &ComponentId) -> Option<String> {
        let (_, params, values) = b26();
        let i = params.components.iter().position(|p| p == c)?;
        Some(values[i].to_owned())
    }

    #[test]
    fn verifies_the_rfc_signature_and_rejects_changes() {
        let (key, params, values) = b26();
        let fields = sign_fields(&key, "sig-b26", &params, &values);
        let public = key.verifying_key();
        let now = 1618884473 + 10;
        let ok = verify_fields(
            &fields,
            "sig-b26",
            "test-key-ed25519",
            &public,
            now,
            resolve_b26,
        );
        assert_eq!(ok.unwrap().components, params.components);

        let changed = |c: &ComponentId| {
            if c.name == "@path" {
                Some("/bar".to_owned())
            } else {
                resolve_b26(c)
            }
        };
        let got = verify_fields(
            &fields,
            "sig-b26",
            "test-key-ed25519",
            &public,
            now,
            changed,
        );
        assert_eq!(got, Err(VerifyError::Mismatch));

        let late = 1618884473 + MAX_SIGNATURE_SKEW_SECS + 1;
        let got = verify_fields(
            &fields,
            "sig-b26",
            "test-key-ed25519",
            &public,
            late,
            resolve_b26,
        );
        assert!(matches!(got, Err(VerifyError::Stale { .. })), "{got:?}");

        let got = verify_fields(
            &fields,
            "sig-b26",
            "someone-else",
            &public,
            now,
            resolve_b26,
        );
        assert!(matches!(got, Err(VerifyError::KeyId { .. })), "{got:?}");

        let got = verify_fields(
            &fields,
            "other",
            "test-key-ed25519",
            &public,
            now,
            resolve_b26,
        );
        assert_eq!(got, Err(VerifyError::Missing("other".into())));
    }

    #[test]
    fn parameters_are_rebuilt_in_received_order() {
        // Same signature, parameters reordered by hand: the base changes, so it must fail;
        // proving the verifier uses the received order rather than a canonical one.
        let (key, params, values) = b26();
        let mut fields = sign_fields(&key, "sig-b26", &params, &values);
        fields.input = fields.input.replace(
            ";created=1618884473;keyid=\"test-key-ed25519\"",
            ";keyid=\"test-key-ed25519\";created=1618884473",
        );
        let got = verify_fields(
            &fields,
            "sig-b26",
            "test-key-ed25519",
            &key.verifying_key(),
            1618884473,
            resolve_b26,
        );
        assert_eq!(got, Err(VerifyError::Mismatch));
    }

    #[test]
    fn malformed_fields_are_errors_not_panics() {
        let (key, _, _) = b26();
        let public = key.verifying_key();
        let inputs = [
            ("", ""),
            ("node=", "node=:AA==:"),
            ("node=(\"@status\")", "node=:AA==:"),
            ("node=(\"@status\");created=-1;keyid=\"k\"", "node=:AA==:"),
            (
                "node=(\"@status\");created=1;keyid=\"k\";alg=\"rsa\"",
                "node=:AA==:",
            ),
            ("node=(\"@status\");created=1;keyid=\"k\"", "node=:AA==:"),
            ("node=(\"@status\";x);created=1;keyid=\"k\"", "node=:AA==:"),
            ("node=(1);created=1;keyid=\"k\"", "node=:AA==:"),
        ];
        for (input, signature) in inputs {
            let fields = SignatureFields {
                input: input.into(),
                signature: signature.into(),
            };
            let got = verify_fields(&fields, "node", "k", &public, 1, |_| Some("200".into()));
            assert!(got.is_err(), "{input:?} verified");
        }
    }

    #[test]
    fn digest_header_round_trips() {
        let d = *BlockId::of(b"x").as_bytes();
        assert_eq!(parse_digest_header(&digest_header(&d)), Some(d));
        assert_eq!(parse_digest_header("sha-512=:AA==:"), None);
        assert_eq!(parse_digest_header("garbage(("), None);
    }

    #[test]
    fn identity_block_is_canonical() {
        let identity = Identity::from_seed(&[7u8; 32]);
        let key = parse_identity_block(identity.block()).unwrap();
        assert_eq!(key, identity.public_key());
        assert_eq!(identity.id(), BlockId::of(identity.block()));
        let spaced = String::from_utf8(identity.block().to_vec())
            .unwrap()
            .replace(':', ": ");
        assert!(parse_identity_block(spaced.as_bytes()).is_err());
        assert!(parse_identity_block(b"{}").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn request_signatures_cover_the_target_and_refuse_changes() {
        let node = Identity::from_seed(&[7; 32]);
        let keyid = node.id().to_string();
        let digest = digest_header(&[1; 32]);
        let target = RequestTarget {
            method: "PUT",
            authority: "127.0.0.1:8042",
            path: "/peers",
            query: Some("x=1"),
            content_digest: Some(&digest),
        };
        let now = 1_700_000_000;
        let fields = sign_request(node.signing_key(), &keyid, now, &target);
        assert_eq!(
            signature_keyid(&fields.input).as_deref(),
            Some(keyid.as_str())
        );
        let key = node.public_key();
        assert!(verify_request(&fields, &keyid, &key, now + 10, &target).is_ok());
        let changed = [
            RequestTarget {
                method: "GET",
                ..target
            },
            RequestTarget {
                authority: "127.0.0.1:9",
                ..target
            },
            RequestTarget {
                path: "/peerz",
                ..target
            },
            RequestTarget {
                query: None,
                ..target
            },
            RequestTarget {
                content_digest: None,
                ..target
            },
        ];
        for t in changed {
            assert!(
                verify_request(&fields, &keyid, &key, now, &t).is_err(),
                "{t:?}"
            );
        }
        assert!(matches!(
            verify_request(&fields, &keyid, &key, now + 301, &target),
            Err(VerifyError::Stale { .. })
        ));
        let other = Identity::from_seed(&[8; 32]);
        assert!(verify_request(&fields, &keyid, &other.public_key(), now, &target).is_err());
    }
}

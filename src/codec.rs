//! The client-side codec (DESIGN 5): turning content into encrypted blocks and back.
//! Pure: no I/O, no HTTP, no store. Owns the block formats (convergent AES-256-GCM with
//! optional zlib, passphrase GCM, the read-only Libernet AES-256-CBC format), near-id
//! placement, and `Locator`, the `/sha256/<id>/<mode>/<key>` name of decryptable content.
//!
//! Decoding always verifies: a convergent block decodes only if the GCM tag checks and the
//! plaintext (or its inflation) hashes to the key, so a wrong key or a damaged block is an
//! error, never garbage. Passphrase blocks can only be checked by their GCM tag (or, for
//! the old CBC format, their padding).

use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, KeyIvInit};
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use sha2::{Digest, Sha256};

use crate::id::{BlockId, IdError, MAX_BLOCK_SIZE};

/// GCM nonce length.
pub const NONCE_LEN: usize = 12;

/// GCM tag length.
pub const TAG_LEN: usize = 16;

/// Bytes a GCM block adds to its data: nonce and tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Largest content one block carries. Chosen so that content always fits uncompressed,
/// which makes the split of a file into blocks independent of how well it compresses.
pub const MAX_CONTENT: usize = MAX_BLOCK_SIZE - OVERHEAD;

/// Fewest matching bits near-id placement accepts (DESIGN 5; also LIKE's threshold, so a
/// placed block is always found by a LIKE query for its target).
pub const MIN_NEAR_BITS: u32 = 12;

/// Most matching bits near-id placement attempts: 2^24 hashes of a short suffix take a
/// few seconds on one core; more would make `put` look hung.
pub const MAX_NEAR_BITS: u32 = 24;

/// Random non-zero bytes after the `0x00` separator of a near-id suffix.
const NEAR_SUFFIX_RANDOM: usize = 8;

/// Bytes a near-id suffix adds to a block.
pub const NEAR_OVERHEAD: usize = 1 + NEAR_SUFFIX_RANDOM;

/// zlib level for convergent blocks. With flate2's zlib-rs backend, level 1 compresses
/// English-like text at about 96 MB/s per core against 21 MB/s at level 6 (which makes
/// text blocks about a quarter smaller). Backups and puts are CPU-bound on text, so the
/// fast level wins (measured in docs/benchmarks.md, the backup section).
const ZLIB_LEVEL: u32 = 1;

/// Bytes of a sample compressed at the fastest level to decide whether compressing the
/// whole content is worth trying.
const SAMPLE_LEN: usize = 4096;

/// A sample that does not shrink below this fraction (in 1/1000) marks the content as
/// incompressible (encrypted, already compressed, media): it is stored as is.
const SAMPLE_KEEP_PER_MILLE: usize = 970;

/// The Libernet CBC format's IV: sixteen ASCII '0' bytes.
const CBC_IV: [u8; 16] = *b"0000000000000000";

/// A 256-bit AES key: the SHA-256 of the plaintext (convergent) or of a passphrase.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key of a passphrase: its UTF-8 bytes' SHA-256.
    pub fn from_passphrase(passphrase: &str) -> Key {
        Key(Sha256::digest(passphrase.as_bytes()).into())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are secrets: never print one whole in logs or debug output.
        write!(f, "Key({}..)", &hex::encode(&self.0[..2]))
    }
}

impl FromStr for Key {
    type Err = IdError;

    /// 64 hex digits, either case (same rules as ids).
    fn from_str(s: &str) -> Result<Key, IdError> {
        s.parse::<BlockId>().map(|id| Key(id.0))
    }
}

/// How a key was made, and the URL segment that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Convergent: key = sha256(plaintext); verifiable.
    Aes256,
    /// key = sha256(passphrase); checked only by the cipher's tag.
    Passphrase,
}

impl Mode {
    /// The URL segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Aes256 => "aes256",
            Mode::Passphrase => "passphrase",
        }
    }
}

/// Where decryptable content lives and how to open it: `/sha256/<id>/<mode>/<key>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Locator {
    /// The block.
    pub id: BlockId,
    /// How the key was made.
    pub mode: Mode,
    /// The AES key.
    pub key: Key,
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/sha256/{}/{}/{}", self.id, self.mode.as_str(), self.key)
    }
}

impl Locator {
    /// Splits a URL path `/sha256/<id>/<mode>/<key>[/<rest>]` into the locator and the
    /// rest: `None` when the path ends at the key, `Some("")` for a trailing slash,
    /// `Some("a/b")` for a path inside a bundle (still percent-encoded).
    pub fn split(path: &str) -> Result<(Locator, Option<&str>), CodecError> {
        let bad = |why: &str| CodecError::BadLocator(why.to_owned());
        let rest = path
            .strip_prefix("/sha256/")
            .ok_or_else(|| bad("it does not start with /sha256/"))?;
        let mut parts = rest.splitn(4, '/');
        let id = parts.next().unwrap_or("");
        let mode = parts.next().unwrap_or("");
        let key = parts.next().unwrap_or("");
        let id = id.parse().map_err(|e| bad(&format!("id: {e}")))?;
        let mode = match mode {
            "aes256" => Mode::Aes256,
            "passphrase" => Mode::Passphrase,
            _ => return Err(bad("the mode is neither aes256 nor passphrase")),
        };
        let key = key.parse().map_err(|e| bad(&format!("key: {e}")))?;
        Ok((Locator { id, mode, key }, parts.next()))
    }
}

impl FromStr for Locator {
    type Err = CodecError;

    /// Exactly `/sha256/<id>/<mode>/<key>`, nothing after.
    fn from_str(s: &str) -> Result<Locator, CodecError> {
        match Locator::split(s)? {
            (locator, None) => Ok(locator),
            (_, Some(_)) => Err(CodecError::BadLocator(
                "unexpected path after the key".into(),
            )),
        }
    }
}

/// Codec failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Content larger than one block carries.
    #[error("content of {0} bytes is over the {MAX_CONTENT}-byte limit of one block")]
    TooLarge(usize),
    /// The key does not open the block, or the block is damaged.
    #[error("the key does not decrypt this block, or the block is damaged")]
    WrongKey,
    /// Near-id bits outside the allowed range.
    #[error("near-id placement needs {MIN_NEAR_BITS} to {MAX_NEAR_BITS} bits, not {0}")]
    NearBits(u32),
    /// The block is too large to take a near-id suffix.
    #[error("a block of {0} bytes has no room for a near-id suffix")]
    NoRoom(usize),
    /// Mining stopped before reaching the asked bits (astronomically unlikely).
    #[error("no near-id suffix found for {0} bits")]
    GaveUp(u32),
    /// A malformed `/sha256/<id>/<mode>/<key>` path.
    #[error("not a content URL: {0}")]
    BadLocator(String),
    /// The OS random source failed.
    #[error("random source: {0}")]
    Random(String),
}

/// A block ready to store, and how to read it back.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The block's bytes.
    pub block: Vec<u8>,
    /// Its id, mode and key.
    pub locator: Locator,
}

/// The cipher format a block turned out to be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `nonce || AES-256-GCM(data) || tag`.
    Gcm,
    /// The Libernet format: AES-256-CBC, PKCS#7, IV of ASCII '0's.
    Cbc,
}

/// How a block was opened; with it, `decode_by` reopens the same block without searching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Recipe {
    /// Cipher format.
    pub format: Format,
    /// The decrypted data was zlib.
    pub compressed: bool,
    /// A near-id suffix was stripped first.
    pub stripped: bool,
}

/// Content read back from a block.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The plaintext.
    pub content: Vec<u8>,
    /// How it was opened.
    pub recipe: Recipe,
}

/// Encodes `content` convergently: key = sha256(content), zlib when smaller, AES-256-GCM
/// with a zero nonce (safe: a key only ever encrypts the one plaintext it is the hash
/// of). Deterministic: the same content always makes the same block.
pub fn encode(content: &[u8]) -> Result<Encoded, CodecError> {
    if content.len() > MAX_CONTENT {
        return Err(CodecError::TooLarge(content.len()));
    }
    let key = Key(Sha256::digest(content).into());
    let data = match compress(content) {
        Some(smaller) => Cow::Owned(smaller),
        None => Cow::Borrowed(content),
    };
    let block = seal(&key, [0; NONCE_LEN], &data);
    Ok(Encoded {
        locator: Locator {
            id: BlockId::of(&block),
            mode: Mode::Aes256,
            key,
        },
        block,
    })
}

/// Encodes `content` under a passphrase: key = sha256(passphrase), random nonce, no
/// compression. Only someone with the passphrase can read it.
pub fn encode_passphrase(content: &[u8], passphrase: &str) -> Result<Encoded, CodecError> {
    encode_with_key(content, &Key::from_passphrase(passphrase))
}

/// Encodes `content` under `key` (a key derived from a secret, such as the backup
/// index's Argon2id key): random nonce, no compression, `Mode::Passphrase` (checked only
/// by the cipher's tag).
pub fn encode_with_key(content: &[u8], key: &Key) -> Result<Encoded, CodecError> {
    if content.len() > MAX_CONTENT {
        return Err(CodecError::TooLarge(content.len()));
    }
    let key = *key;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| CodecError::Random(e.to_string()))?;
    let block = seal(&key, nonce, content);
    Ok(Encoded {
        locator: Locator {
            id: BlockId::of(&block),
            mode: Mode::Passphrase,
            key,
        },
        block,
    })
}

/// `nonce || AES-256-GCM(key, nonce, data) || tag`.
fn seal(key: &Key, nonce: [u8; NONCE_LEN], data: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(&key.0.into());
    let mut block = Vec::with_capacity(OVERHEAD + data.len());
    block.extend_from_slice(&nonce);
    block.extend_from_slice(data);
    let nonce = Nonce::from(nonce);
    // GCM fails only for messages over 64 GiB; blocks are at most 1 MiB.
    let tag = cipher
        .encrypt_inout_detached(&nonce, &[], (&mut block[NONCE_LEN..]).into())
        .expect("GCM encrypts any message under 64 GiB");
    block.extend_from_slice(&tag);
    block
}

/// zlib of `content` when that is smaller; `None` when a sample shows the content does
/// not compress (checked at the fastest level, for a few percent of the cost of the
/// real attempt) or when the result is not smaller.
fn compress(content: &[u8]) -> Option<Vec<u8>> {
    if content.len() > 2 * SAMPLE_LEN {
        let middle = content.len() / 2;
        for sample in [
            &content[..SAMPLE_LEN],
            &content[middle..middle + SAMPLE_LEN],
        ] {
            if zlib(sample, 1).len() * 1000 > sample.len() * SAMPLE_KEEP_PER_MILLE {
                return None;
            }
        }
    }
    let packed = zlib(content, ZLIB_LEVEL);
    (packed.len() < content.len()).then_some(packed)
}

fn zlib(data: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    // Writing into a Vec cannot fail.
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .unwrap_or_default()
}

/// Appends `0x00` and random non-zero bytes to `encoded`'s block until its id shares at
/// least `bits` leading bits with `target`; the locator's id follows. Readers strip the
/// suffix from the last `0x00` (see `decode`).
pub fn place_near(encoded: Encoded, target: &BlockId, bits: u32) -> Result<Encoded, CodecError> {
    if !(MIN_NEAR_BITS..=MAX_NEAR_BITS).contains(&bits) {
        return Err(CodecError::NearBits(bits));
    }
    let mut block = encoded.block;
    if block.len() + NEAR_OVERHEAD > MAX_BLOCK_SIZE {
        return Err(CodecError::NoRoom(block.len()));
    }
    block.push(0);
    // Hash the block once; each try then costs one SHA-256 compression of the suffix.
    let mut prefix = Sha256::new();
    prefix.update(&block);
    let mut start = [0u8; 8];
    getrandom::fill(&mut start).map_err(|e| CodecError::Random(e.to_string()))?;
    let start = u64::from_le_bytes(start);
    let tries = 64u64 << bits;
    for n in 0..tries {
        let suffix = non_zero_digits(start.wrapping_add(n));
        let mut h = prefix.clone();
        h.update(suffix);
        let id = BlockId(h.finalize().into());
        if id.match_score(target) >= bits {
            block.extend_from_slice(&suffix);
            return Ok(Encoded {
                block,
                locator: Locator {
                    id,
                    ..encoded.locator
                },
            });
        }
    }
    Err(CodecError::GaveUp(bits))
}

/// `n` written in base 255 with digits 1..=255: eight bytes, none of them zero.
fn non_zero_digits(mut n: u64) -> [u8; NEAR_SUFFIX_RANDOM] {
    let mut out = [0u8; NEAR_SUFFIX_RANDOM];
    for byte in &mut out {
        *byte = (n % 255) as u8 + 1;
        n /= 255;
    }
    out
}

/// Opens `block` with `key`. Tries the GCM format, then the Libernet CBC format; in
/// each, the block whole, then with a near-id suffix stripped (from its last `0x00`).
/// `Mode::Aes256` content is returned only if it (or its zlib inflation) hashes to the
/// key; `Mode::Passphrase` content only if the GCM tag (or the CBC padding) checks.
pub fn decode(block: &[u8], mode: Mode, key: &Key) -> Result<Decoded, CodecError> {
    let stripped = block.iter().rposition(|&b| b == 0).map(|at| &block[..at]);
    // Formats outermost: a passphrase block cannot be verified beyond its cipher, and a
    // GCM tag is a far stronger check than CBC padding, so every GCM reading goes first.
    for format in [Format::Gcm, Format::Cbc] {
        let candidates = std::iter::once((block, false)).chain(stripped.map(|s| (s, true)));
        for (bytes, stripped) in candidates {
            let Some(plain) = decrypt(format, bytes, key) else {
                continue;
            };
            let opened = match mode {
                Mode::Aes256 => verify_convergent(plain, key),
                Mode::Passphrase => Some((plain, false)),
            };
            if let Some((content, compressed)) = opened {
                return Ok(Decoded {
                    content,
                    recipe: Recipe {
                        format,
                        compressed,
                        stripped,
                    },
                });
            }
        }
    }
    Err(CodecError::WrongKey)
}

/// Reopens a block that `decode` opened before with this key, following its recipe and
/// skipping the plaintext hash. Sound only for the same bytes (a block whose id was
/// checked) and the same key: then the plaintext is the one `decode` verified. The GCM
/// tag is still checked.
pub fn decode_by(block: &[u8], key: &Key, recipe: Recipe) -> Result<Vec<u8>, CodecError> {
    let bytes = unstripped(block, recipe)?;
    let plain = decrypt(recipe.format, bytes, key).ok_or(CodecError::WrongKey)?;
    if recipe.compressed {
        inflate_capped(&plain, MAX_BLOCK_SIZE).ok_or(CodecError::WrongKey)
    } else {
        Ok(plain)
    }
}

/// The block without its near-id suffix when `recipe` says it has one (see
/// `decode_by`).
fn unstripped(block: &[u8], recipe: Recipe) -> Result<&[u8], CodecError> {
    if !recipe.stripped {
        return Ok(block);
    }
    let at = block
        .iter()
        .rposition(|&b| b == 0)
        .ok_or(CodecError::WrongKey)?;
    Ok(&block[..at])
}

/// `decode_by` without copies: when the recipe is GCM without zlib and `out` holds at
/// least the plaintext's length, the block is opened straight from `block` into `out`
/// (no copy of the ciphertext, no allocation) and the answer is `Some(n)`, the
/// plaintext being `out[..n]`. `None` when the recipe needs `decode_by` (zlib, CBC) or
/// `out` is too small; nothing was decrypted then. The same soundness rule as
/// `decode_by` applies; the GCM tag is checked, and `out` holds garbage on `WrongKey`.
pub fn decode_by_into(
    block: &[u8],
    key: &Key,
    recipe: Recipe,
    out: &mut [u8],
) -> Result<Option<usize>, CodecError> {
    if recipe.format != Format::Gcm || recipe.compressed {
        return Ok(None);
    }
    let bytes = unstripped(block, recipe)?;
    if bytes.len() < OVERHEAD {
        return Err(CodecError::WrongKey);
    }
    let len = bytes.len() - OVERHEAD;
    if out.len() < len {
        return Ok(None);
    }
    let (nonce, rest) = bytes.split_at(NONCE_LEN);
    let (data, tag) = rest.split_at(len);
    let nonce = Nonce::try_from(nonce).map_err(|_| CodecError::WrongKey)?;
    let tag = Tag::try_from(tag).map_err(|_| CodecError::WrongKey)?;
    let buf = InOutBuf::new(data, &mut out[..len]).map_err(|_| CodecError::WrongKey)?;
    Aes256Gcm::new(&key.0.into())
        .decrypt_inout_detached(&nonce, &[], buf, &tag)
        .map_err(|_| CodecError::WrongKey)?;
    Ok(Some(len))
}

/// Decrypts without judging the result; `None` when the cipher itself refuses (GCM tag,
/// CBC length or padding).
fn decrypt(format: Format, bytes: &[u8], key: &Key) -> Option<Vec<u8>> {
    match format {
        Format::Gcm => {
            if bytes.len() < OVERHEAD {
                return None;
            }
            let (nonce, rest) = bytes.split_at(NONCE_LEN);
            let (data, tag) = rest.split_at(rest.len() - TAG_LEN);
            let nonce = Nonce::try_from(nonce).ok()?;
            let tag = Tag::try_from(tag).ok()?;
            let mut plain = data.to_vec();
            Aes256Gcm::new(&key.0.into())
                .decrypt_inout_detached(&nonce, &[], plain.as_mut_slice().into(), &tag)
                .ok()?;
            Some(plain)
        }
        Format::Cbc => {
            if bytes.is_empty() || !bytes.len().is_multiple_of(16) {
                return None;
            }
            let mut buf = bytes.to_vec();
            let len = cbc::Decryptor::<Aes256>::new(&key.0.into(), &CBC_IV.into())
                .decrypt_padded::<Pkcs7>(&mut buf)
                .ok()?
                .len();
            buf.truncate(len);
            Some(buf)
        }
    }
}

/// The convergent check: `plain` itself, or its inflation, must hash to the key.
fn verify_convergent(plain: Vec<u8>, key: &Key) -> Option<(Vec<u8>, bool)> {
    if <[u8; 32]>::from(Sha256::digest(&plain)) == key.0 {
        return Some((plain, false));
    }
    let inflated = inflate_capped(&plain, MAX_BLOCK_SIZE)?;
    (<[u8; 32]>::from(Sha256::digest(&inflated)) == key.0).then_some((inflated, true))
}

/// Inflates a zlib stream to at most `cap` bytes; `None` when it is not zlib, is
/// corrupt, or inflates past the cap (a zlib bomb costs at most `cap`).
pub fn inflate_capped(bytes: &[u8], cap: usize) -> Option<Vec<u8>> {
    // RFC 1950 header: deflate method, and CMF*256+FLG divisible by 31.
    let [cmf, flg, ..] = *bytes else { return None };
    if cmf & 0x0f != 8 || (u16::from(cmf) * 256 + u16::from(flg)) % 31 != 0 {
        return None;
    }
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() <= cap).then_some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic incompressible bytes (xorshift); other modules' tests use it too.
    pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn text(len: usize) -> Vec<u8> {
        let words = b"the quick brown fox jumps over a lazy dog while libernet stores blocks ";
        words.iter().copied().cycle().take(len).collect()
    }

    /// Content sizes at the edges of the format.
    const INTERESTING_SIZES: [usize; 6] = [
        0,
        1,
        SAMPLE_LEN * 2 + 1,
        MAX_BLOCK_SIZE - 29,
        MAX_CONTENT - 1,
        MAX_CONTENT,
    ];

    #[test]
    fn round_trips_at_interesting_sizes() {
        for len in INTERESTING_SIZES {
            for content in [noise(len, len as u64), text(len)] {
                let e = encode(&content).unwrap();
                assert!(e.block.len() <= MAX_BLOCK_SIZE, "{len}");
                assert_eq!(e.locator.id, BlockId::of(&e.block));
                assert_eq!(e.locator.key.0, <[u8; 32]>::from(Sha256::digest(&content)));
                let d = decode(&e.block, Mode::Aes256, &e.locator.key).unwrap();
                assert_eq!(d.content, content, "{len}");
                assert_eq!(
                    decode_by(&e.block, &e.locator.key, d.recipe).unwrap(),
                    content
                );
            }
        }
        assert_eq!(
            encode(&vec![0; MAX_CONTENT + 1]).unwrap_err(),
            CodecError::TooLarge(MAX_CONTENT + 1)
        );
        // The largest incompressible content fills a block exactly.
        assert_eq!(
            encode(&noise(MAX_CONTENT, 9)).unwrap().block.len(),
            MAX_BLOCK_SIZE
        );
    }

    #[test]
    fn decode_by_into_opens_in_place_or_declines() {
        let mut out = vec![0u8; MAX_CONTENT];
        for len in INTERESTING_SIZES {
            let content = noise(len, len as u64 + 5);
            let e = encode(&content).unwrap();
            let key = e.locator.key;
            let recipe = decode(&e.block, Mode::Aes256, &key).unwrap().recipe;
            let n = decode_by_into(&e.block, &key, recipe, &mut out).unwrap();
            assert_eq!(n, Some(len), "{len}");
            assert_eq!(&out[..len], &content[..], "{len}");
            if len > 0 {
                // Too small a buffer: declined, for `decode_by` to do.
                assert_eq!(
                    decode_by_into(&e.block, &key, recipe, &mut out[..len - 1]).unwrap(),
                    None
                );
                let mut bad = e.block.clone();
                bad[NONCE_LEN] ^= 1;
                assert_eq!(
                    decode_by_into(&bad, &key, recipe, &mut out).unwrap_err(),
                    CodecError::WrongKey
                );
            }
        }
        // zlib content is left to `decode_by`.
        let e = encode(&text(50_000)).unwrap();
        let recipe = decode(&e.block, Mode::Aes256, &e.locator.key)
            .unwrap()
            .recipe;
        assert!(recipe.compressed);
        assert_eq!(
            decode_by_into(&e.block, &e.locator.key, recipe, &mut out).unwrap(),
            None
        );
        // A near-id suffix is stripped as `decode_by` does.
        let near = place_near(
            encode(&noise(3000, 8)).unwrap(),
            &BlockId::of(b"t"),
            MIN_NEAR_BITS,
        )
        .unwrap();
        let recipe = decode(&near.block, Mode::Aes256, &near.locator.key)
            .unwrap()
            .recipe;
        let n = decode_by_into(&near.block, &near.locator.key, recipe, &mut out).unwrap();
        assert_eq!(n.map(|n| &out[..n]), Some(&noise(3000, 8)[..]));
    }

    #[test]
    fn compresses_text_only() {
        let t = text(100_000);
        let e = encode(&t).unwrap();
        assert!(e.block.len() < 10_000, "text shrinks: {}", e.block.len());
        let d = decode(&e.block, Mode::Aes256, &e.locator.key).unwrap();
        assert!(d.recipe.compressed);
        let n = noise(100_000, 3);
        let e = encode(&n).unwrap();
        assert_eq!(e.block.len(), n.len() + OVERHEAD, "noise is stored as is");
        assert!(
            !decode(&e.block, Mode::Aes256, &e.locator.key)
                .unwrap()
                .recipe
                .compressed
        );
    }

    #[test]
    fn convergent_and_deterministic() {
        let a = encode(b"same").unwrap();
        let b = encode(b"same").unwrap();
        assert_eq!(a.block, b.block);
        assert_eq!(a.locator, b.locator);
        assert_eq!(&a.block[..NONCE_LEN], &[0; NONCE_LEN]);
    }

    #[test]
    fn wrong_key_truncated_and_tampered_blocks_fail() {
        let e = encode(&text(5000)).unwrap();
        let key = e.locator.key;
        let other = encode(b"other").unwrap().locator.key;
        assert_eq!(
            decode(&e.block, Mode::Aes256, &other).unwrap_err(),
            CodecError::WrongKey
        );
        for cut in [0, 1, NONCE_LEN, OVERHEAD - 1, e.block.len() - 1] {
            assert_eq!(
                decode(&e.block[..cut], Mode::Aes256, &key).unwrap_err(),
                CodecError::WrongKey,
                "truncated to {cut}"
            );
        }
        for at in [0, NONCE_LEN, e.block.len() / 2, e.block.len() - 1] {
            let mut bad = e.block.clone();
            bad[at] ^= 1;
            assert_eq!(
                decode(&bad, Mode::Aes256, &key).unwrap_err(),
                CodecError::WrongKey,
                "flipped byte {at}"
            );
        }
        // A passphrase block opened as convergent content does not verify.
        let p = encode_passphrase(b"x", "pw").unwrap();
        assert!(decode(&p.block, Mode::Aes256, &p.locator.key).is_err());
    }

    #[test]
    fn passphrase_round_trip() {
        let a = encode_passphrase(b"index record", "correct horse").unwrap();
        let b = encode_passphrase(b"index record", "correct horse").unwrap();
        assert_ne!(a.block, b.block, "random nonces");
        assert_eq!(a.locator.mode, Mode::Passphrase);
        let key = Key::from_passphrase("correct horse");
        assert_eq!(
            decode(&a.block, Mode::Passphrase, &key).unwrap().content,
            b"index record"
        );
        assert_eq!(
            decode(&a.block, Mode::Passphrase, &Key::from_passphrase("wrong")).unwrap_err(),
            CodecError::WrongKey
        );
    }

    /// Vectors made with `openssl enc -aes-256-cbc -K <key> -iv 3030..30` (PKCS#7 is its
    /// default padding), and Python's `zlib.compress` for the compressed one.
    #[test]
    fn libernet_cbc_vectors() {
        let unhex = |s: &str| hex::decode(s).unwrap();
        let plain = b"Hello from Libernet\n";
        let key = Key(Sha256::digest(plain).into());
        let block = unhex("ebd8f9156b16922175854cc8ca125114bd121e7c6dcadd743814da08951d38c0");
        let d = decode(&block, Mode::Aes256, &key).unwrap();
        assert_eq!(d.content, plain);
        assert_eq!(d.recipe.format, Format::Cbc);
        assert!(!d.recipe.compressed);

        let plain = b"abc".repeat(200);
        let key = Key(Sha256::digest(&plain).into());
        let block = unhex("3411d73431d0ba35be9d1bcc821712c6c7ba2bec46022ef1a6a321d2e0215ff6");
        let d = decode(&block, Mode::Aes256, &key).unwrap();
        assert_eq!(d.content, plain);
        assert!(d.recipe.compressed);
        assert_eq!(decode_by(&block, &key, d.recipe).unwrap(), plain);
        assert!(decode(&block, Mode::Aes256, &Key([7; 32])).is_err());

        let key = Key::from_passphrase("correct horse");
        let block = unhex("87fc51199c16c30065840347fe2087c1");
        assert_eq!(
            decode(&block, Mode::Passphrase, &key).unwrap().content,
            b"secret index"
        );
    }

    #[test]
    fn near_id_mining_reaches_the_bits_and_still_decodes() {
        let target = BlockId::of(b"USER:alice@2026-11");
        for bits in [MIN_NEAR_BITS, 16] {
            let e = encode(&text(3000)).unwrap();
            let key = e.locator.key;
            let near = place_near(e, &target, bits).unwrap();
            assert_eq!(near.locator.id, BlockId::of(&near.block));
            assert!(near.locator.id.match_score(&target) >= bits);
            let d = decode(&near.block, Mode::Aes256, &key).unwrap();
            assert_eq!(d.content, text(3000));
            assert!(d.recipe.stripped);
        }
        let p = encode_passphrase(b"record", "pw").unwrap();
        let near = place_near(p, &target, 12).unwrap();
        let d = decode(&near.block, Mode::Passphrase, &Key::from_passphrase("pw")).unwrap();
        assert_eq!(d.content, b"record");
        let e = encode(b"x").unwrap();
        assert_eq!(
            place_near(e.clone(), &target, 11).unwrap_err(),
            CodecError::NearBits(11)
        );
        assert_eq!(
            place_near(e, &target, 25).unwrap_err(),
            CodecError::NearBits(25)
        );
        let full = encode(&noise(MAX_CONTENT, 1)).unwrap();
        assert_eq!(
            place_near(full, &target, 12).unwrap_err(),
            CodecError::NoRoom(MAX_BLOCK_SIZE)
        );
    }

    #[test]
    fn suffix_digits_are_never_zero() {
        for n in [0, 1, 254, 255, 256, u64::MAX] {
            assert!(!non_zero_digits(n).contains(&0), "{n}");
        }
        assert_ne!(non_zero_digits(1), non_zero_digits(2));
    }

    #[test]
    fn locators_parse_and_print() {
        let e = encode(b"hi").unwrap();
        let text = e.locator.to_string();
        assert_eq!(text.parse::<Locator>().unwrap(), e.locator);
        let upper = text
            .to_uppercase()
            .replace("/SHA256/", "/sha256/")
            .replace("AES256", "aes256");
        assert_eq!(upper.parse::<Locator>().unwrap(), e.locator);
        assert_eq!(Locator::split(&format!("{text}/")).unwrap().1, Some(""));
        assert_eq!(
            Locator::split(&format!("{text}/a/b c")).unwrap().1,
            Some("a/b c")
        );
        for bad in [
            "/sha256/abc/aes256/def".to_owned(),
            text.replace("aes256", "aes128"),
            format!("{text}/x"),
            "/sha512/x".to_owned(),
            text[..text.len() - 1].to_owned(),
        ] {
            assert!(bad.parse::<Locator>().is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", e.locator.key).len(), "Key(abcd..)".len());
    }

    #[test]
    fn inflate_caps_bombs() {
        let data = text(10_000);
        assert_eq!(inflate_capped(&zlib(&data, 6), 10_000), Some(data.clone()));
        assert_eq!(inflate_capped(&zlib(&data, 6), 9_999), None);
        assert_eq!(inflate_capped(b"not zlib", 100), None);
        assert_eq!(inflate_capped(b"", 100), None);
    }
}

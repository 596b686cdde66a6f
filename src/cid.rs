//! Content identifiers as IPFS names raw blocks: a CIDv1 with the `raw` codec (0x55) and
//! a sha2-256 multihash (0x12, 32 bytes) names exactly the bytes whose SHA-256 is a
//! `BlockId`, so `/ipfs/<cid>` and `/sha256/<id>` are two spellings of one block.
//! Parsing is strict and total: anything but that one shape (and the empty identity CID
//! `bafkqaaa`, the trustless gateway's probe) is refused with a reason a person can act
//! on. Pure: no I/O, no HTTP.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE32_NOPAD, BASE32_NOPAD_NOCASE};

use crate::id::{BlockId, ID_LEN};

/// Multicodec of opaque bytes: the only codec a block of this store has.
pub const RAW_CODEC: u64 = 0x55;

/// Multihash code of sha2-256, the hash that names blocks here.
pub const SHA2_256: u64 = 0x12;

/// Multihash code of the identity "hash" (the bytes are the digest).
pub const IDENTITY: u64 = 0x00;

/// Longest CID text accepted before decoding. The longest CID this module accepts is 59
/// characters (`b` and 36 bytes in base32, or `f` and 72 hex digits for the 4 header
/// bytes and 32 digest bytes: 73); twice that leaves room for a clear "other hash"
/// answer to longer digests while bounding the work a hostile path can ask for.
pub const MAX_CID_CHARS: usize = 160;

/// The canonical text of the empty identity CID, the trustless gateway's probe.
pub const EMPTY_PROBE: &str = "bafkqaaa";

/// A CID this store can answer: a raw sha2-256 block, or the empty identity CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCid {
    /// CIDv1, raw, sha2-256: the block with this id.
    Block(BlockId),
    /// CIDv1, raw, identity of no bytes (`bafkqaaa`): the empty block, held by every
    /// gateway, used to probe whether one answers trustless requests.
    Empty,
}

/// Why a text is not a CID this store answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidError {
    /// No text at all.
    #[error("a CID is missing")]
    Empty,
    /// Longer than `MAX_CID_CHARS`.
    #[error("a CID is at most {MAX_CID_CHARS} characters, got {0}")]
    TooLong(usize),
    /// A CIDv0 (`Qm...`): always a dag-pb node, never a raw block.
    #[error(
        "a CIDv0 (Qm...) names a dag-pb node, never a raw block; ask for the block's CIDv1 (raw codec, sha2-256, base32: b...)"
    )]
    Version0,
    /// A multibase prefix other than base32 (`b`, `B`) or base16 (`f`, `F`).
    #[error("unsupported multibase prefix {0:?}; write the CID in base32 (b...)")]
    Multibase(char),
    /// The text after the prefix is not in its base (bad letters, padding, stray bits).
    #[error("the CID is not valid {0}")]
    Encoding(&'static str),
    /// The bytes end inside a field.
    #[error("the CID ends too early")]
    Truncated,
    /// A varint longer than 9 bytes or not in its shortest form.
    #[error("the CID has a malformed varint")]
    Varint,
    /// A CID version other than 1.
    #[error("CID version {0} is not supported; only CIDv1")]
    Version(u64),
    /// A codec other than raw.
    #[error("the CID's codec is {}; only raw blocks (codec raw, 0x55) are served", codec_name(*.0))]
    Codec(u64),
    /// A multihash other than sha2-256 (or the empty identity).
    #[error("the CID's hash is {}; only sha2-256 (0x12) is served", hash_name(*.0))]
    Hash(u64),
    /// A sha2-256 multihash whose length is not 32.
    #[error("a sha2-256 digest is {ID_LEN} bytes, the CID says {0}")]
    DigestLength(u64),
    /// An identity CID with content (only the empty one, `bafkqaaa`, is answered).
    #[error("identity CIDs are not served, except the empty probe {EMPTY_PROBE}")]
    Identity,
    /// Bytes after the digest.
    #[error("the CID has bytes after its digest")]
    Trailing,
}

impl RawCid {
    /// The binary CID: version, codec, multihash code, length, digest.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            RawCid::Block(id) => {
                // Each of 1, 0x55, 0x12 and 32 is below 0x80: a one-byte varint.
                let mut out = vec![1, RAW_CODEC as u8, SHA2_256 as u8, ID_LEN as u8];
                out.extend_from_slice(id.as_bytes());
                out
            }
            RawCid::Empty => vec![1, RAW_CODEC as u8, IDENTITY as u8, 0],
        }
    }
}

/// The canonical text: multibase base32, lowercase, no padding (`b...`).
impl fmt::Display for RawCid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = BASE32_NOPAD.encode(&self.to_bytes());
        write!(f, "b{}", text.to_ascii_lowercase())
    }
}

impl FromStr for RawCid {
    type Err = CidError;

    /// Accepts base32 (`b`, `B`; either case after it, no padding) and base16 (`f`, `F`)
    /// CIDv1 texts; refuses every other form with its reason.
    fn from_str(text: &str) -> Result<RawCid, CidError> {
        if text.len() > MAX_CID_CHARS {
            return Err(CidError::TooLong(text.len()));
        }
        let mut chars = text.chars();
        let prefix = chars.next().ok_or(CidError::Empty)?;
        let rest = chars.as_str();
        if prefix == 'Q' && rest.starts_with('m') && text.len() == 46 {
            return Err(CidError::Version0);
        }
        let bytes = match prefix {
            'b' | 'B' => BASE32_NOPAD_NOCASE
                .decode(rest.as_bytes())
                .map_err(|_| CidError::Encoding("base32"))?,
            'f' | 'F' => hex::decode(rest).map_err(|_| CidError::Encoding("base16"))?,
            other => return Err(CidError::Multibase(other)),
        };
        decode(&bytes)
    }
}

/// Reads a binary CID.
fn decode(bytes: &[u8]) -> Result<RawCid, CidError> {
    let mut reader = Reader(bytes);
    let version = reader.varint()?;
    if version != 1 {
        return Err(CidError::Version(version));
    }
    let codec = reader.varint()?;
    if codec != RAW_CODEC {
        return Err(CidError::Codec(codec));
    }
    let hash = reader.varint()?;
    let len = reader.varint()?;
    let cid = match hash {
        SHA2_256 if len == ID_LEN as u64 => {
            let digest = reader.take(ID_LEN)?;
            let mut id = [0u8; ID_LEN];
            id.copy_from_slice(digest);
            RawCid::Block(BlockId(id))
        }
        SHA2_256 => return Err(CidError::DigestLength(len)),
        IDENTITY if len == 0 => RawCid::Empty,
        IDENTITY => return Err(CidError::Identity),
        other => return Err(CidError::Hash(other)),
    };
    if !reader.0.is_empty() {
        return Err(CidError::Trailing);
    }
    Ok(cid)
}

/// A cursor over a binary CID.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// An unsigned varint as multiformats defines it: little-endian groups of 7 bits, at
    /// most 9 bytes, in its shortest form (no final zero group after the first byte).
    fn varint(&mut self) -> Result<u64, CidError> {
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(9) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(CidError::Varint);
                }
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        if self.0.len() >= 9 {
            Err(CidError::Varint)
        } else {
            Err(CidError::Truncated)
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], CidError> {
        if self.0.len() < n {
            return Err(CidError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
}

/// A codec's name for messages (the common ones), else its number.
fn codec_name(code: u64) -> String {
    let name = match code {
        0x70 => "dag-pb",
        0x71 => "dag-cbor",
        0x0129 => "dag-json",
        0x51 => "cbor",
        0x0200 => "json",
        0x72 => "libp2p-key",
        _ => return format!("0x{code:x}"),
    };
    format!("{name} (0x{code:x})")
}

/// A multihash's name for messages (the common ones), else its number.
fn hash_name(code: u64) -> String {
    let name = match code {
        0x13 => "sha2-512",
        0x16 => "sha3-256",
        0x1b => "keccak-256",
        0x1e => "blake3",
        0xb220 => "blake2b-256",
        _ => return format!("0x{code:x}"),
    };
    format!("{name} (0x{code:x})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw CIDv1 of the 11 bytes `hello world`, as IPFS tools print it.
    const HELLO: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

    fn b32(bytes: &[u8]) -> String {
        format!("b{}", BASE32_NOPAD.encode(bytes).to_ascii_lowercase())
    }

    #[test]
    fn a_known_cid_names_the_block_of_its_bytes() {
        let id = BlockId::of(b"hello world");
        assert_eq!(HELLO.parse::<RawCid>(), Ok(RawCid::Block(id)));
        assert_eq!(RawCid::Block(id).to_string(), HELLO);
        assert_eq!(RawCid::Empty.to_string(), EMPTY_PROBE);
        assert_eq!(EMPTY_PROBE.parse::<RawCid>(), Ok(RawCid::Empty));
        // Other spellings of the same CID.
        assert_eq!(
            HELLO.to_uppercase().parse::<RawCid>(),
            Ok(RawCid::Block(id))
        );
        let base16 = format!("f{}", hex::encode(RawCid::Block(id).to_bytes()));
        assert_eq!(base16.parse::<RawCid>(), Ok(RawCid::Block(id)));
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        let id = BlockId::of(b"x");
        let with = |head: &[u8], digest: &[u8]| b32(&[head, digest].concat());
        let cases: Vec<(String, CidError)> = vec![
            (String::new(), CidError::Empty),
            ("b".repeat(MAX_CID_CHARS + 1), CidError::TooLong(161)),
            (
                "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB".into(),
                CidError::Version0,
            ),
            (
                "zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA".into(),
                CidError::Multibase('z'),
            ),
            ("u".into(), CidError::Multibase('u')),
            ("/".into(), CidError::Multibase('/')),
            (format!("{HELLO}="), CidError::Encoding("base32")),
            ("bafk!".into(), CidError::Encoding("base32")),
            ("b..".into(), CidError::Encoding("base32")),
            ("fzz".into(), CidError::Encoding("base16")),
            ("b".into(), CidError::Truncated),
            (with(&[1, 0x55, 0x12], &[]), CidError::Truncated),
            (
                with(&[1, 0x55, 0x12, 0x20], &id.0[..31]),
                CidError::Truncated,
            ),
            (with(&[0x81, 0x00], &[]), CidError::Varint),
            (with(&[0xff; 10], &[]), CidError::Varint),
            (with(&[0x12, 0x20], &id.0), CidError::Version(0x12)),
            (with(&[2, 0x55, 0x12, 0x20], &id.0), CidError::Version(2)),
            (with(&[1, 0x70, 0x12, 0x20], &id.0), CidError::Codec(0x70)),
            (with(&[1, 0x71, 0x12, 0x20], &id.0), CidError::Codec(0x71)),
            (with(&[1, 0x55, 0x1e, 0x20], &id.0), CidError::Hash(0x1e)),
            (
                with(&[1, 0x55, 0x12, 0x14], &id.0[..20]),
                CidError::DigestLength(20),
            ),
            (
                with(&[1, 0x55, 0x12, 0x40], &[id.0, id.0].concat()),
                CidError::DigestLength(64),
            ),
            (with(&[1, 0x55, 0x00, 0x01], b"a"), CidError::Identity),
            (
                with(&[1, 0x55, 0x12, 0x20], &[&id.0[..], b"!"].concat()),
                CidError::Trailing,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<RawCid>(), Err(want), "{text}");
        }
    }

    #[test]
    fn varints_read_as_multiformats_writes_them() {
        assert_eq!(Reader(&[0x00]).varint(), Ok(0));
        assert_eq!(Reader(&[0x7f]).varint(), Ok(0x7f));
        assert_eq!(Reader(&[0x80, 0x01]).varint(), Ok(0x80));
        assert_eq!(Reader(&[0xa9, 0x02]).varint(), Ok(0x0129));
        assert_eq!(Reader(&[0xa0, 0xe4, 0x02]).varint(), Ok(0xb220));
        assert_eq!(Reader(&[0x80]).varint(), Err(CidError::Truncated));
        assert_eq!(Reader(&[0x80, 0x00]).varint(), Err(CidError::Varint));
        let longest = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(Reader(&longest).varint(), Ok((1 << 63) - 1));
        assert_eq!(Reader(&[0xff; 9]).varint(), Err(CidError::Varint));
        let name = CidError::Codec(0x70).to_string();
        assert!(name.contains("dag-pb (0x70)"), "{name}");
    }
}

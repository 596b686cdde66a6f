//! Block ids: the 32-byte SHA-256 names of blocks, their hex form, XOR distance and
//! match score. Pure: no I/O, no HTTP. `BlockId` is the only thing the store turns into a
//! path, so a malformed or hostile name can never reach the file system.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Length of an id in bytes.
pub const ID_LEN: usize = 32;

/// Length of an id in hex digits, as it appears in URLs and JSON.
pub const ID_HEX_LEN: usize = 2 * ID_LEN;

/// Largest block, in bytes (DESIGN 2): also the cap on an inflated zlib upload.
pub const MAX_BLOCK_SIZE: usize = 1 << 20;

/// The SHA-256 of a block's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub [u8; ID_LEN]);

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not exactly 64 characters.
    #[error("an id is {ID_HEX_LEN} hex digits, got {0} characters")]
    Length(usize),
    /// A character outside `0-9a-fA-F`.
    #[error("an id is made of hex digits only")]
    NotHex,
}

/// Ids travel in JSON as 64 lowercase hex digits.
impl serde::Serialize for BlockId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// Any case is accepted, as in URLs; anything but 64 hex digits is refused.
impl<'de> serde::Deserialize<'de> for BlockId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<BlockId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl BlockId {
    /// The id of `bytes`: their SHA-256.
    pub fn of(bytes: &[u8]) -> BlockId {
        BlockId(Sha256::digest(bytes).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Number of equal leading bits of `self` and `other` (0..=256).
    pub fn match_score(&self, other: &BlockId) -> u32 {
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return i as u32 * 8 + x.leading_zeros();
            }
        }
        ID_LEN as u32 * 8
    }

    /// XOR distance to `other`; compare results as 256-bit big-endian numbers
    /// (which is what the derived `Ord` of `BlockId` does).
    pub fn distance(&self, other: &BlockId) -> BlockId {
        let mut out = [0u8; ID_LEN];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        BlockId(out)
    }

    /// `distance` as a (high, low) pair of big-endian integers: orders exactly as the
    /// distance does, and compares without a 32-byte memcmp (sorts by distance).
    pub fn distance_key(&self, other: &BlockId) -> (u128, u128) {
        let d = self.distance(other).0;
        let mut hi = [0u8; 16];
        let mut lo = [0u8; 16];
        hi.copy_from_slice(&d[..16]);
        lo.copy_from_slice(&d[16..]);
        (u128::from_be_bytes(hi), u128::from_be_bytes(lo))
    }

    /// Bit `i` (0 = most significant bit of the first byte).
    pub fn bit(&self, i: u32) -> bool {
        self.0[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// A copy with bit `i` set to `value`.
    pub fn with_bit(mut self, i: u32, value: bool) -> BlockId {
        let mask = 0x80u8 >> (i % 8);
        let byte = &mut self.0[(i / 8) as usize];
        if value {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
        self
    }

    /// The smallest and largest ids whose first `bits` bits equal `self`'s: every id in
    /// between (inclusive) shares those bits, and no other id does.
    pub fn prefix_range(&self, bits: u32) -> (BlockId, BlockId) {
        let mut lo = self.0;
        let mut hi = self.0;
        for i in bits.min(256)..256 {
            let mask = 0x80u8 >> (i % 8);
            lo[(i / 8) as usize] &= !mask;
            hi[(i / 8) as usize] |= mask;
        }
        (BlockId(lo), BlockId(hi))
    }

    /// The URL path of the block: `/sha256/<hex>`.
    pub fn path(&self) -> String {
        format!("/sha256/{self}")
    }
}

impl FromStr for BlockId {
    type Err = IdError;

    /// Parses 64 hex digits; uppercase is accepted and normalised.
    fn from_str(s: &str) -> Result<BlockId, IdError> {
        if s.len() != ID_HEX_LEN {
            return Err(IdError::Length(s.chars().count()));
        }
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::NotHex)?;
        Ok(BlockId(out))
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_HEX_LEN];
        // Cannot fail: the buffer is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn of_empty_is_the_known_sha256() {
        assert_eq!(BlockId::of(b"").to_string(), EMPTY);
    }

    #[test]
    fn parse_accepts_hex_and_normalises_case() {
        let id: BlockId = EMPTY.to_uppercase().parse().unwrap();
        assert_eq!(id.to_string(), EMPTY);
    }

    #[test]
    fn parse_rejects_malformed() {
        let cases = [
            ("", IdError::Length(0)),
            (&EMPTY[1..], IdError::Length(63)),
            ("0".repeat(65).leak(), IdError::Length(65)),
            ("g".repeat(64).leak(), IdError::NotHex),
            ("../".repeat(22)[..64].to_owned().leak(), IdError::NotHex),
            (" ".repeat(64).leak(), IdError::NotHex),
            // 62 ASCII + one 2-byte char: 64 bytes, 63 chars, still not hex.
            (format!("{}é", &EMPTY[..62]).leak(), IdError::NotHex),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<BlockId>(), Err(want), "{input:?}");
        }
    }

    #[test]
    fn match_score_counts_equal_leading_bits() {
        let a = BlockId([0u8; 32]);
        assert_eq!(a.match_score(&a), 256);
        assert_eq!(a.match_score(&a.with_bit(0, true)), 0);
        assert_eq!(a.match_score(&a.with_bit(11, true)), 11);
        assert_eq!(a.match_score(&a.with_bit(255, true)), 255);
    }

    #[test]
    fn distance_orders_by_xor() {
        let t = BlockId([0x55; 32]);
        let near = t.with_bit(200, !t.bit(200));
        let far = t.with_bit(3, !t.bit(3));
        assert!(t.distance(&near) < t.distance(&far));
        assert_eq!(t.distance(&t), BlockId([0; 32]));
    }

    #[test]
    fn prefix_range_bounds_the_prefix() {
        let t = BlockId([0xa5; 32]);
        let (lo, hi) = t.prefix_range(12);
        assert!(lo.match_score(&t) >= 12 && hi.match_score(&t) >= 12);
        assert!(lo <= t && t <= hi);
        assert_eq!(&lo.0[..2], &[0xa5, 0xa0]);
        assert_eq!(&hi.0[..2], &[0xa5, 0xaf]);
        assert!(lo.0[2..].iter().all(|b| *b == 0));
        assert!(hi.0[2..].iter().all(|b| *b == 0xff));
        assert_eq!(t.prefix_range(256), (t, t));
    }
}

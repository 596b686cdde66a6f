//! The backup index's key. A record block is located by the user name alone (near
//! `sha256("USER:<user>@<YYYY-MM>")`, see `index`), so anyone who knows a user name can
//! fetch that user's records and try passphrases on them offline. Records are therefore
//! sealed under an Argon2id key (RFC 9106: memory-hard, so each guess costs `m` KiB of
//! memory and `t` passes over it rather than one SHA-256), and every record carries, in
//! clear at its start, what a reader needs to derive that key again:
//!
//! ```text
//! "LNBKIDX2" | m_kib u32 LE | t u32 LE | p u32 LE | salt (16 bytes) | nonce | AES-256-GCM | tag [| 0x00 near-id suffix]
//! ```
//!
//! A lookup needs no parameters in advance: it reads the header of each record found
//! near the target and derives once per distinct (parameters, salt) — one derivation for
//! a set, whose records all share the salt drawn when the set was made. Blocks without
//! the header are records of the first format (key = SHA-256 of the passphrase), still
//! opened so that old sets keep working; the next record written is in this format.

use std::collections::HashMap;

use tokio::sync::Mutex;

use anyhow::{Context, bail};

use crate::codec::{self, Key};

/// Marks a record sealed under an Argon2id key (and is the format's version).
pub const MAGIC: &[u8; 8] = b"LNBKIDX2";

/// Bytes of the salt: 128 bits, the RFC 9106 recommendation.
pub const SALT_LEN: usize = 16;

/// Bytes of the clear header before the sealed record.
pub const HEADER_LEN: usize = MAGIC.len() + 12 + SALT_LEN;

/// Memory of a new set's derivation, in KiB: 64 MiB, RFC 9106's second recommended
/// setting (for memory-constrained machines), affordable on a small laptop or a Pi.
pub const DEFAULT_M_KIB: u32 = 64 * 1024;

/// Passes of a new set's derivation (RFC 9106's second recommended setting).
pub const DEFAULT_T: u32 = 3;

/// Lanes of a new set's derivation. One: the `argon2` crate computes lanes one after the
/// other, so more lanes would cost the user time without costing an attacker more.
pub const DEFAULT_P: u32 = 1;

/// Most memory a record may ask a reader to spend (1 GiB, in KiB): records asking more
/// are skipped, so a stranger's block placed near a user's target cannot exhaust memory.
pub const MAX_M_KIB: u32 = 1024 * 1024;

/// Most passes a record may ask for (the same reason as `MAX_M_KIB`).
pub const MAX_T: u32 = 16;

/// Most lanes a record may ask for.
pub const MAX_P: u32 = 16;

/// Most distinct (parameters, salt) pairs one lookup derives keys for. A set needs one;
/// the rest are other sets that share the user name (or strangers' blocks), each costing
/// a derivation, so this bounds what they can make a lookup spend.
pub const MAX_DERIVATIONS: usize = 8;

/// Passphrases shorter than this (in characters) get a warning when a set is made or a
/// passphrase changed: Argon2id slows guessing, it cannot make a short passphrase long.
pub const SHORT_PASSPHRASE: usize = 12;

/// Argon2id parameters and salt of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kdf {
    /// Memory, in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// The set's salt.
    pub salt: [u8; SALT_LEN],
}

impl Kdf {
    /// Default parameters with a fresh random salt: for a new set, or a new passphrase.
    pub fn fresh() -> anyhow::Result<Kdf> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(Kdf {
            m_kib: DEFAULT_M_KIB,
            t: DEFAULT_T,
            p: DEFAULT_P,
            salt,
        })
    }

    /// The clear header of a record sealed under this derivation.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&self.m_kib.to_le_bytes());
        out[12..16].copy_from_slice(&self.t.to_le_bytes());
        out[16..20].copy_from_slice(&self.p.to_le_bytes());
        out[20..].copy_from_slice(&self.salt);
        out
    }

    /// The derivation a block's header names, and the sealed rest; `None` for a block
    /// without the header (a first-format record, or anything else).
    pub fn parse(block: &[u8]) -> Option<(Kdf, &[u8])> {
        let header = block.get(..HEADER_LEN)?;
        if &header[..8] != MAGIC {
            return None;
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&header[20..]);
        let kdf = Kdf {
            m_kib: word(8),
            t: word(12),
            p: word(16),
            salt,
        };
        Some((kdf, &block[HEADER_LEN..]))
    }

    /// True when a reader may spend what this derivation asks (see `MAX_M_KIB`).
    pub fn affordable(&self) -> bool {
        self.m_kib <= MAX_M_KIB && (1..=MAX_T).contains(&self.t) && (1..=MAX_P).contains(&self.p)
    }

    /// The key of `passphrase` under this derivation: Argon2id, 32 bytes. CPU-bound for
    /// a good fraction of a second: call it off the async workers.
    pub fn derive(&self, passphrase: &str) -> anyhow::Result<Key> {
        if !self.affordable() {
            bail!("the record asks for more than a reader spends on a key");
        }
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| anyhow::anyhow!("bad Argon2 parameters: {e}"))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        argon
            .hash_password_into(passphrase.as_bytes(), &self.salt, &mut key)
            .map_err(|e| anyhow::anyhow!("Argon2 failed: {e}"))?;
        Ok(Key(key))
    }

    /// `content` sealed under `key` (this derivation's) behind this header.
    pub fn seal(&self, content: &[u8], key: &Key) -> anyhow::Result<codec::Encoded> {
        let mut encoded = codec::encode_with_key(content, key)?;
        let mut block = Vec::with_capacity(HEADER_LEN + encoded.block.len());
        block.extend_from_slice(&self.header());
        block.extend_from_slice(&encoded.block);
        encoded.block = block;
        encoded.locator.id = crate::id::BlockId::of(&encoded.block);
        Ok(encoded)
    }
}

/// The keys one passphrase has derived so far, by derivation: a lookup and the write
/// that follows it derive each at most once.
pub struct Keys {
    passphrase: String,
    derived: Mutex<HashMap<Kdf, Key>>,
}

impl Keys {
    /// No key derived yet.
    pub fn new(passphrase: &str) -> Keys {
        Keys {
            passphrase: passphrase.to_owned(),
            derived: Mutex::new(HashMap::new()),
        }
    }

    /// The first format's key: SHA-256 of the passphrase.
    pub fn legacy(&self) -> Key {
        Key::from_passphrase(&self.passphrase)
    }

    /// The key under `kdf`, derived once (off the async workers) and then remembered;
    /// concurrent askers wait for the one derivation. Fails when more than
    /// `MAX_DERIVATIONS` would be derived.
    pub async fn get(&self, kdf: &Kdf) -> anyhow::Result<Key> {
        let mut derived = self.derived.lock().await;
        if let Some(key) = derived.get(kdf) {
            return Ok(*key);
        }
        if derived.len() >= MAX_DERIVATIONS {
            bail!("more than {MAX_DERIVATIONS} key derivations asked for");
        }
        let (kdf_c, passphrase) = (*kdf, self.passphrase.clone());
        let key = tokio::task::spawn_blocking(move || kdf_c.derive(&passphrase))
            .await
            .context("internal task failed")??;
        derived.insert(*kdf, key);
        Ok(key)
    }
}

/// A warning for a passphrase shorter than `SHORT_PASSPHRASE` characters, if it is.
pub fn weak_warning(passphrase: &str) -> Option<String> {
    let n = passphrase.chars().count();
    (n < SHORT_PASSPHRASE).then(|| {
        format!(
            "the passphrase is {n} characters long; anyone who knows the user name can try \
             guesses against the index offline, so use at least {SHORT_PASSPHRASE} (several words)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Kdf {
        Kdf {
            m_kib: 64,
            t: 1,
            p: 1,
            salt: [7; SALT_LEN],
        }
    }

    #[test]
    fn headers_round_trip_and_other_blocks_have_none() {
        let kdf = Kdf::fresh().unwrap();
        assert_eq!(
            (kdf.m_kib, kdf.t, kdf.p),
            (DEFAULT_M_KIB, DEFAULT_T, DEFAULT_P)
        );
        let mut block = kdf.header().to_vec();
        block.extend_from_slice(b"rest");
        let (back, rest) = Kdf::parse(&block).unwrap();
        assert_eq!(back, kdf);
        assert_eq!(rest, b"rest");
        assert!(Kdf::parse(&block[..HEADER_LEN - 1]).is_none());
        assert!(Kdf::parse(&[0u8; 64]).is_none());
    }

    #[test]
    fn the_key_depends_on_passphrase_salt_and_parameters() {
        let kdf = cheap();
        let key = kdf.derive("pw").unwrap();
        assert_eq!(key, kdf.derive("pw").unwrap());
        assert_ne!(key, kdf.derive("pW").unwrap());
        assert_ne!(
            key,
            Kdf {
                salt: [8; SALT_LEN],
                ..kdf
            }
            .derive("pw")
            .unwrap()
        );
        assert_ne!(key, Kdf { t: 2, ..kdf }.derive("pw").unwrap());
        assert_ne!(key, Key::from_passphrase("pw"));
    }

    #[test]
    fn sealed_records_open_with_the_derived_key_only() {
        let kdf = cheap();
        let key = kdf.derive("pw").unwrap();
        let sealed = kdf.seal(b"record", &key).unwrap();
        assert_eq!(sealed.locator.id, crate::id::BlockId::of(&sealed.block));
        let (back, rest) = Kdf::parse(&sealed.block).unwrap();
        assert_eq!(back, kdf);
        let open = codec::decode(rest, codec::Mode::Passphrase, &key).unwrap();
        assert_eq!(open.content, b"record");
        assert!(codec::decode(rest, codec::Mode::Passphrase, &Key::from_passphrase("pw")).is_err());
    }

    #[test]
    fn greedy_parameters_are_refused() {
        assert!(cheap().affordable());
        assert!(
            !Kdf {
                m_kib: MAX_M_KIB + 1,
                ..cheap()
            }
            .affordable()
        );
        assert!(!Kdf { t: 0, ..cheap() }.affordable());
        assert!(
            !Kdf {
                p: MAX_P + 1,
                ..cheap()
            }
            .affordable()
        );
        assert!(
            Kdf {
                t: MAX_T + 1,
                ..cheap()
            }
            .derive("pw")
            .is_err()
        );
    }

    #[test]
    fn short_passphrases_are_warned_about() {
        assert!(weak_warning("elevenchars").is_some());
        assert!(weak_warning("twelve chars").is_none());
        assert!(
            weak_warning("ééééééééééé").is_some(),
            "characters, not bytes"
        );
    }
}

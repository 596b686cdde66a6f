//! Pins and who holds them. A block is pinned while at least one holder holds it: the
//! operator (`admin`) or a named client such as one backup set. Holders let two backup
//! sets that share a block (convergent encryption makes that common) release their pins
//! independently.
//!
//! The book lives in memory and in the store's `pins` file: one `<id> <holder>` line per
//! pin (a bare `<id>` line, the format before holders, means `admin`). The file is
//! rewritten whole, crash-safely, by `Store`; this module only parses and formats it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::id::BlockId;

/// Longest holder name.
pub const MAX_HOLDER_LEN: usize = 64;

/// The holder of pins made without a name (the operator's `PUT /pins/{id}`).
pub const ADMIN_HOLDER: &str = "admin";

/// The holder of blocks uploaded through the dashboard.
pub const UPLOAD_HOLDER: &str = "upload";

/// A pin holder's name: 1 to 64 of `A-Z a-z 0-9 . _ : @ -`, so it fits a query string
/// and a line of the pins file unescaped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Holder(String);

impl TryFrom<String> for Holder {
    type Error = BadHolder;

    fn try_from(s: String) -> Result<Holder, BadHolder> {
        s.parse()
    }
}

impl Holder {
    /// The operator.
    pub fn admin() -> Holder {
        Holder(ADMIN_HOLDER.to_owned())
    }

    /// Content added through the node's dashboard (see `node::BundleUpload`).
    pub fn upload() -> Holder {
        Holder(UPLOAD_HOLDER.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A holder name that breaks the rules of `Holder`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pin holder is 1 to {MAX_HOLDER_LEN} characters of A-Z a-z 0-9 . _ : @ -, not {0:?}")]
pub struct BadHolder(pub String);

impl FromStr for Holder {
    type Err = BadHolder;

    fn from_str(s: &str) -> Result<Holder, BadHolder> {
        let ok = !s.is_empty()
            && s.len() <= MAX_HOLDER_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
        if ok {
            Ok(Holder(s.to_owned()))
        } else {
            Err(BadHolder(s.chars().take(MAX_HOLDER_LEN + 1).collect()))
        }
    }
}

/// Every pin: the holders of each pinned id. An id is pinned iff it has a holder.
#[derive(Debug, Default)]
pub struct PinBook {
    by_id: BTreeMap<BlockId, BTreeSet<Holder>>,
    /// Changed since the file was last written.
    pub dirty: bool,
}

impl PinBook {
    /// Adds `holder` to `id`'s holders. Returns (whether the holder is new, whether the
    /// id was unpinned before).
    pub fn add(&mut self, id: BlockId, holder: &Holder) -> (bool, bool) {
        let holders = self.by_id.entry(id).or_default();
        let was_unpinned = holders.is_empty();
        let new = holders.insert(holder.clone());
        self.dirty |= new;
        (new, was_unpinned)
    }

    /// Removes `holder` (all holders when `None`) from `id`. Returns (whether anything
    /// was removed, whether the id is unpinned now).
    pub fn remove(&mut self, id: &BlockId, holder: Option<&Holder>) -> (bool, bool) {
        let Some(holders) = self.by_id.get_mut(id) else {
            return (false, true);
        };
        let removed = match holder {
            Some(h) => holders.remove(h),
            None => {
                holders.clear();
                true
            }
        };
        let now_unpinned = holders.is_empty();
        if now_unpinned {
            self.by_id.remove(id);
        }
        self.dirty |= removed;
        (removed, now_unpinned)
    }

    /// The holders of `id` (none when it is not pinned).
    pub fn holders(&self, id: &BlockId) -> Vec<Holder> {
        self.by_id
            .get(id)
            .map_or_else(Vec::new, |h| h.iter().cloned().collect())
    }

    /// True when `holder` holds `id`.
    pub fn holds(&self, id: &BlockId, holder: &Holder) -> bool {
        self.by_id.get(id).is_some_and(|h| h.contains(holder))
    }

    /// Pinned ids in id order, with their holders.
    pub fn all(&self) -> Vec<(BlockId, Vec<Holder>)> {
        self.by_id
            .iter()
            .map(|(id, h)| (*id, h.iter().cloned().collect()))
            .collect()
    }

    /// Ids `holder` holds, in id order.
    pub fn held_by(&self, holder: &Holder) -> Vec<BlockId> {
        self.by_id
            .iter()
            .filter(|(_, h)| h.contains(holder))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Pinned ids, in id order.
    pub fn ids(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.by_id.keys().copied()
    }

    /// The book as the pins file's text.
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.by_id.len() * 72);
        for (id, holders) in &self.by_id {
            for holder in holders {
                text.push_str(&id.to_string());
                text.push(' ');
                text.push_str(holder.as_str());
                text.push('\n');
            }
        }
        text
    }

    /// Reads the pins file's text; returns the book and the lines that were skipped
    /// (neither `<id>` nor `<id> <holder>`).
    pub fn from_text(text: &str) -> (PinBook, Vec<String>) {
        let mut book = PinBook::default();
        let mut skipped = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut words = line.split_whitespace();
            let id = words.next().and_then(|w| w.parse::<BlockId>().ok());
            let holder = match words.next() {
                None => Ok(Holder::admin()),
                Some(h) => h.parse(),
            };
            match (id, holder, words.next()) {
                (Some(id), Ok(holder), None) => {
                    book.add(id, &holder);
                }
                _ => skipped.push(line.to_owned()),
            }
        }
        book.dirty = false;
        (book, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> BlockId {
        BlockId([n; 32])
    }

    #[test]
    fn holder_names() {
        for good in [
            "admin",
            "backup:0123abcd",
            "a",
            "x.y_z@host-1",
            &"h".repeat(64),
        ] {
            assert!(good.parse::<Holder>().is_ok(), "{good}");
        }
        for bad in ["", " ", "a b", "a/b", "é", "a\nb", &"h".repeat(65), "a?b"] {
            assert!(bad.parse::<Holder>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_id_stays_pinned_until_its_last_holder_lets_go() {
        let (a, b): (Holder, Holder) = ("a".parse().unwrap(), "b".parse().unwrap());
        let mut book = PinBook::default();
        assert_eq!(book.add(id(1), &a), (true, true));
        assert_eq!(book.add(id(1), &b), (true, false));
        assert_eq!(book.add(id(1), &b), (false, false));
        assert_eq!(book.remove(&id(1), Some(&a)), (true, false));
        assert!(book.holds(&id(1), &b));
        assert_eq!(book.remove(&id(1), Some(&a)), (false, false));
        assert_eq!(book.remove(&id(1), Some(&b)), (true, true));
        assert_eq!(book.ids().count(), 0);
        book.add(id(2), &a);
        book.add(id(2), &b);
        assert_eq!(book.remove(&id(2), None), (true, true));
        assert_eq!(book.remove(&id(3), None), (false, true));
    }

    #[test]
    fn the_file_round_trips_and_reads_the_old_format() {
        let b: Holder = "backup:1".parse().unwrap();
        let mut book = PinBook::default();
        book.add(id(1), &Holder::admin());
        book.add(id(1), &b);
        book.add(id(2), &b);
        let (again, skipped) = PinBook::from_text(&book.to_text());
        assert!(skipped.is_empty());
        assert_eq!(again.all(), book.all());
        assert_eq!(again.held_by(&b), vec![id(1), id(2)]);
        assert!(!again.dirty);

        let old = format!(
            "{}\n\nnot-an-id\n{} a b\n{} bad/holder\n",
            id(5),
            id(6),
            id(7)
        );
        let (book, skipped) = PinBook::from_text(&old);
        assert_eq!(book.all(), vec![(id(5), vec![Holder::admin()])]);
        assert_eq!(skipped.len(), 3);
    }
}

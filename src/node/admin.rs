//! The node's peer-facing and admin use cases: checking a peer's request signature,
//! announcements, the peer list; and, behind the admin token, pins, local deletion and
//! per-block statistics. No HTTP types.

use std::time::Duration;

use crate::client::unix_now;
use crate::id::BlockId;
use crate::identity::{RequestTarget, SignatureFields, signature_keyid, verify_request};
use crate::mesh::{Announce, BlockStat, Event, Origin, PeersView};

use super::{Node, NodeError, blocking};

/// Time a pin of an absent block gives the mesh to find it.
pub const PIN_FETCH_BUDGET: Duration = Duration::from_secs(30);

/// Most rows in one page of `/stats`.
pub const MAX_STATS_PAGE: usize = 1000;

/// What a pin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PinOutcome {
    /// Whether the block is pinned now.
    pub pinned: bool,
    /// Whether this call changed that.
    pub changed: bool,
    /// Whether the block is held here now (a pinned absent block is fetched).
    pub local: bool,
}

/// One row of `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatRow {
    /// Block id.
    pub id: String,
    /// Held here.
    pub local: bool,
    /// Pinned here.
    pub pinned: bool,
    /// Decayed request count (what eviction weighs), when held.
    pub heat: Option<f32>,
    /// The counters.
    #[serde(flatten)]
    pub stat: BlockStat,
}

/// A page of `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsPage {
    /// Rows in id order (or by requests, for `top`).
    pub blocks: Vec<StatRow>,
    /// Cursor for the next page (`?after=`), None at the end.
    pub next: Option<String>,
    /// Blocks tracked in all.
    pub tracked: usize,
}

impl Node {
    /// True when `token` is the admin token (compared in constant time).
    pub fn is_admin(&self, token: &str) -> bool {
        let (a, b) = (token.as_bytes(), self.admin_token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Checks a request signed by a node: its key must be known here (a peer, or its
    /// identity block held), and the signature must be fresh and cover `target`.
    /// Returns the signer's id.
    pub fn verify_peer(
        &self,
        fields: &SignatureFields,
        target: &RequestTarget<'_>,
    ) -> Result<BlockId, NodeError> {
        let refuse = |why: String| {
            self.mesh.refused_signature();
            NodeError::PeerAuth(why)
        };
        let keyid = signature_keyid(&fields.input)
            .ok_or_else(|| refuse("no keyid in Signature-Input".into()))?;
        let id: BlockId = keyid
            .parse()
            .map_err(|_| refuse(format!("keyid {keyid:?} is not a node id")))?;
        let key = self
            .mesh
            .peer_key(&id)
            .ok_or_else(|| refuse(format!("unknown node {id}: push its identity block first")))?;
        verify_request(fields, &keyid, &key, unix_now(), target)
            .map_err(|e| refuse(e.to_string()))?;
        Ok(id)
    }

    /// Handles a verified `PUT /peers` from `from`.
    pub fn announce(&self, from: BlockId, body: &[u8]) -> Result<PeersView, NodeError> {
        let announce: Announce = serde_json::from_slice(body)
            .map_err(|e| NodeError::BadAnnounce(format!("not an announcement: {e}")))?;
        self.mesh
            .accept_announce(from, &announce)
            .map_err(|e| NodeError::BadAnnounce(e.to_string()))
    }

    /// `GET /peers`.
    pub fn peers(&self) -> PeersView {
        self.mesh.peers_view()
    }

    /// Pins `id`; an absent block is looked for in the mesh and kept when it arrives.
    pub async fn pin(&self, id: BlockId) -> Result<PinOutcome, NodeError> {
        let store = self.store.clone();
        let changed = blocking(move || store.set_pinned(id, true)).await??;
        let local = self.store.contains(&id).is_some();
        if !local {
            self.mesh.want(id, Origin::client(), PIN_FETCH_BUDGET);
        }
        Ok(PinOutcome {
            pinned: true,
            changed,
            local,
        })
    }

    /// Unpins `id`.
    pub async fn unpin(&self, id: BlockId) -> Result<PinOutcome, NodeError> {
        let store = self.store.clone();
        let changed = blocking(move || store.set_pinned(id, false)).await??;
        Ok(PinOutcome {
            pinned: false,
            changed,
            local: self.store.contains(&id).is_some(),
        })
    }

    /// Pinned ids.
    pub fn pins(&self) -> Vec<BlockId> {
        self.store.pins()
    }

    /// Deletes `id` here (and unpins it); peers' pushes of it are refused afterwards,
    /// until a client uploads it again. False when it was not held.
    pub async fn delete(&self, id: BlockId) -> Result<bool, NodeError> {
        let store = self.store.clone();
        let deleted = blocking(move || store.delete(&id)).await??;
        self.mesh.stats().record(&id, Event::Delete, unix_now());
        Ok(deleted)
    }

    /// A page of per-block statistics after `after`, in id order.
    pub fn stats_page(&self, after: Option<BlockId>, limit: usize) -> StatsPage {
        let (rows, next) = self
            .mesh
            .stats()
            .page(after, limit.clamp(1, MAX_STATS_PAGE));
        self.page_of(rows, next)
    }

    /// The `n` most requested blocks.
    pub fn stats_top(&self, n: usize) -> StatsPage {
        let rows = self.mesh.stats().top(n.clamp(1, MAX_STATS_PAGE));
        self.page_of(rows, None)
    }

    fn page_of(&self, rows: Vec<(BlockId, BlockStat)>, next: Option<BlockId>) -> StatsPage {
        StatsPage {
            blocks: rows
                .into_iter()
                .map(|(id, stat)| StatRow {
                    id: id.to_string(),
                    local: self.store.contains(&id).is_some(),
                    pinned: self.store.is_pinned(&id),
                    heat: self.store.heat(&id),
                    stat,
                })
                .collect(),
            next: next.map(|n| n.to_string()),
            tracked: self.mesh.stats().len(),
        }
    }
}

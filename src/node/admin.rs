//! The node's peer-facing and admin use cases: checking a peer's request signature,
//! announcements, the peer list; and, behind the admin token, pins, local deletion and
//! per-block statistics. No HTTP types.

use std::time::Duration;

use crate::client::unix_now;
use crate::id::BlockId;
use crate::identity::{RequestTarget, SignatureFields, signature_keyid, verify_request};
use crate::mesh::{Announce, BlockStat, Event, Origin, PeersView};

use crate::store::{Durability, Holder};

use super::{Node, NodeError, blocking};

/// Header of a `PUT /sha256/{id}` (with the admin token) that pins the block for the
/// holder it names, from before it is stored.
pub const PIN_HEADER: &str = "libernet-pin";

/// Longest time a pin made with an upload waits to reach the pins file.
pub const PIN_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Most ids one `POST /pins` may pin and unpin: about 1 MB of JSON, under the 1 MiB body cap.
pub const MAX_REPIN: usize = 15_000;

/// A batch of pin changes for one holder (`POST /pins`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repin {
    /// Whose pins change.
    pub holder: Holder,
    /// Ids to pin.
    #[serde(default)]
    pub pin: Vec<BlockId>,
    /// Ids to unpin.
    #[serde(default)]
    pub unpin: Vec<BlockId>,
}

/// What a `Repin` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Repinned {
    /// Pins added (ids the holder did not pin before).
    pub pinned: usize,
    /// Pins removed.
    pub unpinned: usize,
    /// Ids now pinned that are not held here (not fetched).
    pub absent: Vec<String>,
}

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
    /// Copies known: this node's, if held, and the peers known to hold it (see
    /// `Mesh::known_holders`).
    pub replicas: usize,
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

    /// Pins `id` for `holder`; an absent block is looked for in the mesh and kept when
    /// it arrives. With `only_if_held`, an absent block is neither pinned nor fetched
    /// (`local: false` says so): a client about to upload it asks this way.
    pub async fn pin(
        &self,
        id: BlockId,
        holder: Holder,
        only_if_held: bool,
    ) -> Result<PinOutcome, NodeError> {
        let store = self.store.clone();
        if only_if_held {
            let changed =
                blocking(move || store.pin_if_held(id, &holder, Durability::Soon)).await??;
            return Ok(PinOutcome {
                pinned: changed.is_some(),
                changed: changed.unwrap_or(false),
                local: changed.is_some(),
            });
        }
        let changed = blocking(move || store.pin(id, &holder, Durability::Now)).await??;
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

    /// Takes back `holder`'s pin of `id` (every holder's with `None`).
    pub async fn unpin(
        &self,
        id: BlockId,
        holder: Option<Holder>,
    ) -> Result<PinOutcome, NodeError> {
        let store = self.store.clone();
        let changed =
            blocking(move || store.unpin(&id, holder.as_ref(), Durability::Now)).await??;
        Ok(PinOutcome {
            pinned: self.store.is_pinned(&id),
            changed,
            local: self.store.contains(&id).is_some(),
        })
    }

    /// `POST /pins`: pins `change.pin` and unpins `change.unpin` for one holder, saved
    /// once. Absent blocks are pinned but not fetched (there may be thousands); the
    /// answer lists them.
    pub async fn repin(&self, change: Repin) -> Result<Repinned, NodeError> {
        if change.pin.len() + change.unpin.len() > MAX_REPIN {
            return Err(NodeError::BadRequest(format!(
                "at most {MAX_REPIN} ids in one change"
            )));
        }
        let store = self.store.clone();
        let (holder, pin, unpin) = (change.holder, change.pin, change.unpin);
        let (absent, pin) = blocking(move || {
            let (pinned, unpinned) = store.repin(&holder, &pin, &unpin)?;
            let absent: Vec<String> = pin
                .iter()
                .filter(|id| store.contains(id).is_none())
                .map(BlockId::to_string)
                .collect();
            Ok::<_, crate::store::StoreError>((absent, (pinned, unpinned)))
        })
        .await??;
        Ok(Repinned {
            pinned: pin.0,
            unpinned: pin.1,
            absent,
        })
    }

    /// Every pin with its holders, or only `holder`'s ids.
    pub fn pins(&self, holder: Option<&Holder>) -> Vec<(BlockId, Vec<Holder>)> {
        match holder {
            Some(h) => self
                .store
                .pins_of(h)
                .into_iter()
                .map(|id| (id, vec![h.clone()]))
                .collect(),
            None => self.store.pins(),
        }
    }

    /// Writes pins made since the last flush to the store's pins file.
    pub async fn flush_pins(&self) -> Result<(), NodeError> {
        let store = self.store.clone();
        blocking(move || store.flush_pins()).await??;
        Ok(())
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
                .map(|(id, stat)| {
                    let local = self.store.contains(&id).is_some();
                    StatRow {
                        id: id.to_string(),
                        local,
                        replicas: usize::from(local) + self.mesh.known_holders(&id),
                        pinned: self.store.is_pinned(&id),
                        heat: self.store.heat(&id),
                        stat,
                    }
                })
                .collect(),
            next: next.map(|n| n.to_string()),
            tracked: self.mesh.stats().len(),
        }
    }
}

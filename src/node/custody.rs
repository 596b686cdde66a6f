//! Custody on this node's side: which blocks a peer's batch check finds here
//! (`POST /sha256/holds`), and keeping them for the holders that ask (docs/mesh.md
//! "Custody").

use crate::id::BlockId;
use crate::proto::HoldState;
use crate::store::{Kept, StoreError};

use super::{Node, NodeError};

impl Node {
    /// Until when block `id` is kept here in custody, if it is.
    pub fn custody_until(&self, id: &BlockId) -> Option<u64> {
        self.store.custody_until(id)
    }

    /// Which of `ids` are held here now (a client's batch existence check).
    pub async fn held(&self, ids: &[BlockId]) -> Result<Vec<HoldState>, NodeError> {
        let ids = ids.to_vec();
        let states = super::store_work(&self.store, move |store| {
            ids.iter()
                .map(|id| match store.contains(id) {
                    Some(_) => HoldState::Held,
                    None => HoldState::Absent,
                })
                .collect()
        })
        .await?;
        Ok(states)
    }

    /// Which of `ids` are held here, for peer `from`; with `keep_until`, those held are
    /// also kept in custody until then where the custody share allows.
    pub async fn holds(
        &self,
        from: BlockId,
        ids: &[BlockId],
        keep_until: Option<u64>,
    ) -> Result<Vec<HoldState>, NodeError> {
        let ids = ids.to_vec();
        let deleted: Vec<bool> = ids
            .iter()
            .map(|id| self.mesh.stats().is_deleted(id))
            .collect();
        let states = super::store_work(&self.store, move |store| {
            let now = crate::clock::unix_now();
            ids.iter()
                .zip(deleted)
                .map(|(id, deleted)| match (store.contains(id), keep_until) {
                    (None, _) => Ok(HoldState::Absent),
                    // The operator deleted it here: never taken into custody again.
                    (Some(_), Some(_)) if deleted => Ok(HoldState::Held),
                    (Some(_), None) => Ok(HoldState::Held),
                    (Some(_), Some(until)) => match store.keep(*id, until, now) {
                        Ok(Kept::Absent) => Ok(HoldState::Absent),
                        Ok(_) => Ok(HoldState::Kept),
                        Err(StoreError::CustodyFull { .. }) => Ok(HoldState::Held),
                        Err(e) => Err(e),
                    },
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await??;
        if keep_until.is_some() {
            tracing::trace!(%from, n = states.len(), "custody renewed");
        }
        Ok(states)
    }
}

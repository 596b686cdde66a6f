//! Batches of blocks (`POST /sha256/batch`): many blocks checked against their ids and
//! stored with one group commit, from a client (optionally pinned for a holder) or as a
//! peer's push. Each block gets the outcome a single PUT of it would have had; a block
//! counts as stored only once the group it was written in is durable. Knows nothing of
//! frames or HTTP: the handler parses the body and hands over whole blocks.

use bytes::Bytes;

use super::{Metrics, Node, NodeError, as_block, push_heat, store_work};
use crate::id::BlockId;
use crate::mesh::Event;
use crate::store::{Admission, Durability, Holder, PutOutcome};

/// A batch block after its check: the block (inflated if it came compressed), its
/// admission, and whether the batch pinned it.
type Checked = Result<(Bytes, Admission, bool), NodeError>;

/// Who sent a batch, and so how its blocks are admitted.
#[derive(Debug, Clone)]
pub enum BatchSender {
    /// A client: blocks are uploads, pinned for the holder when one is named (the
    /// handler checked the admin token).
    Client {
        /// Pin every block for this holder before it is stored.
        pin: Option<Holder>,
    },
    /// A verified peer pushing blocks: offers, as a single push is (see
    /// `Node::accept_push`).
    Peer {
        /// The peer.
        from: BlockId,
        /// The blocks' heat at the sender.
        hint: f32,
        /// Custody asked until this unix second.
        keep_until: Option<u64>,
    },
}

impl Node {
    /// Stores a batch: one result per block, in order, each what a PUT of that block
    /// alone would have answered. Hashing, pinning and the group commit run on the
    /// blocking pool.
    pub async fn put_batch(
        &self,
        blocks: Vec<(BlockId, Bytes)>,
        sender: BatchSender,
    ) -> Vec<Result<PutOutcome, NodeError>> {
        self.ingest(blocks, sender)
            .await
            .into_iter()
            .map(|r| r.map(|(outcome, _)| outcome))
            .collect()
    }

    /// `put_batch`, also saying of each stored block whether this batch added its pin
    /// (false when the holder pinned it already, or no pin was asked).
    pub(super) async fn ingest(
        &self,
        blocks: Vec<(BlockId, Bytes)>,
        sender: BatchSender,
    ) -> Vec<Result<(PutOutcome, bool), NodeError>> {
        let count = blocks.len();
        let deleted: Vec<bool> = match sender {
            BatchSender::Peer { .. } => blocks
                .iter()
                .map(|(id, _)| self.mesh.stats().is_deleted(id))
                .collect(),
            BatchSender::Client { .. } => vec![false; count],
        };
        let bytes_in: u64 = blocks.iter().map(|(_, b)| b.len() as u64).sum();
        Metrics::add(&self.metrics.bytes_in, bytes_in);
        let intake = self.intake();
        let job = sender.clone();
        let done = store_work(&self.store, move |store| {
            let mut results: Vec<(BlockId, Checked)> = blocks
                .into_iter()
                .zip(deleted)
                .map(|((id, bytes), deleted)| {
                    let checked = if deleted {
                        Err(NodeError::Deleted(id))
                    } else {
                        let sha256 = BlockId::of(&bytes);
                        as_block(id, bytes, sha256)
                            .map(|block| (block, admission_for(&job, &store, &id), false))
                    };
                    (id, checked)
                })
                .collect();
            if let BatchSender::Client { pin: Some(holder) } = &job {
                for (id, item) in results.iter_mut() {
                    let Ok((_, _, pinned)) = item else { continue };
                    match store.pin(*id, holder, Durability::Soon) {
                        Ok(added) => *pinned = added,
                        Err(e) => *item = Err(NodeError::from(e)),
                    }
                }
            }
            let writes: Vec<(BlockId, &[u8], Admission)> = results
                .iter()
                .filter_map(|(id, item)| item.as_ref().ok().map(|(b, a, _)| (*id, &b[..], *a)))
                .collect();
            let mut puts = store.put_many(&writes).into_iter();
            let mut out = Vec::with_capacity(results.len());
            for (id, item) in results {
                let put = item.and_then(|(block, _, pinned)| {
                    let put = puts.next().unwrap_or_else(|| {
                        Err(crate::store::StoreError::Io {
                            context: "batch".into(),
                            source: std::io::Error::other("a result went missing"),
                        })
                    });
                    match (put, &job) {
                        (Ok(put), _) => Ok((block, put, pinned)),
                        (Err(e), BatchSender::Client { pin: Some(holder) }) if pinned => {
                            // The pin this batch added is taken back: nothing was kept.
                            if let Err(e) = store.unpin(&id, Some(holder), Durability::Soon) {
                                tracing::warn!(%id, error = %e, "taking back a failed batch block's pin");
                            }
                            Err(NodeError::from(e))
                        }
                        (Err(e), _) => Err(NodeError::from(e)),
                    }
                });
                out.push((id, put));
            }
            out
        })
        .await;
        let results = match done {
            Ok(results) => results,
            Err(e) => {
                let message = e.to_string();
                return (0..count)
                    .map(|_| Err(NodeError::Task(message.clone())))
                    .collect();
            }
        };
        let now = crate::clock::unix_now();
        results
            .into_iter()
            .map(|(id, result)| {
                let (block, put, pinned) = result.inspect_err(|e| {
                    if matches!(e, NodeError::HashMismatch(_)) {
                        Metrics::add(&self.metrics.puts_rejected, 1);
                    }
                })?;
                let outcome = put.outcome;
                intake.settled(id, &block, put, now);
                self.count_put(&id, outcome, &sender, now);
                Ok((outcome, pinned))
            })
            .collect()
    }

    /// The counters and stats of one stored batch block.
    fn count_put(&self, id: &BlockId, outcome: PutOutcome, sender: &BatchSender, now: u64) {
        match outcome {
            PutOutcome::Stored => Metrics::add(&self.metrics.puts_stored, 1),
            PutOutcome::AlreadyHeld => Metrics::add(&self.metrics.puts_held, 1),
        }
        match (sender, outcome) {
            (BatchSender::Client { .. }, _) => self.mesh.stats().record(id, Event::Upload, now),
            (BatchSender::Peer { from, .. }, PutOutcome::Stored) => {
                let counters = self.mesh.counters();
                counters
                    .pushes_received
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.mesh.stats().record(id, Event::PushIn, now);
                self.mesh.note_holder(from, id);
            }
            (BatchSender::Peer { .. }, PutOutcome::AlreadyHeld) => {}
        }
    }
}

/// The admission of one block of a batch from `sender` (see `Node::accept_push` for
/// pushes).
fn admission_for(sender: &BatchSender, store: &crate::store::Store, id: &BlockId) -> Admission {
    match sender {
        BatchSender::Client { .. } => Admission::UPLOAD,
        BatchSender::Peer {
            hint, keep_until, ..
        } => Admission {
            heat: push_heat(*hint),
            must_be_worth_it: keep_until.is_none() && !store.is_kept(id),
            keep_until: *keep_until,
        },
    }
}

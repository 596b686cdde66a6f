//! An in-memory transport for the mesh's unit tests: peers that hold blocks in maps and
//! answer the asks the mesh sends (`Get`, `Has`, `Offer`, `Holds`) as a node would,
//! logging every ask. No sockets, no signatures: the seam is `Transport`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use hyper::StatusCode;

use super::link::{Answer, AnswerFuture, Ask, IntroductionFuture, PeerLink, Transport};
use super::{Mesh, MeshSettings};
use crate::client::{ClientError, NodeKey};
use crate::id::BlockId;
use crate::identity::Identity;
use crate::proto::HoldState;
use crate::store::{DEFAULT_HALF_LIFE, Store, StoreLimits};

/// The peers' state, shared by their links.
#[derive(Default)]
pub struct Peers {
    /// Blocks each peer holds.
    pub holds: Mutex<HashMap<BlockId, Vec<Bytes>>>,
    /// Custody leases each peer was asked for: (peer, block) -> until.
    pub kept: Mutex<HashMap<(BlockId, BlockId), u64>>,
    /// Peers that never answer.
    pub silent: Mutex<Vec<BlockId>>,
    /// Peers that decline every offer (as a full node would, with 507).
    pub full: Mutex<Vec<BlockId>>,
    /// Every ask, in order, with the peer it went to.
    pub asked: Mutex<Vec<(BlockId, Ask)>>,
}

impl Peers {
    /// Whether `peer` holds `id`.
    pub fn holds(&self, peer: &BlockId, id: &BlockId) -> bool {
        self.holds
            .lock()
            .unwrap()
            .get(peer)
            .is_some_and(|blocks| blocks.iter().any(|b| BlockId::of(b) == *id))
    }

    /// Gives `peer` the block `bytes`.
    pub fn give(&self, peer: BlockId, bytes: Bytes) {
        self.holds
            .lock()
            .unwrap()
            .entry(peer)
            .or_default()
            .push(bytes);
    }

    /// The peers asked, in the order asked (a peer once per ask).
    pub fn order(&self) -> Vec<BlockId> {
        self.asked.lock().unwrap().iter().map(|(p, _)| *p).collect()
    }

    /// The asks `pick` selects, as (peer, what `pick` returns).
    pub fn asks<T>(&self, pick: impl Fn(&Ask) -> Option<T>) -> Vec<(BlockId, T)> {
        let asked = self.asked.lock().unwrap();
        asked
            .iter()
            .filter_map(|(p, a)| pick(a).map(|t| (*p, t)))
            .collect()
    }

    /// The blocks offered, one by one or in batches, as (peer, block id, custody
    /// asked).
    pub fn offers(&self) -> Vec<(BlockId, BlockId, Option<u64>)> {
        self.asks(|a| match a {
            Ask::Offer { id, keep_until, .. } => Some(vec![(*id, *keep_until)]),
            Ask::OfferMany {
                blocks, keep_until, ..
            } => Some(blocks.iter().map(|(id, _)| (*id, *keep_until)).collect()),
            _ => None,
        })
        .into_iter()
        .flat_map(|(p, offered)| offered.into_iter().map(move |(id, keep)| (p, id, keep)))
        .collect()
    }

    /// The blocks asked about one by one (`Has`), as (peer, block id).
    pub fn has_asks(&self) -> Vec<(BlockId, BlockId)> {
        self.asks(|a| match a {
            Ask::Has { id } => Some(*id),
            _ => None,
        })
    }

    /// The blocks asked about in batches without custody (`Holds`), as (peer, id).
    pub fn batch_checks(&self) -> Vec<(BlockId, BlockId)> {
        self.asks(|a| match a {
            Ask::Holds {
                ids,
                keep_until: None,
            } => Some(ids.clone()),
            _ => None,
        })
        .into_iter()
        .flat_map(|(p, ids)| ids.into_iter().map(move |id| (p, id)))
        .collect()
    }

    /// One push to `peer`, as a node would take it.
    fn offer(&self, peer: BlockId, id: &BlockId, block: &Bytes, keep_until: Option<u64>) -> Answer {
        if self.full.lock().unwrap().contains(&peer) {
            return Answer::Refused {
                status: StatusCode::INSUFFICIENT_STORAGE,
                reason: "full".into(),
            };
        }
        if BlockId::of(block) != *id {
            return Answer::Refused {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                reason: "hash mismatch".into(),
            };
        }
        if let Some(until) = keep_until {
            self.kept.lock().unwrap().insert((peer, *id), until);
        }
        if self.holds(&peer, id) {
            Answer::Held
        } else {
            self.give(peer, block.clone());
            Answer::Stored
        }
    }

    fn answer(&self, peer: BlockId, ask: &Ask) -> Answer {
        match ask {
            Ask::Get { id, .. } => {
                let holds = self.holds.lock().unwrap();
                let blocks = holds.get(&peer).cloned().unwrap_or_default();
                match blocks.into_iter().find(|b| BlockId::of(b) == *id) {
                    Some(bytes) => Answer::Block { bytes, hops: 0 },
                    None => Answer::Missing,
                }
            }
            Ask::Has { id } if self.holds(&peer, id) => Answer::Held,
            Ask::Has { .. } => Answer::Missing,
            Ask::Offer {
                id,
                block,
                keep_until,
                ..
            } => self.offer(peer, id, block, *keep_until),
            Ask::OfferMany {
                blocks, keep_until, ..
            } => Answer::Batch(
                blocks
                    .iter()
                    .map(
                        |(id, block)| match self.offer(peer, id, block, *keep_until) {
                            Answer::Stored => 201,
                            Answer::Held => 200,
                            Answer::Refused { status, .. } => status.as_u16(),
                            _ => 500,
                        },
                    )
                    .collect(),
            ),
            Ask::Holds { ids, keep_until } => Answer::Holds(
                ids.iter()
                    .map(|id| match (self.holds(&peer, id), keep_until) {
                        (false, _) => HoldState::Absent,
                        (true, None) => HoldState::Held,
                        (true, Some(until)) => {
                            self.kept.lock().unwrap().insert((peer, *id), *until);
                            HoldState::Kept
                        }
                    })
                    .collect(),
            ),
            _ => Answer::Refused {
                status: StatusCode::NOT_FOUND,
                reason: "not served by the fake".into(),
            },
        }
    }
}

struct Fake {
    peer: BlockId,
    peers: Arc<Peers>,
}

impl PeerLink for Fake {
    fn send(&self, ask: Ask, _timeout: Duration) -> AnswerFuture<'_> {
        let peers = &self.peers;
        peers.asked.lock().unwrap().push((self.peer, ask.clone()));
        if peers.silent.lock().unwrap().contains(&self.peer) {
            return Box::pin(std::future::pending());
        }
        let answer = peers.answer(self.peer, &ask);
        Box::pin(std::future::ready(Ok(answer)))
    }
}

impl Transport for Arc<Peers> {
    fn link(&self, _url: &str, peer: NodeKey, _me: Arc<Identity>) -> Arc<dyn PeerLink> {
        Arc::new(Fake {
            peer: peer.id,
            peers: self.clone(),
        })
    }

    fn introduce(&self, url: &str) -> IntroductionFuture<'_> {
        let url = url.to_owned();
        Box::pin(async move { Err(ClientError::Transport(format!("{url}: no such fake"))) })
    }
}

/// A mesh of this node (over a store in memory) and `n` in-memory peers; the peers' ids
/// (in the order added) and their shared state.
pub fn mesh_with(n: u8) -> (Arc<Mesh>, Vec<BlockId>, Arc<Peers>) {
    let limits = StoreLimits {
        quota: 1 << 30,
        hot_cache: 0,
        half_life: DEFAULT_HALF_LIFE,
        custody_share: 1 << 29,
    };
    let store = Arc::new(Store::in_memory(limits));
    let settings = MeshSettings {
        seeds: Vec::new(),
        gossip_interval: Duration::ZERO,
        push_interval: Duration::ZERO,
        repair_interval: Duration::ZERO,
    };
    let peers = Arc::new(Peers::default());
    let identity = Arc::new(Identity::from_seed(&[200; 32]));
    let mesh = Mesh::with_transport(
        identity,
        "http://me.test".into(),
        store,
        settings,
        Arc::new(peers.clone()),
    );
    let mut ids = Vec::new();
    for i in 0..n {
        let key = SigningKey::from_bytes(&[i + 1; 32]).verifying_key();
        let id = BlockId::of(key.as_bytes());
        mesh.add_peer(NodeKey { id, key }, &format!("http://peer{i}.test"));
        ids.push(id);
    }
    (mesh, ids, peers)
}

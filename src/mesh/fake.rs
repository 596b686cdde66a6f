//! An in-memory transport for the mesh's unit tests: peers that hold blocks in maps and
//! answer the requests the mesh sends (`GET`, `HEAD`, `PUT /sha256/<id>`) as a node
//! would, logging every request. No sockets, no signatures: the seam is `Transport`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use hyper::{HeaderMap, Method, StatusCode};

use super::link::{Call, PeerLink, ReplyFuture, Transport};
use super::{Mesh, MeshSettings};
use crate::client::{NodeKey, Reply};
use crate::id::BlockId;
use crate::identity::Identity;
use crate::proto::HOPS_HEADER;
use crate::store::{DEFAULT_HALF_LIFE, Store, StoreLimits};

/// The peers' state, shared by their links.
#[derive(Default)]
pub struct Peers {
    /// Blocks each peer holds.
    pub holds: Mutex<HashMap<BlockId, Vec<Bytes>>>,
    /// Peers that never answer.
    pub silent: Mutex<Vec<BlockId>>,
    /// Every request, in order, with the peer it went to.
    pub asked: Mutex<Vec<(BlockId, Call)>>,
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

    /// The peers asked, in the order asked (a peer once per request).
    pub fn order(&self) -> Vec<BlockId> {
        self.asked.lock().unwrap().iter().map(|(p, _)| *p).collect()
    }

    /// The requests with `method`, as (peer, path).
    pub fn requests(&self, method: &Method) -> Vec<(BlockId, String)> {
        let asked = self.asked.lock().unwrap();
        let calls = asked.iter().filter(|(_, c)| c.method == *method);
        calls.map(|(p, c)| (*p, c.path.clone())).collect()
    }
}

struct Fake {
    peer: BlockId,
    peers: Arc<Peers>,
}

/// The block id a `/sha256/<id>[?...]` path names.
fn id_in(path: &str) -> Option<BlockId> {
    let rest = path.strip_prefix("/sha256/")?;
    rest.split('?').next()?.parse().ok()
}

impl PeerLink for Fake {
    fn call(&self, call: Call) -> ReplyFuture<'_> {
        let peers = &self.peers;
        peers.asked.lock().unwrap().push((self.peer, call.clone()));
        if peers.silent.lock().unwrap().contains(&self.peer) {
            return Box::pin(std::future::pending());
        }
        let reply = |status: StatusCode, body: Bytes| Reply {
            status,
            headers: HeaderMap::new(),
            body,
        };
        let wanted = id_in(&call.path);
        let held = wanted.filter(|id| peers.holds(&self.peer, id));
        let answer = match (call.method.clone(), held) {
            (Method::GET, Some(id)) => {
                let holds = peers.holds.lock().unwrap();
                let blocks = holds.get(&self.peer).cloned().unwrap_or_default();
                let body = blocks.into_iter().find(|b| BlockId::of(b) == id);
                let mut r = reply(StatusCode::OK, body.unwrap_or_default());
                r.headers
                    .insert(HOPS_HEADER, hyper::header::HeaderValue::from_static("0"));
                r
            }
            (Method::HEAD, Some(_)) => reply(StatusCode::OK, Bytes::new()),
            (Method::PUT, Some(_)) => reply(StatusCode::OK, Bytes::new()),
            (Method::PUT, None) if wanted == Some(BlockId::of(&call.body)) => {
                let mut holds = peers.holds.lock().unwrap();
                holds.entry(self.peer).or_default().push(call.body.clone());
                reply(StatusCode::CREATED, Bytes::new())
            }
            (Method::PUT, None) => reply(StatusCode::UNPROCESSABLE_ENTITY, Bytes::new()),
            _ => reply(StatusCode::GATEWAY_TIMEOUT, Bytes::new()),
        };
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
}

/// A mesh of this node (over a store in `dir`) and `n` in-memory peers; the peers' ids
/// (in the order added) and their shared state.
pub fn mesh_with(n: u8, dir: &Path) -> (Arc<Mesh>, Vec<BlockId>, Arc<Peers>) {
    let limits = StoreLimits {
        quota: 1 << 30,
        hot_cache: 0,
        half_life: DEFAULT_HALF_LIFE,
        custody_share: 1 << 29,
    };
    let store = Arc::new(Store::open(dir, limits).unwrap());
    let settings = MeshSettings {
        seeds: Vec::new(),
        gossip_interval: Duration::ZERO,
        push_interval: Duration::ZERO,
        max_waiters: 100,
        waiter_memory: 1 << 20,
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

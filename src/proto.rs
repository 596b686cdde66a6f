//! The wire contract between nodes and clients, written once: the names of the
//! protocol's own headers and routes, the JSON bodies of `/node`, `/peers`,
//! announcements and batch existence checks, and the LIKE answer's shape. The server
//! (`http`, `node`), the client and the mesh all use these; nothing here knows how a
//! request travels. The bottom layer: it depends only on `id`.

use crate::id::BlockId;

/// Header of a forwarded request: forwards the receiver may still make (0: answer
/// from the local store only). Honoured only on requests signed by a known peer.
pub const HOPS_HEADER: &str = "libernet-hops";

/// Header of a forwarded request: the id of the original request, for loop detection.
pub const REQUEST_HEADER: &str = "libernet-request";

/// Header of a push (a PUT from a peer): the block's heat at the sender. Makes the PUT
/// an offer that the receiver may decline with 507.
pub const PUSH_HEADER: &str = "libernet-push";

/// Header of a push: the unix second until which the sender asks the receiver to keep
/// the block in custody (protected from eviction; see docs/mesh.md "Custody"). The
/// sender renews it while a holder somewhere keeps the block pinned.
pub const KEEP_HEADER: &str = "libernet-keep";

/// `POST` (signed by a peer): which of many ids the receiver holds, optionally renewing
/// custody of those it holds (`Holds`, answered with `HoldsAnswer`).
pub const HOLDS_PATH: &str = "/sha256/holds";

/// Most ids in one `POST /sha256/holds` (about 70 KiB of JSON).
pub const MAX_HOLDS_IDS: usize = 1024;

/// The body of `POST /sha256/holds`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holds {
    /// Block ids, hex.
    pub ids: Vec<String>,
    /// When set, the receiver also keeps each block it holds in custody until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_until: Option<u64>,
}

/// The answer to `POST /sha256/holds`: one character per id asked, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HoldsAnswer {
    /// `-` not held, `h` held (custody not asked, or refused: over the receiver's
    /// custody share), `k` held and in custody at least until `keep_until`.
    pub state: String,
}

/// One id's state in a `HoldsAnswer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    /// Not held.
    Absent,
    /// Held, not (or not longer) in custody as asked.
    Held,
    /// Held and kept in custody as asked.
    Kept,
}

impl HoldState {
    /// The answer's character for this state.
    pub fn as_char(self) -> char {
        match self {
            HoldState::Absent => '-',
            HoldState::Held => 'h',
            HoldState::Kept => 'k',
        }
    }

    /// The state a character names (anything unknown counts as absent).
    pub fn from_char(c: char) -> HoldState {
        match c {
            'h' => HoldState::Held,
            'k' => HoldState::Kept,
            _ => HoldState::Absent,
        }
    }
}

/// The body of a LIKE answer (`GET /sha256/like/{id}`): `{"/sha256/<id>": size, ...}`,
/// best match first (JSON objects carry no order: readers sort by distance again).
pub fn like_body(found: &[(BlockId, u32)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + found.len() * 86);
    body.push(b'{');
    let mut hex = [0u8; 64];
    for (i, (id, size)) in found.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"\"/sha256/");
        // Cannot fail: the buffer is twice the id's length.
        let _ = hex::encode_to_slice(id.as_bytes(), &mut hex);
        body.extend_from_slice(&hex);
        body.extend_from_slice(b"\":");
        body.extend_from_slice(size.to_string().as_bytes());
    }
    body.push(b'}');
    body
}

/// The ids and sizes of a LIKE answer, in the body's order; `None` when it is not one.
/// Keys that are not `/sha256/<id>` are skipped.
pub fn like_answer_ids(body: &[u8]) -> Option<Vec<(BlockId, u64)>> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    Some(
        map.into_iter()
            .filter_map(|(key, size)| {
                let hex = key.strip_prefix("/sha256/")?;
                Some((hex.parse().ok()?, size.as_u64()?))
            })
            .collect(),
    )
}

/// Header of a `PUT /sha256/{id}` (with the admin token) that pins the block for the
/// holder it names, from before it is stored.
pub const PIN_HEADER: &str = "libernet-pin";

/// `/node`: who this node is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// Node id: SHA-256 of the identity block, hex.
    pub id: String,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// The identity block, as text (it is compact JSON).
    pub identity_block: String,
    /// Where this node is reached.
    pub url: String,
    /// Software version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Store figures.
    pub store: StoreInfo,
}

/// The `store` part of `/node`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoreInfo {
    /// Blocks held.
    pub blocks: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Quota in bytes.
    pub quota: u64,
    /// Bytes that can still be stored: what the quota leaves, or what the file system
    /// has left when that is less.
    pub free: u64,
    /// Bytes of blocks kept in custody for the mesh (absent from older nodes: 0).
    #[serde(default)]
    pub custody_bytes: u64,
    /// Blocks kept in custody.
    #[serde(default)]
    pub custody_blocks: u64,
    /// Most bytes custody copies may take (`--custody-share` of the quota).
    #[serde(default)]
    pub custody_share: u64,
}

/// The body of `PUT /peers`: who is announcing, where it is, whom it knows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// The announcing node's id (must be the signature's `keyid`).
    pub id: String,
    /// Its base URL.
    pub url: String,
    /// Peers it knows.
    #[serde(default)]
    pub peers: Vec<PeerRef>,
}

/// A peer named in an announcement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PeerRef {
    /// Node id.
    pub id: String,
    /// Base URL.
    pub url: String,
}

/// One row of `GET /peers`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PeerView {
    /// Node id.
    pub id: String,
    /// Base URL.
    pub url: String,
    /// Unix seconds of the last successful exchange.
    pub last_seen: u64,
    /// `ok`, `failing` or `backoff`.
    pub health: String,
    /// Average latency of requests to it, ms.
    pub latency_ms: Option<f64>,
    /// Consecutive failures.
    pub failures: u32,
    /// Body bytes received from it.
    pub bytes_in: u64,
    /// Body bytes sent to it.
    pub bytes_out: u64,
}

/// One `--peer` seed in `GET /peers`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SeedView {
    /// The seed's URL, as configured.
    pub url: String,
    /// `joined` (a peer now: see its row), `failing` (the last attempt failed),
    /// `pending` (not tried yet, or dropped as a peer and not tried again yet) or
    /// `self` (this node's own URL, never contacted).
    pub state: String,
    /// Attempts that failed since the last success.
    pub failures: u32,
    /// Why the last attempt failed, in this node's words (the OS's are in its log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<u64>,
}

/// `GET /peers` (and the answer to `PUT /peers`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PeersView {
    /// This node's id.
    pub id: String,
    /// This node's URL.
    pub url: String,
    /// Its peers, nearest to its id first.
    pub peers: Vec<PeerView>,
    /// Its `--peer` seeds and how joining them went, in the configured order: in
    /// `GET /peers` only (absent from an announcement's answer, and from older nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<SeedView>>,
}

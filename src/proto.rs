//! The wire contract between nodes and clients, written once: the names of the
//! protocol's own headers and the JSON bodies of `/node`, `/peers` and announcements.
//! The server (`http`, `node`), the client and the mesh all use these; nothing here
//! knows how a request travels. The bottom layer: it depends on no other module.

/// Header of a forwarded request: forwards the receiver may still make (0: answer
/// from the local store only). Honoured only on requests signed by a known peer.
pub const HOPS_HEADER: &str = "libernet-hops";

/// Header of a forwarded request: the id of the original request, for loop detection.
pub const REQUEST_HEADER: &str = "libernet-request";

/// Header of a push (a PUT from a peer): the block's heat at the sender. Makes the PUT
/// an offer that the receiver may decline with 507.
pub const PUSH_HEADER: &str = "libernet-push";

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

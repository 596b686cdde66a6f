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

/// `POST`: many blocks in one request, stored with one group commit (`BatchAnswer`).
/// The body is frames back to back, each `id (32 bytes) | length (u32, big-endian) |
/// bytes` (`encode_frame`, `FrameReader`).
pub const BATCH_PATH: &str = "/sha256/batch";

/// Media type of a batch body (informative: the node does not require it).
pub const BATCH_MEDIA_TYPE: &str = "application/vnd.libernet.blocks";

/// Most frames in one batch: the answer stays small (a few KiB of JSON) and one group
/// commit covers a bounded number of files.
pub const MAX_BATCH_BLOCKS: usize = 1024;

/// Most block bytes in one batch (32 MiB): bounds what one request holds in memory
/// before its group commit, and what a client re-sends when a batch fails.
pub const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Bytes of a frame's header: the id and the length.
pub const FRAME_HEADER: usize = 36;

/// Largest batch body: every frame at its header plus the byte bound.
pub const MAX_BATCH_BODY: u64 = (MAX_BATCH_BYTES + MAX_BATCH_BLOCKS * FRAME_HEADER) as u64;

/// Appends one frame (`id | length | bytes`) to `out`.
pub fn encode_frame(out: &mut Vec<u8>, id: &BlockId, bytes: &[u8]) {
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Why reading a batch stopped before its body ended at a frame boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStop {
    /// The body ended inside a frame.
    Truncated,
    /// A frame's length is over the largest block.
    TooLarge,
    /// A frame past `MAX_BATCH_BLOCKS`, or past `MAX_BATCH_BYTES` of block bytes.
    TooMany,
}

impl BatchStop {
    /// The stable code of this stop in an answer.
    pub fn code(self) -> &'static str {
        match self {
            BatchStop::Truncated => "truncated",
            BatchStop::TooLarge => "too_large",
            BatchStop::TooMany => "too_many",
        }
    }
}

/// Where and why a batch stopped (see `BatchAnswer::stopped`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchStopped {
    /// Index of the first frame not read: no frame from here on is listed or stored.
    pub at: usize,
    /// Why.
    pub error: BatchStop,
    /// For people.
    pub message: String,
}

/// A frame's failure in a `BatchAnswer`: the code and message a single PUT would give.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchError {
    /// Stable error code (as in every JSON error body).
    pub error: String,
    /// For people.
    pub message: String,
}

/// The answer to `POST /sha256/batch`. Every frame answered 201 or 200 was durable
/// before the answer was sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BatchAnswer {
    /// Per frame read, in order: the status a single PUT of it would have had.
    pub results: Vec<u16>,
    /// Frames stored now (201).
    pub stored: usize,
    /// Frames already held (200).
    pub held: usize,
    /// Frames refused (any other status).
    pub failed: usize,
    /// The refusals, keyed by frame index (decimal).
    #[serde(default)]
    pub errors: std::collections::BTreeMap<String, BatchError>,
    /// None when the body ended at a frame boundary.
    #[serde(default)]
    pub stopped: Option<BatchStopped>,
}

/// What `FrameReader::next_frame` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole frame: the id it claims and the bytes (not yet checked against it).
    Block(BlockId, bytes::Bytes),
    /// Not enough bytes buffered yet for the next frame.
    NeedMore,
    /// Reading must stop here (see `BatchStop`).
    Stop(BatchStop),
}

/// Splits a batch body into frames as its pieces arrive, enforcing the batch bounds.
/// Holds at most one frame's bytes plus one piece.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: bytes::BytesMut,
    frames: usize,
    bytes: usize,
}

impl FrameReader {
    /// A reader at the start of a body.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Adds the next piece of the body.
    pub fn push(&mut self, piece: &[u8]) {
        self.buf.extend_from_slice(piece);
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Frames returned so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The next whole frame, `NeedMore`, or why to stop. A frame is checked against the
    /// bounds from its header alone, before its bytes are waited for.
    pub fn next_frame(&mut self) -> Frame {
        if self.buf.len() < FRAME_HEADER {
            return Frame::NeedMore;
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&self.buf[..32]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[32..FRAME_HEADER]);
        let len = u32::from_be_bytes(len) as usize;
        if len > crate::id::MAX_BLOCK_SIZE {
            return Frame::Stop(BatchStop::TooLarge);
        }
        if self.frames >= MAX_BATCH_BLOCKS || self.bytes + len > MAX_BATCH_BYTES {
            return Frame::Stop(BatchStop::TooMany);
        }
        if self.buf.len() < FRAME_HEADER + len {
            return Frame::NeedMore;
        }
        let _ = self.buf.split_to(FRAME_HEADER);
        let bytes = self.buf.split_to(len).freeze();
        self.frames += 1;
        self.bytes += len;
        Frame::Block(BlockId(id), bytes)
    }

    /// Called at the end of the body: `None` when it ended at a frame boundary.
    pub fn finish(&self) -> Option<BatchStop> {
        (!self.buf.is_empty()).then_some(BatchStop::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sizes: &[usize]) -> (Vec<(BlockId, Vec<u8>)>, Vec<u8>) {
        let mut body = Vec::new();
        let blocks: Vec<(BlockId, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let bytes = vec![i as u8; n];
                (BlockId::of(&bytes), bytes)
            })
            .collect();
        for (id, bytes) in &blocks {
            encode_frame(&mut body, id, bytes);
        }
        (blocks, body)
    }

    fn read_all(body: &[u8], piece: usize) -> (Vec<(BlockId, Vec<u8>)>, Option<BatchStop>) {
        let mut reader = FrameReader::new();
        let mut out = Vec::new();
        for chunk in body.chunks(piece.max(1)) {
            reader.push(chunk);
            loop {
                match reader.next_frame() {
                    Frame::Block(id, bytes) => out.push((id, bytes.to_vec())),
                    Frame::NeedMore => break,
                    Frame::Stop(stop) => return (out, Some(stop)),
                }
            }
        }
        (out, reader.finish())
    }

    #[test]
    fn frames_come_back_whole_whatever_the_pieces() {
        let (blocks, body) = frames(&[0, 1, 4096, crate::id::MAX_BLOCK_SIZE, 7]);
        for piece in [1, 3, 35, 36, 37, 4096, 1 << 20, body.len()] {
            assert_eq!(
                read_all(&body, piece),
                (blocks.clone(), None),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn a_body_cut_inside_a_frame_is_truncated_after_the_whole_ones() {
        let (blocks, body) = frames(&[10, 20, 30]);
        for cut in [1, 35, 36, 36 + 9, 46 + 36 + 19] {
            let (got, stop) = read_all(&body[..body.len() - cut], 7);
            assert!(got.len() < blocks.len(), "cut {cut}");
            assert_eq!(got[..], blocks[..got.len()], "cut {cut}");
            assert_eq!(stop, Some(BatchStop::Truncated), "cut {cut}");
        }
    }

    #[test]
    fn a_frame_over_the_block_bound_stops_before_its_bytes() {
        let (_, mut body) = frames(&[5]);
        body.extend_from_slice(&[0u8; 32]);
        body.extend_from_slice(&((crate::id::MAX_BLOCK_SIZE + 1) as u32).to_be_bytes());
        let (got, stop) = read_all(&body, 1000);
        assert_eq!(got.len(), 1);
        assert_eq!(stop, Some(BatchStop::TooLarge));
    }

    #[test]
    fn frames_past_the_count_bound_stop_the_batch() {
        let (_, body) = frames(&vec![0; MAX_BATCH_BLOCKS + 2]);
        let (got, stop) = read_all(&body, 4096);
        assert_eq!(got.len(), MAX_BATCH_BLOCKS);
        assert_eq!(stop, Some(BatchStop::TooMany));
    }

    #[test]
    fn an_answer_round_trips_through_json() {
        let mut answer = BatchAnswer {
            results: vec![201, 200, 422],
            stored: 1,
            held: 1,
            failed: 1,
            ..BatchAnswer::default()
        };
        answer.errors.insert(
            "2".into(),
            BatchError {
                error: "hash_mismatch".into(),
                message: "no".into(),
            },
        );
        answer.stopped = Some(BatchStopped {
            at: 3,
            error: BatchStop::Truncated,
            message: "cut".into(),
        });
        let text = serde_json::to_string(&answer).expect("serializes");
        assert!(text.contains("\"error\":\"truncated\""), "{text}");
        let back: BatchAnswer = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, answer);
    }
}

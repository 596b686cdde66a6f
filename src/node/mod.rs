//! The node's use cases: get, head, put and LIKE for blocks, pushes and announcements
//! from peers, admin pin/unpin/delete and statistics, the node's identity and figures,
//! and the background scrub. Composes the store, the identity and the mesh. No HTTP
//! types: the `http` module translates requests into these calls and their errors into
//! statuses.

mod admin;
mod batch;
mod content;
mod custody;
mod history;
mod metrics;
pub mod summary;
mod survey;
mod upload;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::Instant;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

pub use admin::{MAX_REPIN, PIN_FLUSH_INTERVAL, PinOutcome, Repin, Repinned, StatRow, StatsPage};
pub use batch::BatchSender;
pub use content::{
    DEFAULT_CONTENT_CACHE, FileStream, Opened, PREFETCH_BLOCKS, Parts, SERVE_LIMITS,
    SERVE_MAX_ENTRIES, SERVE_MAX_MANIFEST_BYTES, SERVE_MAX_SUB_BUNDLES, StreamGuard,
};
pub use history::{HISTORY_POINTS, HISTORY_STEP, Point, Totals};
pub use metrics::{Gauges, Metrics};
pub use survey::{Figures, MeshTotals, MeshView, NodeRow, SURVEY_TIMEOUT, SURVEY_TTL};
pub use upload::{BundleUpload, MAX_UPLOAD_FILES, Uploaded};

use crate::arrivals::{Arrivals, Outcome, TooManyWaiters};
use crate::config::Config;
use crate::fsutil;
use crate::id::{BlockId, MAX_BLOCK_SIZE};
use crate::identity::{Identity, IdentityError};
use crate::mesh::{Event, Mesh, MeshSettings, Origin};
use crate::proto::{NodeInfo, StoreInfo};
use crate::store::{
    Admission, Durability, Holder, PutOutcome, ReadOutcome, Store, StoreError, StoreLimits,
    StoreStats,
};

pub use crate::store::ADMIN_TOKEN_FILE;

/// LIKE answers list ids sharing at least this many leading bits with the target.
pub const LIKE_MIN_BITS: u32 = 12;

/// LIKE answers list at most this many ids.
pub const LIKE_MAX_RESULTS: usize = 100;

/// Blocks up to this size are read on the async worker itself: a page-cache read of
/// 64 KiB takes a few microseconds, far less than handing it to the blocking pool and
/// back (two thread wake-ups). Larger blocks go to the blocking pool.
pub const INLINE_READ_MAX: u32 = 64 * 1024;

/// Blocks re-hashed per scrub step (one blocking task each).
const SCRUB_BATCH: usize = 32;

/// Pause between two full passes of the scrub.
const SCRUB_PASS_PAUSE: Duration = Duration::from_secs(3600);

/// The scrub counts each block as this many bytes on top of its size: opening and
/// reading a file costs about as much as hashing tens of KiB, and without this a store
/// of tiny blocks would be scrubbed at thousands of files a second.
const SCRUB_BLOCK_COST: u64 = 64 * 1024;

/// The scrub starts this long after the node, leaving start-up and first requests alone.
const SCRUB_START_DELAY: Duration = Duration::from_secs(60);

/// Time a lookup for a good copy of a quarantined block may take.
const QUARANTINE_REFETCH: Duration = Duration::from_secs(30);

/// Most heat a push may bring (a peer's hint is halved, then capped): a peer cannot
/// make a block look more popular than this many recent requests.
pub const MAX_PUSH_HEAT: f32 = 64.0;

/// Errors of node use cases; `http::error` maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The uploaded bytes (or their inflated form) do not hash to the id.
    #[error("the body does not hash to {0} (nor does its zlib inflation)")]
    HashMismatch(BlockId),
    /// An upload over 1 MiB.
    #[error("a block is at most {MAX_BLOCK_SIZE} bytes")]
    TooLarge,
    /// The store is full: of blocks that cannot be evicted, or its file system is.
    #[error("store full: {0}")]
    Full(String),
    /// The block is not here and did not arrive in time.
    #[error("block {id} not found within {} ms", waited.as_millis())]
    NotFound {
        /// The id asked for.
        id: BlockId,
        /// How long the request waited.
        waited: Duration,
        /// Peers asked.
        asked: Vec<String>,
    },
    /// The key does not decrypt the block (or the block is not what the URL names).
    #[error("the key does not decrypt block {0}")]
    WrongKey(BlockId),
    /// A bundle manifest is malformed, or disagrees with its blocks.
    #[error("bad bundle: {0}")]
    BadBundle(String),
    /// Files sent to be stored as a bundle that cannot be one.
    #[error("bad upload: {0}")]
    BadUpload(String),
    /// Too many requests waiting already.
    #[error(transparent)]
    Busy(#[from] TooManyWaiters),
    /// A push from a peer was not kept: nothing worth less could make room.
    #[error("push declined: no room for a block worth this little")]
    Declined,
    /// The operator deleted this block here; peers may not push it back.
    #[error("block {0} was deleted here by the operator")]
    Deleted(BlockId),
    /// The block may not be deleted (an identity block).
    #[error("block {0} is an identity block and may not be deleted")]
    Protected(BlockId),
    /// A signed request whose signature does not check out.
    #[error("peer signature refused: {0}")]
    PeerAuth(String),
    /// A malformed request the HTTP layer could not tell (too many ids, say).
    #[error("{0}")]
    BadRequest(String),
    /// A malformed or unacceptable announcement.
    #[error("bad announcement: {0}")]
    BadAnnounce(String),
    /// A store failure (I/O); details are logged, not sent.
    #[error(transparent)]
    Store(StoreError),
    /// The identity could not be loaded or created.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A blocking task failed to run.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> NodeError {
        match e {
            // Out of room under the quota or on the file system: the same `507` either
            // way, and the node carries on (a deletion or eviction frees room).
            StoreError::Full { .. }
            | StoreError::DiskFull { .. }
            | StoreError::CustodyFull { .. } => NodeError::Full(e.to_string()),
            StoreError::TooLarge(_) => NodeError::TooLarge,
            StoreError::Declined => NodeError::Declined,
            StoreError::Protected(id) => NodeError::Protected(id),
            other => NodeError::Store(other),
        }
    }
}

/// A request body read in full, with its SHA-256 computed while it streamed in.
#[derive(Debug, Clone)]
pub struct Upload {
    bytes: Bytes,
    sha256: BlockId,
}

impl Upload {
    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The body's SHA-256.
    pub fn sha256(&self) -> BlockId {
        self.sha256
    }
}

/// Builds an `Upload` from body chunks as they arrive.
pub struct UploadHasher {
    buf: BytesMut,
    hasher: Sha256,
}

impl UploadHasher {
    /// A hasher expecting about `len` bytes.
    pub fn new(len: usize) -> UploadHasher {
        UploadHasher {
            buf: BytesMut::with_capacity(len.min(MAX_BLOCK_SIZE)),
            hasher: Sha256::new(),
        }
    }

    /// Adds a chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True before the first byte.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The whole body and its hash.
    pub fn finish(self) -> Upload {
        Upload {
            sha256: BlockId(self.hasher.finalize().into()),
            bytes: self.buf.freeze(),
        }
    }
}

/// A block and how far away it was found (0: held here or delivered here).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bytes; they hash to the id asked for.
    pub bytes: Bytes,
    /// Hops to the node that had it.
    pub hops: u32,
}

/// One node: a store, an identity and a mesh.
pub struct Node {
    store: Arc<Store>,
    /// Requests waiting for absent blocks.
    arrivals: Arc<Arrivals>,
    identity: Arc<Identity>,
    mesh: Arc<Mesh>,
    metrics: Arc<Metrics>,
    /// The last 15 minutes of activity (see `history`).
    history: Arc<std::sync::Mutex<history::History>>,
    content: content::ContentCaches,
    /// The last `/mesh` survey (see `survey`).
    survey: survey::SurveyCache,
    url: String,
    started: Instant,
    admin_token: String,
    /// The mesh's bandwidth limits (also charged for answers to peers).
    rates: crate::mesh::rate::MeshRates,
}

impl Node {
    /// Opens the store of `config` (taking its lock), loads or creates the identity and
    /// the admin token, and stores the identity block, protected from eviction. The node
    /// is reached at `url`; call `start` to join the mesh.
    pub fn open(config: &Config, url: String) -> Result<Node, NodeError> {
        let limits = StoreLimits {
            quota: config.quota,
            hot_cache: config.hot_cache,
            half_life: config.half_life,
            custody_share: crate::store::share_of(config.quota, config.custody_share),
        };
        let store = Arc::new(Store::open(&config.store, limits)?);
        let identity = Arc::new(Identity::load_or_create(&config.store)?);
        let admin_token = admin_token(&config.store).map_err(|source| {
            NodeError::Store(StoreError::Io {
                context: format!("admin token in {}", config.store.display()),
                source,
            })
        })?;
        let settings = MeshSettings {
            seeds: config.peers.clone(),
            gossip_interval: config.gossip_interval,
            push_interval: config.push_interval,
            repair_interval: config.repair_interval,
        };
        let rates =
            crate::mesh::rate::MeshRates::new(config.max_upload_rate, config.max_download_rate);
        let transport = rates.wrap(Arc::new(crate::mesh::link::HttpTransport));
        let mesh = Mesh::with_transport(
            identity.clone(),
            url.clone(),
            store.clone(),
            settings,
            transport,
        );
        let arrivals = Arrivals::new(config.max_waiters, config.waiter_memory);
        let mut node = Node::compose(store, identity, mesh, arrivals, url, admin_token)?;
        node.rates = rates;
        node.content = content::ContentCaches::with_plain_cache(config.content_cache);
        Ok(node)
    }

    /// A node without a config or a disk: `identity` over `store` (typically
    /// `Store::in_memory`), reaching its peers through `transport`. The same node as
    /// `open` builds, for in-process meshes (`sim`) and tests; its admin token is random
    /// and kept nowhere, and its waiters have the default limits. Call `start` to join
    /// the mesh.
    pub fn in_process(
        identity: Arc<Identity>,
        url: String,
        store: Arc<Store>,
        settings: MeshSettings,
        transport: Arc<dyn crate::mesh::link::Transport>,
    ) -> Result<Node, NodeError> {
        let mut token = [0u8; 32];
        fsutil::random_bytes(&mut token).map_err(|source| {
            NodeError::Store(StoreError::Io {
                context: "admin token".into(),
                source,
            })
        })?;
        let mesh = Mesh::with_transport(
            identity.clone(),
            url.clone(),
            store.clone(),
            settings,
            transport,
        );
        let arrivals = Arrivals::new(
            crate::config::DEFAULT_MAX_WAITERS,
            crate::config::DEFAULT_WAITER_MEMORY,
        );
        Node::compose(store, identity, mesh, arrivals, url, hex::encode(token))
    }

    /// The node over its parts: the identity block stored and protected from eviction,
    /// the store's valuer centred on the node id.
    fn compose(
        store: Arc<Store>,
        identity: Arc<Identity>,
        mesh: Arc<Mesh>,
        arrivals: Arrivals,
        url: String,
        admin_token: String,
    ) -> Result<Node, NodeError> {
        let id = identity.id();
        store.valuer().set_home(id);
        if store.contains(&id).is_none() {
            store.put(&id, identity.block())?;
        }
        store.protect(id);
        Ok(Node {
            store,
            arrivals: Arc::new(arrivals),
            identity,
            mesh,
            metrics: Arc::default(),
            history: Arc::default(),
            content: content::ContentCaches::new(),
            survey: tokio::sync::Mutex::new(None),
            url,
            started: Instant::now(),
            admin_token,
            rates: Default::default(),
        })
    }

    /// Starts the mesh's background work: joining the seeds, gossip, pushes. Needs a
    /// tokio runtime.
    pub fn start(&self) {
        self.mesh.start();
        // Samples the counters for the dashboard's charts; ends with the node.
        let (metrics, history) = (Arc::downgrade(&self.metrics), self.history.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HISTORY_STEP);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(metrics) = metrics.upgrade() else {
                    return;
                };
                history::sample(&metrics, &history);
            }
        });
        // Saves pins made with uploads and custody lease changes; ends with the store.
        let store = Arc::downgrade(&self.store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(admin::PIN_FLUSH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                let flushed =
                    crate::store::off_worker(&store, |s| (s.flush_pins(), s.flush_custody())).await;
                if let Ok((pins, custody)) = flushed {
                    if let Err(e) = pins {
                        tracing::error!(error = %e, "cannot save the pins");
                    }
                    if let Err(e) = custody {
                        tracing::error!(error = %e, "cannot save the custody leases");
                    }
                }
            }
        });
    }

    /// The mesh's bandwidth limits (`--max-upload-rate`, `--max-download-rate`).
    pub fn rates(&self) -> &crate::mesh::rate::MeshRates {
        &self.rates
    }

    /// The node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The mesh.
    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    /// Counters, for the HTTP layer to add to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The block `id`, from the store or, within `wait`, from the mesh or an arrival,
    /// for a client of this node. The bytes hash to `id`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn get_block(&self, id: BlockId, wait: Duration) -> Result<Bytes, NodeError> {
        Ok(self.fetch(id, wait, Origin::client()).await?.bytes)
    }

    /// The block `id` for a request from `origin`, and how far away it was found.
    pub async fn fetch(
        &self,
        id: BlockId,
        wait: Duration,
        origin: Origin,
    ) -> Result<Fetched, NodeError> {
        self.find(
            id,
            wait,
            origin,
            false,
            |node| async move {
                Ok(node
                    .read_local(id)
                    .await?
                    .map(|bytes| Fetched { bytes, hops: 0 }))
            },
            |bytes, hops| Fetched { bytes, hops },
        )
        .await
    }

    /// The size of block `id` if held now or arrived within `wait` (no file read), for
    /// a request from `origin`.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn block_size(
        &self,
        id: BlockId,
        wait: Duration,
        origin: Origin,
    ) -> Result<u32, NodeError> {
        self.find(
            id,
            wait,
            origin,
            true,
            |node| async move { Ok(node.store.contains(&id)) },
            |bytes, _| bytes.len() as u32,
        )
        .await
    }

    /// Shared shape of get and head: count the request, look, else subscribe, start
    /// one lookup, look again, wait for an arrival (or for the lookup to give up).
    /// `head`: a HEAD, which with no wait is an existence check (`put` and `backup`
    /// ask so before sending a block): finding nothing then is counted as `absent`,
    /// not as a miss.
    async fn find<'a, T, F, Fut>(
        &'a self,
        id: BlockId,
        wait: Duration,
        origin: Origin,
        head: bool,
        look: F,
        arrived: impl Fn(Bytes, u32) -> T,
    ) -> Result<T, NodeError>
    where
        F: Fn(&'a Node) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, NodeError>>,
    {
        if origin.counted {
            self.store.record_request(&id);
            self.mesh
                .stats()
                .record(&id, Event::Request, crate::clock::unix_now());
        }
        if let Some(found) = look(self).await? {
            Metrics::add(&self.metrics.hits, 1);
            return Ok(found);
        }
        let started = Instant::now();
        let not_found = |asked| {
            let counter = match head && wait.is_zero() {
                true => &self.metrics.absent,
                false => &self.metrics.misses,
            };
            Metrics::add(counter, 1);
            NodeError::NotFound {
                id,
                waited: started.elapsed(),
                asked,
            }
        };
        if wait.is_zero() {
            return Err(not_found(Vec::new()));
        }
        let mut waiter = self.arrivals.subscribe(id).inspect_err(|_| {
            Metrics::add(&self.metrics.waiters_refused, 1);
        })?;
        if waiter.is_first() {
            Metrics::add(&self.metrics.lookups, 1);
            let asked = self.look_up(id, origin, wait);
            if asked.is_empty() && origin.from.is_some() {
                // A peer's forwarded request that this node cannot pass on: answer now
                // so the peer widens its lookup (a client would wait for an upload).
                return Err(not_found(Vec::new()));
            }
            waiter.record_asked(asked);
        }
        // An arrival between the first look and the subscription is seen here.
        if let Some(found) = look(self).await? {
            Metrics::add(&self.metrics.waited_hits, 1);
            return Ok(found);
        }
        match waiter.wait(wait).await {
            Outcome::Arrived(bytes, hops) => {
                Metrics::add(&self.metrics.waited_hits, 1);
                Ok(arrived(bytes, hops))
            }
            Outcome::GaveUp | Outcome::Pending => Err(not_found(waiter.asked())),
        }
    }

    async fn read_local(&self, id: BlockId) -> Result<Option<Bytes>, NodeError> {
        // The size only chooses where to read; `read` looks the block up again.
        let outcome = match self.store.contains(&id) {
            None => return Ok(None),
            Some(size) if size <= INLINE_READ_MAX => self.store.read(&id)?,
            Some(_) => store_work(&self.store, move |s| s.read(&id)).await??,
        };
        match outcome {
            ReadOutcome::Found(bytes) => Ok(Some(bytes)),
            ReadOutcome::Absent => Ok(None),
            ReadOutcome::Quarantined => {
                // Ask the mesh for a good copy; this request still sees "absent".
                self.look_up(id, Origin::client(), QUARANTINE_REFETCH);
                Ok(None)
            }
        }
    }

    /// Stores an uploaded block after checking that it (or its zlib inflation, capped at
    /// 1 MiB) hashes to `id`; wakes everyone waiting for it. Returns after the block is
    /// durable.
    #[tracing::instrument(level = "debug", skip(self, upload))]
    pub async fn put_block(&self, id: BlockId, upload: Upload) -> Result<PutOutcome, NodeError> {
        self.put_block_pinned(id, upload, None).await
    }

    /// `put_block`, pinned for `holder` (when given) from before the block is stored,
    /// so eviction can never take it between the two. A pin that this upload added is
    /// taken back if the block is refused.
    pub async fn put_block_pinned(
        &self,
        id: BlockId,
        upload: Upload,
        holder: Option<Holder>,
    ) -> Result<PutOutcome, NodeError> {
        let block = self.check_upload(id, upload)?;
        let mut added = None;
        if let Some(holder) = holder {
            let h = holder.clone();
            if store_work(&self.store, move |s| s.pin(id, &h, Durability::Soon)).await?? {
                added = Some(holder);
            }
        }
        let outcome = match self.store_block(id, block, Admission::UPLOAD).await {
            Ok(outcome) => outcome,
            Err(e) => {
                if let Some(holder) = added {
                    store_work(&self.store, move |s| {
                        s.unpin(&id, Some(&holder), Durability::Soon)
                    })
                    .await??;
                }
                return Err(e);
            }
        };
        self.mesh
            .stats()
            .record(&id, Event::Upload, crate::clock::unix_now());
        Ok(outcome)
    }

    /// Takes a block pushed by peer `from` with its heat `hint` there, if it is worth
    /// a place here (see `MAX_PUSH_HEAT`); else `Declined`. Blocks the operator deleted
    /// are refused. With `keep_until`, the block is offered for custody (see
    /// `custody.rs`).
    pub async fn accept_push(
        &self,
        id: BlockId,
        upload: Upload,
        hint: f32,
        from: BlockId,
        keep_until: Option<u64>,
    ) -> Result<PutOutcome, NodeError> {
        if self.mesh.stats().is_deleted(&id) {
            return Err(NodeError::Deleted(id));
        }
        let block = self.check_upload(id, upload)?;
        let heat = push_heat(hint);
        let admission = Admission {
            heat,
            // Custody is taken whatever the block is worth (within the custody share);
            // a block kept here already is always taken back.
            must_be_worth_it: keep_until.is_none() && !self.store.is_kept(&id),
            keep_until,
        };
        let counters = self.mesh.counters();
        match self.store_block(id, block, admission).await {
            Ok(PutOutcome::Stored) => {
                counters.pushes_received.fetch_add(1, Ordering::Relaxed);
                let now = crate::clock::unix_now();
                self.mesh.stats().record(&id, Event::PushIn, now);
                self.mesh.note_holder(&from, &id);
                tracing::debug!(%id, %from, heat, "push kept");
                Ok(PutOutcome::Stored)
            }
            Ok(held) => Ok(held),
            Err(e @ (NodeError::Declined | NodeError::Full(_))) => {
                counters.pushes_refused.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The block an upload carries: its bytes, or their zlib inflation, hashing to `id`.
    fn check_upload(&self, id: BlockId, upload: Upload) -> Result<Bytes, NodeError> {
        Metrics::add(&self.metrics.bytes_in, upload.bytes.len() as u64);
        as_block(id, upload.bytes, upload.sha256).inspect_err(|_| {
            Metrics::add(&self.metrics.puts_rejected, 1);
        })
    }

    /// Stores a checked block, records evictions (handing off the victims worth it), and
    /// wakes its waiters.
    async fn store_block(
        &self,
        id: BlockId,
        block: Bytes,
        admission: Admission,
    ) -> Result<PutOutcome, NodeError> {
        let outcome = self.intake().store_block(id, block, admission, 0).await?;
        match outcome {
            PutOutcome::Stored => Metrics::add(&self.metrics.puts_stored, 1),
            PutOutcome::AlreadyHeld => Metrics::add(&self.metrics.puts_held, 1),
        }
        Ok(outcome)
    }

    /// What a task needs to take a block in (see `Intake`).
    fn intake(&self) -> Intake {
        Intake {
            store: self.store.clone(),
            mesh: self.mesh.clone(),
            arrivals: self.arrivals.clone(),
        }
    }

    /// Starts a lookup of `id` in the mesh (unless `origin` allows no hops or there is
    /// no peer to ask); what it finds is stored if worth a place (pull-through) and
    /// handed to every request waiting for it, and a lookup that found nothing answers
    /// them at once. Returns the URL of the peer asked first.
    fn look_up(&self, id: BlockId, origin: Origin, budget: Duration) -> Vec<String> {
        let Some(lookup) = self.mesh.look_up(id, origin, budget) else {
            return Vec::new();
        };
        let intake = self.intake();
        tokio::spawn(async move {
            match lookup.found.await {
                Ok(Some((bytes, hops))) => intake.fetched(id, bytes, hops).await,
                _ => intake.arrivals.gave_up(&id),
            }
        });
        lookup.asked
    }

    /// Blocks sharing at least 12 leading bits with `id`, nearest first, at most 100,
    /// with their sizes: this node's, merged with its nearest peers' (unless `origin`
    /// allows no hops: then this node's only).
    pub async fn like(&self, id: &BlockId, origin: Origin) -> Vec<(BlockId, u32)> {
        Metrics::add(&self.metrics.likes, 1);
        let mut found = self.store.like(id, LIKE_MIN_BITS, LIKE_MAX_RESULTS);
        let remote = self.mesh.like_from_peers(*id, origin).await;
        if remote.is_empty() {
            return found;
        }
        found.extend(
            remote
                .into_iter()
                .filter(|(other, _)| other.match_score(id) >= LIKE_MIN_BITS),
        );
        found.sort_unstable_by_key(|(other, _)| other.distance(id));
        found.dedup_by_key(|(other, _)| *other);
        found.truncate(LIKE_MAX_RESULTS);
        found
    }

    /// The store's figures.
    pub fn store_stats(&self) -> StoreStats {
        self.store.stats()
    }

    /// The activity of the last 15 minutes, one point per `HISTORY_STEP`, oldest first.
    pub fn history(&self) -> Vec<Point> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .points()
    }

    /// Takes a history point now (the sampler does every `HISTORY_STEP`).
    pub fn sample_history(&self) {
        history::sample(&self.metrics, &self.history);
    }

    /// What `/node` says.
    pub fn info(&self) -> NodeInfo {
        let s = self.store.stats();
        NodeInfo {
            id: self.identity.id().to_string(),
            public_key: hex::encode(self.identity.public_key().to_bytes()),
            identity_block: String::from_utf8_lossy(self.identity.block()).into_owned(),
            url: self.url.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs(),
            store: StoreInfo {
                blocks: s.blocks,
                bytes: s.bytes,
                quota: s.quota,
                free: s
                    .quota
                    .saturating_sub(s.bytes)
                    .min(self.store.disk_free().unwrap_or(u64::MAX)),
                custody_bytes: s.custody_bytes,
                custody_blocks: s.custody_blocks,
                custody_share: s.custody_share,
            },
        }
    }

    /// `/metrics` text.
    pub fn render_metrics(&self) -> String {
        let mut out = self.metrics.render(&Gauges {
            store: self.store.stats(),
            waiting: self.arrivals.waiting(),
            uptime_secs: self.started.elapsed().as_secs(),
        });
        self.mesh.render_metrics(&mut out);
        out
    }

    /// Re-hashes every block at about `bytes_per_sec` (each block counting
    /// `SCRUB_BLOCK_COST` more than its size), forever, pausing an hour between passes;
    /// a block that no longer matches is quarantined. Run it as a task.
    pub async fn scrub_forever(self: Arc<Self>, bytes_per_sec: u64) {
        if bytes_per_sec == 0 {
            return;
        }
        tokio::time::sleep(SCRUB_START_DELAY).await;
        let mut cursor = None;
        loop {
            let store = self.store.clone();
            let started = Instant::now();
            let Ok(step) = blocking(move || store.scrub(cursor, SCRUB_BATCH)).await else {
                return;
            };
            Metrics::add(&self.metrics.scrubbed_bytes, step.bytes);
            for id in &step.quarantined {
                // A good copy may live on a peer (DESIGN 7).
                self.look_up(*id, Origin::client(), QUARANTINE_REFETCH);
            }
            cursor = step.next;
            let cost = step.bytes + step.blocks * SCRUB_BLOCK_COST;
            let budget = Duration::from_secs_f64(cost as f64 / bytes_per_sec as f64);
            tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
            if cursor.is_none() {
                tokio::time::sleep(SCRUB_PASS_PAUSE).await;
            }
        }
    }
}

/// The one path by which blocks enter the store, for PUTs, pushes and blocks fetched
/// from peers alike: store within the admission's terms, record evictions, wake the
/// requests waiting for the block. Owned handles, so a lookup's task can take in what
/// it found after the request that started it has gone.
#[derive(Clone)]
struct Intake {
    store: Arc<Store>,
    mesh: Arc<Mesh>,
    arrivals: Arc<Arrivals>,
}

impl Intake {
    /// Stores `block` (it hashes to `id`) as `admission` allows, records evictions and
    /// hands it to every waiter with `hops`.
    async fn store_block(
        &self,
        id: BlockId,
        block: Bytes,
        admission: Admission,
        hops: u32,
    ) -> Result<PutOutcome, NodeError> {
        let bytes = block.clone();
        let put = store_work(&self.store, move |s| s.put_with(&id, &bytes, admission)).await?;
        let put = match put {
            Ok(put) => put,
            Err(e) => {
                // A refused block still reaches whoever waits for it.
                if hops > 0 {
                    self.arrivals.arrived(&id, &block, hops);
                }
                return Err(e.into());
            }
        };
        let now = crate::clock::unix_now();
        for victim in &put.evicted {
            self.mesh.stats().record(victim, Event::Purge, now);
        }
        self.mesh.hand_off(put.handed);
        self.arrivals.arrived(&id, &block, hops);
        Ok(put.outcome)
    }

    /// What follows a batch block's put (see `store_block`): evictions recorded and
    /// handed off, waiters woken.
    fn settled(&self, id: BlockId, block: &Bytes, put: crate::store::Put, now: u64) {
        for victim in &put.evicted {
            self.mesh.stats().record(victim, Event::Purge, now);
        }
        self.mesh.hand_off(put.handed);
        self.arrivals.arrived(&id, block, 0);
    }

    /// A block a lookup found `hops` away: kept if it is worth a place here (the
    /// request that asked for it counts as one), unless the operator deleted it here;
    /// handed to the waiters either way.
    async fn fetched(&self, id: BlockId, bytes: Bytes, hops: u32) {
        if self.mesh.stats().is_deleted(&id) {
            self.arrivals.arrived(&id, &bytes, hops);
            return;
        }
        let admission = Admission {
            heat: 1.0,
            must_be_worth_it: true,
            keep_until: None,
        };
        match self.store_block(id, bytes, admission, hops).await {
            Ok(_) | Err(NodeError::Declined | NodeError::Full(_)) => {}
            Err(e) => tracing::warn!(%id, error = %e, "could not store a block from a peer"),
        }
    }
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Task(e.to_string()))
}

/// Runs store work on the blocking pool, or inline for a memory store
/// (`store::off_worker`).
async fn store_work<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(Arc<Store>) -> T + Send + 'static,
) -> Result<T, NodeError> {
    crate::store::off_worker(store, f)
        .await
        .map_err(|e| NodeError::Task(e.to_string()))
}

/// The heat a pushed block starts with here, from its heat `hint` at the sender: half of
/// it, at most `MAX_PUSH_HEAT` (a peer cannot make its blocks unevictable here).
fn push_heat(hint: f32) -> f32 {
    if hint.is_finite() {
        (hint / 2.0).clamp(0.0, MAX_PUSH_HEAT)
    } else {
        0.0
    }
}

/// The block `bytes` (whose SHA-256 is `sha256`) stand for as block `id`: themselves
/// when they hash to it, else their zlib stream inflated when that hashes to it (a
/// compressed upload), else `HashMismatch`.
fn as_block(id: BlockId, bytes: Bytes, sha256: BlockId) -> Result<Bytes, NodeError> {
    if sha256 == id {
        return Ok(bytes);
    }
    match inflate_capped(&bytes) {
        Some(inflated) if BlockId::of(&inflated) == id => Ok(Bytes::from(inflated)),
        _ => Err(NodeError::HashMismatch(id)),
    }
}

/// Inflates an upload's zlib stream under the block cap (see `codec::inflate_capped`).
fn inflate_capped(bytes: &[u8]) -> Option<Vec<u8>> {
    crate::codec::inflate_capped(bytes, MAX_BLOCK_SIZE)
}

/// The admin token, created as a 0600 file at first start.
fn admin_token(store: &Path) -> std::io::Result<String> {
    let path = store.join(ADMIN_TOKEN_FILE);
    if !path.exists() {
        let mut token = [0u8; 32];
        fsutil::random_bytes(&mut token)?;
        fsutil::create_private(&path, format!("{}\n", hex::encode(token)).as_bytes())?;
    }
    let text = fsutil::read_private(&path)?;
    let token = String::from_utf8_lossy(&text).trim().to_owned();
    if token.len() < 16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the admin token file holds fewer than 16 characters",
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflate_accepts_zlib_and_caps_bombs() {
        let data = b"hello hello hello hello".repeat(100);
        assert_eq!(inflate_capped(&zlib(&data)), Some(data.clone()));
        assert_eq!(
            inflate_capped(&zlib(&vec![0u8; MAX_BLOCK_SIZE])).map(|v| v.len()),
            Some(MAX_BLOCK_SIZE)
        );
        assert_eq!(inflate_capped(&zlib(&vec![0u8; MAX_BLOCK_SIZE + 1])), None);
        assert_eq!(inflate_capped(b"not zlib at all"), None);
        assert_eq!(inflate_capped(b""), None);
        let mut truncated = zlib(&data);
        truncated.truncate(10);
        assert_eq!(inflate_capped(&truncated), None);
    }

    #[test]
    fn upload_hasher_hashes_the_stream() {
        let mut h = UploadHasher::new(10);
        h.push(b"hel");
        h.push(b"lo");
        let u = h.finish();
        assert_eq!(u.sha256, BlockId::of(b"hello"));
        assert_eq!(&u.bytes[..], b"hello");
    }
}

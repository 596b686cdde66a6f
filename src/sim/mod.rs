//! A deterministic in-process simulation of a libernet mesh (issue 14, docs/mesh.md
//! "Simulation"): `World` runs N real `Node`s (the same node, mesh, store and answer
//! code as `libernet serve`) over `Store::in_memory`, linked by `net::SimTransport`
//! instead of HTTP, with simulated delays, message loss, partitions, node loss, restarts
//! with and without the store, and joins. `run` drives a scenario: nodes join, blocks
//! are published and kept blocks pinned by simulated backups, then rounds of a Zipf(1.0)
//! read workload interleaved with churn, and returns a `Report`.
//!
//! One seed drives the node ids, the workload and the faults. Run it on a current-thread
//! tokio runtime started paused (`Builder::new_current_thread().start_paused(true)`,
//! tokio's `test-util` feature, which tests and examples have): protocol time is then
//! the runtime's simulated clock (`clock`), which jumps to the next timer whenever every
//! task waits, so hours of protocol run as fast as the CPU allows. On another runtime it
//! runs, in real time.
//!
//! Reproducibility: with the same seed and build, a run makes the same calls in the same
//! order, with two known leaks. The peer table is a `HashMap` with a random hasher, and
//! its iteration order still reaches a few choices that are not sorted (a lookup's
//! candidates are sorted by distance, gossip targets and push peers by id, but ties and
//! `known_holders` counts are not); and request ids start from OS randomness (they are
//! only compared, so this changes nothing but their values). Figures can therefore
//! differ slightly between two runs of one seed; the invariants must hold on each.

pub mod net;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::clock::{Instant, now};
use crate::id::BlockId;
use crate::identity::Identity;
use crate::mesh::MeshSettings;
use crate::node::{Node, UploadHasher};
use crate::store::{DEFAULT_HALF_LIFE, Holder, Store, StoreLimits, share_of};
pub use net::{Net, NetSettings, PURPOSES, Purpose, SimTransport};

/// The holder name simulated backups pin their blocks under.
pub const BACKUP_HOLDER: &str = "sim-backup";

/// Copies of a kept block the mesh should hold (the R).
pub const KEPT_COPIES: usize = 3;

/// A scenario.
#[derive(Debug, Clone)]
pub struct Config {
    /// Nodes at the start.
    pub nodes: usize,
    /// Seed of ids, workload and faults.
    pub seed: u64,
    /// Blocks of the read workload.
    pub blocks: usize,
    /// Blocks kept (pinned by a backup on one node each).
    pub kept: usize,
    /// Bytes per block.
    pub block_size: usize,
    /// Each node's quota in bytes; 0: `capacity` times one copy of everything, shared
    /// out over the nodes.
    pub quota: u64,
    /// With `quota` 0: the mesh's room over one copy of all blocks.
    pub capacity: f64,
    /// Percent of a quota that custody may take.
    pub custody_percent: u8,
    /// Network delays and loss (its seed is derived from `seed`).
    pub min_delay: Duration,
    /// Longest one-way delay.
    pub max_delay: Duration,
    /// Share of asks lost.
    pub loss: f64,
    /// Gossip round pause.
    pub gossip_interval: Duration,
    /// Push round pause.
    pub push_interval: Duration,
    /// Repair round pause.
    pub repair_interval: Duration,
    /// Seeds each node is given (random live nodes).
    pub seeds_per_node: usize,
    /// Time for gossip to settle after the nodes start, before any block is published.
    pub warmup: Duration,
    /// Time for pushes to place blocks after publication, before the first round.
    pub spread: Duration,
    /// Rounds of reads and churn.
    pub rounds: usize,
    /// Length of a round.
    pub round: Duration,
    /// Reads per round, spread evenly over it.
    pub reads_per_round: usize,
    /// How long a read waits for its block (a client's `wait`).
    pub wait: Duration,
    /// Share of the starting nodes removed for good over the rounds.
    pub remove_share: f64,
    /// Share of the starting nodes that join over the rounds.
    pub join_share: f64,
    /// Each third round, one node restarts with its store, the next one without it.
    pub restarts: bool,
    /// In this round a share of the nodes is cut off from the others (healed at the
    /// next round).
    pub partition_round: Option<usize>,
    /// Share cut off.
    pub partition_share: f64,
    /// Replica counts of kept blocks are sampled this many times per round.
    pub samples_per_round: usize,
    /// Print a line per phase and round on stderr (simulated and wall time).
    pub progress: bool,
}

impl Config {
    /// The CI size: 50 nodes, a few hundred blocks, a short run with every kind of
    /// fault.
    pub fn small(seed: u64) -> Config {
        Config {
            nodes: 50,
            seed,
            blocks: 300,
            kept: 60,
            block_size: 512,
            quota: 0,
            capacity: 3.0,
            custody_percent: 50,
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(60),
            loss: 0.01,
            gossip_interval: Duration::from_secs(30),
            push_interval: Duration::from_secs(10),
            repair_interval: crate::config::DEFAULT_REPAIR_INTERVAL,
            seeds_per_node: 3,
            warmup: Duration::from_secs(90),
            spread: Duration::from_secs(180),
            rounds: 5,
            round: Duration::from_secs(120),
            reads_per_round: 150,
            wait: Duration::from_secs(3),
            remove_share: 0.3,
            join_share: 0.1,
            restarts: true,
            partition_round: Some(3),
            partition_share: 0.2,
            samples_per_round: 5,
            progress: false,
        }
    }

    /// The benchmark: 1,000 nodes, 100,000 blocks, 5,000 kept, 30% removed.
    pub fn large(seed: u64) -> Config {
        Config {
            nodes: 1000,
            blocks: 100_000,
            kept: 5_000,
            block_size: 256,
            capacity: 4.0,
            rounds: 10,
            round: Duration::from_secs(600),
            warmup: Duration::from_secs(180),
            spread: Duration::from_secs(600),
            reads_per_round: 5_000,
            join_share: 0.1,
            samples_per_round: 3,
            ..Config::small(seed)
        }
    }

    fn quota(&self) -> u64 {
        if self.quota > 0 {
            return self.quota;
        }
        let one_copy = ((self.blocks + self.kept) * self.block_size) as f64;
        (one_copy * self.capacity / self.nodes.max(1) as f64) as u64 + 64 * 1024
    }
}

/// A small seeded generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// From a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        net::mix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf(1.0) over ranks `0..n`: rank k drawn with weight 1/(k+1).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Over `n` ranks.
    pub fn new(n: usize) -> Zipf {
        let mut sum = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|k| {
                sum += 1.0 / (k + 1) as f64;
                sum
            })
            .collect();
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    /// A rank.
    pub fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|c| *c < u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

/// Block `i` of a run seeded `seed`: `size` bytes, distinct for each `(seed, i)`.
pub fn block_bytes(seed: u64, i: usize, size: usize) -> Bytes {
    let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
    let mut out = Vec::with_capacity(size.max(16));
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&(i as u64).to_le_bytes());
    while out.len() < size {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(size.max(16));
    Bytes::from(out)
}

struct Slot {
    url: String,
    identity: Arc<Identity>,
    store: Arc<Store>,
    node: Option<Arc<Node>>,
}

/// What one read found.
#[derive(Debug, Clone, Copy)]
struct Read {
    /// Made in a round with a partition.
    partitioned: bool,
    /// Some live node on the reader's side held the block when the read started.
    eligible: bool,
    found: bool,
    hops: u32,
    millis: f64,
}

/// Kept blocks just after one round's churn, and how long repair took.
#[derive(Debug, Clone, Serialize)]
pub struct LossEvent {
    /// The round.
    pub round: usize,
    /// Nodes removed for good at its start.
    pub removed: usize,
    /// Nodes restarted without their store.
    pub wiped: usize,
    /// Kept blocks on fewer than `KEPT_COPIES` live nodes right after.
    pub under_replicated: usize,
    /// Kept blocks on no live node right after.
    pub lost: usize,
    /// Simulated seconds until no kept block had fewer than `KEPT_COPIES` live copies
    /// (sampled `samples_per_round` times a round); `None`: not within the round.
    pub repaired_after_secs: Option<f64>,
    /// Kept blocks under `KEPT_COPIES` live copies at the round's end.
    pub under_at_end: usize,
    /// Reads of held blocks this round that failed.
    pub reads_failed: usize,
    /// A partition was in force during this round.
    pub partitioned: bool,
}

/// The figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Nodes at the start, removed, joined, restarted with and without their store,
    /// live at the end.
    pub nodes_start: usize,
    /// Removed for good.
    pub removed: usize,
    /// Joined during the rounds.
    pub joined: usize,
    /// Restarted with their store.
    pub restarted_kept: usize,
    /// Restarted without their store.
    pub restarted_wiped: usize,
    /// Live at the end.
    pub nodes_end: usize,
    /// Blocks of the read workload.
    pub blocks: usize,
    /// Kept blocks.
    pub kept: usize,
    /// Quota of each node in bytes.
    pub quota: u64,
    /// Simulated seconds the run covered.
    pub simulated_secs: f64,
    /// Kept blocks held by no live node at the end.
    pub kept_lost: usize,
    /// Kept blocks on fewer than `KEPT_COPIES` live nodes at the end.
    pub kept_under_replicated: usize,
    /// Kept blocks on fewer than `KEPT_COPIES` live nodes just before the first round
    /// (how well placement did before any fault).
    pub kept_under_replicated_before_churn: usize,
    /// One entry per round.
    pub loss_events: Vec<LossEvent>,
    /// Reads made.
    pub reads: usize,
    /// Reads of a block some live node on the reader's side held.
    pub reads_eligible: usize,
    /// Eligible reads that got the block.
    pub reads_eligible_found: usize,
    /// Eligible reads outside the rounds with a partition, and of those found.
    pub reads_eligible_unpartitioned: usize,
    /// Found.
    pub reads_eligible_unpartitioned_found: usize,
    /// Reads of blocks no reachable live node held that still got it (0: they cannot).
    pub reads_ineligible_found: usize,
    /// Eligible reads found / eligible reads.
    pub lookup_success: f64,
    /// Found reads served by the reader itself (0 hops).
    pub local_hits: usize,
    /// Hops of found reads: median and 99th percentile (0: the reader held it).
    pub hops_p50: u32,
    /// 99th percentile of hops.
    pub hops_p99: u32,
    /// Hops of found reads that went to the mesh: median and 99th percentile.
    pub mesh_hops_p50: u32,
    /// 99th percentile.
    pub mesh_hops_p99: u32,
    /// Simulated latency of found reads, ms: median and 99th percentile.
    pub latency_ms_p50: f64,
    /// 99th percentile.
    pub latency_ms_p99: f64,
    /// The top 1% of blocks by popularity: mean share of live nodes holding one.
    pub top1_replica_share_mean: f64,
    /// ... and the least-held one's share.
    pub top1_replica_share_min: f64,
    /// Distinct blocks read in the last round.
    pub last_round_requested: usize,
    /// Of those, held by no live node at the end.
    pub last_round_requested_lost: usize,
    /// Per purpose: bytes (bodies both ways plus headers) per node-hour, averaged over
    /// the nodes live during the run.
    pub bytes_per_node_hour: Vec<(String, f64)>,
    /// Per purpose: exchanges in all.
    pub exchanges: Vec<(String, u64)>,
    /// Resident memory of the process at the end over the live nodes, bytes.
    pub memory_per_node: u64,
    /// Wall-clock seconds the run took.
    pub wall_secs: f64,
}

/// N nodes in one process.
pub struct World {
    cfg: Config,
    net: Arc<Net>,
    slots: Vec<Slot>,
    rng: Rng,
    /// Read-workload blocks by popularity rank (0 the most popular).
    blocks: Vec<BlockId>,
    kept: Vec<BlockId>,
    holder: Holder,
}

impl World {
    /// An empty world for `cfg`; `join` adds nodes.
    pub fn new(cfg: Config) -> World {
        let net = Net::new(NetSettings {
            seed: net::mix(cfg.seed ^ 0x006e_6574_776f_726b),
            min_delay: cfg.min_delay,
            max_delay: cfg.max_delay.max(cfg.min_delay),
            loss: cfg.loss,
        });
        let holder = Holder::try_from(BACKUP_HOLDER.to_owned())
            .unwrap_or_else(|_| unreachable!("a constant holder name is valid"));
        World {
            rng: Rng::new(cfg.seed),
            cfg,
            net,
            slots: Vec::new(),
            blocks: Vec::new(),
            kept: Vec::new(),
            holder,
        }
    }

    /// The network (for faults and traffic figures).
    pub fn net(&self) -> &Arc<Net> {
        &self.net
    }

    /// The live node `i`, if it is live.
    pub fn node(&self, i: usize) -> Option<&Arc<Node>> {
        self.slots.get(i).and_then(|s| s.node.as_ref())
    }

    /// Indices of the live nodes, in order.
    pub fn live(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].node.is_some())
            .collect()
    }

    /// The kept blocks.
    pub fn kept(&self) -> &[BlockId] {
        &self.kept
    }

    /// The read-workload blocks, most popular first.
    pub fn blocks(&self) -> &[BlockId] {
        &self.blocks
    }

    fn settings(&mut self) -> MeshSettings {
        let live = self.live();
        let mut seeds = Vec::new();
        for _ in 0..self.cfg.seeds_per_node.min(live.len()) {
            let pick = live[self.rng.below(live.len())];
            let url = self.slots[pick].url.clone();
            if !seeds.contains(&url) {
                seeds.push(url);
            }
        }
        MeshSettings {
            seeds,
            gossip_interval: self.cfg.gossip_interval,
            push_interval: self.cfg.push_interval,
            repair_interval: self.cfg.repair_interval,
        }
    }

    fn store(&self) -> Arc<Store> {
        let quota = self.cfg.quota();
        Arc::new(Store::in_memory(StoreLimits {
            quota,
            hot_cache: 0,
            half_life: DEFAULT_HALF_LIFE,
            custody_share: share_of(quota, self.cfg.custody_percent),
        }))
    }

    /// Starts the node of slot `i` over its store, seeded with random live nodes.
    fn boot(&mut self, i: usize) {
        let settings = self.settings();
        let slot = &self.slots[i];
        let transport = Arc::new(SimTransport::new(self.net.clone(), i));
        let node = match Node::in_process(
            slot.identity.clone(),
            slot.url.clone(),
            slot.store.clone(),
            settings,
            transport,
        ) {
            Ok(node) => Arc::new(node),
            // A memory store can only refuse the identity block for want of room,
            // which a quota of at least 64 KiB always has.
            Err(e) => panic!("node {i} cannot start: {e}"),
        };
        node.mesh().seed_random(self.rng.next_u64());
        self.net.attach(&slot.url, i, &node);
        node.start();
        self.slots[i].node = Some(node);
    }

    /// A new node with a seeded identity and an empty store joins (needs the tokio
    /// runtime). Returns its index.
    pub fn join(&mut self) -> usize {
        let i = self.slots.len();
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        self.slots.push(Slot {
            url: format!("http://sim-{i}"),
            identity: Arc::new(Identity::from_seed(&seed)),
            store: self.store(),
            node: None,
        });
        self.boot(i);
        i
    }

    /// Node `i` leaves for good: asks to it fail, its blocks are gone.
    pub fn remove(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        self.net.detach(&slot.url);
        slot.node = None;
        slot.store = Arc::new(Store::in_memory(StoreLimits::quota(0)));
    }

    /// Node `i` stops and starts again at once, with its store or with an empty one.
    pub fn restart(&mut self, i: usize, keep_store: bool) {
        self.net.detach(&self.slots[i].url);
        self.slots[i].node = None;
        if !keep_store {
            self.slots[i].store = self.store();
        }
        self.boot(i);
    }

    /// Live nodes holding `id`, among those on `side`'s side of a partition (all
    /// with `None`).
    pub fn holders(&self, id: &BlockId, side: Option<usize>) -> usize {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.node.is_some()
                    && side.is_none_or(|r| self.net.connected(r, *i))
                    && s.store.contains(id).is_some()
            })
            .count()
    }

    /// Kept blocks on fewer than `KEPT_COPIES` live nodes, and on none.
    pub fn kept_replication(&self) -> (usize, usize) {
        let live: Vec<&Store> = self
            .slots
            .iter()
            .filter(|s| s.node.is_some())
            .map(|s| &*s.store)
            .collect();
        let (mut under, mut lost) = (0, 0);
        for id in &self.kept {
            let n = live.iter().filter(|s| s.contains(id).is_some()).count();
            under += usize::from(n < KEPT_COPIES);
            lost += usize::from(n == 0);
        }
        (under, lost)
    }

    /// Publishes the workload: each read block put on a random live node, each kept
    /// block put and pinned by a backup on a random live node.
    pub async fn publish(&mut self) {
        let (seed, size) = (self.cfg.seed, self.cfg.block_size);
        for i in 0..self.cfg.blocks + self.cfg.kept {
            let bytes = block_bytes(seed, i, size);
            let id = BlockId::of(&bytes);
            let live = self.live();
            let at = live[self.rng.below(live.len())];
            let Some(node) = self.node(at).cloned() else {
                continue;
            };
            let mut upload = UploadHasher::new(bytes.len());
            upload.push(&bytes);
            let (keep, holder) = if i < self.cfg.blocks {
                (false, None)
            } else {
                (true, Some(self.holder.clone()))
            };
            match node.put_block_pinned(id, upload.finish(), holder).await {
                Ok(_) => {}
                Err(e) => tracing::warn!(node = at, %id, error = %e, "publish refused"),
            }
            if keep {
                self.kept.push(id);
            } else {
                self.blocks.push(id);
            }
        }
    }

    /// The node that reads next: a random live one.
    fn reader(&mut self) -> usize {
        let live = self.live();
        live[self.rng.below(live.len())]
    }
}

fn percentile<T: Copy + PartialOrd>(sorted: &[T], p: f64, zero: T) -> T {
    if sorted.is_empty() {
        return zero;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Runs the scenario `cfg` and reports. Call it on a paused current-thread runtime (see
/// the module's documentation).
pub async fn run(cfg: Config) -> Report {
    let wall = std::time::Instant::now();
    let start = now();
    let mut w = World::new(cfg.clone());
    let say = |what: &str| {
        if cfg.progress {
            eprintln!(
                "sim: {what} at {:.0} simulated s, {:.1} wall s",
                now().duration_since(start).as_secs_f64(),
                wall.elapsed().as_secs_f64()
            );
        }
    };
    for _ in 0..cfg.nodes {
        w.join();
    }
    say("nodes started");
    tokio::time::sleep(cfg.warmup).await;
    say("warm-up over");
    w.publish().await;
    say("published");
    tokio::time::sleep(cfg.spread).await;
    say("spread over");
    let (under_before, _) = w.kept_replication();
    let zipf = Zipf::new(w.blocks.len());
    let mut fault_rng = Rng::new(net::mix(cfg.seed ^ 0x0000_6661_756c_7473));
    let (mut removed, mut joined, mut restarted_kept, mut restarted_wiped) = (0, 0, 0, 0);
    let mut events = Vec::new();
    let mut reads: Vec<Read> = Vec::new();
    let mut last_round: BTreeSet<BlockId> = BTreeSet::new();
    let mut node_secs = 0.0;
    let mut last_tick = now();
    let to_remove = (cfg.nodes as f64 * cfg.remove_share).round() as usize;
    let to_join = (cfg.nodes as f64 * cfg.join_share).round() as usize;
    for round in 0..cfg.rounds {
        // Churn at the round's start.
        let due = |total: usize| total * (round + 1) / cfg.rounds.max(1);
        let mut round_removed = 0;
        while removed < due(to_remove) {
            let live = w.live();
            if live.len() <= KEPT_COPIES + 1 {
                break;
            }
            w.remove(live[fault_rng.below(live.len())]);
            removed += 1;
            round_removed += 1;
        }
        while joined < due(to_join) {
            w.join();
            joined += 1;
        }
        let mut wiped = 0;
        if cfg.restarts && round % 3 == 1 {
            let live = w.live();
            w.restart(live[fault_rng.below(live.len())], true);
            restarted_kept += 1;
        }
        if cfg.restarts && round % 3 == 2 {
            let live = w.live();
            w.restart(live[fault_rng.below(live.len())], false);
            restarted_wiped += 1;
            wiped = 1;
        }
        if cfg.partition_round == Some(round) {
            let live = w.live();
            let n = (live.len() as f64 * cfg.partition_share).round() as usize;
            let mut cut = BTreeSet::new();
            while cut.len() < n.min(live.len()) {
                cut.insert(live[fault_rng.below(live.len())]);
            }
            w.net.partition(cut);
        } else {
            w.net.heal();
        }
        let churned = now();
        let (under, lost) = w.kept_replication();
        let mut event = LossEvent {
            round,
            removed: round_removed,
            wiped,
            under_replicated: under,
            lost,
            repaired_after_secs: (under == 0).then_some(0.0),
            under_at_end: under,
            reads_failed: 0,
            partitioned: cfg.partition_round == Some(round),
        };
        // Reads and samples through the round, in time order.
        let mut timeline: Vec<(Duration, Option<usize>)> = (0..cfg.reads_per_round)
            .map(|k| {
                (
                    cfg.round.mul_f64(k as f64 / cfg.reads_per_round as f64),
                    None,
                )
            })
            .collect();
        for s in 1..=cfg.samples_per_round {
            let at = cfg.round.mul_f64(s as f64 / cfg.samples_per_round as f64);
            timeline.push((at, Some(s)));
        }
        timeline.sort_by_key(|(at, sample)| (*at, sample.is_some()));
        let mut pending: JoinSet<Read> = JoinSet::new();
        if round + 1 == cfg.rounds {
            last_round.clear();
        }
        for (at, sample) in timeline {
            tokio::time::sleep_until(churned + at).await;
            if sample.is_some() {
                let (under, _) = w.kept_replication();
                event.under_at_end = under;
                if under == 0 && event.repaired_after_secs.is_none() {
                    event.repaired_after_secs = Some(now().duration_since(churned).as_secs_f64());
                }
                continue;
            }
            if w.blocks.is_empty() {
                continue;
            }
            let reader = w.reader();
            let id = w.blocks[zipf.draw(&mut w.rng)];
            if round + 1 == cfg.rounds {
                last_round.insert(id);
            }
            let eligible = w.holders(&id, Some(reader)) > 0;
            let Some(node) = w.node(reader).cloned() else {
                continue;
            };
            let wait = cfg.wait;
            pending.spawn(async move {
                let started = Instant::now();
                let got = node
                    .fetch(id, wait, crate::mesh::Origin::client())
                    .await
                    .ok();
                Read {
                    partitioned: false,
                    eligible,
                    found: got.is_some(),
                    hops: got.map_or(0, |f| f.hops),
                    millis: started.elapsed().as_secs_f64() * 1000.0,
                }
            });
        }
        while let Some(done) = pending.join_next().await {
            if let Ok(mut read) = done {
                event.reads_failed += usize::from(read.eligible && !read.found);
                read.partitioned = event.partitioned;
                reads.push(read);
            }
        }
        let t = now();
        node_secs += t.duration_since(last_tick).as_secs_f64() * w.live().len() as f64;
        last_tick = t;
        say(&format!(
            "round {round} over ({} live, {} kept under 3 copies, {} reads failed)",
            w.live().len(),
            event.under_at_end,
            event.reads_failed
        ));
        events.push(event);
    }
    w.net.heal();
    let (kept_under, kept_lost) = w.kept_replication();
    let live = w.live();
    let top = w.blocks.len().div_ceil(100);
    let shares: Vec<f64> = w.blocks[..top]
        .iter()
        .map(|id| w.holders(id, None) as f64 / live.len().max(1) as f64)
        .collect();
    let found: Vec<&Read> = reads.iter().filter(|r| r.found).collect();
    let mut hops: Vec<u32> = found.iter().map(|r| r.hops).collect();
    hops.sort_unstable();
    let mut mesh_hops: Vec<u32> = hops.iter().copied().filter(|h| *h > 0).collect();
    mesh_hops.sort_unstable();
    let mut millis: Vec<f64> = found.iter().map(|r| r.millis).collect();
    millis.sort_by(f64::total_cmp);
    let eligible = reads.iter().filter(|r| r.eligible).count();
    let eligible_found = reads.iter().filter(|r| r.eligible && r.found).count();
    let hours = node_secs / 3600.0;
    let mut bytes_per_node_hour = Vec::new();
    let mut exchanges = Vec::new();
    for p in PURPOSES {
        let (messages, bytes) = w.net.traffic.of(p);
        bytes_per_node_hour.push((p.name().to_owned(), bytes as f64 / hours.max(1e-9)));
        exchanges.push((p.name().to_owned(), messages));
    }
    Report {
        seed: cfg.seed,
        nodes_start: cfg.nodes,
        removed,
        joined,
        restarted_kept,
        restarted_wiped,
        nodes_end: live.len(),
        blocks: w.blocks.len(),
        kept: w.kept.len(),
        quota: cfg.quota(),
        simulated_secs: now().duration_since(start).as_secs_f64(),
        kept_lost,
        kept_under_replicated: kept_under,
        kept_under_replicated_before_churn: under_before,
        loss_events: events,
        reads: reads.len(),
        reads_eligible: eligible,
        reads_eligible_found: eligible_found,
        reads_eligible_unpartitioned: reads
            .iter()
            .filter(|r| r.eligible && !r.partitioned)
            .count(),
        reads_eligible_unpartitioned_found: reads
            .iter()
            .filter(|r| r.eligible && !r.partitioned && r.found)
            .count(),
        reads_ineligible_found: reads.iter().filter(|r| !r.eligible && r.found).count(),
        lookup_success: if eligible == 0 {
            1.0
        } else {
            eligible_found as f64 / eligible as f64
        },
        local_hits: found.iter().filter(|r| r.hops == 0).count(),
        hops_p50: percentile(&hops, 0.5, 0),
        hops_p99: percentile(&hops, 0.99, 0),
        mesh_hops_p50: percentile(&mesh_hops, 0.5, 0),
        mesh_hops_p99: percentile(&mesh_hops, 0.99, 0),
        latency_ms_p50: percentile(&millis, 0.5, 0.0),
        latency_ms_p99: percentile(&millis, 0.99, 0.0),
        top1_replica_share_mean: shares.iter().sum::<f64>() / shares.len().max(1) as f64,
        top1_replica_share_min: shares.iter().copied().fold(1.0, f64::min),
        last_round_requested: last_round.len(),
        last_round_requested_lost: last_round
            .iter()
            .filter(|id| w.holders(id, None) == 0)
            .count(),
        bytes_per_node_hour,
        exchanges,
        memory_per_node: rss_bytes() / live.len().max(1) as u64,
        wall_secs: wall.elapsed().as_secs_f64(),
    }
}

impl Report {
    /// The figures as a two-column text table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "{k:<44} {v}");
        };
        row("seed", self.seed.to_string());
        row(
            "nodes: start / removed / joined / end",
            format!(
                "{} / {} / {} / {}",
                self.nodes_start, self.removed, self.joined, self.nodes_end
            ),
        );
        row(
            "restarts: with store / without",
            format!("{} / {}", self.restarted_kept, self.restarted_wiped),
        );
        row(
            "blocks / kept / quota per node",
            format!("{} / {} / {} B", self.blocks, self.kept, self.quota),
        );
        row(
            "simulated time / wall time",
            format!("{:.0} s / {:.1} s", self.simulated_secs, self.wall_secs),
        );
        row(
            "kept blocks lost (no live copy)",
            self.kept_lost.to_string(),
        );
        row(
            "kept blocks < 3 live copies: before churn / end",
            format!(
                "{} / {}",
                self.kept_under_replicated_before_churn, self.kept_under_replicated
            ),
        );
        for e in &self.loss_events {
            row(
                &format!(
                    "  round {}: -{} nodes, {} wiped",
                    e.round, e.removed, e.wiped
                ),
                format!(
                    "<3 copies {} (lost {}), repaired after {}, <3 at end {}; {} reads failed",
                    e.under_replicated,
                    e.lost,
                    e.repaired_after_secs
                        .map_or("not within the round".to_owned(), |s| format!("{s:.0} s")),
                    e.under_at_end,
                    e.reads_failed
                ),
            );
        }
        row(
            "lookups of held blocks: found / made",
            format!(
                "{} / {} ({:.3}%)",
                self.reads_eligible_found,
                self.reads_eligible,
                self.lookup_success * 100.0
            ),
        );
        row(
            "  outside partitions: found / made",
            format!(
                "{} / {}",
                self.reads_eligible_unpartitioned_found, self.reads_eligible_unpartitioned
            ),
        );
        row(
            "reads: all / of unheld blocks found",
            format!("{} / {}", self.reads, self.reads_ineligible_found),
        );
        row("local hits (0 hops)", self.local_hits.to_string());
        row(
            "hops p50 / p99 (all found; mesh only)",
            format!(
                "{} / {}; {} / {}",
                self.hops_p50, self.hops_p99, self.mesh_hops_p50, self.mesh_hops_p99
            ),
        );
        row(
            "latency p50 / p99 (simulated ms)",
            format!("{:.0} / {:.0}", self.latency_ms_p50, self.latency_ms_p99),
        );
        row(
            "top 1% blocks: share of live nodes mean / min",
            format!(
                "{:.1}% / {:.1}%",
                self.top1_replica_share_mean * 100.0,
                self.top1_replica_share_min * 100.0
            ),
        );
        row(
            "last-round blocks: requested / lost",
            format!(
                "{} / {}",
                self.last_round_requested, self.last_round_requested_lost
            ),
        );
        for ((name, bytes), (_, n)) in self.bytes_per_node_hour.iter().zip(&self.exchanges) {
            row(
                &format!("{name} bytes per node-hour (exchanges)"),
                format!("{:.0} ({n})", bytes),
            );
        }
        row(
            "memory per node (RSS / live nodes)",
            format!("{} KiB", self.memory_per_node / 1024),
        );
        out
    }
}

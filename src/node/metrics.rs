//! Counters of what the node did, rendered in the Prometheus text format for
//! `/metrics`. Plain atomics and one small map; nothing here knows HTTP types (the HTTP
//! layer reports each request as a route name and a status number).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::StoreStats;

/// Everything counted since start.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Request body bytes received.
    pub bytes_in: AtomicU64,
    /// Response body bytes sent.
    pub bytes_out: AtomicU64,
    /// GETs and HEADs answered from the store at once.
    pub hits: AtomicU64,
    /// GETs and HEADs that had to wait and were answered by an arrival.
    pub waited_hits: AtomicU64,
    /// GETs and HEADs that waited and found nothing in time.
    pub misses: AtomicU64,
    /// HEADs with no wait (`?wait=0`: existence checks, such as `put`'s and `backup`'s
    /// before sending a block) that found nothing: not misses.
    pub absent: AtomicU64,
    /// Lookups started on the mesh (one per id, however many wait).
    pub lookups: AtomicU64,
    /// PUTs that stored a new block.
    pub puts_stored: AtomicU64,
    /// PUTs of a block already held.
    pub puts_held: AtomicU64,
    /// PUTs refused: bytes that do not hash to the id.
    pub puts_rejected: AtomicU64,
    /// Requests refused because too many were waiting.
    pub waiters_refused: AtomicU64,
    /// LIKE queries.
    pub likes: AtomicU64,
    /// Bytes re-hashed by the background scrub.
    pub scrubbed_bytes: AtomicU64,
}

/// Gauges sampled when rendering.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// The store's figures.
    pub store: StoreStats,
    /// Requests waiting for blocks now.
    pub waiting: usize,
    /// Seconds since start.
    pub uptime_secs: u64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record_request(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route, status))
            .or_default() += 1;
    }

    /// Requests answered, all routes and statuses.
    pub fn total_requests(&self) -> u64 {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of all counters and `gauges`.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP libernet_http_requests_total Requests answered, by route and status.\n",
        );
        out.push_str("# TYPE libernet_http_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "libernet_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "bytes_in_total",
                "Request body bytes received.",
                load(&self.bytes_in),
            ),
            (
                "bytes_out_total",
                "Response body bytes sent.",
                load(&self.bytes_out),
            ),
            (
                "block_hits_total",
                "Block requests answered from the store.",
                load(&self.hits),
            ),
            (
                "block_waited_hits_total",
                "Block requests answered by an arrival while waiting.",
                load(&self.waited_hits),
            ),
            (
                "block_misses_total",
                "Block requests that waited and found nothing in time.",
                load(&self.misses),
            ),
            (
                "block_absent_total",
                "HEADs with no wait (existence checks) that found nothing.",
                load(&self.absent),
            ),
            (
                "lookups_total",
                "Lookups started for missing blocks.",
                load(&self.lookups),
            ),
            (
                "puts_stored_total",
                "PUTs that stored a new block.",
                load(&self.puts_stored),
            ),
            (
                "puts_held_total",
                "PUTs of a block already held.",
                load(&self.puts_held),
            ),
            (
                "puts_rejected_total",
                "PUTs whose bytes did not hash to the id.",
                load(&self.puts_rejected),
            ),
            (
                "waiters_refused_total",
                "Requests refused because too many were waiting.",
                load(&self.waiters_refused),
            ),
            (
                "like_queries_total",
                "LIKE queries answered.",
                load(&self.likes),
            ),
            (
                "scrubbed_bytes_total",
                "Bytes re-hashed by the background scrub.",
                load(&self.scrubbed_bytes),
            ),
            (
                "evictions_total",
                "Blocks evicted to make room.",
                gauges.store.evictions,
            ),
            (
                "quarantined_total",
                "Blocks quarantined because their bytes no longer matched.",
                gauges.store.quarantined,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP libernet_{name} {help}\n# TYPE libernet_{name} counter\nlibernet_{name} {value}"
            );
        }
        let gauge_rows = [
            ("store_blocks", "Blocks held.", gauges.store.blocks),
            ("store_bytes", "Bytes held.", gauges.store.bytes),
            (
                "store_quota_bytes",
                "The store's quota.",
                gauges.store.quota,
            ),
            (
                "waiting_requests",
                "Requests waiting for blocks.",
                gauges.waiting as u64,
            ),
            ("uptime_seconds", "Seconds since start.", gauges.uptime_secs),
        ];
        for (name, help, value) in gauge_rows {
            let _ = writeln!(
                out,
                "# HELP libernet_{name} {help}\n# TYPE libernet_{name} gauge\nlibernet_{name} {value}"
            );
        }
        out
    }
}

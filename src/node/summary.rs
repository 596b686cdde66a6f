//! The log's summary line: every `summary_interval` (a minute by default) one line at
//! info level with what the node did since the previous line, so an operator sees a
//! node's load in its log without one line per request (those are at debug level).
//! Reads the counters and the peer table; changes nothing.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Node;
use super::history::Totals;

/// What the summary line says about one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// Counters during the period.
    pub during: Totals,
    /// Existence checks (`?wait=0`) that found nothing during the period.
    pub absent: u64,
}

/// Counters since start, for the difference with the next reading.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    totals: Totals,
    absent: u64,
}

impl Reading {
    fn of(node: &Node) -> Reading {
        Reading {
            totals: Totals::of(node.metrics()),
            absent: node.metrics().absent.load(Ordering::Relaxed),
        }
    }

    fn since(&self, earlier: &Reading) -> Period {
        let (a, b) = (&self.totals, &earlier.totals);
        Period {
            during: Totals {
                requests: a.requests.saturating_sub(b.requests),
                hits: a.hits.saturating_sub(b.hits),
                misses: a.misses.saturating_sub(b.misses),
                lookups: a.lookups.saturating_sub(b.lookups),
                bytes_in: a.bytes_in.saturating_sub(b.bytes_in),
                bytes_out: a.bytes_out.saturating_sub(b.bytes_out),
            },
            absent: self.absent.saturating_sub(earlier.absent),
        }
    }
}

/// Logs a summary line every `every` until the node is gone.
pub async fn run(node: Weak<Node>, every: Duration) {
    if every.is_zero() {
        return;
    }
    let mut previous = match node.upgrade() {
        Some(node) => Reading::of(&node),
        None => return,
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else { return };
        let now = Reading::of(&node);
        let period = now.since(&previous);
        previous = now;
        let peers = node.mesh().peers_view().peers;
        let healthy = peers.iter().filter(|p| p.health == "ok").count();
        let store = node.store_stats();
        let d = period.during;
        tracing::info!(
            secs = every.as_secs_f64(),
            requests = d.requests,
            hits = d.hits,
            misses = d.misses,
            absent = period.absent,
            lookups = d.lookups,
            bytes_in = d.bytes_in,
            bytes_out = d.bytes_out,
            peers = peers.len(),
            peers_healthy = healthy,
            blocks = store.blocks,
            stored_bytes = store.bytes,
            "summary"
        );
    }
}

//! The last 15 minutes of the node's activity, for the dashboard's live charts: every
//! `HISTORY_STEP` the counters are read and the difference from the previous reading is
//! kept, `HISTORY_POINTS` of them in a ring. In memory only; a restart starts empty.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::Metrics;

/// Time between two points.
pub const HISTORY_STEP: Duration = Duration::from_secs(5);

/// Points kept: 15 minutes of `HISTORY_STEP`s.
pub const HISTORY_POINTS: usize = 180;

/// The counters the charts show, as totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Requests answered.
    pub requests: u64,
    /// GETs and HEADs answered from the store or by an arrival.
    pub hits: u64,
    /// GETs and HEADs that found nothing in time.
    pub misses: u64,
    /// Mesh lookups started.
    pub lookups: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

impl Totals {
    /// Reads `metrics` now.
    pub fn of(metrics: &Metrics) -> Totals {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Totals {
            requests: metrics.total_requests(),
            hits: load(&metrics.hits) + load(&metrics.waited_hits),
            misses: load(&metrics.misses),
            lookups: load(&metrics.lookups),
            bytes_in: load(&metrics.bytes_in),
            bytes_out: load(&metrics.bytes_out),
        }
    }

    fn minus(&self, earlier: &Totals) -> Totals {
        Totals {
            requests: self.requests.saturating_sub(earlier.requests),
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            lookups: self.lookups.saturating_sub(earlier.lookups),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
        }
    }
}

/// One step: what happened in the `HISTORY_STEP` ending at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Unix seconds at the end of the step.
    pub at: u64,
    /// The counts during the step.
    #[serde(flatten)]
    pub during: Totals,
}

/// Reads `metrics` and records the step ending now in `history`.
pub fn sample(metrics: &Metrics, history: &std::sync::Mutex<History>) {
    let now = Totals::of(metrics);
    history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .sample(crate::client::unix_now(), now);
}

/// The ring of points.
#[derive(Debug, Default)]
pub struct History {
    last: Option<Totals>,
    points: VecDeque<Point>,
}

impl History {
    /// Records the step ending at `at` with counters `now`. The first reading only sets
    /// the baseline.
    pub fn sample(&mut self, at: u64, now: Totals) {
        if let Some(last) = self.last {
            if self.points.len() == HISTORY_POINTS {
                self.points.pop_front();
            }
            self.points.push_back(Point {
                at,
                during: now.minus(&last),
            });
        }
        self.last = Some(now);
    }

    /// The points, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.points.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(n: u64) -> Totals {
        Totals {
            requests: 10 * n,
            hits: 7 * n,
            misses: n,
            lookups: n,
            bytes_in: 100 * n,
            bytes_out: 1000 * n,
        }
    }

    #[test]
    fn points_are_differences_and_the_ring_keeps_the_newest() {
        let mut h = History::default();
        h.sample(0, totals(0));
        assert!(h.points().is_empty(), "the first reading is the baseline");
        h.sample(5, totals(2));
        assert_eq!(h.points()[0].during, totals(2));
        for i in 0..(HISTORY_POINTS as u64 + 10) {
            h.sample(10 + 5 * i, totals(3 + i));
        }
        let points = h.points();
        assert_eq!(points.len(), HISTORY_POINTS);
        assert_eq!(
            points.last().unwrap().at,
            10 + 5 * (HISTORY_POINTS as u64 + 9)
        );
        assert!(points.iter().all(|p| p.during == totals(1)));
        // A counter that went backwards (it cannot, but) gives 0, not a wrap.
        h.sample(10_000, totals(0));
        assert_eq!(h.points().last().unwrap().during, Totals::default());
    }
}

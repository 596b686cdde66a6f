//! Bandwidth limits of the mesh (`--max-upload-rate`, `--max-download-rate`): a token
//! bucket per direction, shared by everything the node exchanges with its peers. It
//! owns the buckets and a `Transport` wrapper that charges them for the asks this node
//! sends; the HTTP layer charges them for the answers it gives peers (through
//! `MeshRates::answered_peer`). Client traffic (browsers, the CLI) never passes here.
//!
//! The bucket runs into debt: a transfer larger than the tokens at hand is let through
//! and the next ones wait until the debt is paid off at the rate, so a block of any size
//! passes and the long-run average stays at the rate. Time is `clock::now()`, so tests
//! run it on tokio's paused clock.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::link::{AnswerFuture, Ask, IntroductionFuture, PeerLink, Transport};
use crate::client::NodeKey;
use crate::identity::Identity;

/// Seconds of traffic the bucket holds when full: an idle node may send this long a
/// burst at once. One second keeps the average over any few seconds near the rate
/// while letting a single ask through without waiting.
pub const BURST_SECS: f64 = 1.0;

/// A token bucket of `rate` bytes a second, holding at most `BURST_SECS` of them.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Tokens at `at`; negative: debt.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `rate` bytes a second (`rate` > 0).
    pub fn new(rate: u64) -> Bucket {
        let rate = rate.max(1) as f64;
        let burst = rate * BURST_SECS;
        Bucket {
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                at: crate::clock::now(),
            }),
        }
    }

    /// Takes `bytes` tokens (into debt if need be) and returns how long the caller
    /// must wait for the tokens it lacked; zero when the bucket had them.
    fn charge(&self, bytes: u64) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = crate::clock::now();
        let refill = now.saturating_duration_since(state.at).as_secs_f64() * self.rate;
        state.tokens = (state.tokens + refill).min(self.burst);
        state.at = now;
        state.tokens -= bytes as f64;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-state.tokens / self.rate)
        }
    }

    /// Takes `bytes` tokens, waiting until the bucket has paid for them.
    pub async fn take(&self, bytes: u64) {
        let wait = self.charge(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits until the bucket is out of debt (takes nothing).
    pub async fn clear(&self) {
        self.take(0).await;
    }

    /// Takes `bytes` tokens without waiting: the debt falls on later transfers.
    pub fn owe(&self, bytes: u64) {
        let _ = self.charge(bytes);
    }
}

/// The node's two buckets; `None` for a direction without a limit.
#[derive(Debug, Clone, Default)]
pub struct MeshRates {
    /// Bytes sent to peers.
    pub upload: Option<Arc<Bucket>>,
    /// Bytes received from peers.
    pub download: Option<Arc<Bucket>>,
}

impl MeshRates {
    /// Buckets for these rates in bytes a second; 0: unlimited.
    pub fn new(upload: u64, download: u64) -> MeshRates {
        let bucket = |rate: u64| (rate > 0).then(|| Arc::new(Bucket::new(rate)));
        MeshRates {
            upload: bucket(upload),
            download: bucket(download),
        }
    }

    /// True when neither direction is limited.
    pub fn unlimited(&self) -> bool {
        self.upload.is_none() && self.download.is_none()
    }

    /// Charges a request a peer sent this node (`received` body bytes) and this node's
    /// answer (`sent` body bytes); returns once both are paid for, so the answer goes
    /// out no faster than the limits.
    pub async fn answered_peer(&self, received: u64, sent: u64) {
        if let Some(download) = &self.download {
            download.take(received).await;
        }
        if let Some(upload) = &self.upload {
            upload.take(sent).await;
        }
    }

    /// `transport` with every ask and answer charged to these buckets.
    pub fn wrap(&self, transport: Arc<dyn Transport>) -> Arc<dyn Transport> {
        if self.unlimited() {
            return transport;
        }
        Arc::new(Limited {
            inner: transport,
            rates: self.clone(),
        })
    }
}

/// A transport whose links charge the buckets.
struct Limited {
    inner: Arc<dyn Transport>,
    rates: MeshRates,
}

impl Transport for Limited {
    fn link(&self, url: &str, peer: NodeKey, me: Arc<Identity>) -> Arc<dyn PeerLink> {
        Arc::new(LimitedLink {
            inner: self.inner.link(url, peer, me),
            rates: self.rates.clone(),
        })
    }

    fn introduce(&self, url: &str) -> IntroductionFuture<'_> {
        self.inner.introduce(url)
    }
}

struct LimitedLink {
    inner: Arc<dyn PeerLink>,
    rates: MeshRates,
}

impl PeerLink for LimitedLink {
    /// An ask waits for its body's upload tokens and for the download bucket to be out
    /// of debt before it is sent; its answer's bytes are owed afterwards (their size is
    /// not known before), so the asks after it wait for them. The wait counts against
    /// the ask's `timeout`.
    fn send(&self, ask: Ask, timeout: Duration) -> AnswerFuture<'_> {
        Box::pin(async move {
            let started = crate::clock::now();
            let pay = async {
                if let Some(upload) = &self.rates.upload {
                    upload.take(ask.body_len()).await;
                }
                if let Some(download) = &self.rates.download {
                    download.clear().await;
                }
            };
            if tokio::time::timeout(timeout, pay).await.is_err() {
                return Err(super::link::LinkError::Timeout(timeout));
            }
            let left = timeout.saturating_sub(started.elapsed());
            let answer = self.inner.send(ask, left).await?;
            if let Some(download) = &self.rates.download {
                download.owe(answer.body_len());
            }
            Ok(answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_lets_a_burst_through_then_paces_at_the_rate() {
        let bucket = Bucket::new(1000);
        let start = Instant::now();
        bucket.take(1000).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "one second's burst is free"
        );
        bucket.take(500).await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        bucket.take(2000).await;
        assert_eq!(start.elapsed(), Duration::from_millis(2500));
        // Idle time refills, but never beyond one second's worth.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let rested = Instant::now();
        bucket.take(1000).await;
        assert_eq!(rested.elapsed(), Duration::ZERO);
        bucket.take(1000).await;
        assert_eq!(rested.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn debt_falls_on_the_next_transfer() {
        let bucket = Bucket::new(100);
        let start = Instant::now();
        bucket.owe(400); // 100 in the bucket: 300 owed, 3 s at 100 B/s
        assert_eq!(start.elapsed(), Duration::ZERO);
        bucket.clear().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        bucket.take(0).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_takers_share_the_rate() {
        let bucket = Arc::new(Bucket::new(1000));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let bucket = bucket.clone();
            tasks.push(tokio::spawn(async move { bucket.take(1000).await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 5,000 bytes at 1,000 a second, with 1,000 in the bucket: 4 s.
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[test]
    fn no_limit_no_buckets() {
        assert!(MeshRates::new(0, 0).unlimited());
        let rates = MeshRates::new(10, 0);
        assert!(rates.upload.is_some() && rates.download.is_none());
    }
}

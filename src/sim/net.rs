//! The simulation's network: a `Transport` per node whose links hand each ask straight
//! to the target node's `answer_peer` (no HTTP, no signatures) after a simulated
//! one-way delay, or fail it as the network's state says: the target is gone (fails
//! after a round trip, like a refused connection), cut off by a partition or the message
//! is lost (fails at the ask's timeout, like silence). Delays and losses are drawn from a
//! hash of the seed, the two ends and the link's message count, so they do not depend on
//! how tasks interleave across links.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::client::{ClientError, NodeKey};
use crate::http::answer_peer;
use crate::id::BlockId;
use crate::identity::Identity;
use crate::mesh::link::{AnswerFuture, Ask, IntroductionFuture, LinkError, PeerLink, Transport};
use crate::node::Node;

/// What the traffic figures are split by: the purpose of each ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `Get` and `Like`: lookups and their forwards.
    Lookup,
    /// `Has` and `Offer` without custody: pushes to homes and of hot blocks.
    Push,
    /// `Offer` with a custody lease: placing or repairing a kept block.
    Custody,
    /// `Holds`: batched repair checks and lease renewals.
    Repair,
    /// `Introduce`, `Announce` and meeting a node at its URL: gossip and joining.
    Gossip,
    /// `Read`: surveys.
    Survey,
}

/// Every purpose, in the order of `Traffic`'s arrays.
pub const PURPOSES: [Purpose; 6] = [
    Purpose::Lookup,
    Purpose::Push,
    Purpose::Custody,
    Purpose::Repair,
    Purpose::Gossip,
    Purpose::Survey,
];

impl Purpose {
    fn of(ask: &Ask) -> Purpose {
        match ask {
            Ask::Get { .. } | Ask::Like { .. } => Purpose::Lookup,
            Ask::Has { .. } => Purpose::Push,
            Ask::Offer { keep_until, .. } | Ask::OfferMany { keep_until, .. } => {
                if keep_until.is_some() {
                    Purpose::Custody
                } else {
                    Purpose::Push
                }
            }
            Ask::Holds { .. } => Purpose::Repair,
            Ask::Introduce { .. } | Ask::Announce(_) => Purpose::Gossip,
            Ask::Read { .. } => Purpose::Survey,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Lookup => "lookup",
            Purpose::Push => "push",
            Purpose::Custody => "custody",
            Purpose::Repair => "repair",
            Purpose::Gossip => "gossip",
            Purpose::Survey => "survey",
        }
    }
}

/// Bytes an exchange costs beyond its body: a request line, headers and a signature
/// each way, about what the HTTP transport sends (a signed request and its signed
/// reply are some 600 bytes of headers).
pub const EXCHANGE_OVERHEAD: u64 = 600;

/// Messages and bytes sent, by purpose.
#[derive(Debug, Default)]
pub struct Traffic {
    messages: [AtomicU64; 6],
    bytes: [AtomicU64; 6],
}

impl Traffic {
    fn add(&self, purpose: Purpose, bytes: u64) {
        self.messages[purpose.index()].fetch_add(1, Ordering::Relaxed);
        self.bytes[purpose.index()].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Exchanges and bytes (bodies both ways plus `EXCHANGE_OVERHEAD`) for `purpose`.
    pub fn of(&self, purpose: Purpose) -> (u64, u64) {
        (
            self.messages[purpose.index()].load(Ordering::Relaxed),
            self.bytes[purpose.index()].load(Ordering::Relaxed),
        )
    }
}

/// The network's faults and delays.
#[derive(Debug, Clone, Copy)]
pub struct NetSettings {
    /// Seed of delays and losses.
    pub seed: u64,
    /// Shortest one-way delay.
    pub min_delay: Duration,
    /// Longest one-way delay (uniform between the two).
    pub max_delay: Duration,
    /// Share of asks lost (the asker hears nothing until its timeout), 0 to 1.
    pub loss: f64,
}

#[derive(Default)]
struct State {
    /// Live nodes by URL, with their index in the world.
    nodes: HashMap<String, (usize, Weak<Node>)>,
    /// Nodes cut off from the rest (they still reach each other).
    cut: BTreeSet<usize>,
}

/// The network every sim transport shares.
pub struct Net {
    settings: NetSettings,
    state: Mutex<State>,
    /// What crossed it.
    pub traffic: Traffic,
}

/// Where an ask goes.
enum Route {
    /// A live node on the same side.
    To(Arc<Node>),
    /// No node there any more: fails after a round trip.
    Gone,
    /// Across a partition: silence.
    Cut,
}

impl Net {
    /// An empty network.
    pub fn new(settings: NetSettings) -> Arc<Net> {
        Arc::new(Net {
            settings,
            state: Mutex::new(State::default()),
            traffic: Traffic::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attaches `node` (index `index`) at `url`.
    pub fn attach(&self, url: &str, index: usize, node: &Arc<Node>) {
        self.state()
            .nodes
            .insert(url.to_owned(), (index, Arc::downgrade(node)));
    }

    /// Detaches the node at `url`: asks to it fail from now on.
    pub fn detach(&self, url: &str) {
        self.state().nodes.remove(url);
    }

    /// Cuts `nodes` off from the others (replacing any earlier partition).
    pub fn partition(&self, nodes: BTreeSet<usize>) {
        self.state().cut = nodes;
    }

    /// Ends the partition.
    pub fn heal(&self) {
        self.state().cut.clear();
    }

    /// Whether nodes `a` and `b` are on the same side of the partition.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        let state = self.state();
        state.cut.contains(&a) == state.cut.contains(&b)
    }

    fn route(&self, from: usize, url: &str) -> Route {
        let state = self.state();
        match state.nodes.get(url) {
            None => Route::Gone,
            Some((to, node)) => {
                if state.cut.contains(&from) != state.cut.contains(to) {
                    Route::Cut
                } else {
                    node.upgrade().map_or(Route::Gone, Route::To)
                }
            }
        }
    }

    /// The one-way delay and whether the message is lost, for message `n` on the link
    /// `from` to `to`.
    fn draw(&self, from: usize, to: &str, n: u64) -> (Duration, bool) {
        let mut h = self.settings.seed ^ (from as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in to.bytes() {
            h = mix(h ^ u64::from(b));
        }
        let a = mix(h ^ n);
        let b = mix(a);
        let (lo, hi) = (self.settings.min_delay, self.settings.max_delay);
        let span = hi.saturating_sub(lo).as_micros() as u64;
        let delay = lo + Duration::from_micros(if span == 0 { 0 } else { a % (span + 1) });
        let lost = (b >> 11) as f64 / (1u64 << 53) as f64 <= self.settings.loss
            && self.settings.loss > 0.0;
        (delay, lost)
    }
}

/// SplitMix64's finaliser: a well-spread 64-bit hash step.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One node's transport: it knows who is asking.
pub struct SimTransport {
    net: Arc<Net>,
    me: usize,
    /// Messages sent by `introduce` (links count their own).
    seq: AtomicU64,
}

impl SimTransport {
    /// The transport of node `me` on `net`.
    pub fn new(net: Arc<Net>, me: usize) -> SimTransport {
        SimTransport {
            net,
            me,
            seq: AtomicU64::new(0),
        }
    }
}

impl Transport for SimTransport {
    fn link(&self, url: &str, peer: NodeKey, me: Arc<Identity>) -> Arc<dyn PeerLink> {
        let _ = peer;
        Arc::new(SimLink {
            net: self.net.clone(),
            from: self.me,
            from_id: me.id(),
            to: url.to_owned(),
            seq: AtomicU64::new(0),
        })
    }

    fn introduce(&self, url: &str) -> IntroductionFuture<'_> {
        let url = url.trim_end_matches('/').to_owned();
        Box::pin(async move {
            let n = self.seq.fetch_add(1, Ordering::Relaxed) | 1 << 63;
            let (delay, lost) = self.net.draw(self.me, &url, n);
            self.net.traffic.add(Purpose::Gossip, EXCHANGE_OVERHEAD);
            match self.net.route(self.me, &url) {
                Route::To(node) if !lost => {
                    tokio::time::sleep(delay * 2).await;
                    let key = NodeKey {
                        id: node.identity().id(),
                        key: node.identity().public_key(),
                    };
                    let info = node.info();
                    Ok((key, info))
                }
                Route::Gone => {
                    tokio::time::sleep(delay * 2).await;
                    Err(ClientError::Transport(format!("{url}: connection refused")))
                }
                _ => {
                    // Silence, until the gossip exchange's timeout (5 s) would end it.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Err(ClientError::Transport(format!("{url}: timed out")))
                }
            }
        })
    }
}

/// A link from one node to the node at a URL.
struct SimLink {
    net: Arc<Net>,
    from: usize,
    from_id: BlockId,
    to: String,
    seq: AtomicU64,
}

impl PeerLink for SimLink {
    fn send(&self, ask: Ask, timeout: Duration) -> AnswerFuture<'_> {
        Box::pin(async move {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let (delay, lost) = self.net.draw(self.from, &self.to, n);
            let purpose = Purpose::of(&ask);
            let sent = ask.body_len() + EXCHANGE_OVERHEAD;
            let node = match self.net.route(self.from, &self.to) {
                Route::To(node) if !lost => node,
                Route::Gone => {
                    self.net.traffic.add(purpose, sent);
                    tokio::time::sleep((delay * 2).min(timeout)).await;
                    return Err(LinkError::Client(ClientError::Transport(
                        "connection refused".into(),
                    )));
                }
                _ => {
                    self.net.traffic.add(purpose, sent);
                    tokio::time::sleep(timeout).await;
                    return Err(LinkError::Timeout(timeout));
                }
            };
            let (from_id, net) = (self.from_id, &self.net);
            let exchange = async move {
                tokio::time::sleep(delay).await;
                let answer = answer_peer(&node, from_id, ask).await;
                drop(node);
                net.traffic.add(purpose, sent + answer.body_len());
                tokio::time::sleep(delay).await;
                answer
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(answer) => Ok(answer),
                Err(_) => Err(LinkError::Timeout(timeout)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_within_bounds() {
        let net = Net::new(NetSettings {
            seed: 7,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            loss: 0.1,
        });
        let mut lost = 0;
        for n in 0..10_000 {
            let (d, l) = net.draw(3, "http://sim-4", n);
            assert_eq!((d, l), net.draw(3, "http://sim-4", n));
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(50));
            lost += u32::from(l);
        }
        assert!((800..1200).contains(&lost), "{lost}");
        let quiet = Net::new(NetSettings {
            loss: 0.0,
            ..net.settings
        });
        assert!((0..1000).all(|n| !quiet.draw(1, "http://sim-2", n).1));
    }
}

//! Joining and gossip (DESIGN 6): a node contacts each seed (`GET /node`, checked),
//! pushes its identity block there, and announces itself with a signed `PUT /peers`
//! listing the peers it knows; the answer lists the receiver's peers, which become
//! candidates to contact in turn. Each gossip round announces to a few random peers and
//! to quiet ones, contacts candidates, and drops peers that have failed for a grace
//! period. With gossip off (interval 0) a node talks to its seeds only.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use crate::clock::Instant;

use bytes::Bytes;

use super::link::{Answer, Ask, LinkError};
use super::peers::MAX_PEERS;
use super::{Health, Mesh, MeshError, REPLICAS};
use crate::client::ClientError;
use crate::id::BlockId;
use crate::proto::{Announce, PeerRef, PeerView, PeersView, SeedView};

/// Peers announced to each round, chosen at random.
pub const GOSSIP_FANOUT: usize = 3;

/// A peer not heard from for this many rounds gets an announcement too.
pub const QUIET_ROUNDS: u32 = 3;

/// Quiet peers announced to per round, the longest quiet first. The next quiet ones,
/// up to `MAX_ANNOUNCED` in all, are only probed (`HEAD` of their own identity block,
/// which every node holds): with a thousand peers, a full announcement to each quiet
/// one cost more than all other traffic together (docs/mesh.md "Simulation"), while a
/// probe is enough to find a peer that is gone.
pub const QUIET_PER_ROUND: usize = 8;

/// Gossiped URLs contacted per round.
pub const CONNECTS_PER_ROUND: usize = 8;

/// Peers listed in one announcement.
pub const MAX_ANNOUNCED: usize = 64;

/// A failing peer is dropped after this many rounds without a successful exchange.
pub const GRACE_ROUNDS: u32 = 10;

/// ... but never sooner than this.
pub const MIN_GRACE: Duration = Duration::from_secs(30);

/// Pause between attempts to reach seeds when gossip is off.
pub const SEED_RETRY: Duration = Duration::from_secs(5);

/// Time allowed for one gossip exchange (and for a node's `/node` when contacting it:
/// an address that drops packets would otherwise hold the gossip loop for the OS's
/// connect timeout, minutes).
const GOSSIP_TIMEOUT: Duration = Duration::from_secs(5);

/// What this node knows of one of its seeds (see `SeedView`).
#[derive(Debug, Clone, Default)]
pub(super) struct SeedState {
    failures: u32,
    /// Why the last attempt failed (`public_reason`); `None` after a success.
    error: Option<String>,
    last_attempt: Option<u64>,
}

/// Joins the seeds, then gossips every round, until the mesh is dropped.
pub(super) async fn run(mesh: Weak<Mesh>) {
    loop {
        let Some(m) = mesh.upgrade() else { return };
        m.join_seeds().await;
        let interval = m.settings.gossip_interval;
        if !interval.is_zero() {
            m.gossip_round(interval).await;
        }
        let grace = (interval * GRACE_ROUNDS).max(MIN_GRACE);
        m.expire_peers(grace);
        let bits = m.peers().near_bits(REPLICAS);
        m.store.valuer().set_near_bits(bits);
        drop(m);
        let pause = if interval.is_zero() {
            SEED_RETRY
        } else {
            interval
        };
        tokio::time::sleep(pause).await;
    }
}

impl Mesh {
    /// Contacts the seeds not known as peers yet (never this node's own URL).
    async fn join_seeds(self: &Arc<Self>) {
        let missing: Vec<String> = {
            let peers = self.peers();
            self.settings
                .seeds
                .iter()
                .filter(|s| !peers.has_url(s.trim_end_matches('/')) && !self.is_own_url(s))
                .cloned()
                .collect()
        };
        for seed in missing {
            let joined = self.connect(&seed).await;
            self.note_seed(&seed, joined);
        }
    }

    fn is_own_url(&self, seed: &str) -> bool {
        seed.trim_end_matches('/') == self.url
    }

    /// Records an attempt to join `seed`. A failure is a warning (with the URL and the
    /// error) the first time and whenever its reason changes, and a debug line while
    /// it stays the same, so a dead seed does not fill the log every round.
    fn note_seed(&self, seed: &str, joined: Result<BlockId, MeshError>) {
        let mut seeds = self.seeds.lock().unwrap_or_else(PoisonError::into_inner);
        let state = seeds.entry(seed.to_owned()).or_default();
        state.last_attempt = Some(crate::clock::unix_now());
        match joined {
            Ok(peer) => {
                if state.error.is_some() {
                    tracing::info!(seed, %peer, failures = state.failures, "seed reached");
                }
                state.failures = 0;
                state.error = None;
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let reason = public_reason(&e);
                if state.error.as_deref() == Some(reason.as_str()) {
                    tracing::debug!(seed, error = %e, failures = state.failures, "seed still not reached");
                } else {
                    tracing::warn!(seed, error = %e, "seed not reached; trying again every round");
                }
                state.error = Some(reason);
            }
        }
    }

    /// The seeds and how joining them went, for `GET /peers`.
    pub fn seeds_view(&self) -> Vec<SeedView> {
        let seeds = self.seeds.lock().unwrap_or_else(PoisonError::into_inner);
        let peers = self.peers();
        self.settings
            .seeds
            .iter()
            .map(|url| {
                let state = seeds.get(url).cloned().unwrap_or_default();
                let word = if self.is_own_url(url) {
                    "self"
                } else if peers.has_url(url.trim_end_matches('/')) {
                    "joined"
                } else if state.error.is_some() {
                    "failing"
                } else {
                    "pending"
                };
                SeedView {
                    url: url.clone(),
                    state: word.to_owned(),
                    failures: state.failures,
                    error: state.error,
                    last_attempt: state.last_attempt,
                }
            })
            .collect()
    }

    /// Announces to a few peers and the quiet ones, and contacts gossiped URLs.
    async fn gossip_round(self: &Arc<Self>, interval: Duration) {
        let now = Instant::now();
        let probes: Vec<BlockId>;
        let targets: Vec<BlockId> = {
            let peers = self.peers();
            let mut all: Vec<&super::peers::Peer> = peers.all().filter(|p| p.usable(now)).collect();
            all.sort_unstable_by_key(|p| p.id);
            let mut quiet: Vec<&super::peers::Peer> = all
                .iter()
                .copied()
                .filter(|p| now.saturating_duration_since(p.last_seen) >= interval * QUIET_ROUNDS)
                .collect();
            quiet.sort_by_key(|p| p.last_seen);
            let mut chosen: Vec<BlockId> =
                quiet.iter().map(|p| p.id).take(QUIET_PER_ROUND).collect();
            probes = quiet
                .iter()
                .map(|p| p.id)
                .skip(QUIET_PER_ROUND)
                .take(MAX_ANNOUNCED.saturating_sub(QUIET_PER_ROUND))
                .collect();
            for _ in 0..GOSSIP_FANOUT.min(all.len()) {
                let pick = all[(self.random() % all.len() as u64) as usize].id;
                if !chosen.contains(&pick) {
                    chosen.push(pick);
                }
            }
            chosen
        };
        let mut tasks = tokio::task::JoinSet::new();
        for peer in probes.into_iter().filter(|p| !targets.contains(p)) {
            let this = self.clone();
            tasks.spawn(async move {
                // The answer does not matter: `send` records whether the peer answered.
                let _ = this
                    .send(&peer, Ask::Has { id: peer }, GOSSIP_TIMEOUT)
                    .await;
                Ok(())
            });
        }
        for peer in targets {
            let this = self.clone();
            tasks.spawn(async move { this.announce_to(&peer).await });
        }
        let candidates = self.peers_mut().take_candidates(CONNECTS_PER_ROUND);
        for url in candidates {
            let this = self.clone();
            tasks.spawn(async move { this.connect(&url).await.map(|_| ()) });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::debug!(error = %e, "gossip exchange failed");
            }
        }
    }

    /// Checks the node at `url` (`GET /node`), adds it as a peer, pushes this node's
    /// identity block to it and announces. Returns its id.
    pub async fn connect(self: &Arc<Self>, url: &str) -> Result<BlockId, MeshError> {
        let url = url.trim_end_matches('/');
        if url == self.url {
            return Err(MeshError::BadPeer("that is this node's own URL".into()));
        }
        let (node, info) = tokio::time::timeout(GOSSIP_TIMEOUT, self.transport.introduce(url))
            .await
            .map_err(|_| MeshError::Peer {
                url: url.to_owned(),
                source: LinkError::Timeout(GOSSIP_TIMEOUT),
            })?
            .map_err(|e| MeshError::from((url.to_owned(), e)))?;
        if node.id == self.me() {
            return Err(MeshError::BadPeer(format!("{url} is this node")));
        }
        // Keep its identity block too: it is how requests it signs are checked later.
        let block = Bytes::from(info.identity_block.into_bytes());
        let admission = crate::store::Admission::UPLOAD;
        self.keep(node.id, block, admission).await;
        self.add_peer(node, url);
        let introduce = Ask::Introduce {
            block: Bytes::copy_from_slice(self.identity.block()),
        };
        match self.send(&node.id, introduce, GOSSIP_TIMEOUT).await {
            Ok(Answer::Stored | Answer::Held) => {}
            Ok(answer) => {
                return Err(MeshError::Peer {
                    url: url.to_owned(),
                    source: refusal("PUT", format!("/sha256/{}", self.me()), answer),
                });
            }
            Err(source) => {
                return Err(MeshError::Peer {
                    url: url.to_owned(),
                    source,
                });
            }
        }
        self.announce_to(&node.id).await?;
        Ok(node.id)
    }

    /// Sends a signed `PUT /peers` to `peer` and learns from its answer.
    async fn announce_to(self: &Arc<Self>, peer: &BlockId) -> Result<(), MeshError> {
        let url = self
            .peers()
            .get(peer)
            .map(|p| p.url.clone())
            .unwrap_or_default();
        let announce = Announce {
            id: self.me().to_string(),
            url: self.url.clone(),
            peers: self
                .peers()
                .nearest(peer, MAX_ANNOUNCED, &[*peer], Instant::now())
                .into_iter()
                .map(|p| PeerRef {
                    id: p.id.to_string(),
                    url: p.url.clone(),
                })
                .collect(),
        };
        self.counters.gossip_sent.fetch_add(1, Ordering::Relaxed);
        let peer_err = |source| MeshError::Peer {
            url: url.clone(),
            source,
        };
        match self
            .send(peer, Ask::Announce(announce), GOSSIP_TIMEOUT)
            .await
            .map_err(peer_err)?
        {
            Answer::Peers(view) => {
                self.learn(view.peers.iter().map(|p| (p.id.as_str(), p.url.as_str())));
                Ok(())
            }
            answer => Err(peer_err(refusal("PUT", "/peers".into(), answer))),
        }
    }

    /// Takes note of peers named by another node: unknown ones (and known ones that
    /// are failing and now named at another URL) become candidates to contact, when
    /// gossip is on.
    fn learn<'a>(&self, named: impl Iterator<Item = (&'a str, &'a str)>) {
        if self.settings.gossip_interval.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut peers = self.peers_mut();
        for (id, url) in named {
            let (Ok(id), true) = (id.parse::<BlockId>(), valid_url(url)) else {
                continue;
            };
            if id == self.me() {
                continue;
            }
            let wanted = match peers.get(&id) {
                None => peers.len() < MAX_PEERS,
                Some(p) => p.url != url && p.health(now) != Health::Ok,
            };
            if wanted {
                peers.add_candidate(url);
            }
        }
    }

    /// Handles `PUT /peers` from `from`, whose signature the node verified: adds it at
    /// the URL it gives, learns the peers it names, and returns this node's peers.
    pub fn accept_announce(
        &self,
        from: BlockId,
        announce: &Announce,
    ) -> Result<PeersView, MeshError> {
        self.counters
            .gossip_received
            .fetch_add(1, Ordering::Relaxed);
        if announce.id != from.to_string() {
            return Err(MeshError::BadPeer(
                "the announcement's id is not the signer's".into(),
            ));
        }
        if !valid_url(&announce.url) {
            return Err(MeshError::BadPeer(format!(
                "url {:?} is not like http://HOST:PORT",
                announce.url
            )));
        }
        if announce.peers.len() > MAX_ANNOUNCED {
            return Err(MeshError::BadPeer(format!(
                "at most {MAX_ANNOUNCED} peers per announcement"
            )));
        }
        let key = self.peer_key(&from).ok_or_else(|| {
            MeshError::BadPeer("unknown key: push the identity block first".into())
        })?;
        self.add_peer(crate::client::NodeKey { id: from, key }, &announce.url);
        self.learn(
            announce
                .peers
                .iter()
                .map(|p| (p.id.as_str(), p.url.as_str())),
        );
        Ok(self.peers_view_for(Some(from)))
    }

    /// This node's peers, nearest its id first.
    pub fn peers_view(&self) -> PeersView {
        self.peers_view_for(None)
    }

    /// The answer to an announcement from `to`: the `MAX_ANNOUNCED` peers nearest the
    /// announcer, the ones it needs to find its own region, nearest it first (every
    /// peer, nearest this node first, when `to` is None). Bounded, so an announcement's
    /// cost does not grow with the size of the mesh.
    fn peers_view_for(&self, to: Option<BlockId>) -> PeersView {
        let now = Instant::now();
        let wall = crate::clock::unix_now();
        let me = self.me();
        let peers = self.peers();
        let mut rows: Vec<&super::peers::Peer> = peers.all().filter(|p| Some(p.id) != to).collect();
        rows.sort_unstable_by_key(|p| p.id.distance(&to.unwrap_or(me)));
        if to.is_some() {
            rows.truncate(MAX_ANNOUNCED);
        }
        PeersView {
            id: me.to_string(),
            url: self.url.clone(),
            peers: rows
                .into_iter()
                .map(|p| PeerView {
                    id: p.id.to_string(),
                    url: p.url.clone(),
                    last_seen: wall
                        .saturating_sub(now.saturating_duration_since(p.last_seen).as_secs()),
                    health: match p.health(now) {
                        Health::Ok => "ok",
                        Health::Failing => "failing",
                        Health::Backoff => "backoff",
                    }
                    .to_owned(),
                    latency_ms: p.latency_ms.map(|l| (l * 1000.0).round() / 1000.0),
                    failures: p.failures,
                    bytes_in: p.bytes_in,
                    bytes_out: p.bytes_out,
                })
                .collect(),
            seeds: None,
        }
    }
}

/// Why joining a peer failed, in words that may be shown to anyone (`GET /peers` is
/// public): the error's own words where they are this program's, a summary where they
/// would carry the OS's (those go to the log).
fn public_reason(e: &MeshError) -> String {
    let client = |e: &ClientError| match e {
        ClientError::Transport(_) => {
            "cannot reach it: the connection failed (the log says why)".to_owned()
        }
        ClientError::Request(_) => "not a usable URL".to_owned(),
        ClientError::Status {
            method,
            path,
            status,
            ..
        } => format!("{method} {path} answered {status}"),
        ClientError::Identity(_)
        | ClientError::Digest(_)
        | ClientError::Signature(_)
        | ClientError::NotFound(_)
        | ClientError::HashMismatch(_) => format!("its answer did not verify: {e}"),
    };
    match e {
        MeshError::BadPeer(why) => why.clone(),
        MeshError::Peer { source, .. } => match source {
            LinkError::Client(e) => client(e),
            LinkError::Busy | LinkError::Closed | LinkError::Timeout(_) => source.to_string(),
            LinkError::Unexpected(_) => "its answer did not fit the request".to_owned(),
        },
    }
}

/// A base URL a peer may announce: `http://` or `https://`, a host, no path, no spaces.
fn valid_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    !rest.is_empty()
        && url.len() <= 256
        && !rest.contains('/')
        && rest.chars().all(|c| c.is_ascii_graphic())
}

/// A peer's answer that refused what was asked, as a link error naming the request.
fn refusal(method: &'static str, path: String, answer: Answer) -> LinkError {
    match answer {
        Answer::Refused { status, reason } => LinkError::Client(ClientError::Status {
            method,
            path,
            status,
            message: reason,
        }),
        other => LinkError::Unexpected(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::fake::mesh_with;

    /// The answer to an announcement lists at most `MAX_ANNOUNCED` peers, those nearest
    /// the announcer, never the announcer itself; `GET /peers` still lists every peer.
    #[test]
    fn an_announcement_is_answered_with_the_peers_nearest_the_announcer() {
        let (mesh, ids, _) = mesh_with(90);
        let from = ids[5];
        let announce = Announce {
            id: from.to_string(),
            url: "http://peer5.test".into(),
            peers: Vec::new(),
        };
        let view = mesh.accept_announce(from, &announce).unwrap();
        let mut others: Vec<BlockId> = ids.iter().copied().filter(|id| *id != from).collect();
        others.sort_unstable_by_key(|id| id.distance(&from));
        others.truncate(MAX_ANNOUNCED);
        let listed: Vec<BlockId> = view.peers.iter().map(|p| p.id.parse().unwrap()).collect();
        assert_eq!(listed, others);
        assert_eq!(mesh.peers_view().peers.len(), 90);
    }

    #[test]
    fn seed_failures_are_told_without_the_os_words() {
        let refused = MeshError::from((
            "http://127.0.0.1:1".to_owned(),
            ClientError::Transport("tcp connect error: Connection refused (os error 111)".into()),
        ));
        let reason = public_reason(&refused);
        assert!(reason.contains("cannot reach it"), "{reason}");
        assert!(!reason.contains("os error"), "{reason}");
        let slow = MeshError::Peer {
            url: "http://10.0.0.1:1".into(),
            source: LinkError::Timeout(GOSSIP_TIMEOUT),
        };
        assert_eq!(public_reason(&slow), "no reply within 5s");
    }

    #[test]
    fn announced_urls_must_be_plain_bases() {
        assert!(valid_url("http://127.0.0.1:8042"));
        assert!(valid_url("https://node.example"));
        for bad in [
            "ftp://x",
            "http://",
            "http://a/b",
            "http://a b",
            "127.0.0.1:1",
        ] {
            assert!(!valid_url(bad), "{bad}");
        }
    }
}

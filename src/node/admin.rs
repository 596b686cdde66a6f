//! The node's peer-facing and admin use cases: checking a peer's request signature,
//! announcements, the peer list; and, behind the admin token, pins, local deletion and
//! per-block statistics. No HTTP types.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::client::unix_now;
use crate::id::BlockId;
use crate::identity::{RequestTarget, SignatureFields, signature_keyid, verify_request};
use crate::mesh::{BlockStat, Event, Origin};
use crate::proto::{Announce, PeersView};

use crate::store::{Durability, Holder};

use super::{Node, NodeError, blocking};

/// Longest time a pin made with an upload waits to reach the pins file.
pub const PIN_FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Most ids one `POST /pins` may pin and unpin: about 1 MB of JSON, under the 1 MiB body cap.
pub const MAX_REPIN: usize = 15_000;

/// A batch of pin changes for one holder (`POST /pins`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repin {
    /// Whose pins change.
    pub holder: Holder,
    /// Ids to pin.
    #[serde(default)]
    pub pin: Vec<BlockId>,
    /// Ids to unpin.
    #[serde(default)]
    pub unpin: Vec<BlockId>,
}

/// What a `Repin` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Repinned {
    /// Pins added (ids the holder did not pin before).
    pub pinned: usize,
    /// Pins removed.
    pub unpinned: usize,
    /// Ids now pinned that are not held here (not fetched).
    pub absent: Vec<String>,
}

/// Time a pin of an absent block gives the mesh to find it.
pub const PIN_FETCH_BUDGET: Duration = Duration::from_secs(30);

/// Most rows in one page of `/stats`.
pub const MAX_STATS_PAGE: usize = 1000;

/// What a pin did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PinOutcome {
    /// Whether the block is pinned now.
    pub pinned: bool,
    /// Whether this call changed that.
    pub changed: bool,
    /// Whether the block is held here now (a pinned absent block is fetched).
    pub local: bool,
}

/// One row of `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatRow {
    /// Block id.
    pub id: String,
    /// Held here.
    pub local: bool,
    /// Pinned here.
    pub pinned: bool,
    /// Decayed request count (what eviction weighs), when held.
    pub heat: Option<f32>,
    /// Copies known: this node's, if held, and the peers known to hold it (see
    /// `Mesh::known_holders`).
    pub replicas: usize,
    /// The counters.
    #[serde(flatten)]
    pub stat: BlockStat,
}

/// A page of `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsPage {
    /// Rows in id order (or by requests, for `top`).
    pub blocks: Vec<StatRow>,
    /// Cursor for the next page (`?after=`), None at the end.
    pub next: Option<String>,
    /// Blocks tracked in all.
    pub tracked: usize,
}

impl Node {
    /// True when `token` is the admin token (compared in constant time).
    pub fn is_admin(&self, token: &str) -> bool {
        let (a, b) = (token.as_bytes(), self.admin_token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Checks a request signed by a node: it must be addressed to this node (its
    /// `@authority` one of this node's own names, see `is_own_authority`; `local` is the
    /// address the request arrived at), its key must be known here (a peer, or its
    /// identity block held), and the signature must be fresh and cover `target`.
    /// Returns the signer's id.
    pub fn verify_peer(
        &self,
        fields: &SignatureFields,
        target: &RequestTarget<'_>,
        local: Option<SocketAddr>,
    ) -> Result<BlockId, NodeError> {
        let refuse = |why: String| {
            self.mesh.refused_signature();
            NodeError::PeerAuth(why)
        };
        // A signature made for another node, replayed here with that node's Host,
        // verifies; only the authority says it was not meant for this node.
        if !is_own_authority(target.authority, &self.url, local) {
            return Err(refuse(format!(
                "signed for {:?}, which is not this node",
                target.authority
            )));
        }
        let keyid = signature_keyid(&fields.input)
            .ok_or_else(|| refuse("no keyid in Signature-Input".into()))?;
        let id: BlockId = keyid
            .parse()
            .map_err(|_| refuse(format!("keyid {keyid:?} is not a node id")))?;
        let key = match self.mesh.peer_key(&id) {
            Some(key) => key,
            // A joining node's first push of its own identity block, signed with the
            // key it brings: served as a client's upload, and not counted as refused.
            None if target.method == "PUT" && target.path == id.path() => {
                return Err(NodeError::PeerAuth(format!(
                    "unknown node {id}: its identity block arrives with this request"
                )));
            }
            None => {
                return Err(refuse(format!(
                    "unknown node {id}: push its identity block first"
                )));
            }
        };
        verify_request(fields, &keyid, &key, unix_now(), target)
            .map_err(|e| refuse(e.to_string()))?;
        Ok(id)
    }

    /// True when a request signed by node `input`'s keyid is that node's first push of
    /// its own identity block here (`PUT /sha256/<its id>` while its key is unknown):
    /// a normal join, refused as a peer's only because its key arrives with it.
    pub fn is_introduction(&self, input: &str, method: &str, path: &str) -> bool {
        let Some(id) = signature_keyid(input).and_then(|k| k.parse::<BlockId>().ok()) else {
            return false;
        };
        method == "PUT" && path == id.path() && self.mesh.peer_key(&id).is_none()
    }

    /// Handles a verified `PUT /peers` from `from`.
    pub fn announce(&self, from: BlockId, body: &[u8]) -> Result<PeersView, NodeError> {
        let announce: Announce = serde_json::from_slice(body)
            .map_err(|e| NodeError::BadAnnounce(format!("not an announcement: {e}")))?;
        self.mesh
            .accept_announce(from, &announce)
            .map_err(|e| NodeError::BadAnnounce(e.to_string()))
    }

    /// `GET /peers`: the peers, and how joining each seed went.
    pub fn peers(&self) -> PeersView {
        let mut view = self.mesh.peers_view();
        view.seeds = Some(self.mesh.seeds_view());
        view
    }

    /// Pins `id` for `holder`; an absent block is looked for in the mesh and kept when
    /// it arrives. With `only_if_held`, an absent block is neither pinned nor fetched
    /// (`local: false` says so): a client about to upload it asks this way.
    pub async fn pin(
        &self,
        id: BlockId,
        holder: Holder,
        only_if_held: bool,
    ) -> Result<PinOutcome, NodeError> {
        let store = self.store.clone();
        if only_if_held {
            let changed =
                blocking(move || store.pin_if_held(id, &holder, Durability::Soon)).await??;
            return Ok(PinOutcome {
                pinned: changed.is_some(),
                changed: changed.unwrap_or(false),
                local: changed.is_some(),
            });
        }
        let changed = blocking(move || store.pin(id, &holder, Durability::Now)).await??;
        let local = self.store.contains(&id).is_some();
        if !local {
            self.look_up(id, Origin::client(), PIN_FETCH_BUDGET);
        }
        Ok(PinOutcome {
            pinned: true,
            changed,
            local,
        })
    }

    /// Takes back `holder`'s pin of `id` (every holder's with `None`).
    pub async fn unpin(
        &self,
        id: BlockId,
        holder: Option<Holder>,
    ) -> Result<PinOutcome, NodeError> {
        let store = self.store.clone();
        let changed =
            blocking(move || store.unpin(&id, holder.as_ref(), Durability::Now)).await??;
        Ok(PinOutcome {
            pinned: self.store.is_pinned(&id),
            changed,
            local: self.store.contains(&id).is_some(),
        })
    }

    /// `POST /pins`: pins `change.pin` and unpins `change.unpin` for one holder, saved
    /// once. Absent blocks are pinned but not fetched (there may be thousands); the
    /// answer lists them.
    pub async fn repin(&self, change: Repin) -> Result<Repinned, NodeError> {
        if change.pin.len() + change.unpin.len() > MAX_REPIN {
            return Err(NodeError::BadRequest(format!(
                "at most {MAX_REPIN} ids in one change"
            )));
        }
        let store = self.store.clone();
        let (holder, pin, unpin) = (change.holder, change.pin, change.unpin);
        let (absent, pin) = blocking(move || {
            let (pinned, unpinned) = store.repin(&holder, &pin, &unpin)?;
            let absent: Vec<String> = pin
                .iter()
                .filter(|id| store.contains(id).is_none())
                .map(BlockId::to_string)
                .collect();
            Ok::<_, crate::store::StoreError>((absent, (pinned, unpinned)))
        })
        .await??;
        Ok(Repinned {
            pinned: pin.0,
            unpinned: pin.1,
            absent,
        })
    }

    /// Every pin with its holders, or only `holder`'s ids.
    pub fn pins(&self, holder: Option<&Holder>) -> Vec<(BlockId, Vec<Holder>)> {
        match holder {
            Some(h) => self
                .store
                .pins_of(h)
                .into_iter()
                .map(|id| (id, vec![h.clone()]))
                .collect(),
            None => self.store.pins(),
        }
    }

    /// Writes pins and custody leases changed since the last flush to the store's
    /// `pins` and `custody` files.
    pub async fn flush_pins(&self) -> Result<(), NodeError> {
        let store = self.store.clone();
        blocking(move || store.flush_pins().and(store.flush_custody())).await??;
        Ok(())
    }

    /// Deletes `id` here (and unpins it); peers' pushes of it are refused afterwards,
    /// until a client uploads it again. False when it was not held.
    pub async fn delete(&self, id: BlockId) -> Result<bool, NodeError> {
        let store = self.store.clone();
        let deleted = blocking(move || store.delete(&id)).await??;
        self.mesh
            .stats()
            .record(&id, Event::Delete, crate::clock::unix_now());
        Ok(deleted)
    }

    /// A page of per-block statistics after `after`, in id order.
    pub fn stats_page(&self, after: Option<BlockId>, limit: usize) -> StatsPage {
        let (rows, next) = self
            .mesh
            .stats()
            .page(after, limit.clamp(1, MAX_STATS_PAGE));
        self.page_of(rows, next)
    }

    /// The `n` most requested blocks.
    pub fn stats_top(&self, n: usize) -> StatsPage {
        let rows = self.mesh.stats().top(n.clamp(1, MAX_STATS_PAGE));
        self.page_of(rows, None)
    }

    fn page_of(&self, rows: Vec<(BlockId, BlockStat)>, next: Option<BlockId>) -> StatsPage {
        StatsPage {
            blocks: rows
                .into_iter()
                .map(|(id, stat)| {
                    let local = self.store.contains(&id).is_some();
                    StatRow {
                        id: id.to_string(),
                        local,
                        replicas: usize::from(local) + self.mesh.known_holders(&id),
                        pinned: self.store.is_pinned(&id),
                        heat: self.store.heat(&id),
                        stat,
                    }
                })
                .collect(),
            next: next.map(|n| n.to_string()),
            tracked: self.mesh.stats().len(),
        }
    }
}

/// True when `authority` (a request's `Host`) names this node: the authority of its
/// public `url` (with or without the scheme's default port; the name a proxy in front
/// of it forwards), or the address the request arrived at (`local`: the socket's own
/// address, so a node bound to `0.0.0.0` answers to each of its addresses), written as
/// an IP address or, on loopback, as `localhost`. Compared without case. Anything else
/// was meant for another node.
pub fn is_own_authority(authority: &str, url: &str, local: Option<SocketAddr>) -> bool {
    let Some((host, port)) = split_authority(authority) else {
        return false;
    };
    let (default_port, base) = if let Some(rest) = url.strip_prefix("https://") {
        (443, rest)
    } else {
        (80, url.strip_prefix("http://").unwrap_or(url))
    };
    let base = base.split('/').next().unwrap_or(base);
    if let Some((url_host, url_port)) = split_authority(base)
        && url_host == host
        && url_port.unwrap_or(default_port) == port.unwrap_or(default_port)
    {
        return true;
    }
    // The node itself speaks plain HTTP: a Host without a port means 80.
    let Some(local) = local else { return false };
    if port.unwrap_or(80) != local.port() {
        return false;
    }
    let ip = local.ip().to_canonical();
    if ip.is_loopback() && host == "localhost" {
        return true;
    }
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&host)
        .parse::<IpAddr>()
        .is_ok_and(|named| named.to_canonical() == ip)
}

/// `host[:port]` (an IPv6 host in brackets) as a lowercase host and the port, if any;
/// `None` when it is not of that shape.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim().to_ascii_lowercase();
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority.as_str(), None),
        }
    };
    if host.is_empty() || (host.contains(['@', '/', ':']) && !host.starts_with('[')) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_answers_to_its_url_and_the_address_it_was_reached_at() {
        let loopback: SocketAddr = "127.0.0.1:8042".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:8042".parse().unwrap();
        let v6: SocketAddr = "[::1]:8042".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:8042".parse().unwrap();
        let plain = "http://127.0.0.1:8042";
        let proxied = "https://Example.org";
        let cases: &[(&str, &str, Option<SocketAddr>, bool)] = &[
            // Its url's authority, whatever the socket.
            ("127.0.0.1:8042", plain, None, true),
            ("example.org", proxied, Some(loopback), true),
            ("EXAMPLE.org:443", proxied, Some(loopback), true),
            ("example.org:80", proxied, Some(loopback), false),
            ("node.example", "http://node.example:80", None, true),
            ("node.example:80", "http://node.example", None, true),
            // The address it was reached at, and localhost on loopback.
            ("127.0.0.1:8042", proxied, Some(loopback), true),
            ("localhost:8042", proxied, Some(loopback), true),
            ("LocalHost:8042", plain, Some(loopback), true),
            ("192.168.1.5:8042", "http://0.0.0.0:8042", Some(lan), true),
            ("localhost:8042", "http://0.0.0.0:8042", Some(lan), false),
            ("[::1]:8042", proxied, Some(v6), true),
            ("localhost:8042", proxied, Some(v6), true),
            ("10.0.0.7:8042", proxied, Some(mapped), true),
            // Another node's names: another port, another address, another host.
            ("127.0.0.1:8043", plain, Some(loopback), false),
            ("127.0.0.2:8042", proxied, Some(loopback), false),
            ("[::1]:8042", proxied, Some(loopback), false),
            ("other.example", proxied, Some(loopback), false),
            ("localhost:8043", plain, Some(loopback), false),
            // Not an authority at all.
            ("", plain, Some(loopback), false),
            ("127.0.0.1:x", plain, Some(loopback), false),
            ("127.0.0.1:99999", plain, Some(loopback), false),
            ("user@127.0.0.1:8042", plain, Some(loopback), false),
            ("[::1", proxied, Some(v6), false),
        ];
        for (authority, url, local, own) in cases {
            assert_eq!(
                is_own_authority(authority, url, *local),
                *own,
                "{authority:?} for a node at {url} reached at {local:?}"
            );
        }
    }
}

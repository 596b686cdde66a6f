//! The mesh as the dashboard shows it (`GET /mesh`): this node and every peer, each
//! peer asked for its public `/node` and `/metrics` over its verified link, with totals.
//! One survey serves every caller for `SURVEY_TTL`, and only one runs at a time, so a
//! page left open (or anyone asking) costs the peers at most one pair of requests per
//! peer per `SURVEY_TTL`: the public route is no amplifier.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Node;
use crate::client::unix_now;
use crate::proto::{NodeInfo, StoreInfo};

/// How long one survey is served before peers are asked again.
pub const SURVEY_TTL: Duration = Duration::from_secs(2);

/// How long a peer has to answer each of its two requests.
pub const SURVEY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /mesh`.
#[derive(Debug, Clone, Serialize)]
pub struct MeshView {
    /// Unix seconds when the peers were asked.
    pub at: u64,
    /// This node first, then its peers nearest first.
    pub nodes: Vec<NodeRow>,
    /// Sums over the nodes that answered.
    pub totals: MeshTotals,
}

/// One node of the mesh view.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// Node id, hex.
    pub id: String,
    /// Where it is reached.
    pub url: String,
    /// True for the node answering.
    #[serde(rename = "self")]
    pub this: bool,
    /// It answered both requests.
    pub reachable: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// Its figures, when it answered.
    #[serde(flatten)]
    pub figures: Option<Figures>,
}

/// What a node says of itself.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Software version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Its store.
    pub store: StoreInfo,
    /// Requests answered.
    pub requests: u64,
    /// Block GETs and HEADs answered (from its store or by an arrival).
    pub hits: u64,
    /// Block GETs and HEADs that found nothing in time.
    pub misses: u64,
    /// Peers it knows.
    pub peers: u64,
    /// Of which healthy.
    pub peers_healthy: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

/// Sums over the nodes that answered.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MeshTotals {
    /// Nodes that answered (this one included).
    pub nodes: u64,
    /// Blocks they hold (a block on two nodes counts twice).
    pub blocks: u64,
    /// Bytes they hold.
    pub bytes: u64,
    /// Their quotas.
    pub quota: u64,
}

/// The last survey and when it was made.
pub(super) type SurveyCache = tokio::sync::Mutex<Option<(Instant, MeshView)>>;

impl Node {
    /// This node and its peers' figures, at most `SURVEY_TTL` old.
    pub async fn mesh_view(&self) -> MeshView {
        // Held across the survey: callers meanwhile wait for it and share it.
        let mut cache = self.survey.lock().await;
        if let Some((made, view)) = cache.as_ref()
            && made.elapsed() < SURVEY_TTL
        {
            return view.clone();
        }
        let view = self.survey().await;
        *cache = Some((Instant::now(), view.clone()));
        view
    }

    async fn survey(&self) -> MeshView {
        let at = unix_now();
        let me = self.info();
        let mine = parse_metrics(&self.render_metrics());
        let mut nodes = vec![NodeRow {
            id: me.id.clone(),
            url: me.url.clone(),
            this: true,
            reachable: true,
            error: None,
            figures: Some(figures(me, &mine)),
        }];
        let (infos, metrics) = tokio::join!(
            self.mesh.ask_every_peer("/node", SURVEY_TIMEOUT),
            self.mesh.ask_every_peer("/metrics", SURVEY_TIMEOUT),
        );
        // Matched by id: a peer may join or leave between the two rounds.
        let mut metrics: std::collections::HashMap<_, _> = metrics
            .into_iter()
            .map(|(id, _, text)| (id, text))
            .collect();
        for (id, url, info) in infos {
            let text = metrics
                .remove(&id)
                .unwrap_or_else(|| Err("not asked for /metrics".into()));
            let id = id.to_string();
            let answer = info
                .and_then(|reply| node_info(&id, &reply))
                .and_then(|info| {
                    let text = text?;
                    let text = String::from_utf8_lossy(ok_body(&text)?);
                    Ok(figures(info, &parse_metrics(&text)))
                });
            nodes.push(match answer {
                Ok(figures) => NodeRow {
                    id,
                    url,
                    this: false,
                    reachable: true,
                    error: None,
                    figures: Some(figures),
                },
                Err(error) => NodeRow {
                    id,
                    url,
                    this: false,
                    reachable: false,
                    error: Some(error),
                    figures: None,
                },
            });
        }
        let mut totals = MeshTotals::default();
        for f in nodes.iter().filter_map(|n| n.figures.as_ref()) {
            totals.nodes += 1;
            totals.blocks += f.store.blocks;
            totals.bytes += f.store.bytes;
            totals.quota += f.store.quota;
        }
        MeshView { at, nodes, totals }
    }
}

/// The body of a 200 answer, else why not.
fn ok_body(reply: &crate::client::Reply) -> Result<&[u8], String> {
    if reply.status.is_success() {
        Ok(&reply.body)
    } else {
        Err(format!("answered {}", reply.status))
    }
}

/// A peer's `/node` answer, which must name the peer that signed it.
fn node_info(id: &str, reply: &crate::client::Reply) -> Result<NodeInfo, String> {
    let info: NodeInfo = serde_json::from_slice(ok_body(reply)?)
        .map_err(|e| format!("/node is not what a node answers: {e}"))?;
    if info.id != id {
        return Err(format!("/node names another node: {}", info.id));
    }
    Ok(info)
}

fn figures(info: NodeInfo, m: &Counted) -> Figures {
    Figures {
        version: info.version,
        uptime_secs: info.uptime_secs,
        store: info.store,
        requests: m.requests,
        hits: m.hits,
        misses: m.misses,
        peers: m.peers,
        peers_healthy: m.peers_healthy,
        bytes_in: m.bytes_in,
        bytes_out: m.bytes_out,
    }
}

/// The figures read from a node's Prometheus text.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counted {
    requests: u64,
    hits: u64,
    misses: u64,
    peers: u64,
    peers_healthy: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// Reads the series the mesh view shows from Prometheus text; a line that is not a
/// sample of one of them is skipped, so a node of another version reads as what it has.
fn parse_metrics(text: &str) -> Counted {
    let mut c = Counted::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        // Counters are integers; a float (or garbage) counts as what it truncates to.
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let value = if value.is_finite() && value > 0.0 {
            value as u64
        } else {
            0
        };
        let name = series.split_once('{').map_or(series, |(name, _)| name);
        let slot = match name {
            "libernet_http_requests_total" => &mut c.requests,
            "libernet_block_hits_total" | "libernet_block_waited_hits_total" => &mut c.hits,
            "libernet_block_misses_total" => &mut c.misses,
            "libernet_peers" => &mut c.peers,
            "libernet_peers_healthy" => &mut c.peers_healthy,
            "libernet_bytes_in_total" => &mut c.bytes_in,
            "libernet_bytes_out_total" => &mut c.bytes_out,
            _ => continue,
        };
        *slot = slot.saturating_add(value);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_is_summed_per_series_and_garbage_skipped() {
        let text = "\
# HELP libernet_http_requests_total Requests.
libernet_http_requests_total{route=\"node\",status=\"200\"} 3
libernet_http_requests_total{route=\"get_block\",status=\"404\"} 4
libernet_block_hits_total 5
libernet_block_waited_hits_total 2
libernet_block_misses_total 1
libernet_peers 2
libernet_peers_healthy 1
libernet_bytes_in_total 1e3
libernet_bytes_out_total NaN
libernet_lookups_total 99
garbage
libernet_peers_healthy x
";
        assert_eq!(
            parse_metrics(text),
            Counted {
                requests: 7,
                hits: 7,
                misses: 1,
                peers: 2,
                peers_healthy: 1,
                bytes_in: 1000,
                bytes_out: 0,
            }
        );
    }
}

//! Meshes of real nodes on 127.0.0.1:0 in this process: forwarding through a middle node,
//! one lookup for many waiters, popularity replication and eviction order, routing
//! around a dead peer, gossip convergence, refused forged and stale announcements, a
//! restart that keeps blocks and rejoins, and LIKE answers merged from peers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::codec;
use libernet::id::BlockId;
use libernet::identity::{Identity, RequestTarget, digest_header, sign_request};

use crate::support::{Setup, TestNode, bytes, eventually};

/// Settings of a mesh node: seeds, gossip and push intervals (0 = off), quota.
#[derive(Clone)]
struct MeshSetup {
    seeds: Vec<String>,
    gossip: f64,
    push: f64,
    quota: u64,
    half_life: f64,
}

impl MeshSetup {
    fn quiet(seeds: &[&TestNode]) -> MeshSetup {
        MeshSetup {
            seeds: seeds.iter().map(|n| n.url.clone()).collect(),
            gossip: 0.0,
            push: 0.0,
            quota: 1 << 30,
            half_life: 3600.0,
        }
    }
}

async fn start(ms: MeshSetup) -> TestNode {
    TestNode::start_adjusted(|s: &mut Setup| apply(s, &ms)).await
}

fn apply(s: &mut Setup, ms: &MeshSetup) {
    s.config.peers = ms.seeds.clone();
    s.config.gossip_interval = Duration::from_secs_f64(ms.gossip);
    s.config.push_interval = Duration::from_secs_f64(ms.push);
    s.config.quota = ms.quota;
    s.config.half_life = Duration::from_secs_f64(ms.half_life);
}

/// The ids in a node's `/peers`.
async fn peer_ids(node: &TestNode) -> Vec<String> {
    let reply = node.get("/peers").await;
    assert_eq!(reply.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn knows(node: &TestNode, others: &[&TestNode]) -> bool {
    let ids = peer_ids(node).await;
    others.iter().all(|o| ids.contains(&o.key.id.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_put_on_a_is_served_by_c_through_b() {
    let a = start(MeshSetup::quiet(&[])).await;
    let b = start(MeshSetup::quiet(&[&a])).await;
    let c = start(MeshSetup::quiet(&[&b])).await;
    eventually(10, "the chain a-b-c is connected", || async {
        knows(&b, &[&a, &c]).await && knows(&c, &[&b]).await
    })
    .await;
    assert!(
        !knows(&c, &[&a]).await && !knows(&a, &[&c]).await,
        "a and c are not connected"
    );

    let block = bytes(300_000, 1);
    let id = BlockId::of(&block);
    assert_eq!(a.put(&block).await.status, StatusCode::CREATED);
    let reply = c.get(&id.path()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, block);
    assert_eq!(
        c.metric("libernet_lookup_hops{hops=\"2\"}"),
        1,
        "found two hops away"
    );
    // Pull-through: both c and b keep what they fetched.
    assert!(c.holds(&id).await && b.holds(&id).await);
    // A block nobody has: every node gives up well before its own wait ends.
    let missing = BlockId::of(b"nobody has this");
    let started = Instant::now();
    let reply = c.get(&format!("{}?wait=5", missing.path())).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_gets_for_one_id_cause_one_lookup() {
    let a = start(MeshSetup::quiet(&[])).await;
    let b = start(MeshSetup::quiet(&[&a])).await;
    eventually(10, "b knows a", || async { knows(&b, &[&a]).await }).await;
    let block = bytes(100_000, 2);
    let id = BlockId::of(&block);
    a.put(&block).await;

    let gets: Vec<_> = (0..20).map(|_| b.spawn_get(&id.path())).collect();
    for get in gets {
        let reply = get.await.unwrap().unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, block);
    }
    assert_eq!(b.metric("libernet_lookups_sent_total"), 1);
    assert_eq!(b.metric("libernet_lookup_asks_total"), 1);
    // The holder saw the id asked for once (its own PUT is not a request).
    let stats = a.admin(Method::GET, "/stats?limit=1000").await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    let row = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.to_string())
        .expect("the block has stats on a");
    assert_eq!(row["requests"], 1);
    assert_eq!(row["local"], true);
}

/// A block whose id shares no leading bit with `node`'s id (so never in its near
/// region), of `len` bytes, made from `seed` upwards.
fn far_block(node: &TestNode, len: usize, seed: u64) -> Vec<u8> {
    (seed..)
        .map(|s| bytes(len, s))
        .find(|b| BlockId::of(b).match_score(&node.key.id) == 0)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_popular_block_gains_replicas_and_an_unrequested_one_is_evicted_first() {
    let ms = MeshSetup {
        seeds: Vec::new(),
        gossip: 0.2,
        push: 0.3,
        quota: 2 << 20,
        half_life: 30.0,
    };
    let first = start(ms.clone()).await;
    let mut nodes = vec![first];
    for _ in 0..5 {
        let seed = MeshSetup {
            seeds: vec![nodes[0].url.clone()],
            ..ms.clone()
        };
        nodes.push(start(seed).await);
    }
    eventually(20, "all six nodes know each other", || async {
        for n in &nodes {
            if peer_ids(n).await.len() < 5 {
                return false;
            }
        }
        true
    })
    .await;
    let home = &nodes[0];
    let popular = far_block(home, 200_000, 100);
    let cold = far_block(home, 200_000, 200_000);
    let (p, u) = (BlockId::of(&popular), BlockId::of(&cold));
    home.put(&popular).await;
    home.put(&cold).await;
    for _ in 0..10 {
        for n in &nodes[..3] {
            assert_eq!(n.get(&p.path()).await.status, StatusCode::OK);
        }
    }
    // Requests on three nodes; pushes of the hot block take it to all six.
    eventually(20, "the popular block is on every node", || async {
        for n in &nodes {
            if !n.holds(&p).await {
                return false;
            }
        }
        true
    })
    .await;
    let mut cold_replicas = 0;
    for n in &nodes {
        cold_replicas += usize::from(n.holds(&u).await);
    }
    assert!(
        cold_replicas <= 4,
        "the unrequested block went to its homes only: {cold_replicas}"
    );

    // Upload more than the home node's quota of fresh blocks (never requested either):
    // the unrequested old block goes before any of them, the popular one stays.
    let mut seed = 1_000_000;
    for _ in 0..16 {
        let filler = far_block(home, 200_000, seed);
        seed += 1000;
        home.put(&filler).await;
    }
    assert!(!home.holds(&u).await, "the unrequested block was evicted");
    assert!(home.holds(&p).await, "the popular block stayed");
    assert!(home.metric("libernet_evictions_total") >= 1);
    let stats = home.admin(Method::GET, "/stats?top=1").await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    assert_eq!(
        v["blocks"][0]["id"],
        p.to_string(),
        "the popular block tops /stats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_peer_is_routed_around() {
    let a = start(MeshSetup::quiet(&[])).await;
    let b = start(MeshSetup::quiet(&[&a])).await;
    let d = start(MeshSetup::quiet(&[&a])).await;
    let c = start(MeshSetup::quiet(&[&b, &d])).await;
    eventually(10, "c knows b and d", || async {
        knows(&c, &[&b, &d]).await
    })
    .await;
    let blocks: Vec<Vec<u8>> = (0..6).map(|i| bytes(50_000, 300 + i)).collect();
    for block in &blocks {
        a.put(block).await;
    }
    let b_id = b.key.id.to_string();
    b.stop().await;
    for block in &blocks {
        let reply = c.get(&BlockId::of(block).path()).await;
        assert_eq!(reply.status, StatusCode::OK, "found through d");
        assert_eq!(reply.body, *block);
    }
    let reply = c.get("/peers").await;
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let row = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == b_id)
        .expect("b is still listed during its grace period");
    assert_ne!(row["health"], "ok", "{row}");
    assert!(row["failures"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gossip_converges_to_the_full_peer_list() {
    let gossip = |seeds: &[&TestNode]| MeshSetup {
        gossip: 0.2,
        ..MeshSetup::quiet(seeds)
    };
    let mut nodes = vec![start(gossip(&[])).await];
    for i in 1..7 {
        let prev = &nodes[i - 1];
        let next = start(gossip(&[prev])).await;
        nodes.push(next);
    }
    eventually(30, "every node lists the six others", || async {
        for n in &nodes {
            if peer_ids(n).await.len() != 6 {
                return false;
            }
        }
        true
    })
    .await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_libernet"))
        .args(["--server", &nodes[3].url, "peers"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("6 peers"), "{table}");
    assert!(table.contains(&nodes[0].url), "{table}");
}

/// Sends `PUT /peers` to `to` announcing `who` at `url`, signed by `signer` (claiming
/// `keyid`) at `created`, optionally with the body changed after signing.
async fn announce(
    to: &TestNode,
    who: &Identity,
    signer: &Identity,
    created: u64,
    tamper: bool,
) -> libernet::client::Reply {
    let body = serde_json::json!({
        "id": who.id().to_string(),
        "url": "http://127.0.0.1:9",
        "peers": [],
    })
    .to_string();
    let digest = digest_header(&BlockId::of(body.as_bytes()).0);
    let authority = to.url.trim_start_matches("http://");
    let fields = sign_request(
        signer.signing_key(),
        &who.id().to_string(),
        created,
        &RequestTarget {
            method: "PUT",
            authority,
            path: "/peers",
            query: None,
            content_digest: Some(&digest),
        },
    );
    let sent = if tamper {
        body.replace("127.0.0.1:9", "127.0.0.1:8")
    } else {
        body
    };
    let headers = [
        ("signature-input", fields.input.as_str()),
        ("signature", fields.signature.as_str()),
        ("content-digest", digest.as_str()),
        ("content-type", "application/json"),
    ];
    to.send(Method::PUT, "/peers", &headers, Bytes::from(sent))
        .await
}

#[tokio::test]
async fn forged_stale_and_unknown_announcements_are_refused() {
    let node = start(MeshSetup::quiet(&[])).await;
    let x = Identity::from_seed(&[41; 32]);
    let stranger = Identity::from_seed(&[42; 32]);
    let now = libernet::client::unix_now();
    // Unknown key: x has not pushed its identity block yet.
    let reply = announce(&node, &x, &x, now, false).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&reply.body).contains("bad_signature"));
    node.put(x.block()).await;
    let refused = [
        ("stale", announce(&node, &x, &x, now - 600, false).await),
        ("future", announce(&node, &x, &x, now + 600, false).await),
        ("forged", announce(&node, &x, &stranger, now, false).await),
    ];
    for (what, reply) in refused {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    let tampered = announce(&node, &x, &x, now, true).await;
    assert!(tampered.status.is_client_error(), "{}", tampered.status);
    let unsigned = node
        .send(Method::PUT, "/peers", &[], Bytes::from_static(b"{}"))
        .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    assert!(peer_ids(&node).await.is_empty(), "nothing was accepted");
    assert!(node.metric("libernet_peer_auth_refused_total") >= 4);

    let ok = announce(&node, &x, &x, now, false).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(peer_ids(&node).await, vec![x.id().to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_keeps_its_blocks_and_rejoins() {
    let a = start(MeshSetup::quiet(&[])).await;
    let store = tempfile::tempdir().unwrap();
    let ms = MeshSetup::quiet(&[&a]);
    let mut setup = Setup::new(store.path());
    apply(&mut setup, &ms);
    let b = TestNode::start_with(setup.clone()).await.unwrap();
    eventually(10, "a knows b", || async { knows(&a, &[&b]).await }).await;
    let block = bytes(80_000, 7);
    let id = BlockId::of(&block);
    b.put(&block).await;
    let old_url = b.url.clone();
    b.stop().await;

    let b = TestNode::start_with(setup).await.unwrap();
    assert_ne!(b.url, old_url, "a new port");
    assert!(b.holds(&id).await, "the block survived the restart");
    eventually(10, "a has b at its new URL", || async {
        let reply = a.get("/peers").await;
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["url"] == b.url.as_str())
    })
    .await;
    let reply = a.get(&id.path()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, block);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn like_answers_merge_results_from_peers() {
    let a = start(MeshSetup::quiet(&[])).await;
    let c = start(MeshSetup::quiet(&[])).await;
    let b = start(MeshSetup::quiet(&[&a, &c])).await;
    eventually(10, "b knows a and c", || async {
        knows(&b, &[&a, &c]).await
    })
    .await;
    let target = BlockId::of(b"USER:alice@2026-11");
    let near = |seed: u64| {
        let encoded = codec::encode(&bytes(1000, seed)).unwrap();
        codec::place_near(encoded, &target, 12)
            .expect("mined")
            .block
    };
    let (on_a, on_c, on_b) = (near(1), near(2), near(3));
    a.put(&on_a).await;
    c.put(&on_c).await;
    b.put(&on_b).await;
    let reply = b.get(&format!("/sha256/like/{target}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    for block in [&on_a, &on_b, &on_c] {
        let key = format!("/sha256/{}", BlockId::of(block));
        assert_eq!(v[&key], block.len(), "{key} in {v}");
    }
    // a's only peer is b, which answers a peer's LIKE from its own store (no further
    // hops): a learns of on_b, not of on_c.
    let reply = a.get(&format!("/sha256/like/{target}")).await;
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert!(
        v.get(format!("/sha256/{}", BlockId::of(&on_c))).is_none(),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_block_is_quarantined_and_fetched_again_from_a_peer() {
    let a = start(MeshSetup::quiet(&[])).await;
    let b = start(MeshSetup::quiet(&[&a])).await;
    eventually(10, "b knows a", || async { knows(&b, &[&a]).await }).await;
    let block = bytes(200_000, 9);
    let id = BlockId::of(&block);
    a.put(&block).await;
    b.put(&block).await;
    let hex = id.to_string();
    let file = b
        .dir
        .join("blocks")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(&hex);
    // Rot that keeps the file's length and mtime: only the bytes tell.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, vec![0u8; block.len()]).unwrap();
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let reply = b.get(&id.path()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, block, "served from a's good copy");
    assert_eq!(std::fs::read(&file).unwrap(), block, "and stored again");
    assert_eq!(
        std::fs::read_dir(b.dir.join("quarantine")).unwrap().count(),
        1
    );
}

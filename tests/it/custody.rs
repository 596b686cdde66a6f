//! Custody and repair with real nodes (issue 14): a block kept on one node is copied to
//! its homes (the nodes nearest it) and kept there in custody; when a home leaves, the
//! next nearest node becomes a home and gets a copy.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::client::{Reply, unix_now};
use libernet::id::BlockId;
use libernet::identity::{Identity, RequestTarget, digest_header, sign_request};
use libernet::proto::{HOLDS_PATH, MAX_HOLDS_IDS, PIN_HEADER};
use libernet::store::MAX_LEASE_SECS;

use crate::support::{Setup, TestNode, bytes, eventually};

/// Nodes for a custody test: gossip and repair rounds quick, pushes off (so only
/// custody places copies).
pub async fn custody_mesh(n: usize) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for _ in 0..n {
        let seeds: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        let node = TestNode::start_adjusted(move |s: &mut Setup| {
            s.config.peers = seeds;
            s.config.gossip_interval = Duration::from_millis(300);
            s.config.push_interval = Duration::ZERO;
            s.config.repair_interval = Duration::from_millis(300);
        })
        .await;
        nodes.push(node);
    }
    for node in &nodes {
        eventually(30, "every node knows every other", || async {
            node.node.peers().peers.len() == n - 1
        })
        .await;
    }
    nodes
}

/// The indexes of the `n` nodes nearest `id` among `nodes`, nearest first.
pub fn nearest(nodes: &[TestNode], id: &BlockId, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|i| nodes[*i].key.id.distance(id));
    order.truncate(n);
    order
}

/// Whether node `node` holds `id` in custody.
fn in_custody(node: &TestNode, id: &BlockId) -> bool {
    node.node.custody_until(id).is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_home_that_leaves_is_replaced_and_the_block_copied_again() {
    let mut nodes = custody_mesh(5).await;
    // A block kept on a node that is not one of its homes (any of the five will do
    // for the holder; the one farthest from the block makes four copies in all).
    let block = bytes(5000, 77);
    let id = BlockId::of(&block);
    let order = nearest(&nodes, &id, 5);
    let holder = order[4];
    let token = format!("Bearer {}", nodes[holder].admin_token());
    let put = nodes[holder]
        .send(
            Method::PUT,
            &format!("/sha256/{id}"),
            &[("authorization", &token), (PIN_HEADER, "alice")],
            block.clone(),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED);
    let homes = &order[..3];
    for &h in homes {
        eventually(30, "each home keeps the block in custody", || async {
            nodes[h].holds(&id).await && in_custody(&nodes[h], &id)
        })
        .await;
    }
    assert!(!nodes[order[3]].holds(&id).await, "not a home: no copy");
    // The nearest home leaves for good: the fourth nearest node becomes a home and
    // gets a copy in custody from one of the others.
    let newcomer = nodes[order[3]].key.id;
    let left = nodes.remove(order[0]);
    left.stop().await;
    let newcomer = nodes.iter().find(|n| n.key.id == newcomer).unwrap();
    eventually(30, "the new home keeps the block in custody", || async {
        newcomer.holds(&id).await && in_custody(newcomer, &id)
    })
    .await;
    let copies = nodes.iter().map(|n| n.node.store_stats().custody_blocks);
    assert!(copies.sum::<u64>() >= 3, "three homes in custody");
    for node in nodes {
        node.stop().await;
    }
}

/// Sends `POST /sha256/holds` with `body` to `to`, signed by `signer` when given.
async fn holds(to: &TestNode, signer: Option<&Identity>, body: String) -> Reply {
    let digest = digest_header(&BlockId::of(body.as_bytes()).0);
    let authority = to.url.trim_start_matches("http://");
    let fields = signer.map(|s| {
        sign_request(
            s.signing_key(),
            &s.id().to_string(),
            unix_now(),
            &RequestTarget {
                method: "POST",
                authority,
                path: HOLDS_PATH,
                query: None,
                content_digest: Some(&digest),
            },
        )
    });
    let mut headers = vec![
        ("content-digest", digest.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(f) = &fields {
        headers.push(("signature-input", f.input.as_str()));
        headers.push(("signature", f.signature.as_str()));
    }
    to.send(Method::POST, HOLDS_PATH, &headers, Bytes::from(body))
        .await
}

/// The batch check of custody: answered to verified peers only, one state per id;
/// custody only of what is held, its lease cut to `MAX_LEASE_SECS`; too many ids, a bad
/// id or a body that is not a check are refused with a reason, and nothing changes.
#[tokio::test]
async fn holds_checks_answer_peers_only_and_within_bounds() {
    let node = TestNode::start().await;
    let peer = Identity::from_seed(&[61; 32]);
    // The peer introduces itself: its identity block is how its signatures are checked.
    let put = node.put(peer.block()).await;
    assert_eq!(put.status, StatusCode::CREATED);
    let held = bytes(3000, 5);
    let held_id = BlockId::of(&held);
    assert_eq!(node.put(&held).await.status, StatusCode::CREATED);
    let absent = BlockId::of(b"not here");
    let far = unix_now() + 10 * MAX_LEASE_SECS;
    let check = serde_json::json!({
        "ids": [absent.to_string(), held_id.to_string()],
        "keep_until": far,
    })
    .to_string();

    let unsigned = holds(&node, None, check.clone()).await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    assert!(node.node.custody_until(&held_id).is_none());

    let answer = holds(&node, Some(&peer), check).await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(answer["state"], "-k");
    let until = node.node.custody_until(&held_id).expect("kept");
    assert!(until <= unix_now() + MAX_LEASE_SECS, "lease cut: {until}");
    assert!(node.node.custody_until(&absent).is_none());

    let many: Vec<String> = (0..=MAX_HOLDS_IDS)
        .map(|i| BlockId::of(&i.to_le_bytes()).to_string())
        .collect();
    let too_many = serde_json::json!({ "ids": many }).to_string();
    for bad in [
        too_many,
        r#"{"ids": ["not an id"]}"#.to_owned(),
        r#"{"ids": [], "extra": 1}"#.to_owned(),
        "[1, 2, 3]".to_owned(),
    ] {
        let r = holds(&node, Some(&peer), bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:.80}");
        let reason: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(reason["message"].as_str().is_some(), "{reason}");
    }
    node.stop().await;
}

//! Custody and repair with real nodes (issue 14): a block kept on one node is copied to
//! its homes (the nodes nearest it) and kept there in custody; when a home leaves, the
//! next nearest node becomes a home and gets a copy.

use std::time::Duration;

use hyper::{Method, StatusCode};
use libernet::id::BlockId;
use libernet::proto::PIN_HEADER;

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

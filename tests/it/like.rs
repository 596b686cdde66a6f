//! LIKE: ids near an id, best first, at least 12 matching bits, at most 100.

use hyper::StatusCode;
use libernet::id::BlockId;

use crate::support::TestNode;

/// Finds `n` small blocks whose ids share at least `bits` leading bits with `target`.
fn mine(target: &BlockId, bits: u32, n: usize) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut counter = 0u64;
    while found.len() < n {
        counter += 1;
        let candidate = format!("near block {counter}").into_bytes();
        if BlockId::of(&candidate).match_score(target) >= bits {
            found.push(candidate);
        }
    }
    found
}

fn parse(body: &[u8]) -> Vec<(BlockId, u64)> {
    // Read the object in document order (serde_json's Map would sort it).
    let text = std::str::from_utf8(body).unwrap();
    let inner = text
        .trim()
        .strip_prefix('{')
        .unwrap()
        .strip_suffix('}')
        .unwrap();
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split(',')
        .map(|pair| {
            let (key, size) = pair.split_once(':').unwrap();
            let key = key.trim_matches('"').strip_prefix("/sha256/").unwrap();
            (key.parse().unwrap(), size.parse().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn like_orders_by_distance_and_applies_limits() {
    let node = TestNode::start().await;
    let target = BlockId::of(b"the name being looked for");
    // 130 blocks with >= 12 matching bits (more than the cap), and 40 ordinary ones.
    let near = mine(&target, 12, 130);
    let far: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("far block {i}").into_bytes())
        .collect();
    for block in near.iter().chain(far.iter()) {
        assert_eq!(node.put(block).await.status, StatusCode::CREATED);
    }
    let reply = node.get(&format!("/sha256/like/{target}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let got = parse(&reply.body);

    let mut want: Vec<(BlockId, u64)> = near
        .iter()
        .chain(far.iter())
        .map(|b| (BlockId::of(b), b.len() as u64))
        .filter(|(id, _)| id.match_score(&target) >= 12)
        .collect();
    want.sort_by_key(|(id, _)| id.distance(&target));
    want.truncate(100);
    assert_eq!(got.len(), 100);
    assert_eq!(got, want);
    // Best first: match scores never increase down the list.
    assert!(
        got.windows(2)
            .all(|w| w[0].0.match_score(&target) >= w[1].0.match_score(&target))
    );
    node.stop().await;
}

#[tokio::test]
async fn like_with_no_match_is_404_with_an_empty_object() {
    let node = TestNode::start().await;
    // The store holds only the identity block; aim as far from it as possible.
    let mut far = node.key.id;
    far.0[0] ^= 0xff;
    let reply = node.get(&format!("/sha256/like/{far}")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(&reply.body[..], b"{}");
    // A stored id finds itself first.
    let reply = node.get(&format!("/sha256/like/{}", node.key.id)).await;
    assert_eq!(parse(&reply.body)[0].0, node.key.id);
    node.stop().await;
}

//! Admin actions behind the bearer token: pin and unpin (a pinned block survives a full
//! store and a restart; pinning an absent block fetches it from a peer), local delete
//! (refused for the identity block; peers cannot push a deleted block back), `/stats`
//! paging, the mesh counters in `/metrics`, and pins held by named holders (a block
//! stays pinned until its last holder lets go; batches; pin-if-held; pin with upload).

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::id::BlockId;

use crate::support::{Setup, TestNode, bytes};

fn json(reply: &libernet::client::Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap()
}

#[tokio::test]
async fn admin_routes_need_the_token() {
    let node = TestNode::start().await;
    let id = BlockId::of(b"x");
    for (method, path) in [
        (Method::GET, "/stats".to_owned()),
        (Method::GET, "/pins".to_owned()),
        (Method::PUT, format!("/pins/{id}")),
        (Method::DELETE, format!("/pins/{id}")),
        (Method::DELETE, id.path()),
        (Method::POST, "/pins".to_owned()),
    ] {
        let reply = node.send(method.clone(), &path, &[], Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let wrong = [("authorization", "Bearer 0123456789abcdef0123")];
        let reply = node.send(method.clone(), &path, &wrong, Bytes::new()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    node.stop().await;
}

#[tokio::test]
async fn a_pinned_block_survives_a_full_store_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(dir.path());
    setup.config.quota = 1 << 20;
    let node = TestNode::start_with(setup.clone()).await.unwrap();
    let pinned = bytes(300_000, 1);
    let id = BlockId::of(&pinned);
    node.put(&pinned).await;
    let reply = node.admin(Method::PUT, &format!("/pins/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(json(&reply)["changed"], true);
    // Fill the store three times over with requested blocks: the pin holds.
    for seed in 10..20 {
        let other = bytes(300_000, seed);
        node.put(&other).await;
        node.get(&BlockId::of(&other).path()).await;
    }
    assert!(node.holds(&id).await);
    let pins = json(&node.admin(Method::GET, "/pins").await);
    assert_eq!(pins["pins"][0], id.to_string());
    node.stop().await;

    let node = TestNode::start_with(setup).await.unwrap();
    assert!(node.holds(&id).await);
    let pins = json(&node.admin(Method::GET, "/pins").await);
    assert_eq!(
        pins["pins"][0],
        id.to_string(),
        "pins are kept across restarts"
    );
    let reply = node.admin(Method::DELETE, &format!("/pins/{id}")).await;
    assert_eq!(json(&reply)["pinned"], false);
    for seed in 30..36 {
        node.put(&bytes(300_000, seed)).await;
    }
    assert!(!node.holds(&id).await, "unpinned, it can go");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pinning_an_absent_block_fetches_it_and_delete_keeps_pushes_out() {
    let a = TestNode::start().await;
    let b = TestNode::start_adjusted(|s: &mut Setup| s.config.peers = vec![a.url.clone()]).await;
    let block = bytes(50_000, 3);
    let id = BlockId::of(&block);
    a.put(&block).await;
    for _ in 0..200 {
        if b.node.peers().peers.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = b.admin(Method::PUT, &format!("/pins/{id}")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "absent: being fetched");
    for _ in 0..200 {
        if b.holds(&id).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b.holds(&id).await, "the pin fetched the block from a");

    // Delete on b: gone, unpinned, and a's pushes of it are refused.
    let reply = b.admin(Method::DELETE, &id.path()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!b.holds(&id).await);
    assert!(
        json(&b.admin(Method::GET, "/pins").await)["pins"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let again = b.admin(Method::DELETE, &id.path()).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let own = b.admin(Method::DELETE, &b.key.id.path()).await;
    assert_eq!(own.status, StatusCode::CONFLICT, "the identity block stays");
    a.node.mesh().push_round().await;
    assert!(!b.holds(&id).await, "a's push was refused");
    let stats = json(&b.admin(Method::GET, "/stats").await);
    let row = stats["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.to_string())
        .unwrap()
        .clone();
    assert_eq!(row["deleted"], true);
    assert_eq!(row["downloads"], 1);
    // A client's upload brings it back.
    assert_eq!(b.put(&block).await.status, StatusCode::CREATED);
    let metrics = String::from_utf8_lossy(&b.get("/metrics").await.body).into_owned();
    for line in [
        "libernet_peers 1",
        "libernet_downloads_total 1",
        "libernet_lookups_found_total 1",
        "libernet_lookup_hops{hops=\"1\"} 1",
    ] {
        assert!(
            metrics.contains(&format!("\n{line}\n")),
            "{line} in {metrics}"
        );
    }
    assert!(metrics.contains("libernet_peer_bytes_in_total{peer=\""));
}

#[tokio::test]
async fn stats_pages_walk_every_tracked_block() {
    let node = TestNode::start().await;
    let mut ids = Vec::new();
    for seed in 0..25 {
        let block = bytes(100, seed);
        node.put(&block).await;
        let id = BlockId::of(&block);
        node.get(&id.path()).await;
        ids.push(id.to_string());
    }
    let mut seen = Vec::new();
    let mut path = "/stats?limit=10".to_owned();
    for _ in 0..10 {
        let page = json(&node.admin(Method::GET, &path).await);
        assert_eq!(page["tracked"], 25);
        for row in page["blocks"].as_array().unwrap() {
            assert_eq!(row["requests"], 1);
            assert_eq!(row["local"], true);
            seen.push(row["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/stats?limit=10&after={next}"),
            None => break,
        }
    }
    ids.sort();
    assert_eq!(seen, ids);
    let bad = node.admin(Method::GET, "/stats?limit=x").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    node.stop().await;
}

#[tokio::test]
async fn pins_have_holders_and_a_block_stays_pinned_until_the_last_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup::new(dir.path());
    let node = TestNode::start_with(setup.clone()).await.unwrap();
    let token = node.admin_token();
    let auth = format!("Bearer {token}");
    let block = bytes(1000, 1);
    let id = BlockId::of(&block);

    // An upload pinned for a holder; the header needs the token.
    let pin = [("libernet-pin", "backup-one")];
    let reply = node
        .send(Method::PUT, &id.path(), &pin, block.clone())
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let bad = [
        ("authorization", auth.as_str()),
        ("libernet-pin", "no/slash"),
    ];
    let reply = node
        .send(Method::PUT, &id.path(), &bad, block.clone())
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(!node.holds(&id).await, "a refused upload stores nothing");
    let ok = [
        ("authorization", auth.as_str()),
        ("libernet-pin", "backup-one"),
    ];
    let reply = node.send(Method::PUT, &id.path(), &ok, block.clone()).await;
    assert_eq!(reply.status, StatusCode::CREATED);

    // A second holder; the first letting go leaves it pinned.
    let reply = node
        .admin(Method::PUT, &format!("/pins/{id}?holder=backup-two&held=1"))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let pins = json(&node.admin(Method::GET, "/pins").await);
    assert_eq!(
        pins["holders"][id.to_string()],
        serde_json::json!(["backup-one", "backup-two"])
    );
    let reply = node
        .admin(Method::DELETE, &format!("/pins/{id}?holder=backup-one"))
        .await;
    assert_eq!(json(&reply)["pinned"], true);
    let mine = json(&node.admin(Method::GET, "/pins?holder=backup-one").await);
    assert_eq!(mine["pins"], serde_json::json!([]));

    // Pin-if-held of an absent block pins nothing and fetches nothing.
    let absent = BlockId::of(b"never uploaded");
    let reply = node
        .admin(
            Method::PUT,
            &format!("/pins/{absent}?holder=backup-two&held=1"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(json(&reply)["error"], "not_held");

    // A batch for one holder: pins the absent one (listed as absent), unpins the other.
    let body = serde_json::json!({
        "holder": "backup-two", "pin": [absent.to_string()], "unpin": [id.to_string()],
    });
    let headers = [("authorization", auth.as_str())];
    let reply = node
        .send(Method::POST, "/pins", &headers, body.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let done = json(&reply);
    assert_eq!(
        (done["pinned"].clone(), done["unpinned"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(done["absent"], serde_json::json!([absent.to_string()]));
    let reply = node
        .send(Method::POST, "/pins", &headers, "{\"holder\": 5}")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // The book survives a restart; `*` takes every holder's pin.
    node.stop().await;
    let node = TestNode::start_with(setup).await.unwrap();
    let pins = json(&node.admin(Method::GET, "/pins").await);
    assert_eq!(pins["pins"], serde_json::json!([absent.to_string()]));
    let reply = node
        .admin(Method::DELETE, &format!("/pins/{absent}?holder=*"))
        .await;
    assert_eq!(json(&reply)["pinned"], false);
    node.stop().await;
}

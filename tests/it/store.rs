//! The store under a real node: durability across restarts, the lock, quarantine, quota.

use std::time::Duration;

use hyper::StatusCode;
use libernet::id::BlockId;
use libernet::node::NodeError;
use libernet::store::{QUARANTINE_DIR, StoreError};

use crate::support::{Setup, TestNode, bytes};

fn block_file(dir: &std::path::Path, id: &BlockId) -> std::path::PathBuf {
    let hex = id.to_string();
    dir.join("blocks")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
}

#[tokio::test]
async fn restart_keeps_every_acknowledged_block() {
    let temp = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    let first_id = node.key.id;
    let blocks: Vec<Vec<u8>> = (0..40).map(|i| bytes(100 + i * 997, i as u64)).collect();
    for b in &blocks {
        assert_eq!(node.put(b).await.status, StatusCode::CREATED);
    }
    node.stop().await;
    // A write interrupted by a crash leaves a temp file beside its final name; start-up
    // removes it.
    let stale = block_file(temp.path(), &BlockId::of(b"never finished"))
        .with_file_name(format!(".{}.1.0.tmp", BlockId::of(b"never finished")));
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"partial").unwrap();

    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    assert_eq!(node.key.id, first_id, "same identity after restart");
    for b in &blocks {
        let got = node.get(&BlockId::of(b).path()).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(&got.body[..], &b[..]);
    }
    assert!(!stale.exists());
    assert_eq!(crate::support::temp_files(temp.path()), 0);
    let info: serde_json::Value = serde_json::from_slice(&node.get("/node").await.body).unwrap();
    assert_eq!(info["store"]["blocks"], 41);
    node.stop().await;
}

#[tokio::test]
async fn a_second_node_on_the_same_store_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    let second = TestNode::start_with(Setup::new(temp.path())).await;
    match second {
        Err(NodeError::Store(e @ StoreError::Locked { .. })) => {
            let text = e.to_string();
            assert!(text.contains(&temp.path().display().to_string()), "{text}");
            assert!(text.contains(&std::process::id().to_string()), "{text}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("second node started on a locked store"),
    }
    node.stop().await;
    // Once the first is gone, the store opens again.
    TestNode::start_with(Setup::new(temp.path()))
        .await
        .unwrap()
        .stop()
        .await;
}

#[tokio::test]
async fn a_corrupted_block_is_quarantined_and_never_served() {
    let temp = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    let (a, b, c) = (bytes(4096, 1), bytes(4096, 2), bytes(4096, 3));
    for x in [&a, &b, &c] {
        node.put(x).await;
    }
    let (ida, idb, idc) = (BlockId::of(&a), BlockId::of(&b), BlockId::of(&c));
    // c is read once: verified, and now in the hot cache.
    assert_eq!(&node.get(&idc.path()).await.body[..], &c[..]);

    // While running, bytes change on disk (same length, later mtime).
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (id, original) in [(&ida, &a), (&idc, &c)] {
        let mut evil = original.clone();
        evil[100] ^= 0x40;
        std::fs::write(block_file(temp.path(), id), &evil).unwrap();
    }
    // a is read from disk, fails its hash, is quarantined: absent.
    let reply = node.get(&format!("{}?wait=0", ida.path())).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    // c is served from memory with the bytes verified before: never the corrupt ones.
    assert_eq!(&node.get(&idc.path()).await.body[..], &c[..]);
    node.stop().await;

    // While stopped, b changes too. After a restart nothing is cached: b and c are
    // read from disk, fail, and are quarantined.
    let mut evil = b.clone();
    evil[0] ^= 1;
    std::fs::write(block_file(temp.path(), &idb), &evil).unwrap();
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    for id in [&idb, &idc] {
        let reply = node.get(&format!("{}?wait=0", id.path())).await;
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{id}");
    }

    let quarantined: Vec<String> = std::fs::read_dir(temp.path().join(QUARANTINE_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(quarantined.len(), 3, "{quarantined:?}");
    for id in [&ida, &idb, &idc] {
        assert!(
            quarantined.iter().any(|n| n.starts_with(&id.to_string())),
            "{id}"
        );
        assert!(!block_file(temp.path(), id).exists());
    }
    // A good copy can be put again.
    assert_eq!(node.put(&b).await.status, StatusCode::CREATED);
    assert_eq!(&node.get(&idb.path()).await.body[..], &b[..]);
    node.stop().await;
}

#[tokio::test]
async fn quota_evicts_the_least_requested_then_answers_507() {
    const QUOTA: u64 = 1 << 20;
    let node = TestNode::start_adjusted(|s: &mut Setup| s.config.quota = QUOTA).await;
    let size = 300_000;
    let a = bytes(size, 1);
    let b = bytes(size, 2);
    let c = bytes(size, 3);
    let d = bytes(size, 4);
    for x in [&a, &b, &c] {
        assert_eq!(node.put(x).await.status, StatusCode::CREATED);
    }
    // a and c are requested, so b is now the least valuable.
    for x in [&a, &c] {
        assert_eq!(
            node.get(&BlockId::of(x).path()).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(node.put(&d).await.status, StatusCode::CREATED);
    let gone = node
        .get(&format!("{}?wait=0", BlockId::of(&b).path()))
        .await;
    assert_eq!(gone.status, StatusCode::GATEWAY_TIMEOUT);
    for x in [&a, &c, &d] {
        assert_eq!(
            node.get(&BlockId::of(x).path()).await.status,
            StatusCode::OK
        );
    }
    // A block as big as the quota cannot fit beside the (protected) identity block.
    let huge = bytes(QUOTA as usize, 5);
    let reply = node.put(&huge).await;
    assert_eq!(reply.status, StatusCode::INSUFFICIENT_STORAGE);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "store_full");
    // The identity block survived every eviction.
    assert_eq!(node.get(&node.key.id.path()).await.status, StatusCode::OK);
    let metrics = String::from_utf8_lossy(&node.get("/metrics").await.body).into_owned();
    assert!(
        metrics.contains("\nlibernet_evictions_total 1\n"),
        "{metrics}"
    );
    node.stop().await;
}

#[tokio::test]
async fn secrets_are_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let node = TestNode::start().await;
    for name in ["node.key", "admin.token"] {
        let mode = std::fs::metadata(node.dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    let token = std::fs::read_to_string(node.dir.join("admin.token")).unwrap();
    assert_eq!(token.trim().len(), 64);
    node.stop().await;
}

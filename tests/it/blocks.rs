//! Blocks over HTTP: round trips, statuses, caching headers, ranges, waiting.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::client::{ClientError, Reply, unix_now, verify_reply};
use libernet::id::{BlockId, MAX_BLOCK_SIZE};
use libernet::identity::digest_header;

use crate::support::{TestNode, bytes};

const INTERESTING_SIZES: [usize; 4] = [0, 1, MAX_BLOCK_SIZE - 1, MAX_BLOCK_SIZE];

#[tokio::test]
async fn put_then_get_and_head_for_interesting_sizes() {
    let node = TestNode::start().await;
    for (i, size) in INTERESTING_SIZES.into_iter().enumerate() {
        let data = bytes(size, i as u64);
        let id = BlockId::of(&data);
        let put = node.put(&data).await;
        assert_eq!(put.status, StatusCode::CREATED, "size {size}");
        assert_eq!(put.header("location"), Some(id.path().as_str()));
        assert_eq!(
            node.put(&data).await.status,
            StatusCode::OK,
            "second PUT of size {size}"
        );

        let got = node.get(&id.path()).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(&got.body[..], &data[..], "size {size}");
        assert_eq!(got.header("content-type"), Some("application/octet-stream"));
        assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(got.header("etag"), Some(format!("\"{id}\"").as_str()));
        assert_eq!(
            got.header("cache-control"),
            Some("public, max-age=29030400, immutable")
        );
        assert_eq!(got.header("accept-ranges"), Some("bytes"));
        let whole = digest_header(id.as_bytes());
        assert_eq!(got.header("content-digest"), Some(whole.as_str()));
        assert_eq!(got.header("repr-digest"), Some(whole.as_str()));

        let head = node.send(Method::HEAD, &id.path(), &[], Bytes::new()).await;
        assert_eq!(head.status, StatusCode::OK);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(size.to_string().as_str())
        );
        assert_eq!(head.header("content-digest"), Some(whole.as_str()));
    }
    node.stop().await;
}

#[tokio::test]
async fn oversize_is_refused_before_the_body_is_read() {
    let node = TestNode::start().await;
    let data = bytes(MAX_BLOCK_SIZE + 1, 9);
    let reply = node.put(&data).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "too_large");
    node.stop().await;
}

#[tokio::test]
async fn bytes_that_do_not_hash_to_the_id_get_422() {
    let node = TestNode::start().await;
    let id = BlockId::of(b"what the id promises");
    let reply = node
        .send(
            Method::PUT,
            &id.path(),
            &[],
            Bytes::from_static(b"something else"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "hash_mismatch");
    let missing = node.get(&format!("{}?wait=0", id.path())).await;
    assert_eq!(missing.status, StatusCode::GATEWAY_TIMEOUT);
    node.stop().await;
}

#[tokio::test]
async fn zlib_form_is_accepted_and_stored_inflated() {
    let node = TestNode::start().await;
    let data = b"an unencrypted libernet block, compressible: ".repeat(500);
    let id = BlockId::of(&data);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&data).unwrap();
    let compressed = z.finish().unwrap();
    assert!(compressed.len() < data.len());
    let reply = node.send(Method::PUT, &id.path(), &[], compressed).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let got = node.get(&id.path()).await;
    assert_eq!(&got.body[..], &data[..]);

    // A zlib bomb (inflates past 1 MiB) is a mismatch, not a crash or a 5xx.
    let big = vec![0u8; 4 * MAX_BLOCK_SIZE];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&big).unwrap();
    let bomb = z.finish().unwrap();
    let reply = node
        .send(Method::PUT, &BlockId::of(&big).path(), &[], bomb)
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    node.stop().await;
}

#[tokio::test]
async fn ranges_and_conditional_requests() {
    let node = TestNode::start().await;
    let data = bytes(10_000, 3);
    let id = BlockId::of(&data);
    node.put(&data).await;
    let path = id.path();

    let cases = [
        ("bytes=0-99", 0, 99),
        ("bytes=9990-", 9990, 9999),
        ("bytes=-10", 9990, 9999),
        ("bytes=5000-99999", 5000, 9999),
    ];
    for (range, start, end) in cases {
        let r = node
            .send(Method::GET, &path, &[("range", range)], Bytes::new())
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(&r.body[..], &data[start..=end], "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/10000").as_str())
        );
        // The part's own digest, and the whole block's as Repr-Digest.
        assert_eq!(
            r.header("content-digest"),
            Some(digest_header(BlockId::of(&data[start..=end]).as_bytes()).as_str())
        );
        assert_eq!(
            r.header("repr-digest"),
            Some(digest_header(id.as_bytes()).as_str())
        );
    }
    let r = node
        .send(
            Method::GET,
            &path,
            &[("range", "bytes=10000-")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), Some("bytes */10000"));
    // Several ranges: the whole block (the RFC lets a server ignore Range).
    let r = node
        .send(
            Method::GET,
            &path,
            &[("range", "bytes=0-1,5-6")],
            Bytes::new(),
        )
        .await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 10_000));
    // If-Range with another tag: the whole block.
    let r = node
        .send(
            Method::GET,
            &path,
            &[("range", "bytes=0-1"), ("if-range", "\"nope\"")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // HEAD with a range answers the part's length.
    let r = node
        .send(Method::HEAD, &path, &[("range", "bytes=0-9")], Bytes::new())
        .await;
    assert_eq!(
        (r.status, r.header("content-length")),
        (StatusCode::PARTIAL_CONTENT, Some("10"))
    );

    let tag = format!("\"{id}\"");
    let r = node
        .send(Method::GET, &path, &[("if-none-match", &tag)], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    let r = node
        .send(
            Method::GET,
            &path,
            &[("if-none-match", "\"other\"")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    node.stop().await;
}

#[tokio::test]
async fn a_waiting_get_is_woken_by_a_put_from_another_client() {
    let node = TestNode::start().await;
    let data = bytes(3000, 77);
    let path = BlockId::of(&data).path();
    let waiting = node.spawn_get(&format!("{path}?wait=30"));
    node.wait_for_waiters(1).await;
    let other = libernet::client::Client::new(&node.url);
    let put = other
        .send(Method::PUT, &path, &[], data.clone())
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::CREATED);
    // Well before its 30 s wait ends, the GET has the block.
    let reply = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    verify_reply(
        &reply,
        "GET",
        &format!("{path}?wait=30"),
        &node.key,
        unix_now(),
    )
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(&reply.body[..], &data[..]);
    node.stop().await;
}

#[tokio::test]
async fn many_waiters_on_one_id_share_one_lookup() {
    let node = TestNode::start().await;
    let data = bytes(100, 5);
    let path = format!("{}?wait=30", BlockId::of(&data).path());
    let tasks: Vec<_> = (0..20).map(|_| node.spawn_get(&path)).collect();
    node.wait_for_waiters(20).await;
    assert_eq!(node.put(&data).await.status, StatusCode::CREATED);
    for t in tasks {
        let reply = t.await.unwrap().unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    let metrics = node.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("\nlibernet_lookups_total 1\n"), "{text}");
    assert!(text.contains("\nlibernet_waiting_requests 0\n"), "{text}");
    node.stop().await;
}

#[tokio::test]
async fn absent_block_gets_504_after_the_wait() {
    let node = TestNode::start().await;
    let id = BlockId::of(b"never stored");
    let started = std::time::Instant::now();
    let reply = node.get(&format!("{}?wait=0.3", id.path())).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.header("retry-after"), Some("5"));
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "not_found");
    assert_eq!(json["id"], id.to_string());
    assert_eq!(json["asked"], serde_json::json!([]));
    assert!(json["waited_ms"].as_u64().unwrap() >= 300);
    let head = node
        .send(
            Method::HEAD,
            &format!("{}?wait=0", id.path()),
            &[],
            Bytes::new(),
        )
        .await;
    assert_eq!(head.status, StatusCode::GATEWAY_TIMEOUT);
    node.stop().await;
}

#[tokio::test]
async fn the_default_wait_applies_without_a_query() {
    let node =
        TestNode::start_adjusted(|s| s.options.default_wait = Duration::from_millis(200)).await;
    let reply = node.get(&BlockId::of(b"nope").path()).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert!(json["waited_ms"].as_u64().unwrap() >= 200);
    node.stop().await;
}

/// A node with `adjust`ed waiter bounds, two waiting GETs on it (for blocks `[0]` and
/// `[1]`), and the answer to a third.
async fn two_waiters_then_a_third(
    temp: &std::path::Path,
    adjust: impl FnOnce(&mut libernet::config::Config),
) -> (
    TestNode,
    Vec<tokio::task::JoinHandle<Result<Reply, ClientError>>>,
    Reply,
) {
    let mut setup = crate::support::Setup::new(temp);
    adjust(&mut setup.config);
    let node = TestNode::start_with(setup).await.unwrap();
    let tasks: Vec<_> = (0..2u8)
        .map(|i| node.spawn_get(&format!("{}?wait=30", BlockId::of(&[i]).path())))
        .collect();
    node.wait_for_waiters(2).await;
    let third = node
        .get(&format!("{}?wait=30", BlockId::of(b"3").path()))
        .await;
    (node, tasks, third)
}

/// Stores the blocks the two waiters of `two_waiters_then_a_third` wait for: both get
/// them. Then stops the node.
async fn wake_both_and_stop(
    node: TestNode,
    tasks: Vec<tokio::task::JoinHandle<Result<Reply, ClientError>>>,
) {
    for i in 0..2u8 {
        node.put(&[i]).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, StatusCode::OK);
    }
    node.stop().await;
}

#[tokio::test]
async fn the_waiter_cap_refuses_with_503() {
    let temp = tempfile::tempdir().unwrap();
    let (node, tasks, third) = two_waiters_then_a_third(temp.path(), |c| c.max_waiters = 2).await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.header("retry-after"), Some("1"));
    wake_both_and_stop(node, tasks).await;
}

/// Waiters are bounded by bytes too: past `waiter_memory` (at `WAITER_COST` a waiter) a
/// waiting GET gets 503 with the bound in its JSON, while the node keeps serving.
#[tokio::test]
async fn the_waiter_byte_budget_refuses_with_503_and_the_node_keeps_serving() {
    let temp = tempfile::tempdir().unwrap();
    let (node, tasks, third) = two_waiters_then_a_third(temp.path(), |c| {
        c.max_waiters = 1000;
        c.waiter_memory = 3 * libernet::arrivals::WAITER_COST as u64 - 1;
    })
    .await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.header("retry-after"), Some("1"));
    let json: serde_json::Value = serde_json::from_slice(&third.body).unwrap();
    assert_eq!(json["error"], "busy");
    assert_eq!(json["bound"], "waiter_memory");
    assert_eq!(
        (json["limit"].as_u64(), json["waiting"].as_u64()),
        (Some(2), Some(2))
    );
    // Local answers and uploads go on; the uploads wake the two waiters.
    assert_eq!(node.get("/node").await.status, StatusCode::OK);
    let absent = node
        .get(&format!("{}?wait=0", BlockId::of(b"4").path()))
        .await;
    assert_eq!(absent.status, StatusCode::GATEWAY_TIMEOUT);
    wake_both_and_stop(node, tasks).await;
}

#[tokio::test]
async fn node_identity_is_served_and_stored_as_a_block() {
    let node = TestNode::start().await;
    let info = node.get("/node").await;
    let json: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    let block = json["identity_block"].as_str().unwrap();
    assert_eq!(json["id"], BlockId::of(block.as_bytes()).to_string());
    assert_eq!(json["id"], node.key.id.to_string());
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["store"]["blocks"], 1);
    let identity = node.get(&node.key.id.path()).await;
    assert_eq!(&identity.body[..], block.as_bytes());
    let page = node.get("/").await;
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    node.stop().await;
}

#[tokio::test]
async fn the_verifier_rejects_changed_status_path_body_and_old_signatures() {
    let node = TestNode::start().await;
    let data = bytes(500, 1);
    let path = BlockId::of(&data).path();
    node.put(&data).await;
    let reply = node
        .client
        .send(Method::GET, &path, &[], Bytes::new())
        .await
        .unwrap();
    let now = unix_now();
    verify_reply(&reply, "GET", &path, &node.key, now).unwrap();

    let mut changed = reply.clone();
    changed.status = StatusCode::NOT_FOUND;
    assert!(
        verify_reply(&changed, "GET", &path, &node.key, now).is_err(),
        "status"
    );
    assert!(
        verify_reply(&reply, "GET", &BlockId::of(b"x").path(), &node.key, now).is_err(),
        "path"
    );
    assert!(
        verify_reply(&reply, "HEAD", &path, &node.key, now).is_err(),
        "method"
    );
    assert!(
        verify_reply(&reply, "GET", &format!("{path}?wait=1"), &node.key, now).is_err(),
        "query"
    );
    let mut changed = reply.clone();
    let mut body = changed.body.to_vec();
    body[0] ^= 1;
    changed.body = body.into();
    assert!(
        verify_reply(&changed, "GET", &path, &node.key, now).is_err(),
        "body"
    );
    assert!(
        verify_reply(&reply, "GET", &path, &node.key, now + 301).is_err(),
        "old signature"
    );
    let other = TestNode::start().await;
    assert!(
        verify_reply(&reply, "GET", &path, &other.key, now).is_err(),
        "another node's key"
    );
    other.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn shutdown_drains_a_request_in_flight() {
    let mut node = TestNode::start().await;
    let path = format!("{}?wait=1", BlockId::of(b"late").path());
    let in_flight = node.spawn_get(&path);
    node.wait_for_waiters(1).await;
    let server = node.begin_stop();
    // The request in flight still gets its complete, signed answer.
    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    verify_reply(&reply, "GET", &path, &node.key, unix_now()).unwrap();
    server.await.unwrap().unwrap();
    // And the listener is gone.
    assert!(
        node.client
            .send(Method::GET, "/node", &[], Bytes::new())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn history_keeps_what_each_step_counted() {
    let node = TestNode::start().await;
    node.node.sample_history();
    let empty = node.get("/history").await;
    assert_eq!(empty.status, StatusCode::OK);
    let empty: serde_json::Value = serde_json::from_slice(&empty.body).unwrap();
    assert_eq!(empty["step_secs"], 5);
    let before = empty["points"].as_array().unwrap().len();

    let block = bytes(3000, 9);
    let id = BlockId::of(&block);
    assert_eq!(node.put(&block).await.status, StatusCode::CREATED);
    for _ in 0..3 {
        assert_eq!(node.get(&id.path()).await.status, StatusCode::OK);
    }
    let absent = BlockId::of(b"nobody has this");
    let miss = node.get(&format!("{}?wait=0", absent.path())).await;
    assert_eq!(miss.status, StatusCode::GATEWAY_TIMEOUT);
    node.node.sample_history();

    let reply = node.get("/history").await;
    let history: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let points = history["points"].as_array().unwrap();
    assert!(points.len() > before);
    // The background sampler may have split the steps: add them up. They saw the PUT,
    // the 3 GETs, the miss and the first /history.
    let sum = |key: &str| -> u64 {
        points[before..]
            .iter()
            .map(|p| p[key].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("requests"), 6, "{history}");
    assert_eq!(sum("hits"), 3, "{history}");
    assert_eq!(sum("misses"), 1, "{history}");
    assert_eq!(sum("bytes_in"), 3000, "{history}");
    assert!(sum("bytes_out") >= 9000, "{history}");
    let last = points.last().unwrap();
    assert!(last["at"].as_u64().unwrap() > 1_700_000_000);
    node.stop().await;
}

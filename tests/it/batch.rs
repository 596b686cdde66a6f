//! `POST /sha256/batch` and the client's `POST /sha256/holds`: many blocks in one
//! request, one result per frame, durable before the answer; bodies cut off inside a
//! frame or mid-connection; a node killed during a batch keeps what it acknowledged.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use libernet::client::{Client, Reply, unix_now, verify_reply};
use libernet::id::BlockId;
use libernet::proto::{BATCH_PATH, BatchAnswer, BatchStop, MAX_BATCH_BLOCKS, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{spawn_serve, wait_exit};
use crate::support::{Setup, TestNode, bytes, temp_files};

/// `n` distinct blocks of `size` bytes.
fn blocks(n: usize, size: usize, seed: u64) -> Vec<(BlockId, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let b = bytes(size, seed * 1_000_003 + i as u64);
            (BlockId::of(&b), b)
        })
        .collect()
}

fn body_of(blocks: &[(BlockId, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (id, b) in blocks {
        encode_frame(&mut body, id, b);
    }
    body
}

async fn post_batch(node: &TestNode, body: Vec<u8>, headers: &[(&str, &str)]) -> BatchAnswer {
    let reply = node.send(Method::POST, BATCH_PATH, headers, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    serde_json::from_slice(&reply.body).expect("a batch answer")
}

/// The bytes the node serves for `id` without asking the mesh, None when absent.
async fn local(client: &Client, id: &BlockId) -> Option<Bytes> {
    let path = format!("{}?wait=0", id.path());
    let reply = client
        .send(Method::GET, &path, &[], Bytes::new())
        .await
        .expect("transport");
    match reply.status {
        StatusCode::OK => Some(reply.body),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_a_mismatching_block_in_the_middle_stores_the_others_and_reports_it() {
    let node = TestNode::start().await;
    let mut sent = blocks(9, 4096, 1);
    sent.push(blocks(1, 1 << 20, 2).remove(0));
    let held = sent[0].clone();
    assert_eq!(node.put(&held.1).await.status, StatusCode::CREATED);
    // Frame 5 claims an id its bytes do not hash to.
    let liar = BlockId::of(b"something else");
    sent[5].0 = liar;
    let answer = post_batch(&node, body_of(&sent), &[]).await;

    let mut expected = vec![201; 10];
    expected[0] = 200;
    expected[5] = 422;
    assert_eq!(answer.results, expected, "{answer:?}");
    assert_eq!((answer.stored, answer.held, answer.failed), (8, 1, 1));
    assert_eq!(answer.errors.len(), 1);
    assert_eq!(answer.errors["5"].error, "hash_mismatch", "{answer:?}");
    assert!(answer.stopped.is_none());
    for (i, (id, b)) in sent.iter().enumerate() {
        let got = local(&node.client, id).await;
        match i {
            5 => assert!(got.is_none(), "the lying frame was stored"),
            _ => assert_eq!(got.as_deref(), Some(&b[..]), "frame {i}"),
        }
    }
    assert!(
        local(&node.client, &BlockId::of(&sent[5].1))
            .await
            .is_none()
    );
    // The same batch again: everything that was stored is held now.
    let again = post_batch(&node, body_of(&sent), &[]).await;
    assert_eq!((again.stored, again.held, again.failed), (0, 9, 1));
    assert_eq!(node.metric("libernet_puts_rejected_total"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_cut_off_inside_a_frame_acknowledges_only_whole_durable_frames() {
    let temp = tempfile::tempdir().unwrap();
    let sent = blocks(40, 10_000, 3);
    let body = body_of(&sent);
    // The body ends 100 bytes into frame 30's block.
    let cut = 30 * (36 + 10_000) + 36 + 100;
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    let answer = post_batch(&node, body[..cut].to_vec(), &[]).await;
    assert_eq!(answer.results, vec![201; 30], "{answer:?}");
    let stopped = answer.stopped.expect("the answer says where it stopped");
    assert_eq!((stopped.at, stopped.error), (30, BatchStop::Truncated));
    node.stop().await;

    // Acknowledged means durable: a node reopened on the store has every one.
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    for (i, (id, b)) in sent.iter().enumerate() {
        let got = local(&node.client, id).await;
        match i < 30 {
            true => assert_eq!(got.as_deref(), Some(&b[..]), "frame {i}"),
            false => assert!(got.is_none(), "frame {i} was never sent whole"),
        }
    }
    assert_eq!(temp_files(temp.path()), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_frames_and_oversized_batches_stop_with_a_reason() {
    let node = TestNode::start().await;
    // A frame claiming 1 MiB + 1 bytes: reading stops there, the frames before it stand.
    let sent = blocks(3, 100, 4);
    let mut body = body_of(&sent);
    body.extend_from_slice(&[7u8; 32]);
    body.extend_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    body.extend_from_slice(&[0u8; 64]);
    let answer = post_batch(&node, body, &[]).await;
    assert_eq!(answer.results, vec![201; 3]);
    let stopped = answer.stopped.expect("stopped");
    assert_eq!((stopped.at, stopped.error), (3, BatchStop::TooLarge));

    // One frame past the count bound.
    let many = blocks(MAX_BATCH_BLOCKS + 1, 16, 5);
    let answer = post_batch(&node, body_of(&many), &[]).await;
    assert_eq!(answer.results.len(), MAX_BATCH_BLOCKS);
    assert_eq!(answer.stopped.map(|s| s.error), Some(BatchStop::TooMany));
    assert!(
        local(&node.client, &many[MAX_BATCH_BLOCKS].0)
            .await
            .is_none()
    );

    // A declared length over the bound is refused before any byte is read.
    let mut stream = start_batch(&node.url, 40_000_000, &[]).await;
    let reply = read_reply(&mut stream).await;
    verify_reply(&reply, "POST", BATCH_PATH, &node.key, unix_now()).expect("signed");
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // An empty batch is a batch of nothing.
    let answer = post_batch(&node, Vec::new(), &[]).await;
    assert_eq!(answer, BatchAnswer::default());
    // Other methods are refused.
    let reply = node.send(Method::GET, BATCH_PATH, &[], Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_batch_needs_the_token_and_pins_every_block() {
    let node = TestNode::start().await;
    let sent = blocks(5, 2000, 6);
    let reply = node
        .send(
            Method::POST,
            BATCH_PATH,
            &[("libernet-pin", "backup")],
            body_of(&sent),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(local(&node.client, &sent[0].0).await.is_none());
    let auth = format!("Bearer {}", node.admin_token());
    let answer = post_batch(
        &node,
        body_of(&sent),
        &[("authorization", &auth), ("libernet-pin", "backup")],
    )
    .await;
    assert_eq!(answer.stored, 5);
    let pins = node.admin(Method::GET, "/pins?holder=backup").await;
    let text = String::from_utf8_lossy(&pins.body);
    for (id, _) in &sent {
        assert!(text.contains(&id.to_string()), "{id} not pinned: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_ask_which_of_many_ids_are_held_in_one_request() {
    let node = TestNode::start().await;
    let sent = blocks(4, 300, 7);
    for (_, b) in &sent[..2] {
        node.put(b).await;
    }
    let ids: Vec<String> = sent.iter().map(|(id, _)| id.to_string()).collect();
    let body = serde_json::json!({ "ids": ids }).to_string();
    let reply = node
        .send(Method::POST, "/sha256/holds", &[], body.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let state: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(state["state"], "hh--");
    // Custody is for signed nodes only.
    let body = serde_json::json!({ "ids": ids, "keep_until": unix_now() + 60 }).to_string();
    let reply = node.send(Method::POST, "/sha256/holds", &[], body).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// Sends the start of a batch over a raw connection: headers declaring `declared`
/// bytes, then `sent`; returns the open stream.
async fn start_batch(url: &str, declared: usize, sent: &[u8]) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head =
        format!("POST {BATCH_PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {declared}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_mid_batch_leaves_only_whole_blocks() {
    let temp = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    let sent = blocks(20, 50_000, 8);
    let body = body_of(&sent);
    let cut = 12 * (36 + 50_000) + 36 + 20_000;
    let stream = start_batch(&node.url, body.len(), &body[..cut]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    // The node keeps serving; every block is either whole or absent, never partial.
    crate::support::eventually(10, "the cut batch's blocks to settle", || async {
        local(&node.client, &sent[0].0).await.is_some()
    })
    .await;
    for (i, (id, b)) in sent.iter().enumerate() {
        if let Some(got) = local(&node.client, id).await {
            assert!(i < 12, "frame {i} was never sent whole");
            assert_eq!(&got[..], &b[..], "frame {i}");
        }
    }
    node.stop().await;
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    assert_eq!(temp_files(temp.path()), 0);
    assert!(local(&node.client, &sent[12].0).await.is_none());
    node.stop().await;
}

/// Reads one HTTP/1.1 answer with a Content-Length from `stream`.
async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "connection closed before an answer");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    let len: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside the answer");
        body.extend_from_slice(&chunk[..n]);
    }
    Reply {
        status: StatusCode::from_u16(status).unwrap(),
        headers,
        body: Bytes::from(body),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_during_a_batch_keeps_every_acknowledged_block() {
    let temp = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_serve(temp.path());
    let client = Client::new(&url);
    let (key, _) = client.node_key().await.expect("node up");

    // Batch 1, over a raw connection, is answered: all acknowledged.
    let first = blocks(300, 4096, 9);
    let body = body_of(&first);
    let mut stream = start_batch(&url, body.len(), &body).await;
    let reply = read_reply(&mut stream).await;
    verify_reply(&reply, "POST", BATCH_PATH, &key, unix_now()).expect("a signed answer");
    let answer: BatchAnswer = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(answer.stored, 300, "{answer:?}");

    // Batch 2 is under way (more than a group's worth sent, the rest never comes)
    // when the node is killed.
    let second = blocks(200, 40_000, 10);
    let body = body_of(&second);
    let _pending = start_batch(&url, body.len(), &body[..150 * 40_036 + 1000]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    wait_exit(&mut child, Duration::from_secs(10));

    let (mut child, url) = spawn_serve(temp.path());
    let client = Client::new(&url);
    for (i, (id, b)) in first.iter().enumerate() {
        let got = local(&client, id).await;
        assert_eq!(got.as_deref(), Some(&b[..]), "acknowledged block {i} lost");
    }
    for (i, (id, b)) in second.iter().enumerate() {
        if let Some(got) = local(&client, id).await {
            assert!(i < 150, "block {i} was never sent whole");
            assert_eq!(&got[..], &b[..], "block {i} is not whole");
        }
    }
    assert_eq!(temp_files(temp.path()), 0, "interrupted writes are cleared");
    let _ = child.kill();
    let _ = child.wait();
}

//! What the dashboard asks of the node, checked over real HTTP: its files with their
//! policy, `/mesh` over a real 3-node mesh (one node then stopped), replicas known in
//! `/stats`, and `POST /upload` storing a multipart body as a bundle pinned for
//! `upload`, with its refusals. The page itself is driven in a browser by
//! `dashboard_browser`.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::id::BlockId;
use serde_json::Value;

use crate::support::{Setup, TestNode, bytes, eventually};

/// Starts a node that joins through `seeds` and gossips every `gossip` seconds.
pub(crate) async fn mesh_node(seeds: &[&TestNode], gossip: f64) -> TestNode {
    let seeds: Vec<String> = seeds.iter().map(|n| n.url.clone()).collect();
    TestNode::start_adjusted(move |s: &mut Setup| {
        s.config.peers = seeds;
        s.config.gossip_interval = Duration::from_secs_f64(gossip);
        s.config.push_interval = Duration::ZERO;
    })
    .await
}

/// A node's answer to `path`, as JSON.
pub(crate) async fn json(node: &TestNode, path: &str) -> Value {
    let reply = node.get(path).await;
    assert_eq!(reply.status, StatusCode::OK, "GET {path}");
    serde_json::from_slice(&reply.body).unwrap()
}

/// Each peer of `node` with its health.
pub(crate) async fn peer_health(node: &TestNode) -> std::collections::HashMap<String, String> {
    let peers = json(node, "/peers").await;
    peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["health"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The number of peers `node` lists as healthy.
async fn healthy_peers(node: &TestNode) -> usize {
    peer_health(node)
        .await
        .values()
        .filter(|h| *h == "ok")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_files_are_served_with_a_same_origin_policy() {
    let node = TestNode::start().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/web/app.js", "text/javascript"),
        ("/web/style.css", "text/css"),
        ("/web/favicon.svg", "image/svg+xml"),
    ] {
        let reply = node.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(
            reply.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        let policy = reply.header("content-security-policy").unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{path}: {policy}");
        assert!(!reply.body.is_empty(), "{path}");
    }
    let page = String::from_utf8(node.get("/").await.body.to_vec()).unwrap();
    assert!(page.contains("/web/app.js") && page.contains("/web/style.css"));
    for path in ["/web/", "/web/index.html", "/web/../node", "/web/app.js/x"] {
        assert_eq!(node.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mesh_view_lists_all_three_nodes_and_then_the_stopped_one_as_unreachable() {
    let a = mesh_node(&[], 0.5).await;
    let b = mesh_node(&[&a], 0.5).await;
    let c = mesh_node(&[&a], 0.5).await;
    eventually(20, "a knows b and c, healthy", || async {
        healthy_peers(&a).await == 2
    })
    .await;
    let view = json(&a, "/mesh").await;
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{view}");
    assert_eq!(nodes[0]["id"], json(&a, "/node").await["id"]);
    assert_eq!(nodes[0]["self"], true);
    let (mut blocks, mut bytes) = (0, 0);
    for node in [&a, &b, &c] {
        let info = json(node, "/node").await;
        let row = nodes
            .iter()
            .find(|n| n["id"] == info["id"])
            .unwrap_or_else(|| panic!("{} missing from {view}", info["id"]));
        assert_eq!(row["reachable"], true, "{row}");
        assert_eq!(row["url"], info["url"]);
        assert_eq!(row["version"], info["version"]);
        assert_eq!(row["store"]["quota"], info["store"]["quota"]);
        assert!(row["requests"].as_u64().unwrap() > 0, "{row}");
        blocks += row["store"]["blocks"].as_u64().unwrap();
        bytes += row["store"]["bytes"].as_u64().unwrap();
    }
    assert_eq!(view["totals"]["nodes"], 3);
    assert_eq!(view["totals"]["blocks"], blocks);
    assert_eq!(view["totals"]["bytes"], bytes);

    let c_id = json(&c, "/node").await["id"].clone();
    c.stop().await;
    eventually(20, "the mesh view shows c unreachable", || async {
        let view = json(&a, "/mesh").await;
        let row = view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == c_id)
            .cloned();
        row.is_some_and(|r| r["reachable"] == false && r["error"].is_string())
            && view["totals"]["nodes"] == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn popular_blocks_count_the_replicas_known() {
    let a = mesh_node(&[], 0.0).await;
    let b = mesh_node(&[&a], 0.0).await;
    eventually(20, "a knows b", || async { healthy_peers(&a).await == 1 }).await;
    let block = bytes(5000, 7);
    let id = BlockId::of(&block);
    assert_eq!(b.put(&block).await.status, StatusCode::CREATED);
    // a fetches it from b, which had it itself, and keeps a copy.
    assert_eq!(a.get(&id.path()).await.status, StatusCode::OK);
    eventually(10, "a holds its copy", || a.holds(&id)).await;
    let stats = a.admin(Method::GET, "/stats?top=5").await;
    let stats: Value = serde_json::from_slice(&stats.body).unwrap();
    let row = stats["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("{id} not among {stats}"));
    assert_eq!(row["local"], true, "{row}");
    assert_eq!(row["replicas"], 2, "this node and b: {row}");
    // b only knows its own copy.
    let stats = b.admin(Method::GET, "/stats?top=5").await;
    let stats: Value = serde_json::from_slice(&stats.body).unwrap();
    let row = &stats["blocks"][0];
    assert_eq!(row["id"], id.to_string());
    assert_eq!(row["replicas"], 1, "{row}");
}

/// One part of a multipart body: its name, file name and bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` body of `parts`.
fn multipart(parts: &[Part]) -> (String, Bytes) {
    let boundary = "----libernet-test-7f3a9";
    let mut body = Vec::new();
    for (name, file_name, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match file_name {
            Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        if file_name.is_some() {
            body.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={boundary}"),
        Bytes::from(body),
    )
}

/// `POST /upload` of `parts`, with the admin token when `admin`.
async fn upload(node: &TestNode, parts: &[Part<'_>], admin: bool) -> (StatusCode, Value) {
    let (content_type, body) = multipart(parts);
    let auth = format!("Bearer {}", node.admin_token());
    let mut headers = vec![("content-type", content_type.as_str())];
    if admin {
        headers.push(("authorization", auth.as_str()));
    }
    let reply = node.send(Method::POST, "/upload", &headers, body).await;
    let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, value)
}

/// The ids pinned for `upload`.
async fn upload_pins(node: &TestNode) -> Vec<String> {
    let reply = node.admin(Method::GET, "/pins?holder=upload").await;
    let pins: Value = serde_json::from_slice(&reply.body).unwrap();
    pins["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_stores_the_files_as_a_pinned_bundle() {
    let node = TestNode::start().await;
    let big = bytes(2_500_000, 3); // three chunks
    let page = b"<!doctype html><title>up</title>".to_vec();
    let (status, answer) = upload(
        &node,
        &[
            ("file", Some("index.html"), &page),
            ("modified", None, b"1700000000123"),
            ("file", Some("data%2Fbig%20file.bin"), &big),
            ("file", Some("data%2Fempty"), b""),
        ],
        true,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["files"], 3);
    assert_eq!(answer["bytes"], (big.len() + page.len()) as u64);
    assert_eq!(answer["index"], true);
    assert_eq!(
        answer["blocks"], 5,
        "3 + 1 chunks and the manifest: {answer}"
    );
    let url = answer["url"].as_str().unwrap();
    assert!(url.starts_with("/sha256/") && url.ends_with('/'), "{url}");

    let got = node.get(&format!("{url}data/big%20file.bin")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body == big, "the big file reads back whole");
    let got = node.get(url).await;
    assert_eq!(got.body, page, "the root serves index.html");
    // `?listing` lists the root all the same.
    let root = node
        .send(
            Method::GET,
            &format!("{url}?listing"),
            &[("accept", "application/json")],
            Bytes::new(),
        )
        .await;
    let root: Value = serde_json::from_slice(&root.body).unwrap();
    assert_eq!(root["entries"][0]["name"], "data", "{root}");
    assert_eq!(root["entries"][1]["name"], "index.html", "{root}");
    let listing = node
        .send(
            Method::GET,
            &format!("{url}data/"),
            &[("accept", "application/json")],
            Bytes::new(),
        )
        .await;
    let listing: Value = serde_json::from_slice(&listing.body).unwrap();
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big file.bin", "empty"]);
    // `modified` applies to the file after it only; the others were modified now.
    let modified = |i: usize| listing["entries"][i]["modified"].as_f64().unwrap();
    let epoch = libernet::bundle::MODIFIED_EPOCH_UNIX;
    assert!((modified(0) - (1_700_000_000.123 - epoch)).abs() < 1e-3);
    let now = libernet::client::unix_now() as f64 - epoch;
    assert!((modified(1) - now).abs() < 60.0, "{} is now", modified(1));

    let pins = upload_pins(&node).await;
    assert_eq!(pins.len(), 5, "every block is pinned for upload: {pins:?}");
    assert!(pins.contains(&url["/sha256/".len()..][..64].to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_refusals_are_clear_and_an_abandoned_upload_leaves_no_pin() {
    let node = TestNode::start().await;
    let file = b"content".as_slice();
    let cases: [(&[Part], StatusCode, &str); 6] = [
        (&[], StatusCode::BAD_REQUEST, "no file"),
        (
            &[("file", Some("a"), file), ("file", Some("a"), file)],
            StatusCode::BAD_REQUEST,
            "twice",
        ),
        (
            &[("file", Some("..%2Fx"), file)],
            StatusCode::BAD_REQUEST,
            "..",
        ),
        (
            &[("other", None, file)],
            StatusCode::BAD_REQUEST,
            "unknown part",
        ),
        (
            &[("modified", None, b"yesterday"), ("file", Some("a"), file)],
            StatusCode::BAD_REQUEST,
            "modified",
        ),
        (
            &[("file", None, file)],
            StatusCode::BAD_REQUEST,
            "without a file name",
        ),
    ];
    for (parts, status, says) in cases {
        let (got, answer) = upload(&node, parts, true).await;
        assert_eq!(got, status, "{answer}");
        assert_eq!(answer["error"], "bad_upload", "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(says), "{message:?} says {says:?}");
    }
    let (got, answer) = upload(&node, &[("file", Some("a"), file)], false).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED, "{answer}");
    let auth = format!("Bearer {}", node.admin_token());
    let reply = node
        .send(
            Method::POST,
            "/upload",
            &[("authorization", &auth), ("content-type", "text/plain")],
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // A body cut off after a whole first file: its block was pinned, then let go.
    let (content_type, body) = multipart(&[
        ("file", Some("first"), &bytes(1_100_000, 1)),
        ("file", Some("second"), &bytes(10, 2)),
    ]);
    let cut = body.slice(..body.len() - 40);
    let reply = node
        .send(
            Method::POST,
            "/upload",
            &[("authorization", &auth), ("content-type", &content_type)],
            cut,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    eventually(10, "the abandoned upload's pins are taken back", || async {
        upload_pins(&node).await.is_empty()
    })
    .await;
    // The failed uploads stored nothing that stays pinned, and nothing else either.
    let stats = node.admin(Method::GET, "/pins").await;
    let stats: Value = serde_json::from_slice(&stats.body).unwrap();
    assert_eq!(stats["pins"].as_array().unwrap().len(), 0, "{stats}");
}

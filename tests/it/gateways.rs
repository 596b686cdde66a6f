//! Other readers of the same store, against real nodes: the IPFS trustless gateway
//! (`/ipfs/{cid}`, raw blocks) and Blossom BUD-01 (`/{sha256}[.ext]`): the bytes and
//! headers each specification asks for, every refusal a clear signed 4xx with the JSON
//! error body, the mesh's pull-through behind both, and two third-party clients from npm
//! (`@helia/verified-fetch`, `blossom-client-sdk`) reading a node through
//! `tools/gateway-clients/check.mjs`.
//!
//! The clients need Node.js and `npm ci` in `tools/gateway-clients`; without them the
//! client test says loudly that it skipped, unless `LIBERNET_REQUIRE_NODE` is set (as in
//! CI), where it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::cid::RawCid;
use libernet::client::Reply;
use libernet::id::BlockId;

use crate::support::{Setup, TestNode, bytes, eventually};

const RAW: &str = "application/vnd.ipld.raw";

/// A request and the refusal it should get: method, path, headers, status, error code.
type Refusal<'a> = (
    Method,
    String,
    &'a [(&'a str, &'a str)],
    StatusCode,
    &'a str,
);

fn cid_of(block: &[u8]) -> String {
    RawCid::Block(BlockId::of(block)).to_string()
}

fn error_code(reply: &Reply) -> String {
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    body["error"].as_str().unwrap_or("").to_owned()
}

async fn send(node: &TestNode, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    node.send(method, path, headers, Bytes::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfs_serves_a_raw_block_by_its_cid_with_the_trustless_headers() {
    let node = TestNode::start().await;
    let block = bytes(70_000, 7);
    assert_eq!(node.put(&block).await.status, StatusCode::CREATED);
    let cid = cid_of(&block);
    let path = format!("/ipfs/{cid}");

    let reply = send(&node, Method::GET, &path, &[("accept", RAW)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, block);
    let tag = format!("\"{cid}.raw\"");
    for (name, want) in [
        ("content-type", RAW),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "public, max-age=29030400, immutable"),
        ("etag", tag.as_str()),
        (
            "content-disposition",
            &format!("attachment; filename=\"{cid}.bin\""),
        ),
        ("content-location", &format!("/ipfs/{cid}?format=raw")),
        ("x-ipfs-path", &path),
        ("x-ipfs-roots", &cid),
        ("vary", "Accept"),
        ("access-control-allow-origin", "*"),
    ] {
        assert_eq!(reply.header(name), Some(want), "{name}");
    }

    // `?format=raw` alone, and with `Accept` too: no Content-Location then.
    for headers in [vec![], vec![("accept", RAW)]] {
        let reply = send(&node, Method::GET, &format!("{path}?format=raw"), &headers).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, block);
        assert_eq!(reply.header("content-location"), None);
    }
    // The same CID in upper case, and base16, name the same block.
    let upper = format!("/ipfs/{}?format=raw", cid.to_uppercase());
    assert_eq!(node.get(&upper).await.body, block);
    let base16 = format!(
        "/ipfs/f{}?format=raw",
        hex::encode(RawCid::Block(BlockId::of(&block)).to_bytes())
    );
    assert_eq!(node.get(&base16).await.body, block);

    let head = send(&node, Method::HEAD, &path, &[("accept", RAW)]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("70000"));
    assert_eq!(head.header("content-type"), Some(RAW));
    assert!(head.body.is_empty());

    let cached = send(
        &node,
        Method::GET,
        &path,
        &[("accept", RAW), ("if-none-match", &tag)],
    )
    .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());
    // The raw route's tag is not this route's.
    let other = format!("\"{}\"", BlockId::of(&block));
    let fresh = send(
        &node,
        Method::GET,
        &path,
        &[("accept", RAW), ("if-none-match", &other)],
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK);

    let part = send(
        &node,
        Method::GET,
        &path,
        &[("accept", RAW), ("range", "bytes=10-19")],
    )
    .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, block[10..20]);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/70000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipfs_answers_the_probe_and_refuses_everything_else_clearly() {
    let node = TestNode::start().await;
    let block = b"a block for the refusals".to_vec();
    node.put(&block).await;
    let cid = cid_of(&block);
    let id = BlockId::of(&block);

    // The trustless gateway's probe: the empty identity CID.
    for method in [Method::GET, Method::HEAD] {
        let reply = send(&node, method, "/ipfs/bafkqaaa?format=raw", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("content-type"), Some(RAW));
        assert_eq!(reply.header("content-length"), Some("0"));
    }

    // A CID of another codec, another hash, another digest length: well-formed, never
    // held here.
    let with = |head: &[u8], digest: &[u8]| {
        let bytes = [head, digest].concat();
        format!(
            "b{}",
            data_encoding::BASE32_NOPAD
                .encode(&bytes)
                .to_ascii_lowercase()
        )
    };
    let dag_pb = with(&[1, 0x70, 0x12, 0x20], &id.0);
    let blake3 = with(&[1, 0x55, 0x1e, 0x20], &id.0);
    let short = with(&[1, 0x55, 0x12, 0x14], &id.0[..20]);
    let trailing = with(&[1, 0x55, 0x12, 0x20], &[&id.0[..], b"x"].concat());
    let accept = [("accept", RAW)];
    let cases: Vec<Refusal> = vec![
        // Negotiation.
        (
            Method::GET,
            format!("/ipfs/{cid}"),
            &[],
            StatusCode::BAD_REQUEST,
            "format_required",
        ),
        (
            Method::GET,
            format!("/ipfs/{cid}"),
            &[("accept", "*/*")],
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
        ),
        (
            Method::GET,
            format!("/ipfs/{cid}"),
            &[("accept", "text/html")],
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
        ),
        (
            Method::GET,
            format!("/ipfs/{cid}?format=car"),
            &accept,
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
        ),
        (
            Method::GET,
            format!("/ipfs/{cid}"),
            &[("accept", "application/vnd.ipld.car")],
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
        ),
        (
            Method::GET,
            format!("/ipfs/{cid}?format=zip"),
            &accept,
            StatusCode::BAD_REQUEST,
            "bad_format",
        ),
        (
            Method::GET,
            format!("/ipfs/{cid}?format=raw&wait=-1"),
            &[],
            StatusCode::BAD_REQUEST,
            "bad_wait",
        ),
        // CIDs this node never holds, and texts that are no CID.
        (
            Method::GET,
            "/ipfs/QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB".into(),
            &accept,
            StatusCode::BAD_REQUEST,
            "unsupported_cid",
        ),
        (
            Method::GET,
            format!("/ipfs/{dag_pb}"),
            &accept,
            StatusCode::BAD_REQUEST,
            "unsupported_cid",
        ),
        (
            Method::GET,
            format!("/ipfs/{blake3}"),
            &accept,
            StatusCode::BAD_REQUEST,
            "unsupported_cid",
        ),
        (
            Method::GET,
            format!("/ipfs/{short}"),
            &accept,
            StatusCode::BAD_REQUEST,
            "unsupported_cid",
        ),
        (
            Method::GET,
            format!("/ipfs/{trailing}"),
            &accept,
            StatusCode::BAD_REQUEST,
            "bad_cid",
        ),
        (
            Method::GET,
            format!("/ipfs/z{}", &cid[1..]),
            &accept,
            StatusCode::BAD_REQUEST,
            "bad_cid",
        ),
        (
            Method::GET,
            "/ipfs/".into(),
            &accept,
            StatusCode::BAD_REQUEST,
            "bad_cid",
        ),
        (
            Method::GET,
            format!("/ipfs/b{}", "a".repeat(4000)),
            &accept,
            StatusCode::BAD_REQUEST,
            "bad_cid",
        ),
        (
            Method::GET,
            "/ipfs/..%2F..%2Fnode".into(),
            &accept,
            StatusCode::BAD_REQUEST,
            "bad_cid",
        ),
        (
            Method::GET,
            "/ipfs/%62afkqaaa".into(),
            &accept,
            StatusCode::BAD_REQUEST,
            "bad_cid",
        ),
        // Paths inside a raw block, and other methods.
        (
            Method::GET,
            format!("/ipfs/{cid}/"),
            &accept,
            StatusCode::BAD_REQUEST,
            "ipfs_path",
        ),
        (
            Method::GET,
            format!("/ipfs/{cid}/../../sha256/{id}"),
            &accept,
            StatusCode::BAD_REQUEST,
            "ipfs_path",
        ),
        (
            Method::PUT,
            format!("/ipfs/{cid}"),
            &accept,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            format!("/ipns/{cid}"),
            &accept,
            StatusCode::NOT_FOUND,
            "no_route",
        ),
    ];
    for (method, path, headers, status, code) in cases {
        let reply = send(&node, method.clone(), &path, headers).await;
        assert_eq!(reply.status, status, "{method} {path}");
        assert_eq!(error_code(&reply), code, "{method} {path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        let reason = reply.header("x-reason").unwrap_or("");
        assert!(!reason.is_empty(), "{path}: a reason for people");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_block_is_404_on_both_readers_and_412_when_only_cached() {
    let node = TestNode::start_adjusted(|s: &mut Setup| {
        s.options.default_wait = Duration::from_millis(200);
    })
    .await;
    let absent = b"nobody stored this".to_vec();
    let cid = cid_of(&absent);
    let id = BlockId::of(&absent);
    for (method, path, headers) in [
        (Method::GET, format!("/ipfs/{cid}?format=raw"), vec![]),
        (Method::HEAD, format!("/ipfs/{cid}?format=raw"), vec![]),
        (Method::GET, format!("/{id}"), vec![]),
        (Method::HEAD, format!("/{id}.png"), vec![]),
        (Method::GET, format!("/{id}?wait=0"), vec![]),
    ] {
        let reply = send(&node, method.clone(), &path, &headers).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(reply.header("x-reason").is_some(), "{path}");
        assert_eq!(reply.header("retry-after"), None, "{path}");
        if method == Method::GET {
            assert_eq!(error_code(&reply), "not_found", "{path}");
        }
    }
    // The raw route still says 504: it waited for the mesh.
    let raw = node.get(&format!("{}?wait=0", id.path())).await;
    assert_eq!(raw.status, StatusCode::GATEWAY_TIMEOUT);

    let only_cached = [("cache-control", "only-if-cached")];
    let reply = send(
        &node,
        Method::GET,
        &format!("/ipfs/{cid}?format=raw"),
        &only_cached,
    )
    .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(error_code(&reply), "not_cached");
    node.put(&absent).await;
    let reply = send(
        &node,
        Method::GET,
        &format!("/ipfs/{cid}?format=raw"),
        &only_cached,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, absent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blossom_serves_blobs_read_only_with_cors_and_reasons() {
    let node = TestNode::start().await;
    let block = bytes(5_000, 9);
    node.put(&block).await;
    let id = BlockId::of(&block);
    let upper = id.to_string().to_uppercase();

    for path in [
        format!("/{id}"),
        format!("/{id}.png"),
        format!("/{id}.tar.gz"),
        format!("/{upper}.PDF"),
    ] {
        let reply = node.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body, block, "{path}");
        // Never the extension's type: the node does not know a blob's type, and a
        // guessed `text/html` would run a stored page on the node's own origin.
        assert_eq!(
            reply.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
        assert_eq!(reply.header("etag"), Some(format!("\"{id}\"").as_str()));
    }
    let head = send(&node, Method::HEAD, &format!("/{id}.jpg"), &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("5000"));
    let part = send(
        &node,
        Method::GET,
        &format!("/{id}"),
        &[("range", "bytes=-10")],
    )
    .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, block[4990..]);

    let preflight = send(
        &node,
        Method::OPTIONS,
        &format!("/{id}.png"),
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ],
    )
    .await;
    assert_eq!(preflight.status, StatusCode::OK);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, HEAD, PUT, DELETE")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("Authorization, *")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("86400"));

    // Read-only; bad extensions and lookalike paths are refused with a reason.
    let cases = [
        (
            Method::PUT,
            format!("/{id}"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            format!("/{id}.png"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::GET,
            format!("/{id}."),
            StatusCode::BAD_REQUEST,
            "bad_extension",
        ),
        (
            Method::GET,
            format!("/{id}.p%6eg"),
            StatusCode::BAD_REQUEST,
            "bad_extension",
        ),
        (
            Method::GET,
            format!("/{id}.{}", "x".repeat(17)),
            StatusCode::BAD_REQUEST,
            "bad_extension",
        ),
        (
            Method::GET,
            format!("/{id}/x"),
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            Method::GET,
            format!("/{id}x"),
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            Method::GET,
            format!("/{}", &id.to_string()[1..]),
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            Method::GET,
            format!("/{id}?wait=x"),
            StatusCode::BAD_REQUEST,
            "bad_wait",
        ),
    ];
    for (method, path, status, code) in cases {
        let reply = send(&node, method.clone(), &path, &[]).await;
        assert_eq!(reply.status, status, "{method} {path}");
        assert_eq!(error_code(&reply), code, "{method} {path}");
        let reason = reply.header("x-reason").unwrap_or("");
        assert!(!reason.is_empty(), "{method} {path}");
        assert_eq!(reply.header("access-control-expose-headers"), Some("*"));
    }
    assert!(node.holds(&id).await, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_readers_pull_absent_blocks_through_the_mesh() {
    let a = TestNode::start().await;
    let seed = a.url.clone();
    let b = TestNode::start_adjusted(move |s: &mut Setup| {
        s.config.peers = vec![seed];
        s.config.gossip_interval = Duration::ZERO;
        s.config.push_interval = Duration::ZERO;
    })
    .await;
    let a_id = a.key.id.to_string();
    eventually(10, "b knows a", || async {
        let peers = b.get("/peers").await;
        String::from_utf8_lossy(&peers.body).contains(&a_id)
    })
    .await;

    let for_ipfs = bytes(200_000, 21);
    let for_blossom = bytes(300_000, 22);
    a.put(&for_ipfs).await;
    a.put(&for_blossom).await;
    let reply = b
        .get(&format!("/ipfs/{}?format=raw", cid_of(&for_ipfs)))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, for_ipfs);
    let id = BlockId::of(&for_blossom);
    let reply = b.get(&format!("/{id}.bin")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, for_blossom);
    // Pulled through: b keeps both.
    assert!(b.holds(&BlockId::of(&for_ipfs)).await && b.holds(&id).await);
}

/// The clients' directory, or `None` after saying loudly that the test is skipped.
/// Panics instead when `LIBERNET_REQUIRE_NODE` is set: CI must not skip.
fn clients_or_skip() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/gateway-clients");
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let installed = dir.join("node_modules/@helia/verified-fetch").is_dir()
        && dir.join("node_modules/blossom-client-sdk").is_dir();
    if node && installed {
        return Some(dir);
    }
    let missing = if node {
        "the npm packages (run `npm ci` in tools/gateway-clients)"
    } else {
        "Node.js (`node` on PATH)"
    };
    if std::env::var_os("LIBERNET_REQUIRE_NODE").is_some() {
        panic!("LIBERNET_REQUIRE_NODE is set, and this is not found: {missing}");
    }
    let banner = format!(
        "\n************************************************************\n\
         * SKIPPED: IPFS and Blossom client test: missing           *\n\
         * {missing}\n\
         * Set LIBERNET_REQUIRE_NODE=1 to make this a failure.      *\n\
         ************************************************************\n"
    );
    // Straight to stderr: libtest captures `eprintln!` of a passing test.
    let _ = std::io::stderr().write_all(banner.as_bytes());
    None
}

/// Runs `node check.mjs args...` in `dir`, killed after `limit`; its output.
fn run_check(dir: &Path, args: &[&str], limit: Duration) -> (bool, String) {
    let mut child = Command::new("node")
        .arg("check.mjs")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("node's output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (status.is_some_and(|s| s.success()), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_verified_fetch_and_a_blossom_client_read_the_node() {
    let Some(dir) = clients_or_skip() else {
        return;
    };
    let node = TestNode::start_adjusted(|s: &mut Setup| {
        s.options.default_wait = Duration::from_millis(500);
    })
    .await;
    let block = bytes(150_000, 31);
    node.put(&block).await;
    let id = BlockId::of(&block).to_string();
    let absent = BlockId::of(b"not on this node");
    let (cid, absent_cid) = (cid_of(&block), RawCid::Block(absent).to_string());
    let absent = absent.to_string();
    let url = node.url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let limit = Duration::from_secs(120);
        let (helia_ok, helia) = run_check(&dir, &["helia", &url, &cid, &id, &absent_cid], limit);
        let (blossom_ok, blossom) = run_check(&dir, &["blossom", &url, &id, &absent], limit);
        (helia_ok && blossom_ok, format!("{helia}{blossom}"))
    })
    .await
    .unwrap();
    assert!(ok, "a client failed:\n{out}");
    for line in [
        "ok helia refuses a lying gateway",
        "ok helia fetched ipfs://",
        "ok helia finds no ipfs://",
        "ok blossom downloadBlob",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    // The node served the client's block requests under /ipfs/.
    assert!(node.metric("libernet_http_requests_total{route=\"ipfs\",status=\"200\"}") >= 1);
}

//! Peers as the operator and an attacker see them: a request one node signed for
//! another, replayed to a third with the first one's `Host`, is refused there (and
//! accepted where it was meant to go); a `--peer` seed that cannot be reached is a
//! warning in the log (once, with its URL and the error) and shows as failing in
//! `GET /peers` and `libernet peers`; a normal join logs no warning at all. The log
//! checks run the real binary with its stderr captured.

use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::client::{Client, unix_now};
use libernet::id::BlockId;
use libernet::identity::{Identity, RequestTarget, digest_header, sign_request};
use serde_json::Value;

use crate::browser::read_all;
use crate::cli::{spawn_serve_with, wait_exit};
use crate::support::{Setup, TestNode, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_libernet");

/// A node with these seeds, gossip off (seeds retried every `SEED_RETRY`), no pushes.
async fn node_with_seeds(seeds: &[&str]) -> TestNode {
    let seeds: Vec<String> = seeds.iter().map(|s| (*s).to_owned()).collect();
    TestNode::start_adjusted(move |s: &mut Setup| {
        s.config.peers = seeds;
        s.config.gossip_interval = Duration::ZERO;
        s.config.push_interval = Duration::ZERO;
    })
    .await
}

/// `http://127.0.0.1:<port>` where nothing listens: a port taken from the OS, then
/// let go.
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// The `host:port` of a node's URL.
fn authority(node: &TestNode) -> &str {
    node.url.trim_start_matches("http://")
}

/// A `PUT /peers` announcing `signer` at `url`, signed by it for `authority`, sent to
/// `to` with `Host: authority`.
async fn announce_for(
    to: &TestNode,
    signer: &Identity,
    url: &str,
    authority: &str,
) -> libernet::client::Reply {
    let body =
        serde_json::json!({"id": signer.id().to_string(), "url": url, "peers": []}).to_string();
    let digest = digest_header(&BlockId::of(body.as_bytes()).0);
    let fields = sign_request(
        signer.signing_key(),
        &signer.id().to_string(),
        unix_now(),
        &RequestTarget {
            method: "PUT",
            authority,
            path: "/peers",
            query: None,
            content_digest: Some(&digest),
        },
    );
    let headers = [
        ("host", authority),
        ("signature-input", fields.input.as_str()),
        ("signature", fields.signature.as_str()),
        ("content-digest", digest.as_str()),
        ("content-type", "application/json"),
    ];
    to.send(Method::PUT, "/peers", &headers, Bytes::from(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_signed_for_one_node_is_refused_by_another() {
    let a = node_with_seeds(&[]).await;
    let b = node_with_seeds(&[&a.url]).await;
    let c = node_with_seeds(&[&a.url]).await;
    // b and c have a as a peer: both know a's key.
    eventually(60, "b and c joined a", || async {
        b.node.peers().peers.len() == 1 && c.node.peers().peers.len() == 1
    })
    .await;
    let a_identity = Identity::load_or_create(&a.dir).unwrap();
    assert_eq!(a_identity.id(), a.key.id);

    // Signed by a for b, sent to c keeping b's Host: the signature verifies, but it
    // was not meant for c.
    let refused_before = c.metric("libernet_peer_auth_refused_total");
    let replayed = announce_for(&c, &a_identity, &a.url, authority(&b)).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED);
    let body = String::from_utf8_lossy(&replayed.body);
    assert!(body.contains("bad_signature"), "{body}");
    assert!(body.contains("not this node"), "{body}");
    assert_eq!(
        c.metric("libernet_peer_auth_refused_total"),
        refused_before + 1
    );

    // The same request where it was meant to go is a's announcement.
    let meant = announce_for(&b, &a_identity, &a.url, authority(&b)).await;
    assert_eq!(meant.status, StatusCode::OK);
    // And c takes one signed for itself, under any of its names.
    let port = c.url.rsplit(':').next().unwrap();
    for name in [authority(&c).to_owned(), format!("localhost:{port}")] {
        let own = announce_for(&c, &a_identity, &a.url, &name).await;
        assert_eq!(own.status, StatusCode::OK, "signed for {name}");
    }
}

/// The seed rows of a node's `GET /peers`.
async fn seeds(node: &TestNode) -> Vec<Value> {
    let reply = node.get("/peers").await;
    assert_eq!(reply.status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    v["seeds"].as_array().expect("a seeds list").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_seed_shows_as_failing_in_peers_and_the_cli() {
    let dead = closed_url();
    let node = node_with_seeds(&[&dead]).await;
    eventually(60, "the seed's first attempt failed", || async {
        seeds(&node).await[0]["state"] == "failing"
    })
    .await;
    let row = &seeds(&node).await[0];
    assert_eq!(row["url"], dead.as_str(), "{row}");
    assert!(row["failures"].as_u64().unwrap() >= 1, "{row}");
    assert!(row["last_attempt"].as_u64().is_some(), "{row}");
    let error = row["error"].as_str().unwrap();
    assert!(error.contains("cannot reach it"), "{row}");
    assert!(
        !error.contains("os error"),
        "no OS words in a response: {row}"
    );

    let out = Command::new(BIN)
        .args(["--server", &node.url, "peers"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let line = table
        .lines()
        .find(|l| l.starts_with(&dead))
        .unwrap_or_else(|| panic!("no row for the seed {dead}:\n{table}"));
    assert!(line.contains("failing"), "{table}");
    assert!(line.contains("cannot reach it"), "{table}");
    assert!(table.contains("0 peers"), "{table}");

    // A seed that works is `joined`.
    let other = node_with_seeds(&[&node.url]).await;
    eventually(60, "the good seed joined", || async {
        seeds(&other).await[0]["state"] == "joined"
    })
    .await;
}

/// Stops a `libernet serve` with SIGTERM (its log is flushed on the way out) and
/// returns what it wrote on stderr.
fn stop_and_read_log(mut child: Child, stderr: std::thread::JoinHandle<Vec<u8>>) -> String {
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(60)).code(),
        Some(0)
    );
    String::from_utf8_lossy(&stderr.join().unwrap()).into_owned()
}

/// `libernet serve` with more arguments; its stderr is drained on a thread.
fn serve(
    store: &std::path::Path,
    more: &[&str],
) -> (Child, String, std::thread::JoinHandle<Vec<u8>>) {
    let (mut child, url) = spawn_serve_with(store, more);
    let stderr = read_all(child.stderr.take());
    (child, url, stderr)
}

/// A node's `/peers` through a verifying client.
async fn peers_of(url: &str) -> Value {
    let client = Client::new(url);
    let (key, _) = client.node_key().await.unwrap();
    let reply = client
        .send(Method::GET, "/peers", &[], Vec::new())
        .await
        .unwrap();
    libernet::client::verify_reply(&reply, "GET", "/peers", &key, unix_now()).unwrap();
    serde_json::from_slice(&reply.body).unwrap()
}

#[tokio::test]
async fn an_unreachable_seed_is_one_warning_and_a_normal_join_none() {
    let dead = closed_url();
    let store = tempfile::tempdir().unwrap();
    let (child, url, stderr) = serve(store.path(), &["--peer", &dead, "--gossip-interval", "0"]);
    // Tried at least twice (seeds are retried every 5 s with gossip off).
    eventually(120, "two failed attempts", || async {
        peers_of(&url).await["seeds"][0]["failures"].as_u64() >= Some(2)
    })
    .await;
    let log = stop_and_read_log(child, stderr);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning for the dead seed:\n{log}");
    assert!(warnings[0].contains(&dead), "{log}");
    assert!(warnings[0].contains("seed not reached"), "{log}");
    assert!(warnings[0].contains("error="), "{log}");

    // b joins a: neither logs a warning.
    let (a_store, b_store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, a_url, a_log) = serve(a_store.path(), &[]);
    let (b, b_url, b_log) = serve(b_store.path(), &["--peer", &a_url]);
    eventually(60, "a and b know each other", || async {
        let (at_a, at_b) = (peers_of(&a_url).await, peers_of(&b_url).await);
        at_a["peers"].as_array().is_some_and(|p| p.len() == 1)
            && at_b["seeds"][0]["state"] == "joined"
    })
    .await;
    // Nor counts b's first push of its identity block as a refused signature.
    let metrics = Client::new(&a_url)
        .send(Method::GET, "/metrics", &[], Vec::new())
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics.contains("\nlibernet_peer_auth_refused_total 0\n"),
        "{metrics}"
    );
    let (b_log, a_log) = (stop_and_read_log(b, b_log), stop_and_read_log(a, a_log));
    for (name, log) in [("a", a_log), ("b", b_log)] {
        assert!(
            !log.contains("WARN") && !log.contains("ERROR"),
            "{name} logged a warning in a normal join:\n{log}"
        );
    }
}

//! The client's batch path against a real node: `put` and `backup run` of trees of many
//! small files reach the node as batch uploads (`POST /sha256/batch`) and batch
//! existence checks (`POST /sha256/holds`), not one PUT, HEAD or pin per block (the
//! node's request counts show it), and read back byte for byte; a block the node
//! refuses in a batch fails the put with the node's words.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::backup::{User, num, output, text, under};
use crate::client_cli::walk;
use crate::support::{Setup, TestNode, bytes};

const BIN: &str = env!("CARGO_BIN_EXE_libernet");

/// Small files in the trees: far more than the blocks of a few batches.
const SMALL_FILES: usize = 240;

/// Requests the node answered, by route (`libernet_http_requests_total`, any status).
fn requests(node: &TestNode) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in node.node.render_metrics().lines() {
        let Some(rest) = line.strip_prefix("libernet_http_requests_total{route=\"") else {
            continue;
        };
        let (route, rest) = rest.split_once('"').unwrap();
        let n: u64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry(route.to_owned()).or_default() += n;
    }
    out
}

/// `after` minus `before`, per route, leaving out routes with no new requests.
fn since(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(route, n)| (route.clone(), n - before.get(route).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `SMALL_FILES` files of 100 B to 6 KiB, distinct contents, in a few directories.
fn small_tree(root: &Path, seed: u64) {
    for i in 0..SMALL_FILES {
        let path = root.join(format!("d{}/f{i}.bin", i % 7));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes(100 + (i * 97) % 6000, seed + i as u64)).unwrap();
    }
}

/// Runs `libernet --server URL ARGS` (with the admin token when given).
async fn cli(node: &TestNode, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["--server", &node.url])
        .args(args)
        .env_clear()
        .env("LIBERNET_LOG", "warn")
        .stdin(std::process::Stdio::null());
    if let Some(token) = token {
        cmd.env("LIBERNET_TOKEN", token);
    }
    output(cmd).await
}

/// Requests per block a batched upload may cost at most: a batch of 4 MiB holds
/// hundreds of small blocks, so even a generous bound is far from one per block.
fn assert_batched(counts: &BTreeMap<String, u64>, blocks: usize) {
    let per_block = ["put_block", "pin", "get_block"];
    for route in per_block {
        let n = counts.get(route).copied().unwrap_or(0);
        assert!(
            n <= 2,
            "{n} {route} requests for {blocks} blocks: {counts:?}"
        );
    }
    let total: u64 = counts.values().sum();
    assert!(
        total <= (blocks / 10) as u64,
        "{total} requests for {blocks} blocks: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn put_of_many_small_files_goes_in_batches_and_gets_back_exactly() {
    let node = TestNode::start().await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    small_tree(&src, 1);
    let token = node.admin_token();

    let before = requests(&node);
    let put = cli(&node, Some(&token), &["put", src.to_str().unwrap()]).await;
    assert_eq!(put.status.code(), Some(0), "{}", text(&put.stderr));
    let counts = since(&before, &requests(&node));
    assert_batched(&counts, SMALL_FILES);
    assert!(counts.keys().any(|r| r.contains("batch")), "{counts:?}");
    let url = text(&put.stdout).trim().to_owned();
    // Every block is pinned for the put's holder, as with one PUT per block.
    let pins = node.admin(hyper::Method::GET, "/pins?holder=put").await;
    let pins: serde_json::Value = serde_json::from_slice(&pins.body).unwrap();
    assert!(
        pins["pins"].as_array().unwrap().len() > SMALL_FILES,
        "{pins}"
    );

    // Again: nothing is sent, the existence check answers for every block at once.
    let before = requests(&node);
    let again = cli(&node, Some(&token), &["put", src.to_str().unwrap()]).await;
    assert_eq!(text(&again.stdout).trim(), url);
    assert!(
        text(&again.stderr).contains(" 0 blocks sent"),
        "{}",
        text(&again.stderr)
    );
    assert_batched(&since(&before, &requests(&node)), SMALL_FILES);

    let out = work.path().join("out");
    let got = cli(&node, None, &["get", &url, "-o", out.to_str().unwrap()]).await;
    assert_eq!(got.status.code(), Some(0), "{}", text(&got.stderr));
    assert_eq!(walk(&out), walk(&src));
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_of_many_small_files_goes_in_batches_and_restores_exactly() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("home/data");
    small_tree(&data, 50);
    let laptop = User::new(&temp.path().join("home"), &node, true);
    laptop
        .json(&["add", "--new-set", data.to_str().unwrap()])
        .await;

    let before = requests(&node);
    let run = laptop.json(&["run"]).await;
    let counts = since(&before, &requests(&node));
    assert!(num(&run, "sent") as usize > SMALL_FILES, "{run}");
    assert_batched(&counts, SMALL_FILES);
    assert!(counts.keys().any(|r| r.contains("batch")), "{counts:?}");

    let to = temp.path().join("restored");
    laptop
        .json(&["restore", "--to", to.to_str().unwrap()])
        .await;
    assert_eq!(walk(&under(&to, &data)), walk(&data));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_block_the_node_refuses_in_a_batch_fails_the_put_with_its_words() {
    // Pinned blocks cannot be evicted: a 2 MiB store takes the first pinned blocks and
    // answers 507 (store full) for the rest of the batch.
    let temp = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(temp.path());
    setup.config.quota = 2 * 1024 * 1024;
    let node = TestNode::start_with(setup).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    for i in 0..12 {
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join(format!("f{i}")), bytes(300 * 1024, 900 + i)).unwrap();
    }
    let token = node.admin_token();
    let put = cli(&node, Some(&token), &["put", src.to_str().unwrap()]).await;
    let stderr = text(&put.stderr);
    assert_eq!(put.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("507"), "{stderr}");
    assert!(stderr.contains("/sha256/"), "names the block: {stderr}");
}

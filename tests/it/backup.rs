//! `libernet backup` end to end: the real CLI binary against real nodes. A tree is backed
//! up, changed and backed up again, then both points in time are restored on a "new
//! machine" (an empty home, another node of a 3-node mesh) and compared by a full walk;
//! a wrong passphrase finds nothing; a run killed mid-upload resumes without sending
//! again what arrived; missing blocks make a restore write nothing and `verify` name
//! them; pins follow what the latest run references.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use libernet::codec;
use libernet::id::BlockId;

use crate::client_cli::{make_tree, walk};
use crate::support::{Setup, TestNode, bytes, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_libernet");

/// A user of the backup tool on one "machine": a home directory, a node, credentials.
#[derive(Clone)]
pub(crate) struct User {
    pub home: PathBuf,
    pub server: String,
    pub passphrase: String,
    pub token: Option<String>,
}

impl User {
    pub fn new(home: &Path, node: &TestNode, token: bool) -> User {
        fs::create_dir_all(home).unwrap();
        User {
            home: home.to_owned(),
            server: node.url.clone(),
            passphrase: "correct horse battery staple".into(),
            token: token.then(|| node.admin_token()),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["backup"])
            .args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("LIBERNET_SERVER", &self.server)
            .env("LIBERNET_USER", "alice")
            .env("LIBERNET_PASSPHRASE", &self.passphrase)
            .env("LIBERNET_MACHINE", "laptop")
            .env("LIBERNET_LOG", "warn")
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(token) = &self.token {
            cmd.env("LIBERNET_TOKEN", token);
        }
        cmd
    }

    /// Runs `libernet backup ARGS` off the runtime's workers (the nodes share them).
    pub async fn run(&self, args: &[&str]) -> Output {
        output(self.command(args)).await
    }

    /// Runs and expects success; returns the `--json` object printed.
    pub async fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all).await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&out.stdout)))
    }
}

/// Runs `cmd` off the runtime's workers (the nodes share them).
pub(crate) async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run the client"))
        .await
        .unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn num_str(v: &serde_json::Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
        .to_owned()
}

pub(crate) fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

/// Where a restore `--to DEST` puts directory `dir`: at its full path under DEST.
pub(crate) fn under(dest: &Path, dir: &Path) -> PathBuf {
    dest.join(dir.strip_prefix("/").unwrap())
}

/// The id of the one block holding `content` (as the codec makes it: convergent).
pub(crate) fn block_of(content: &[u8]) -> BlockId {
    codec::encode(content).unwrap().locator.id
}

pub(crate) async fn mesh_of_three() -> (TestNode, TestNode, TestNode) {
    let quiet = |seeds: Vec<String>| {
        move |s: &mut Setup| {
            s.config.peers = seeds;
            s.config.gossip_interval = Duration::ZERO;
            s.config.push_interval = Duration::ZERO;
        }
    };
    let a = TestNode::start_adjusted(quiet(Vec::new())).await;
    let b = TestNode::start_adjusted(quiet(vec![a.url.clone()])).await;
    let c = TestNode::start_adjusted(quiet(vec![a.url.clone(), b.url.clone()])).await;
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread")]
async fn back_up_change_and_restore_both_points_on_a_new_machine() {
    let (a, _b, c) = mesh_of_three().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("home1/data");
    make_tree(&data);
    let laptop = User::new(&temp.path().join("home1"), &a, true);

    let added = laptop
        .json(&["add", "--new-set", data.to_str().unwrap()])
        .await;
    assert_eq!(added["created"], true);
    let first = laptop.json(&["run"]).await;
    assert!(num(&first, "sent") > 0, "{first}");
    assert_eq!(num(&first, "reused"), 0);
    let before = walk(&data);

    // A second later (runs are told apart by their start second): change one file, add
    // one, delete one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fs::write(data.join("a/b/c/deep.txt"), b"deeper text now\n").unwrap();
    fs::write(data.join("new.txt"), b"a new file").unwrap();
    fs::remove_file(data.join("one.txt")).unwrap();
    let second = laptop.json(&["run"]).await;
    let after = walk(&data);
    assert_ne!(before, after);
    assert_eq!(
        num(&second, "reused"),
        4,
        "unchanged files are not read: {second}"
    );
    assert_eq!(num(&second, "read_files"), 2, "{second}");

    // Pins on the node keep every run (both are kept until `forget`): what only the
    // first referenced (the old deep.txt) stays pinned; only the superseded index
    // record is released.
    let holder = libernet::backup::holder_name("alice", "laptop");
    let pins = a
        .admin(Method::GET, &format!("/pins?holder={holder}"))
        .await;
    let pins: serde_json::Value = serde_json::from_slice(&pins.body).unwrap();
    let pinned: Vec<&str> = pins["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(pinned.len() as u64, num(&second["pins"], "pinned"));
    assert_eq!(num(&second["pins"], "released"), 1, "{second}");
    assert!(!pinned.contains(&num_str(&first, "record").as_str()));
    assert!(pinned.contains(&num_str(&second, "record").as_str()));
    let old_deep = block_of(b"deep text\n").to_string();
    let new_deep = block_of(b"deeper text now\n").to_string();
    assert!(pinned.contains(&old_deep.as_str()));
    assert!(pinned.contains(&new_deep.as_str()));

    // The new machine: an empty home, node C, no token, nothing but the credentials.
    let fresh = User::new(&temp.path().join("home2"), &c, false);
    let listed = fresh.json(&["list"]).await;
    assert_eq!(listed["machines"][0]["name"], "laptop");
    assert_eq!(listed["machines"][0]["dirs"][0], data.to_str().unwrap());
    let history = fresh.json(&["history"]).await;
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");

    let latest = temp.path().join("restored-latest");
    fresh
        .json(&["restore", "--to", latest.to_str().unwrap()])
        .await;
    assert_eq!(walk(&under(&latest, &data)), after);

    let at = format!("@{}", num(&first, "started"));
    let earlier = temp.path().join("restored-earlier");
    fresh
        .json(&["restore", "--to", earlier.to_str().unwrap(), "--at", &at])
        .await;
    assert_eq!(walk(&under(&earlier, &data)), before);

    // One directory inside the backup, restored alone.
    let part = temp.path().join("restored-part");
    let inner = data.join("a/b");
    fresh
        .json(&[
            "restore",
            inner.to_str().unwrap(),
            "--to",
            part.to_str().unwrap(),
        ])
        .await;
    assert_eq!(
        fs::read(under(&part, &inner).join("c/deep.txt")).unwrap(),
        b"deeper text now\n"
    );
    assert!(!under(&part, &data).join("new.txt").exists());

    // Into a destination that holds the same files, the restore is refused without
    // --overwrite, and the destination is left alone.
    fs::write(under(&latest, &data).join("new.txt"), b"edited since").unwrap();
    let out = fresh
        .run(&["restore", "--to", latest.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--overwrite"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        fs::read(under(&latest, &data).join("new.txt")).unwrap(),
        b"edited since"
    );
}

/// Custody (issue 14): a backup pushed to one node of five is copied by repair rounds
/// to each of its blocks' homes and kept there; with that node gone for good, the
/// backup is found and restored whole through another node, on a new machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_outlives_the_node_it_was_pushed_to() {
    let mut nodes = crate::custody::custody_mesh(5).await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("home1/data");
    make_tree(&data);
    let laptop = User::new(&temp.path().join("home1"), &nodes[0], true);
    laptop
        .json(&["add", "--new-set", data.to_str().unwrap()])
        .await;
    laptop.json(&["run"]).await;
    let before = walk(&data);
    let holder = libernet::backup::holder_name("alice", "laptop");
    let pins = nodes[0]
        .admin(Method::GET, &format!("/pins?holder={holder}"))
        .await;
    let pins: serde_json::Value = serde_json::from_slice(&pins.body).unwrap();
    let pinned: Vec<BlockId> = pins["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().parse().unwrap())
        .collect();
    assert!(pinned.len() > 5, "{pins}");
    // Every pinned block reaches its homes among the other four (two or three of
    // them, as the backup's node is a home or not).
    for id in &pinned {
        let homes = crate::custody::nearest(&nodes, id, 3);
        for &h in homes.iter().filter(|h| **h != 0) {
            let home = &nodes[h];
            eventually(60, "each home keeps the backup's blocks", || async {
                home.holds(id).await && home.node.custody_until(id).is_some()
            })
            .await;
        }
    }
    // The backup's node is lost.
    nodes.remove(0).stop().await;
    let fresh = User::new(&temp.path().join("home2"), &nodes[0], false);
    let restored = temp.path().join("restored");
    fresh
        .json(&["restore", "--to", restored.to_str().unwrap()])
        .await;
    assert_eq!(walk(&under(&restored, &data)), before);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_passphrase_finds_nothing_and_says_so() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    let right = User::new(&temp.path().join("home"), &node, true);
    right
        .json(&["add", "--new-set", data.to_str().unwrap()])
        .await;
    right.json(&["run"]).await;

    let wrong = User {
        passphrase: "not the passphrase".into(),
        ..right.clone()
    };
    for args in [&["list"][..], &["history"], &["run"], &["verify"]] {
        let out = wrong.run(args).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains("no backup found"), "{args:?}: {err}");
    }
    let dest = temp.path().join("dest");
    let out = wrong
        .run(&["restore", "--to", dest.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(!dest.exists());

    // Without LIBERNET_TOKEN, the default store's token is used for a node on this
    // machine when it is this node's; another node's token means no pins, not a failure.
    let implicit = User {
        token: None,
        ..right.clone()
    };
    let token_file = right.home.join(".libernet/admin.token");
    fs::create_dir_all(token_file.parent().unwrap()).unwrap();
    fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let run = implicit.json(&["run"]).await;
    assert!(run["pins"].is_null(), "{run}");
    fs::write(&token_file, node.admin_token()).unwrap();
    let run = implicit.json(&["run"]).await;
    assert!(num(&run["pins"], "pinned") > 0, "{run}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_resumes_without_sending_again_what_arrived() {
    const FILES: u64 = 48;
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    for i in 0..FILES {
        // Random bytes filling one block each: none compressible.
        let size = codec::MAX_CONTENT;
        fs::write(data.join(format!("f{i:02}.bin")), bytes(size, 1000 + i)).unwrap();
    }
    let user = User::new(&temp.path().join("home"), &node, true);
    user.json(&["add", "--new-set", data.to_str().unwrap()])
        .await;
    let baseline = node.node.store_stats().blocks;

    let mut child = user.command(&["run", "--quiet"]).spawn().unwrap();
    let started = Instant::now();
    while node.node.store_stats().blocks < baseline + 8 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("the run ended before it was killed: {}", text(&out.stderr));
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Uploads the node had received in full still finish after the client is gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let arrived = node.node.store_stats().blocks - baseline;
    assert!(
        arrived < FILES,
        "killed too late: {arrived} blocks were all there"
    );

    let resumed = user.json(&["run"]).await;
    // Every file block that arrived is found, not sent; the rest and the manifest are.
    assert_eq!(num(&resumed, "skipped"), arrived, "{resumed}");
    assert_eq!(num(&resumed, "sent"), FILES - arrived + 1, "{resumed}");
    let dest = temp.path().join("dest");
    user.json(&["restore", "--to", dest.to_str().unwrap()])
        .await;
    assert_eq!(walk(&under(&dest, &data)), walk(&data));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_blocks_stop_a_restore_and_verify_names_them() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    fs::create_dir_all(data.join("docs")).unwrap();
    fs::write(data.join("docs/lost.txt"), b"this block will be deleted").unwrap();
    fs::write(data.join("kept.txt"), b"this one stays").unwrap();
    fs::write(data.join("big.bin"), bytes(3 << 20, 7)).unwrap();
    let user = User::new(&temp.path().join("home"), &node, true);
    user.json(&["add", "--new-set", data.to_str().unwrap()])
        .await;
    user.json(&["run"]).await;
    let whole = user.json(&["verify"]).await;
    assert_eq!(whole["missing"].as_array().unwrap().len(), 0, "{whole}");
    assert!(num(&whole, "blocks") >= 5, "{whole}");

    let lost = block_of(b"this block will be deleted");
    let reply = node.admin(Method::DELETE, &format!("/sha256/{lost}")).await;
    assert_eq!(reply.status, StatusCode::OK);

    let out = user.run(&["verify"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("1 block missing"), "{err}");
    assert!(err.contains("docs/lost.txt"), "{err}");
    let report = user.run(&["verify", "--json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["missing"][0], lost.to_string());

    let dest = temp.path().join("dest");
    let out = user.run(&["restore", "--to", dest.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("1 block missing"), "{err}");
    assert!(err.contains("docs/lost.txt"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!dest.exists(), "a failed restore leaves no destination");
    let leftovers: Vec<_> = fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_histories_move_to_archives_and_read_back_whole() {
    use libernet::backup::index::{self, MAX_INLINE_RUNS, Machine, Record, Run};
    use libernet::client::Remote;
    use libernet::transfer::Uploader;

    let node = TestNode::start().await;
    let remote = Remote::connect(&node.url).await.unwrap();
    let uploader = Uploader::new(&remote);
    let run = |n: u64| Run {
        started: 1_000 + n,
        finished: 1_001 + n,
        url: format!("/sha256/{}/aes256/{}/", "a".repeat(64), "b".repeat(64)),
        node: "c".repeat(64),
        dirs: vec!["/x".into()],
        files: n,
        bytes: n,
        reused: 0,
        sent: 0,
        skipped: 0,
    };
    let keys = std::sync::Arc::new(libernet::backup::key::Keys::new("p"));
    let kdf = libernet::backup::key::Kdf::fresh().unwrap();
    let mut previous = None;
    // Three writes of a growing history: the second and third spill into archives, and
    // the third's archive links to the second's.
    for total in [
        10,
        MAX_INLINE_RUNS as u64 + 5,
        2 * MAX_INLINE_RUNS as u64 + 20,
    ] {
        let mut record = previous
            .as_ref()
            .map(|f: &index::Found| f.record.clone())
            .unwrap_or_else(|| Record {
                user: "bob".into(),
                writer: "m".into(),
                ..Record::default()
            });
        let machine = record
            .machines
            .entry("m".into())
            .or_insert_with(Machine::default);
        let have = machine.runs.last().map_or(0, |r| r.files + 1);
        machine.runs.extend((have..total).map(run));
        index::write(&uploader, record, previous.as_ref(), &keys, &kdf)
            .await
            .unwrap();
        let found = index::find(&remote, "bob", &keys).await.unwrap().unwrap();
        let machine = &found.record.machines["m"];
        assert!(
            machine.runs.len() <= MAX_INLINE_RUNS,
            "{}",
            machine.runs.len()
        );
        let all = index::all_runs(&remote, machine).await.unwrap();
        let files: Vec<u64> = all.iter().map(|r| r.files).collect();
        assert_eq!(files, (0..total).collect::<Vec<_>>());
        previous = Some(found);
    }
    let found = previous.unwrap();
    assert_eq!(
        found.records, 3,
        "all three records are found in this month"
    );
    assert_eq!(
        found.heads.len(),
        1,
        "each record superseded the one before"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_region_holding_more_than_one_like_answer_is_read_whole() {
    use libernet::backup::index::{LIKE_LIMIT, candidates};
    use libernet::client::Remote;

    // 12-bit placement keeps the mining cheap; the search works the same at 20.
    const BITS: u32 = 12;
    let node = TestNode::start().await;
    let target = BlockId::of(b"USER:many@2026-11");
    let mut placed = Vec::new();
    for n in 0..(LIKE_LIMIT as u64 * 5 / 2) {
        let encoded = codec::encode(&bytes(64, n)).unwrap();
        let near = codec::place_near(encoded, &target, BITS).unwrap();
        assert_eq!(node.put(&near.block).await.status, StatusCode::CREATED);
        placed.push(near.locator.id);
    }
    let remote = Remote::connect(&node.url).await.unwrap();
    assert_eq!(remote.like(&target).await.unwrap().len(), LIKE_LIMIT);
    let mut found = candidates(&remote, &target, BITS).await.unwrap();
    found.sort();
    placed.sort();
    assert_eq!(
        found, placed,
        "every placed block is found, not only one answer's worth"
    );
}

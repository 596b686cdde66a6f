//! The store under a real node: durability across restarts, the lock, quarantine (of
//! rotten bytes and of odd files in a block's place), quota, a full file system.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::client::Reply;
use libernet::id::BlockId;
use libernet::node::NodeError;
use libernet::store::{HOT_MAX_BLOCK, QUARANTINE_DIR, StoreError};

use crate::support::{Setup, TestNode, bytes};

/// Longest a request may take before a test calls the node hung (a hang guard, not a
/// timing assertion: an answer takes milliseconds).
const HANG_GUARD: Duration = Duration::from_secs(30);

pub(crate) fn block_file(dir: &std::path::Path, id: &BlockId) -> std::path::PathBuf {
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
    // Once the first is gone, the store opens again. Its background tasks (the pin
    // flusher, a gossip round) hold the store while they finish the step they are in,
    // which on a loaded machine can outlast the server's drain: retry for a while.
    let mut tries = 0;
    let again = loop {
        match TestNode::start_with(Setup::new(temp.path())).await {
            Err(NodeError::Store(StoreError::Locked { .. })) if tries < 200 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => break other.expect("the store opens once its node is gone"),
        }
    };
    again.stop().await;
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

/// Flips one byte of a file in place (same length), then sets its mtime back: rot that
/// nothing but the bytes themselves shows.
pub(crate) fn rot_keeping_mtime(path: &Path, at: u64) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut byte).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[byte[0] ^ 0x20]).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

/// GET `path` without the verifying helper (which would panic on a body that does
/// not match its digest), under the hang guard.
async fn raw_get(node: &TestNode, path: &str) -> Reply {
    tokio::time::timeout(
        HANG_GUARD,
        node.client.send(Method::GET, path, &[], Bytes::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("GET {path}: no answer within {HANG_GUARD:?}"))
    .expect("transport")
}

/// Names in the store's quarantine directory.
pub(crate) fn quarantined(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join(QUARANTINE_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn blocks_that_rot_keeping_their_mtime_are_never_served() {
    let temp = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    // Too large for the hot cache: every GET reads the file.
    let large = bytes(HOT_MAX_BLOCK + 4096, 1);
    // Small, and first read after it rots: not in the hot cache either.
    let small = bytes(4096, 2);
    for x in [&large, &small] {
        assert_eq!(node.put(x).await.status, StatusCode::CREATED);
    }
    let (idl, ids) = (BlockId::of(&large), BlockId::of(&small));
    // The large block is read (and so checked) before its bytes rot.
    assert_eq!(&node.get(&idl.path()).await.body[..], &large[..]);
    rot_keeping_mtime(&block_file(temp.path(), &idl), HOT_MAX_BLOCK as u64 + 10);
    rot_keeping_mtime(&block_file(temp.path(), &ids), 100);

    for id in [&idl, &ids] {
        let reply = raw_get(&node, &format!("{}?wait=0", id.path())).await;
        assert_ne!(reply.status, StatusCode::OK, "{id}: rotten bytes served");
        // Quarantined: a single node has no other copy, so the block is absent.
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{id}");
        assert!(!block_file(temp.path(), id).exists(), "{id}");
    }
    let names = quarantined(temp.path());
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(node.metric("libernet_quarantined_total"), 2);
    // A good copy can be put again, and is served.
    assert_eq!(node.put(&large).await.status, StatusCode::CREATED);
    assert_eq!(&node.get(&idl.path()).await.body[..], &large[..]);
    node.stop().await;
}

/// Opens the write end of a FIFO without waiting, so that a reader stuck opening it
/// (the bug this guards against) is released and the test can end.
fn release_fifo_reader(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::File::options()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_files_in_place_of_blocks_answer_at_once_and_count_as_absent() {
    let temp = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
    // A directory's size on this file system, so the block it replaces has the same
    // size and only its kind tells them apart.
    let probe = temp.path().join("probe");
    std::fs::create_dir(&probe).unwrap();
    let dir_size = std::fs::metadata(&probe).unwrap().len() as usize;
    let (fifo, folder, link, other) = (
        bytes(1000, 1),
        bytes(dir_size, 2),
        bytes(1000, 3),
        bytes(1000, 4),
    );
    for x in [&fifo, &folder, &link, &other] {
        assert_eq!(node.put(x).await.status, StatusCode::CREATED);
    }
    let ids: Vec<BlockId> = [&fifo, &folder, &link].map(|x| BlockId::of(x)).to_vec();
    let files: Vec<PathBuf> = ids.iter().map(|id| block_file(temp.path(), id)).collect();
    for f in &files {
        std::fs::remove_file(f).unwrap();
    }
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &files[0],
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(&files[1]).unwrap();
    // A symlink to the right bytes: still never followed out of the store.
    let outside = temp.path().join("outside");
    std::fs::write(&outside, &link).unwrap();
    std::os::unix::fs::symlink(&outside, &files[2]).unwrap();

    for (id, file) in ids.iter().zip(&files) {
        let path = format!("{}?wait=0", id.path());
        let answer = tokio::time::timeout(
            HANG_GUARD,
            node.client.send(Method::GET, &path, &[], Bytes::new()),
        )
        .await;
        let Ok(reply) = answer else {
            release_fifo_reader(file);
            panic!("GET {path}: the node hung on an odd file");
        };
        let reply = reply.expect("transport");
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{id}");
        // Other requests keep working.
        let reply = node.get(&BlockId::of(&other).path()).await;
        assert_eq!(&reply.body[..], &other[..]);
        // The id is absent from now on, and its file moved aside.
        assert!(!node.holds(id).await, "{id}");
        assert!(std::fs::symlink_metadata(file).is_err(), "{id}");
    }
    assert_eq!(quarantined(temp.path()).len(), 3);
    assert_eq!(
        std::fs::read(&outside).unwrap(),
        link,
        "the target untouched"
    );
    let info: serde_json::Value = serde_json::from_slice(&node.get("/node").await.body).unwrap();
    assert_eq!(info["store"]["blocks"], 2, "the identity block and `other`");
    node.stop().await;
}

/// A tmpfs of a few MiB mounted on a temp directory for one test (it needs root, as
/// CI has), unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// None, with a note on stderr, when the mount is not allowed here.
    fn mount(bytes: u64) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(SmallFs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        // Straight to the process's stderr: the test harness captures `eprintln!`.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED a_full_file_system_answers_507...: cannot mount a small tmpfs (root needed): {why}"
        );
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a node left running by a failed test must not keep the mount.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes `path` until the file system refuses (at most `limit` bytes).
fn fill(path: &Path, limit: usize) {
    let mut f = std::fs::File::create(path).unwrap();
    let page = [0x55u8; 4096];
    for _ in 0..limit / page.len() {
        if let Err(e) = f.write_all(&page) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
            return;
        }
    }
    panic!("{} never filled up", path.display());
}

#[tokio::test]
async fn a_full_file_system_answers_507_and_the_node_carries_on() {
    const FS_BYTES: usize = 4 << 20;
    let Some(fs) = SmallFs::mount(FS_BYTES as u64) else {
        return;
    };
    let node = TestNode::start_with(Setup::new(&fs.path().join("store")))
        .await
        .unwrap();
    // The quota (GiBs) is far above what the file system can hold.
    let mut held = Vec::new();
    let mut refused = None;
    for seed in 0..(FS_BYTES / (256 << 10) + 2) as u64 {
        let block = bytes(256 << 10, seed);
        let reply = node.put(&block).await;
        if reply.status == StatusCode::CREATED {
            held.push(block);
        } else {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.expect("a 4 MiB file system fills up");
    assert_eq!(reply.status, StatusCode::INSUFFICIENT_STORAGE);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "store_full");
    assert!(!held.is_empty());

    // Fill the last pages, so that even the pins file cannot be rewritten.
    let filler = fs.path().join("filler");
    fill(&filler, FS_BYTES);
    let tiny = bytes(10, 999);
    let reply = node.put(&tiny).await;
    assert_eq!(reply.status, StatusCode::INSUFFICIENT_STORAGE);
    let first = BlockId::of(&held[0]);
    let reply = node.admin(Method::PUT, &format!("/pins/{first}")).await;
    assert_eq!(reply.status, StatusCode::INSUFFICIENT_STORAGE);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"], "store_full");
    // Refused writes leave no temp file behind.
    assert_eq!(crate::support::temp_files(&fs.path().join("store")), 0);
    // A refused pin is not half made.
    let pins: serde_json::Value =
        serde_json::from_slice(&node.admin(Method::GET, "/pins").await.body).unwrap();
    assert_eq!(pins["pins"], serde_json::json!([]), "{pins}");

    // `/node` tells the file system's free space, not the quota's.
    let info: serde_json::Value = serde_json::from_slice(&node.get("/node").await.body).unwrap();
    let store = &info["store"];
    let (free, quota, bytes_held) = (
        store["free"].as_u64().unwrap(),
        store["quota"].as_u64().unwrap(),
        store["bytes"].as_u64().unwrap(),
    );
    assert!(free < 64 << 10, "free {free} on a full file system");
    assert!(free < quota - bytes_held, "{store}");

    // Every acknowledged block is still served.
    for block in &held {
        let reply = node.get(&BlockId::of(block).path()).await;
        assert_eq!(&reply.body[..], &block[..]);
    }
    // With room again, the same node stores and pins.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(node.put(&tiny).await.status, StatusCode::CREATED);
    let reply = node.admin(Method::PUT, &format!("/pins/{first}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let info: serde_json::Value = serde_json::from_slice(&node.get("/node").await.body).unwrap();
    assert!(info["store"]["free"].as_u64().unwrap() > free);
    node.stop().await;
}

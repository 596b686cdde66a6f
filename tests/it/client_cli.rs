//! The real client binary against a real `libernet serve`: a tree with symlinks, modes,
//! mtimes and empty directories goes up with `put` and comes back byte- and
//! metadata-identical with `get -o` and `bundle restore` (compared by a full walk of both
//! trees); single files, standard input, `like`, `node`, and the exit codes 0/1/2.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::spawn_serve;
use crate::support::bytes;

const BIN: &str = env!("CARGO_BIN_EXE_libernet");

/// A `libernet serve` child, killed when the test ends however it ends.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(store: &Path) -> Served {
        let (child, url) = spawn_serve(store);
        Served { child, url }
    }

    /// Runs the client with `--server` this node and `args`.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, None)
    }

    fn run_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = Command::new(BIN)
            .args(["--server", &self.url])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            if let Some(input) = input {
                stdin.write_all(input).expect("write stdin");
            }
        }
        child.wait_with_output().expect("client output")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout_line(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text.trim().to_owned()
}

fn at(secs: u64, micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// Files of interesting sizes, nesting, an empty dir (also nested), links to a file, a
/// directory and nowhere, a read-only and an executable file, fixed mtimes.
pub(crate) fn make_tree(root: &Path) {
    let file = |rel: &str, content: &[u8], mtime: SystemTime| {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    };
    file("empty.txt", b"", at(1_600_000_000, 1));
    file("one.txt", b"1", at(1_600_000_001, 250_000));
    file(
        "big/multi block.bin",
        &bytes(2 * 1024 * 1024 + 77, 3),
        at(1_700_000_000, 999_999),
    );
    file("a/b/c/deep.txt", b"deep text\n", at(1_650_000_000, 0));
    file(
        "tools/run.sh",
        b"#!/bin/sh\necho hi\n",
        at(1_650_000_100, 5),
    );
    fs::set_permissions(root.join("tools/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    file("frozen.txt", b"read only", at(1_650_000_200, 7));
    fs::set_permissions(root.join("frozen.txt"), fs::Permissions::from_mode(0o444)).unwrap();
    fs::create_dir_all(root.join("void")).unwrap();
    fs::create_dir_all(root.join("a/hollow/inner")).unwrap();
    std::os::unix::fs::symlink("../one.txt", root.join("a/to-one")).unwrap();
    std::os::unix::fs::symlink("a/b", root.join("to-b")).unwrap();
    std::os::unix::fs::symlink("missing/target", root.join("dangling")).unwrap();
}

/// Everything a restore must reproduce, by relative path: kind, contents, link target,
/// read-only and executable bits, mtime to the microsecond (files and links).
pub(crate) fn walk(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        let micros = meta
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros();
        let mode = meta.permissions().mode();
        let what = if meta.file_type().is_symlink() {
            let target = fs::read_link(entry.path()).unwrap();
            if fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
                // The format records no time for links to directories.
                format!("dir link {target:?}")
            } else {
                format!("link {target:?} @{micros}")
            }
        } else if meta.is_dir() {
            "dir".to_owned()
        } else {
            let digest = libernet::id::BlockId::of(&fs::read(entry.path()).unwrap());
            format!(
                "file {digest} ro={} x={} @{micros}",
                mode & 0o200 == 0,
                mode & 0o100 != 0
            )
        };
        out.insert(rel, what);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn put_and_get_a_tree_restores_it_exactly() {
    let store = tempfile::tempdir().unwrap();
    let node = Served::start(store.path());
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let want = walk(&src);
    assert!(want.len() >= 15, "{want:#?}");

    let url = stdout_line(&node.run(&["put", src.to_str().unwrap()]));
    assert!(url.starts_with(&node.url) && url.ends_with('/'), "{url}");

    // Converges: the same tree gives the same URL, and nothing new is sent.
    let again = node.run(&["put", src.to_str().unwrap()]);
    assert_eq!(stdout_line(&again), url);
    let summary = String::from_utf8_lossy(&again.stderr);
    assert!(summary.contains(" 0 blocks sent"), "{summary}");

    let out = work.path().join("out");
    stdout_line_or_empty(&node.run(&["get", &url, "-o", out.to_str().unwrap()]));
    assert_eq!(walk(&out), want, "get -o");
    let out2 = work.path().join("out2");
    stdout_line_or_empty(&node.run(&["bundle", "restore", &url, out2.to_str().unwrap()]));
    assert_eq!(walk(&out2), want, "bundle restore");

    // Into the current directory when it is empty (`-o .`).
    let here = work.path().join("here");
    fs::create_dir(&here).unwrap();
    let out = Command::new(BIN)
        .args(["--server", &node.url, "get", &url, "-o", "."])
        .current_dir(&here)
        .output()
        .unwrap();
    stdout_line_or_empty(&out);
    assert_eq!(walk(&here), want, "get -o .");

    // A subdirectory of the bundle restores on its own.
    let sub = work.path().join("sub");
    stdout_line_or_empty(&node.run(&["get", &format!("{url}a/b/"), "-o", sub.to_str().unwrap()]));
    assert_eq!(fs::read(sub.join("c/deep.txt")).unwrap(), b"deep text\n");

    // One file of it, to a path and to standard output.
    let big = work.path().join("big.bin");
    let file_url = format!("{url}big/multi%20block.bin");
    stdout_line_or_empty(&node.run(&["get", &file_url, "-o", big.to_str().unwrap()]));
    assert_eq!(fs::read(&big).unwrap(), bytes(2 * 1024 * 1024 + 77, 3));
    let out = node.run(&["get", &format!("{url}a/b/c/deep.txt")]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"deep text\n");

    // `bundle ls` lists every entry.
    let ls = node.run(&["bundle", "ls", &url]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    for name in [
        "big/multi block.bin",
        "void/",
        "a/hollow/inner/",
        "to-b/ -> a/b",
        "dangling -> missing/target",
    ] {
        assert!(ls.contains(name), "{name} in\n{ls}");
    }

    // Restoring over a non-empty directory is refused and writes nothing.
    let before = walk(&out2);
    let refused = node.run(&["get", &url, "-o", out2.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an empty directory"));
    assert_eq!(walk(&out2), before);
    let leftovers: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn stdout_line_or_empty(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_stdin_like_node_and_exit_codes() {
    let store = tempfile::tempdir().unwrap();
    let node = Served::start(store.path());
    let work = tempfile::tempdir().unwrap();

    // A single file: the URL names it, and the node serves it with its type.
    let page = work.path().join("hello page.html");
    fs::write(&page, "<h1>hi</h1>").unwrap();
    let url = stdout_line(&node.run(&["put", page.to_str().unwrap()]));
    assert!(url.ends_with("/hello%20page.html"), "{url}");
    let got = node.run(&["get", &url]);
    assert_eq!(got.stdout, b"<h1>hi</h1>");

    // Standard input, several blocks.
    let data = bytes(1024 * 1024 + 5, 9);
    let url = stdout_line(&node.run_with_input(&["put", "-", "--name", "data.bin"], Some(&data)));
    assert!(url.ends_with("/data.bin"), "{url}");
    let got = node.run(&["get", &url]);
    assert_eq!(got.status.code(), Some(0));
    assert!(got.stdout == data, "stdin round trip");

    // `node` prints the signed identity; `like` finds the node's own identity block.
    let info: serde_json::Value =
        serde_json::from_slice(&node.run(&["node"]).stdout).expect("node JSON");
    let id = info["id"].as_str().unwrap().to_owned();
    let like = node.run(&["like", &id]);
    assert_eq!(like.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&like.stdout).starts_with(&format!("/sha256/{id} ")));

    // Exit 1: nothing near, a missing block, a wrong key.
    let far: String = id
        .chars()
        .map(|c| if c == '0' { 'f' } else { '0' })
        .collect();
    assert_eq!(node.run(&["like", &far]).status.code(), Some(1));
    let missing = libernet::codec::encode(b"never put").unwrap().locator;
    let out = node.run(&["get", &format!("{missing}")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, path) = libernet::transfer::split_url(&url, "x").unwrap();
    let (locator, _) = libernet::codec::Locator::split(&path).unwrap();
    let wrong = format!("/sha256/{}/aes256/{}", locator.id, missing.key);
    let out = node.run(&["get", &wrong]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("libernet: ") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );

    // Exit 2: not a URL, a bundle without -o, an unreachable server.
    assert_eq!(node.run(&["get", "ftp://x/y"]).status.code(), Some(2));
    let dir_url = url.trim_end_matches("data.bin");
    assert_eq!(node.run(&["get", dir_url]).status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["--server", "http://127.0.0.1:9", "node"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

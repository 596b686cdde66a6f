//! `libernet backup` beyond back up and restore, end to end with the real CLI against
//! real nodes: Argon2id index records (and first-format records still read), no silent
//! second set, `--password-file` and `passwd`, exclusions, `ls`, `find`, `diff`,
//! restores into existing directories, and `forget` with every kept run restorable.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use libernet::backup::index::{self, INDEX_BITS, Machine, Record};
use libernet::backup::key::{self, Kdf, Keys};
use libernet::client::{Remote, unix_now};
use libernet::codec;
use libernet::id::BlockId;

use crate::backup::{User, block_of, num, num_str, output, text, under};
use crate::client_cli::{make_tree, walk};
use crate::support::TestNode;

/// Ids the node pins for alice's laptop.
async fn pins(node: &TestNode) -> BTreeSet<String> {
    let holder = libernet::backup::holder_name("alice", "laptop");
    let reply = node
        .admin(Method::GET, &format!("/pins?holder={holder}"))
        .await;
    let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    value["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn expect_fail(out: &std::process::Output, code: i32, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(needle), "wanted {needle:?} in: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn argon2id_records_read_back_and_first_format_records_still_read() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f.txt"), b"old set's file").unwrap();
    let user = User::new(&temp.path().join("home"), &node, true);

    // A record as the first format wrote it: key = SHA-256 of the passphrase, placed
    // near this month's target, no header.
    let old = Record {
        libernet_backup: 1,
        user: "alice".into(),
        written: unix_now(),
        writer: "laptop".into(),
        machines: [(
            "laptop".to_owned(),
            Machine {
                dirs: vec![data.to_str().unwrap().to_owned()],
                ..Machine::default()
            },
        )]
        .into(),
        ..Record::default()
    };
    let json = serde_json::to_vec(&old).unwrap();
    let sealed = codec::encode_passphrase(&json, &user.passphrase).unwrap();
    let target = index::target("alice", &index::month_of(unix_now(), 0));
    let placed = codec::place_near(sealed, &target, INDEX_BITS).unwrap();
    assert_eq!(
        node.put(&placed.block).await.status,
        hyper::StatusCode::CREATED
    );

    let listed = user.json(&["list"]).await;
    assert_eq!(listed["record"], placed.locator.id.to_string());
    assert_eq!(listed["machines"][0]["dirs"][0], data.to_str().unwrap());

    // The first run writes the next record in the Argon2id format.
    let run = user.json(&["run"]).await;
    let id: BlockId = num_str(&run, "record").parse().unwrap();
    let remote = Remote::connect(&node.url).await.unwrap();
    let block = remote.get_block(&id, None).await.unwrap();
    let (kdf, sealed) = Kdf::parse(&block).expect("an Argon2id header");
    assert_eq!(
        (kdf.m_kib, kdf.t, kdf.p),
        (key::DEFAULT_M_KIB, key::DEFAULT_T, key::DEFAULT_P)
    );
    let sha = codec::Key::from_passphrase(&user.passphrase);
    assert!(codec::decode(&block, codec::Mode::Passphrase, &sha).is_err());
    assert!(codec::decode(sealed, codec::Mode::Passphrase, &sha).is_err());
    let argon = kdf.derive(&user.passphrase).unwrap();
    let opened = codec::decode(sealed, codec::Mode::Passphrase, &argon).unwrap();
    let record: Record = serde_json::from_slice(&opened.content).unwrap();
    assert_eq!(record.supersedes, vec![placed.locator.id]);
    assert_eq!(record.machines["laptop"].runs.len(), 1);

    // Read back through the library and the CLI; later records keep the set's salt.
    let keys = Arc::new(Keys::new(&user.passphrase));
    let found = index::find(&remote, "alice", &keys).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.kdf, Some(kdf));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = user.json(&["run"]).await;
    let next: BlockId = num_str(&again, "record").parse().unwrap();
    let next_block = remote.get_block(&next, None).await.unwrap();
    assert_eq!(Kdf::parse(&next_block).unwrap().0, kdf);
    let history = user.json(&["history"]).await;
    assert_eq!(history.as_array().unwrap().len(), 2, "{history}");
    let wrong = Arc::new(Keys::new("another passphrase"));
    assert!(
        index::find(&remote, "alice", &wrong)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passphrase_that_opens_no_set_does_not_silently_start_one() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let more = temp.path().join("more");
    fs::create_dir_all(&data).unwrap();
    fs::create_dir_all(&more).unwrap();
    let user = User {
        passphrase: "short".into(),
        ..User::new(&temp.path().join("home"), &node, true)
    };
    let out = user.run(&["add", data.to_str().unwrap()]).await;
    expect_fail(&out, 1, "give --new-set to create it");
    expect_fail(&user.run(&["list"]).await, 1, "no backup found");
    let out = user.run(&["run"]).await;
    expect_fail(&out, 1, "backup add --new-set");

    let out = user
        .run(&["add", "--new-set", data.to_str().unwrap(), "--json"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("warning: the passphrase is 5 characters"));
    // The set exists now: adding to it needs no --new-set, and no warning.
    let out = user.run(&["add", more.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("warning"));
    let listed = user.json(&["list"]).await;
    assert_eq!(listed["machines"][0]["dirs"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_files_and_passwd_move_the_set_to_a_new_passphrase() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f.txt"), b"kept across passwd").unwrap();
    let user = User::new(&temp.path().join("home"), &node, true);
    let file = temp.path().join("pw");
    fs::write(&file, format!("{}\nsecond line ignored\n", user.passphrase)).unwrap();
    let with_file = |args: &[&str], pw: &Path| {
        let mut cmd = user.command(args);
        cmd.env_remove("LIBERNET_PASSPHRASE")
            .arg("--password-file")
            .arg(pw);
        output(cmd)
    };
    let out = with_file(&["add", "--new-set", data.to_str().unwrap()], &file).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The file's first line is the passphrase the environment gives too.
    user.json(&["run"]).await;
    let out = with_file(&["list"], &file).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let empty = temp.path().join("empty");
    fs::write(&empty, "\n").unwrap();
    expect_fail(&with_file(&["list"], &empty).await, 2, "is empty");
    expect_fail(
        &with_file(&["list"], &temp.path().join("absent")).await,
        2,
        "cannot read the password file",
    );

    let mut cmd = user.command(&["passwd"]);
    cmd.env("LIBERNET_NEW_PASSPHRASE", user.passphrase.clone());
    expect_fail(&output(cmd).await, 2, "the new passphrase is the old one");
    let new_pw = "a brand new passphrase";
    let mut cmd = user.command(&["passwd", "--json"]);
    cmd.env("LIBERNET_NEW_PASSPHRASE", new_pw);
    let out = output(cmd).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The old passphrase opens it no more; the new one finds the whole set.
    for args in [&["list"][..], &["run"], &["add", "--new-set", "/tmp"]] {
        expect_fail(&user.run(args).await, 1, "was moved to a new passphrase");
    }
    let renamed = User {
        passphrase: new_pw.into(),
        ..user.clone()
    };
    let history = renamed.json(&["history"]).await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    let dest = temp.path().join("dest");
    renamed
        .json(&["restore", "--to", dest.to_str().unwrap()])
        .await;
    assert_eq!(walk(&under(&dest, &data)), walk(&data));
    renamed.json(&["run"]).await;
    // The new passphrase's record is pinned.
    let pinned = pins(&node).await;
    assert!(pinned.contains(&num_str(&renamed.json(&["list"]).await, "record")));
}

#[tokio::test(flavor = "multi_thread")]
async fn excludes_leave_out_patterns_pattern_files_and_cache_directories() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let put = |rel: &str, content: &[u8]| {
        let path = data.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    };
    put("keep.txt", b"kept");
    put("x.tmp", b"temporary");
    put("sub/y.tmp", b"temporary too");
    put("sub/z.txt", b"kept too");
    put("node_modules/m.js", b"dependency");
    put("logs/a.log", b"log line");
    put("only-tmp/w.tmp", b"the directory stays, empty");
    put(
        "cache/CACHEDIR.TAG",
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    put("cache/blob", b"cached");
    put("fake/CACHEDIR.TAG", b"Signature: not the one");
    put("fake/blob", b"not a cache");
    let list = temp.path().join("excludes");
    fs::write(
        &list,
        format!("# comment\n\n  {}/logs  \n", data.to_str().unwrap()),
    )
    .unwrap();
    let user = User::new(&temp.path().join("home"), &node, true);
    user.json(&["add", "--new-set", data.to_str().unwrap()])
        .await;

    expect_fail(
        &user.run(&["run", "--exclude", "a["]).await,
        2,
        "--exclude \"a[\"",
    );
    expect_fail(
        &user
            .run(&[
                "run",
                "--exclude-file",
                temp.path().join("nope").to_str().unwrap(),
            ])
            .await,
        2,
        "cannot read the exclude file",
    );
    let run = user
        .json(&[
            "run",
            "--exclude",
            "*.tmp",
            "--exclude",
            "node_modules/",
            "--exclude-file",
            list.to_str().unwrap(),
            "--exclude-caches",
        ])
        .await;
    // x.tmp, y.tmp, w.tmp, node_modules, logs, cache/blob.
    assert_eq!(num(&run, "excluded"), 6, "{run}");
    let dest = temp.path().join("dest");
    user.json(&["restore", "--to", dest.to_str().unwrap()])
        .await;
    let got: BTreeSet<String> = walk(&under(&dest, &data)).into_keys().collect();
    let want: BTreeSet<String> = [
        "keep.txt",
        "sub",
        "sub/z.txt",
        "only-tmp",
        "cache",
        "cache/CACHEDIR.TAG",
        "fake",
        "fake/CACHEDIR.TAG",
        "fake/blob",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_find_diff_and_restores_of_single_paths_into_existing_directories() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("home1/data");
    make_tree(&data);
    let user = User::new(&temp.path().join("home1"), &node, true);
    user.json(&["add", "--new-set", data.to_str().unwrap()])
        .await;
    user.json(&["run"]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fs::write(data.join("a/b/c/deep.txt"), b"deeper text now\n").unwrap();
    fs::write(data.join("new.txt"), b"a new file").unwrap();
    fs::remove_file(data.join("one.txt")).unwrap();
    user.json(&["run"]).await;
    let history = user.json(&["history"]).await;
    let ids: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let abs = |rel: &str| format!("{}/{rel}", data.to_str().unwrap());

    // ls: the latest run, an earlier one by id, a subdirectory.
    let paths = |v: &serde_json::Value| -> Vec<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let latest = user.json(&["ls"]).await;
    assert!(paths(&latest).contains(&abs("new.txt")));
    assert!(!paths(&latest).contains(&abs("one.txt")));
    assert_eq!(latest["run"]["id"], ids[1]);
    let first = user.json(&["ls", "--at", &ids[0]]).await;
    assert!(paths(&first).contains(&abs("one.txt")));
    let inner = user.json(&["ls", &abs("a/b")]).await;
    assert_eq!(paths(&inner), [abs("a/b/c/deep.txt")]);
    let out = user.run(&["ls"]).await;
    assert!(text(&out.stdout).contains(&abs("tools/run.sh")));
    expect_fail(
        &user.run(&["ls", "--at", "ffffffff"]).await,
        2,
        "has no run ffffffff",
    );
    expect_fail(
        &user.run(&["ls", "--at", "yesterday-ish"]).await,
        2,
        "neither a run id",
    );

    // find: by name in every run, by anchored path; nothing found is exit 1.
    let hits = user.json(&["find", "*.txt"]).await;
    let deep: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["path"] == abs("a/b/c/deep.txt"))
        .map(|h| h["run"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(deep, [ids[0].as_str(), ids[1].as_str()]);
    let one = user.json(&["find", &abs("one.*")]).await;
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    expect_fail(
        &user.run(&["find", "*.nothing"]).await,
        1,
        "nothing matches",
    );

    // diff: exactly what changed.
    let diff = user.json(&["diff", &ids[0], &ids[1]]).await;
    assert_eq!(diff["added"], serde_json::json!([abs("new.txt")]));
    assert_eq!(diff["removed"], serde_json::json!([abs("one.txt")]));
    assert_eq!(diff["changed"], serde_json::json!([abs("a/b/c/deep.txt")]));
    let out = user.run(&["diff", &ids[0], "latest"]).await;
    assert!(text(&out.stdout).contains(&format!("+    {}", abs("new.txt"))));

    // One file into an existing directory that holds other things.
    let dest = temp.path().join("dest");
    fs::create_dir_all(&dest).unwrap();
    fs::write(dest.join("mine"), b"not the backup's").unwrap();
    let deep_path = abs("a/b/c/deep.txt");
    user.json(&[
        "restore",
        &deep_path,
        "--to",
        dest.to_str().unwrap(),
        "--at",
        &ids[0],
    ])
    .await;
    let restored = under(&dest, Path::new(&deep_path));
    assert_eq!(fs::read(&restored).unwrap(), b"deep text\n");
    assert_eq!(fs::read(dest.join("mine")).unwrap(), b"not the backup's");
    // Again: refused without --overwrite (nothing changes), replaced with it.
    let out = user
        .run(&["restore", &deep_path, "--to", dest.to_str().unwrap()])
        .await;
    expect_fail(&out, 2, "1 file exists already");
    assert_eq!(fs::read(&restored).unwrap(), b"deep text\n");
    user.json(&[
        "restore",
        &deep_path,
        "--to",
        dest.to_str().unwrap(),
        "--overwrite",
    ])
    .await;
    assert_eq!(fs::read(&restored).unwrap(), b"deeper text now\n");
    assert_eq!(fs::read(dest.join("mine")).unwrap(), b"not the backup's");

    // In place: a lost file comes back beside the others; a changed one needs
    // --overwrite; a directory is restored into itself.
    fs::remove_file(data.join("new.txt")).unwrap();
    fs::write(data.join("a/b/c/deep.txt"), b"edited locally").unwrap();
    user.json(&["restore", &abs("new.txt")]).await;
    assert_eq!(fs::read(data.join("new.txt")).unwrap(), b"a new file");
    let out = user.run(&["restore", &abs("a")]).await;
    expect_fail(&out, 2, "--overwrite");
    assert_eq!(
        fs::read(data.join("a/b/c/deep.txt")).unwrap(),
        b"edited locally"
    );
    user.json(&["restore", &abs("a"), "--overwrite"]).await;
    assert_eq!(
        fs::read(data.join("a/b/c/deep.txt")).unwrap(),
        b"deeper text now\n"
    );
    let leftovers: Vec<_> = walkdir::WalkDir::new(temp.path())
        .into_iter()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".libernet-restore")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Unix seconds of a UTC time (the CLI runs with TZ=UTC).
fn utc(text: &str) -> u64 {
    let ts: jiff::Timestamp = text.parse().unwrap();
    ts.as_second() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn forget_keeps_the_policy_s_runs_pinned_and_each_restores() {
    let node = TestNode::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let user = User::new(&temp.path().join("home"), &node, true);
    user.json(&["add", "--new-set", data.to_str().unwrap()])
        .await;
    // Five runs, each with a file only it holds; then their times are moved to
    // September 15, November 10, 20 and 21 (twice), 2026.
    let mut trees = Vec::new();
    for n in 0..5 {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        fs::write(data.join("only.txt"), format!("only in run {n}")).unwrap();
        fs::write(
            data.join(format!("added-{n}.txt")),
            format!("from run {n} on"),
        )
        .unwrap();
        user.json(&["run"]).await;
        trees.push(walk(&data));
    }
    let remote = Remote::connect(&node.url).await.unwrap();
    let keys = Arc::new(Keys::new(&user.passphrase));
    let found = index::find(&remote, "alice", &keys).await.unwrap().unwrap();
    let mut record = found.record.clone();
    let runs = &mut record.machines.get_mut("laptop").unwrap().runs;
    let times = [
        "2026-09-15T12:00:00Z",
        "2026-11-10T12:00:00Z",
        "2026-11-20T12:00:00Z",
        "2026-11-21T09:00:00Z",
        "2026-11-21T18:00:00Z",
    ];
    for (run, time) in runs.iter_mut().zip(times) {
        run.started = utc(time);
        run.finished = run.started + 1;
    }
    let uploader = libernet::transfer::Uploader::new(&remote);
    index::write(&uploader, record, Some(&found), &keys, &found.kdf.unwrap())
        .await
        .unwrap();
    let history = user.json(&["history"]).await;
    let ids: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 5);
    let before = pins(&node).await;
    for n in 0..5 {
        let only = block_of(format!("only in run {n}").as_bytes()).to_string();
        assert!(
            before.contains(&only),
            "run {n}'s own block is pinned before forget"
        );
    }

    expect_fail(
        &user.run(&["forget"]).await,
        2,
        "give at least one of --keep-daily",
    );
    // Daily 2: run 4 (the newest of the 21st) and run 2 (the 20th); monthly 2: run 4
    // (November) and run 0 (September). Runs 1 and 3 are forgotten.
    let dry = user
        .json(&[
            "forget",
            "--keep-daily",
            "2",
            "--keep-monthly",
            "2",
            "--dry-run",
        ])
        .await;
    assert_eq!(user.json(&["history"]).await.as_array().unwrap().len(), 5);
    let forgot = user
        .json(&["forget", "--keep-daily", "2", "--keep-monthly", "2"])
        .await;
    assert_eq!(dry["removed"], forgot["removed"]);
    let kept: Vec<String> = forgot["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let removed: Vec<String> = forgot["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kept,
        [ids[0].clone(), ids[2].clone(), ids[4].clone()],
        "{forgot}"
    );
    assert_eq!(removed, [ids[1].clone(), ids[3].clone()], "{forgot}");
    assert_eq!(
        forgot["kept"][2]["reasons"],
        serde_json::json!(["daily", "monthly"])
    );
    let history = user.json(&["history"]).await;
    assert_eq!(history.as_array().unwrap().len(), kept.len());

    // Every kept run's blocks stay pinned (a restore at it never finds blocks
    // missing), and what only forgotten runs held is released.
    let after = pins(&node).await;
    assert!(num(&forgot["pins"], "released") > 0, "{forgot}");
    for (n, id) in ids.iter().enumerate() {
        let only = block_of(format!("only in run {n}").as_bytes()).to_string();
        assert_eq!(after.contains(&only), kept.contains(id), "run {n}");
    }
    for id in &kept {
        let n = ids.iter().position(|i| i == id).unwrap();
        let url = history
            .as_array()
            .unwrap()
            .iter()
            .find(|r| &r["id"] == id)
            .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let blocks = libernet::transfer::blocks_of(&remote, &url).await.unwrap();
        assert!(
            blocks.iter().all(|b| after.contains(&b.to_string())),
            "run {n}"
        );
        let dest = temp.path().join(format!("at-{n}"));
        user.json(&["restore", "--to", dest.to_str().unwrap(), "--at", id])
            .await;
        assert_eq!(walk(&under(&dest, &data)), trees[n], "run {n}");
    }
    let out = user
        .run(&[
            "restore",
            "--to",
            temp.path().join("gone").to_str().unwrap(),
            "--at",
            &ids[1],
        ])
        .await;
    expect_fail(&out, 2, "has no run");
}

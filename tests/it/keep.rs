//! Kept data through the CLI (issue 14): `put` pins what it sends when the node's token
//! is at hand, `pin`, `unpin` and `pins` manage a holder's pins by URL, and a put site
//! survives a quota filled many times over. The real client binary against real nodes.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use hyper::{Method, StatusCode};

use crate::support::{Setup, TestNode, bytes};

const BIN: &str = env!("CARGO_BIN_EXE_libernet");

/// Runs the client against `node` with a home of its own (so no default store's token
/// is found) and `token` as LIBERNET_TOKEN when given; off the runtime's workers.
async fn client(node: &TestNode, home: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("LIBERNET_SERVER", &node.url)
        .env("LIBERNET_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        cmd.env("LIBERNET_TOKEN", token);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run the client"))
        .await
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The ids `holder` pins, from the node's admin API.
async fn pins_of(node: &TestNode, holder: &str) -> Vec<String> {
    let r = node
        .admin(Method::GET, &format!("/pins?holder={holder}"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let mut ids: Vec<String> = body["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A small site: a page, a stylesheet and a file of several blocks.
fn site(dir: &Path, seed: u64) {
    fs::create_dir_all(dir.join("css")).unwrap();
    fs::write(dir.join("index.html"), format!("<h1>site {seed}</h1>")).unwrap();
    fs::write(dir.join("css/site.css"), "h1 { color: teal }").unwrap();
    fs::write(dir.join("data.bin"), bytes(2_500_000, seed)).unwrap();
}

/// `put` pins every block of what it sends for `put`; `pins` lists them; `unpin` of
/// the URL releases them all and `pin` takes them back; `--no-pin` pins nothing; the
/// pin commands need the token and say so.
#[tokio::test(flavor = "multi_thread")]
async fn put_pins_and_the_pin_commands_manage_pins_by_url() {
    let node = TestNode::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let token = node.admin_token();
    let token = Some(token.as_str());
    site(&tmp.path().join("a"), 1);
    let a = tmp.path().join("a");
    let out = client(&node, &home, token, &["put", a.to_str().unwrap()]).await;
    let url = ok(&out).trim().to_owned();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pinned for put"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned = pins_of(&node, "put").await;
    // The root, the three files' blocks (3 for data.bin at about 1 MiB each).
    assert!(pinned.len() >= 6, "{pinned:?}");
    let root_id = url.split("/sha256/").nth(1).unwrap()[..64].to_owned();
    assert!(pinned.contains(&root_id));

    let listed = ok(&client(&node, &home, token, &["pins"]).await);
    let mut listed: Vec<String> = listed.lines().map(str::to_owned).collect();
    listed.sort();
    assert_eq!(listed, pinned);

    ok(&client(&node, &home, token, &["unpin", &url]).await);
    assert!(pins_of(&node, "put").await.is_empty());
    // A path inside the bundle stands for the whole bundle.
    ok(&client(&node, &home, token, &["pin", &format!("{url}css/site.css")]).await);
    assert_eq!(pins_of(&node, "put").await, pinned);
    // Another holder's pins are its own.
    ok(&client(&node, &home, token, &["pin", "--holder", "site-a", &url]).await);
    ok(&client(&node, &home, token, &["unpin", &url]).await);
    assert!(pins_of(&node, "put").await.is_empty());
    assert_eq!(pins_of(&node, "site-a").await, pinned);

    site(&tmp.path().join("b"), 2);
    let b = tmp.path().join("b");
    let out = client(
        &node,
        &home,
        token,
        &["put", "--no-pin", b.to_str().unwrap()],
    )
    .await;
    ok(&out);
    assert!(pins_of(&node, "put").await.is_empty());

    // Without a token: put goes unpinned and says so; the pin commands refuse.
    let out = client(&node, &home, None, &["put", b.to_str().unwrap()]).await;
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not pinned"));
    let out = client(&node, &home, None, &["pins"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token"));
    let out = client(&node, &home, token, &["pin", "--holder", "no spaces", &url]).await;
    assert_eq!(out.status.code(), Some(2));
    node.stop().await;
}

/// Issue 14: a later put evicted a user's site from a node with a full quota (its URL
/// then answered 504). A put site is pinned, so it survives the quota being filled many
/// times over by other, unpinned puts, and comes back whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_site_survives_a_full_quota() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = Setup::new(&dir.path().join("store"));
    setup.config.quota = 6 << 20;
    let node = TestNode::start_with(setup).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let token = node.admin_token();
    let token = Some(token.as_str());
    let a = tmp.path().join("a");
    site(&a, 7);
    let url = ok(&client(&node, &home, token, &["put", a.to_str().unwrap()]).await);
    let url = url.trim().to_owned();
    // Twelve times the site's size, unpinned, in files of a few blocks each.
    for seed in 0..12 {
        let f = tmp.path().join(format!("flood{seed}.bin"));
        fs::write(&f, bytes(2_500_000, 100 + seed)).unwrap();
        ok(&client(
            &node,
            &home,
            token,
            &["put", "--no-pin", f.to_str().unwrap()],
        )
        .await);
    }
    let info = node.get("/node").await;
    let info: serde_json::Value = serde_json::from_slice(&info.body).unwrap();
    assert!(
        info["store"]["bytes"].as_u64().unwrap() <= 6 << 20,
        "the store stayed within its quota: {info}"
    );
    let back = tmp.path().join("back");
    ok(&client(
        &node,
        &home,
        None,
        &["get", &url, "-o", back.to_str().unwrap()],
    )
    .await);
    for file in ["index.html", "css/site.css", "data.bin"] {
        assert_eq!(
            fs::read(back.join(file)).unwrap(),
            fs::read(a.join(file)).unwrap(),
            "{file}"
        );
    }
    node.stop().await;
}

/// `--custody-share` reaches the store: `/node` shows the bytes of the quota that
/// custody copies may take, and what is in custody (nothing yet).
#[tokio::test]
async fn serve_shows_its_custody_share_in_node() {
    let temp = tempfile::tempdir().unwrap();
    let flags = ["--quota", "100MiB", "--custody-share", "10"];
    let (mut child, url) = crate::cli::spawn_serve_with(temp.path(), &flags);
    let reply = libernet::client::Client::new(&url)
        .send(Method::GET, "/node", &[], bytes::Bytes::new())
        .await;
    let _ = child.kill();
    let _ = child.wait();
    let reply = reply.expect("GET /node");
    assert_eq!(reply.status, 200);
    let info: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let store = &info["store"];
    assert_eq!(store["quota"], 100 << 20, "{info}");
    assert_eq!(store["custody_share"], 10 << 20, "{info}");
    assert_eq!(store["custody_bytes"], 0, "{info}");
    assert_eq!(store["custody_blocks"], 0, "{info}");
}

//! The browsing routes against a real node: decrypted blocks, bundle files (streamed, with
//! Range across block boundaries), redirects, listings in both forms, conditional
//! requests, and the 400/404/422/504 paths. Content is put with the real client code
//! (`transfer`), and every reply is signature- and digest-checked by `TestNode::send`.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::bundle::{self, Chunk, FileEntry};
use libernet::client::Remote;
use libernet::codec::{self, MAX_CONTENT};
use libernet::transfer::{self, Options};

use crate::support::{TestNode, bytes};

const QUIET: Options = Options { progress: false };

/// A site-like tree: a big file over three blocks, text, a subdirectory, an empty dir.
fn make_tree(root: &Path, big: &[u8]) {
    std::fs::create_dir_all(root.join("docs/deep")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("big.bin"), big).unwrap();
    std::fs::write(root.join("notes.txt"), "plain text\n").unwrap();
    std::fs::write(root.join("docs/guide page.html"), "<title>guide</title>").unwrap();
    std::fs::write(
        root.join("docs/deep/index.html"),
        "<title>deep index</title>",
    )
    .unwrap();
}

/// The path part of a URL the client printed.
fn path_of(url: &str) -> String {
    let (_, path) = transfer::split_url(url, "http://unused").unwrap();
    path
}

async fn put_tree(node: &TestNode, root: &Path) -> String {
    let remote = Remote::connect(&node.url).await.unwrap();
    let report = transfer::put_path(&remote, root, QUIET).await.unwrap();
    assert!(report.url.ends_with('/'), "{}", report.url);
    path_of(&report.url)
}

#[tokio::test(flavor = "multi_thread")]
async fn bundle_files_listings_redirects_and_ranges() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().unwrap();
    let big = bytes(2 * MAX_CONTENT + 12_345, 7);
    make_tree(dir.path(), &big);
    let base = put_tree(&node, dir.path()).await; // ends with '/'
    let root = base.trim_end_matches('/');

    // The bundle root and directories redirect to their trailing-slash form.
    let r = node.get(root).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), Some(base.as_str()));
    let r = node.get(&format!("{base}docs?wait=1")).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location").unwrap(), format!("{base}docs/?wait=1"));

    // No index.html at the root: a listing, HTML by default, JSON on request.
    let r = node.get(&base).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8_lossy(&r.body);
    for link in [
        "href=\"big.bin\"",
        "href=\"docs/\"",
        "href=\"empty/\"",
        "href=\"notes.txt\"",
    ] {
        assert!(html.contains(link), "{link} in {html}");
    }
    let r = node
        .send(
            Method::GET,
            &format!("{base}docs/"),
            &[("accept", "application/json")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let listing: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(listing["path"], "/docs/");
    let names: Vec<_> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("deep".into(), "dir".into()),
            ("guide page.html".into(), "file".into())
        ]
    );
    assert_ne!(
        r.header("etag"),
        node.get(&format!("{base}docs/")).await.header("etag")
    );

    // A directory with index.html serves it; percent-encoded names resolve.
    let r = node.get(&format!("{base}docs/deep/")).await;
    assert_eq!(&r.body[..], b"<title>deep index</title>");
    let r = node.get(&format!("{base}docs/guide%20page.html")).await;
    assert_eq!(&r.body[..], b"<title>guide</title>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));

    // A small file: type from its name, immutable caching, sandboxed.
    let r = node.get(&format!("{base}notes.txt")).await;
    assert_eq!(&r.body[..], b"plain text\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=29030400, immutable")
    );
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .starts_with("sandbox")
    );
    let etag = r.header("etag").unwrap().to_owned();
    let root_id = base.split('/').nth(2).unwrap();
    assert_eq!(etag, format!("\"{root_id}\""));
    let r = node
        .send(
            Method::GET,
            &format!("{base}notes.txt"),
            &[("if-none-match", &etag)],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());

    // The big file, streamed whole, and a HEAD that agrees with it.
    let big_path = format!("{base}big.bin");
    let r = node.get(&big_path).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body[..] == big[..], "big file bytes");
    assert_eq!(r.header("content-digest"), r.header("repr-digest"));
    let head = node.send(Method::HEAD, &big_path, &[], Bytes::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header("content-length").unwrap(),
        big.len().to_string()
    );
    assert_eq!(head.header("content-digest"), r.header("content-digest"));

    // Ranges: across the first block boundary, the tail, and unsatisfiable.
    let b = MAX_CONTENT;
    for (range, start, end) in [
        (format!("bytes={}-{}", b - 10, b + 9), b - 10, b + 9),
        (format!("bytes={}-", 2 * b - 1), 2 * b - 1, big.len() - 1),
        ("bytes=-100".to_owned(), big.len() - 100, big.len() - 1),
        ("bytes=0-0".to_owned(), 0, 0),
    ] {
        let r = node
            .send(Method::GET, &big_path, &[("range", &range)], Bytes::new())
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert!(r.body[..] == big[start..=end], "{range}");
        assert_eq!(
            r.header("content-range").unwrap(),
            format!("bytes {start}-{end}/{}", big.len())
        );
    }
    let r = node
        .send(
            Method::GET,
            &big_path,
            &[("range", "bytes=99999999-")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // Not in the bundle; a file asked for as a directory.
    for missing in ["nope.txt", "docs/nope/", "notes.txt/", "%ff"] {
        let r = node.get(&format!("{base}{missing}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{missing}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "not_in_bundle", "{missing}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_blocks_passphrases_and_error_statuses() {
    let node = TestNode::start().await;
    // A single encrypted block: whole, ranged; not a bundle, so no paths below it.
    let e = codec::encode(b"hello, block").unwrap();
    assert_eq!(node.put(&e.block).await.status, StatusCode::CREATED);
    let url = e.locator.to_string();
    let r = node.get(&url).await;
    assert_eq!(&r.body[..], b"hello, block");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let r = node
        .send(Method::GET, &url, &[("range", "bytes=7-11")], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], b"block");
    assert_eq!(
        node.get(&format!("{url}/x")).await.status,
        StatusCode::NOT_FOUND
    );

    // Wrong key: 422 wrong_key, never garbage.
    let other = codec::encode(b"other").unwrap().locator.key;
    let r = node
        .get(&format!("/sha256/{}/aes256/{other}", e.locator.id))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(String::from_utf8_lossy(&r.body).contains("wrong_key"));

    // Passphrase blocks open with the passphrase's key only.
    let p = codec::encode_passphrase(b"index record", "correct horse").unwrap();
    node.put(&p.block).await;
    let r = node.get(&p.locator.to_string()).await;
    assert_eq!(&r.body[..], b"index record");
    // A passphrase opening never vouches for the convergent reading of the same block.
    let r = node
        .get(&format!(
            "/sha256/{}/aes256/{}",
            p.locator.id, p.locator.key
        ))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Passphrase content is a record, even when it looks like a manifest.
    let record = codec::encode_passphrase(br#"{"files":{}}"#, "pw").unwrap();
    node.put(&record.block).await;
    let r = node.get(&record.locator.to_string()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], br#"{"files":{}}"#);
    let wrong = codec::Key::from_passphrase("wrong horse");
    let r = node
        .get(&format!("/sha256/{}/passphrase/{wrong}", p.locator.id))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Malformed keys and ids are 400s.
    let r = node
        .get(&format!("/sha256/{}/aes256/xyz", e.locator.id))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        node.get("/sha256/xyz/aes256/abc").await.status,
        StatusCode::BAD_REQUEST
    );

    // An absent root block: 504 after the wait, with Retry-After.
    let absent = codec::encode(b"never stored").unwrap();
    let r = node.get(&format!("{}?wait=0", absent.locator)).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.header("retry-after").is_some());

    // A bundle whose file block is missing: 504 for the file, listing still works.
    let chunk = codec::encode(&bytes(5000, 1)).unwrap();
    let entry = FileEntry {
        contents: vec![Chunk {
            size: 5000,
            url: chunk.locator.to_string(),
        }],
        executable: false,
        link: None,
        modified: 0.0,
        readonly: false,
        size: 5000,
    };
    let files = BTreeMap::from([("lost.bin".to_owned(), entry)]);
    let packed = bundle::pack(files, BTreeMap::new(), MAX_CONTENT).unwrap();
    node.put(&packed.root.block).await;
    let base = format!("{}/", packed.root.locator);
    assert_eq!(node.get(&base).await.status, StatusCode::OK);
    let r = node.get(&format!("{base}lost.bin?wait=0")).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);

    // A bundle whose chunk holds more bytes than its manifest says: 422 bad_bundle.
    node.put(&chunk.block).await;
    let mut entry_lie = serde_json::json!({"files": {"lie.bin": {
        "size": 4000, "modified": 0, "contents": [{"size": 4000, "url": chunk.locator.to_string()}]}}});
    let lie = codec::encode(entry_lie.to_string().as_bytes()).unwrap();
    node.put(&lie.block).await;
    let r = node.get(&format!("{}/lie.bin", lie.locator)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(String::from_utf8_lossy(&r.body).contains("bad_bundle"));

    // Hostile manifests (traversal, absolute, overlapping) are refused, not served.
    for files in [
        serde_json::json!({"../etc/passwd": {"size": 0}}),
        serde_json::json!({"/etc/passwd": {"size": 0}}),
        serde_json::json!({"a": {"size": 0}, "a/b": {"size": 0}}),
    ] {
        entry_lie = serde_json::json!({ "files": files });
        let bad = codec::encode(entry_lie.to_string().as_bytes()).unwrap();
        node.put(&bad.block).await;
        let r = node.get(&format!("{}/", bad.locator)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{entry_lie}");
    }
    node.stop().await;
}

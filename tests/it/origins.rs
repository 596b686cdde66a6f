//! Bundles on their own origins, without a browser: a real node answers requests whose
//! Host is `<id>.<key>.localhost:<port>` (or `<id>.<key>.<domain>`) from the bundle's
//! root, redirects browsers opening a path URL there (and nobody else), refuses or
//! ignores hostile Hosts, and answers missing paths with the bundle's `404.html`, an
//! HTML error page for browsers or the JSON error body. The client connects to
//! 127.0.0.1 and sets the Host header, as a browser resolving `*.localhost` would send
//! it; every reply is signature- and digest-checked by `TestNode::send`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use libernet::client::{Remote, Reply};
use libernet::codec::{self, Key, Locator, Mode};
use libernet::http::{LABEL_LEN, label, origin_name};
use libernet::id::BlockId;
use libernet::transfer::{self, Options};

use crate::support::TestNode;

const QUIET: Options = Options { progress: false };

/// What a browser sends when it opens a page (Chromium's `Accept`).
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
                              image/avif,image/webp,*/*;q=0.8";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Puts a directory with the real client; its locator and path URL (ending in `/`).
async fn put_site(node: &TestNode, dir: &Path) -> (Locator, String) {
    let remote = Remote::connect(&node.url).await.unwrap();
    let report = transfer::put_path(&remote, dir, QUIET, None).await.unwrap();
    let (_, path) = transfer::split_url(&report.url, "http://unused").unwrap();
    let (locator, rest) = Locator::split(&path).unwrap();
    assert_eq!(rest, Some(""), "{path}");
    (locator, path)
}

fn port_of(node: &TestNode) -> u16 {
    node.url.rsplit(':').next().unwrap().parse().unwrap()
}

async fn get_as(node: &TestNode, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    node.send(Method::GET, path, &all, Bytes::new()).await
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_is_served_at_the_root_of_its_own_origin() {
    let node = TestNode::start().await;
    let site = fixture("origin-site");
    let (locator, base) = put_site(&node, &site).await;
    let host = format!("{}:{}", origin_name(&locator, "localhost"), port_of(&node));

    // The root serves index.html, with a site's freedoms: no sandbox.
    let r = get_as(&node, &host, "/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], std::fs::read(site.join("index.html")).unwrap());
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("content-security-policy"), None);
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
    assert_eq!(r.header("etag"), Some(&*format!("\"{}\"", locator.id)));

    // Absolute paths are the bundle's; the node's own routes are not there.
    let r = get_as(&node, &host, "/css/site.css", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(
        &r.body[..],
        std::fs::read(site.join("css/site.css")).unwrap()
    );
    let r = get_as(&node, &host, "/node", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", text(&r));
    let r = get_as(&node, &host, &format!("/sha256/{}", locator.id), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A path URL of another bundle, as a site written for the path form links it, is
    // a redirect to that bundle's origin (the query kept); a raw block path is not.
    let other = Locator {
        id: BlockId::of(b"other"),
        mode: Mode::Aes256,
        key: Key([3; 32]),
    };
    let r = get_as(&node, &host, &format!("{other}/a/b.html?x=1"), &[]).await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        r.header("location"),
        Some(&*format!(
            "//{}:{}/a/b.html?x=1",
            origin_name(&other, "localhost"),
            port_of(&node)
        ))
    );

    // The same answers as the path form: the directory redirect, ranges, HEAD, query.
    let r = get_as(&node, &host, "/pages?wait=1", &[]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.header("location"), Some("/pages/?wait=1"));
    let r = get_as(&node, &host, "/pages/next.html", &[("range", "bytes=0-14")]).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], b"<!DOCTYPE html>");
    let path_form = node.get(&format!("{base}pages/next.html")).await;
    let r = get_as(&node, &host, "/pages/next.html", &[]).await;
    assert_eq!(r.body, path_form.body);
    assert_eq!(r.header("repr-digest"), path_form.header("repr-digest"));
    let r = node
        .send(Method::HEAD, "/js/app.js", &[("host", &host)], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    let listing = get_as(&node, &host, "/?listing", &[("accept", "application/json")]).await;
    assert_eq!(listing.status, StatusCode::OK);
    let listing: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
    assert_eq!(listing["path"], "/");

    // Read-only, as the path form.
    let r = node
        .send(
            Method::PUT,
            "/x",
            &[("host", &host)],
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    // Host names are case-insensitive; a trailing dot names the same host; no port is fine.
    for other in [
        host.to_ascii_uppercase(),
        format!("{}.", origin_name(&locator, "localhost")),
        origin_name(&locator, "LOCALHOST"),
    ] {
        let r = get_as(&node, &other, "/css/site.css", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{other}");
    }

    // The path form is as it was: sandboxed, for clients that are not browsers, and
    // never cached for a browser's navigation (which would be redirected).
    let r = node.get(&base).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("vary"), Some("Accept, Sec-Fetch-Mode"));
    assert!(
        r.header("content-security-policy")
            .is_some_and(|p| p.starts_with("sandbox") && !p.contains("allow-same-origin")),
        "{:?}",
        r.header("content-security-policy")
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn path_urls_send_browsers_to_the_bundle_origin() {
    let node = TestNode::start().await;
    let (locator, base) = put_site(&node, &fixture("origin-site")).await;
    let port = port_of(&node);
    let origin = format!("//{}:{port}", origin_name(&locator, "localhost"));
    let navigate = [("sec-fetch-mode", "navigate"), ("accept", BROWSER_ACCEPT)];

    // Through localhost or a loopback address, a browser opening a page is redirected,
    // the path inside the bundle and the query kept.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = get_as(&node, &host, &base, &navigate).await;
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{host}");
        assert_eq!(r.header("location"), Some(&*format!("{origin}/")), "{host}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let root = base.trim_end_matches('/');
    let r = get_as(&node, "localhost", root, &navigate).await;
    let bare = format!("//{}", origin_name(&locator, "localhost"));
    assert_eq!(r.header("location"), Some(&*format!("{bare}/")));
    let r = get_as(
        &node,
        &format!("localhost:{port}"),
        &format!("{base}pages/next.html?a=1&b=%20"),
        &navigate,
    )
    .await;
    assert_eq!(
        r.header("location"),
        Some(&*format!("{origin}/pages/next.html?a=1&b=%20"))
    );
    // A browser without Sec-Fetch headers (an insecure origin) is known by its Accept.
    let r = get_as(&node, "localhost", &base, &[("accept", BROWSER_ACCEPT)]).await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);

    // Everyone else gets the path form's own answer: no Accept (scripts, the CLI),
    // `*/*` (curl), JSON (the dashboard's fetch), a subresource asking for HTML, a
    // proxied request (its browser's `localhost` is not this node), another Host.
    let stays: [(&str, &[(&str, &str)]); 7] = [
        ("localhost", &[]),
        ("localhost", &[("accept", "*/*")]),
        ("localhost", &[("accept", "application/json")]),
        (
            "localhost",
            &[("sec-fetch-mode", "no-cors"), ("accept", BROWSER_ACCEPT)],
        ),
        (
            "localhost",
            &[navigate[0], navigate[1], ("x-forwarded-for", "192.0.2.9")],
        ),
        (
            "localhost",
            &[navigate[0], navigate[1], ("forwarded", "for=192.0.2.9")],
        ),
        ("192.0.2.1:8042", &navigate),
    ];
    for (host, headers) in stays {
        let r = get_as(&node, host, &base, headers).await;
        assert_eq!(r.status, StatusCode::OK, "{host} {headers:?}");
        assert!(r.header("location").is_none());
        assert!(
            r.header("content-security-policy")
                .is_some_and(|p| p.starts_with("sandbox"))
        );
    }

    // A Host that is not a plain host[:port] is no gateway: nothing of it is echoed.
    let r = get_as(&node, "evil.example", &base, &navigate).await;
    assert_eq!(r.status, StatusCode::OK);

    // Only bundles move: a single block stays; missing content is the path form's 504.
    let single = codec::encode(b"just bytes").unwrap();
    assert_eq!(node.put(&single.block).await.status, StatusCode::CREATED);
    let single = single.locator.to_string();
    let r = get_as(&node, "localhost", &single, &navigate).await;
    assert_eq!(r.status, StatusCode::OK, "{single}");
    assert_eq!(&r.body[..], b"just bytes");
    let absent = format!(
        "/sha256/{}/aes256/{}/?wait=0",
        BlockId::of(b"absent"),
        BlockId::of(b"key")
    );
    let r = get_as(&node, "localhost", &absent, &navigate).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_a_domain_gives_bundles_origins_under_it() {
    let node = TestNode::start_adjusted(|s| s.options.domain = Some("sites.example".into())).await;
    let (locator, base) = put_site(&node, &fixture("origin-site")).await;
    let navigate = [("sec-fetch-mode", "navigate"), ("accept", BROWSER_ACCEPT)];
    let name = origin_name(&locator, "sites.example");

    // Behind a TLS proxy: Host passed through, forwarding headers are normal, the
    // Location is scheme-relative so the browser stays on https.
    for (host, want) in [
        ("sites.example", format!("//{name}/")),
        ("Sites.Example:8443", format!("//{name}:8443/")),
    ] {
        let headers = [navigate[0], navigate[1], ("x-forwarded-proto", "https")];
        let r = get_as(&node, host, &base, &headers).await;
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{host}");
        assert_eq!(r.header("location"), Some(&*want), "{host}");
    }
    let r = get_as(&node, &name, "/css/site.css", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    // Under localhost as well.
    let r = get_as(&node, &origin_name(&locator, "localhost"), "/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    // Names under the domain that are not bundles are refused; look-alikes are the node's.
    let r = get_as(&node, "www.sites.example", "/", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get_as(&node, "evilsites.example", "/node", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_hosts_are_refused_or_ignored() {
    let node = TestNode::start().await;
    let (locator, _base) = put_site(&node, &fixture("origin-site")).await;
    let id = label(&locator.id.0);
    let key = label(&locator.key.0);

    // Under localhost, anything but <52 base32>.<52 base32> is a 400 with a reason.
    let mut trailing_bit = key.clone();
    trailing_bit.replace_range(LABEL_LEN - 1.., "b");
    let bad = [
        "x.localhost".to_owned(),
        format!("{id}.localhost"),
        format!("www.{id}.{key}.localhost"),
        format!("{id}a.{key}.localhost"),
        format!("{}.{key}.localhost", &id[1..]),
        format!("{}1.{key}.localhost", &id[..LABEL_LEN - 1]),
        format!("{id}.{trailing_bit}.localhost"),
        format!("{}.{key}.localhost", hex::encode(locator.id.0)),
    ];
    for host in &bad {
        let r = get_as(&node, host, "/", &[]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{host}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "bad_host", "{host}");
        // And as a page for a browser, with no script and nothing of the Host in it.
        let r = get_as(&node, host, "/", &[("accept", BROWSER_ACCEPT)]).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(!text(&r).contains(&host[..10]), "{}", text(&r));
    }

    // A bundle the node does not have: what the path form answers (504 after the wait).
    let absent = Locator {
        id: BlockId::of(b"absent"),
        mode: Mode::Aes256,
        key: Key([7; 32]),
    };
    let r = get_as(&node, &origin_name(&absent, "localhost"), "/?wait=0", &[]).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(r.header("retry-after").is_some());
    // The wrong key for a bundle the node has: 422, as the path form.
    let wrong = Locator {
        key: Key([7; 32]),
        ..locator
    };
    let r = get_as(&node, &origin_name(&wrong, "localhost"), "/", &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Hosts that are not bundle origins, or longer than DNS allows, leave the node as
    // it is.
    for host in [
        "localhost:99999".to_owned(),
        "a".repeat(4000),
        format!("{id}.{}.localhost", "a".repeat(300)),
        "localhost.evil.example".to_owned(),
        format!("{id}.{key}.localhost.evil.example"),
    ] {
        let r = get_as(&node, &host, "/node", &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{host}");
    }
    // Two Hosts: neither is believed.
    let good = origin_name(&locator, "localhost");
    let r = node
        .send(
            Method::GET,
            "/node",
            &[("host", &good), ("host", "localhost")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_paths_get_the_bundles_404_page_or_an_error_in_the_asked_format() {
    let node = TestNode::start().await;
    let with_page = fixture("origin-site");
    let (locator, base) = put_site(&node, &with_page).await;
    let page = std::fs::read(with_page.join("404.html")).unwrap();
    let host = origin_name(&locator, "localhost");

    // The bundle's 404.html, status 404, on both forms, whatever the request asks for.
    for (host, path) in [
        (&*host, "/no/such/page".to_owned()),
        (&*host, "/index.html/".to_owned()),
        ("localhost", format!("{base}no/such/page")),
    ] {
        let r = get_as(&node, host, &path, &[("range", "bytes=0-3")]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(&r.body[..], &page[..], "{path}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(
            r.header("etag"),
            None,
            "a 404 must not share the content's tag"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let r = node
        .send(Method::HEAD, "/nope", &[("host", &host)], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.is_empty());

    // Without a 404.html: a page for browsers, the JSON error for everyone else.
    let (plain, plain_base) = put_site(&node, &fixture("site")).await;
    let plain_host = origin_name(&plain, "localhost");
    for (host, path) in [
        (&*plain_host, "/nope".to_owned()),
        ("192.0.2.1", format!("{plain_base}nope")),
    ] {
        let r = get_as(&node, host, &path, &[("accept", BROWSER_ACCEPT)]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(text(&r).contains("404 Not Found"), "{}", text(&r));
        assert!(text(&r).contains("not_in_bundle"), "{}", text(&r));
        let policy = r.header("content-security-policy").unwrap_or("");
        assert!(policy.contains("sandbox") && policy.contains("default-src 'none'"));
        for accept in [
            None,
            Some("application/json"),
            Some("text/html, application/json"),
        ] {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let r = get_as(&node, host, &path, &headers).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND);
            assert_eq!(
                r.header("content-type"),
                Some("application/json"),
                "{accept:?}"
            );
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["error"], "not_in_bundle");
        }
    }
    // Other errors of the browsing routes too (a 504 keeps its Retry-After)...
    let absent = format!(
        "/sha256/{}/aes256/{}/?wait=0",
        BlockId::of(b"absent"),
        BlockId::of(b"key")
    );
    let r = get_as(&node, "192.0.2.1", &absent, &[("accept", BROWSER_ACCEPT)]).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.header("retry-after").is_some());
    // ...but the block routes' errors stay JSON (DESIGN 3).
    let r = get_as(
        &node,
        "localhost",
        &format!("/sha256/{}?wait=0", BlockId::of(b"absent")),
        &[("accept", BROWSER_ACCEPT)],
    )
    .await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.header("content-type"), Some("application/json"));
    node.stop().await;
}

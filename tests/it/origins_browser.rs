//! Websites on their own origins in a real browser (headless Chromium, the harness of
//! `browser.rs`): `tests/fixtures/origin-site` links everything absolutely
//! (`/css/site.css`, `/js/app.js`, `/pages/next.html`), counts visits in `localStorage`
//! and sets a cookie; opened by its path URL it lands on `<id>.<key>.localhost`, where
//! all of that works, and a missing page shows its `404.html`. A second site, on its
//! own origin, sees none of the first one's storage or cookies. Chromium resolves
//! `*.localhost` to loopback itself, so no DNS is involved.

use std::path::Path;

use serde_json::json;

use crate::browser::{
    Browser, DEADLINE, chromium_or_skip, one_browser_at_a_time, origin_url, run_bounded,
};
use crate::support::TestNode;

/// The colour `/css/site.css` gives `h1`, as `getComputedStyle` reports it.
const H1_COLOR: &str = "rgb(20, 120, 60)";

#[tokio::test(flavor = "multi_thread")]
async fn sites_have_their_own_origins_in_a_browser() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let _one = one_browser_at_a_time().await;
    let node = TestNode::start().await;
    let first = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/origin-site");
    let second = tempfile::tempdir().unwrap();
    std::fs::write(
        second.path().join("index.html"),
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Second site</title></head><body><h1>Another site</h1></body></html>\n",
    )
    .unwrap();
    let first = put(&node.url, &first).await;
    let second = put(&node.url, second.path()).await;
    let checked =
        tokio::task::spawn_blocking(move || check_origins(&chromium, &first, &second)).await;
    if let Err(e) = checked {
        std::panic::resume_unwind(e.into_panic());
    }
    node.stop().await;
}

/// `libernet put DIR` against `server`; the URL it prints.
async fn put(server: &str, dir: &Path) -> String {
    let mut put = std::process::Command::new(env!("CARGO_BIN_EXE_libernet"));
    put.args(["--server", server, "put"]).arg(dir);
    let output = tokio::task::spawn_blocking(move || run_bounded(put, DEADLINE))
        .await
        .expect("the CLI runner");
    assert!(
        output.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn check_origins(chromium: &Path, first: &str, second: &str) {
    let mut browser = Browser::launch(chromium);

    // The path URL sends the browser to the site's own origin.
    let home = origin_url(first);
    assert!(
        home.starts_with("http://") && home.contains(".localhost:"),
        "{home}"
    );
    browser.open_to(first, &home);
    assert_eq!(
        browser.evaluate("document.title"),
        json!("Origin fixture: home")
    );
    assert_eq!(
        browser.evaluate("getComputedStyle(document.querySelector('h1')).color"),
        json!(H1_COLOR),
        "/css/site.css, linked absolutely, applies"
    );
    browser.wait_until(
        "document.body.dataset.visits === '1'",
        "/js/app.js (linked absolutely) counted a visit in localStorage",
    );
    assert_eq!(
        browser.evaluate("[localStorage.getItem('visits'), document.cookie]"),
        json!(["1", "seen=yes"]),
        "the site keeps localStorage and a cookie on its origin"
    );

    // An absolute link to another page and back: the storage is the origin's.
    browser.follow(
        "next",
        &format!("{home}pages/next.html"),
        "Origin fixture: next",
    );
    assert_eq!(
        browser.evaluate("getComputedStyle(document.querySelector('h1')).color"),
        json!(H1_COLOR)
    );
    browser.follow("home", &home, "Origin fixture: home");
    browser.wait_until(
        "document.body.dataset.visits === '2'",
        "the second visit counted on top of the first",
    );

    // A missing page shows the site's 404.html, with status 404, its CSS applied.
    let missing = format!("{home}no/such/page");
    browser.open(&missing);
    assert_eq!(
        browser.evaluate("document.title"),
        json!("Origin fixture: not found")
    );
    assert_eq!(
        browser.evaluate("performance.getEntriesByType('navigation')[0].responseStatus"),
        json!(404)
    );
    assert_eq!(
        browser.evaluate("getComputedStyle(document.querySelector('h1')).color"),
        json!(H1_COLOR),
        "404.html's absolute /css/site.css applies under a nested missing path"
    );

    // A second site has an origin of its own and sees nothing of the first's.
    let other = origin_url(second);
    assert_ne!(other, home);
    browser.open_to(second, &other);
    assert_eq!(browser.evaluate("document.title"), json!("Second site"));
    assert_eq!(
        browser.evaluate("[localStorage.length, localStorage.getItem('visits'), document.cookie]"),
        json!([0, null, ""]),
        "the second site reads none of the first one's storage or cookies"
    );
    browser.evaluate("localStorage.setItem('visits', 'from the second site'), 0");

    // And the first site's storage is untouched by the second's.
    browser.open(&home);
    browser.wait_until(
        "document.body.dataset.visits === '3'",
        "the first site's count went on from its own storage",
    );
    let problems: Vec<String> = browser
        .take_problems()
        .into_iter()
        .filter(|p| !p.contains("404"))
        .collect();
    assert!(
        problems.is_empty(),
        "the sites reported errors: {problems:#?}"
    );
}

//! The dashboard in a real browser (headless Chromium over the DevTools protocol, the
//! harness of `browser`), on a real node of a real mesh: node a, with b as a peer from
//! the start and c joining while the page is open. The page must show a's id and store
//! figures as `/node` gives them; list c once it joins, without a reload, and show it
//! unhealthy once it stops; pin a block from the popular list (checked through
//! `/pins`); take a folder dropped on it and answer a URL that opens the folder as a
//! website; list all three nodes in its mesh view; fit a phone's width. Throughout, the
//! page must report no error (uncaught exception, `console.error`, failed load, CSP
//! violation). Screenshots (desktop light and dark, phone) go to
//! `target/test-artifacts/browser/dashboard-*.png`; `docs/dashboard.png` in the README
//! is the desktop one.

use hyper::{Method, StatusCode};
use libernet::id::BlockId;
use serde_json::{Value, json};
use std::path::Path;

use crate::browser::{Browser, artifacts_dir, chromium_or_skip, one_browser_at_a_time, origin_url};
use crate::dashboard::{json as get_json, mesh_node, peer_health};
use crate::support::{TestNode, bytes, eventually};

/// Gossip rounds in this mesh: short, so joins and failures show within seconds.
const GOSSIP_SECS: f64 = 0.5;

/// The dropped site's page title and its stylesheet's `h1` colour.
const SITE_TITLE: &str = "Dropped site";
const SITE_H1: &str = "rgb(10, 120, 60)";

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_a_browser() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let _one = one_browser_at_a_time().await;
    let a = mesh_node(&[], GOSSIP_SECS).await;
    let b = mesh_node(&[&a], GOSSIP_SECS).await;
    eventually(60, "a knows b, healthy", || async {
        peer_health(&a).await.values().any(|h| h == "ok")
    })
    .await;
    // A block people ask for, so the popular list has a row.
    let block = bytes(3000, 11);
    let id = BlockId::of(&block);
    assert_eq!(a.put(&block).await.status, StatusCode::CREATED);
    for _ in 0..3 {
        assert_eq!(a.get(&id.path()).await.status, StatusCode::OK);
    }
    record_activity(&a, &id).await;
    let site = tempfile::tempdir().unwrap();
    let folder = write_site(site.path());

    let mut page = Page::new(Browser::launch(&chromium));
    page.viewport(1280, 900, false);
    page.open(&format!("{}/", a.url));
    page.wait(
        "document.body.dataset.ready === 'true'",
        "the first /node poll rendered",
    );
    // The error check sees what the page reports: a probe shows up, and only it.
    page.eval("console.error('harness probe')");
    let probe = page.problems();
    assert!(
        probe.len() == 1 && probe[0].contains("harness probe"),
        "the harness saw {probe:?}"
    );
    // Set in this document: still there later means the page never reloaded.
    page.eval("window.notReloaded = true");

    let me = get_json(&a, "/node").await;
    check_overview(&mut page, &me);

    // Peers: b from the start; c joins while the page is open.
    let b_id = get_json(&b, "/node").await["id"].clone();
    page.wait(
        &row("peers-table", "data-peer-id", &b_id),
        "b in the peers table",
    );
    let c = mesh_node(&[&a], GOSSIP_SECS).await;
    let c_id = get_json(&c, "/node").await["id"].clone();
    page.wait(
        &format!(
            "{} && window.notReloaded === true",
            row("peers-table", "data-peer-id", &c_id)
        ),
        "c in the peers table, without a reload",
    );

    // Mesh view: all three nodes, reachable, and the totals.
    for (node, id) in [(&a, &me["id"]), (&b, &b_id), (&c, &c_id)] {
        let selector = format!(
            "#mesh-table tbody tr[data-node-id='{}'][data-reachable='true']",
            id.as_str().unwrap()
        );
        page.wait(
            &format!("document.querySelector({}) !== null", json!(selector)),
            &format!("{} in the mesh view", node.url),
        );
    }
    page.wait(
        "document.querySelector('#mesh-nodes')?.dataset.value === '3'",
        "the mesh totals count 3 nodes",
    );

    // Popular blocks and pinning, with the admin token typed into its form.
    page.eval(&format!(
        "document.querySelector('#token').value = {}; \
         document.querySelector('#token-form').requestSubmit()",
        json!(a.admin_token())
    ));
    let block_row = format!("#popular-table tbody tr[data-block-id='{id}']");
    page.wait(
        &format!(
            "document.querySelector({})?.dataset.pinned === 'false'",
            json!(block_row)
        ),
        "the requested block in the popular list, unpinned",
    );
    page.eval(&format!(
        "document.querySelector({}).querySelector('.pin-toggle').click()",
        json!(block_row)
    ));
    let pins_path = "/pins?holder=admin";
    eventually(60, "the block pinned through the API", || async {
        let reply = a.admin(Method::GET, pins_path).await;
        let pins: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        pins["pins"]
            .as_array()
            .is_some_and(|p| p.contains(&json!(id.to_string())))
    })
    .await;
    page.wait(
        &format!(
            "document.querySelector({})?.dataset.pinned === 'true'",
            json!(block_row)
        ),
        "the popular list shows it pinned",
    );

    check_keyboard_reaches_every_control(&mut page);

    // A folder dropped on the page becomes a website.
    page.drop_files("#dropzone", &[&folder]);
    page.wait(
        "/\\/sha256\\/.*\\/$/.test(document.querySelector('#upload-url')?.href ?? '')",
        "the upload's URL",
    );
    let url = page.eval("document.querySelector('#upload-url').href");
    let url = url.as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/sha256/", a.url)), "{url}");
    page.wait(
        "document.querySelector('#listing li[data-name=\"index.html\"]') !== null",
        "the upload listed in the content view",
    );
    let problems = page.problems();
    assert!(
        problems.is_empty(),
        "the dashboard reported errors: {problems:#?}"
    );

    // Screenshots, with everything on the page.
    let shots = artifacts_dir();
    std::fs::create_dir_all(&shots).unwrap();
    page.save_screenshot(&shots.join("dashboard-desktop.png"), 1280, 900, false);
    page.command(
        "Emulation.setEmulatedMedia",
        json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    );
    page.save_screenshot(&shots.join("dashboard-desktop-dark.png"), 1280, 900, false);
    page.command("Emulation.setEmulatedMedia", json!({"features": []}));
    page.viewport(390, 844, true);
    page.wait(
        "document.documentElement.scrollWidth <= window.innerWidth",
        "nothing wider than a phone's screen",
    );
    page.save_screenshot(&shots.join("dashboard-phone.png"), 390, 844, true);
    page.viewport(1280, 900, false);

    // The uploaded site works in the browser, on its own origin.
    page.open_to(&url, &origin_url(&url));
    assert_eq!(page.eval("document.title"), json!(SITE_TITLE));
    assert_eq!(
        page.eval("getComputedStyle(document.querySelector('h1')).color"),
        json!(SITE_H1),
        "the dropped site's stylesheet applies"
    );
    let problems = page.problems();
    assert!(
        problems.is_empty(),
        "the uploaded site reported errors: {problems:#?}"
    );

    // Back on the dashboard, c stops and turns unhealthy.
    page.open(&format!("{}/", a.url));
    page.wait(
        "document.body.dataset.ready === 'true'",
        "the dashboard again",
    );
    page.eval("window.notReloaded = true");
    page.wait(
        &format!(
            "{} !== null",
            row_element("peers-table", "data-peer-id", &c_id)
        ),
        "c listed",
    );
    c.stop().await;
    page.wait(
        &format!(
            "{}?.dataset.health !== 'ok' && window.notReloaded === true",
            row_element("peers-table", "data-peer-id", &c_id)
        ),
        "c shown unhealthy once stopped, without a reload",
    );
    let health = peer_health(&a).await;
    assert_ne!(
        health.get(c_id.as_str().unwrap()).map(String::as_str),
        Some("ok")
    );
    let problems = page.problems();
    assert!(
        problems.is_empty(),
        "the dashboard reported errors: {problems:#?}"
    );
    drop(page);
    b.stop().await;
    a.stop().await;
}

/// The browser, driven from async test code: its calls block, so each runs inside
/// `block_in_place`.
struct Page {
    browser: Browser,
}

impl Page {
    fn new(browser: Browser) -> Page {
        Page { browser }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        tokio::task::block_in_place(|| self.browser.evaluate(expression))
    }

    /// Opens `url` and waits for it to load.
    fn open(&mut self, url: &str) {
        tokio::task::block_in_place(|| self.browser.open(url));
    }

    /// Opens `url` and waits for the page it redirects to, `lands_at`, to load.
    fn open_to(&mut self, url: &str, lands_at: &str) {
        tokio::task::block_in_place(|| self.browser.open_to(url, lands_at));
    }

    /// A DevTools command to the page.
    fn command(&mut self, method: &str, params: Value) -> Value {
        tokio::task::block_in_place(|| self.browser.page(method, params))
    }

    /// Sets the viewport (see `Browser::set_viewport`).
    fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        tokio::task::block_in_place(|| self.browser.set_viewport(width, height, mobile));
    }

    /// Drops `paths` on the element `selector` (see `Browser::drop_files`).
    fn drop_files(&mut self, selector: &str, paths: &[&Path]) {
        tokio::task::block_in_place(|| self.browser.drop_files(selector, paths));
    }

    /// The errors the page reported since the last call.
    fn problems(&mut self) -> Vec<String> {
        tokio::task::block_in_place(|| self.browser.take_problems())
    }

    /// Waits until `condition` holds in the page.
    fn wait(&mut self, condition: &str, what: &str) {
        tokio::task::block_in_place(|| self.browser.wait_until(condition, what));
    }

    /// Saves a PNG of the whole page at `path`, as a `width` x `height` screen shows it.
    fn save_screenshot(&mut self, path: &Path, width: u32, height: u32, mobile: bool) {
        let png =
            tokio::task::block_in_place(|| self.browser.screenshot_full(width, height, mobile));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

/// Steps of activity recorded before the page opens, so its charts have a history.
const ACTIVITY_STEPS: u64 = 60;

/// Real requests to `node`, recorded as `ACTIVITY_STEPS` history points: hits on
/// `block` and on a few more blocks asked for less and less often, and now and then a
/// block that is nowhere (a miss). The steps are taken at once, not every 5 s, so the
/// charts have something to show within the test's time.
async fn record_activity(node: &TestNode, block: &BlockId) {
    let mut popular = vec![*block];
    for seed in 0..5 {
        let bytes = bytes(2000 + 1500 * seed as usize, 100 + seed);
        assert!(node.put(&bytes).await.status.is_success());
        popular.push(BlockId::of(&bytes));
    }
    for step in 0..ACTIVITY_STEPS {
        let wave = 1.0 + (step as f64 / 7.0).sin();
        for (rank, id) in popular.iter().enumerate() {
            // The first block is asked for most, each next one about half as often.
            let times = (wave * 8.0 / (1 << rank) as f64).round() as u64;
            for _ in 0..times {
                assert_eq!(node.get(&id.path()).await.status, StatusCode::OK);
            }
        }
        if step % 4 == 0 {
            let absent = BlockId::of(&(step % 3).to_be_bytes());
            let miss = node.get(&format!("{}?wait=0", absent.path())).await;
            assert_eq!(miss.status, StatusCode::GATEWAY_TIMEOUT);
        }
        node.node.sample_history();
    }
}

/// The overview shows `/node`'s id and store figures.
fn check_overview(page: &mut Page, me: &Value) {
    let store = &me["store"];
    let condition = format!(
        "(() => {{ const s = document.querySelector('#store').dataset; \
         return document.querySelector('#node-id').dataset.id === {} \
         && s.bytes === '{}' && s.quota === '{}' && s.blocks === '{}'; }})()",
        me["id"], store["bytes"], store["quota"], store["blocks"]
    );
    page.wait(
        &condition,
        "the overview shows /node's id and store figures",
    );
    let short = page.eval("document.querySelector('#node-id').textContent");
    let short = short.as_str().unwrap_or("").trim().to_owned();
    assert!(
        !short.is_empty() && me["id"].as_str().unwrap().starts_with(&short),
        "the short id {short:?} begins the id"
    );
    let version = page.eval("document.querySelector('#node-version').textContent");
    assert!(
        version
            .as_str()
            .unwrap_or("")
            .contains(me["version"].as_str().unwrap())
    );
    let shown_url = page.eval("document.querySelector('#node-url').textContent");
    assert_eq!(shown_url.as_str().map(str::trim), me["url"].as_str());
}

/// Most Tab presses to go once around the page.
const MAX_TABS: usize = 200;

/// Tab alone reaches the page's controls, in document order, each showing a focus ring.
fn check_keyboard_reaches_every_control(page: &mut Page) {
    page.command(
        "Emulation.setFocusEmulationEnabled",
        json!({"enabled": true}),
    );
    page.eval("document.activeElement?.blur(); window.scrollTo(0, 0)");
    let mut reached = Vec::new();
    for _ in 0..MAX_TABS {
        tokio::task::block_in_place(|| page.browser.press_tab(false));
        let focused = page.eval(
            "(() => { const e = document.activeElement; \
             if (!e || e === document.body) return null; \
             const ring = getComputedStyle(e).outlineStyle !== 'none' \
               || getComputedStyle(e).boxShadow !== 'none'; \
             return [e.id || e.className || e.tagName, ring]; })()",
        );
        let Some(pair) = focused.as_array() else {
            continue;
        };
        let name = pair[0].as_str().unwrap_or("").to_owned();
        if reached.first() == Some(&name) {
            break; // around once
        }
        assert_eq!(pair[1], json!(true), "{name} shows no focus ring");
        reached.push(name);
    }
    for control in [
        "copy-id",
        "token",
        "token-forget",
        "pin-toggle",
        "browse-url",
        "dropzone",
    ] {
        assert!(
            reached.iter().any(|r| r.split(' ').any(|c| c == control)),
            "Tab never reached {control}; it reached {reached:?}"
        );
    }
}

/// A JavaScript expression for the row of `table` whose `attribute` is `id`.
fn row_element(table: &str, attribute: &str, id: &Value) -> String {
    let selector = format!(
        "#{table} tbody tr[{attribute}='{}']",
        id.as_str().unwrap_or("")
    );
    format!("document.querySelector({})", json!(selector))
}

/// A JavaScript condition: that row exists.
fn row(table: &str, attribute: &str, id: &Value) -> String {
    format!("{} !== null", row_element(table, attribute, id))
}

/// Writes a small website into `dir/my-site` and returns that folder.
fn write_site(dir: &Path) -> std::path::PathBuf {
    let folder = dir.join("my-site");
    std::fs::create_dir_all(folder.join("css")).unwrap();
    std::fs::create_dir_all(folder.join("notes")).unwrap();
    std::fs::write(
        folder.join("index.html"),
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{SITE_TITLE}</title><link rel=\"stylesheet\" href=\"css/site.css\">\
             <link rel=\"icon\" href=\"data:,\"></head>\
             <body><h1>Dropped</h1><a href=\"notes/read%20me.txt\">notes</a></body></html>"
        ),
    )
    .unwrap();
    std::fs::write(
        folder.join("css/site.css"),
        format!("h1 {{ color: {SITE_H1}; }}\n"),
    )
    .unwrap();
    std::fs::write(
        folder.join("notes/read me.txt"),
        "dropped from a file manager\n",
    )
    .unwrap();
    folder
}

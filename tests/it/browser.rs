//! A real browser on a website stored in a node: `libernet put` uploads
//! `tests/fixtures/site`, and headless Chromium, driven over the Chrome DevTools
//! Protocol, opens the URL the CLI printed, which sends it to the site's own origin
//! (`<id>.<key>.localhost`). The page must work as it would from any web server: its title, stylesheet, image and script load through relative links,
//! clicking a relative link reaches another page, and a file whose name has a space
//! loads by its percent-encoded name. A screenshot of the home page is left in
//! `target/test-artifacts/browser/website.png` for a person to look at.
//!
//! Why a browser: the node's own tests check bytes and headers; only a browser
//! checks that relative URLs resolve inside the bundle, that Content-Type lets the
//! CSS, image and script be used, and that the site looks like a site.
//!
//! The browser is Chromium from the system (`LIBERNET_CHROMIUM`, else `chromium`,
//! `chromium-browser` or `google-chrome` on PATH). Without one the test says loudly
//! that it skipped, unless `LIBERNET_REQUIRE_BROWSER` is set (as in CI), where it
//! fails. Every wait is bounded, and the browser is closed (or killed) when the
//! test ends, even when it fails.
//!
//! `fixture_site_works_in_a_browser_from_python_http_server` (ignored) runs the same
//! checks on the fixture served by `python3 -m http.server`: a check of the harness
//! alone, for when the node's side is in doubt.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use crate::support::TestNode;

/// How long any one wait may take: one command, one page load, one condition in the
/// page. A hang guard only: generous, because the machines running the tests are
/// shared and often loaded (nothing here measures speed).
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);
/// How long the browser may take to start and open its DevTools socket: a cold
/// Chromium on a loaded two-core machine takes seconds, sometimes tens of them.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// How long one read of the DevTools socket blocks before the deadline is checked
/// (also during the WebSocket handshake, which resumes after such a timeout).
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// One browser at a time in this test binary: two Chromiums starting at once on a
/// loaded machine each take far longer than twice one. Every browser test holds the
/// guard of `one_browser_at_a_time` for its whole run.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other browser test runs; the guard lets the next one start.
pub(crate) async fn one_browser_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_BROWSER.lock().await
}
/// How often a condition in the page is evaluated again while waiting for it.
const POLL: Duration = Duration::from_millis(50);

const HOME_TITLE: &str = "Libernet fixture: home";
const ABOUT_TITLE: &str = "Libernet fixture: about";
const SECOND_TITLE: &str = "Libernet fixture: second page";
/// The colour `css/style.css` gives `h1`, as `getComputedStyle` reports it.
const H1_COLOR: &str = "rgb(200, 30, 40)";

#[tokio::test(flavor = "multi_thread")]
async fn website_bundle_works_in_a_browser() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let _one = one_browser_at_a_time().await;
    let node = TestNode::start().await;
    let site = fixture_site();

    let mut put = Command::new(env!("CARGO_BIN_EXE_libernet"));
    put.args(["--server", &node.url, "put"]).arg(&site);
    let output = tokio::task::spawn_blocking(move || run_bounded(put, DEADLINE))
        .await
        .expect("the CLI runner");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "`libernet put {}` failed ({}):\nstdout: {stdout}\nstderr: {}",
        site.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "`libernet put` prints one line, the website's URL; got {stdout:?}"
    );
    let url = lines[0].trim().to_owned();
    check_bundle_url(&url, &node.url);

    let artifacts = artifacts_dir();
    let origin = origin_url(&url);
    let checked =
        tokio::task::spawn_blocking(move || check_website(&chromium, &url, &origin, &artifacts))
            .await;
    if let Err(e) = checked {
        // Show the browser check's own panic message, not a JoinError.
        std::panic::resume_unwind(e.into_panic());
    }
    node.stop().await;
}

/// The same browser checks on the fixture served by `python3 -m http.server`: checks
/// the harness (and the fixture) without the node. Run it by name with `--ignored`.
#[test]
#[ignore = "checks the browser harness alone; needs python3"]
fn fixture_site_works_in_a_browser_from_python_http_server() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let _one = ONE_BROWSER.blocking_lock();
    let mut child = Command::new("python3")
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
        .current_dir(fixture_site())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    let lines = watch_lines(child.stdout.take().expect("its stdout is piped"));
    let _server = KillOnDrop(child);
    // It says: `Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ...`
    let url = wait_for_line(
        &lines,
        "python3 -m http.server's address",
        DEADLINE,
        |line| {
            let (_, rest) = line.split_once("(http://")?;
            let (address, _) = rest.split_once(')')?;
            Some(format!("http://{address}"))
        },
    );
    check_website(&chromium, &url, &url, &artifacts_dir().join("python"));
}

/// The harness itself, no browser needed: a DevTools socket that answers the WebSocket
/// handshake only after several of the harness's read timeouts (as a browser on a
/// loaded machine does) is waited for, not failed with `Interrupted handshake
/// (WouldBlock)`.
#[test]
fn a_slow_devtools_handshake_is_waited_for() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let slow = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            request.push(byte[0]);
        }
        let request = String::from_utf8(request).unwrap();
        let key = request
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("a Sec-WebSocket-Key");
        std::thread::sleep(READ_TIMEOUT * 4);
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        write!(
            stream,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .unwrap();
        stream
    });
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let socket = handshake(&format!("ws://{address}/devtools/browser/x"), stream);
    assert!(socket.can_write(), "the socket is open after the handshake");
    drop(slow.join().unwrap());
}

/// Everything the browser checks on the website opened at `open_url`, which lands at
/// `base_url` (ending in `/`).
fn check_website(chromium: &Path, open_url: &str, base_url: &str, artifacts: &Path) {
    let mut browser = Browser::launch(chromium);

    browser.open_to(open_url, base_url);
    assert_eq!(
        browser.evaluate("document.title"),
        json!(HOME_TITLE),
        "the home page's <title>"
    );
    assert_eq!(
        browser.evaluate("getComputedStyle(document.querySelector('h1')).color"),
        json!(H1_COLOR),
        "the h1 colour from css/style.css: the stylesheet did not load or apply"
    );
    assert_eq!(
        browser.evaluate(
            "(() => { const i = document.getElementById('logo');
                      return [i.complete, i.naturalWidth, i.naturalHeight]; })()"
        ),
        json!([true, 16, 16]),
        "img/logo.png loaded as a 16x16 image ([complete, naturalWidth, naturalHeight])"
    );
    assert_eq!(
        browser.evaluate(
            "[document.body.dataset.scriptRan, document.getElementById('status').textContent]"
        ),
        json!(["yes", "The script ran."]),
        "js/app.js ran and changed the page"
    );

    let png = browser.screenshot();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1024,
        "the screenshot is a PNG of some substance ({} bytes)",
        png.len()
    );
    std::fs::create_dir_all(artifacts).expect("create the artifacts directory");
    let shot = artifacts.join("website.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    eprintln!(
        "browser test: screenshot of {base_url} in {}",
        shot.display()
    );

    let about = format!("{base_url}pages/about.html");
    browser.follow("next", &about, ABOUT_TITLE);
    assert_eq!(
        browser.evaluate("getComputedStyle(document.querySelector('h1')).color"),
        json!(H1_COLOR),
        "pages/about.html got ../css/style.css"
    );

    browser.follow(
        "second",
        &format!("{base_url}pages/second%20page.html"),
        SECOND_TITLE,
    );
    assert_eq!(
        browser.evaluate("document.getElementById('marker')?.textContent"),
        json!("Found by its percent-encoded name."),
        "the page whose file name has a space"
    );

    // And back up the tree: `about.html`, then `../index.html`.
    browser.follow("about", &about, ABOUT_TITLE);
    browser.follow("home", &format!("{base_url}index.html"), HOME_TITLE);
}

/// Where a browser opening the path URL `http://<loopback>:<port>/sha256/<id>/aes256/<key>/<rest>`
/// lands: the bundle's own origin, `http://<b32 id>.<b32 key>.localhost:<port>/<rest>`.
pub(crate) fn origin_url(path_url: &str) -> String {
    let (server, path) = libernet::transfer::split_url(path_url, "http://unused")
        .unwrap_or_else(|e| panic!("{path_url} is no content URL: {e}"));
    let port = server.rsplit(':').next().unwrap_or("80");
    let (locator, rest) = libernet::codec::Locator::split(&path)
        .unwrap_or_else(|e| panic!("{path_url} is no content URL: {e}"));
    let name = libernet::http::origin_name(&locator, "localhost");
    format!("http://{name}:{port}/{}", rest.unwrap_or(""))
}

/// The fixture website, in the source tree.
fn fixture_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/site")
}

/// Where the screenshot goes: `target/test-artifacts/browser/` of the source tree.
pub(crate) fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/browser")
}

/// Checks that `url` is `{node}/sha256/{64 hex}/aes256/{64 hex}/`.
fn check_bundle_url(url: &str, node: &str) {
    let shape = format!("{node}/sha256/<64 hex>/aes256/<64 hex>/");
    let parts: Option<Vec<&str>> = url
        .strip_prefix(node)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.strip_suffix('/'))
        .map(|rest| rest.split('/').collect());
    let is_hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = match parts.as_deref() {
        Some(["sha256", id, "aes256", key]) => is_hex(id) && is_hex(key),
        _ => false,
    };
    assert!(
        ok,
        "`libernet put` printed {url:?}, not a website URL {shape}"
    );
}

/// The browser to use, or `None` after saying loudly that the test is skipped.
/// Panics instead when `LIBERNET_REQUIRE_BROWSER` is set: CI must not skip.
pub(crate) fn chromium_or_skip() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LIBERNET_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(on_path);
    if found.is_none() {
        if std::env::var_os("LIBERNET_REQUIRE_BROWSER").is_some() {
            panic!(
                "LIBERNET_REQUIRE_BROWSER is set but no browser was found: install \
                 chromium, or point LIBERNET_CHROMIUM at one"
            );
        }
        // Straight to stderr: libtest captures `eprintln!` of a passing test, and
        // this must be seen.
        let banner = "\n\
             ************************************************************\n\
             * SKIPPED: browser test, chromium not found                *\n\
             * (no LIBERNET_CHROMIUM; no chromium, chromium-browser or  *\n\
             * google-chrome on PATH). Install Debian's `chromium`, or  *\n\
             * set LIBERNET_REQUIRE_BROWSER=1 to make this a failure.   *\n\
             ************************************************************\n";
        let _ = std::io::stderr().write_all(banner.as_bytes());
    }
    found
}

/// The executable file `name` in a directory of PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `command` to its end with its output captured; kills it past `limit`.
pub(crate) fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Reads a pipe to its end on a thread (so a full pipe never blocks the child).
pub(crate) fn read_all(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Reads a pipe line by line on a thread, to its end (so the child never blocks on a
/// full pipe), and hands the lines over for as long as someone listens.
pub(crate) fn watch_lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (lines, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    receiver
}

/// The first `find(line)` that is `Some`, within `limit`; panics with the lines seen
/// before if the pipe ends first or the time is up.
pub(crate) fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    what: &str,
    limit: Duration,
    find: impl Fn(&str) -> Option<String>,
) -> String {
    let deadline = Instant::now() + limit;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => match find(&line) {
                Some(found) => return found,
                None => before.push(line),
            },
            Err(e) => panic!(
                "never saw {what} ({e}); the lines before:\n{}",
                before.join("\n")
            ),
        }
    }
}

/// The WebSocket handshake with DevTools at `ws_url` over `stream`. The stream's short
/// read timeout interrupts the handshake when the browser is slow to answer (a busy
/// machine): it is resumed where it stopped until `START_DEADLINE`, not failed.
fn handshake(ws_url: &str, stream: TcpStream) -> WebSocket<TcpStream> {
    let deadline = Instant::now() + START_DEADLINE;
    let mut attempt = tungstenite::client(ws_url, stream);
    loop {
        match attempt {
            Ok((socket, _)) => return socket,
            Err(HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                attempt = mid.handshake();
            }
            Err(e) => panic!("WebSocket handshake with {ws_url}: {e}"),
        }
    }
}

/// A child process killed (and reaped) when this is dropped, even on a panic.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Headless Chromium and one page of it, driven over the DevTools protocol.
pub(crate) struct Browser {
    socket: WebSocket<TcpStream>,
    /// The page's session: page commands carry it (flattened sessions).
    session: String,
    next_id: u64,
    /// What the page reported as errors: uncaught exceptions, `console.error`, and
    /// the browser's own error entries (failed loads, CSP violations).
    problems: Vec<String>,
    // Dropped after the socket: the browser dies, then its profile is removed.
    process: KillOnDrop,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Asks the browser to close, so that it ends its own helper processes; if it is
    /// still running after a few seconds, the process guard kills it.
    fn drop(&mut self) {
        let close = json!({"id": 0, "method": "Browser.close"});
        if self.socket.send(Message::text(close.to_string())).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Browser {
    /// Starts the browser, connects to it and opens a blank page.
    pub(crate) fn launch(chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("a temp profile directory");
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                // Needed as root (CI, containers); the page is our own fixture.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-proxy-server",
                "--remote-debugging-port=0",
                "--window-size=1024,768",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromium.display()));
        let stderr = child.stderr.take().expect("the browser's stderr is piped");
        let process = KillOnDrop(child);

        // It prints `DevTools listening on ws://...` on stderr, among other lines.
        let lines = watch_lines(stderr);
        let ws_url = wait_for_line(
            &lines,
            "the browser's DevTools address",
            START_DEADLINE,
            |line| {
                let url = line.strip_prefix("DevTools listening on ")?;
                Some(url.trim().to_owned())
            },
        );

        let address: SocketAddr = ws_url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .and_then(|host| host.parse().ok())
            .unwrap_or_else(|| panic!("no host:port in the DevTools URL {ws_url:?}"));
        let stream = TcpStream::connect_timeout(&address, DEADLINE)
            .unwrap_or_else(|e| panic!("connect to DevTools at {address}: {e}"));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set a read timeout");
        stream
            .set_write_timeout(Some(DEADLINE))
            .expect("set a write timeout");
        let socket = handshake(&ws_url, stream);

        let mut browser = Browser {
            socket,
            session: String::new(),
            next_id: 0,
            problems: Vec::new(),
            process,
            _profile: profile,
        };
        let target = browser.command(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"]
            .as_str()
            .unwrap_or_else(|| panic!("Target.createTarget gave no targetId: {target}"))
            .to_owned();
        let attached = browser.command(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Target.attachToTarget gave no sessionId: {attached}"))
            .to_owned();
        browser.page("Page.enable", json!({}));
        browser.page("Runtime.enable", json!({}));
        browser.page("Log.enable", json!({}));
        browser
    }

    /// The errors the page reported since the last call (see `problems`).
    pub(crate) fn take_problems(&mut self) -> Vec<String> {
        // A round trip first, so events sent before it have been read.
        let _ = self.try_evaluate("0");
        std::mem::take(&mut self.problems)
    }

    /// Notes an event that reports an error in the page.
    fn note_event(&mut self, event: &Value) {
        let params = &event["params"];
        let problem = match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                Some(format!(
                    "uncaught: {} {}",
                    details["text"].as_str().unwrap_or(""),
                    details["exception"]["description"].as_str().unwrap_or("")
                ))
            }
            Some("Runtime.consoleAPICalled")
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a.get("value").unwrap_or(&a["description"]).to_string())
                    .collect();
                Some(format!("console.{}: {}", params["type"], args.join(" ")))
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => Some(format!(
                "{}: {} {}",
                params["entry"]["source"],
                params["entry"]["text"].as_str().unwrap_or(""),
                params["entry"]["url"].as_str().unwrap_or("")
            )),
            _ => None,
        };
        self.problems.extend(problem);
    }

    /// Presses and releases Tab (with Shift when `back`), as a keyboard user moving focus.
    pub(crate) fn press_tab(&mut self, back: bool) {
        let modifiers = if back { 8 } else { 0 };
        for kind in ["rawKeyDown", "keyUp"] {
            self.page(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Tab", "code": "Tab",
                       "windowsVirtualKeyCode": 9, "modifiers": modifiers}),
            );
        }
    }

    /// Makes the page `width` x `height` CSS pixels, as a phone (`mobile`) or a desktop.
    pub(crate) fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Drags the files and directories at `paths` from outside the page and drops them
    /// on the middle of the element `selector`, as a person dragging them from a file
    /// manager would: dragenter, dragover and drop events with real files.
    pub(crate) fn drop_files(&mut self, selector: &str, paths: &[&Path]) {
        let centre = format!(
            "(() => {{ const e = document.querySelector({}); e.scrollIntoView(); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        );
        let at = self.evaluate(&centre);
        let (x, y) = (at[0].as_f64().unwrap_or(0.0), at[1].as_f64().unwrap_or(0.0));
        let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        // dragOperationsMask 1: copy, as a file manager offers.
        let data = json!({"items": [], "files": files, "dragOperationsMask": 1});
        for kind in ["dragEnter", "dragOver", "drop"] {
            self.page(
                "Input.dispatchDragEvent",
                json!({"type": kind, "x": x, "y": y, "data": data}),
            );
        }
    }

    /// Sends one command (to the browser, or to a session) and returns its result.
    pub(crate) fn command(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_command(session, method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Sends one command and waits for the reply with its id, skipping events;
    /// `Err` for a protocol error. Panics on a broken socket or past the deadline.
    pub(crate) fn try_command(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap_or_else(|e| panic!("send {method} to the browser: {e}"));
        let deadline = Instant::now() + DEADLINE;
        loop {
            if Instant::now() > deadline {
                panic!("no reply to {method} within {DEADLINE:?}");
            }
            let text = match self.socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(e) => panic!("reading the reply to {method}: {e}"),
            };
            let reply: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("the browser sent bad JSON ({e}): {text}"));
            if reply["id"].as_u64() != Some(id) {
                // An event, or the reply to an abandoned command.
                self.note_event(&reply);
                continue;
            }
            if let Some(error) = reply.get("error") {
                return Err(error.to_string());
            }
            return Ok(reply["result"].clone());
        }
    }

    /// A command to the page's session.
    pub(crate) fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.command(Some(&session), method, params)
    }

    /// The value of a JavaScript expression in the page; `Err` if it threw or the
    /// page had no context to run it (as while it navigates).
    pub(crate) fn try_evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let session = self.session.clone();
        let result = self.try_command(
            Some(&session),
            "Runtime.evaluate",
            // A promise is waited for; any other value is the answer as is.
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("exception: {exception}"));
        }
        // `undefined` has no value.
        Ok(result["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// The value of a JavaScript expression in the page; panics if it threw.
    pub(crate) fn evaluate(&mut self, expression: &str) -> Value {
        self.try_evaluate(expression)
            .unwrap_or_else(|e| panic!("evaluating {expression:?}: {e}"))
    }

    /// Polls until `condition` is true in the page, up to the deadline.
    pub(crate) fn wait_until(&mut self, condition: &str, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let last = self.try_evaluate(condition);
            if last == Ok(Value::Bool(true)) {
                return;
            }
            if Instant::now() > deadline {
                let now = self.try_evaluate("[location.href, document.title, document.readyState]");
                panic!(
                    "{what}: not done within {DEADLINE:?}; last check {last:?}; \
                     the page is now [href, title, readyState] {now:?}"
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Navigates to `url` and waits until that page has loaded completely.
    pub(crate) fn open(&mut self, url: &str) {
        self.open_to(url, url);
    }

    /// Navigates to `url` and waits until the page it redirects to, `lands_at`, has
    /// loaded completely.
    pub(crate) fn open_to(&mut self, url: &str, lands_at: &str) {
        let navigated = self.page("Page.navigate", json!({"url": url}));
        if let Some(error) = navigated.get("errorText") {
            panic!("navigating to {url}: {error}");
        }
        self.wait_for_load(lands_at, &format!("loading {url}, to land at {lands_at}"));
    }

    /// Waits until the page at `url` has loaded completely, whatever it shows.
    pub(crate) fn wait_for_load(&mut self, url: &str, what: &str) {
        let condition = format!(
            "location.href === {} && document.readyState === 'complete'",
            json!(url)
        );
        self.wait_until(&condition, what);
    }

    /// Clicks the link with this id, waits for the page at `url` and checks its title.
    pub(crate) fn follow(&mut self, link: &str, url: &str, title: &str) {
        let what = format!("following link #{link} to {url}");
        let click = format!("document.getElementById({}).click()", json!(link));
        self.try_evaluate(&click)
            .unwrap_or_else(|e| panic!("{what}: clicking: {e}"));
        self.wait_for_load(url, &what);
        assert_eq!(
            self.evaluate("document.title"),
            json!(title),
            "{what}: the page's <title>"
        );
    }

    /// A PNG of the whole page, as a screen as tall as the page at `width` x `height`
    /// would show it (so sticky parts sit at the top and scrolling boxes paint as they
    /// do on screen); the viewport is `width` x `height` again afterwards.
    pub(crate) fn screenshot_full(&mut self, width: u32, height: u32, mobile: bool) -> Vec<u8> {
        let _ = self.evaluate("window.scrollTo(0, 0)");
        let metrics = self.page("Page.getLayoutMetrics", json!({}));
        let tall = metrics["cssContentSize"]["height"]
            .as_f64()
            .map_or(height, |h| h.ceil() as u32)
            .max(height);
        self.set_viewport(width, tall, mobile);
        // Two frames, so the page has laid out and painted at the new size.
        let _ = self
            .evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))");
        let png = self.screenshot();
        self.set_viewport(width, height, mobile);
        png
    }

    /// A PNG of what the page shows.
    pub(crate) fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let data = shot["data"]
            .as_str()
            .unwrap_or_else(|| panic!("Page.captureScreenshot gave no data: {shot}"));
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("the screenshot is base64")
    }
}

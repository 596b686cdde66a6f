//! Running a node for real: the systemd unit's `ExecStart` line run as written (and the
//! unit checked by `systemd-analyze verify`), what `serve` prints and warns, `~` in
//! paths, the log levels and the summary line, existence checks that are not misses,
//! the mesh's bandwidth limits, and the CLI's messages (a URL from another node asked
//! of `--server`, `put --include-hidden` and `--dry-run`, errors said once, no internal
//! names, a refused connection, a broken pipe, plurals, `serve --help`).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use libernet::client::Client;
use libernet::id::BlockId;

use crate::cli::{spawn_serve, wait_exit};
use crate::support::{Setup, TestNode, bytes, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_libernet");
const UNIT: &str = include_str!("../../contrib/libernet.service");

/// A child process killed when the test ends however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM to a child (the way systemd stops the unit).
fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Reads the first `n` lines of the child's stdout (then keeps the pipe open).
fn first_lines(child: &mut Child, n: usize) -> (Vec<String>, BufReader<std::process::ChildStdout>) {
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut lines = Vec::new();
    for _ in 0..n {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a line");
        lines.push(line.trim_end().to_owned());
    }
    (lines, reader)
}

fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned()
}

/// The unit's `key=value` settings of its [Service] section, in order.
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = "";
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]"
            && let Some((key, value)) = line.split_once('=')
        {
            out.push((key.to_owned(), value.to_owned()));
        }
    }
    out
}

/// `${NAME}` and `$NAME` in `word` replaced from `env`, as systemd expands ExecStart.
fn expand(word: &str, env: &[(String, String)]) -> String {
    let mut out = word.to_owned();
    for (name, value) in env.iter().rev() {
        out = out.replace(&format!("${{{name}}}"), value);
        if out == format!("${name}") {
            out = value.clone();
        }
    }
    assert!(!out.contains('$'), "{word}: unexpanded variable");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_units_exec_start_runs_a_node() {
    let settings = service_settings(UNIT);
    let get = |key: &str| {
        settings
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    // Hardened as documented.
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("StateDirectory", "libernet"),
        ("ProtectHome", "yes"),
    ] {
        assert_eq!(get(key), vec![value.to_owned()], "{key}");
    }
    let exec = get("ExecStart");
    assert_eq!(exec.len(), 1, "one ExecStart line");
    let words: Vec<&str> = exec[0].split_whitespace().collect();
    assert!(
        !exec[0].contains(['"', '\'', '\\']),
        "no quoting to interpret"
    );
    assert_eq!(words[0], "/usr/local/bin/libernet", "the installed binary");

    // What systemd would give the process: the unit's Environment= lines and
    // STATE_DIRECTORY; then, as a drop-in would, a free loopback port.
    let state = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = get("Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').expect("NAME=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    env.push(("STATE_DIRECTORY".into(), state.path().display().to_string()));
    env.push(("LIBERNET_LISTEN".into(), "127.0.0.1:0".into()));
    let args: Vec<String> = words[1..].iter().map(|w| expand(w, &env)).collect();
    let mut command = Command::new(BIN);
    command
        .args(&args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &env {
        command.env(k, v);
    }
    let mut child = Killed(command.spawn().expect("spawn the unit's command"));
    let (lines, _stdout) = first_lines(&mut child.0, 3);
    let url = url_in(&lines[0]);
    let client = Client::new(&url);
    let (_, info) = client.node_key().await.expect("the node answers, signed");
    assert_eq!(info.url, url);
    assert!(
        state.path().join("admin.token").is_file(),
        "the store is the state directory"
    );
    terminate(&child.0);
    let status = wait_exit(&mut child.0, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED: systemd-analyze is not installed; the unit was not verified");
        return;
    };
    assert!(probe.status.success());
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("libernet.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/libernet", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("libernet.service:"),
        "warnings about the unit: {stderr}"
    );
}

/// `libernet serve` with `args` on a free port; its stdout's first three lines, and the
/// child (stderr piped).
fn serve(args: &[&str], envs: &[(&str, &str)]) -> (Killed, Vec<String>) {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = Killed(command.spawn().expect("spawn serve"));
    let (lines, _) = first_lines(&mut child.0, 3);
    (child, lines)
}

/// Stops a served node with SIGTERM and returns everything it wrote on stderr.
fn stop_and_read_stderr(mut child: Killed) -> String {
    terminate(&child.0);
    assert_eq!(
        wait_exit(&mut child.0, Duration::from_secs(30)).code(),
        Some(0)
    );
    let mut text = String::new();
    if let Some(mut err) = child.0.stderr.take() {
        err.read_to_string(&mut text).unwrap();
    }
    text
}

#[test]
fn serve_prints_its_url_the_dashboard_and_the_admin_token() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().display().to_string();
    let (child, lines) = serve(
        &["--store", &store_arg, "--listen", "127.0.0.1:0"],
        &[("LIBERNET_LOG", "warn")],
    );
    let url = url_in(&lines[0]);
    assert!(lines[0].starts_with("libernet: serving http://127.0.0.1:"));
    assert_eq!(lines[1], format!("libernet: dashboard {url}/"));
    let token = store.path().join("admin.token");
    assert!(
        lines[2].starts_with(&format!("libernet: admin token in {}", token.display())),
        "{lines:?}"
    );
    let stderr = stop_and_read_stderr(child);
    assert!(
        !stderr.contains("WARN"),
        "no warning for a loopback node: {stderr}"
    );
}

#[test]
fn serve_warns_when_its_url_names_no_reachable_address() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().display().to_string();
    let (child, _) = serve(
        &[
            "--store",
            &store_arg,
            "--listen",
            "127.0.0.1:0",
            "--url",
            "http://0.0.0.0:8042",
        ],
        &[("LIBERNET_LOG", "warn")],
    );
    let stderr = stop_and_read_stderr(child);
    assert!(
        stderr.contains("WARN")
            && stderr.contains("http://0.0.0.0:8042")
            && stderr.contains("--url"),
        "{stderr}"
    );
}

#[test]
fn tilde_and_home_are_expanded_in_flags_and_the_config_file() {
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().display().to_string();
    // A flag written `--store=~/...` reaches the program unexpanded by any shell.
    let (child, lines) = serve(
        &["--store=~/node-a", "--listen", "127.0.0.1:0"],
        &[("HOME", &home_str), ("LIBERNET_LOG", "warn")],
    );
    assert!(
        lines[0].contains(&format!("store {}/node-a)", home_str)),
        "{lines:?}"
    );
    assert!(home.path().join("node-a/admin.token").is_file());
    stop_and_read_stderr(child);

    std::fs::write(
        home.path().join("libernet.toml"),
        "store = \"$HOME/node-b\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (child, lines) = serve(
        &["--config", "~/libernet.toml"],
        &[("HOME", &home_str), ("LIBERNET_LOG", "warn")],
    );
    assert!(lines[0].contains(&format!("store {}/node-b)", home_str)));
    assert!(home.path().join("node-b/admin.token").is_file());
    stop_and_read_stderr(child);
}

#[test]
fn requests_are_logged_at_debug_and_a_summary_line_at_info() {
    let store = tempfile::tempdir().unwrap();
    let store_arg = store.path().display().to_string();
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--store", &store_arg, "--listen", "127.0.0.1:0"])
        .args(["--summary-interval", "1"])
        .env_remove("LIBERNET_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Killed(command.spawn().unwrap());
    let (lines, _) = first_lines(&mut child.0, 3);
    let url = url_in(&lines[0]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::new(&url);
        let reply = client
            .send(Method::GET, "/node", &[], bytes::Bytes::new())
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    });
    // Two summary periods pass.
    std::thread::sleep(Duration::from_millis(2500));
    let stderr = stop_and_read_stderr(child);
    assert!(stderr.contains("serving"), "{stderr}");
    assert!(
        !stderr.contains(" request ") && !stderr.contains("path=/node"),
        "no per-request line at the default level: {stderr}"
    );
    let summary = stderr
        .lines()
        .find(|l| l.contains("summary") && l.contains("requests=1"))
        .unwrap_or_else(|| panic!("a summary line counting the request: {stderr}"));
    for field in ["hits=", "misses=", "bytes_out=", "peers="] {
        assert!(summary.contains(field), "{summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existence_check_that_finds_nothing_is_not_a_miss() {
    let node = TestNode::start().await;
    let absent = BlockId::of(b"an existence check");
    let reply = node
        .send(
            Method::HEAD,
            &format!("{}?wait=0", absent.path()),
            &[],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(node.metric("libernet_block_misses_total"), 0);
    assert_eq!(node.metric("libernet_block_absent_total"), 1);
    // A request that waited and found nothing is one.
    let reply = node.get(&format!("{}?wait=0.1", absent.path())).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(node.metric("libernet_block_misses_total"), 1);
}

/// Rate of the limit tests, and the size of each block: one second of traffic each.
const RATE: u64 = 100_000;
const BLOCKS: u64 = 5;

/// Node `a` fetches `BLOCKS` blocks of `RATE` bytes that only `b` holds, one after the
/// other; the elapsed time.
async fn fetch_through_mesh(
    limit_a: impl FnOnce(&mut Setup),
    limit_b: impl FnOnce(&mut Setup),
) -> Duration {
    let quiet = |s: &mut Setup| {
        s.config.gossip_interval = Duration::ZERO;
        s.config.push_interval = Duration::ZERO;
        s.config.repair_interval = Duration::ZERO;
    };
    let b = TestNode::start_adjusted(|s| {
        quiet(s);
        limit_b(s);
    })
    .await;
    let b_url = b.url.clone();
    let a = TestNode::start_adjusted(|s| {
        quiet(s);
        s.config.peers = vec![b_url];
        limit_a(s);
    })
    .await;
    let b_id = b.key.id.to_string();
    eventually(20, "a knows b", || async {
        let v: serde_json::Value = serde_json::from_slice(&a.get("/peers").await.body).unwrap();
        v["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == b_id.as_str()))
    })
    .await;
    let blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| bytes(RATE as usize, 900 + i)).collect();
    for block in &blocks {
        assert_eq!(b.put(block).await.status, StatusCode::CREATED);
    }
    let started = Instant::now();
    for block in &blocks {
        let reply = a
            .get(&format!("{}?wait=30", BlockId::of(block).path()))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(&reply.body[..], &block[..]);
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_download_limit_holds_for_blocks_fetched_from_peers() {
    let elapsed = fetch_through_mesh(|s| s.config.max_download_rate = RATE, |_| ()).await;
    // A bucket of one second's tokens pays for the first block, and the last block's
    // bytes are owed after it came: the others wait for (BLOCKS - 2) seconds of
    // tokens at least. A lower bound only: a limit can only make it slower.
    let floor = Duration::from_secs(BLOCKS - 2);
    assert!(elapsed >= floor.mul_f64(0.98), "{elapsed:?} < {floor:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_upload_limit_holds_for_blocks_answered_to_peers() {
    let elapsed = fetch_through_mesh(|_| (), |s| s.config.max_upload_rate = RATE).await;
    // b pays for each answer before sending it; its bucket held one block's worth.
    let floor = Duration::from_secs(BLOCKS - 1);
    assert!(elapsed >= floor.mul_f64(0.98), "{elapsed:?} < {floor:?}");
}

/// Runs the client with `args`; its output.
fn client(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("LIBERNET_SERVER")
        .env_remove("LIBERNET_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run the client")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok_stdout(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(out));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_url_from_another_node_is_asked_of_the_given_server() {
    let (a_store, b_store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, a_url) = spawn_serve(a_store.path());
    let (b, b_url) = spawn_serve(b_store.path());
    let (a, b) = (Killed(a), Killed(b));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    std::fs::write(&file, b"the same bytes on both nodes").unwrap();
    let file_arg = file.display().to_string();
    // Convergent encryption: the same file has the same URL path on every node.
    let on_a = ok_stdout(&client(&["--server", &a_url, "put", &file_arg]));
    let on_b = ok_stdout(&client(&["--server", &b_url, "put", &file_arg]));
    assert_eq!(on_a.strip_prefix(&a_url), on_b.strip_prefix(&b_url));
    drop(a); // a's URL no longer answers: only b can serve it.

    let out = client(&["--server", &b_url, "get", &on_a]);
    assert_eq!(ok_stdout(&out), "the same bytes on both nodes");
    let said = stderr_of(&out);
    assert!(
        said.contains(&format!("the URL names {a_url}; asking {b_url}")),
        "{said}"
    );
    // Without --server, the URL's own node is asked (and is gone).
    let out = client(&["get", &on_a]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    drop(b);
}

/// A directory with dotfiles at two levels.
fn site_with_dotfiles(root: &Path) {
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join(".git/config"), b"[core]").unwrap();
    std::fs::write(root.join(".env"), b"SECRET=1").unwrap();
    std::fs::write(root.join("index.html"), b"<h1>hi</h1>").unwrap();
    std::fs::write(root.join("sub/.hidden"), b"h").unwrap();
    std::fs::write(root.join("sub/page.html"), b"<p>page</p>").unwrap();
}

fn blocks_on(url: &str) -> u64 {
    let out = client(&["--server", url, "node"]);
    let info: serde_json::Value = serde_json::from_str(&ok_stdout(&out)).unwrap();
    info["store"]["blocks"].as_u64().unwrap()
}

#[test]
fn put_leaves_dotfiles_out_unless_asked_and_dry_run_sends_nothing() {
    let store = tempfile::tempdir().unwrap();
    let (served, url) = spawn_serve(store.path());
    let _served = Killed(served);
    let site = tempfile::tempdir().unwrap();
    site_with_dotfiles(site.path());
    let site_arg = site.path().display().to_string();

    let before = blocks_on(&url);
    let out = client(&["--server", &url, "put", "--dry-run", &site_arg]);
    let listed = ok_stdout(&out);
    assert_eq!(listed, "11\tindex.html\n11\tsub/page.html", "{listed}");
    let said = stderr_of(&out);
    assert!(
        said.contains("would put 2 files, 22 bytes; nothing sent"),
        "{said}"
    );
    assert!(
        said.contains("left out 3 hidden entries (.env, .git, sub/.hidden)"),
        "{said}"
    );
    assert_eq!(blocks_on(&url), before, "a dry run stores nothing");

    let put = ok_stdout(&client(&["--server", &url, "put", &site_arg]));
    let names = ok_stdout(&client(&["--server", &url, "bundle", "ls", &put]));
    assert!(
        names.contains("index.html") && names.contains("sub/page.html"),
        "{names}"
    );
    assert!(
        !names.contains(".env") && !names.contains(".git") && !names.contains(".hidden"),
        "{names}"
    );

    let all = ok_stdout(&client(&[
        "--server",
        &url,
        "put",
        "--include-hidden",
        &site_arg,
    ]));
    let names = ok_stdout(&client(&["--server", &url, "bundle", "ls", &all]));
    for name in [".env", ".git/config", "sub/.hidden", "index.html"] {
        assert!(names.contains(name), "{name} in {names}");
    }
    let listed = ok_stdout(&client(&[
        "--server",
        &url,
        "bundle",
        "create",
        "--dry-run",
        "--include-hidden",
        &site_arg,
    ]));
    assert_eq!(listed.lines().count(), 5, "{listed}");
}

#[test]
fn cli_messages_say_each_thing_once_and_plainly() {
    let store = tempfile::tempdir().unwrap();
    let (served, url) = spawn_serve(store.path());
    let _served = Killed(served);
    let work = tempfile::tempdir().unwrap();

    // An OS error is said once.
    let missing = work.path().join("no-such-file").display().to_string();
    let out = client(&["--server", &url, "put", &missing]);
    let said = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        said.matches("No such file or directory").count(),
        1,
        "{said}"
    );
    assert!(said.contains(&missing), "{said}");

    // Plurals.
    let one = work.path().join("one.txt");
    std::fs::write(&one, b"1").unwrap();
    let out = client(&["--server", &url, "put", &one.display().to_string()]);
    let file_url = ok_stdout(&out);
    let said = stderr_of(&out);
    assert!(said.contains("put 1 file, 1 byte: "), "{said}");

    // A destination that cannot be written names the destination, never a temporary.
    let dest = work.path().join("absent-dir/copy.txt");
    let out = client(&[
        "--server",
        &url,
        "get",
        &file_url,
        "-o",
        &dest.display().to_string(),
    ]);
    let said = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains(&dest.display().to_string()), "{said}");
    assert!(!said.contains("partial"), "{said}");
    // Same for a bundle restored where its staging directory cannot be made.
    let site = work.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("a.txt"), b"a").unwrap();
    let bundle = ok_stdout(&client(&[
        "--server",
        &url,
        "put",
        &site.display().to_string(),
    ]));
    let blocker = work.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let under_file = blocker.join("restored");
    let out = client(&[
        "--server",
        &url,
        "get",
        &bundle,
        "-o",
        &under_file.display().to_string(),
    ]);
    let said = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        !said.contains("partial") && !said.contains(".libernet-restore"),
        "{said}"
    );

    // --server without a scheme is explained.
    let out = client(&["--server", "127.0.0.1:8042", "node"]);
    let said = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        said.contains("needs a scheme: give http://127.0.0.1:8042"),
        "{said}"
    );

    // No node there: how to start one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let out = client(&["--server", &closed, "node"]);
    let said = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        said.trim(),
        format!("libernet: no node at {closed}: start one with `libernet serve`")
    );
}

#[test]
fn a_reader_closing_the_pipe_ends_get_silently() {
    let store = tempfile::tempdir().unwrap();
    let (served, url) = spawn_serve(store.path());
    let _served = Killed(served);
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.bin");
    std::fs::write(&big, bytes(3 << 20, 5)).unwrap();
    let file_url = ok_stdout(&client(&[
        "--server",
        &url,
        "put",
        &big.display().to_string(),
    ]));
    // `libernet get URL | head -c 10`
    let mut child = Command::new(BIN)
        .args(["--server", &url, "get", &file_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stderr_of(&out), "", "nothing said about the closed pipe");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn serve_help_shows_only_serves_options() {
    for args in [
        &["serve", "--help"][..],
        &["help", "serve"],
        &["serve", "-h"],
    ] {
        let out = client(args);
        let help = ok_stdout(&out);
        for flag in [
            "--store",
            "--listen",
            "--max-upload-rate",
            "--max-download-rate",
        ] {
            assert!(help.contains(flag), "{args:?}: {flag} in {help}");
        }
        for flag in ["--server", "--token-file", "--quiet"] {
            assert!(!help.contains(flag), "{args:?}: {flag} in {help}");
        }
    }
    // The client's help still has them.
    let help = ok_stdout(&client(&["get", "--help"]));
    assert!(help.contains("--server"));
}

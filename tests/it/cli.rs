//! The real binary: `serve` starts, answers, refuses a locked store, exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libernet::client::{Client, unix_now, verify_reply};

const BIN: &str = env!("CARGO_BIN_EXE_libernet");

/// Starts `libernet serve` on a free loopback port; returns the child and its URL.
pub(crate) fn spawn_serve(store: &std::path::Path) -> (Child, String) {
    spawn_serve_with(store, &[])
}

/// `spawn_serve` with more arguments (its stderr, the log at `warn`, is piped: read it).
pub(crate) fn spawn_serve_with(store: &std::path::Path, more: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--store"])
        .arg(store)
        .args(["--listen", "127.0.0.1:0", "--wait", "1"])
        .args(more)
        .env("LIBERNET_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn libernet");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url)
}

pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("libernet did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn serve_answers_refuses_a_second_server_and_exits_0_on_sigterm() {
    let temp = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_serve(temp.path());
    let client = Client::new(&url);
    let (key, info) = client.node_key().await.expect("the node answers, signed");
    assert_eq!(info.url, url);

    let data = b"hello from the CLI test".to_vec();
    let path = libernet::id::BlockId::of(&data).path();
    let put = client
        .send(hyper::Method::PUT, &path, &[], data.clone())
        .await
        .unwrap();
    verify_reply(&put, "PUT", &path, &key, unix_now()).unwrap();
    assert_eq!(put.status, 201);

    let second = Command::new(BIN)
        .args(["serve", "--store"])
        .arg(temp.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&temp.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pid {}", child.id())), "{stderr}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");

    // The acknowledged block is there for the next server.
    let (mut child, url) = spawn_serve(temp.path());
    let got = Client::new(&url)
        .send(hyper::Method::GET, &path, &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(&got.body[..], &data[..]);
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(20)).code(),
        Some(0),
        "exit after SIGINT"
    );
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    let temp = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 4] = [
        &["serve", "--quota", "lots"],
        &["serve", "--custody-share", "101"],
        &["serve", "--listen", "nowhere"],
        &["serve", "--wait=-3"],
    ];
    for args in cases {
        let out = Command::new(BIN)
            .args(args)
            .arg("--store")
            .arg(temp.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("libernet: ") || stderr.contains("error:"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line, got {stderr}"
        );
    }
}

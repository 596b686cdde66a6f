//! Hostile and malformed input over raw TCP: always a 4xx (or a closed connection),
//! never a 5xx, a crash or a hang. Bounds: header read timeout, connection cap and its
//! reserve, minimum body rate, upload part headers.

use std::time::Duration;

use libernet::id::BlockId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Setup, TestNode};

/// Reads one HTTP/1.1 response (headers plus Content-Length body); None on close or
/// after `limit`.
async fn read_response(stream: &mut TcpStream, limit: Duration) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap_or(0));
                if buf.len() >= end + 4 + len {
                    let status = head.split_whitespace().nth(1)?.parse().ok()?;
                    return Some((
                        status,
                        String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned(),
                    ));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}

async fn exchange(node: &TestNode, request: &[u8]) -> Option<(u16, String)> {
    let addr = node.url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_response(&mut stream, Duration::from_secs(10)).await
}

#[tokio::test]
async fn malformed_requests_get_4xx_never_5xx() {
    let node = TestNode::start().await;
    let id = BlockId::of(b"x");
    let long_header = format!(
        "GET /node HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let cases: Vec<(String, Vec<u8>, u16)> = vec![
        ("chunked PUT".into(), format!("PUT /sha256/{id} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n").into_bytes(), 411),
        // No length and no transfer coding: an empty body, which does not hash to this id.
        ("PUT without length".into(), format!("PUT /sha256/{id} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").into_bytes(), 422),
        ("declared 2 MiB, nothing sent".into(), format!("PUT /sha256/{id} HTTP/1.1\r\nHost: a\r\nContent-Length: 2097152\r\n\r\n").into_bytes(), 413),
        ("unknown method".into(), format!("BREW /sha256/{id} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(), 405),
        ("DELETE without the admin token".into(), format!("DELETE /sha256/{id} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(), 401),
        ("DELETE with a wrong token".into(), format!("DELETE /sha256/{id} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer 00\r\n\r\n").into_bytes(), 401),
        ("POST".into(), format!("POST /sha256/{id} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(), 405),
        ("announce without a signature".into(), b"PUT /peers HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}".to_vec(), 401),
        ("garbage signature".into(), b"GET /peers HTTP/1.1\r\nHost: a\r\nSignature-Input: node=(;\r\nSignature: x\r\n\r\n".to_vec(), 200),
        ("stats without the admin token".into(), b"GET /stats HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 401),
        ("encoded traversal".into(), b"GET /sha256/..%2F..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
        ("short id".into(), b"GET /sha256/abc HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
        ("unknown path".into(), b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 404),
        ("bad wait".into(), format!("GET /sha256/{id}?wait=soon HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes(), 400),
        ("garbage request line".into(), b"HELLO THERE\r\n\r\n".to_vec(), 400),
        ("bad content-length".into(), format!("PUT /sha256/{id} HTTP/1.1\r\nHost: a\r\nContent-Length: ten\r\n\r\n").into_bytes(), 400),
        ("control char in header".into(), b"GET /node HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n".to_vec(), 400),
        ("huge header".into(), long_header.into_bytes(), 431),
    ];
    for (name, request, want) in cases {
        let got = exchange(&node, &request).await;
        let (status, text) = got.unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(status, want, "{name}: {text}");
    }
    // Still healthy afterwards.
    assert_eq!(node.get("/node").await.status, 200);
    node.stop().await;
}

#[tokio::test]
async fn a_body_cut_short_does_not_store_anything() {
    let node = TestNode::start().await;
    let data = vec![7u8; 5000];
    let id = BlockId::of(&data);
    let addr = node.url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("PUT /sha256/{id} HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..1000]).await.unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = node.get(&format!("{}?wait=0", id.path())).await;
    assert_eq!(reply.status, 504);
    assert_eq!(crate::support::temp_files(&node.dir), 0);
    node.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_by_the_header_read_timeout() {
    let node = TestNode::start_adjusted(|s: &mut Setup| {
        s.options.header_read_timeout = Duration::from_millis(300)
    })
    .await;
    let addr = node.url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /node HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // The server must end the exchange (a 408 or a close) long before this limit.
    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    match outcome {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => assert!(
            String::from_utf8_lossy(&buf[..n]).contains(" 408 "),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => panic!("the server kept a connection with incomplete headers open for 10 s"),
    }
    node.stop().await;
}

#[tokio::test]
async fn the_connection_cap_holds_further_connections_back() {
    let node = TestNode::start_adjusted(|s: &mut Setup| s.options.max_connections = 2).await;
    let addr = node.url.strip_prefix("http://").unwrap().to_owned();
    let request = b"GET /sha256/like/0000000000000000000000000000000000000000000000000000000000000000 HTTP/1.1\r\nHost: a\r\n\r\n";
    // The test client keeps its start-up connection alive in its pool, holding one of the
    // two permits. Raw connections take the rest: those answered are kept open; one
    // that is not answered is dropped (the server then sees it closed).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(request).await.unwrap();
        if read_response(&mut s, Duration::from_millis(500))
            .await
            .is_some()
        {
            held.push(s);
        }
    }
    assert!(!held.is_empty(), "no connection was served at all");
    // Every permit is held now.
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(request).await.unwrap();
    assert!(
        read_response(&mut third, Duration::from_millis(500))
            .await
            .is_none(),
        "a connection beyond the cap was served"
    );
    drop(held);
    let answered = read_response(&mut third, Duration::from_secs(10)).await;
    assert_eq!(answered.map(|r| r.0), Some(404));
    node.stop().await;
}

#[tokio::test]
async fn an_upload_part_whose_headers_never_end_is_refused() {
    let node = TestNode::start().await;
    let addr = node.url.strip_prefix("http://").unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // 4 MiB declared, 1 MiB of one endless header line sent, then nothing: the node
    // must refuse from what it has (before, it kept reading into the parser's buffer and
    // then waited for the rest).
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {}\r\n\r\n\
         --b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nX-Pad: ",
        node.admin_token(),
        4 << 20
    );
    let sender = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&vec![b'a'; 1 << 20]).await;
        // Keep the connection open, sending nothing more.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    // A hang guard only: the upload's idle timeout (30 s) would answer 408.
    let _ = tokio::time::timeout(Duration::from_secs(20), read).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    sender.abort();
    assert_eq!(node.get("/node").await.status, 200);
    node.stop().await;
}

/// Reads from `stream` until the server closes it or answers 408 (true), or `limit`
/// passes (false).
async fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut seen = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    seen.extend_from_slice(&chunk[..n]);
                    if String::from_utf8_lossy(&seen).contains(" 408 ") {
                        return true;
                    }
                }
            }
        }
    };
    tokio::time::timeout(limit, read).await.unwrap_or(false)
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_below_the_minimum_rate() {
    let node = TestNode::start().await;
    let addr = node.url.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let id = BlockId::of(b"never sent");
    let head = format!("PUT /sha256/{id} HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // A byte every 200 ms: far below the minimum rate, never idle for long.
    let trickle = tokio::spawn(async move {
        loop {
            if writer.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut reply = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = reader.read(&mut chunk).await {
            reply.extend_from_slice(&chunk[..n]);
        }
    };
    // A hang guard only: before the minimum rate, the body had BODY_READ_TIMEOUT (30 s).
    let cut = tokio::time::timeout(Duration::from_secs(20), read).await;
    trickle.abort();
    assert!(
        cut.is_ok(),
        "the trickled body kept its connection for 20 s"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408 "),
        "{reply}"
    );
    node.stop().await;
}

#[tokio::test]
async fn idle_and_slow_connections_give_their_slots_to_new_clients() {
    const MAX: usize = 16;
    for kind in ["slow headers", "idle kept-alive"] {
        // A header read timeout far beyond the hang guard: only the early closing of
        // idle connections under pressure can let the new client in.
        let node = TestNode::start_adjusted(|s: &mut Setup| {
            s.options.max_connections = MAX;
            s.options.header_read_timeout = Duration::from_secs(120);
        })
        .await;
        let addr = node.url.strip_prefix("http://").unwrap().to_owned();
        // The test client's pooled connection holds one slot; these take the rest.
        let mut held = Vec::new();
        for _ in 0..MAX - 1 {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            if kind == "slow headers" {
                s.write_all(b"GET /node HTTP/1.1\r\nHost: a\r\n")
                    .await
                    .unwrap();
            } else {
                s.write_all(b"GET /node HTTP/1.1\r\nHost: a\r\n\r\n")
                    .await
                    .unwrap();
                // Answered, or closed already if slots ran short while connecting.
                let _ = read_response(&mut s, Duration::from_secs(10)).await;
            }
            held.push(s);
        }
        let mut fresh = TcpStream::connect(&addr).await.unwrap();
        fresh
            .write_all(b"GET /node HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        // Hang guard only.
        let answered = read_response(&mut fresh, Duration::from_secs(30)).await;
        assert_eq!(answered.map(|r| r.0), Some(200), "{kind}: new client");
        // Some of the held connections were closed to let it in (a hang guard of
        // rounds over all of them, not a timing).
        let mut closed = false;
        for _ in 0..100 {
            for s in &mut held {
                closed |= closed_by_server(s, Duration::from_millis(10)).await;
            }
            if closed {
                break;
            }
        }
        assert!(closed, "{kind}: no held connection was closed");
        drop(held);
        node.stop().await;
    }
}

/// A connection is handed to hyper only once its first bytes arrive (so a silent one
/// holds no HTTP buffers): a client that connects and waits before sending is still
/// served, one that stays silent is closed after the header read timeout, and one still
/// silent when the node stops is closed by the stop.
#[tokio::test]
async fn silent_connections_are_served_late_or_closed() {
    let node = TestNode::start_adjusted(|s: &mut Setup| {
        s.options.header_read_timeout = Duration::from_millis(500)
    })
    .await;
    let addr = node.url.strip_prefix("http://").unwrap().to_owned();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut late = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    late.write_all(b"GET /node HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(&mut late, Duration::from_secs(10)).await;
    assert_eq!(answer.map(|r| r.0), Some(200));
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(10)).await,
        "a silent connection outlived the header read timeout"
    );
    let mut at_stop = TcpStream::connect(&addr).await.unwrap();
    // Accepted and waiting for its first bytes, or still in the kernel's queue: the
    // stop closes it either way, without waiting for the header read timeout.
    assert_eq!(node.get("/node").await.status, 200);
    let stopping = tokio::spawn(async move { node.stop().await });
    assert!(
        closed_by_server(&mut at_stop, Duration::from_secs(10)).await,
        "a silent connection was left open by the stop"
    );
    stopping.await.unwrap();
}

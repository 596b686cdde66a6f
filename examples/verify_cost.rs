//! What checking a node's replies costs the client (issue 16): a real node on a temp
//! store in this process answers a few realistic requests once (PUTs and GETs of a
//! 4 KiB and a 64 KiB block); then each reply is checked
//! `COUNT` times (31,000 by default: the replies of the first backup of the 1 GiB
//! benchmark tree before batches) with `client::verify_reply`, and, for the block GETs,
//! with the check a restore makes instead (SHA-256 of the body against the id).
//!
//!     cargo run --release --example verify_cost [COUNT]
//!
//! Prints per-check microseconds and the total for `COUNT` checks, per reply kind.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::Method;
use libernet::client::{Client, Reply, unix_now, verify_reply};
use libernet::config::Config;
use libernet::http::{ServerOptions, serve};
use libernet::id::BlockId;
use libernet::node::Node;

/// Checks of each reply when no count is given: 31,000, the signed replies of the
/// benchmark's first backup with one pin check and one PUT per block.
const DEFAULT_COUNT: usize = 31_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => DEFAULT_COUNT,
    };
    let temp = tempfile::tempdir()?;
    let config = Config::for_store(temp.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let node = Arc::new(Node::open(&config, url.clone())?);
    node.start();
    let options = ServerOptions::new(config.max_connections, config.wait);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, node, options, async {
        let _ = stopped.await;
    }));
    let client = Client::new(&url);
    let (key, _) = client.node_key().await?;

    let mut replies: Vec<(String, String, Reply, Option<BlockId>)> = Vec::new();
    for size in [4 * 1024, 64 * 1024] {
        let block: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let id = BlockId::of(&block);
        let path = format!("/sha256/{id}");
        let put = client
            .send(Method::PUT, &path, &[], Bytes::from(block))
            .await?;
        replies.push((
            format!("PUT answer ({} KiB)", size / 1024),
            path.clone(),
            put,
            None,
        ));
        let get = client.send(Method::GET, &path, &[], Bytes::new()).await?;
        replies.push((
            format!("GET {} KiB block", size / 1024),
            path,
            get,
            Some(id),
        ));
    }
    let _ = stop.send(());
    let _ = server.await;

    println!("checks per reply: {count}");
    let now = unix_now();
    for (what, path, reply, id) in &replies {
        let method = if what.starts_with("PUT") {
            "PUT"
        } else {
            "GET"
        };
        verify_reply(reply, method, path, &key, now)?;
        let started = Instant::now();
        for _ in 0..count {
            std::hint::black_box(verify_reply(reply, method, path, &key, now)?);
        }
        let full = started.elapsed().as_secs_f64();
        print!(
            "{what:<20} verify_reply: {:7.1} us each, {:6.3} s for {count}",
            full * 1e6 / count as f64,
            full
        );
        if let Some(id) = id {
            let started = Instant::now();
            for _ in 0..count {
                std::hint::black_box(BlockId::of(&reply.body) == *id);
            }
            let hash = started.elapsed().as_secs_f64();
            print!(
                "; digest == id only: {:6.1} us each, {:6.3} s",
                hash * 1e6 / count as f64,
                hash
            );
        }
        println!();
    }
    Ok(())
}

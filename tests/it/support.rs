//! `TestNode`: a real node (store in a temp dir, server on 127.0.0.1:0) in this process,
//! and a client whose every reply is checked with the verifier (digest and signature).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use libernet::client::{Client, NodeKey, Reply, unix_now, verify_reply};
use libernet::config::Config;
use libernet::http::{ServerOptions, serve};
use libernet::id::BlockId;
use libernet::node::{Node, NodeError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A node serving on loopback for one test.
pub struct TestNode {
    pub url: String,
    pub client: Client,
    pub key: NodeKey,
    pub node: Arc<Node>,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _temp: Option<tempfile::TempDir>,
}

/// Settings a test may change before starting a node.
#[derive(Clone)]
pub struct Setup {
    pub config: Config,
    pub options: ServerOptions,
}

impl Setup {
    pub fn new(dir: &Path) -> Setup {
        let config = Config::for_store(dir);
        let options = ServerOptions::new(config.max_connections, config.wait);
        Setup { config, options }
    }
}

impl TestNode {
    /// A node on a fresh temp store with default settings.
    pub async fn start() -> TestNode {
        let temp = tempfile::tempdir().unwrap();
        let mut node = TestNode::start_with(Setup::new(temp.path())).await.unwrap();
        node._temp = Some(temp);
        node
    }

    /// A node with `adjust` applied to the default settings, on a fresh temp store.
    pub async fn start_adjusted(adjust: impl FnOnce(&mut Setup)) -> TestNode {
        let temp = tempfile::tempdir().unwrap();
        let mut setup = Setup::new(temp.path());
        adjust(&mut setup);
        let mut node = TestNode::start_with(setup).await.unwrap();
        node._temp = Some(temp);
        node
    }

    /// A node over `setup.config.store` (the caller owns the directory).
    pub async fn start_with(setup: Setup) -> Result<TestNode, NodeError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let node = Arc::new(Node::open(&setup.config, url.clone())?);
        node.start();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, node.clone(), setup.options, async {
            let _ = stopped.await;
        }));
        let client = Client::new(&url);
        let (key, info) = client.node_key().await.expect("node answers /node, signed");
        assert_eq!(info.url, url);
        Ok(TestNode {
            url,
            client,
            key,
            node,
            dir: setup.config.store.clone(),
            stop: Some(stop),
            task: Some(task),
            _temp: None,
        })
    }

    /// Sends a request and checks the reply with the verifier; panics if it fails.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let m = method.to_string();
        let reply = self
            .client
            .send(method, path, headers, body)
            .await
            .expect("transport");
        if let Err(e) = verify_reply(&reply, &m, path, &self.key, unix_now()) {
            panic!(
                "{m} {path}: reply {} failed verification: {e}",
                reply.status
            );
        }
        reply
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn put(&self, bytes: &[u8]) -> Reply {
        let path = BlockId::of(bytes).path();
        self.send(Method::PUT, &path, &[], Bytes::copy_from_slice(bytes))
            .await
    }

    /// Sends a GET from a task, for a request that will wait; returns the task.
    pub fn spawn_get(
        &self,
        path: &str,
    ) -> JoinHandle<Result<Reply, libernet::client::ClientError>> {
        let client = self.client.clone();
        let path = path.to_owned();
        tokio::spawn(async move { client.send(Method::GET, &path, &[], Bytes::new()).await })
    }

    /// The admin token from the store.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A request with the admin token.
    pub async fn admin(&self, method: Method, path: &str) -> Reply {
        let auth = format!("Bearer {}", self.admin_token());
        self.send(method, path, &[("authorization", &auth)], Bytes::new())
            .await
    }

    /// The value of a metric line `name value` (0 when absent).
    pub fn metric(&self, name: &str) -> u64 {
        let text = self.node.render_metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// True when the node holds `id` now (a HEAD that does not wait).
    pub async fn holds(&self, id: &BlockId) -> bool {
        let reply = self
            .send(
                Method::HEAD,
                &format!("/sha256/{id}?wait=0"),
                &[],
                Bytes::new(),
            )
            .await;
        reply.status == hyper::StatusCode::OK
    }

    /// Waits (up to 10 s) until exactly `n` requests are waiting for blocks.
    pub async fn wait_for_waiters(&self, n: usize) {
        let line = format!("\nlibernet_waiting_requests {n}\n");
        for _ in 0..500 {
            if self.node.render_metrics().contains(&line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("never saw {n} waiting requests");
    }

    /// Stops the server (draining) and releases the store.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server drains in time")
                .expect("server task")
                .expect("server result");
        }
    }

    /// Triggers shutdown without waiting; returns the server task.
    pub fn begin_stop(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("running")
    }
}

/// Deterministic pseudo-random bytes (a block's content), different per `seed`.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes in progress (or left over) anywhere under the store's `blocks/`.
pub fn temp_files(store: &Path) -> usize {
    walkdir::WalkDir::new(store.join("blocks"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy();
            name.starts_with('.') && name.ends_with(".tmp")
        })
        .count()
}

/// Polls `check` every 50 ms until it holds or `secs` pass; panics with `what` then.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

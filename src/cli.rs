//! The command line: clap subcommands and their exit codes (0 ok, 1 not found or failed
//! verification, 2 error). `serve` runs a node until SIGINT or SIGTERM, then drains.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, ServeArgs};
use crate::http::{self, ServerOptions};
use crate::mesh::Standalone;
use crate::node::Node;

/// Exit code of a command that failed for any reason but "not found".
pub const EXIT_ERROR: u8 = 2;

/// libernet: a node of a peer-to-peer, content-addressed block cache.
#[derive(Debug, Parser)]
#[command(name = "libernet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node over one store until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

/// Parses the command line, runs the command, maps the outcome to an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("libernet: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("libernet: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = config
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let node = Arc::new(Node::open(&config, url.clone(), Box::new(Standalone))?);
    // Tests and scripts read this line to learn the port.
    println!(
        "libernet: serving {url} (node {}, store {})",
        node.identity().id(),
        config.store.display()
    );
    tracing::info!(%url, node = %node.identity().id(), store = %config.store.display(), blocks = node.store_stats().blocks, "serving");
    let scrub = tokio::spawn(node.clone().scrub_forever(config.scrub_rate));
    let options = ServerOptions::new(config.max_connections, config.wait);
    http::serve(listener, node, options, shutdown_signal()).await?;
    scrub.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Resolves at the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        _ = term => tracing::info!("SIGTERM: draining"),
    }
}

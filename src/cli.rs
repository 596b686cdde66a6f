//! The command line: clap subcommands and their exit codes (0 ok, 1 not found or failed
//! verification, 2 error). `serve` runs a node until SIGINT or SIGTERM, then drains; the
//! other commands are clients of a node (`--server`), built on `transfer`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::client::{ClientError, Remote};
use crate::codec::CodecError;
use crate::config::{Config, ServeArgs};
use crate::http::{self, ServerOptions};
use crate::mesh::PeersView;
use crate::node::Node;
use crate::transfer::{self, Mismatch, Options, PutReport, Target};

/// Exit code of "not found" and "did not verify".
pub const EXIT_NOT_FOUND: u8 = 1;

/// Exit code of a command that failed for any other reason.
pub const EXIT_ERROR: u8 = 2;

/// The node a client command talks to when neither `--server` nor `LIBERNET_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8042";

/// libernet: a node of a peer-to-peer, content-addressed block cache, and its client.
#[derive(Debug, Parser)]
#[command(name = "libernet", version, about)]
pub struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options of the client commands.
#[derive(Debug, Args)]
struct ClientArgs {
    /// The node to talk to.
    #[arg(long, global = true, env = "LIBERNET_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// No progress bars and no summary lines.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node over one store until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Encrypt a file, a directory or standard input (`-`) into the node; prints the URL.
    Put {
        /// File, directory, or `-` for standard input.
        path: PathBuf,
        /// File name for standard input's content.
        #[arg(long, default_value = "stdin")]
        name: String,
    },
    /// Fetch a URL: a file (to standard output, or -o PATH) or a bundle (into -o DIR).
    Get {
        /// `http://HOST/sha256/...` or `/sha256/...` (then from --server).
        url: String,
        /// Where to write: a file, or a directory for a bundle (absent or empty).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// List the ids the node holds nearest to ID (at least 12 equal leading bits).
    Like {
        /// 64 hex digits, or `/sha256/<id>`.
        id: String,
    },
    /// Bundles: create one from a directory, list one, restore one.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Show the node's identity and store figures (signature checked).
    Node,
    /// List the node's peers: id, URL, health, latency, last seen (signature checked).
    Peers {
        /// Print the node's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Put a directory as a bundle; prints its URL (the same as `put DIR`).
    Create {
        /// The directory.
        dir: PathBuf,
    },
    /// List a bundle's (or one of its directories') entries.
    Ls {
        /// The bundle's URL.
        url: String,
    },
    /// Restore a bundle into DIR (absent or empty): contents, read-only and executable
    /// bits, modification times of files and links, symlinks, empty directories.
    Restore {
        /// The bundle's URL.
        url: String,
        /// Destination directory.
        dir: PathBuf,
    },
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
            command => client_command(command, &cli.client).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("libernet: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 1 when the failure is "not found" or "did not verify", else 2.
fn exit_code(e: &anyhow::Error) -> u8 {
    let not_found = e.chain().any(|cause| {
        cause
            .downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_not_found_or_unverified)
            || cause.downcast_ref::<CodecError>() == Some(&CodecError::WrongKey)
            || cause.downcast_ref::<Mismatch>().is_some()
    });
    if not_found {
        EXIT_NOT_FOUND
    } else {
        EXIT_ERROR
    }
}

async fn client_command(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let options = Options {
        progress: !args.quiet,
    };
    let connect = |base: String| async move {
        Remote::connect(&base)
            .await
            .with_context(|| format!("cannot reach the node at {base}"))
    };
    match command {
        Command::Serve(_) => unreachable!("handled by run"),
        Command::Put { path, name } => {
            let remote = connect(args.server.clone()).await?;
            let started = Instant::now();
            let report = if path.as_os_str() == "-" {
                transfer::put_stdin(&remote, &name, options).await?
            } else {
                transfer::put_path(&remote, &path, options).await?
            };
            print_put(&report, args.quiet, started);
        }
        Command::Bundle(BundleCommand::Create { dir }) => {
            if !dir.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            let remote = connect(args.server.clone()).await?;
            let started = Instant::now();
            let report = transfer::put_path(&remote, &dir, options).await?;
            print_put(&report, args.quiet, started);
        }
        Command::Get { url, output } => {
            let (base, path) = transfer::split_url(&url, &args.server)?;
            let remote = connect(base).await?;
            get(&remote, &path, output, options).await?;
        }
        Command::Bundle(BundleCommand::Restore { url, dir }) => {
            let (base, path) = transfer::split_url(&url, &args.server)?;
            let remote = connect(base).await?;
            match transfer::resolve(&remote, &path).await? {
                Target::Tree(tree) => {
                    transfer::restore(&remote, tree, &dir, options).await?;
                }
                _ => bail!("{url} is not a bundle"),
            }
        }
        Command::Bundle(BundleCommand::Ls { url }) => {
            let (base, path) = transfer::split_url(&url, &args.server)?;
            let remote = connect(base).await?;
            let tree = match transfer::resolve(&remote, &path).await? {
                Target::Tree(tree) => tree,
                _ => bail!("{url} is not a bundle"),
            };
            let mut out = std::io::stdout().lock();
            for line in transfer::list_lines(&tree) {
                writeln!(out, "{line}")?;
            }
        }
        Command::Like { id } => {
            let id = transfer::parse_id(&id)?;
            let remote = connect(args.server.clone()).await?;
            let found = remote.like(&id).await?;
            if found.is_empty() {
                return Err(ClientError::NotFound(id))
                    .context("no stored id shares 12 leading bits with it");
            }
            let mut out = std::io::stdout().lock();
            for (near, size) in found {
                writeln!(out, "/sha256/{near} {size} {}", near.match_score(&id))?;
            }
        }
        Command::Node => {
            let remote = connect(args.server.clone()).await?;
            println!("{}", serde_json::to_string_pretty(remote.info())?);
        }
        Command::Peers { json } => {
            let remote = connect(args.server.clone()).await?;
            let view = remote.peers().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", peers_table(&view, crate::client::unix_now()));
            }
        }
    }
    Ok(())
}

/// `libernet peers` as a table, one peer a line, nearest the node's id first.
fn peers_table(view: &PeersView, now: u64) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:<16}  {:<28}  {:<8}  {:>10}  {:>9}\n",
        "PEER", "URL", "HEALTH", "LATENCY", "SEEN"
    );
    for p in &view.peers {
        let latency = p
            .latency_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        let _ = writeln!(
            out,
            "{:<16}  {:<28}  {:<8}  {:>10}  {:>7} s",
            p.id.get(..16).unwrap_or(&p.id),
            p.url,
            p.health,
            latency,
            now.saturating_sub(p.last_seen)
        );
    }
    let _ = writeln!(out, "{} peers", view.peers.len());
    out
}

async fn get(
    remote: &Remote,
    path: &str,
    output: Option<PathBuf>,
    options: Options,
) -> anyhow::Result<()> {
    match (transfer::resolve(remote, path).await?, output) {
        (Target::Data(data), None) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&data)?;
            out.flush()?;
        }
        (Target::Data(data), Some(dest)) => {
            let temp = dest.with_extension(format!("partial-{}", std::process::id()));
            std::fs::write(&temp, &data).with_context(|| format!("{}", temp.display()))?;
            std::fs::rename(&temp, &dest).with_context(|| format!("{}", dest.display()))?;
        }
        (Target::File(_, entry), None) => {
            let mut out = std::io::stdout().lock();
            transfer::write_file(remote, &entry, &mut out, &indicatif::ProgressBar::hidden())
                .await?;
        }
        (Target::File(_, entry), Some(dest)) => {
            transfer::save_file(remote, &entry, &dest, options).await?;
        }
        (Target::Tree(_), None) => {
            bail!("this URL is a bundle (a directory); give -o DIR to restore it")
        }
        (Target::Tree(tree), Some(dest)) => {
            transfer::restore(remote, tree, &dest, options).await?;
        }
    }
    Ok(())
}

fn print_put(report: &PutReport, quiet: bool, started: Instant) {
    println!("{}", report.url);
    if quiet {
        return;
    }
    for path in &report.ignored {
        eprintln!(
            "libernet: skipped {} (not a file, directory or link)",
            path.display()
        );
    }
    eprintln!(
        "libernet: put {} files, {} bytes: {} blocks sent, {} already there ({})",
        report.files,
        report.bytes,
        report.sent,
        report.skipped,
        transfer::rate(report.bytes, started)
    );
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
    let node = Arc::new(Node::open(&config, url.clone())?);
    // Tests and scripts read this line to learn the port.
    println!(
        "libernet: serving {url} (node {}, store {})",
        node.identity().id(),
        config.store.display()
    );
    tracing::info!(%url, node = %node.identity().id(), store = %config.store.display(), blocks = node.store_stats().blocks, "serving");
    let scrub = tokio::spawn(node.clone().scrub_forever(config.scrub_rate));
    node.start();
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

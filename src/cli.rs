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

use crate::backup::{self, Credentials, Session};
use crate::client::{ClientError, Remote};
use crate::codec::CodecError;
use crate::config::BackupEnv;
use crate::config::{Config, ServeArgs};
use crate::http::{self, ServerOptions};
use crate::node::Node;
use crate::proto::PeersView;
use crate::transfer::{self, Mismatch, Options, PutReport, Target};

mod backup_more;

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
    /// The node to talk to [default: http://127.0.0.1:8042]. Given, it also serves
    /// URLs that name another node: their `/sha256/...` part is asked here.
    #[arg(long, global = true, env = "LIBERNET_SERVER")]
    server: Option<String>,
    /// No progress bars and no summary lines.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// File holding the node's admin token, for pins (else LIBERNET_TOKEN, or the
    /// default store's token for a node on this machine).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node over one store until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Encrypt a file, a directory or standard input (`-`) into the node; prints the URL.
    ///
    /// Its blocks are pinned on the node for `--holder` when the node's admin token is
    /// at hand (LIBERNET_TOKEN, --token-file, or the default store's token for a node on
    /// this machine), so a full quota never evicts them; `--no-pin` opts out.
    Put {
        /// File, directory, or `-` for standard input.
        path: PathBuf,
        /// File name for standard input's content.
        #[arg(long, default_value = "stdin")]
        name: String,
        #[command(flatten)]
        pin: PutPin,
        #[command(flatten)]
        pick: PutPick,
    },
    /// Pin content on the node for a holder, so eviction never removes it: every block
    /// of each URL (a whole bundle, whatever path inside it), or block ids. Needs the
    /// node's admin token.
    Pin {
        /// Content URLs (`http://HOST/sha256/...` or `/sha256/...`) or block ids.
        #[arg(required = true)]
        urls: Vec<String>,
        /// Whose pins: `put` pins for `put`.
        #[arg(long, default_value = transfer::PUT_HOLDER)]
        holder: String,
    },
    /// Release a holder's pins of every block of each URL (or of block ids); blocks
    /// another holder pins stay pinned. Needs the node's admin token.
    Unpin {
        /// Content URLs or block ids, as for `pin`.
        #[arg(required = true)]
        urls: Vec<String>,
        /// Whose pins.
        #[arg(long, default_value = transfer::PUT_HOLDER)]
        holder: String,
    },
    /// List the ids a holder pins on the node, one a line. Needs the node's admin token.
    Pins {
        /// Whose pins.
        #[arg(long, default_value = transfer::PUT_HOLDER)]
        holder: String,
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
    /// Back up directories into the mesh; list, restore and verify them from any node.
    ///
    /// The backup set is named by LIBERNET_USER and LIBERNET_PASSPHRASE (prompted
    /// when unset, never an argument). Blocks are pinned on the node when its admin
    /// token is at hand: LIBERNET_TOKEN, --token-file, or the default store's token for
    /// a node on this machine.
    Backup(BackupArgs),
    /// List the node's peers: id, URL, health, latency, last seen (signature checked).
    Peers {
        /// Print the node's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// How `put` and `bundle create` pin what they send.
#[derive(Debug, Args)]
struct PutPin {
    /// Do not pin the blocks (the node may evict them when its quota is full).
    #[arg(long)]
    no_pin: bool,
    /// Pin for this holder (1-64 of A-Z a-z 0-9 . _ : @ -).
    #[arg(long, default_value = transfer::PUT_HOLDER)]
    holder: String,
}

/// What `put` and `bundle create` take from a directory, and whether they send it.
#[derive(Debug, Args)]
struct PutPick {
    /// Also put dotfiles and dot-directories (`.git`, `.env`), which are left out by
    /// default.
    #[arg(long)]
    include_hidden: bool,
    /// List what would be put (size and path, one a line) and send nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Options of `libernet backup`.
#[derive(Debug, Args)]
struct BackupArgs {
    /// This machine's name in the backup set [default: the host name].
    #[arg(long, global = true, env = "LIBERNET_MACHINE")]
    machine: Option<String>,
    /// Print one JSON object on standard output instead of text (for scripts and cron).
    #[arg(long, global = true)]
    json: bool,
    /// Read the passphrase from the first line of FILE (instead of LIBERNET_PASSPHRASE
    /// or a prompt).
    #[arg(
        long,
        global = true,
        env = "LIBERNET_PASSWORD_FILE",
        value_name = "FILE"
    )]
    password_file: Option<PathBuf>,
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Add directories to this machine's backup. When the user name and passphrase open
    /// no set, asks before creating one (a mistyped passphrase would start a second set);
    /// `--new-set` creates it without asking.
    Add {
        /// Directories (they must exist).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Create a new backup set if this user name and passphrase open none.
        #[arg(long)]
        new_set: bool,
    },
    /// Stop backing up directories (earlier runs keep them).
    Remove {
        /// Directories, as listed by `backup list`.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Show the set's machines, directories and latest runs.
    List,
    /// Back up this machine's directories now.
    Run(backup_more::RunArgs),
    /// Restore directories or files (all directories by default) of the latest run, or
    /// of the one --at names. All or nothing: with blocks missing, nothing is written.
    /// Into an existing directory, entries go beside what is there; files already there
    /// are refused unless --overwrite.
    Restore {
        /// Directories or files (absolute, or relative to here) to restore.
        dirs: Vec<PathBuf>,
        /// Restore under DEST at their full paths, instead of back in place.
        #[arg(long, value_name = "DEST")]
        to: Option<PathBuf>,
        /// A run id (from `backup history`), `latest`, or a time: the newest run at or
        /// before it. Times: 2026-11-21 (the end of that day), "2026-11-21 14:30",
        /// RFC 3339, or @UNIX_SECONDS; local time unless an offset is given.
        #[arg(long, value_name = "RUN|TIME")]
        at: Option<String>,
        /// Replace files that exist already (else the restore is refused).
        #[arg(long)]
        overwrite: bool,
    },
    /// List the files of the latest run (or of the one --at names), under PATHs.
    Ls {
        /// Absolute paths to list under (all when none).
        paths: Vec<String>,
        /// A run id, `latest`, or a time (as for restore).
        #[arg(long, value_name = "RUN|TIME")]
        at: Option<String>,
    },
    /// Find files and directories matching PATTERN in every run of this machine.
    ///
    /// A glob: `*` and `?` stop at `/`, `**` crosses directories. Without a `/`, it is
    /// matched against names at any depth (`*.pdf`); starting with `/`, against the whole
    /// path; else against the end of the path (`docs/*.txt`).
    Find {
        /// The pattern.
        pattern: String,
    },
    /// What changed between two runs: added (+), removed (-), changed (M) paths.
    Diff {
        /// The older run: a run id, `latest`, or a time.
        from: String,
        /// The newer run.
        to: String,
    },
    /// Forget runs no rule keeps (restic's policy), and release their pins.
    ///
    /// Going from the newest run back, --keep-daily N keeps the newest run of each of
    /// the last N days that have runs; --keep-weekly of each of the last N ISO weeks;
    /// --keep-monthly of each of the last N months (local time). A run any rule keeps
    /// stays, pinned on its node. This machine's runs only.
    Forget(backup_more::ForgetArgs),
    /// Re-encrypt the index under a new passphrase; the old one stops opening the set.
    ///
    /// The new passphrase comes from --new-password-file, LIBERNET_NEW_PASSPHRASE, or a
    /// prompt (twice).
    Passwd {
        /// Read the new passphrase from the first line of FILE.
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Fetch and check every block of the latest run; report what is missing.
    Verify,
    /// List every run of every machine of the set.
    History,
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Put a directory as a bundle; prints its URL (the same as `put DIR`).
    Create {
        /// The directory.
        dir: PathBuf,
        #[command(flatten)]
        pin: PutPin,
        #[command(flatten)]
        pick: PutPick,
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
    if wants_serve_help(std::env::args_os().skip(1)) {
        return print_serve_help();
    }
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        crate::memory::fix_client_heap();
    }
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
            Command::Serve(args) => serve(*args).await,
            command => client_command(command, &cli.client).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `libernet get URL | head`: the reader has what it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("libernet: {}", message(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `libernet serve --help` (or `-h`, or `libernet help serve`): serve's own options
/// only, without the client's global ones, which serve ignores.
fn wants_serve_help(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    match args.next() {
        Some(first) if first == "serve" => args
            .take_while(|a| a != "--")
            .any(|a| a == "--help" || a == "-h"),
        Some(first) if first == "help" => args.next().is_some_and(|a| a == "serve"),
        _ => false,
    }
}

fn print_serve_help() -> ExitCode {
    use clap::CommandFactory;
    let about = Cli::command()
        .find_subcommand("serve")
        .and_then(|c| c.get_about().cloned())
        .unwrap_or_default();
    // The about after the flags: `augment_args` sets `ServeArgs`'s own doc comment.
    let mut command = ServeArgs::augment_args(clap::Command::new("serve"))
        .bin_name("libernet serve")
        .about(about)
        .long_about(None);
    match command.print_long_help() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_ERROR),
    }
}

/// True when the failure is writing to a closed pipe (the reader went away).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes, `: `-separated, each said once: an error whose message
/// already ends with its cause's (an OS error quoted in the message and kept as the
/// source) does not repeat it.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// 1 when the failure is "not found" or "did not verify", else 2.
fn exit_code(e: &anyhow::Error) -> u8 {
    let not_found = e.chain().any(|cause| {
        cause
            .downcast_ref::<ClientError>()
            .is_some_and(ClientError::is_not_found_or_unverified)
            || cause.downcast_ref::<CodecError>() == Some(&CodecError::WrongKey)
            || cause.downcast_ref::<Mismatch>().is_some()
            || cause.is::<backup::Incomplete>()
            || cause.is::<backup::NoIndex>()
            || cause.is::<backup::Moved>()
            || cause.is::<NotFound>()
    });
    if not_found {
        EXIT_NOT_FOUND
    } else {
        EXIT_ERROR
    }
}

impl ClientArgs {
    /// The node to talk to: `--server`, `LIBERNET_SERVER` or the default, with its
    /// scheme (a bare `HOST:PORT` is refused with the fix spelled out).
    fn server(&self) -> anyhow::Result<String> {
        let server = self.server.as_deref().unwrap_or(DEFAULT_SERVER).trim();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!(
                "--server {server:?} (or LIBERNET_SERVER) needs a scheme: give \
                 http://{server} (https:// for a node behind TLS)"
            );
        }
        Ok(server.trim_end_matches('/').to_owned())
    }

    /// The node to ask for a content URL and the URL's path. A full URL names its
    /// node, which is asked, unless `--server` (or `LIBERNET_SERVER`) was given: then
    /// the URL's `/sha256/...` part is asked there, and stderr says so.
    fn locate(&self, url: &str) -> anyhow::Result<(String, String)> {
        let server = self.server()?;
        let (base, path) = transfer::split_url(url, &server)?;
        if self.server.is_some() && base != server {
            if !self.quiet {
                eprintln!(
                    "libernet: the URL names {base}; asking {server} for its /sha256/... part"
                );
            }
            return Ok((server, path));
        }
        Ok((base, path))
    }
}

/// Connects to the node at `base`; a refused connection says how to start one.
async fn connect(base: &str) -> anyhow::Result<Remote> {
    Remote::connect(base).await.map_err(|e| match &e {
        ClientError::Transport(t) if t.contains(crate::client::CONNECTION_REFUSED) => {
            anyhow::anyhow!("no node at {base}: start one with `libernet serve`")
        }
        _ => anyhow::Error::new(e).context(format!("cannot reach the node at {base}")),
    })
}

/// `put PATH` and `bundle create DIR`: scan (leaving dotfiles out unless asked), then
/// list (`--dry-run`) or send.
async fn put_command(
    path: &std::path::Path,
    pin: &PutPin,
    pick: &PutPick,
    options: Options,
    args: &ClientArgs,
) -> anyhow::Result<()> {
    let scan = transfer::scan_path(path, pick.include_hidden).await?;
    let hidden = scan.hidden.clone();
    if !args.quiet && !hidden.is_empty() {
        let shown: Vec<&str> = hidden.iter().take(5).map(String::as_str).collect();
        let more = match hidden.len().saturating_sub(shown.len()) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        eprintln!(
            "libernet: left out {} ({}{more}); --include-hidden puts them",
            count(hidden.len(), "hidden entry", "hidden entries"),
            shown.join(", ")
        );
    }
    if pick.dry_run {
        let mut out = std::io::stdout().lock();
        for file in &scan.files {
            writeln!(out, "{}\t{}", file.entry.size, file.path)?;
        }
        for path in scan.links.keys() {
            writeln!(out, "link\t{path}")?;
        }
        for (path, target) in &scan.directories {
            let kind = if target.is_some() { "link" } else { "dir" };
            writeln!(out, "{kind}\t{path}/")?;
        }
        out.flush()?;
        if !args.quiet {
            let bytes: u64 = scan.files.iter().map(|f| f.entry.size).sum();
            eprintln!(
                "libernet: dry run: would put {}, {}; nothing sent",
                count(scan.files.len(), "file", "files"),
                count(bytes, "byte", "bytes")
            );
        }
        return Ok(());
    }
    let remote = connect(&args.server()?).await?;
    let (remote, holder) = put_pinning(remote, pin, args).await?;
    let started = Instant::now();
    let report = transfer::put_scanned(&remote, path, scan, options, holder).await?;
    print_put(&report, args.quiet, started, holder);
    Ok(())
}

pub(crate) use crate::transfer::count;

async fn client_command(command: Command, args: &ClientArgs) -> anyhow::Result<()> {
    let options = Options {
        progress: !args.quiet,
    };
    match command {
        Command::Serve(_) => unreachable!("handled by run"),
        Command::Put {
            path,
            name,
            pin,
            pick,
        } => {
            if path.as_os_str() == "-" {
                if pick.dry_run {
                    println!("standard input, as {name}");
                    return Ok(());
                }
                let remote = connect(&args.server()?).await?;
                let (remote, holder) = put_pinning(remote, &pin, args).await?;
                let started = Instant::now();
                let report = transfer::put_stdin(&remote, &name, options, holder).await?;
                print_put(&report, args.quiet, started, holder);
            } else {
                put_command(&path, &pin, &pick, options, args).await?;
            }
        }
        Command::Pin { urls, holder } => pin_command(&urls, &holder, true, args).await?,
        Command::Unpin { urls, holder } => pin_command(&urls, &holder, false, args).await?,
        Command::Pins { holder } => {
            check_holder(&holder)?;
            let remote = connect(&args.server()?).await?;
            let remote = admin_remote(remote, args).await?.ok_or_else(no_token)?;
            let mut out = std::io::stdout().lock();
            for id in remote.pins_of(&holder).await? {
                writeln!(out, "{id}").context("writing the output")?;
            }
        }
        Command::Bundle(BundleCommand::Create { dir, pin, pick }) => {
            if !dir.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            put_command(&dir, &pin, &pick, options, args).await?;
        }
        Command::Get { url, output } => {
            let (base, path) = args.locate(&url)?;
            let remote = connect(&base).await?;
            get(&remote, &path, output, options).await?;
        }
        Command::Bundle(BundleCommand::Restore { url, dir }) => {
            let (base, path) = args.locate(&url)?;
            let remote = connect(&base).await?;
            match transfer::resolve(&remote, &path).await? {
                Target::Tree(tree) => {
                    transfer::restore(&remote, tree, &dir, options).await?;
                }
                _ => bail!("{url} is not a bundle"),
            }
        }
        Command::Bundle(BundleCommand::Ls { url }) => {
            let (base, path) = args.locate(&url)?;
            let remote = connect(&base).await?;
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
            let remote = connect(&args.server()?).await?;
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
        Command::Backup(backup_args) => {
            backup_command(backup_args, args).await?;
        }
        Command::Node => {
            let remote = connect(&args.server()?).await?;
            println!("{}", serde_json::to_string_pretty(remote.info())?);
        }
        Command::Peers { json } => {
            let remote = connect(&args.server()?).await?;
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
    let _ = writeln!(out, "{}", count(view.peers.len(), "peer", "peers"));
    let seeds = view.seeds.as_deref().unwrap_or_default();
    if !seeds.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<28}  {:<8}  {:>8}  {:>9}  ERROR",
            "SEED", "STATE", "FAILURES", "TRIED"
        );
    }
    for s in seeds {
        let tried = s.last_attempt.map_or_else(
            || "-".to_owned(),
            |t| format!("{} s", now.saturating_sub(t)),
        );
        let _ = writeln!(
            out,
            "{:<28}  {:<8}  {:>8}  {:>9}  {}",
            s.url,
            s.state,
            s.failures,
            tried,
            s.error.as_deref().unwrap_or("-")
        );
    }
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
            // Written beside `dest` and renamed, so `dest` appears whole; messages name
            // `dest`, never the temporary name.
            let temp = dest.with_extension(format!("partial-{}", std::process::id()));
            let written = std::fs::write(&temp, &data).and_then(|()| std::fs::rename(&temp, &dest));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&temp);
                return Err(e).with_context(|| format!("{}", dest.display()));
            }
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

/// The remote with the node's admin token when one is at hand and works for it.
async fn admin_remote(remote: Remote, args: &ClientArgs) -> anyhow::Result<Option<Remote>> {
    let env = BackupEnv::load();
    let Some((token, implicit)) = admin_token(&env, args.token_file.as_deref(), remote.base())?
    else {
        return Ok(None);
    };
    let with = remote.with_token(&token);
    // The default store's token may belong to another node on this machine.
    if implicit && with.pins_of("libernet-token-check").await.is_err() {
        return Ok(None);
    }
    Ok(Some(with))
}

fn no_token() -> anyhow::Error {
    anyhow::anyhow!(
        "this needs the node's admin token: set LIBERNET_TOKEN or pass --token-file \
         (for a node on this machine, its default store's token is used)"
    )
}

fn check_holder(holder: &str) -> anyhow::Result<()> {
    holder
        .parse::<crate::store::Holder>()
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("--holder {holder:?}: {e}"))
}

/// The remote to put through and the holder to pin for: none with `--no-pin` or when
/// no admin token is at hand (the put then goes unpinned and says so).
async fn put_pinning<'a>(
    remote: Remote,
    pin: &'a PutPin,
    args: &ClientArgs,
) -> anyhow::Result<(Remote, Option<&'a str>)> {
    if pin.no_pin {
        return Ok((remote, None));
    }
    check_holder(&pin.holder)?;
    match admin_remote(remote.clone(), args).await? {
        Some(admin) => Ok((admin, Some(pin.holder.as_str()))),
        None => Ok((remote, None)),
    }
}

/// `pin` (`pin` true) or `unpin` every block of each URL for `holder`.
async fn pin_command(
    urls: &[String],
    holder: &str,
    pin: bool,
    args: &ClientArgs,
) -> anyhow::Result<()> {
    check_holder(holder)?;
    let (mut blocks, mut absent) = (0usize, 0usize);
    for url in urls {
        let (base, path) = if url.contains("/sha256/") {
            args.locate(url)?
        } else {
            (args.server()?, url.clone())
        };
        let remote = connect(&base).await?;
        let remote = admin_remote(remote, args).await?.ok_or_else(no_token)?;
        let ids = transfer::blocks_of(&remote, &path)
            .await
            .with_context(|| format!("cannot read {url}"))?;
        for batch in ids.chunks(crate::node::MAX_REPIN) {
            let missing = match pin {
                true => remote.repin(holder, batch, &[]).await?,
                false => remote.repin(holder, &[], batch).await?,
            };
            absent += missing.len();
        }
        blocks += ids.len();
    }
    if !args.quiet {
        let what = if pin { "pinned" } else { "released" };
        let note = match absent {
            0 => String::new(),
            n => format!(" ({n} of them not on the node)"),
        };
        let blocks = count(blocks, "block", "blocks");
        eprintln!("libernet: {blocks} {what} for {holder}{note}");
    }
    Ok(())
}

fn print_put(report: &PutReport, quiet: bool, started: Instant, holder: Option<&str>) {
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
    let pinned = match holder {
        Some(holder) => format!("pinned for {holder}"),
        None => "not pinned".to_owned(),
    };
    eprintln!(
        "libernet: put {}, {}: {} sent, {} already there ({}); {pinned}",
        count(report.files, "file", "files"),
        count(report.bytes, "byte", "bytes"),
        count(report.sent, "block", "blocks"),
        report.skipped,
        transfer::rate(report.bytes, started)
    );
}

/// Runs a `libernet backup` command and prints its outcome (text, or `--json`).
async fn backup_command(args: BackupArgs, client: &ClientArgs) -> anyhow::Result<()> {
    let env = BackupEnv::load();
    let (creds, prompted) = credentials(&env, args.machine.clone(), args.password_file.as_deref())?;
    let mut remote = connect(&client.server()?).await?;
    // Without a working token, back up unpinned rather than fail.
    if let Some(admin) = admin_remote(remote.clone(), client).await? {
        remote = admin;
    }
    let session = Session::new(remote, creds);
    let progress = !client.quiet && !args.json;
    let out = |value: &dyn erased::Json, text: String| -> anyhow::Result<()> {
        if args.json {
            println!("{}", value.json()?);
        } else if !client.quiet && !text.is_empty() {
            eprintln!("{text}");
        }
        Ok(())
    };
    match args.command {
        BackupCommand::Add { dirs, new_set } => {
            let found = session.find().await?;
            if found.is_none() {
                confirm_new_set(&session, new_set, prompted)?;
            }
            let change = backup::add(&session, &dirs, found).await?;
            let verb = if change.created {
                "created the backup set; "
            } else {
                ""
            };
            out(
                &change,
                format!("libernet: {verb}backing up {}", change.dirs.join(", ")),
            )?;
        }
        BackupCommand::Remove { dirs } => {
            let change = backup::remove(&session, &dirs).await?;
            out(
                &change,
                format!("libernet: stopped backing up {}", change.changed.join(", ")),
            )?;
        }
        BackupCommand::List => {
            let listing = backup::list(&session).await?;
            if args.json {
                out(&listing, String::new())?;
            } else {
                print!("{}", listing_text(&listing));
            }
        }
        BackupCommand::Run(run_args) => {
            let exclude = run_args.exclude()?;
            let report = backup::run(&session, &exclude, progress).await.map_err(|e| {
                if e.is::<backup::NoIndex>() {
                    e.context("nothing to back up: create the set with `libernet backup add --new-set DIR`")
                } else {
                    e
                }
            })?;
            for path in &report.ignored {
                if !client.quiet && !args.json {
                    eprintln!("libernet: skipped {path} (not a file, directory or link)");
                }
            }
            out(&report, run_summary(&report))?;
        }
        BackupCommand::Restore {
            dirs,
            to,
            at,
            overwrite,
        } => {
            let spec = backup_more::run_spec(at.as_deref())?;
            let report =
                backup::restore(&session, &dirs, to.as_deref(), &spec, overwrite, progress).await?;
            let places: Vec<String> = report
                .restored
                .iter()
                .map(|(what, dest)| format!("{what} into {}", dest.display()))
                .collect();
            out(
                &report,
                format!(
                    "libernet: restored {} ({}) of the run of {}: {}",
                    count(report.files, "file", "files"),
                    count(report.bytes, "byte", "bytes"),
                    local_time(report.run_started),
                    places.join("; ")
                ),
            )?;
        }
        BackupCommand::Verify => {
            let report = backup::verify(&session, progress).await?;
            if report.ok() {
                out(
                    &report,
                    format!(
                        "libernet: the run of {} is whole: {} ({} of files) retrieved and checked",
                        local_time(report.run_started),
                        count(report.blocks, "block", "blocks"),
                        count(report.bytes, "byte", "bytes")
                    ),
                )?;
            } else {
                if args.json {
                    out(&report, String::new())?;
                }
                return Err(backup::Incomplete(format!(
                    "the run of {} is damaged: {} missing and {} corrupt, in {}: {}",
                    local_time(report.run_started),
                    count(report.missing.len(), "block", "blocks"),
                    report.corrupt.len(),
                    count(report.files.len(), "file", "files"),
                    report
                        .files
                        .iter()
                        .take(20)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .into());
            }
        }
        BackupCommand::Ls { paths, at } => {
            let listing =
                backup::ls(&session, &backup_more::run_spec(at.as_deref())?, &paths).await?;
            if args.json {
                out(&listing, String::new())?;
            } else {
                backup_more::print_ls(&listing)?;
            }
        }
        BackupCommand::Find { pattern } => {
            let patterns = backup::Patterns::new(std::slice::from_ref(&pattern), "pattern")?;
            let hits = backup::find(&session, &patterns).await?;
            if args.json {
                out(&hits, String::new())?;
            } else {
                backup_more::print_find(&hits)?;
            }
            if hits.is_empty() {
                return Err(NotFound(format!("nothing matches {pattern:?} in any run")).into());
            }
        }
        BackupCommand::Diff { from, to } => {
            let (a, b) = (
                backup_more::run_spec(Some(&from))?,
                backup_more::run_spec(Some(&to))?,
            );
            let diff = backup::diff(&session, &a, &b).await?;
            if args.json {
                out(&diff, String::new())?;
            } else {
                backup_more::print_diff(&diff, client.quiet)?;
            }
        }
        BackupCommand::Forget(forget_args) => {
            let report =
                backup::forget(&session, &forget_args.policy(), forget_args.dry_run).await?;
            if args.json {
                out(&report, String::new())?;
            } else {
                backup_more::print_forget(&report, client.quiet)?;
            }
        }
        BackupCommand::Passwd { new_password_file } => {
            let new = backup_more::new_passphrase(&env, new_password_file.as_deref())?;
            if let Some(warning) = backup::key::weak_warning(&new) {
                eprintln!("libernet: warning: {warning}");
            }
            let report = backup::passwd(&session, &new).await?;
            out(
                &report,
                "libernet: the backup index is now encrypted under the new passphrase; the old one no longer opens it".to_owned(),
            )?;
        }
        BackupCommand::History => {
            let runs = backup::history(&session).await?;
            if args.json {
                out(&runs, String::new())?;
            } else {
                print!("{}", history_text(&runs));
            }
        }
    }
    Ok(())
}

/// A search that found nothing (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotFound(String);

/// Serialising the reports behind one `&dyn`.
mod erased {
    /// A value printed as JSON.
    pub trait Json {
        fn json(&self) -> serde_json::Result<String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}

/// User, passphrase and machine, from the environment, the password file or prompts;
/// and whether the passphrase was typed (then a new set asks for it twice).
fn credentials(
    env: &BackupEnv,
    machine: Option<String>,
    password_file: Option<&std::path::Path>,
) -> anyhow::Result<(Credentials, bool)> {
    use std::io::IsTerminal;
    let interactive = std::io::stdin().is_terminal();
    let user = match &env.user {
        Some(u) => u.clone(),
        None if interactive => {
            eprint!("libernet backup user: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_owned()
        }
        None => bail!("set LIBERNET_USER (or run on a terminal to be asked)"),
    };
    if user.is_empty() {
        bail!("the user name is empty");
    }
    let (passphrase, prompted) = match (password_file, &env.passphrase) {
        (Some(file), _) => (read_password_file(file)?, false),
        (None, Some(p)) => (p.clone(), false),
        (None, None) if interactive => (rpassword::prompt_password("passphrase: ")?, true),
        (None, None) => bail!(
            "set LIBERNET_PASSPHRASE or give --password-file (or run on a terminal to be asked); \
             it is never taken as an argument"
        ),
    };
    if passphrase.is_empty() {
        bail!("the passphrase is empty");
    }
    let machine = machine
        .filter(|m| !m.is_empty())
        .or_else(|| env.hostname.clone())
        .context("no host name: give --machine NAME")?;
    Ok((
        Credentials {
            user,
            passphrase,
            machine,
        },
        prompted,
    ))
}

/// The first line of a password file, without its line ending.
fn read_password_file(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the password file {}", file.display()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        bail!("the password file {} is empty", file.display());
    }
    Ok(line.to_owned())
}

/// Before a new set is created: `--new-set`, or a yes on a terminal (and the typed
/// passphrase typed again); else refused, as a mistyped passphrase would otherwise start
/// a second set silently. Warns about a short passphrase.
fn confirm_new_set(session: &Session, new_set: bool, prompted: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let user = &session.creds().user;
    if !new_set {
        let no_set = || {
            anyhow::Error::new(backup::NoIndex {
                user: user.clone(),
                months: backup::index::MAX_MONTHS_BACK,
            })
        };
        if !std::io::stdin().is_terminal() {
            return Err(no_set().context(
                "not creating a new backup set (a mistyped passphrase would start a second one): \
                 give --new-set to create it",
            ));
        }
        eprintln!(
            "libernet: no backup set of user {user:?} opens with this passphrase \
             (if you have one, the passphrase is mistyped)"
        );
        eprint!("create a new backup set? [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Err(no_set().context("nothing was created"));
        }
    }
    if prompted {
        let again = rpassword::prompt_password("passphrase again: ")?;
        if again != session.creds().passphrase {
            bail!("the passphrases differ; nothing was created");
        }
    }
    if let Some(warning) = backup::key::weak_warning(&session.creds().passphrase) {
        eprintln!("libernet: warning: {warning}");
    }
    Ok(())
}

/// The admin token for `server`: LIBERNET_TOKEN, the --token-file, or (implicit: true)
/// the default store's token when the node is on this machine (never sent elsewhere).
fn admin_token(
    env: &BackupEnv,
    file: Option<&std::path::Path>,
    server: &str,
) -> anyhow::Result<Option<(String, bool)>> {
    if let Some(token) = &env.token {
        return Ok(Some((token.clone(), false)));
    }
    if let Some(file) = file {
        let file = crate::config::expand_home(file);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("token file {}", file.display()))?;
        return Ok(Some((text.trim().to_owned(), false)));
    }
    let local = ["http://127.", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| server.starts_with(p));
    Ok(local
        .then(|| std::fs::read_to_string(&env.default_token_file).ok())
        .flatten()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(|t| (t, true)))
}

/// Unix seconds of an `--at` value.
fn parse_at(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let ts = if let Some(secs) = text.strip_prefix('@') {
        let secs: i64 = secs.parse().context("@ takes Unix seconds")?;
        jiff::Timestamp::from_second(secs)?
    } else if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        ts
    } else if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        dt.to_zoned(jiff::tz::TimeZone::system())?.timestamp()
    } else if let Ok(date) = text.parse::<jiff::civil::Date>() {
        date.at(23, 59, 59, 0)
            .to_zoned(jiff::tz::TimeZone::system())?
            .timestamp()
    } else {
        bail!("--at {text:?}: give 2026-11-21, \"2026-11-21 14:30\", an RFC 3339 time or @SECONDS");
    };
    u64::try_from(ts.as_second()).context("--at is before 1970")
}

/// Unix seconds as local time.
fn local_time(unix: u64) -> String {
    jiff::Timestamp::from_second(unix as i64)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|_| format!("@{unix}"))
}

fn run_summary(r: &backup::RunReport) -> String {
    let pins = match &r.pins {
        Some(p) if p.absent > 0 => format!(
            "; {} pinned ({} released), {} of them not on the node",
            count(p.pinned, "block", "blocks"),
            p.released,
            p.absent
        ),
        Some(p) => format!(
            "; {} pinned ({} released)",
            count(p.pinned, "block", "blocks"),
            p.released
        ),
        None => "; not pinned (no admin token for this node)".to_owned(),
    };
    let excluded = match r.excluded {
        0 => String::new(),
        n => format!(", {} excluded", count(n, "path", "paths")),
    };
    format!(
        "libernet: backed up {} ({}), {} unchanged{excluded}; read {} ({}): {} sent ({}), {} already there; {:.1} s, {:.1} MB/s{pins}",
        count(r.files, "file", "files"),
        count(r.bytes, "byte", "bytes"),
        r.reused,
        count(r.read_files, "file", "files"),
        count(r.read_bytes, "byte", "bytes"),
        count(r.sent, "block", "blocks"),
        count(r.sent_bytes, "byte", "bytes"),
        r.skipped,
        r.seconds,
        r.bytes as f64 / r.seconds.max(1e-3) / 1e6,
    )
}

fn listing_text(l: &backup::Listing) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "backup set of {} (index written {})\n",
        l.user,
        local_time(l.written)
    );
    for m in &l.machines {
        let this = if m.name == l.machine {
            " (this machine)"
        } else {
            ""
        };
        let _ = writeln!(out, "{}{this}", m.name);
        for d in &m.dirs {
            let _ = writeln!(out, "  {d}");
        }
        match &m.last_run {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  last run {}: {}, {}",
                    local_time(r.started),
                    count(r.files, "file", "files"),
                    count(r.bytes, "byte", "bytes")
                );
            }
            None => {
                let _ = writeln!(out, "  no run yet");
            }
        }
    }
    out
}

fn history_text(runs: &[backup::HistoryEntry]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:<8}  {:<25}  {:<16}  {:>8}  {:>14}  {:>7}  {:>7}\n",
        "ID", "STARTED", "MACHINE", "FILES", "BYTES", "SENT", "REUSED"
    );
    for e in runs {
        let _ = writeln!(
            out,
            "{:<8}  {:<25}  {:<16}  {:>8}  {:>14}  {:>7}  {:>7}",
            e.id,
            local_time(e.run.started),
            e.machine,
            e.run.files,
            e.run.bytes,
            e.run.sent,
            e.run.reused
        );
    }
    let _ = writeln!(out, "{}", count(runs.len(), "run", "runs"));
    out
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let config = Config::load(&args)?;
    let listener = crate::http::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = config
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let node = Arc::new(Node::open(&config, url.clone())?);
    // Tests and scripts read the first line to learn the port. One write, and its
    // failure ignored: a reader that closes the pipe after that line loses nothing.
    let lines = format!(
        "libernet: serving {url} (node {}, store {})\n\
         libernet: dashboard {}\n\
         libernet: admin token in {} (the dashboard asks for it once; pins and uploads need it)\n",
        node.identity().id(),
        config.store.display(),
        dashboard_url(addr, &url),
        config.store.join(crate::store::ADMIN_TOKEN_FILE).display()
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(lines.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    if let Some(warning) = crate::config::url_warning(config.listen, config.url.as_deref()) {
        tracing::warn!("{warning}");
    }
    tracing::info!(%url, node = %node.identity().id(), store = %config.store.display(), blocks = node.store_stats().blocks, "serving");
    let scrub = tokio::spawn(node.clone().scrub_forever(config.scrub_rate));
    node.start();
    tokio::spawn(crate::node::summary::run(
        Arc::downgrade(&node),
        config.summary_interval,
    ));
    let mut options = ServerOptions::new(config.max_connections, config.wait);
    options.domain = config.domain.clone();
    http::serve(listener, node.clone(), options, shutdown).await?;
    scrub.abort();
    if let Err(e) = node.flush_pins().await {
        tracing::error!(error = %e, "cannot save the pins");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Where to open the dashboard from this machine: the node's URL, except that a node
/// listening on every interface without a URL of its own is shown at loopback.
fn dashboard_url(bound: std::net::SocketAddr, url: &str) -> String {
    let unspecified = format!("http://{bound}");
    if bound.ip().is_unspecified() && url == unspecified {
        let local = match bound {
            std::net::SocketAddr::V4(_) => format!("http://127.0.0.1:{}/", bound.port()),
            std::net::SocketAddr::V6(_) => format!("http://[::1]:{}/", bound.port()),
        };
        return local;
    }
    format!("{}/", url.trim_end_matches('/'))
}

/// Resolves at the first SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when it is first polled: a SIGTERM right after the start-up lines
/// (from systemd, a script, a test) drains the node rather than killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for {name}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = wait(int, "SIGINT") => tracing::info!("SIGINT: draining"),
            () = wait(term, "SIGTERM") => tracing::info!("SIGTERM: draining"),
        }
    }
}

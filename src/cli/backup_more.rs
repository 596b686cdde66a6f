//! Options and text output of `libernet backup run`'s exclusions, `ls`, `find`, `diff`,
//! `forget` and `passwd` (the rest of `backup` is in `cli.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::{count, local_time, parse_at, read_password_file};
use crate::backup::{self, Exclude, Policy, RunSpec};
use crate::config::BackupEnv;

/// Options of `backup run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Leave out files and directories matching PATTERN (repeatable; see `backup find
    /// --help` for the glob rules).
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Leave out what the patterns in FILE match (one a line; `#` starts a comment).
    #[arg(long, value_name = "FILE")]
    exclude_file: Vec<PathBuf>,
    /// Leave out the contents of directories tagged with a CACHEDIR.TAG (the Cache
    /// Directory Tagging specification); the directory and its tag are kept.
    #[arg(long)]
    exclude_caches: bool,
}

impl RunArgs {
    /// The exclusion rules (bad patterns and unreadable files are errors).
    pub fn exclude(&self) -> anyhow::Result<Exclude> {
        Exclude::new(&self.exclude, &self.exclude_file, self.exclude_caches)
    }
}

/// Options of `backup forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Keep the newest run of each of the last N days that have runs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_daily: u32,
    /// Keep the newest run of each of the last N weeks that have runs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_weekly: u32,
    /// Keep the newest run of each of the last N months that have runs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_monthly: u32,
    /// Show what would be kept and forgotten; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl ForgetArgs {
    /// The policy.
    pub fn policy(&self) -> Policy {
        Policy {
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        }
    }
}

/// The run `text` names: a run id, `latest`, or a time; the latest when `None`.
pub fn run_spec(text: Option<&str>) -> anyhow::Result<RunSpec> {
    let Some(text) = text else {
        return Ok(RunSpec::Latest);
    };
    if let Some(spec) = RunSpec::parse_name(text) {
        return Ok(spec);
    }
    parse_at(text).map(RunSpec::At).with_context(|| {
        format!("{text:?} is neither a run id (see `libernet backup history`) nor a time")
    })
}

/// `passwd`'s new passphrase: the file, LIBERNET_NEW_PASSPHRASE, or typed twice.
pub fn new_passphrase(env: &BackupEnv, file: Option<&Path>) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if let Some(file) = file {
        return read_password_file(file);
    }
    if let Some(p) = &env.new_passphrase {
        return Ok(p.clone());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "give the new passphrase with --new-password-file or LIBERNET_NEW_PASSPHRASE \
             (or run on a terminal to be asked)"
        );
    }
    let first = rpassword::prompt_password("new passphrase: ")?;
    if first.is_empty() {
        bail!("the new passphrase is empty");
    }
    let again = rpassword::prompt_password("new passphrase again: ")?;
    if again != first {
        bail!("the passphrases differ; nothing was changed");
    }
    Ok(first)
}

fn kind_letter(kind: &str) -> char {
    match kind {
        "dir" => 'd',
        "link" => 'l',
        _ => '-',
    }
}

/// `ls`: one entry a line.
pub fn print_ls(listing: &backup::RunListing) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for e in &listing.entries {
        let target = e
            .target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        writeln!(
            out,
            "{} {:>14}  {}{target}",
            kind_letter(e.kind),
            e.size,
            e.path
        )
        .context("writing the output")?;
    }
    Ok(())
}

/// `find`: one match a line, with its run.
pub fn print_find(hits: &[backup::Hit]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for h in hits {
        writeln!(
            out,
            "{}  {}  {} {:>14}  {}",
            h.run.id,
            local_time(h.run.started),
            kind_letter(h.entry.kind),
            h.entry.size,
            h.entry.path
        )
        .context("writing the output")?;
    }
    Ok(())
}

/// `diff`: `+`, `-` and `M` lines, then a summary on standard error.
pub fn print_diff(diff: &backup::Diff, quiet: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut lines: Vec<(&String, char)> = diff.added.iter().map(|p| (p, '+')).collect();
    lines.extend(diff.removed.iter().map(|p| (p, '-')));
    lines.extend(diff.changed.iter().map(|p| (p, 'M')));
    lines.sort();
    for (path, mark) in lines {
        writeln!(out, "{mark}    {path}").context("writing the output")?;
    }
    if !quiet {
        eprintln!(
            "libernet: from run {} ({}) to run {} ({}): {} added, {} removed, {} changed",
            diff.from.id,
            local_time(diff.from.started),
            diff.to.id,
            local_time(diff.to.started),
            diff.added.len(),
            diff.removed.len(),
            diff.changed.len()
        );
    }
    Ok(())
}

/// `forget`: each run kept (with its rules) or forgotten, then a summary.
pub fn print_forget(report: &backup::ForgetReport, quiet: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for d in &report.kept {
        writeln!(
            out,
            "keep    {}  {}  {}",
            d.id,
            local_time(d.started),
            d.reasons.join(", ")
        )
        .context("writing the output")?;
    }
    for d in &report.removed {
        writeln!(out, "forget  {}  {}", d.id, local_time(d.started))
            .context("writing the output")?;
    }
    if quiet {
        return Ok(());
    }
    let verb = if report.dry_run {
        "would forget"
    } else {
        "forgot"
    };
    let pins = match &report.pins {
        Some(p) => format!(
            "; {} pinned, {} released",
            count(p.pinned, "block", "blocks"),
            p.released
        ),
        None if report.dry_run || report.removed.is_empty() => String::new(),
        None => "; no pins changed (no admin token for this node)".to_owned(),
    };
    eprintln!(
        "libernet: kept {}, {verb} {}{pins}",
        count(report.kept.len(), "run", "runs"),
        report.removed.len()
    );
    Ok(())
}

//! One backup run: scan the machine's directories, reuse the blocks of files unchanged
//! since the last run (same size and modification time) without reading them, send the
//! blocks the node lacks, write the run's bundle and a new index record, then pin on
//! the node what the run references (every kept run stays pinned; `forget` releases
//! what only forgotten runs referenced) and release the superseded record.
//!
//! A run killed at any point leaves no record; the next run finds the blocks that
//! arrived (every block is checked before it is sent) and sends only the rest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::pattern::Exclude;
use super::{Session, bundle_path, index};
use crate::bundle::{self, FileEntry, ScannedFile};
use crate::client::unix_now;
use crate::id::BlockId;
use crate::transfer::{self, Opened, Uploader, blocking};

/// Ids per pin request (under the node's `MAX_REPIN`).
const PIN_BATCH: usize = 10_000;

/// What a run's pins did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PinReport {
    /// Blocks this set pins on the node now.
    pub pinned: usize,
    /// Pins released: blocks the run no longer references.
    pub released: usize,
    /// Referenced blocks the node does not hold (pinned, to be kept if they come back).
    pub absent: usize,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Unix seconds at the start.
    pub started: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Directories backed up.
    pub dirs: Vec<String>,
    /// Regular files in the run.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files reused unread (unchanged since the last run).
    pub reused: u64,
    /// Files read.
    pub read_files: u64,
    /// Their bytes.
    pub read_bytes: u64,
    /// Blocks sent.
    pub sent: u64,
    /// Bytes of the blocks sent.
    pub sent_bytes: u64,
    /// Blocks the node already held (or sent earlier in this run).
    pub skipped: u64,
    /// Paths skipped (sockets, FIFOs, devices).
    pub ignored: Vec<String>,
    /// Paths left out by `--exclude`, `--exclude-file` or `--exclude-caches` (an
    /// excluded directory counts once).
    pub excluded: u64,
    /// The run's bundle URL (it holds the key: keep it private).
    pub url: String,
    /// The new index record.
    pub record: String,
    /// Pins, when the node's admin token was at hand.
    pub pins: Option<PinReport>,
}

/// What the scan of the directories found.
#[derive(Default)]
struct Plan {
    files: BTreeMap<String, FileEntry>,
    directories: BTreeMap<String, Option<String>>,
    to_read: Vec<ScannedFile>,
    reused: u64,
    bytes: u64,
    ignored: Vec<String>,
    excluded: u64,
}

/// Backs up this machine's directories, leaving out what `exclude` says.
pub async fn run(
    session: &Session,
    exclude: &Exclude,
    progress: bool,
) -> anyhow::Result<RunReport> {
    let started = unix_now();
    let clock = Instant::now();
    let found = session.require().await?;
    let Some(machine) = found.record.machines.get(&session.creds.machine) else {
        bail!(
            "machine {:?} backs up nothing yet: `libernet backup add DIR` first",
            session.creds.machine
        );
    };
    if machine.dirs.is_empty() {
        bail!("no directories to back up: `libernet backup add DIR` first");
    }
    let dirs = machine.dirs.clone();
    let bar = bar(progress);
    bar.set_message("reading the last run");
    let previous = previous_tree(session, machine.runs.last()).await;
    bar.set_message("scanning");
    let plan = {
        let (dirs, exclude) = (dirs.clone(), exclude.clone());
        blocking(move || scan(&dirs, previous.as_ref(), &exclude)).await?
    };
    let read_bytes: u64 = plan.to_read.iter().map(|f| f.entry.size).sum();
    bar.set_length(read_bytes);
    bar.set_style(upload_style());
    let uploader = session.uploader();
    let counts = |u: &Uploader| {
        (
            u.sent.load(Ordering::Relaxed),
            u.skipped.load(Ordering::Relaxed),
        )
    };
    let summary = format!(
        "{} files ({}) scanned, {} unchanged",
        plan.files.len() + plan.to_read.len(),
        indicatif::HumanBytes(plan.bytes),
        plan.reused
    );
    let chunks = transfer::upload_files(&uploader, &plan.to_read, |chunk| {
        bar.inc(chunk.size);
        let (sent, skipped) = counts(&uploader);
        bar.set_message(format!(
            "{summary}; {sent} blocks sent, {skipped} already there"
        ));
    })
    .await?;
    bar.set_message("writing the index");
    let Plan {
        mut files,
        directories,
        to_read,
        reused,
        bytes,
        ignored,
        excluded,
    } = plan;
    let read_files = to_read.len() as u64;
    for (file, contents) in to_read.into_iter().zip(chunks) {
        let mut entry = file.entry;
        entry.contents = contents;
        files.insert(file.path, entry);
    }
    let mut referenced: BTreeSet<BlockId> = files
        .values()
        .flat_map(|f| &f.contents)
        .filter_map(|c| bundle::parse_chunk_url(&c.url).map(|l| l.id))
        .collect();
    let file_count = files.values().filter(|f| f.link.is_none()).count() as u64;
    let (root, manifest_ids) = transfer::put_manifest_blocks(&uploader, files, directories).await?;
    referenced.extend(manifest_ids);
    let (sent, skipped) = counts(&uploader);
    let url = format!("{root}/");
    let mut record = found.record.clone();
    let this = record
        .machines
        .entry(session.creds.machine.clone())
        .or_default();
    this.runs.push(index::Run {
        started,
        finished: unix_now(),
        url: url.clone(),
        node: session.remote.info().id.clone(),
        dirs: dirs.clone(),
        files: file_count,
        bytes,
        reused,
        sent,
        skipped,
    });
    let written = session.write(record, Some(&found)).await?;
    referenced.insert(written.id);
    referenced.extend(written.archives);
    let pins = match &session.holder {
        Some(holder) => {
            bar.set_message("pinning");
            Some(add_pins(session, holder, &referenced, &found.heads).await?)
        }
        None => None,
    };
    bar.finish_and_clear();
    Ok(RunReport {
        started,
        seconds: clock.elapsed().as_secs_f64(),
        dirs,
        files: file_count,
        bytes,
        reused,
        read_files,
        read_bytes,
        sent: uploader.sent.load(Ordering::Relaxed),
        sent_bytes: uploader.sent_bytes.load(Ordering::Relaxed),
        skipped: uploader.skipped.load(Ordering::Relaxed),
        ignored,
        excluded,
        url,
        record: written.id.to_string(),
        pins,
    })
}

fn bar(progress: bool) -> ProgressBar {
    if !progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn upload_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "backup {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The last run's files by path, when that run went to this same node (its blocks are
/// pinned there). From another node, or unreadable: nothing is reused.
async fn previous_tree(
    session: &Session,
    last: Option<&index::Run>,
) -> Option<HashMap<String, FileEntry>> {
    let last = last?;
    if last.node != session.remote.info().id {
        return None;
    }
    let path = last.url.trim_end_matches('/');
    let locator = crate::codec::Locator::split(path).ok()?.0;
    match transfer::open(&session.remote, locator).await {
        Ok(Opened::Bundle(tree)) => Some(tree.files.into_iter().collect()),
        Ok(Opened::Data(_)) => None,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot read the last run; reading every file");
            None
        }
    }
}

/// Scans `dirs` and sorts their files into reused (unchanged since `previous`) and to
/// be read.
fn scan(
    dirs: &[String],
    previous: Option<&HashMap<String, FileEntry>>,
    exclude: &Exclude,
) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    let filter = exclude.filter();
    for dir in dirs {
        let meta = std::fs::symlink_metadata(dir);
        if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
            bail!(
                "{dir} is missing or not a directory; put it back, or stop backing it up \
                 with `libernet backup remove {dir}`"
            );
        }
        let scan = bundle::scan_with(std::path::Path::new(dir), true, &|p, d| filter.keep(p, d))
            .with_context(|| format!("scanning {dir}"))?;
        let prefix = bundle_path(dir);
        let join = |path: &str| {
            if prefix.is_empty() {
                path.to_owned()
            } else {
                format!("{prefix}/{path}")
            }
        };
        let empty = scan.files.is_empty() && scan.links.is_empty() && scan.directories.is_empty();
        if empty && !prefix.is_empty() {
            plan.directories.insert(prefix.to_owned(), None);
        }
        for (path, link) in scan.links {
            plan.files.insert(join(&path), link);
        }
        for (path, target) in scan.directories {
            plan.directories.insert(join(&path), target);
        }
        plan.ignored
            .extend(scan.skipped.iter().map(|p| p.display().to_string()));
        for mut file in scan.files {
            file.path = join(&file.path);
            plan.bytes += file.entry.size;
            match previous.and_then(|p| p.get(&file.path)) {
                Some(old) if unchanged(old, &file.entry) => {
                    let mut entry = file.entry;
                    entry.contents = old.contents.clone();
                    plan.files.insert(file.path, entry);
                    plan.reused += 1;
                }
                _ => plan.to_read.push(file),
            }
        }
    }
    plan.excluded = filter.excluded() as u64;
    Ok(plan)
}

/// Same size and modification time, and the old entry's blocks add up to it.
fn unchanged(old: &FileEntry, new: &FileEntry) -> bool {
    old.link.is_none()
        && old.size == new.size
        && old.modified == new.modified
        && old.contents.iter().map(|c| c.size).sum::<u64>() == new.size
}

/// Pins `referenced` for this set on the node, keeping what it pins already, and
/// releases `superseded` (index records a new one replaced) unless referenced.
async fn add_pins(
    session: &Session,
    holder: &str,
    referenced: &BTreeSet<BlockId>,
    superseded: &[BlockId],
) -> anyhow::Result<PinReport> {
    let remote = &session.remote;
    let current: BTreeSet<BlockId> = remote.pins_of(holder).await?.into_iter().collect();
    let pin: Vec<BlockId> = referenced.difference(&current).copied().collect();
    let unpin: Vec<BlockId> = superseded
        .iter()
        .filter(|id| current.contains(id) && !referenced.contains(id))
        .copied()
        .collect();
    let mut report = PinReport {
        pinned: current.union(referenced).count() - unpin.len(),
        ..PinReport::default()
    };
    for batch in pin.chunks(PIN_BATCH) {
        report.absent += remote.repin(holder, batch, &[]).await?.len();
    }
    for batch in unpin.chunks(PIN_BATCH) {
        remote.repin(holder, &[], batch).await?;
        report.released += batch.len();
    }
    Ok(report)
}

/// Makes this set's pins on the node exactly `referenced`.
pub(super) async fn reconcile_pins(
    session: &Session,
    holder: &str,
    referenced: &BTreeSet<BlockId>,
) -> anyhow::Result<PinReport> {
    let remote = &session.remote;
    let current: BTreeSet<BlockId> = remote.pins_of(holder).await?.into_iter().collect();
    let pin: Vec<BlockId> = referenced.difference(&current).copied().collect();
    let unpin: Vec<BlockId> = current.difference(referenced).copied().collect();
    let mut report = PinReport {
        pinned: referenced.len(),
        ..PinReport::default()
    };
    for batch in pin.chunks(PIN_BATCH) {
        report.absent += remote.repin(holder, batch, &[]).await?.len();
    }
    for batch in unpin.chunks(PIN_BATCH) {
        remote.repin(holder, &[], batch).await?;
        report.released += batch.len();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Chunk;

    fn entry(size: u64, modified: f64, chunks: &[u64]) -> FileEntry {
        let contents = chunks
            .iter()
            .map(|&size| Chunk {
                size,
                url: String::new(),
            })
            .collect();
        FileEntry {
            contents,
            modified,
            size,
            ..FileEntry::empty()
        }
    }

    #[test]
    fn a_file_is_reused_only_when_size_time_and_blocks_agree() {
        let old = entry(10, 5.5, &[10]);
        assert!(unchanged(&old, &entry(10, 5.5, &[])));
        assert!(!unchanged(&old, &entry(11, 5.5, &[])));
        assert!(!unchanged(&old, &entry(10, 5.6, &[])));
        assert!(!unchanged(&entry(10, 5.5, &[4]), &entry(10, 5.5, &[])));
        let mut link = old.clone();
        link.link = Some("x".into());
        assert!(!unchanged(&link, &entry(10, 5.5, &[])));
        assert!(unchanged(&entry(0, 1.0, &[]), &entry(0, 1.0, &[])));
    }
}

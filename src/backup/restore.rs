//! Restoring a run, and verifying one. A restore fetches every block into staging
//! directories before anything appears at a destination: when blocks are missing in the
//! mesh it names how many and which files they belong to, removes the staging, and the
//! destinations stay as they were. `verify` fetches and checks every block of the latest
//! run without writing anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Serialize;

use super::{Incomplete, Session, absolute, bundle_path, index};
use crate::bundle::{Restore, Tree};
use crate::client::Remote;
use crate::codec::Locator;
use crate::id::BlockId;
use crate::transfer::{self, Opened, Options, Problems, blocking, fetch_tree, is_missing};

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// Unix seconds when the restored run started.
    pub run_started: u64,
    /// Where each selected path went.
    pub restored: Vec<(String, PathBuf)>,
    /// Regular files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Unix seconds when the verified run started.
    pub run_started: u64,
    /// Blocks checked (manifests included).
    pub blocks: u64,
    /// Bytes of file content checked.
    pub bytes: u64,
    /// Blocks no node of the mesh could give.
    pub missing: Vec<String>,
    /// Blocks that came back but did not decrypt, verify or match their size.
    pub corrupt: Vec<String>,
    /// Files those blocks belong to.
    pub files: Vec<String>,
}

impl VerifyReport {
    /// True when every block was retrieved and checked.
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// The run to restore: this machine's newest that started at or before `at`.
async fn pick_run(session: &Session, at: Option<u64>) -> anyhow::Result<index::Run> {
    let found = session.require().await?;
    let machine = &session.creds().machine;
    let Some(entry) = found.record.machines.get(machine) else {
        let names: Vec<&String> = found.record.machines.keys().collect();
        bail!("machine {machine:?} has no backups; this backup set has {names:?} (use --machine)");
    };
    let runs = match at {
        None => entry.runs.clone(),
        Some(_) => index::all_runs(session.remote(), entry).await?,
    };
    let limit = at.unwrap_or(u64::MAX);
    runs.into_iter()
        .rev()
        .find(|r| r.started <= limit)
        .with_context(|| match at {
            Some(t) => format!("machine {machine:?} has no backup from before {t} (unix time)"),
            None => format!("machine {machine:?} has no completed backup run yet"),
        })
}

/// The run's tree; a missing manifest block is reported as such.
async fn load_tree(remote: &Remote, run: &index::Run) -> anyhow::Result<Tree> {
    let (locator, _) = Locator::split(run.url.trim_end_matches('/'))
        .with_context(|| format!("bad run URL in the index: {}", run.url))?;
    match transfer::open(remote, locator).await {
        Ok(Opened::Bundle(tree)) => Ok(tree),
        Ok(Opened::Data(_)) => bail!("the run's URL does not name a bundle"),
        Err(e) if is_missing(&e) => Err(e.context(Incomplete(
            "the run's manifest is missing in the mesh; nothing was written".into(),
        ))),
        Err(e) => Err(e),
    }
}

/// Restores `dirs` (every directory of the run when empty) of this machine's latest run
/// (or the newest at or before `at`): into `to` at their full paths, or else each back
/// where it was (which must be absent or empty). All or nothing.
pub async fn restore(
    session: &Session,
    dirs: &[PathBuf],
    to: Option<&Path>,
    at: Option<u64>,
    progress: bool,
) -> anyhow::Result<RestoreReport> {
    let run = pick_run(session, at).await?;
    let tree = load_tree(session.remote(), &run).await?;
    let selected: Vec<String> = if dirs.is_empty() {
        run.dirs.iter().map(|d| bundle_path(d).to_owned()).collect()
    } else {
        let mut out = Vec::new();
        for dir in dirs {
            let abs = absolute(dir)?;
            let text = abs.to_str().context("the path is not UTF-8")?;
            out.push(bundle_path(text).to_owned());
        }
        out
    };
    let mut jobs: Vec<(String, PathBuf, Tree)> = Vec::new();
    for path in &selected {
        let part = select(&tree, path);
        if part.files.is_empty() && part.directories.is_empty() {
            bail!("/{path} is not in the backup (see `libernet backup list`)");
        }
        match to {
            Some(dest) => jobs.push((path.clone(), dest.to_owned(), part)),
            None => {
                if tree.files.contains_key(path) {
                    bail!("/{path} is a file: restore it with --to DEST");
                }
                jobs.push((
                    path.clone(),
                    PathBuf::from("/").join(path),
                    part.subtree(path),
                ));
            }
        }
    }
    if to.is_some() {
        // One destination: the selections side by side at their full paths.
        let mut merged = Tree::default();
        for (_, _, part) in jobs.drain(..) {
            merged.files.extend(part.files);
            merged.directories.extend(part.directories);
        }
        let dest = to.map(Path::to_owned).unwrap_or_default();
        jobs.push((selected.join(", "), dest, merged));
    }
    let files = jobs
        .iter()
        .map(|j| j.2.files.values().filter(|f| f.link.is_none()).count() as u64)
        .sum();
    let bytes = jobs.iter().map(|j| j.2.total_size()).sum();
    let mut staged = Vec::new();
    let mut created = Vec::new();
    for (_, dest, tree) in &jobs {
        if to.is_some() && !dest.exists() {
            std::fs::create_dir_all(dest).with_context(|| format!("{}", dest.display()))?;
            created.push(dest.clone());
        }
        let (tree_c, dest_c) = (tree.clone(), dest.clone());
        match blocking(move || Ok(Restore::begin(&tree_c, &dest_c)?)).await {
            Ok(r) => staged.push(Arc::new(r)),
            Err(e) => {
                remove_created(&created);
                return Err(e);
            }
        }
    }
    let bar = transfer::progress_bar(bytes, Options { progress }, "restore");
    let mut problems = Problems::default();
    for ((_, _, tree), restore) in jobs.iter().zip(&staged) {
        let result = fetch_tree(
            session.remote(),
            tree,
            Some(restore.clone()),
            &bar,
            &mut problems,
        )
        .await;
        if let Err(e) = result {
            drop(staged);
            remove_created(&created);
            return Err(e);
        }
    }
    bar.finish_and_clear();
    if !problems.is_empty() {
        drop(staged);
        remove_created(&created);
        return Err(Incomplete(format!("{}; nothing was written", problems.describe())).into());
    }
    let mut restored = Vec::new();
    for ((label, dest, tree), restore) in jobs.into_iter().zip(staged) {
        let restore =
            Arc::try_unwrap(restore).map_err(|_| anyhow::anyhow!("restore still in use"))?;
        let tree = Arc::new(tree);
        let t = tree.clone();
        blocking(move || Ok(restore.finish(&t)?)).await?;
        restored.push((format!("/{label}"), dest));
    }
    Ok(RestoreReport {
        run_started: run.started,
        restored,
        files,
        bytes,
    })
}

/// Destinations this restore created, removed again after a failure (they are empty:
/// the staging inside them is gone by then).
fn remove_created(created: &[PathBuf]) {
    for dir in created {
        let _ = std::fs::remove_dir(dir);
    }
}

/// The entries of `tree` at or under `path` (all of it for `""`), full paths kept.
fn select(tree: &Tree, path: &str) -> Tree {
    let under = |k: &String| {
        path.is_empty()
            || k == path
            || k.strip_prefix(path)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    Tree::from_entries(
        tree.files
            .iter()
            .filter(|(k, _)| under(k))
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect(),
        tree.directories
            .iter()
            .filter(|(k, _)| under(k))
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect(),
    )
}

/// Fetches and checks every block of this machine's latest run; writes nothing.
pub async fn verify(session: &Session, progress: bool) -> anyhow::Result<VerifyReport> {
    let run = pick_run(session, None).await?;
    let tree = match load_tree(session.remote(), &run).await {
        Ok(tree) => tree,
        Err(e) if e.chain().any(|c| c.is::<Incomplete>()) => {
            return Ok(VerifyReport {
                run_started: run.started,
                blocks: 0,
                bytes: 0,
                missing: vec![run.url.split('/').nth(2).unwrap_or("").to_owned()],
                corrupt: Vec::new(),
                files: vec!["(the run's manifest)".into()],
            });
        }
        Err(e) => return Err(e),
    };
    let bar = transfer::progress_bar(tree.total_size(), Options { progress }, "verify");
    let mut problems = Problems::default();
    fetch_tree(session.remote(), &tree, None, &bar, &mut problems).await?;
    bar.finish_and_clear();
    Ok(VerifyReport {
        run_started: run.started,
        blocks: problems.blocks,
        bytes: problems.bytes,
        missing: problems.missing.iter().map(BlockId::to_string).collect(),
        corrupt: problems.corrupt.iter().map(BlockId::to_string).collect(),
        files: problems.files.iter().map(|f| format!("/{f}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::FileEntry;

    #[test]
    fn selection_keeps_full_paths_and_respects_name_boundaries() {
        let file = FileEntry::empty();
        let mut tree = Tree::default();
        for p in ["home/a/x", "home/a/y/z", "home/ab/x", "etc/f"] {
            tree.files.insert(p.into(), file.clone());
        }
        tree.directories.insert("home/a/empty".into(), None);
        let part = select(&tree, "home/a");
        let keys: Vec<&String> = part.files.keys().chain(part.directories.keys()).collect();
        assert_eq!(keys, ["home/a/x", "home/a/y/z", "home/a/empty"]);
        assert_eq!(select(&tree, "etc/f").files.len(), 1);
        assert_eq!(select(&tree, "").files.len(), 4);
        assert!(select(&tree, "home/a/x/..").files.is_empty());
    }
}

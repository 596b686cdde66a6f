//! Restoring a run, and verifying one. A restore fetches every block into staging
//! directories before anything appears at a destination: when blocks are missing in the
//! mesh it names how many and which files they belong to, removes the staging, and the
//! destinations stay as they were. `verify` fetches and checks every block of the latest
//! run without writing anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Serialize;

use super::browse::{RunSpec, pick};
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

/// The run's tree; a missing manifest block is reported as such.
pub(super) async fn load_tree(remote: &Remote, run: &index::Run) -> anyhow::Result<Tree> {
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

/// How a restore job writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Into an absent or empty directory, whole.
    Whole,
    /// Beside what an existing directory holds; files already there are replaced only
    /// with `--overwrite`.
    Merge,
}

/// Most paths named in a refusal to overwrite.
const NAMED_CONFLICTS: usize = 10;

/// Restores `paths` (every directory of the run when empty) of the run `spec` names:
/// into `to` at their full paths, or else each back where it was. A destination that
/// is absent or empty is written whole; into an existing directory entries go beside
/// what is there, and files already there are refused unless `overwrite` (checked
/// before anything is fetched). All or nothing: blocks are fetched into staging first.
pub async fn restore(
    session: &Session,
    paths: &[PathBuf],
    to: Option<&Path>,
    spec: &RunSpec,
    overwrite: bool,
    progress: bool,
) -> anyhow::Result<RestoreReport> {
    let run = pick(session, spec).await?;
    let tree = load_tree(session.remote(), &run).await?;
    let selected: Vec<String> = if paths.is_empty() {
        run.dirs.iter().map(|d| bundle_path(d).to_owned()).collect()
    } else {
        let mut out = Vec::new();
        for path in paths {
            let abs = absolute(path)?;
            let text = abs.to_str().context("the path is not UTF-8")?;
            out.push(bundle_path(text).to_owned());
        }
        out
    };
    let mut jobs: Vec<(String, PathBuf, Tree, Way)> = Vec::new();
    let mut merged = Tree::default();
    for path in &selected {
        let part = select(&tree, path);
        if part.files.is_empty() && part.directories.is_empty() {
            bail!("/{path} is not in the run (see `libernet backup ls`)");
        }
        if to.is_some() {
            merged.files.extend(part.files);
            merged.directories.extend(part.directories);
            continue;
        }
        let place = PathBuf::from("/").join(path);
        if tree.files.contains_key(path) || !absent_or_empty(&place) {
            jobs.push((path.clone(), PathBuf::from("/"), part, Way::Merge));
        } else {
            jobs.push((path.clone(), place, part.subtree(path), Way::Whole));
        }
    }
    if let Some(dest) = to {
        let way = if absent_or_empty(dest) {
            Way::Whole
        } else if dest.is_dir() {
            Way::Merge
        } else {
            bail!("--to {}: not a directory", dest.display());
        };
        jobs.push((selected.join(", "), dest.to_owned(), merged, way));
    }
    for (_, dest, tree, way) in &jobs {
        if *way == Way::Merge {
            check_merge(tree, dest, overwrite)?;
        }
    }
    let files = jobs
        .iter()
        .map(|j| j.2.files.values().filter(|f| f.link.is_none()).count() as u64)
        .sum();
    let bytes = jobs.iter().map(|j| j.2.total_size()).sum();
    let mut staged = Vec::new();
    let mut created = Vec::new();
    for (_, dest, tree, way) in &jobs {
        if to.is_some() && !dest.exists() {
            std::fs::create_dir_all(dest).with_context(|| format!("{}", dest.display()))?;
            created.push(dest.clone());
        }
        let (tree_c, dest_c, way) = (tree.clone(), dest.clone(), *way);
        let begun = blocking(move || {
            Ok(match way {
                Way::Whole => Restore::begin(&tree_c, &dest_c)?,
                Way::Merge => {
                    let near = staging_place(&tree_c, &dest_c);
                    Restore::begin_merge(&tree_c, &dest_c, &near)?
                }
            })
        })
        .await;
        match begun {
            Ok(r) => staged.push(Arc::new(r)),
            Err(e) => {
                remove_created(&created);
                return Err(e);
            }
        }
    }
    let bar = transfer::progress_bar(bytes, Options { progress }, "restore");
    let mut problems = Problems::default();
    for ((_, _, tree, _), restore) in jobs.iter().zip(&staged) {
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
    for ((label, dest, tree, _), restore) in jobs.into_iter().zip(staged) {
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

/// True when `path` does not exist or is an empty directory.
fn absent_or_empty(path: &Path) -> bool {
    match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => std::fs::symlink_metadata(path).is_err(),
    }
}

/// Refuses a merge into `dest` that would replace a directory, or a file without
/// `overwrite`, naming what is in the way.
fn check_merge(tree: &Tree, dest: &Path, overwrite: bool) -> anyhow::Result<()> {
    let (mut existing, mut blocked) = (Vec::new(), Vec::new());
    for path in tree.placed_paths() {
        let at = dest.join(path);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => blocked.push(at),
            Ok(_) => existing.push(at),
            Err(_) => {}
        }
    }
    for (path, target) in &tree.directories {
        let at = dest.join(path);
        let meta = std::fs::symlink_metadata(&at);
        if target.is_none() && meta.is_ok_and(|m| !m.is_dir()) {
            blocked.push(at);
        }
    }
    let name = |list: &[PathBuf]| {
        let mut text: Vec<String> = list
            .iter()
            .take(NAMED_CONFLICTS)
            .map(|p| p.display().to_string())
            .collect();
        if list.len() > NAMED_CONFLICTS {
            text.push(format!("and {} more", list.len() - NAMED_CONFLICTS));
        }
        text.join(", ")
    };
    if !blocked.is_empty() {
        bail!(
            "{} paths are in the way (a directory where the run has a file, or the other \
             way round): {}; nothing was written",
            blocked.len(),
            name(&blocked)
        );
    }
    if !existing.is_empty() && !overwrite {
        let files = if existing.len() == 1 {
            "1 file exists".to_owned()
        } else {
            format!("{} files exist", existing.len())
        };
        bail!(
            "{files} already: {}; give --overwrite to replace them (nothing was written)",
            name(&existing)
        );
    }
    Ok(())
}

/// Where a merging restore stages: the deepest existing directory above every path
/// of `tree` under `dest` (so its renames stay on one file system).
fn staging_place(tree: &Tree, dest: &Path) -> PathBuf {
    let mut paths = tree.files.keys().chain(tree.directories.keys());
    let mut common: Vec<&str> = paths
        .next()
        .map(|p| p.split('/').collect())
        .unwrap_or_default();
    for path in paths {
        let same = common
            .iter()
            .zip(path.split('/'))
            .take_while(|(a, b)| *a == b)
            .count();
        common.truncate(same);
    }
    let mut at = dest.join(common.join("/"));
    while !at.is_dir() {
        match at.parent() {
            Some(parent) => at = parent.to_owned(),
            None => return dest.to_owned(),
        }
    }
    at
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
    let run = pick(session, &RunSpec::Latest).await?;
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

//! Looking into runs without restoring them: `backup ls` (one run's entries), `find`
//! (a pattern across every run) and `diff` (what changed between two runs); and how a
//! run is named on the command line (`RunSpec`).

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use serde::Serialize;

use super::pattern::Patterns;
use super::restore::load_tree;
use super::{Session, index};
use crate::bundle::{FileEntry, Tree};

/// A run named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSpec {
    /// The newest run.
    Latest,
    /// A run whose short id (or a longer prefix of its manifest id) starts with this.
    Id(String),
    /// The newest run that started at or before these Unix seconds.
    At(u64),
}

/// Fewest hex digits taken as a run id rather than a time.
pub const MIN_ID_DIGITS: usize = 4;

impl RunSpec {
    /// `latest`, or 4 to 64 hex digits (a run id); `None` for anything else (a time).
    pub fn parse_name(text: &str) -> Option<RunSpec> {
        let text = text.trim();
        if text == "latest" {
            return Some(RunSpec::Latest);
        }
        let hex = (MIN_ID_DIGITS..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| RunSpec::Id(text.to_ascii_lowercase()))
    }
}

/// Every run of this machine, oldest first (`all`), or those inline in the record.
pub(super) async fn machine_runs(session: &Session, all: bool) -> anyhow::Result<Vec<index::Run>> {
    let found = session.require().await?;
    let machine = &session.creds.machine;
    let Some(entry) = found.record.machines.get(machine) else {
        let names: Vec<&String> = found.record.machines.keys().collect();
        bail!("machine {machine:?} has no backups; this backup set has {names:?} (use --machine)");
    };
    if all {
        index::all_runs(&session.remote, entry).await
    } else {
        Ok(entry.runs.clone())
    }
}

/// The run `spec` names among this machine's runs.
pub(super) async fn pick(session: &Session, spec: &RunSpec) -> anyhow::Result<index::Run> {
    let runs = machine_runs(session, *spec != RunSpec::Latest).await?;
    let machine = &session.creds.machine;
    match spec {
        RunSpec::Latest => runs
            .last()
            .cloned()
            .with_context(|| format!("machine {machine:?} has no completed backup run yet")),
        RunSpec::At(t) => runs
            .into_iter()
            .rev()
            .find(|r| r.started <= *t)
            .with_context(|| {
                format!("machine {machine:?} has no backup from before {t} (unix time)")
            }),
        RunSpec::Id(prefix) => {
            let mut hits = runs.into_iter().filter(|r| {
                r.url
                    .strip_prefix("/sha256/")
                    .is_some_and(|id| id.starts_with(prefix.as_str()))
            });
            match (hits.next(), hits.next()) {
                (Some(run), None) => Ok(run),
                (Some(_), Some(_)) => bail!("run id {prefix} is ambiguous: give more digits"),
                (None, _) => {
                    bail!("machine {machine:?} has no run {prefix} (see `libernet backup history`)")
                }
            }
        }
    }
}

/// A run as reports name it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRef {
    /// Its short id.
    pub id: String,
    /// Unix seconds when it started.
    pub started: u64,
}

impl From<&index::Run> for RunRef {
    fn from(run: &index::Run) -> RunRef {
        RunRef {
            id: run.id().to_owned(),
            started: run.started,
        }
    }
}

/// One entry of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Its absolute path on the machine.
    pub path: String,
    /// `file`, `dir` (an empty directory) or `link`.
    pub kind: &'static str,
    /// Bytes (files).
    pub size: u64,
    /// Unix seconds of its modification (files and links).
    pub modified: Option<f64>,
    /// A link's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The entries of `tree`, by path.
pub fn entries(tree: &Tree) -> Vec<Entry> {
    let mut out: Vec<Entry> = tree
        .files
        .iter()
        .map(|(path, f)| Entry {
            path: format!("/{path}"),
            kind: if f.link.is_some() { "link" } else { "file" },
            size: f.size,
            modified: Some(f.modified),
            target: f.link.clone(),
        })
        .collect();
    out.extend(tree.directories.iter().map(|(path, target)| Entry {
        path: format!("/{path}"),
        kind: if target.is_some() { "link" } else { "dir" },
        size: 0,
        modified: None,
        target: target.clone(),
    }));
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// What `ls` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The run.
    pub run: RunRef,
    /// Its entries (empty directories only: others show through their entries).
    pub entries: Vec<Entry>,
}

/// The entries of the run `spec` names, under `under` (absolute paths; all if empty).
pub async fn ls(session: &Session, spec: &RunSpec, under: &[String]) -> anyhow::Result<Listing> {
    let run = pick(session, spec).await?;
    let tree = load_tree(&session.remote, &run).await?;
    let inside = |path: &str| {
        under.is_empty()
            || under.iter().any(|u| {
                let u = u.trim_end_matches('/');
                path == u || path.strip_prefix(u).is_some_and(|r| r.starts_with('/'))
            })
    };
    Ok(Listing {
        run: RunRef::from(&run),
        entries: entries(&tree)
            .into_iter()
            .filter(|e| inside(&e.path))
            .collect(),
    })
}

/// One match of `find`.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// The run it is in.
    pub run: RunRef,
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
}

/// Entries matching `patterns` in every run of this machine, oldest run first.
pub async fn find(session: &Session, patterns: &Patterns) -> anyhow::Result<Vec<Hit>> {
    let runs = machine_runs(session, true).await?;
    let mut hits = Vec::new();
    for run in &runs {
        let tree = load_tree(&session.remote, run)
            .await
            .with_context(|| format!("reading run {}", run.id()))?;
        for entry in entries(&tree) {
            if patterns.matches(&entry.path) {
                hits.push(Hit {
                    run: RunRef::from(run),
                    entry,
                });
            }
        }
    }
    Ok(hits)
}

/// What `diff` found.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// The older side.
    pub from: RunRef,
    /// The newer side.
    pub to: RunRef,
    /// Paths only in `to`.
    pub added: Vec<String>,
    /// Paths only in `from`.
    pub removed: Vec<String>,
    /// Paths in both whose content, kind, link target or mode differ.
    pub changed: Vec<String>,
}

/// What one path is, for comparing runs: its blocks (not its modification time, which
/// alone does not change what a restore writes).
enum Shape<'a> {
    File(&'a FileEntry),
    Dir(&'a Option<String>),
}

fn shape<'a>(t: &'a Tree, k: &str) -> Option<Shape<'a>> {
    t.files
        .get(k)
        .map(Shape::File)
        .or_else(|| t.directories.get(k).map(Shape::Dir))
}

fn same_file(a: &FileEntry, b: &FileEntry) -> bool {
    a.size == b.size
        && a.link == b.link
        && a.executable == b.executable
        && a.readonly == b.readonly
        && a.contents.len() == b.contents.len()
        && a.contents
            .iter()
            .zip(&b.contents)
            .all(|(x, y)| x.url == y.url)
}

/// Compares two trees: (added, removed, changed), absolute paths.
pub fn compare(from: &Tree, to: &Tree) -> (Vec<String>, Vec<String>, Vec<String>) {
    let paths = |t: &Tree| -> BTreeSet<String> {
        t.files
            .keys()
            .chain(t.directories.keys())
            .cloned()
            .collect()
    };
    let (a, b) = (paths(from), paths(to));
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for k in b.iter().filter(|k| !a.contains(*k)) {
        added.push(format!("/{k}"));
    }
    for k in &a {
        match (shape(from, k), shape(to, k)) {
            (Some(_), None) => removed.push(format!("/{k}")),
            (Some(Shape::File(x)), Some(Shape::File(y))) if same_file(x, y) => {}
            (Some(Shape::Dir(x)), Some(Shape::Dir(y))) if x == y => {}
            _ => changed.push(format!("/{k}")),
        }
    }
    (added, removed, changed)
}

/// What changed from run `a` to run `b`.
pub async fn diff(session: &Session, a: &RunSpec, b: &RunSpec) -> anyhow::Result<Diff> {
    let (from, to) = (pick(session, a).await?, pick(session, b).await?);
    let (old, new) = (
        load_tree(&session.remote, &from).await?,
        load_tree(&session.remote, &to).await?,
    );
    let (added, removed, changed) = compare(&old, &new);
    Ok(Diff {
        from: RunRef::from(&from),
        to: RunRef::from(&to),
        added,
        removed,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Chunk;

    fn file(url: &str, size: u64) -> FileEntry {
        FileEntry {
            contents: vec![Chunk {
                size,
                url: url.into(),
            }],
            size,
            modified: 1.0,
            ..FileEntry::empty()
        }
    }

    #[test]
    fn run_names_are_latest_or_hex() {
        assert_eq!(RunSpec::parse_name("latest"), Some(RunSpec::Latest));
        assert_eq!(
            RunSpec::parse_name("AbCd12"),
            Some(RunSpec::Id("abcd12".into()))
        );
        assert_eq!(RunSpec::parse_name("abc"), None);
        assert_eq!(RunSpec::parse_name("2026-11-21"), None);
    }

    #[test]
    fn comparing_trees_sees_content_not_times() {
        let mut a = Tree::default();
        a.files.insert("x/same".into(), file("u1", 1));
        a.files.insert("x/edit".into(), file("u2", 1));
        a.files.insert("x/gone".into(), file("u3", 1));
        a.directories.insert("x/empty".into(), None);
        let mut b = a.clone();
        b.files.get_mut("x/same").unwrap().modified = 9.0;
        b.files.insert("x/edit".into(), file("u4", 1));
        b.files.remove("x/gone");
        b.files.insert("x/new".into(), file("u5", 1));
        b.directories.remove("x/empty");
        b.files.insert("x/empty".into(), file("u6", 1));
        let (added, removed, changed) = compare(&a, &b);
        assert_eq!(added, ["/x/new"]);
        assert_eq!(removed, ["/x/gone"]);
        assert_eq!(changed, ["/x/edit", "/x/empty"]);
    }
}

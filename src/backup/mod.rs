//! `libernet backup`: directories pushed into the mesh as one bundle per run, found
//! again from any node with a user name and a passphrase, restored exactly.
//!
//! Built on `transfer` (uploads, downloads), `bundle` (scans, manifests, restores),
//! `codec` and `client`; it keeps no local state: the index (`index`) lives in the mesh.
//! The passphrase and the keys never leave this process; blocks are pinned on the node
//! they are sent to when the node's admin token is at hand, and released when a later
//! run no longer references them.

mod browse;
mod forget;
pub mod index;
pub mod key;
pub mod pattern;
mod restore;
mod run;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::client::Remote;
use crate::transfer::Uploader;
pub use browse::{Diff, Entry, Hit, Listing as RunListing, RunRef, RunSpec, diff, find, ls};
pub use forget::{Decision, ForgetReport, Policy, forget};
pub use index::{Found, Machine, Record, Run};
use key::{Kdf, Keys};
pub use pattern::{Exclude, Patterns};
pub use restore::{RestoreReport, VerifyReport, restore, verify};
pub use run::{PinReport, RunReport, run};

/// Who is backing up: the user and passphrase name the backup set; the machine names
/// one member of it.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The passphrase.
    pub passphrase: String,
    /// This machine's name (the host name unless given).
    pub machine: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

pub use crate::transfer::Incomplete;

/// No index opens with this user name and passphrase. Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error(
    "no backup found for user {user:?} with this passphrase (searched {months} months back); \
     a wrong passphrase finds nothing"
)]
pub struct NoIndex {
    /// The user name.
    pub user: String,
    /// Months searched.
    pub months: u32,
}

/// The index opens with this user name and passphrase no more: `backup passwd` moved
/// the set to another passphrase. Exit code 1.
#[derive(Debug, thiserror::Error)]
#[error(
    "the backup set of user {user:?} was moved to a new passphrase (`libernet backup passwd`); \
     this passphrase no longer opens it"
)]
pub struct Moved {
    /// The user name.
    pub user: String,
}

/// A backup set on one node.
pub struct Session {
    remote: Remote,
    creds: Credentials,
    /// The pin holder, when the remote carries the node's admin token.
    holder: Option<String>,
    /// The passphrase's keys, derived once each.
    keys: Arc<Keys>,
}

impl Session {
    /// A session; with a token on `remote`, blocks are pinned for this set's holder.
    pub fn new(remote: Remote, creds: Credentials) -> Session {
        let holder = remote
            .has_token()
            .then(|| holder_name(&creds.user, &creds.machine));
        let keys = Arc::new(Keys::new(&creds.passphrase));
        Session {
            remote,
            creds,
            holder,
            keys,
        }
    }

    /// The node.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The credentials.
    pub fn creds(&self) -> &Credentials {
        &self.creds
    }

    /// The newest index, if any (a set moved to another passphrase is `Moved`).
    pub async fn find(&self) -> anyhow::Result<Option<Found>> {
        let found = index::find(&self.remote, &self.creds.user, &self.keys).await?;
        if found.as_ref().is_some_and(|f| f.record.moved) {
            return Err(Moved {
                user: self.creds.user.clone(),
            }
            .into());
        }
        Ok(found)
    }

    /// The newest index, or `NoIndex`.
    pub async fn require(&self) -> anyhow::Result<Found> {
        self.find().await?.ok_or_else(|| {
            NoIndex {
                user: self.creds.user.clone(),
                months: index::MAX_MONTHS_BACK,
            }
            .into()
        })
    }

    /// An uploader that checks every block and pins it when it can.
    fn uploader(&self) -> Uploader {
        Uploader::pinning(&self.remote, self.holder.as_deref())
    }

    /// Writes `record` as the new index after `previous`.
    async fn write(
        &self,
        record: Record,
        previous: Option<&Found>,
    ) -> anyhow::Result<index::Written> {
        let kdf = match previous.and_then(|f| f.kdf) {
            Some(kdf) => kdf,
            None => Kdf::fresh()?,
        };
        self.write_with(record, previous, &kdf).await
    }

    /// Writes `record` sealed under `kdf` (a set's first record, or a new passphrase's).
    async fn write_with(
        &self,
        record: Record,
        previous: Option<&Found>,
        kdf: &Kdf,
    ) -> anyhow::Result<index::Written> {
        let mut record = record;
        record.user = self.creds.user.clone();
        record.writer = self.creds.machine.clone();
        index::write(&self.uploader(), record, previous, &self.keys, kdf).await
    }
}

/// The pin holder of a backup set: a hash, so the node's operator does not learn the
/// user name.
pub fn holder_name(user: &str, machine: &str) -> String {
    let digest = crate::id::BlockId::of(format!("libernet-backup\n{user}\n{machine}").as_bytes());
    format!("backup-{}", &digest.to_string()[..24])
}

/// What `add` and `remove` did.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The machine's directories now.
    pub dirs: Vec<String>,
    /// Directories added or removed.
    pub changed: Vec<String>,
    /// Id of the new index record.
    pub record: String,
    /// True when this created the backup set.
    pub created: bool,
}

/// Adds directories to this machine's backup (they must exist; none may contain or lie
/// inside another).
pub async fn add(
    session: &Session,
    dirs: &[PathBuf],
    found: Option<Found>,
) -> anyhow::Result<Change> {
    let mut record = found.as_ref().map(|f| f.record.clone()).unwrap_or_default();
    let machine = record
        .machines
        .entry(session.creds.machine.clone())
        .or_default();
    let mut changed = Vec::new();
    for dir in dirs {
        let path = std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
        if !path.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        let text = path
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?
            .to_owned();
        if machine.dirs.contains(&text) || changed.contains(&text) {
            continue;
        }
        if let Some(other) = machine
            .dirs
            .iter()
            .chain(&changed)
            .find(|d| nested(d, &text) || nested(&text, d))
        {
            bail!("{text} overlaps {other}, which is already backed up");
        }
        changed.push(text);
    }
    machine.dirs.extend(changed.iter().cloned());
    machine.dirs.sort();
    let dirs_now = machine.dirs.clone();
    if let (true, Some(found)) = (changed.is_empty(), &found) {
        return Ok(Change {
            dirs: dirs_now,
            changed,
            record: found.id.to_string(),
            created: false,
        });
    }
    let written = session.write(record, found.as_ref()).await?;
    Ok(Change {
        dirs: dirs_now,
        changed,
        record: written.id.to_string(),
        created: found.is_none(),
    })
}

/// Removes directories from this machine's backup (its earlier runs keep them).
pub async fn remove(session: &Session, dirs: &[PathBuf]) -> anyhow::Result<Change> {
    let found = session.require().await?;
    let mut record = found.record.clone();
    let Some(machine) = record.machines.get_mut(&session.creds.machine) else {
        bail!("machine {:?} backs up nothing", session.creds.machine);
    };
    let mut changed = Vec::new();
    for dir in dirs {
        let wanted = [std::fs::canonicalize(dir).ok(), absolute(dir).ok()];
        let Some(pos) = machine.dirs.iter().position(|d| {
            wanted
                .iter()
                .flatten()
                .any(|w| w.to_str() == Some(d.as_str()))
        }) else {
            bail!(
                "{} is not backed up (see `libernet backup list`)",
                dir.display()
            );
        };
        changed.push(machine.dirs.remove(pos));
    }
    let dirs_now = machine.dirs.clone();
    let written = session.write(record, Some(&found)).await?;
    Ok(Change {
        dirs: dirs_now,
        changed,
        record: written.id.to_string(),
        created: false,
    })
}

/// One machine in `list`.
#[derive(Debug, Clone, Serialize)]
pub struct MachineSummary {
    /// Its name.
    pub name: String,
    /// Its directories.
    pub dirs: Vec<String>,
    /// Its latest run.
    pub last_run: Option<Run>,
}

/// What `list` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The user.
    pub user: String,
    /// The machine asking.
    pub machine: String,
    /// The index record read, and when it was written.
    pub record: String,
    /// Unix seconds.
    pub written: u64,
    /// Every machine of the set.
    pub machines: Vec<MachineSummary>,
}

/// The backup set's machines, directories and latest runs.
pub async fn list(session: &Session) -> anyhow::Result<Listing> {
    let found = session.require().await?;
    Ok(Listing {
        user: session.creds.user.clone(),
        machine: session.creds.machine.clone(),
        record: found.id.to_string(),
        written: found.record.written,
        machines: found
            .record
            .machines
            .iter()
            .map(|(name, m)| MachineSummary {
                name: name.clone(),
                dirs: m.dirs.clone(),
                last_run: m.runs.last().cloned(),
            })
            .collect(),
    })
}

/// One run in `history`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The run's short id (for `diff`, `ls --at`, `restore --at`).
    pub id: String,
    /// The machine.
    pub machine: String,
    /// The run.
    #[serde(flatten)]
    pub run: Run,
}

/// Every run of every machine, oldest first.
pub async fn history(session: &Session) -> anyhow::Result<Vec<HistoryEntry>> {
    let found = session.require().await?;
    let mut out = Vec::new();
    for (name, machine) in &found.record.machines {
        for run in index::all_runs(&session.remote, machine).await? {
            out.push(HistoryEntry {
                id: run.id().to_owned(),
                machine: name.clone(),
                run,
            });
        }
    }
    out.sort_by_key(|e| (e.run.started, e.machine.clone()));
    Ok(out)
}

/// What `passwd` did.
#[derive(Debug, Clone, Serialize)]
pub struct PasswdReport {
    /// The index record under the new passphrase.
    pub record: String,
    /// The record under the old passphrase that says the set moved.
    pub moved: String,
}

/// Re-encrypts the index under `new_passphrase` (a fresh salt): a record holding the
/// whole index is written under the new passphrase, then one under the old passphrase
/// that supersedes the old heads and says the set moved, so the old passphrase finds
/// nothing more to restore or add to. Records written before stay in the mesh until
/// evicted: whoever knew the old passphrase could still open those (and the runs they
/// name); a new passphrase does not take back what was known.
pub async fn passwd(session: &Session, new_passphrase: &str) -> anyhow::Result<PasswdReport> {
    if new_passphrase == session.creds.passphrase {
        bail!("the new passphrase is the old one");
    }
    let found = session.require().await?;
    let new = Session {
        remote: session.remote.clone(),
        creds: Credentials {
            passphrase: new_passphrase.to_owned(),
            ..session.creds.clone()
        },
        holder: session.holder.clone(),
        keys: Arc::new(Keys::new(new_passphrase)),
    };
    if new.find().await?.is_some() {
        bail!(
            "the new passphrase already opens a backup set of user {:?}; choose another",
            session.creds.user
        );
    }
    let written = new
        .write_with(found.record.clone(), None, &Kdf::fresh()?)
        .await?;
    let moved = Record {
        moved: true,
        ..Record::default()
    };
    let tomb = session.write(moved, Some(&found)).await?;
    if let Some(holder) = &session.holder {
        // Both new records were pinned as they were sent; the old heads are not needed.
        for batch in found.heads.chunks(crate::node::MAX_REPIN) {
            session.remote.repin(holder, &[], batch).await?;
        }
    }
    Ok(PasswdReport {
        record: written.id.to_string(),
        moved: tomb.id.to_string(),
    })
}

/// True when `inner` is `outer` or lies under it (as path strings).
fn nested(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `path` made absolute without touching the file system; `..` is refused (it would
/// depend on links the backup may not have).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.components().any(|c| c == Component::ParentDir) {
        bail!("{}: give the path without `..`", path.display());
    }
    let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
    Ok(abs.components().collect())
}

/// The bundle path of an absolute directory: without its leading `/`.
fn bundle_path(dir: &str) -> &str {
    dir.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting() {
        assert!(nested("/a", "/a/b"));
        assert!(nested("/a", "/a"));
        assert!(!nested("/a", "/ab"));
        assert!(!nested("/a/b", "/a"));
        assert!(nested("/", "/x"));
    }

    #[test]
    fn absolute_paths_refuse_dot_dot() {
        assert!(absolute(Path::new("/a/../b")).is_err());
        assert_eq!(
            absolute(Path::new("/a/./b")).unwrap(),
            PathBuf::from("/a/b")
        );
        assert!(absolute(Path::new("rel")).unwrap().is_absolute());
    }

    #[test]
    fn holders_are_stable_and_valid_pin_holders() {
        let h = holder_name("alice", "laptop");
        assert_eq!(h, holder_name("alice", "laptop"));
        assert_ne!(h, holder_name("alice", "desktop"));
        assert!(h.parse::<crate::store::Holder>().is_ok());
    }
}

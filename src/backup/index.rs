//! The backup index: which directories each machine of a user backs up and every run's
//! bundle URL. It lives in the mesh only, as passphrase-encrypted records placed near
//! `sha256("USER:<user>@<YYYY-MM>")` (DESIGN 5) for the UTC month they were written in, so
//! a user name and a passphrase find it from any node: LIKE around the target, month by
//! month back from now, decrypting what is there. Records are sealed under an Argon2id
//! key whose parameters and salt each record carries in clear (`key`); records of the
//! first format (key = SHA-256 of the passphrase) are still read.
//!
//! Each record is the whole index. A new record lists the records it supersedes (the
//! heads its writer read); the newest head wins, and heads written concurrently (two
//! machines at once) are merged rather than lost. Runs beyond `MAX_INLINE_RUNS` per
//! machine move to archive blocks (convergent, linked from the record), so a record
//! stays a few tens of KiB however long the history.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::key::{HEADER_LEN, Kdf, Keys};
use crate::client::{Remote, unix_now};
use crate::codec::{self, Locator, MAX_CONTENT, Mode, NEAR_OVERHEAD};
use crate::id::BlockId;
use crate::transfer::{Uploader, blocking, fetch};

/// Leading bits a record shares with its month's target. At 20 a random block lands
/// there once in a million, so even a big node's LIKE answer holds few strangers, and
/// placing a record takes about a million SHA-256 compressions (well under a second).
pub const INDEX_BITS: u32 = 20;

/// Months searched back from the current one before concluding there is no index.
pub const MAX_MONTHS_BACK: u32 = 120;

/// Runs kept in a record per machine; older ones move to archive blocks.
pub const MAX_INLINE_RUNS: usize = 64;

/// Most ids a node's LIKE answer holds (DESIGN 3). An answer this full may hide more
/// records, so the search splits the region and asks again.
pub const LIKE_LIMIT: usize = 100;

/// Most LIKE requests spent on one month (each split doubles the probes of a prefix):
/// enough for thousands of records in a month.
pub const MAX_PROBES: usize = 64;

/// Most archive blocks followed when reading a machine's history.
pub const MAX_ARCHIVES: usize = 10_000;

/// Version of the record format.
pub const FORMAT: u32 = 1;

/// One backup run of one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Unix seconds when it started (files changed after this may be newer).
    pub started: u64,
    /// Unix seconds when its bundle was complete.
    pub finished: u64,
    /// The bundle: `/sha256/<id>/aes256/<key>/`; paths in it are the directories'
    /// absolute paths without the leading `/`.
    pub url: String,
    /// Id of the node it was sent to.
    pub node: String,
    /// The directories it holds.
    pub dirs: Vec<String>,
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files whose blocks were reused from the run before, unread.
    #[serde(default)]
    pub reused: u64,
    /// Blocks sent.
    #[serde(default)]
    pub sent: u64,
    /// Blocks the node already held.
    #[serde(default)]
    pub skipped: u64,
}

/// Hex digits of a run's short id (`backup history`, `diff`, `--at`): its manifest
/// block's id cut like restic's short snapshot ids.
pub const RUN_ID_LEN: usize = 8;

impl Run {
    /// The run's short id: the first `RUN_ID_LEN` hex digits of its manifest's id.
    pub fn id(&self) -> &str {
        let id = self.url.strip_prefix("/sha256/").unwrap_or(&self.url);
        id.get(..RUN_ID_LEN).unwrap_or(id)
    }

    /// The whole id of its manifest block, if the URL holds one.
    pub fn manifest(&self) -> Option<BlockId> {
        let id = self.url.strip_prefix("/sha256/")?;
        id.get(..64)?.parse().ok()
    }
}

/// What the index knows of one machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Directories backed up (absolute, normalised), sorted.
    #[serde(default)]
    pub dirs: Vec<String>,
    /// The latest runs, oldest first.
    #[serde(default)]
    pub runs: Vec<Run>,
    /// Archive block of the runs before these (content URL), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older: Option<String>,
}

/// Older runs of a machine, moved out of the record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Archive {
    runs: Vec<Run>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    older: Option<String>,
}

/// The index as one record holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `FORMAT`; also marks the JSON as a backup record.
    pub libernet_backup: u32,
    /// The user name (records of other users that share the passphrase are skipped).
    pub user: String,
    /// Unix seconds when it was written.
    pub written: u64,
    /// The machine that wrote it.
    pub writer: String,
    /// Ids of the records it replaces.
    #[serde(default)]
    pub supersedes: Vec<BlockId>,
    /// Each machine's directories and runs.
    #[serde(default)]
    pub machines: BTreeMap<String, Machine>,
    /// Set by `backup passwd` in the last record it writes under the old passphrase:
    /// the set now opens with another passphrase only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moved: bool,
}

/// The index as found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The newest record, with any concurrent heads merged into it.
    pub record: Record,
    /// Its id.
    pub id: BlockId,
    /// Every head (records nothing supersedes): what the next record supersedes.
    pub heads: Vec<BlockId>,
    /// The month it was found under (`YYYY-MM`).
    pub month: String,
    /// Records that decrypted in that month.
    pub records: usize,
    /// The newest head's key derivation; `None` for a first-format record (SHA-256).
    pub kdf: Option<Kdf>,
}

/// The LIKE target of `user`'s records written in `month` (`YYYY-MM`).
pub fn target(user: &str, month: &str) -> BlockId {
    BlockId::of(format!("USER:{user}@{month}").as_bytes())
}

/// `YYYY-MM` of the UTC month `back` months before the one holding `unix` seconds.
pub fn month_of(unix: u64, back: u32) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX);
    let date = jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let months = i32::from(date.year()) * 12 + i32::from(date.month()) - 1 - back as i32;
    format!(
        "{:04}-{:02}",
        months.div_euclid(12),
        months.rem_euclid(12) + 1
    )
}

/// Finds the newest index of `user` that `keys` opens, searching back month by month.
/// `None` when no record decrypts (a wrong passphrase, or no backup yet).
pub async fn find(remote: &Remote, user: &str, keys: &Arc<Keys>) -> anyhow::Result<Option<Found>> {
    let now = unix_now();
    for back in 0..=MAX_MONTHS_BACK {
        let month = month_of(now, back);
        let records = month_records(remote, user, keys, &month).await?;
        if let Some(found) = resolve(records, month) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The records of `month` that `keys` opens.
async fn month_records(
    remote: &Remote,
    user: &str,
    keys: &Arc<Keys>,
    month: &str,
) -> anyhow::Result<Vec<(BlockId, Opened)>> {
    let target = target(user, month);
    let ids = candidates(remote, &target, INDEX_BITS).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let (remote, keys, user) = (remote.clone(), keys.clone(), user.to_owned());
        tasks.spawn(async move { (id, open_record(&remote, &id, &keys, &user).await) });
    }
    let mut records = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let (id, Some(record)) = done.context("internal task failed")? {
            records.push((id, record));
        }
    }
    Ok(records)
}

/// Ids the node (and its nearest peers) know sharing at least `bits` (`INDEX_BITS` for
/// records) with `target`. An answer full of ids that all share the probe's prefix may
/// hide more: the prefix is split on its next bit and both halves asked, so a month with
/// more than `LIKE_LIMIT` records is still read whole (up to `MAX_PROBES` requests).
pub async fn candidates(
    remote: &Remote,
    target: &BlockId,
    bits: u32,
) -> anyhow::Result<Vec<BlockId>> {
    let mut found = BTreeSet::new();
    let mut probes = vec![(*target, bits)];
    let mut asked = 0;
    while let Some((probe, prefix)) = probes.pop() {
        asked += 1;
        let near = remote.like(&probe).await?;
        let full = near.len() >= LIKE_LIMIT;
        let all_in_prefix = near.iter().all(|(id, _)| id.match_score(&probe) >= prefix);
        found.extend(
            near.iter()
                .map(|(id, _)| *id)
                .filter(|id| id.match_score(target) >= bits),
        );
        if full && all_in_prefix && prefix < 256 {
            if asked + probes.len() + 2 > MAX_PROBES {
                tracing::warn!(%target, "too many records near the target; some were not read");
                continue;
            }
            let mut flipped = probe;
            let bit = prefix as usize;
            flipped.0[bit / 8] ^= 0x80 >> (bit % 8);
            probes.push((probe, prefix + 1));
            probes.push((flipped, prefix + 1));
        }
    }
    Ok(found.into_iter().collect())
}

/// A record as opened, with the derivation of its key (`None`: the first format).
pub type Opened = (Record, Option<Kdf>);

/// The record in block `id` if `keys` opens it and it is `user`'s; anything else (a
/// stranger's block, another passphrase, a block gone, a derivation refused) is `None`.
async fn open_record(remote: &Remote, id: &BlockId, keys: &Keys, user: &str) -> Option<Opened> {
    let block = remote.get_block(id, None).await.ok()?;
    let (key, kdf) = match Kdf::parse(&block) {
        Some((kdf, _)) => match keys.get(&kdf).await {
            Ok(key) => (key, Some(kdf)),
            Err(e) => {
                tracing::debug!(%id, error = %format!("{e:#}"), "record skipped");
                return None;
            }
        },
        None => (keys.legacy(), None),
    };
    let skip = kdf.map_or(0, |_| HEADER_LEN);
    let content = blocking(move || {
        Ok(codec::decode(&block[skip..], Mode::Passphrase, &key).map(|d| d.content))
    })
    .await
    .ok()?
    .ok()?;
    let record: Record = serde_json::from_slice(&content).ok()?;
    (record.libernet_backup >= 1 && record.user == user).then_some((record, kdf))
}

/// Opens the one record in block `id` (for tests and tools that know its id).
pub async fn open(remote: &Remote, id: &BlockId, keys: &Keys, user: &str) -> Option<Opened> {
    open_record(remote, id, keys, user).await
}

/// The newest head of `records`, with the other heads merged in.
fn resolve(records: Vec<(BlockId, Opened)>, month: String) -> Option<Found> {
    let superseded: BTreeSet<BlockId> = records
        .iter()
        .flat_map(|(_, (r, _))| r.supersedes.iter().copied())
        .collect();
    let count = records.len();
    let mut heads: Vec<(BlockId, Opened)> = records
        .into_iter()
        .filter(|(id, _)| !superseded.contains(id))
        .collect();
    heads.sort_by_key(|(id, (r, _))| (r.written, *id));
    let (id, (mut record, kdf)) = heads.pop()?;
    let mut head_ids = vec![id];
    for (other_id, (other, _)) in heads {
        head_ids.push(other_id);
        merge(&mut record, other);
    }
    Some(Found {
        record,
        id,
        heads: head_ids,
        month,
        records: count,
        kdf,
    })
}

/// Adds to `into` what `other` (an older concurrent head) knows and it does not:
/// machines it lacks, and runs it lacks (by start time and URL).
fn merge(into: &mut Record, other: Record) {
    for (name, theirs) in other.machines {
        let Some(ours) = into.machines.get_mut(&name) else {
            into.machines.insert(name, theirs);
            continue;
        };
        for run in theirs.runs {
            if !ours
                .runs
                .iter()
                .any(|r| r.started == run.started && r.url == run.url)
            {
                ours.runs.push(run);
            }
        }
        ours.runs.sort_by_key(|r| (r.started, r.finished));
        if ours.older.is_none() {
            ours.older = theirs.older;
        }
    }
}

/// What writing a record made: its id, and any archive blocks (all to be pinned).
#[derive(Debug, Clone)]
pub struct Written {
    /// The record's id.
    pub id: BlockId,
    /// Archive blocks written for it.
    pub archives: Vec<BlockId>,
}

/// Most bytes of a record's JSON: a block less the clear header, the cipher's overhead
/// and room for the near-id suffix.
pub const MAX_RECORD: usize = MAX_CONTENT - HEADER_LEN - NEAR_OVERHEAD;

/// Writes `record` as the new index: it supersedes `previous`'s heads, moves old runs to
/// archives, is sealed under `keys`' key for `kdf`, and is placed near this month's
/// target. Sent through `uploader` (so pinned when it pins).
pub async fn write(
    uploader: &Uploader,
    mut record: Record,
    previous: Option<&Found>,
    keys: &Keys,
    kdf: &Kdf,
) -> anyhow::Result<Written> {
    record.libernet_backup = FORMAT;
    record.written = unix_now();
    record.supersedes = previous.map(|f| f.heads.clone()).unwrap_or_default();
    let mut archives = Vec::new();
    for machine in record.machines.values_mut() {
        if machine.runs.len() <= MAX_INLINE_RUNS {
            continue;
        }
        let keep = MAX_INLINE_RUNS / 2;
        let moved: Vec<Run> = machine.runs.drain(..machine.runs.len() - keep).collect();
        let archive = Archive {
            runs: moved,
            older: machine.older.take(),
        };
        let json = serde_json::to_vec(&archive)?;
        let encoded = blocking(move || Ok(codec::encode(&json)?)).await?;
        let locator = uploader.send(encoded).await?;
        archives.push(locator.id);
        machine.older = Some(locator.to_string());
    }
    let json = serde_json::to_vec(&record)?;
    if json.len() > MAX_RECORD {
        bail!(
            "the backup index is {} bytes, over the {MAX_RECORD} a record holds",
            json.len()
        );
    }
    let target = target(&record.user, &month_of(record.written, 0));
    let key = keys.get(kdf).await?;
    let kdf = *kdf;
    let encoded = blocking(move || {
        let sealed = kdf.seal(&json, &key)?;
        Ok(codec::place_near(sealed, &target, INDEX_BITS)?)
    })
    .await?;
    let locator = uploader.send(encoded).await?;
    Ok(Written {
        id: locator.id,
        archives,
    })
}

/// Every run of `machine`, oldest first: the archives' and the record's.
pub async fn all_runs(remote: &Remote, machine: &Machine) -> anyhow::Result<Vec<Run>> {
    let mut chunks = vec![machine.runs.clone()];
    let mut next = machine.older.clone();
    let mut followed = 0;
    while let Some(url) = next {
        followed += 1;
        if followed > MAX_ARCHIVES {
            bail!("the backup history has more than {MAX_ARCHIVES} archive blocks");
        }
        let locator: Locator = url
            .parse()
            .with_context(|| format!("bad archive URL in the index: {url}"))?;
        let content = fetch(remote, locator)
            .await
            .context("reading the older backup history")?;
        let archive: Archive =
            serde_json::from_slice(&content).context("the history archive is not valid")?;
        chunks.push(archive.runs);
        next = archive.older;
    }
    let mut runs: Vec<Run> = chunks.into_iter().rev().flatten().collect();
    runs.sort_by_key(|r| (r.started, r.finished));
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(started: u64) -> Run {
        Run {
            started,
            finished: started + 1,
            url: format!("/sha256/{}/aes256/{}/", "a".repeat(64), "b".repeat(64)),
            node: "c".repeat(64),
            dirs: vec!["/x".into()],
            files: 1,
            bytes: 2,
            reused: 0,
            sent: 1,
            skipped: 0,
        }
    }

    fn record(written: u64, supersedes: Vec<BlockId>, machine: &str, runs: &[u64]) -> Record {
        Record {
            libernet_backup: FORMAT,
            user: "u".into(),
            written,
            writer: machine.into(),
            supersedes,
            moved: false,
            machines: BTreeMap::from([(
                machine.to_owned(),
                Machine {
                    dirs: vec!["/x".into()],
                    runs: runs.iter().copied().map(run).collect(),
                    older: None,
                },
            )]),
        }
    }

    #[test]
    fn months_step_back_across_years() {
        // 2026-11-21T00:00:00Z
        let t = 1_795_219_200;
        assert_eq!(month_of(t, 0), "2026-11");
        assert_eq!(month_of(t, 10), "2026-01");
        assert_eq!(month_of(t, 11), "2025-12");
        assert_eq!(month_of(t, 23), "2024-12");
        assert_eq!(month_of(0, 0), "1970-01");
    }

    #[test]
    fn the_target_is_the_hash_of_the_user_and_month() {
        assert_eq!(
            target("alice", "2026-11"),
            BlockId::of(b"USER:alice@2026-11")
        );
    }

    #[test]
    fn the_newest_head_wins_and_concurrent_heads_are_merged() {
        let (a, b, c, d) = (
            BlockId([1; 32]),
            BlockId([2; 32]),
            BlockId([3; 32]),
            BlockId([4; 32]),
        );
        // a <- b (b supersedes a); c written concurrently on another machine; d older
        // concurrent head on the same machine as b with a run b lacks.
        let records = vec![
            (a, (record(10, vec![], "m1", &[1]), None)),
            (b, (record(20, vec![a], "m1", &[1, 2]), None)),
            (c, (record(15, vec![a], "m2", &[5]), None)),
            (d, (record(12, vec![a], "m1", &[1, 3]), None)),
        ];
        let found = resolve(records, "2026-11".into()).unwrap();
        assert_eq!(found.id, b);
        assert_eq!(found.records, 4);
        let mut heads = found.heads.clone();
        heads.sort();
        assert_eq!(heads, vec![b, c, d]);
        let m1: Vec<u64> = found.record.machines["m1"]
            .runs
            .iter()
            .map(|r| r.started)
            .collect();
        assert_eq!(m1, vec![1, 2, 3]);
        assert_eq!(found.record.machines["m2"].runs.len(), 1);
        assert!(resolve(Vec::new(), "2026-11".into()).is_none());
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = record(7, vec![BlockId([9; 32])], "m", &[1, 2]);
        let back: Record = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}

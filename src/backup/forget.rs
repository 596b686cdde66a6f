//! `backup forget`: the retention policy. Runs of this machine that no rule keeps are
//! dropped from the index, and the node's pins for this set are made exactly the blocks
//! of the runs kept there (plus the index itself), so what only forgotten runs used may
//! be evicted while every kept run restores whole.
//!
//! The rules are restic's: going from the newest run to the oldest, `--keep-daily N`
//! keeps the newest run of each of the last N days that have runs, `--keep-weekly N` of
//! each of the last N ISO weeks, `--keep-monthly N` of each of the last N months (in the
//! local time zone); a run is kept when any rule keeps it.

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use serde::Serialize;

use super::{PinReport, Session, index, run::reconcile_pins};
use crate::id::BlockId;
use crate::transfer;

/// How many days, weeks and months keep a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--keep-daily`.
    pub daily: u32,
    /// `--keep-weekly`.
    pub weekly: u32,
    /// `--keep-monthly`.
    pub monthly: u32,
}

/// Names of the rules, as reasons.
const RULES: [&str; 3] = ["daily", "weekly", "monthly"];

impl Policy {
    /// True when no rule keeps anything (refused: it would forget every run).
    pub fn is_empty(&self) -> bool {
        self.daily == 0 && self.weekly == 0 && self.monthly == 0
    }

    /// For each of `runs` (oldest first), the rules that keep it; none: forgotten.
    pub fn apply(&self, runs: &[index::Run], tz: &jiff::tz::TimeZone) -> Vec<Vec<&'static str>> {
        let mut left = [self.daily, self.weekly, self.monthly];
        let mut last: [Option<i64>; 3] = [None; 3];
        let mut out = vec![Vec::new(); runs.len()];
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse((runs[i].started, runs[i].finished)));
        for i in order {
            let secs = i64::try_from(runs[i].started).unwrap_or(i64::MAX);
            let date = jiff::Timestamp::from_second(secs)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .to_zoned(tz.clone())
                .date();
            let week = date.iso_week_date();
            let buckets = [
                i64::from(date.year()) * 1000 + i64::from(date.day_of_year()),
                i64::from(week.year()) * 100 + i64::from(week.week()),
                i64::from(date.year()) * 12 + i64::from(date.month()),
            ];
            for rule in 0..3 {
                if left[rule] > 0 && last[rule] != Some(buckets[rule]) {
                    last[rule] = Some(buckets[rule]);
                    left[rule] -= 1;
                    out[i].push(RULES[rule]);
                }
            }
        }
        out
    }
}

/// One run in `forget`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Its short id.
    pub id: String,
    /// Unix seconds when it started.
    pub started: u64,
    /// The rules that keep it (empty: forgotten).
    pub reasons: Vec<&'static str>,
}

/// What `forget` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// Runs kept, oldest first.
    pub kept: Vec<Decision>,
    /// Runs forgotten, oldest first.
    pub removed: Vec<Decision>,
    /// True when nothing was changed (`--dry-run`).
    pub dry_run: bool,
    /// The new index record, when one was written.
    pub record: Option<String>,
    /// Pins, when the node's admin token was at hand and the index changed.
    pub pins: Option<PinReport>,
}

/// Applies `policy` to this machine's runs.
pub async fn forget(
    session: &Session,
    policy: &Policy,
    dry_run: bool,
) -> anyhow::Result<ForgetReport> {
    if policy.is_empty() {
        bail!(
            "give at least one of --keep-daily, --keep-weekly, --keep-monthly above 0 \
             (forgetting every run is not done)"
        );
    }
    let found = session.require().await?;
    let name = &session.creds.machine;
    let Some(machine) = found.record.machines.get(name) else {
        bail!("machine {name:?} has no backups (use --machine)");
    };
    let runs = index::all_runs(&session.remote, machine).await?;
    let reasons = policy.apply(&runs, &jiff::tz::TimeZone::system());
    let mut report = ForgetReport {
        kept: Vec::new(),
        removed: Vec::new(),
        dry_run,
        record: None,
        pins: None,
    };
    let mut kept_runs = Vec::new();
    for (run, reasons) in runs.into_iter().zip(reasons) {
        let decision = Decision {
            id: run.id().to_owned(),
            started: run.started,
            reasons: reasons.clone(),
        };
        if reasons.is_empty() {
            report.removed.push(decision);
        } else {
            report.kept.push(decision);
            kept_runs.push(run);
        }
    }
    if dry_run || report.removed.is_empty() {
        return Ok(report);
    }
    // Every kept run's blocks on this node, read before anything changes: a run that
    // cannot be read stops the forget rather than lose its pins.
    let mut referenced = BTreeSet::new();
    if session.holder.is_some() {
        let here = &session.remote.info().id;
        for run in kept_runs.iter().filter(|r| &r.node == here) {
            let ids = transfer::blocks_of(&session.remote, &run.url)
                .await
                .with_context(|| {
                    format!(
                        "cannot read the kept run {}; nothing was forgotten",
                        run.id()
                    )
                })?;
            referenced.extend(ids);
        }
    }
    let mut record = found.record.clone();
    if let Some(m) = record.machines.get_mut(name) {
        m.runs = kept_runs;
        m.older = None;
    }
    let written = session.write(record, Some(&found)).await?;
    report.record = Some(written.id.to_string());
    if let Some(holder) = &session.holder {
        referenced.insert(written.id);
        referenced.extend::<Vec<BlockId>>(written.archives);
        report.pins = Some(reconcile_pins(session, holder, &referenced).await?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(started: u64) -> index::Run {
        index::Run {
            started,
            finished: started + 1,
            url: String::new(),
            node: String::new(),
            dirs: Vec::new(),
            files: 0,
            bytes: 0,
            reused: 0,
            sent: 0,
            skipped: 0,
        }
    }

    /// Unix seconds of a UTC date and hour.
    fn at(date: &str, hour: i8) -> u64 {
        let d: jiff::civil::Date = date.parse().unwrap();
        d.at(hour, 0, 0, 0)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_second() as u64
    }

    fn kept(policy: Policy, runs: &[u64]) -> Vec<Vec<&'static str>> {
        let runs: Vec<index::Run> = runs.iter().copied().map(run).collect();
        policy.apply(&runs, &jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn daily_keeps_the_newest_run_of_each_of_the_last_days_with_runs() {
        // Two runs on the 1st, one on the 3rd, two on the 4th (2026-12-01 is a Tuesday).
        let runs = [
            at("2026-12-01", 9),
            at("2026-12-01", 18),
            at("2026-12-03", 9),
            at("2026-12-04", 9),
            at("2026-12-04", 18),
        ];
        let daily = |n| Policy {
            daily: n,
            ..Policy::default()
        };
        let none: Vec<&str> = Vec::new();
        assert_eq!(
            kept(daily(2), &runs),
            [
                none.clone(),
                none.clone(),
                vec!["daily"],
                none.clone(),
                vec!["daily"]
            ]
        );
        // Days without runs do not count: three days reach back to the 1st.
        assert_eq!(kept(daily(3), &runs)[1], ["daily"]);
        assert!(kept(daily(3), &runs)[0].is_empty());
        assert!(
            kept(daily(10), &runs)
                .iter()
                .filter(|r| r.is_empty())
                .count()
                == 2
        );
    }

    #[test]
    fn weekly_and_monthly_rules_add_up() {
        let runs = [
            at("2026-10-15", 9), // October
            at("2026-11-20", 9), // November, ISO week 47
            at("2026-11-30", 9), // Monday, week 49
            at("2026-12-05", 9), // Saturday, week 49
        ];
        let policy = Policy {
            daily: 1,
            weekly: 2,
            monthly: 3,
        };
        let reasons = kept(policy, &runs);
        assert_eq!(reasons[3], ["daily", "weekly", "monthly"]);
        // Same ISO week as the newest run, but the newest of November.
        assert_eq!(reasons[2], ["monthly"], "{reasons:?}");
        assert_eq!(reasons[1], ["weekly"]);
        assert_eq!(reasons[0], ["monthly"]);
        let two_months = kept(
            Policy {
                monthly: 2,
                ..Policy::default()
            },
            &runs,
        );
        assert!(two_months[0].is_empty() && two_months[1].is_empty());
        assert!(Policy::default().is_empty());
    }
}

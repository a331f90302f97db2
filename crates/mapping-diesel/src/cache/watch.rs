//! The first tier's watch of cell changes made by other processes, when
//! both tiers are on.
//!
//! A cell write moves that cell's generation on in the cells record of
//! every memcached server (`shared.rs`), which invalidates the memcached
//! values of the cell at once, but not the copies other processes hold in
//! their first tier. So each process reads the cells record of every server
//! at most every D/2 (D: the memcached tier's staleness bound) and drops
//! the first-tier entries of each cell whose generation moved. Where it
//! cannot tell (a record lost, made anew, unreadable, or a server that does
//! not answer), it drops every entry: the first tier is then refilled from
//! memcached or the database.
//!
//! The check is made by the first lookup after D/2 has passed, before it
//! reads the first tier; lookups made meanwhile by other threads skip the
//! first tier until the check is done. An entry is thus served only while
//! the last check began less than D/2 ago: a cell change whose bump reached
//! memcached is out of every first tier within D/2 plus one check (at most
//! `invalidation_timeout` per server), under D.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::local::LocalCache;
use super::shared::SharedTier;
use super::value::CellsRecord;

/// No check made yet.
const NEVER: u64 = u64::MAX;

/// What changed in the cells records since the last check.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// Nothing.
    None,
    /// These cells (by hash).
    Cells(HashSet<u64>),
    /// Anything may have: drop every entry.
    All,
}

/// The watch itself.
pub(crate) struct CellWatch {
    /// How often the records are read: D/2.
    period: Duration,
    /// Origin of `checked`.
    base: Instant,
    /// When the last check began (nanoseconds after `base`), or [`NEVER`].
    checked: AtomicU64,
    /// Whether a lookup is making the check now.
    checking: AtomicBool,
    /// The records seen by the last check, per server (`None`: none seen).
    seen: Mutex<Vec<Option<CellsRecord>>>,
}

impl CellWatch {
    /// A watch reading the records every `bound / 2`.
    pub(crate) fn new(bound: Duration) -> Self {
        Self {
            period: bound / 2,
            base: Instant::now(),
            checked: AtomicU64::new(NEVER),
            checking: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(NEVER - 1)
    }

    /// Whether the first tier may answer now; makes the check first when it
    /// is due (`false` while another thread makes it).
    pub(crate) fn fresh(&self, local: &LocalCache, shared: &SharedTier) -> bool {
        let now = self.now();
        let checked = self.checked.load(Ordering::Acquire);
        if checked != NEVER && now.saturating_sub(checked) < duration_nanos(self.period) {
            return true;
        }
        if self
            .checking
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let started = self.now();
        let records = shared.cells_records();
        let change = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.resize(records.len(), None);
            let mut change = Change::None;
            for (old, new) in seen.iter_mut().zip(records) {
                let new = new.ok().flatten();
                change = merge(change, compare(old.as_ref(), new.as_ref()));
                *old = new;
            }
            change
        };
        match &change {
            Change::None => {}
            Change::Cells(cells) => {
                tracing::debug!(
                    cells = cells.len(),
                    "cells changed in another process; their first-tier entries dropped"
                );
                local.drop_cells(Some(cells));
            }
            Change::All => {
                tracing::debug!("cells records lost, new or unreadable; first tier emptied");
                local.drop_cells(None);
            }
        }
        self.checked.store(started, Ordering::Release);
        self.checking.store(false, Ordering::Release);
        true
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NEVER - 1)
}

/// What changed between two reads of one server's record.
fn compare(old: Option<&CellsRecord>, new: Option<&CellsRecord>) -> Change {
    let (Some(old), Some(new)) = (old, new) else {
        return Change::All;
    };
    if old.incarnation != new.incarnation {
        return Change::All;
    }
    let moved: HashSet<u64> = old
        .generations
        .iter()
        .filter(|g| !new.generations.contains(g))
        .chain(
            new.generations
                .iter()
                .filter(|g| !old.generations.contains(g)),
        )
        .map(|(c, _)| *c)
        .collect();
    if moved.is_empty() {
        Change::None
    } else {
        Change::Cells(moved)
    }
}

fn merge(a: Change, b: Change) -> Change {
    match (a, b) {
        (Change::All, _) | (_, Change::All) => Change::All,
        (Change::None, x) | (x, Change::None) => x,
        (Change::Cells(mut a), Change::Cells(b)) => {
            a.extend(b);
            Change::Cells(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(incarnation: u64, generations: &[(u64, u64)]) -> CellsRecord {
        CellsRecord {
            incarnation,
            generations: generations.to_vec(),
        }
    }

    #[test]
    fn compares_records() {
        let a = record(1, &[(10, 1), (11, 2)]);
        assert_eq!(compare(Some(&a), Some(&a.clone())), Change::None);
        let b = record(1, &[(10, 1), (11, 3), (12, 1)]);
        assert_eq!(
            compare(Some(&a), Some(&b)),
            Change::Cells([11, 12].into_iter().collect())
        );
        assert_eq!(compare(Some(&a), Some(&record(2, &[]))), Change::All);
        assert_eq!(compare(None, Some(&a)), Change::All);
        assert_eq!(compare(Some(&a), None), Change::All);
        assert_eq!(
            merge(Change::Cells([1].into()), Change::Cells([2].into())),
            Change::Cells([1, 2].into())
        );
        assert_eq!(merge(Change::None, Change::All), Change::All);
    }
}

//! Per-cell health: how much work each cell has running, and whether it is
//! taking new work.
//!
//! A cell is *unavailable* once it has `max_detached_per_cell` closures still
//! running after their callers gave up on them (a query blocked on a lock, a
//! server that does not answer), or once a connection to it failed. New work
//! for an unavailable cell is answered at once ([`crate::CellResult::Unavailable`],
//! [`crate::RouterError::Unavailable`]) without a worker or a connection
//! slot. A probe (`SELECT 1` on a thread of its own, at most one per cell at
//! a time and one per `probe_interval`) brings the cell back once it answers
//! and its detached work has drained. The probe is started by the first call
//! that finds the cell unavailable after `probe_interval`, and at once when
//! a detached closure of the cell returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

/// Whether a cell takes new work (see [`CellHealth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CellState {
    /// New work is handed to the cell.
    Up,
    /// New work is answered at once without reaching the cell, until a probe
    /// finds it answering again.
    Unavailable {
        /// When the cell became unavailable.
        since: SystemTime,
    },
}

/// One cell's health, from [`crate::Router::cell_health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CellHealth {
    /// The cell.
    pub cell: Uuid,
    /// Up or unavailable.
    pub state: CellState,
    /// The last failure seen on the cell (a connection error, a timeout),
    /// as shown by its error's `Display` (no password); kept after the cell
    /// comes back, for the record.
    pub last_error: Option<String>,
    /// Closures running on the cell now, detached ones included.
    pub in_flight: usize,
    /// Of those, closures whose caller gave up (timed out) and that still
    /// run; they count against `max_detached_per_cell`.
    pub detached: usize,
}

impl CellHealth {
    /// True while the cell takes new work.
    pub fn is_up(&self) -> bool {
        self.state == CellState::Up
    }
}

/// Why new work for a cell was refused.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) since: SystemTime,
    pub(crate) last_error: Option<String>,
    /// A probe is due: the caller starts it.
    pub(crate) probe: bool,
}

/// The flags of one admitted job, changed only under the health lock.
#[derive(Debug, Default)]
pub(crate) struct JobFlags {
    started: AtomicBool,
    finished: AtomicBool,
    abandoned: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    detached: usize,
    down_since: Option<SystemTime>,
    last_error: Option<String>,
    probing: bool,
    last_probe: Option<Instant>,
}

/// The health of every cell the router has worked with.
#[derive(Debug)]
pub(crate) struct Health {
    cells: Mutex<HashMap<Uuid, State>>,
    max_detached: usize,
    probe_interval: Duration,
}

impl Health {
    pub(crate) fn new(max_detached: usize, probe_interval: Duration) -> Self {
        Self {
            cells: Mutex::new(HashMap::new()),
            max_detached: max_detached.max(1),
            probe_interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, State>> {
        // Nothing panics under this lock: a poisoned map is still whole.
        self.cells.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether new work may go to `cell`; a refusal says since when it is
    /// unavailable and whether the caller should start a probe.
    pub(crate) fn admit(&self, cell: Uuid) -> Result<(), Refusal> {
        let mut cells = self.lock();
        let Some(st) = cells.get_mut(&cell) else {
            return Ok(());
        };
        let Some(since) = st.down_since else {
            return Ok(());
        };
        let probe = !st.probing
            && st
                .last_probe
                .is_none_or(|at| at.elapsed() >= self.probe_interval);
        if probe {
            st.probing = true;
        }
        Err(Refusal {
            since,
            last_error: st.last_error.clone(),
            probe,
        })
    }

    /// A closure of `cell` starts.
    pub(crate) fn start(&self, cell: Uuid, job: &JobFlags) {
        let mut cells = self.lock();
        cells.entry(cell).or_default().in_flight += 1;
        job.started.store(true, Ordering::Relaxed);
    }

    /// A closure of `cell` returned; `failure` is its connection error, if
    /// it could not reach the cell. Returns true when a probe should start
    /// now (a detached closure returned while the cell is unavailable).
    pub(crate) fn finish(&self, cell: Uuid, job: &JobFlags, failure: Option<String>) -> bool {
        let mut cells = self.lock();
        let st = cells.entry(cell).or_default();
        st.in_flight = st.in_flight.saturating_sub(1);
        job.finished.store(true, Ordering::Relaxed);
        let was_detached = job.abandoned.load(Ordering::Relaxed);
        if was_detached {
            st.detached = st.detached.saturating_sub(1);
        }
        if let Some(error) = failure {
            mark_down(cell, st, error);
        }
        let probe = was_detached && st.down_since.is_some() && !st.probing;
        if probe {
            st.probing = true;
        }
        probe
    }

    /// The caller of a job gave up on it after `timeout`. Returns true if the
    /// job is still running (it now counts as detached).
    pub(crate) fn abandon(&self, cell: Uuid, job: &JobFlags, timeout: Duration) -> bool {
        let mut cells = self.lock();
        let running = job.started.load(Ordering::Relaxed) && !job.finished.load(Ordering::Relaxed);
        if !running {
            return false;
        }
        job.abandoned.store(true, Ordering::Relaxed);
        let st = cells.entry(cell).or_default();
        st.detached += 1;
        if st.detached >= self.max_detached {
            mark_down(
                cell,
                st,
                format!(
                    "did not respond within {timeout:?} ({} closure(s) still running)",
                    st.detached
                ),
            );
        }
        true
    }

    /// `cell` has a new pool (a new URL, or its first use): it is up, and
    /// takes work again. Work still running on its old pool stays counted.
    pub(crate) fn reset(&self, cell: Uuid) {
        if let Some(st) = self.lock().get_mut(&cell) {
            if st.down_since.take().is_some() {
                tracing::info!(cell = %cell, "cell has a new database URL: back in service");
            }
        }
    }

    /// A probe of `cell` ended: `Ok` if the cell answered.
    pub(crate) fn probed(&self, cell: Uuid, result: Result<(), String>) {
        let mut cells = self.lock();
        let st = cells.entry(cell).or_default();
        st.probing = false;
        st.last_probe = Some(Instant::now());
        match result {
            Ok(()) if st.detached < self.max_detached => {
                if st.down_since.take().is_some() {
                    tracing::info!(cell = %cell, "cell answers again: back in service");
                }
            }
            Ok(()) => {
                tracing::debug!(cell = %cell, detached = st.detached, "cell answers, but its detached work still runs");
            }
            Err(error) => {
                tracing::debug!(cell = %cell, %error, "probe failed: the cell stays unavailable");
                st.last_error = Some(error);
            }
        }
    }

    /// The health of `cell` (up, with no work, if never seen).
    pub(crate) fn of(&self, cell: Uuid) -> CellHealth {
        let cells = self.lock();
        match cells.get(&cell) {
            Some(st) => CellHealth {
                cell,
                state: match st.down_since {
                    Some(since) => CellState::Unavailable { since },
                    None => CellState::Up,
                },
                last_error: st.last_error.clone(),
                in_flight: st.in_flight,
                detached: st.detached,
            },
            None => CellHealth {
                cell,
                state: CellState::Up,
                last_error: None,
                in_flight: 0,
                detached: 0,
            },
        }
    }

    /// Every cell seen so far.
    pub(crate) fn known(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }
}

fn mark_down(cell: Uuid, st: &mut State, error: String) {
    if st.down_since.is_none() {
        tracing::warn!(cell = %cell, %error, "cell unavailable: new work is answered at once until a probe finds it back");
        st.down_since = Some(SystemTime::now());
    }
    st.last_error = Some(error);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_work_makes_a_cell_unavailable_until_it_drains_and_a_probe_passes() {
        let h = Health::new(1, Duration::from_secs(3600));
        let cell = Uuid::new_v4();
        let job = JobFlags::default();
        assert!(h.admit(cell).is_ok());
        h.start(cell, &job);
        assert!(h.abandon(cell, &job, Duration::from_secs(1)));
        let refusal = h.admit(cell).unwrap_err();
        assert!(refusal.probe, "the first refusal starts a probe");
        // One probe at a time.
        assert!(!h.admit(cell).unwrap_err().probe);
        // The cell answers, but its detached closure still runs.
        h.probed(cell, Ok(()));
        assert!(h.admit(cell).is_err());
        assert_eq!(h.of(cell).detached, 1);
        // The closure returns: a probe starts at once, and passes.
        assert!(h.finish(cell, &job, None));
        h.probed(cell, Ok(()));
        assert!(h.admit(cell).is_ok());
        let health = h.of(cell);
        assert!(health.is_up());
        assert_eq!((health.in_flight, health.detached), (0, 0));
        assert!(health.last_error.unwrap().contains("did not respond"));
    }

    #[test]
    fn a_finished_job_is_not_abandoned() {
        let h = Health::new(1, Duration::from_secs(1));
        let cell = Uuid::new_v4();
        let job = JobFlags::default();
        h.start(cell, &job);
        assert!(!h.finish(cell, &job, None));
        assert!(!h.abandon(cell, &job, Duration::from_secs(1)));
        assert!(h.admit(cell).is_ok());
        // A job that never started is not abandoned either.
        assert!(!h.abandon(cell, &JobFlags::default(), Duration::from_secs(1)));
        assert!(h.admit(cell).is_ok());
    }

    #[test]
    fn a_connection_failure_makes_a_cell_unavailable_until_a_probe_passes() {
        let h = Health::new(1, Duration::ZERO);
        let cell = Uuid::new_v4();
        let job = JobFlags::default();
        h.start(cell, &job);
        assert!(!h.finish(cell, &job, Some("refused".into())));
        let r = h.admit(cell).unwrap_err();
        assert_eq!(r.last_error.as_deref(), Some("refused"));
        assert!(r.probe);
        h.probed(cell, Err("still refused".into()));
        let r = h.admit(cell).unwrap_err();
        assert_eq!(r.last_error.as_deref(), Some("still refused"));
        assert!(r.probe, "probe_interval 0: the next call probes again");
        h.probed(cell, Ok(()));
        assert!(h.admit(cell).is_ok());
    }
}

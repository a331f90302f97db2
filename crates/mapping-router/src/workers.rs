//! The bounded worker pool of scatter-gather (std threads, a queue and a
//! condition variable).
//!
//! At most `size` workers take jobs from the queue. A job is a [`Task`]: the
//! caller that submitted it may give up on it ([`Task::cancel`]) once its
//! timeout has passed:
//!
//! - a task still queued is then never run;
//! - a task already running is *detached*: its worker stops counting
//!   against `size` and a fresh worker is started if jobs are waiting, so a
//!   closure that hangs does not starve later calls. The detached worker
//!   exits when its closure returns (its result is dropped). At most
//!   `max_detached` workers are detached at once; beyond that a hung worker
//!   keeps its place until it returns, which bounds the threads at
//!   `size + max_detached`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long an idle worker waits for a job before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(60);

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const CANCELLED: u8 = 3;
const DETACHED: u8 = 4;

/// The state of one submitted job, shared by the worker and the caller.
#[derive(Debug, Clone, Default)]
pub(crate) struct Task(Arc<AtomicU8>);

impl Task {
    fn transition(&self, from: u8, to: u8) -> bool {
        self.0
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// A job for a worker.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    queue: VecDeque<(Task, Job)>,
    /// Workers counted against `size` (alive and not detached).
    live: usize,
    /// Of `live`, the workers waiting for a job.
    idle: usize,
    /// Workers still running a job whose caller gave up.
    detached: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    size: usize,
    max_detached: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A job never runs under the lock, so a poisoned lock only means a
        // worker died between two lines of this file: the state is intact.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counters of the router's scatter-gather worker pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Workers counted against the pool size (busy or idle).
    pub live: usize,
    /// Of those, the idle ones.
    pub idle: usize,
    /// Workers still running a closure whose caller timed out.
    pub detached: usize,
    /// Jobs waiting for a worker.
    pub queued: usize,
}

/// What [`WorkerPool::cancel`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// The job had not started: it never will.
    NeverStarted,
    /// The job had finished already.
    Finished,
    /// The job is running: its worker was detached and replaced.
    Detached,
    /// The job is running and `max_detached` workers are detached already:
    /// its worker keeps its place until the job returns.
    KeptRunning,
}

/// A bounded pool of worker threads (see the module documentation).
pub(crate) struct WorkerPool {
    shared: Arc<Shared>,
}

impl WorkerPool {
    /// A pool of at most `size` workers (started on demand) and at most
    /// `max_detached` detached ones.
    pub(crate) fn new(size: usize, max_detached: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    live: 0,
                    idle: 0,
                    detached: 0,
                    shutdown: false,
                }),
                work: Condvar::new(),
                size: size.max(1),
                max_detached,
            }),
        }
    }

    /// Queues `job`; the returned task lets the caller give up on it.
    #[cfg(test)]
    pub(crate) fn submit(&self, job: impl FnOnce() + Send + 'static) -> Task {
        self.submit_all(vec![Box::new(job) as Job]).remove(0)
    }

    /// Queues every job at once (one lock, then a wake-up or a new worker
    /// for each); the returned tasks, in order, let the caller give up on
    /// them.
    pub(crate) fn submit_all(&self, jobs: Vec<Job>) -> Vec<Task> {
        let mut st = self.shared.lock();
        let tasks = jobs
            .into_iter()
            .map(|job| {
                let task = Task::default();
                st.queue.push_back((task.clone(), job));
                task
            })
            .collect::<Vec<_>>();
        for _ in 0..tasks.len().min(st.idle) {
            self.shared.work.notify_one();
        }
        // Queued jobs beyond the idle workers get a new worker each (up to
        // `size`): a burst sees the same idle count for all its jobs.
        for _ in 0..st.queue.len().saturating_sub(st.idle) {
            let before = st.live;
            self.spawn(&mut st);
            if st.live == before {
                break; // at `size`, or a thread could not be started
            }
        }
        tasks
    }

    /// Gives up on `task` if it is still queued (it will never run); true if
    /// it was.
    pub(crate) fn cancel_queued(&self, task: &Task) -> bool {
        task.transition(QUEUED, CANCELLED)
    }

    /// Gives up on `task`: a queued task will not run; a running one has its
    /// worker detached and replaced at once (within `max_detached`).
    pub(crate) fn cancel(&self, task: &Task) -> Cancelled {
        if task.transition(QUEUED, CANCELLED) {
            return Cancelled::NeverStarted;
        }
        let mut st = self.shared.lock();
        if st.detached >= self.shared.max_detached {
            return match task.0.load(Ordering::Acquire) {
                DONE => Cancelled::Finished,
                _ => Cancelled::KeptRunning,
            };
        }
        if !task.transition(RUNNING, DETACHED) {
            return match task.0.load(Ordering::Acquire) {
                DONE => Cancelled::Finished,
                // Not queued, not running, not done: cancelled before.
                _ => Cancelled::NeverStarted,
            };
        }
        st.live -= 1;
        st.detached += 1;
        tracing::warn!(
            detached = st.detached,
            "a cell closure outlived its caller's timeout; its worker is detached and replaced"
        );
        // The replacement starts now, whether or not jobs are waiting: the
        // pool keeps its size of workers able to take work.
        self.spawn(&mut st);
        Cancelled::Detached
    }

    /// Counters, for tests and monitoring.
    pub(crate) fn stats(&self) -> WorkerStats {
        let st = self.shared.lock();
        WorkerStats {
            live: st.live,
            idle: st.idle,
            detached: st.detached,
            queued: st.queue.len(),
        }
    }

    /// Starts one worker if fewer than `size` are live.
    fn spawn(&self, st: &mut State) {
        if st.live >= self.shared.size || st.shutdown {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("cell-worker".into())
            .spawn(move || worker(shared));
        match spawned {
            Ok(_) => st.live += 1,
            // Jobs stay queued for the workers there are; with none at
            // all the caller's timeout turns them into "did not respond".
            Err(e) => tracing::error!(error = %e, "cannot start a cell worker thread"),
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.shutdown = true;
        for (task, _) in st.queue.drain(..) {
            task.transition(QUEUED, CANCELLED);
        }
        self.shared.work.notify_all();
    }
}

fn worker(shared: Arc<Shared>) {
    let mut st = shared.lock();
    loop {
        if let Some((task, job)) = st.queue.pop_front() {
            if !task.transition(QUEUED, RUNNING) {
                continue; // cancelled while queued
            }
            drop(st);
            job();
            st = shared.lock();
            if !task.transition(RUNNING, DONE) {
                // Detached while running: the pool has already replaced us.
                st.detached -= 1;
                return;
            }
            continue;
        }
        if st.shutdown {
            st.live -= 1;
            return;
        }
        st.idle += 1;
        let (guard, timeout) = shared
            .work
            .wait_timeout(st, IDLE_EXIT)
            .unwrap_or_else(PoisonError::into_inner);
        st = guard;
        st.idle -= 1;
        if timeout.timed_out() && st.queue.is_empty() {
            st.live -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_every_job_with_a_bounded_number_of_workers() {
        let pool = WorkerPool::new(2, 2);
        let (tx, rx) = mpsc::channel();
        for i in 0..10 {
            let tx = tx.clone();
            pool.submit(move || tx.send(i).unwrap_or(()));
        }
        let mut got: Vec<i32> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert!(pool.stats().live <= 2, "{:?}", pool.stats());
    }

    #[test]
    fn a_detached_worker_is_replaced_and_exits_when_its_job_returns() {
        let pool = WorkerPool::new(1, 1);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        let hung = pool.submit(move || {
            started_tx.send(()).unwrap_or(());
            release_rx.recv().unwrap_or(());
        });
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(pool.cancel(&hung), Cancelled::Detached);
        assert_eq!(pool.stats().detached, 1);
        // The replacement was started at once.
        assert_eq!(pool.stats().live, 1, "{:?}", pool.stats());
        // The single slot is free again: a new job runs although the first hangs.
        let (tx, rx) = mpsc::channel();
        pool.submit(move || tx.send(7).unwrap_or(()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
        release_tx.send(()).unwrap();
        // The detached worker leaves once its job returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.stats().detached != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "detached worker never exited"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_cancelled_queued_job_never_runs() {
        let pool = WorkerPool::new(1, 0);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        let first = pool.submit(move || {
            started_tx.send(()).unwrap_or(());
            release_rx.recv().unwrap_or(());
        });
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let second = pool.submit(move || tx.send(()).unwrap_or(()));
        assert_eq!(pool.cancel(&second), Cancelled::NeverStarted);
        // max_detached = 0: the running job keeps its worker.
        assert_eq!(pool.cancel(&first), Cancelled::KeptRunning);
        assert_eq!(pool.stats().detached, 0);
        release_tx.send(()).unwrap();
        // The cancelled job is dropped unrun, and its sender with it.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }

    /// A burst of submissions while one worker is idle starts a worker for
    /// each job beyond it (it once woke the idle one and started none).
    #[test]
    fn a_burst_gets_up_to_size_workers_at_once() {
        let pool = WorkerPool::new(4, 0);
        // One worker, idle after its first job.
        let (tx, rx) = mpsc::channel();
        pool.submit(move || tx.send(()).unwrap_or(()));
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.stats().idle != 1 {
            assert!(std::time::Instant::now() < deadline, "{:?}", pool.stats());
            std::thread::yield_now();
        }
        // Four jobs that each wait until all four run at once.
        let barrier = Arc::new(std::sync::Barrier::new(5));
        let (done_tx, done_rx) = mpsc::channel();
        for _ in 0..4 {
            let (b, done) = (Arc::clone(&barrier), done_tx.clone());
            pool.submit(move || {
                b.wait();
                done.send(()).unwrap_or(());
            });
        }
        let waiter = std::thread::spawn(move || barrier.wait());
        for _ in 0..4 {
            done_rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("not all four jobs ran at once: {:?}", pool.stats()));
        }
        waiter.join().unwrap();
        assert!(pool.stats().live <= 4, "{:?}", pool.stats());
    }
}

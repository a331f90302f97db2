//! Transactions and where operations run: [`Tx`], [`Op`], the sealed
//! [`Executor`] and the retry loop of `&Database`.

use super::*;

/// A transaction in progress (see [`Database::transaction`]).
pub struct Tx<'a> {
    pub(crate) conn: &'a mut DbConnection,
    pub(crate) shared: &'a Shared,
    /// What this transaction wrote, for the cache to forget when it ends.
    pub(crate) writes: &'a WriteLog,
    /// The last transient failure (rolled back, connection lost) an
    /// operation inside met, so the whole transaction is retried whatever
    /// the caller's closure returns.
    pub(crate) transient: &'a std::cell::Cell<Transience>,
    /// The state of this attempt of the operation.
    pub(crate) run: &'a RunState,
}

/// Where a write stands, for telling what a lost connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WritePhase {
    /// Statements run in autocommit: each may have been committed.
    Autocommit,
    /// Inside an explicit transaction, before its commit: a lost connection
    /// means the server rolled it back.
    BeforeCommit,
    /// The commit was sent: a lost connection leaves the outcome unknown.
    Committing,
}

/// The state of one attempt of an operation on a pooled connection.
pub(crate) struct RunState {
    pub(crate) phase: std::cell::Cell<WritePhase>,
    /// Instance-mapping creates this attempt made (for
    /// [`Error::OutcomeUnknown`]: re-creating finds the row).
    pub(crate) creates: std::cell::RefCell<Vec<crate::models::instance_mapping::PendingCreate>>,
}

impl RunState {
    fn new() -> Self {
        Self {
            phase: std::cell::Cell::new(WritePhase::Autocommit),
            creates: Default::default(),
        }
    }
}

impl<'a> Tx<'a> {
    /// Which engine the transaction runs on.
    pub fn backend(&self) -> BackendKind {
        self.shared.backend
    }

    /// Cell mappings, inside this transaction.
    pub fn cells(&mut self) -> crate::CellMappings<&mut Tx<'a>> {
        crate::CellMappings::new(self)
    }

    /// Instance mappings, inside this transaction.
    pub fn instance_mappings(&mut self) -> crate::InstanceMappings<&mut Tx<'a>> {
        crate::InstanceMappings::new(self)
    }

    /// Host mappings, inside this transaction.
    pub fn host_mappings(&mut self) -> crate::HostMappings<&mut Tx<'a>> {
        crate::HostMappings::new(self)
    }

    /// The current time at the precision this backend stores.
    pub(crate) fn now(&self) -> chrono::NaiveDateTime {
        crate::timestamp::now(self.shared.backend)
    }

    /// Runs `f` atomically: a transaction, or a savepoint inside one. The
    /// outermost one records where the write stands ([`WritePhase`]).
    pub(crate) fn atomic<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let (shared, writes, run, transient) = (self.shared, self.writes, self.run, self.transient);
        let outermost = run.phase.get() == WritePhase::Autocommit;
        if outermost {
            run.phase.set(WritePhase::BeforeCommit);
        }
        let r = self.conn.transaction::<T, Error, _>(|conn| {
            let r = f(&mut Tx {
                conn,
                shared,
                writes,
                run,
                transient,
            });
            if outermost && r.is_ok() {
                run.phase.set(WritePhase::Committing);
            }
            r
        });
        if outermost && r.is_ok() {
            run.phase.set(WritePhase::Autocommit);
        }
        r
    }

    /// Whether a transaction is open on the connection.
    fn in_transaction(&mut self) -> bool {
        use diesel::connection::TransactionManager;
        <DbConnection as Connection>::TransactionManager::transaction_manager_status_mut(self.conn)
            .transaction_depth()
            .ok()
            .flatten()
            .is_some()
    }

    /// Runs `f`, which may fail on a constraint, so that its failure leaves
    /// an open transaction usable: inside a transaction it runs in a
    /// savepoint (PostgreSQL refuses every further statement of a
    /// transaction after a failed one); outside, as it is.
    pub(crate) fn guarded<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        if self.in_transaction() {
            self.atomic(f)
        } else {
            f(self)
        }
    }
}

/// What an operation is, for logs and the retry decision.
#[derive(Debug, Clone, Copy)]
#[doc(hidden)]
pub struct Op {
    /// Name used in logs.
    pub name: &'static str,
    /// Whether the operation only reads (and so may be repeated even after a
    /// lost connection).
    pub read_only: bool,
    /// Whether a write may run on a pooled connection without pinging it
    /// first: either it is [`Op::rerunnable`], or its first statement
    /// (`BEGIN`) proves the connection before anything is written.
    pub ping_free: bool,
    /// Whether the write may simply be run again after its connection was
    /// lost at any point (a keyed update to given values; an instance
    /// mapping create, which then finds its own row).
    pub rerunnable: bool,
}

impl Op {
    /// A read.
    pub const fn read(name: &'static str) -> Self {
        Self {
            name,
            read_only: true,
            ping_free: true,
            rerunnable: true,
        }
    }

    /// A write whose connection is pinged first unless it was used within
    /// `ping_idle_after`, and which is never repeated after a lost connection
    /// unless it is known not to have committed.
    pub const fn write(name: &'static str) -> Self {
        Self {
            name,
            read_only: false,
            ping_free: false,
            rerunnable: false,
        }
    }

    /// A write that may be run again after a lost connection (see
    /// [`Op::rerunnable`]); it needs no ping.
    pub const fn rerunnable_write(name: &'static str) -> Self {
        Self {
            name,
            read_only: false,
            ping_free: true,
            rerunnable: true,
        }
    }

    /// An explicit transaction: its `BEGIN` is its ping (a connection lost
    /// before the commit is retried, the server having rolled back).
    pub const fn transaction(name: &'static str) -> Self {
        Self {
            name,
            read_only: false,
            ping_free: true,
            rerunnable: false,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &super::Database {}
    impl Sealed for &mut super::Tx<'_> {}
}

/// Where operations run: the pool (each call on its own connection, with
/// retries) or an open transaction. Implemented for `&Database` and `&mut Tx`
/// only (sealed).
pub trait Executor: sealed::Sealed {
    /// Runs `f` with a transaction context.
    #[doc(hidden)]
    fn run<T>(&mut self, op: Op, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T>;

    /// The options of the database.
    #[doc(hidden)]
    fn options(&self) -> &Options;

    /// The mapping cache when this executor may use it: never inside a
    /// transaction, which must see (and not publish) its own writes.
    #[doc(hidden)]
    fn mapping_cache(&self) -> Option<&MappingCache>;
}

impl Executor for &Database {
    fn run<T>(&mut self, op: Op, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let policy = self.shared.options.retry;
        let mut attempt = 1u32;
        loop {
            // No retry around the checkout: the pool has already waited
            // `connection_timeout` and reconnected as it could.
            let mut conn = self.checkout_for(op)?;
            let writes = WriteLog::default();
            let transient = std::cell::Cell::new(Transience::Permanent);
            let state = RunState::new();
            let result = f(&mut Tx {
                conn: &mut conn,
                shared: &self.shared,
                writes: &writes,
                run: &state,
                transient: &transient,
            });
            let lost = matches!(&result, Err(e) if transience(e) == Transience::ConnectionLost);
            // A Galera node outside the primary component is as good as
            // gone: reconnect (a load balancer may pick a healthy node).
            if lost || matches!(&result, Err(e) if is_wsrep_not_ready(e)) {
                conn.mark_dead();
            }
            // Back to the pool before any sleep.
            drop(conn);
            // Committed or not, what was written is forgotten by the cache
            // only now that no transaction holds it any more.
            let written = writes.take();
            if !written.cells.is_empty() || written.all {
                self.shared.cell_writes.fetch_add(1, Ordering::Release);
            }
            if let Some(cache) = &self.shared.cache {
                cache.apply(&written);
            }
            let err = match result {
                Ok(v) => {
                    // Committed: creates of unknown outcome of these uuids
                    // are settled.
                    let creates = state.creates.take();
                    if !creates.is_empty() {
                        self.shared
                            .uncertain
                            .forget(creates.iter().map(|c| c.instance_uuid()));
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            // A write that lost its connection: rolled back by the server if
            // the commit was not sent yet, else of unknown outcome (what it
            // tried to create is remembered, for a new attempt to find).
            let phase = state.phase.get();
            let outcome_unknown = lost && !op.read_only && phase != WritePhase::BeforeCommit;
            if outcome_unknown {
                self.shared.uncertain.remember(state.creates.take());
            }
            let retry = match transience(&err) {
                Transience::RolledBack => true,
                Transience::ConnectionLost => {
                    op.read_only || op.rerunnable || phase == WritePhase::BeforeCommit
                }
                Transience::Permanent => false,
            };
            if !retry || attempt >= policy.max_attempts {
                return Err(match err {
                    Error::Database { operation, source } if outcome_unknown => {
                        tracing::error!(operation, error = %source, "connection lost around the commit: outcome unknown");
                        Error::OutcomeUnknown { operation, source }
                    }
                    other => self.outage(other),
                });
            }
            let delay = policy.delay(attempt);
            self.shared.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                operation = op.name,
                attempt,
                max_attempts = policy.max_attempts,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %err,
                "transient database failure, retrying"
            );
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    fn options(&self) -> &Options {
        &self.shared.options
    }

    fn mapping_cache(&self) -> Option<&MappingCache> {
        self.shared.cache.as_ref()
    }
}

impl Database {
    /// A Galera node outside the primary component is an outage like a dead
    /// server: reported as [`Error::Connection`], saying so.
    fn outage(&self, err: Error) -> Error {
        match err {
            Error::Database { source, .. } if is_wsrep_not_ready_source(&source) => {
                Error::Connection {
                    url: self.shared.url.redacted(),
                    source: Arc::new(mapping_model::ConnectionFailure::NotPrimary(source)),
                }
            }
            other => other,
        }
    }
}

impl Executor for &mut Tx<'_> {
    fn run<T>(&mut self, _op: Op, f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let result = f(self);
        if let Err(e) = &result {
            let t = transience(e);
            if t != Transience::Permanent {
                self.transient.set(t);
            }
        }
        result
    }

    fn options(&self) -> &Options {
        &self.shared.options
    }

    fn mapping_cache(&self) -> Option<&MappingCache> {
        None
    }
}

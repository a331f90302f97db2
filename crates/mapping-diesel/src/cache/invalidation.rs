//! What a write changes, recorded while it runs and applied to both tiers
//! once its operation or transaction has ended (see [`crate::Tx`]).

use std::collections::HashSet;

/// What an operation or transaction wrote, as far as the cache cares.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// Cells (their uuids, lower-case) that changed or went: every cached
    /// mapping of theirs may hold stale cell data.
    pub cells: HashSet<String>,
    /// Everything may be stale ([`Database::clear_cache`](crate::Database::clear_cache)).
    pub all: bool,
    /// Instance uuids (canonical form) whose mappings changed, went or came.
    pub uuids: HashSet<String>,
}

impl Writes {
    /// Writes that make every cached mapping suspect.
    pub(crate) fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Whether the first tier must forget everything: it does not track
    /// which cell an entry belongs to, and cell writes are rare.
    pub(crate) fn clears_all(&self) -> bool {
        self.all || !self.cells.is_empty()
    }

    /// Whether nothing was written.
    pub(crate) fn is_empty(&self) -> bool {
        !self.clears_all() && self.uuids.is_empty()
    }
}

/// Records the writes of one operation or transaction, to invalidate the
/// cache when it ends (see [`crate::Tx`]).
#[derive(Debug, Default)]
pub(crate) struct WriteLog(std::cell::RefCell<Writes>);

impl WriteLog {
    /// Notes that the mappings of these instances changed.
    pub(crate) fn instances<'u>(&self, uuids: impl IntoIterator<Item = &'u str>) {
        self.0
            .borrow_mut()
            .uuids
            .extend(uuids.into_iter().map(str::to_owned));
    }

    /// Notes that the cell with this uuid changed or went.
    pub(crate) fn cell(&self, uuid: &str) {
        self.0.borrow_mut().cells.insert(uuid.to_ascii_lowercase());
    }

    /// Takes what was recorded.
    pub(crate) fn take(&self) -> Writes {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_instances_are_both_kept() {
        let w = WriteLog::default();
        w.instances(["a", "b"]);
        w.cell("ABC");
        w.instances(["c"]);
        let taken = w.take();
        assert!(taken.clears_all());
        assert_eq!(taken.uuids.len(), 3);
        assert!(taken.cells.contains("abc"));
        assert!(w.take().is_empty());
        assert!(Writes::everything().clears_all());
    }
}

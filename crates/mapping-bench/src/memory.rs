//! Peak heap of listing one cell: the paged walk against the whole listing
//! (issue 15: the paged API keeps memory flat from 10k to 1M rows).
//!
//! Two figures per call. The Rust heap: the bench's global allocator counts
//! bytes only while a measurement is on (one relaxed load per allocation
//! otherwise, so the timed cases are not affected), and the figure is the
//! highest net growth since the call began, exact to the byte. The drivers'
//! own buffers (libpq's results, MariaDB's stored result sets, SQLite's
//! pages) are allocated by C code and not seen there, so the second figure
//! is the process's peak resident memory (`VmHWM`, reset through
//! `/proc/self/clear_refs` after `malloc_trim`) above its resident memory
//! when the call began, at page granularity.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use mapping_diesel::Database;
use mapping_model::CellMapping;

/// The system allocator, counting while [`measure`] runs.
pub(crate) struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static NET: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(bytes: usize) {
    let net = NET.fetch_add(bytes as isize, Ordering::Relaxed) + bytes as isize;
    PEAK.fetch_max(net, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    NET.fetch_sub(bytes as isize, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are
// plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            grew(layout.size());
        }
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ON.load(Ordering::Relaxed) {
            shrank(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            grew(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ON.load(Ordering::Relaxed) {
            grew(new_size);
            shrank(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Peaks of one call, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peak {
    /// Highest net growth of the Rust heap.
    pub(crate) heap: usize,
    /// Peak resident memory above the resident memory at the start
    /// (`None` where `/proc` does not tell).
    pub(crate) resident: Option<usize>,
}

/// Runs `f` and returns its result with its peaks. Single-threaded use:
/// the bench runs one case at a time.
pub(crate) fn measure<T>(f: impl FnOnce() -> T) -> (T, Peak) {
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    // "5" resets the peak resident set size to the current one.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_bytes("VmRSS:");
    NET.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    ON.store(true, Ordering::SeqCst);
    let out = f();
    ON.store(false, Ordering::SeqCst);
    let resident = match (reset, before, status_bytes("VmHWM:")) {
        (true, Some(b), Some(h)) => Some(h.saturating_sub(b)),
        _ => None,
    };
    let heap = PEAK.load(Ordering::Relaxed).max(0) as usize;
    (out, Peak { heap, resident })
}

/// Page size of the walk measured.
pub(crate) const PAGE: u32 = 1_000;

/// One cell listed both ways: rows, peak of the paged walk (each object
/// dropped once counted), peak of `get_by_cell_id` (all objects at once).
pub(crate) struct CellListing {
    pub(crate) rows: usize,
    pub(crate) walk_peak: Peak,
    pub(crate) list_peak: Peak,
}

/// Measures the listing of `cell` through the walk and the whole listing,
/// each after an unmeasured warm-up run (pooled connection, statement
/// caches).
pub(crate) fn cell_listing(db: &Database, cell: &CellMapping) -> CellListing {
    let walk = || {
        let mut ims = db.instance_mappings();
        let mut n = 0usize;
        for im in ims.walk_by_cell_id(cell.id, PAGE) {
            im.expect("walk");
            n += 1;
        }
        n
    };
    let list = || {
        db.instance_mappings()
            .get_by_cell_id(cell.id)
            .expect("list")
            .len()
    };
    walk();
    let (rows, walk_peak) = measure(walk);
    list();
    let (listed, list_peak) = measure(list);
    assert_eq!(rows, listed, "the walk and the listing saw the same rows");
    CellListing {
        rows,
        walk_peak,
        list_peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_the_highest_net_growth() {
        // Counted directly (the allocator counts only while `measure` runs).
        NET.store(0, Ordering::Relaxed);
        PEAK.store(0, Ordering::Relaxed);
        grew(100);
        shrank(100);
        grew(40);
        shrank(1_000); // freed what was allocated before the measurement
        grew(10);
        assert_eq!(PEAK.load(Ordering::Relaxed), 100);
    }
}

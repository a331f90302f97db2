//! A small measuring harness with criterion's rigour where it matters here:
//! a warm-up, many samples of many iterations each, median and spread, and
//! the object API and its raw baseline measured in alternation so that both
//! see the same machine state.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Warm-up time per side.
    pub warm_up: Duration,
    /// Target duration of one sample.
    pub sample_time: Duration,
    /// Samples per side.
    pub samples: usize,
    /// Most iterations per side in all (for operations that consume a pool
    /// of prepared rows).
    pub max_iters: Option<u64>,
}

impl Plan {
    /// The default plan (about 1.5 s per side for fast operations).
    pub fn standard(quick: bool) -> Self {
        if quick {
            Self {
                warm_up: Duration::from_millis(50),
                sample_time: Duration::from_millis(5),
                samples: 10,
                max_iters: None,
            }
        } else {
            Self {
                warm_up: Duration::from_millis(300),
                sample_time: Duration::from_millis(25),
                samples: 41,
                max_iters: None,
            }
        }
    }

    /// The same plan, with at most `n` iterations per side.
    pub fn at_most(mut self, n: u64) -> Self {
        self.max_iters = Some(n);
        self
    }
}

/// Per-iteration times of one side, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Stats {
    /// One per-iteration time per sample, sorted.
    pub per_iter_ns: Vec<f64>,
    /// Iterations in each sample.
    pub iters_per_sample: u64,
}

impl Stats {
    /// Builds stats from unsorted per-iteration sample times.
    pub fn new(mut per_iter_ns: Vec<f64>, iters_per_sample: u64) -> Self {
        per_iter_ns.sort_by(f64::total_cmp);
        Self {
            per_iter_ns,
            iters_per_sample,
        }
    }

    fn quantile(&self, q: f64) -> f64 {
        let v = &self.per_iter_ns;
        if v.is_empty() {
            return f64::NAN;
        }
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        let frac = pos - lo as f64;
        v[lo] * (1.0 - frac) + v[hi] * frac
    }

    /// Median time of one iteration.
    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    /// First quartile.
    pub fn q1(&self) -> f64 {
        self.quantile(0.25)
    }

    /// Third quartile.
    pub fn q3(&self) -> f64 {
        self.quantile(0.75)
    }

    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.per_iter_ns.len()
    }
}

/// Measures `a` (the object API) and `b` (the raw baseline) side by side.
/// Each closure runs one iteration and returns something to keep alive.
pub fn pair<A, B, RA, RB>(plan: Plan, mut a: A, mut b: B) -> (Stats, Stats)
where
    A: FnMut() -> RA,
    B: FnMut() -> RB,
{
    // Warm-up: alternate, and estimate the time of one iteration.
    let estimate = |f: &mut dyn FnMut(), budget: Duration, cap: u64| -> (f64, u64) {
        let start = Instant::now();
        let mut n = 0u64;
        while (start.elapsed() < budget || n < 3) && n < cap {
            f();
            n += 1;
        }
        (start.elapsed().as_nanos() as f64 / n.max(1) as f64, n)
    };
    let warm_cap = plan.max_iters.map_or(u64::MAX, |m| (m / 10).max(3));
    let (ta, wa) = estimate(
        &mut || {
            black_box(a());
        },
        plan.warm_up,
        warm_cap,
    );
    let (tb, wb) = estimate(
        &mut || {
            black_box(b());
        },
        plan.warm_up,
        warm_cap,
    );
    let slower = ta.max(tb).max(1.0);
    let mut iters = (plan.sample_time.as_nanos() as f64 / slower)
        .floor()
        .max(1.0) as u64;
    if let Some(max) = plan.max_iters {
        let left = max.saturating_sub(wa.max(wb));
        iters = iters.min((left / plan.samples as u64).max(1));
    }
    let mut sa = Vec::with_capacity(plan.samples);
    let mut sb = Vec::with_capacity(plan.samples);
    for i in 0..plan.samples {
        // Alternate which side goes first, so neither always follows the other.
        let mut run_a = || {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(a());
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        };
        if i % 2 == 0 {
            sa.push(run_a());
            let start = Instant::now();
            for _ in 0..iters {
                black_box(b());
            }
            sb.push(start.elapsed().as_nanos() as f64 / iters as f64);
        } else {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(b());
            }
            sb.push(start.elapsed().as_nanos() as f64 / iters as f64);
            sa.push(run_a());
        }
    }
    (Stats::new(sa, iters), Stats::new(sb, iters))
}

/// Measures one side alone (no baseline).
pub fn single<A, RA>(plan: Plan, mut a: A) -> Stats
where
    A: FnMut() -> RA,
{
    pair(plan, &mut a, || ()).0
}

/// Formats nanoseconds with a fitting unit.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "—".into()
    } else if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = Stats::new(vec![4.0, 1.0, 3.0, 2.0, 5.0], 1);
        assert_eq!(s.median(), 3.0);
        assert_eq!(s.q1(), 2.0);
        assert_eq!(s.q3(), 4.0);
        assert_eq!(fmt_ns(1500.0), "1.5 µs");
    }
}

//! The markdown report: results, targets, chart and machine description.

use std::fmt::Write as _;

use mapping_diesel::BackendKind;

use crate::harness::{fmt_ns, Stats};
use crate::setup::bench_cpu;
use crate::{name, Args, Measured, Report, CELLS, LOAD_BATCH};

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    // All CPUs of the machine (the bench itself is pinned to one).
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let env = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| "unknown (run through scripts/bench.sh)".into())
    };
    format!(
        "- CPU: {cpu}, {cores} cores (nproc)\n- Kernel: Linux {}\n- Toolchain: {}, {}, release profile\n\
         - Bench process and its server processes/threads pinned to CPU: {}\n\
         - Load average at the end of the run: {}\n",
        kernel.trim(),
        env("BENCH_RUSTC"),
        env("BENCH_DIESEL"),
        bench_cpu().unwrap_or_else(|| "none".into()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

pub(crate) fn render(r: &Report, args: &Args) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "## Machine\n\n{}", machine());
    for (b, v) in &r.versions {
        let _ = writeln!(md, "- {}: {}", name(*b), v);
    }
    let _ = writeln!(
        md,
        "\nPlan: {}; medians of per-iteration times over the samples, spread as the \
         interquartile range (q1–q3); object API and raw baseline measured in alternating samples.\n",
        if args.quick { "quick (smoke test only, not for figures)" } else { "warm-up 300 ms per side, 41 samples of ~25 ms each per side; bulk: 1 warm-up + 7 samples" }
    );
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "| backend | rows | case | object API median (q1–q3) | raw median (q1–q3) | object/raw | samples × iterations |\n|---|---|---|---|---|---|---|"
    );
    for m in &r.results {
        let obj = format!(
            "{} ({}–{})",
            fmt_ns(m.object.median()),
            fmt_ns(m.object.q1()),
            fmt_ns(m.object.q3())
        );
        let (rawm, ratio) = match (&m.raw, m.ratio()) {
            (Some(s), Some(q)) => (
                format!(
                    "{} ({}–{})",
                    fmt_ns(s.median()),
                    fmt_ns(s.q1()),
                    fmt_ns(s.q3())
                ),
                format!("{q:.2}×"),
            ),
            _ => ("—".into(), "—".into()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {obj} | {rawm} | {ratio} | {} × {} |",
            name(m.backend),
            size_label(m.size),
            m.case,
            m.object.samples(),
            m.object.iters_per_sample
        );
    }
    let _ = writeln!(
        md,
        "\n### Throughput of bulk create (10,000 rows, one transaction)\n"
    );
    let _ = writeln!(
        md,
        "| backend | rows in table | object API rows/s | raw rows/s |\n|---|---|---|---|"
    );
    for m in r.results.iter().filter(|m| m.case == "bulk_create_10k") {
        let rate = |s: &Stats| m.rows as f64 / (s.median() / 1e9);
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} |",
            name(m.backend),
            size_label(m.size),
            rate(&m.object),
            m.raw
                .as_ref()
                .map_or("—".into(), |s| format!("{:.0}", rate(s)))
        );
    }
    let _ = writeln!(
        md,
        "\nLoading the table through `create_bulk` ({LOAD_BATCH} rows per call):\n"
    );
    for (b, rows, took) in &r.loads {
        let _ = writeln!(
            md,
            "- {}: {} rows in {:.1} s ({:.0} rows/s)",
            name(*b),
            rows,
            took.as_secs_f64(),
            *rows as f64 / took.as_secs_f64().max(1e-9)
        );
    }
    render_memory(&mut md, r);
    render_targets(&mut md, r);
    render_chart(&mut md, r);
    let _ = writeln!(
        md,
        "\n## Query plans (at the largest size; PostgreSQL and MariaDB after ANALYZE)\n"
    );
    for (b, what, sql, rows) in &r.explains {
        let _ = writeln!(
            md,
            "**{}: {what}** — `{}`\n\n```",
            name(*b),
            sql.replace('`', "'")
        );
        for row in rows {
            let line = row.join(" | ");
            let line = if line.chars().count() > 220 {
                format!("{}…", line.chars().take(220).collect::<String>())
            } else {
                line
            };
            let _ = writeln!(md, "{line}");
        }
        let _ = writeln!(md, "```\n");
    }
    md
}

fn find<'a>(r: &'a Report, b: BackendKind, size: usize, case: &str) -> Option<&'a Measured> {
    r.results
        .iter()
        .find(|m| m.backend == b && m.size == size && m.case == case)
}

/// The peak heap of listing one cell, paged and whole (`memory.rs`).
fn render_memory(md: &mut String, r: &Report) {
    if r.memory.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Peak heap of listing one cell\n\nOne cell of the {CELLS}, read through \
         `walk_by_cell_id(cell, {page})` (each object dropped once counted) and through \
         `get_by_cell_id` (all objects at once). Per call: the highest net growth of the \
         Rust heap (exact), and the peak resident memory above that at the start of the call \
         (includes the drivers' C buffers; page granularity).\n\n| backend | table rows | cell rows | walk: heap / resident | get_by_cell_id: heap / resident |\n|---|---|---|---|---|",
        page = crate::memory::PAGE
    );
    let kib = |b: usize| format!("{:.0} KiB", b as f64 / 1024.0);
    let both = |p: crate::memory::Peak| {
        format!(
            "{} / {}",
            kib(p.heap),
            p.resident.map_or_else(|| "—".to_owned(), kib)
        )
    };
    for (b, size, m) in &r.memory {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            name(*b),
            size,
            m.rows,
            both(m.walk_peak),
            both(m.list_peak)
        );
    }
}

fn render_targets(md: &mut String, r: &Report) {
    let _ = writeln!(
        md,
        "\n## Targets\n\n| target | backend | measured | met |\n|---|---|---|---|"
    );
    let mut backends: Vec<BackendKind> = r.results.iter().map(|m| m.backend).collect();
    backends.dedup();
    let sizes: Vec<usize> = {
        let mut s: Vec<usize> = r.results.iter().map(|m| m.size).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let yes = |ok: bool| if ok { "yes" } else { "**no**" };
    for &b in &backends {
        for case in ["lookup_one", "lookup_1000", "counts"] {
            for &size in &sizes {
                if let Some(q) = find(r, b, size, case).and_then(Measured::ratio) {
                    let _ = writeln!(
                        md,
                        "| {case} object/raw ≤ 1.2× at {} | {} | {q:.2}× | {} |",
                        size_label(size),
                        name(b),
                        yes(q <= 1.2)
                    );
                }
            }
        }
        let need = match b {
            BackendKind::Mysql => 20_000.0,
            _ => 50_000.0,
        };
        for &size in &sizes {
            if let Some(m) = find(r, b, size, "bulk_create_10k") {
                let rate = m.rows as f64 / (m.object.median() / 1e9);
                let _ = writeln!(
                    md,
                    "| bulk create ≥ {need:.0} rows/s at {} | {} | {rate:.0} rows/s | {} |",
                    size_label(size),
                    name(b),
                    yes(rate >= need)
                );
            }
        }
        if let (Some(&small), Some(&big)) = (sizes.first(), sizes.last()) {
            if small != big {
                for case in ["lookup_one", "lookup_1000"] {
                    if let (Some(s), Some(l)) = (find(r, b, small, case), find(r, b, big, case)) {
                        let q = l.object.median() / s.object.median();
                        let _ = writeln!(
                            md,
                            "| {case} at {} ≤ 1.5× of {} | {} | {q:.2}× | {} |",
                            size_label(big),
                            size_label(small),
                            name(b),
                            yes(q <= 1.5)
                        );
                    }
                }
            }
        }
        for &size in &sizes {
            if let (Some(h), Some(l)) = (
                find(r, b, size, "cache_hit"),
                find(r, b, size, "lookup_one"),
            ) {
                let q = l.object.median() / h.object.median();
                // The target is set against PostgreSQL; the others are shown
                // for information.
                let met = if b == BackendKind::Postgres {
                    yes(q >= 100.0)
                } else {
                    "(for information)"
                };
                let _ = writeln!(
                    md,
                    "| cache hit ≥ 100× faster than uncached lookup at {} | {} | {q:.0}× ({} vs {}) | {met} |",
                    size_label(size),
                    name(b),
                    fmt_ns(h.object.median()),
                    fmt_ns(l.object.median()),
                );
            }
        }
    }
}

fn render_chart(md: &mut String, r: &Report) {
    let _ = writeln!(
        md,
        "\n## Chart: lookup of one mapping (median latency, log scale)\n\n```text"
    );
    let rows: Vec<&Measured> = r
        .results
        .iter()
        .filter(|m| m.case == "lookup_one")
        .collect();
    // Bars on a log scale from 100 ns to 1 ms, 12 characters per decade.
    let (lo, decades, per_decade) = (100.0f64, 4.0f64, 12.0f64);
    let width = (decades * per_decade) as usize;
    let bar = |ns: f64| {
        let n = ((ns.max(lo).log10() - lo.log10()) * per_decade)
            .round()
            .max(1.0) as usize;
        "█".repeat(n.min(width))
    };
    let _ = writeln!(
        md,
        "{:<20} {:<w$} median",
        "",
        "100ns       1µs         10µs        100µs       1ms",
        w = width
    );
    for m in rows {
        let label = format!("{:<8} {:>3}", name(m.backend), size_label(m.size));
        let _ = writeln!(
            md,
            "{label} object  {:<w$} {}",
            bar(m.object.median()),
            fmt_ns(m.object.median()),
            w = width
        );
        if let Some(s) = &m.raw {
            let _ = writeln!(
                md,
                "{:<12} raw     {:<w$} {}",
                "",
                bar(s.median()),
                fmt_ns(s.median()),
                w = width
            );
        }
        if let Some(h) = find(r, m.backend, m.size, "cache_hit") {
            let _ = writeln!(
                md,
                "{:<12} cached  {:<w$} {}",
                "",
                bar(h.object.median()),
                fmt_ns(h.object.median()),
                w = width
            );
        }
    }
    let _ = writeln!(md, "```");
}

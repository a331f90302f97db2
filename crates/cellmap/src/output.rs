//! Listings as a text table or as JSON, and everything written to stdout.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use serde_json::Value;

use crate::Failure;

/// Writes `text` to stdout. A reader that went away (`cellmap … | head`)
/// is [`Failure::ClosedPipe`], which ends the command quietly.
pub(crate) fn write_out(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Failure::ClosedPipe
            } else {
                Failure::of("writing to stdout")(&e)
            }
        })
}

/// `println!` to stdout through [`write_out`]: a `Result<(), Failure>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// How many items of a long list a table shows.
pub(crate) const SUMMARY: usize = 3;

/// A list in a table: all of `items` when there are at most [`SUMMARY`],
/// else the first few and how many more of `total` there are.
pub(crate) fn summary_of(items: &[impl AsRef<str>], total: usize) -> String {
    let shown: Vec<&str> = items.iter().take(SUMMARY).map(AsRef::as_ref).collect();
    let more = total.saturating_sub(shown.len());
    if more == 0 {
        shown.join(", ")
    } else {
        format!("{} and {more} more", shown.join(", "))
    }
}

/// [`summary_of`] a whole list.
pub(crate) fn summary(items: &[impl AsRef<str>]) -> String {
    summary_of(items, items.len())
}

/// The widest a table may be: set once by [`set_table_width`].
static TABLE_WIDTH: OnceLock<Option<usize>> = OnceLock::new();

/// Sets how wide tables may be: with `wide`, or when stdout is not a
/// terminal, as wide as their text; else the terminal's width (`COLUMNS`
/// when set, as `ls` does, else the terminal's own, else 80).
pub(crate) fn set_table_width(wide: bool) {
    let width = if wide || !std::io::stdout().is_terminal() {
        None
    } else {
        Some(
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .or_else(terminal_columns)
                .unwrap_or(80),
        )
    };
    let _ = TABLE_WIDTH.set(width);
}

/// The columns of the terminal on stdout, if it says.
#[cfg(unix)]
fn terminal_columns() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points to one that lives for the call.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (r == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// The columns of the terminal on stdout, if it says.
#[cfg(not(unix))]
fn terminal_columns() -> Option<usize> {
    None
}

/// `text` cut to `width` characters, the last one `…` when cut.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How listings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A boxed text table, as nova-manage prints.
    Table,
    /// One JSON document.
    Json,
}

/// A listing: columns (table header, JSON key) and rows of JSON values
/// (strings, numbers, booleans, null, arrays of strings).
#[derive(Debug, Clone)]
pub struct Listing {
    /// Column headers and JSON keys.
    pub columns: Vec<(&'static str, &'static str)>,
    /// The rows.
    pub rows: Vec<Vec<Value>>,
}

impl Listing {
    /// An empty listing with these columns.
    pub fn new(columns: Vec<(&'static str, &'static str)>) -> Self {
        Self {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }

    /// The rows as JSON objects keyed by column.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    Value::Object(
                        self.columns
                            .iter()
                            .zip(r)
                            .map(|((_, key), v)| ((*key).to_owned(), v.clone()))
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    /// The listing as a boxed table as wide as [`set_table_width`] allows.
    pub fn to_table(&self) -> String {
        self.to_table_fit(TABLE_WIDTH.get().copied().flatten())
    }

    /// The listing as a boxed table at most `max_width` characters wide
    /// (when given), as far as columns of 6 allow: the widest columns are
    /// narrowed first and their cells cut with `…`. Lists show their
    /// first few items and how many more there are, unless `max_width` is
    /// `None` (everything).
    pub fn to_table_fit(&self, max_width: Option<usize>) -> String {
        let item = |i: &Value| i.as_str().map_or_else(|| i.to_string(), str::to_owned);
        let cell = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Array(items) if max_width.is_some() => {
                summary(&items.iter().map(item).collect::<Vec<_>>())
            }
            Value::Array(items) => items.iter().map(item).collect::<Vec<_>>().join(", "),
            other => other.to_string(),
        };
        let text: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(cell).collect())
            .collect();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (c, _))| {
                text.iter()
                    .filter_map(|r| r.get(i))
                    .map(|s| s.chars().count())
                    .chain(std::iter::once(c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut widths = widths;
        if let Some(max) = max_width {
            const NARROWEST: usize = 6;
            let mut total: usize = widths.iter().map(|w| w + 3).sum::<usize>() + 1;
            while total > max {
                let Some(widest) = (0..widths.len())
                    .filter(|&i| widths[i] > NARROWEST)
                    .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)))
                else {
                    break;
                };
                widths[widest] -= 1;
                total -= 1;
            }
        }
        let rule: String = widths
            .iter()
            .map(|w| format!("+{}", "-".repeat(w + 2)))
            .collect::<String>()
            + "+\n";
        let line = |cells: &mut dyn Iterator<Item = String>| {
            cells
                .zip(&widths)
                .map(|(c, w)| format!("| {:<w$} ", truncate(&c, *w)))
                .collect::<String>()
                + "|\n"
        };
        let mut out = rule.clone();
        out.push_str(&line(
            &mut self.columns.iter().map(|(c, _)| (*c).to_owned()),
        ));
        out.push_str(&rule);
        for r in text {
            out.push_str(&line(&mut r.into_iter()));
        }
        out.push_str(&rule);
        out
    }

    /// Prints the listing in `format` on stdout.
    pub(crate) fn print(&self, format: Format) -> Result<(), Failure> {
        match format {
            Format::Table => write_out(&self.to_table()),
            Format::Json => outln!("{}", self.to_json()),
        }
    }
}

/// Nova's `mask_passwd_in_url`: in the network location, everything from
/// the first `:` to the last `@` becomes `:****@`.
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let start = scheme_end + 3;
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let netloc = &url[start..end];
    match (netloc.find(':'), netloc.rfind('@')) {
        (Some(colon), Some(at)) if colon < at => format!(
            "{}{}:****{}{}",
            &url[..start],
            &netloc[..colon],
            &netloc[at..],
            &url[end..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_nova() {
        assert_eq!(
            mask_password("mysql+pymysql://nova:s3cr:et@db/nova?charset=utf8"),
            "mysql+pymysql://nova:****@db/nova?charset=utf8"
        );
        assert_eq!(
            mask_password("rabbit://u1:p1@h1:5672,u2:p2@h2:5672/"),
            "rabbit://u1:****@h2:5672/"
        );
        assert_eq!(mask_password("none:///"), "none:///");
        assert_eq!(mask_password("sqlite:////tmp/x.db"), "sqlite:////tmp/x.db");
        assert_eq!(mask_password("mysql://db:3306/x"), "mysql://db:3306/x");
    }

    #[test]
    fn tables_fit_the_width() {
        let mut l = Listing::new(vec![("Name", "name"), ("Examples", "examples")]);
        l.push(vec![
            Value::from("cell1"),
            serde_json::json!(["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd"]),
        ]);
        let wide = l.to_table_fit(None);
        assert!(
            wide.contains("| aaaaaaaaaa, bbbbbbbbbb, cccccccccc, dddddddddd |"),
            "{wide}"
        );
        let fit = l.to_table_fit(Some(30));
        for line in fit.lines() {
            assert_eq!(line.chars().count(), 30, "{fit}");
        }
        assert!(fit.contains("| cell1 | aaaaaaaaaa, bbbbb… |"), "{fit}");
        let roomy = l.to_table_fit(Some(200));
        assert!(
            roomy.contains("| aaaaaaaaaa, bbbbbbbbbb, cccccccccc and 1 more |"),
            "{roomy}"
        );
    }

    #[test]
    fn table_and_json() {
        let mut l = Listing::new(vec![("Name", "name"), ("N", "n")]);
        l.push(vec![Value::from("a"), Value::from(1)]);
        assert_eq!(
            l.to_table(),
            "+------+---+\n| Name | N |\n+------+---+\n| a    | 1 |\n+------+---+\n"
        );
        assert_eq!(l.to_json().to_string(), r#"[{"n":1,"name":"a"}]"#);
    }
}

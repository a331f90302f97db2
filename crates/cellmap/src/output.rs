//! Listings as a text table or as JSON.

use serde_json::Value;

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

    /// The listing as a boxed table.
    pub fn to_table(&self) -> String {
        let cell = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
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
        let rule: String = widths
            .iter()
            .map(|w| format!("+{}", "-".repeat(w + 2)))
            .collect::<String>()
            + "+\n";
        let line = |cells: &mut dyn Iterator<Item = String>| {
            cells
                .zip(&widths)
                .map(|(c, w)| format!("| {c:<w$} "))
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
    pub fn print(&self, format: Format) {
        match format {
            Format::Table => print!("{}", self.to_table()),
            Format::Json => println!("{}", self.to_json()),
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

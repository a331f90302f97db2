//! Expansion of the templates Nova allows in a cell mapping's `transport_url`
//! and `database_connection` (docs/tables.md).
//!
//! A stored value such as
//! `mysql+pymysql://{username}:{password}@{hostname}/nova_cell1` is filled in
//! from a default URL chosen by the caller (Nova uses `[database]/connection`
//! for database URLs and `[DEFAULT]/transport_url` for message-queue URLs).
//!
//! The result matches what Nova gets from Python's `urllib.parse.urlparse`
//! on the default followed by `str.format(**variables)` on the template.
//! Where this module cannot produce Python's exact result, it reports a
//! failure, and the caller gets the template back unchanged, as Nova does
//! when formatting raises.
//!
//! # Variables
//!
//! | name | value | when absent |
//! | --- | --- | --- |
//! | `scheme` | the scheme, lowercased | `""` |
//! | `username` | the netloc up to its **last** `@`, then up to the first `:` | `None` |
//! | `password` | the same text after its first `:` | `None` |
//! | `hostname` | the netloc after its last `@`, up to the first `:` (or inside `[...]`), lowercased up to any `%zone` | `None` |
//! | `port` | the text after that `:` as a number (leading zeros dropped) | `None` |
//! | `path` | the path with **all** leading `/` removed | `""` |
//! | `query` | the text after `?` | `""` |
//! | `fragment` | the text after `#` | `""` |
//!
//! When the netloc contains a comma (oslo.messaging's multi-host form
//! `rabbit://u1:p1@h1:5672,u2:p2@h2:5672/vhost`), the netloc is also split at
//! every comma and the i-th entry (counting from 1) defines `username{i}`,
//! `password{i}`, `hostname{i}` and `port{i}`. Each entry is read as Nova reads
//! it, which is not how `urlparse` reads a netloc:
//!
//! - the user part ends at the entry's **first** `@`; `username{i}` is the
//!   text before its first `:` (the empty string when there is no `@`), and
//!   `password{i}` is the text after that `:`, or `None` without a `:`;
//! - `hostname{i}` is the text before the first `:` of the host part, kept
//!   as written (not lowercased); an entry starting with `[` takes the text
//!   between the brackets, and `port{i}` is then everything after `]`,
//!   colon included (`[::1]:5672` gives port `:5672`), an `[` without `]`
//!   fails the whole expansion;
//! - `port{i}` is text, not checked to be a number, and `None` when the host
//!   part has no `:`.
//!
//! The plain variables are still taken from the whole netloc, so with several
//! hosts `username` and `password` describe the user part up to the last `@`
//! (the password of the first host then runs on to the user of the last
//! one) while `hostname` and `port` describe the last host. Templates for
//! multi-host defaults should use the numbered variables.
//!
//! # Missing values
//!
//! Where Python has `None`, the variable expands to the four letters `None`,
//! exactly as `str.format` prints it: Nova passes the `urlparse` attributes
//! through without replacing `None`, so a default without a password turns
//! `{password}` into `None`. Keeping this makes a template expand to the same
//! string here and in Nova.
//!
//! # Failures
//!
//! Expansion fails, and the template comes back unchanged, when:
//!
//! - Python's `urlparse` would reject the default (unbalanced `[`/`]` in the
//!   netloc, a bracketed host that is neither an IPv6 address nor an
//!   `IPvFuture` literal, non-ASCII characters that NFKC-normalise into
//!   `/?#@:`), or its port is not made of ASCII digits or exceeds 65535 (Nova
//!   reads the port even when the template does not use it);
//! - the template has a single `{` or `}`, an empty or positional field
//!   (`{}`, `{0}`), a name that is not a defined variable, attribute or index
//!   access (`{port.real}`, `{path[0]}`), a conversion other than `!s`, or a
//!   non-empty format spec (`{port:>5}`). Python would accept some of these
//!   (`!r`, specs, attributes); they are refused here rather than guessed.
//!
//! `{{` and `}}` stand for literal braces; `{name!s}`, `{name:}` and
//! `{name!s:}` mean the same as `{name}`.

mod default_url;
mod format;
#[cfg(test)]
mod tests;

use default_url::parse_default;
use format::format_template;

///
/// See the module documentation for the variables, how missing values print
/// (`None`, as in Python) and what counts as a failure.
pub fn expand_url_template(template: &str, default_url: Option<&str>) -> String {
    let Some(default_url) = default_url else {
        return template.to_owned();
    };
    if !template.contains(['{', '}']) {
        return template.to_owned();
    }
    parse_default(default_url)
        .and_then(|vars| format_template(template, &vars))
        .unwrap_or_else(|| template.to_owned())
}

/// One substitution value, typed as Nova's Python code has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// Python's `None`; prints as `None`.
    Missing,
    /// A string.
    Text(String),
    /// An integer (the plain `port`).
    Number(u16),
}

impl Value {
    /// Builds a value from optional text.
    fn from_opt(text: Option<&str>) -> Self {
        text.map_or(Value::Missing, |t| Value::Text(t.to_owned()))
    }

    /// Appends the value as `str()` would print it.
    fn write_to(&self, out: &mut String) {
        match self {
            Value::Missing => out.push_str("None"),
            Value::Text(text) => out.push_str(text),
            Value::Number(number) => out.push_str(&number.to_string()),
        }
    }
}

/// The numbered variables of one comma-separated netloc entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostEntry {
    username: Value,
    password: Value,
    hostname: Value,
    port: Value,
}

/// All variables a template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vars {
    scheme: Value,
    username: Value,
    password: Value,
    hostname: Value,
    port: Value,
    path: Value,
    query: Value,
    fragment: Value,
    /// Present only when the netloc holds a comma.
    hosts: Vec<HostEntry>,
}

impl Vars {
    /// Looks a field name up; `None` when no such variable exists.
    fn get(&self, name: &str) -> Option<&Value> {
        match name {
            "scheme" => return Some(&self.scheme),
            "username" => return Some(&self.username),
            "password" => return Some(&self.password),
            "hostname" => return Some(&self.hostname),
            "port" => return Some(&self.port),
            "path" => return Some(&self.path),
            "query" => return Some(&self.query),
            "fragment" => return Some(&self.fragment),
            _ => {}
        }
        let (prefix, digits) = split_numbered(name)?;
        // Python builds the names with `%i`: no sign, no leading zeros.
        if digits.starts_with('0') {
            return None;
        }
        let index: usize = digits.parse().ok()?;
        let entry = self.hosts.get(index.checked_sub(1)?)?;
        match prefix {
            "username" => Some(&entry.username),
            "password" => Some(&entry.password),
            "hostname" => Some(&entry.hostname),
            "port" => Some(&entry.port),
            _ => None,
        }
    }
}

/// Splits `hostname12` into `("hostname", "12")`; `None` unless the name is
/// one of the numbered prefixes followed by one or more ASCII digits.
fn split_numbered(name: &str) -> Option<(&str, &str)> {
    ["username", "password", "hostname", "port"]
        .into_iter()
        .find_map(|prefix| {
            let digits = name.strip_prefix(prefix)?;
            let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            all_digits.then_some((prefix, digits))
        })
}

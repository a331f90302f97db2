//! SQLite URLs: SQLAlchemy's `sqlite:` forms, bare paths and `file:` URIs.

use super::redact::{malformed, mask_query};
use super::text::split_query;
use super::{BackendKind, ConnectionUrl, UrlError};

impl ConnectionUrl {
    /// An SQLite file path (or `:memory:`) given without a scheme.
    pub(super) fn sqlite_path(path: &str) -> Self {
        if path == ":memory:" {
            return Self::sqlite_memory();
        }
        let redacted = if path.contains('?') {
            path.to_owned()
        } else {
            format!("sqlite:///{path}")
        };
        ConnectionUrl {
            backend: BackendKind::Sqlite,
            diesel: path.to_owned(),
            redacted,
            database: Some(path.to_owned()),
            memory: false,
            server: None,
        }
    }

    /// The in-memory SQLite database.
    pub(super) fn sqlite_memory() -> Self {
        ConnectionUrl {
            backend: BackendKind::Sqlite,
            diesel: ":memory:".to_owned(),
            redacted: "sqlite:///:memory:".to_owned(),
            database: None,
            memory: true,
            server: None,
        }
    }

    /// A `file:` URI, passed through to SQLite.
    pub(super) fn sqlite_uri(url: &str, rest: &str) -> Self {
        let (path, query) = split_query(rest);
        let memory = path == ":memory:"
            || query.is_some_and(|q| {
                q.split('&')
                    .any(|pair| pair.eq_ignore_ascii_case("mode=memory"))
            });
        let path = path.split('#').next().unwrap_or(path);
        let redacted = match url.split_once('?') {
            Some((before, query)) => format!("{before}?{}", mask_query(query)),
            None => url.to_owned(),
        };
        ConnectionUrl {
            backend: BackendKind::Sqlite,
            diesel: url.to_owned(),
            redacted,
            database: (!memory && !path.is_empty()).then(|| path.to_owned()),
            memory,
            server: None,
        }
    }

    /// `sqlite:…` in its SQLAlchemy forms; `rest` follows the scheme's `:`.
    pub(super) fn parse_sqlite(url: &str, rest: &str) -> Result<Self, UrlError> {
        if rest == ":memory:" {
            return Ok(Self::sqlite_memory());
        }
        let Some(after_slashes) = rest.strip_prefix("//") else {
            return Err(malformed(
                url,
                "expected `sqlite://` (memory), `sqlite:///relative/path` or `sqlite:////absolute/path`",
            ));
        };
        let authority_end = after_slashes
            .find(['/', '?'])
            .unwrap_or(after_slashes.len());
        let (authority, tail) = after_slashes.split_at(authority_end);
        if !authority.is_empty() {
            return Err(malformed(
                url,
                "SQLite URLs take no host or credentials; use `sqlite:///relative/path` or `sqlite:////absolute/path`",
            ));
        }
        let path = tail
            .strip_prefix('/')
            .map_or("", |p| p.split('?').next().unwrap_or(p));
        if path.is_empty() || path == ":memory:" {
            return Ok(Self::sqlite_memory());
        }
        let mut file = Self::sqlite_path(path);
        // Any case: the scheme splitter reads `FILE:` as a `file:` URI too,
        // so the path must not look like one when written back.
        if path
            .get(..5)
            .is_some_and(|head| head.eq_ignore_ascii_case("file:"))
        {
            file.diesel = format!("./{path}");
        }
        Ok(file)
    }
}

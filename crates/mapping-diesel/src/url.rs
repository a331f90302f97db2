//! Database connection URLs (SPEC §6): which backend a URL names, the string
//! diesel's `Connection::establish` needs for it, and a redacted form that is
//! safe to log.
//!
//! # Accepted forms
//!
//! | input | backend | diesel string |
//! | --- | --- | --- |
//! | `sqlite://`, `sqlite:///`, `sqlite:///:memory:`, `sqlite::memory:`, `:memory:` | SQLite | `:memory:` |
//! | `sqlite:////absolute/path.db` | SQLite | `/absolute/path.db` |
//! | `sqlite:///relative/path.db` | SQLite | `relative/path.db` |
//! | `/tmp/x.db`, `./x.db`, `x.db`, `C:\x.db` (no scheme) | SQLite | the path as given |
//! | `file:x.db?mode=ro` (SQLite URI filename) | SQLite | the URI as given |
//! | `postgres://…`, `postgresql://…`, `postgresql+<driver>://…` | PostgreSQL | `postgres://…` |
//! | `mysql://…`, `mysql+<driver>://…`, `mariadb://…`, `mariadb+<driver>://…` | MySQL | `mysql://…` |
//!
//! Schemes are matched case-insensitively; `sqlite+<driver>` (for example
//! SQLAlchemy's `sqlite+pysqlite`) is read like `sqlite`.
//!
//! ## SQLite
//!
//! A `?query` after an SQLAlchemy-style path is dropped (its options, such as
//! `check_same_thread`, are for Python drivers). SQLite URLs take no host or
//! credentials. Paths are not percent-decoded. A relative path that starts
//! with `file:` is handed to diesel as `./file:…` so that SQLite does not read
//! it as a URI. `file:` URIs are passed through unchanged and count as
//! in-memory when their path is `:memory:` or they carry `mode=memory`.
//! `sqlite:relative.db` (no `//`) is refused.
//!
//! ## PostgreSQL
//!
//! Only the scheme is rewritten; everything else, the query included, goes to
//! libpq as written: the query keys SQLAlchemy's PostgreSQL drivers accept are
//! libpq's own connection keywords (`client_encoding`, `sslmode`,
//! `application_name`, `host`, …), so nothing is dropped. An empty host
//! (`postgresql:///nova`) is accepted: libpq then uses the local socket.
//! Several comma-separated hosts are accepted as libpq allows.
//!
//! ## MySQL
//!
//! diesel 2.3 reads only the query keys `unix_socket`, `ssl_mode`, `ssl_ca`,
//! `ssl_cert` and `ssl_key`, and refuses a `database` key; `connect_timeout`
//! (seconds, as PyMySQL reads it) is kept for this crate's own connect
//! timeout; every other key (`charset`, `plugin`, `read_default_file`, `ssl_capath`, …) is dropped.
//! Note that dropping includes TLS options diesel cannot express. diesel
//! chooses `utf8mb4` itself, so `charset` is not needed. A `ssl_mode` value
//! diesel would refuse is refused here. A host is required, except that
//! `mysql://user@/db?unix_socket=/path` (a form SQLAlchemy users write) is
//! given the host `localhost`, which diesel turns into a socket connection.
//! Only one host is accepted, and the database name must be a single path
//! segment made of characters diesel passes on verbatim (diesel does not
//! percent-decode it).
//!
//! ## Credentials
//!
//! The user information ends at the **last** `@` before the host; the
//! password is the part after its first `:`. Percent-escapes are kept as
//! written (diesel and libpq decode them); a raw `@` inside the user or the
//! password is escaped as `%40` so that both parsers see the same split. A
//! raw `/`, `?` or `#` in a password cannot be told apart from the end of the
//! host, so an `@` anywhere after the host, and any `#`, is refused with a
//! hint to percent-encode.
//!
//! ## Redaction
//!
//! [`ConnectionUrl::redacted`], `Display` and `Debug` show the normalised URL
//! (the one diesel gets, for SQLite an equivalent `sqlite:///` form) with a
//! non-empty password replaced by `***`, and with the value of every query
//! key whose name contains `pass`, `key`, `secret` or `token` replaced by
//! `***` (libpq accepts `password=` in the query). [`UrlError`] never holds
//! more of an unparsable input than a conservatively redacted copy: from the
//! first `:` after the scheme to the last `@`, everything is masked.

use std::fmt;
use std::str::FromStr;

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// SQLite (a file or an in-memory database).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

/// Why a connection URL was refused; never contains a password.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// The URL is empty or only whitespace.
    #[error("the database connection URL is empty")]
    Empty,
    /// The scheme names no supported backend.
    #[error("unsupported database URL scheme `{scheme}` (expected sqlite, postgresql or mysql)")]
    UnknownScheme {
        /// The scheme as written, without anything after it.
        scheme: String,
    },
    /// The URL names a supported backend but cannot be used.
    #[error("malformed database connection URL `{url}`: {reason}")]
    Malformed {
        /// The input with anything that might be a password masked.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// [`ConnectionUrl::with_database`] got a name it will not put in a URL.
    #[error("invalid database name `{name}`: {reason}")]
    InvalidDatabaseName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation does not apply to URLs of this backend.
    #[error("{operation} is not supported for {backend:?} URLs")]
    Unsupported {
        /// The backend of the URL.
        backend: BackendKind,
        /// The refused operation.
        operation: String,
    },
}

/// A parsed connection URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl {
    backend: BackendKind,
    /// What diesel gets; holds the password.
    diesel: String,
    /// Safe for logs.
    redacted: String,
    /// Database name (PG/MySQL) or file path (SQLite file).
    database: Option<String>,
    /// In-memory SQLite.
    memory: bool,
    /// The pieces of a PG/MySQL URL, to rebuild it with another database.
    server: Option<ServerParts>,
}

/// The pieces of a PostgreSQL or MySQL URL, as they will be written out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerParts {
    /// `None` when there is no `@`; raw `@` escaped.
    user: Option<String>,
    /// `None` when the user information has no `:`; raw `@` escaped.
    password: Option<String>,
    /// Host list, ports included, as written.
    host: String,
    /// The path as written: empty or starting with `/`.
    path: String,
    /// `key=value` pieces kept, as written.
    query: Vec<String>,
}

impl ConnectionUrl {
    /// Parses any accepted form.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        if url.trim().is_empty() {
            return Err(UrlError::Empty);
        }
        if url.contains('\0') {
            return Err(malformed(url, "the URL contains a NUL character"));
        }
        let Some((scheme, rest)) = split_scheme(url) else {
            if url.contains("://") {
                return Err(malformed(
                    url,
                    "neither a URL with a valid scheme nor a file path",
                ));
            }
            return Ok(Self::sqlite_path(url));
        };
        let lower = scheme.to_ascii_lowercase();
        if lower == "sqlite" || has_driver(&lower, "sqlite") {
            Self::parse_sqlite(url, rest)
        } else if lower == "file" {
            Ok(Self::sqlite_uri(url, rest))
        } else if lower == "postgres" || lower == "postgresql" || has_driver(&lower, "postgresql") {
            Self::parse_server(url, rest, BackendKind::Postgres)
        } else if lower == "mysql"
            || lower == "mariadb"
            || has_driver(&lower, "mysql")
            || has_driver(&lower, "mariadb")
        {
            Self::parse_server(url, rest, BackendKind::Mysql)
        } else {
            Err(UrlError::UnknownScheme {
                scheme: scheme.to_owned(),
            })
        }
    }

    /// The backend named by the scheme.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The string to hand to diesel's `Connection::establish` for this backend.
    ///
    /// It contains the password: never log it.
    pub fn diesel_url(&self) -> &str {
        &self.diesel
    }

    /// The URL with any password replaced by `***`, safe for logs and errors.
    pub fn redacted(&self) -> String {
        self.redacted.clone()
    }

    /// True for an in-memory SQLite database.
    pub fn is_sqlite_memory(&self) -> bool {
        self.memory
    }

    /// The database name (PG/MySQL) or file path (SQLite file), if any.
    ///
    /// For PostgreSQL the name is percent-decoded, as libpq decodes it; for
    /// MySQL it is exactly what diesel sends (diesel does not decode it).
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// A copy of this URL pointing at another database name (PG/MySQL only; SQLite returns an error). Used by the test kit to create per-test databases.
    ///
    /// The name must be 1 to 63 ASCII letters, digits, `_`, `$` or `-`, so
    /// that it means the same to every backend and needs no escaping.
    pub fn with_database(&self, name: &str) -> Result<Self, UrlError> {
        let Some(server) = &self.server else {
            return Err(UrlError::Unsupported {
                backend: self.backend,
                operation: "changing the database name".to_owned(),
            });
        };
        validate_database_name(name)?;
        let mut parts = server.clone();
        parts.path = format!("/{name}");
        Ok(Self::from_server(
            self.backend,
            parts,
            Some(name.to_owned()),
        ))
    }

    /// An SQLite file path (or `:memory:`) given without a scheme.
    fn sqlite_path(path: &str) -> Self {
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
    fn sqlite_memory() -> Self {
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
    fn sqlite_uri(url: &str, rest: &str) -> Self {
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
    fn parse_sqlite(url: &str, rest: &str) -> Result<Self, UrlError> {
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
        if path.starts_with("file:") {
            file.diesel = format!("./{path}");
        }
        Ok(file)
    }

    /// `postgres…://` and `mysql…://`; `rest` follows the scheme's `:`.
    fn parse_server(url: &str, rest: &str, backend: BackendKind) -> Result<Self, UrlError> {
        let fail = |reason: &str| malformed(url, reason);
        if url.chars().any(char::is_control) {
            return Err(fail("the URL contains control characters"));
        }
        let Some(after_slashes) = rest.strip_prefix("//") else {
            return Err(fail("expected `//` after the scheme"));
        };
        if after_slashes.contains('#') {
            return Err(fail(
                "`#` is not allowed; percent-encode it (%23) if it is part of the password",
            ));
        }
        let netloc_end = after_slashes
            .find(['/', '?'])
            .unwrap_or(after_slashes.len());
        let (netloc, tail) = after_slashes.split_at(netloc_end);
        if tail.contains('@') {
            return Err(fail(
                "`@` after the host; percent-encode `@`, `/` and `?` in passwords and query values",
            ));
        }
        let (path, query) = split_query(tail);

        let (user, password, host) = match netloc.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (userinfo, None),
                };
                (Some(escape_at(user)), password.map(escape_at), host)
            }
            None => (None, None, netloc),
        };

        let query_pieces = query
            .map(|q| q.split('&').filter(|p| !p.is_empty()).collect::<Vec<_>>())
            .unwrap_or_default();

        let (host, path, query, database) = match backend {
            BackendKind::Postgres => {
                check_pg_hosts(host).map_err(fail)?;
                let database = match path.strip_prefix('/') {
                    Some(name) if !name.is_empty() => Some(
                        percent_decode(name)
                            .ok_or("the database name has an invalid percent-escape")
                            .map_err(fail)?,
                    ),
                    _ => None,
                };
                let query = query_pieces.into_iter().map(str::to_owned).collect();
                (host.to_owned(), path.to_owned(), query, database)
            }
            _ => {
                let query = mysql_query(&query_pieces).map_err(fail)?;
                let has_socket = query
                    .iter()
                    .any(|piece| form_decode(query_key(piece)) == "unix_socket");
                let host = check_mysql_host(host, has_socket).map_err(fail)?;
                let database = match path.strip_prefix('/') {
                    Some(name) if !name.is_empty() => {
                        check_mysql_database(name).map_err(fail)?;
                        Some(name.to_owned())
                    }
                    _ => None,
                };
                (host, path.to_owned(), query, database)
            }
        };

        let parts = ServerParts {
            user,
            password,
            host,
            path,
            query,
        };
        Ok(Self::from_server(backend, parts, database))
    }

    /// Builds a PG/MySQL URL from its parts.
    fn from_server(backend: BackendKind, parts: ServerParts, database: Option<String>) -> Self {
        ConnectionUrl {
            backend,
            diesel: render_server(backend, &parts, false),
            redacted: render_server(backend, &parts, true),
            database,
            memory: false,
            server: Some(parts),
        }
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionUrl")
            .field("backend", &self.backend)
            .field("url", &self.redacted)
            .finish()
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl FromStr for ConnectionUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A `Malformed` error carrying a conservatively redacted copy of `url`.
fn malformed(url: &str, reason: &str) -> UrlError {
    UrlError::Malformed {
        url: redact_unparsed(url),
        reason: reason.to_owned(),
    }
}

/// Splits `scheme:rest` when the text before the first `:` is a URL scheme
/// (an ASCII letter, then letters, digits, `+`, `-` or `.`). A single letter
/// followed by `/` or `\` is a Windows drive, not a scheme.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let drive = scheme.len() == 1 && rest.starts_with(['/', '\\']);
    (first_ok && rest_ok && !drive).then_some((scheme, rest))
}

/// True for `base+driver` with a non-empty driver.
fn has_driver(scheme: &str, base: &str) -> bool {
    scheme
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('+'))
        .is_some_and(|driver| !driver.is_empty())
}

/// Splits at the first `?`.
fn split_query(text: &str) -> (&str, Option<&str>) {
    match text.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (text, None),
    }
}

/// Escapes raw `@` as `%40`.
fn escape_at(text: &str) -> String {
    text.replace('@', "%40")
}

/// The key of a `key=value` query piece.
fn query_key(piece: &str) -> &str {
    piece.split('=').next().unwrap_or(piece)
}

/// True for query keys whose values may be secrets.
fn is_sensitive_key(key: &str) -> bool {
    let key = form_decode(key).to_ascii_lowercase();
    ["pass", "key", "secret", "token"]
        .iter()
        .any(|word| key.contains(word))
}

/// Masks the values of sensitive keys in a raw query string.
fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|piece| match piece.split_once('=') {
            Some((key, _)) if is_sensitive_key(key) => format!("{key}=***"),
            _ => piece.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `%XX` escapes; `None` for a bad escape or invalid UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut iter = text.bytes();
    while let Some(byte) = iter.next() {
        if byte == b'%' {
            let high = hex_value(iter.next()?)?;
            let low = hex_value(iter.next()?)?;
            bytes.push(high * 16 + low);
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).ok()
}

/// Decodes as `application/x-www-form-urlencoded` does (`+` is a space);
/// text with a bad escape is returned as written.
fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode(&spaced).unwrap_or(spaced)
}

/// The value of one hexadecimal digit.
fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// True for an empty port or one of ASCII digits no greater than 65535.
fn port_ok(port: &str) -> bool {
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let significant = port.trim_start_matches('0');
    significant.is_empty()
        || (significant.len() <= 5 && significant.parse::<u32>().is_ok_and(|n| n <= 65_535))
}

/// Splits one host entry into host and optional port, accepting
/// `[ipv6]` and `[ipv6]:port`.
fn split_host_port(entry: &str) -> Result<(&str, Option<&str>), &'static str> {
    match entry.strip_prefix('[') {
        Some(bracketed) => {
            let (address, after) = bracketed
                .split_once(']')
                .ok_or("an IPv6 host is missing its `]`")?;
            if after.is_empty() {
                Ok((address, None))
            } else {
                let port = after
                    .strip_prefix(':')
                    .ok_or("unexpected text after an IPv6 host")?;
                Ok((address, Some(port)))
            }
        }
        None => {
            if entry.contains(['[', ']']) {
                return Err("`[` and `]` may only enclose an IPv6 host");
            }
            Ok(match entry.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            })
        }
    }
}

/// Checks a libpq host list (possibly empty: the local socket).
fn check_pg_hosts(hosts: &str) -> Result<(), &'static str> {
    if hosts.is_empty() {
        return Ok(());
    }
    for entry in hosts.split(',') {
        let (_, port) = split_host_port(entry)?;
        if !port.is_none_or(port_ok) {
            return Err("the port is not a number from 0 to 65535");
        }
    }
    Ok(())
}

/// Checks a MySQL host and returns it as diesel should get it.
fn check_mysql_host(host: &str, has_socket: bool) -> Result<String, &'static str> {
    if host.contains(',') {
        return Err("MySQL URLs take a single host");
    }
    let (name, port) = split_host_port(host)?;
    if !port.is_none_or(port_ok) {
        return Err("the port is not a number from 0 to 65535");
    }
    if host.starts_with('[') {
        if name.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the bracketed host is not an IPv6 address");
        }
    } else if name
        .chars()
        .any(|c| !c.is_ascii_graphic() || "<>\\^|%".contains(c))
    {
        return Err("the host contains characters not allowed in a host name");
    }
    if name.is_empty() {
        if !has_socket {
            return Err("missing host; give one, or a `unix_socket=` query parameter");
        }
        return Ok(format!("localhost{host}"));
    }
    Ok(host.to_owned())
}

/// Checks that a MySQL database path segment reaches MySQL unchanged.
fn check_mysql_database(name: &str) -> Result<(), &'static str> {
    if name.contains('/') {
        return Err("the MySQL database name must be a single path segment");
    }
    let dots = name.to_ascii_lowercase().replace("%2e", ".");
    if dots == "." || dots == ".." {
        return Err("the MySQL database name cannot be `.` or `..`");
    }
    if name
        .chars()
        .any(|c| !c.is_ascii_graphic() || "\"<>`{}".contains(c))
    {
        return Err("the MySQL database name contains characters diesel would alter");
    }
    Ok(())
}

/// Query keys diesel's MySQL connection reads.
const MYSQL_KEYS: [&str; 6] = [
    "unix_socket",
    "ssl_mode",
    "ssl_ca",
    "ssl_cert",
    "ssl_key",
    // Read by this crate (the connect timeout, as PyMySQL's), ignored by diesel.
    "connect_timeout",
];

/// `ssl_mode` values diesel accepts (compared case-insensitively).
const MYSQL_SSL_MODES: [&str; 5] = [
    "disabled",
    "preferred",
    "required",
    "verify_ca",
    "verify_identity",
];

/// Keeps the query pieces diesel's MySQL connection understands.
fn mysql_query(pieces: &[&str]) -> Result<Vec<String>, &'static str> {
    let mut kept = Vec::new();
    for piece in pieces {
        let key = form_decode(query_key(piece));
        if !MYSQL_KEYS.contains(&key.as_str()) {
            continue;
        }
        if key == "ssl_mode" {
            let value = form_decode(piece.split_once('=').map_or("", |(_, v)| v));
            let value = value.to_ascii_lowercase();
            if !MYSQL_SSL_MODES.contains(&value.as_str()) {
                return Err("unknown ssl_mode (expected disabled, preferred, required, verify_ca or verify_identity)");
            }
        }
        kept.push((*piece).to_owned());
    }
    Ok(kept)
}

/// Writes a PG/MySQL URL, masking secrets when `redact` is set.
fn render_server(backend: BackendKind, parts: &ServerParts, redact: bool) -> String {
    let scheme = match backend {
        BackendKind::Mysql => "mysql",
        _ => "postgres",
    };
    let mut out = format!("{scheme}://");
    if let Some(user) = &parts.user {
        out.push_str(user);
        if let Some(password) = &parts.password {
            out.push(':');
            if redact && !password.is_empty() {
                out.push_str("***");
            } else {
                out.push_str(password);
            }
        }
        out.push('@');
    }
    out.push_str(&parts.host);
    out.push_str(&parts.path);
    if !parts.query.is_empty() {
        let query = parts.query.join("&");
        out.push('?');
        if redact {
            out.push_str(&mask_query(&query));
        } else {
            out.push_str(&query);
        }
    }
    out
}

/// Masks, in text that could not be parsed, everything from the first `:`
/// after the scheme to the last `@`, and the values of sensitive query keys
/// after that.
fn redact_unparsed(url: &str) -> String {
    let (prefix, body) = match split_scheme(url) {
        Some((scheme, rest)) => match rest.strip_prefix("//") {
            Some(body) => (format!("{scheme}://"), body),
            None => (format!("{scheme}:"), rest),
        },
        None => (String::new(), url),
    };
    let (masked, after) = match (body.find(':'), body.rfind('@')) {
        (Some(colon), Some(at)) if colon < at => {
            let user = body.get(..colon).unwrap_or("");
            let after = body.get(at..).unwrap_or("");
            (format!("{user}:***"), after)
        }
        _ => (String::new(), body),
    };
    let after = match after.split_once('?') {
        Some((before, query)) => format!("{before}?{}", mask_query(query)),
        None => after.to_owned(),
    };
    format!("{prefix}{masked}{after}")
}

/// Checks a name for [`ConnectionUrl::with_database`].
fn validate_database_name(name: &str) -> Result<(), UrlError> {
    let invalid = |reason: &str| UrlError::InvalidDatabaseName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > 63 {
        return Err(invalid("the name is longer than 63 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, `_`, `$` and `-` are allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> ConnectionUrl {
        match ConnectionUrl::parse(url) {
            Ok(parsed) => parsed,
            Err(err) => panic!("{url:?} was refused: {err}"),
        }
    }

    fn err(url: &str) -> UrlError {
        match ConnectionUrl::parse(url) {
            Ok(parsed) => panic!("{url:?} was accepted as {parsed:?}"),
            Err(err) => err,
        }
    }

    fn is_malformed(url: &str) -> bool {
        matches!(err(url), UrlError::Malformed { .. })
    }

    #[test]
    fn sqlite_memory_forms() {
        for url in [
            "sqlite://",
            "sqlite:///",
            "sqlite:///:memory:",
            "sqlite::memory:",
            ":memory:",
            "SQLite://",
            "sqlite+pysqlite://",
            "sqlite+pysqlite:///:memory:",
            "sqlite://?check_same_thread=false",
            "sqlite:///:memory:?cache=shared",
        ] {
            let parsed = ok(url);
            assert_eq!(parsed.backend(), BackendKind::Sqlite, "{url}");
            assert!(parsed.is_sqlite_memory(), "{url}");
            assert_eq!(parsed.diesel_url(), ":memory:", "{url}");
            assert_eq!(parsed.database(), None, "{url}");
            assert_eq!(parsed.to_string(), "sqlite:///:memory:", "{url}");
        }
    }

    #[test]
    fn sqlite_file_forms() {
        let cases = [
            ("sqlite:////absolute/path.db", "/absolute/path.db"),
            ("sqlite:///relative/path.db", "relative/path.db"),
            (
                "sqlite+pysqlite:////var/lib/nova/nova_api.db",
                "/var/lib/nova/nova_api.db",
            ),
            ("sqlite:///rel.db?check_same_thread=false", "rel.db"),
            ("/tmp/x.db", "/tmp/x.db"),
            ("./x.db", "./x.db"),
            ("x.db", "x.db"),
            ("C:\\data\\x.db", "C:\\data\\x.db"),
            ("c:/data/x.db", "c:/data/x.db"),
            ("sqlite:///file:x.db", "./file:x.db"),
        ];
        for (url, path) in cases {
            let parsed = ok(url);
            assert_eq!(parsed.backend(), BackendKind::Sqlite, "{url}");
            assert!(!parsed.is_sqlite_memory(), "{url}");
            assert_eq!(parsed.diesel_url(), path, "{url}");
            assert!(parsed.database().is_some(), "{url}");
            // The displayed form parses back to the same database.
            assert_eq!(ok(&parsed.to_string()).diesel_url(), path, "{url}");
        }
        assert_eq!(
            ok("sqlite:///relative/path.db").database(),
            Some("relative/path.db")
        );
        assert_eq!(ok("sqlite:////abs.db").to_string(), "sqlite:////abs.db");
    }

    #[test]
    fn sqlite_uri_filenames_pass_through() {
        let parsed = ok("file:test.db?mode=ro");
        assert_eq!(parsed.backend(), BackendKind::Sqlite);
        assert_eq!(parsed.diesel_url(), "file:test.db?mode=ro");
        assert_eq!(parsed.database(), Some("test.db"));
        assert!(!parsed.is_sqlite_memory());

        let shared = ok("file:t1?mode=memory&cache=shared");
        assert!(shared.is_sqlite_memory());
        assert_eq!(shared.database(), None);
        assert!(ok("file::memory:").is_sqlite_memory());
    }

    #[test]
    fn sqlite_refusals() {
        assert!(is_malformed("sqlite:relative.db"));
        assert!(is_malformed("sqlite:/x.db"));
        assert!(is_malformed("sqlite://host/x.db"));
        assert!(is_malformed("sqlite+pysqlcipher://:s3cr3t@/x.db"));
        assert_eq!(err(""), UrlError::Empty);
        assert_eq!(err("  \n"), UrlError::Empty);
        assert!(is_malformed("x\0.db"));
        assert!(is_malformed("my sql://h/db"));
    }

    #[test]
    fn sqlite_with_database_is_unsupported() {
        let result = ok("sqlite://").with_database("x");
        assert!(matches!(
            result,
            Err(UrlError::Unsupported {
                backend: BackendKind::Sqlite,
                ..
            })
        ));
    }

    #[test]
    fn postgres_forms() {
        for scheme in [
            "postgres",
            "postgresql",
            "postgresql+psycopg2",
            "postgresql+psycopg",
            "postgresql+pg8000",
            "PostgreSQL",
        ] {
            let url = format!("{scheme}://nova:pw@db.example:5432/nova_api?sslmode=require");
            let parsed = ok(&url);
            assert_eq!(parsed.backend(), BackendKind::Postgres, "{url}");
            assert_eq!(
                parsed.diesel_url(),
                "postgres://nova:pw@db.example:5432/nova_api?sslmode=require"
            );
            assert_eq!(parsed.database(), Some("nova_api"));
            assert!(!parsed.is_sqlite_memory());
        }
    }

    #[test]
    fn postgres_keeps_query_and_allows_socket_and_multi_host() {
        let parsed =
            ok("postgresql+psycopg2://u@/nova?host=/var/run/postgresql&client_encoding=utf8");
        assert_eq!(
            parsed.diesel_url(),
            "postgres://u@/nova?host=/var/run/postgresql&client_encoding=utf8"
        );
        assert_eq!(ok("postgres:///db").database(), Some("db"));
        assert_eq!(ok("postgres://").diesel_url(), "postgres://");
        assert_eq!(ok("postgres://h").database(), None);
        assert_eq!(ok("postgres://h/").database(), None);
        let multi = ok("postgresql://h1:5432,h2,[::1]:5433/db");
        assert_eq!(multi.diesel_url(), "postgres://h1:5432,h2,[::1]:5433/db");
        assert_eq!(ok("postgres://h/my%20db").database(), Some("my db"));
    }

    #[test]
    fn mysql_forms() {
        for scheme in [
            "mysql",
            "mysql+pymysql",
            "mysql+mysqldb",
            "mysql+mysqlconnector",
            "mariadb",
            "mariadb+pymysql",
            "MySQL",
        ] {
            let url = format!("{scheme}://nova:pw@db.example:3306/nova_api");
            let parsed = ok(&url);
            assert_eq!(parsed.backend(), BackendKind::Mysql, "{url}");
            assert_eq!(
                parsed.diesel_url(),
                "mysql://nova:pw@db.example:3306/nova_api"
            );
            assert_eq!(parsed.database(), Some("nova_api"));
        }
    }

    #[test]
    fn mysql_query_keys_are_filtered() {
        let parsed = ok("mysql+pymysql://u:pw@h/nova?charset=utf8mb4&plugin=dbcounter&read_default_file=/etc/my.cnf&ssl_ca=/ca.pem&ssl_mode=VERIFY_CA&database=x&ssl_cert=/c&ssl_key=/k&ssl_capath=/d&connect_timeout=3");
        assert_eq!(
            parsed.diesel_url(),
            "mysql://u:pw@h/nova?ssl_ca=/ca.pem&ssl_mode=VERIFY_CA&ssl_cert=/c&ssl_key=/k&connect_timeout=3"
        );
        assert_eq!(
            ok("mysql://u@h/nova?charset=utf8").diesel_url(),
            "mysql://u@h/nova"
        );
        assert!(is_malformed("mysql://u@h/nova?ssl_mode=sometimes"));
    }

    #[test]
    fn mysql_socket_without_host() {
        let parsed = ok("mysql+pymysql://nova:pw@/nova?unix_socket=/var/run/mysqld/mysqld.sock");
        assert_eq!(
            parsed.diesel_url(),
            "mysql://nova:pw@localhost/nova?unix_socket=/var/run/mysqld/mysqld.sock"
        );
        assert!(is_malformed("mysql://nova:pw@/nova"));
        assert!(is_malformed("mysql:///nova"));
        assert!(is_malformed("mysql://"));
    }

    #[test]
    fn mysql_refusals() {
        assert!(is_malformed("mysql://u@h:abc/db"));
        assert!(is_malformed("mysql://u@h:65536/db"));
        assert!(is_malformed("mysql://u@h1,h2/db"));
        assert!(is_malformed("mysql://u@h/db/extra"));
        assert!(is_malformed("mysql://u@h/my db"));
        assert!(is_malformed("mysql://u@h/.."));
        assert!(is_malformed("mysql://u@h/%2E"));
        assert!(is_malformed("mysql://u@h\u{e9}/db"));
        assert!(is_malformed("mysql://u@[nope]/db"));
        assert!(is_malformed("mysql://u@h[/db"));
        assert!(is_malformed("mysql:/u@h/db"));
        assert!(is_malformed("mysql:u@h/db"));
        assert_eq!(
            ok("mysql://u@[::1]:3306/db").diesel_url(),
            "mysql://u@[::1]:3306/db"
        );
        assert_eq!(ok("mysql://u@h:/db").diesel_url(), "mysql://u@h:/db");
    }

    #[test]
    fn postgres_refusals() {
        assert!(is_malformed("postgres:/db"));
        assert!(is_malformed("postgresql:db"));
        assert!(is_malformed("postgres://h:port/db"));
        assert!(is_malformed("postgres://h:99999/db"));
        assert!(is_malformed("postgres://[::1/db"));
        assert!(is_malformed("postgres://h/db%zz"));
        assert!(is_malformed("postgres://h/db#frag"));
        assert!(is_malformed("postgres://h/d\tb"));
    }

    #[test]
    fn unknown_schemes() {
        assert_eq!(
            err("oracle://scott:tiger@h/db"),
            UrlError::UnknownScheme {
                scheme: "oracle".to_owned()
            }
        );
        assert_eq!(
            err("postgresql+://h/db"),
            UrlError::UnknownScheme {
                scheme: "postgresql+".to_owned()
            }
        );
        assert!(matches!(err("http://h/"), UrlError::UnknownScheme { .. }));
    }

    #[test]
    fn passwords_keep_their_escapes() {
        let parsed = ok("mysql+pymysql://nova:p%40ss@h/db");
        assert_eq!(parsed.diesel_url(), "mysql://nova:p%40ss@h/db");
        assert_eq!(parsed.redacted(), "mysql://nova:***@h/db");
        // A raw `@` in the password is escaped; the host follows the last `@`.
        let raw = ok("postgresql://nova:p@ss@h/db");
        assert_eq!(raw.diesel_url(), "postgres://nova:p%40ss@h/db");
        assert_eq!(raw.redacted(), "postgres://nova:***@h/db");
    }

    #[test]
    fn redaction() {
        let parsed = ok("postgresql+psycopg2://nova:pw@h/db?sslmode=require");
        assert_eq!(
            parsed.redacted(),
            "postgres://nova:***@h/db?sslmode=require"
        );
        assert_eq!(parsed.to_string(), parsed.redacted());
        assert!(!format!("{parsed:?}").contains("pw@"));
        // No password: unchanged; empty password: nothing to hide.
        assert_eq!(ok("mysql://nova@h/db").redacted(), "mysql://nova@h/db");
        assert_eq!(ok("mysql://nova:@h/db").redacted(), "mysql://nova:@h/db");
        assert_eq!(ok("postgres://h/db").redacted(), "postgres://h/db");
        // Passwords in the query.
        assert_eq!(
            ok("postgres://nova@h/db?password=pw&sslmode=require").redacted(),
            "postgres://nova@h/db?password=***&sslmode=require"
        );
    }

    #[test]
    fn with_database_rewrites_the_path() {
        let base = ok("mysql+pymysql://u:pw@h:3306/nova_api?charset=utf8&ssl_mode=required");
        let other = match base.with_database("nova_test_1") {
            Ok(other) => other,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            other.diesel_url(),
            "mysql://u:pw@h:3306/nova_test_1?ssl_mode=required"
        );
        assert_eq!(other.database(), Some("nova_test_1"));
        assert_eq!(other.backend(), BackendKind::Mysql);

        let pg = ok("postgres://u@h");
        let other = match pg.with_database("t-2") {
            Ok(other) => other,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(other.diesel_url(), "postgres://u@h/t-2");
        assert_eq!(other.redacted(), "postgres://u@h/t-2");

        for bad in ["", "a/b", "a b", "x'y", &"n".repeat(64)] {
            assert!(matches!(
                pg.with_database(bad),
                Err(UrlError::InvalidDatabaseName { .. })
            ));
        }
    }

    #[test]
    fn from_str_and_equality() {
        let parsed: Result<ConnectionUrl, _> = "postgresql://u@h/db".parse();
        assert_eq!(parsed, Ok(ok("postgres://u@h/db")));
        let clone = ok("sqlite://").clone();
        assert_eq!(clone, ok(":memory:"));
    }

    #[test]
    fn passwords_never_leak() {
        let secret = "s3cr3t";
        let erroring = [
            "postgres://nova:s3cr3t@h:port/db",
            "postgres://nova:s3cr3t@h:99999/db",
            "postgres://nova:s3cr3t@[::1/db",
            "postgres://nova:s3cr3t@h/db%zz",
            "postgres://nova:s3cr3t@h/db#x",
            "postgres:/nova:s3cr3t@h/db",
            "postgres:nova:s3cr3t@h/db",
            "postgres://nova:s3cr3t@h/d\tb",
            "postgres://nova:s3/cr3t@h/db",
            "postgres://nova:1234/s3cr3t@h/db",
            "postgres://nova:1234?s3cr3t@h/db",
            "postgres://nova:1234?x=s3cr3t@h/db",
            "postgres://nova:s3#cr3t@h/db",
            "postgres://nova:s3cr3t#@h/db",
            "postgres://h:x/db?password=s3cr3t",
            "postgres://h:x/db?sslpassword=s3cr3t",
            "mysql://nova:s3cr3t@h:abc/db",
            "mysql://nova:s3cr3t@h:65536/db",
            "mysql://nova:s3cr3t@/db",
            "mysql://nova:s3cr3t@h1,h2/db",
            "mysql://nova:s3cr3t@h/db/x",
            "mysql://nova:s3cr3t@h/d b",
            "mysql://nova:s3cr3t@h/db?ssl_mode=bad",
            "mysql://nova:s3cr3t@[zz]/db",
            "mysql:nova:s3cr3t@h/db",
            "mysql://nova:s3cr3t@h\0/db",
            "mysql+pymysql://nova:s3/cr3t@h/db",
            "oracle://nova:s3cr3t@h/db",
            "s3cr3t://x",
            "sqlite+pysqlcipher://:s3cr3t@/x.db",
            "sqlite://nova:s3cr3t@h/x.db",
            "sqlite:nova:s3cr3t@h",
            "my sql://nova:s3cr3t@h/db",
            "_pg://nova:s3cr3t@h/db",
        ];
        for url in erroring {
            let error = match ConnectionUrl::parse(url) {
                Ok(parsed) => panic!("{:?} was accepted", parsed),
                Err(error) => error,
            };
            if url.starts_with("s3cr3t:") {
                // The scheme itself is the only thing reported.
                assert_eq!(
                    error,
                    UrlError::UnknownScheme {
                        scheme: secret.to_owned()
                    }
                );
                continue;
            }
            assert!(!error.to_string().contains(secret), "{url}: {error}");
            assert!(!format!("{error:?}").contains(secret), "{url}: {error:?}");
        }

        let accepted = [
            "postgres://nova:s3cr3t@h/db",
            "postgresql+psycopg2://nova:s3cr3t@h:5432/db?sslmode=require",
            "postgres://nova@h/db?password=s3cr3t",
            "postgres://nova:s3cr3t@h",
            "mysql+pymysql://nova:s3cr3t@h/db?charset=utf8",
            "mysql://nova:s3cr3t@/db?unix_socket=/s",
            "mysql://nova:s3cr3t@x@h/db",
            "mysql://nova:s3cr3t:x@h/db",
            "file:x.db?key=s3cr3t",
        ];
        for url in accepted {
            let parsed = ok(url);
            assert!(!parsed.redacted().contains(secret), "{url}");
            assert!(!parsed.to_string().contains(secret), "{url}");
            assert!(!format!("{parsed:?}").contains(secret), "{url}");
            assert!(!format!("{parsed:#?}").contains(secret), "{url}");
            if let Ok(other) = parsed.with_database("other") {
                assert!(!other.to_string().contains(secret), "{url}");
                assert!(other.diesel_url().contains(secret), "{url}");
            }
        }
    }

    #[test]
    fn odd_strings_never_panic() {
        let punct: Vec<char> = (0x21u8..0x7f)
            .map(char::from)
            .filter(|c| c.is_ascii_punctuation())
            .collect();
        let prefixes = [
            "",
            "sqlite:",
            "sqlite://",
            "postgres://",
            "mysql://u:p@h",
            "file:",
        ];
        for &a in &punct {
            for &b in &punct {
                for &c in &punct {
                    let tail: String = [a, b, c].iter().collect();
                    for prefix in prefixes {
                        let text = format!("{prefix}{tail}");
                        if let Ok(parsed) = ConnectionUrl::parse(&text) {
                            let _ = parsed.with_database("x");
                            let _ = parsed.to_string();
                        }
                    }
                }
            }
        }
        for text in [
            "é://x",
            "mysql://é@h/é",
            "postgres://h/%C3",
            "mysql://[",
            "postgres://]:",
        ] {
            let _ = ConnectionUrl::parse(text);
        }
    }
}

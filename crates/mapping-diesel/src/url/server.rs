//! PostgreSQL and MySQL URLs: credentials, host lists, ports, database
//! names and the query keys each driver reads.

use super::redact::{malformed, render_server};
use super::text::{escape_at, form_decode, percent_decode, query_key, split_query};
use super::{BackendKind, ConnectionUrl, ServerParts, UrlError};

impl ConnectionUrl {
    /// `postgres…://` and `mysql…://`; `rest` follows the scheme's `:`.
    pub(super) fn parse_server(
        url: &str,
        rest: &str,
        backend: BackendKind,
    ) -> Result<Self, UrlError> {
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
                let host = if is_pymysql(url) && !has_socket {
                    tcp_for_localhost(&host)
                } else {
                    host
                };
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
    pub(super) fn from_server(
        backend: BackendKind,
        parts: ServerParts,
        database: Option<String>,
    ) -> Self {
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

/// True for `mysql+pymysql://` and `mariadb+pymysql://` URLs (any case).
fn is_pymysql(url: &str) -> bool {
    super::text::split_scheme(url).is_some_and(|(scheme, _)| {
        let scheme = scheme.to_ascii_lowercase();
        scheme == "mysql+pymysql" || scheme == "mariadb+pymysql"
    })
}

/// PyMySQL reaches `localhost` over TCP (at the port given, 3306 by
/// default), where libmysqlclient, and so diesel, would take the local
/// socket and ignore the port: the host `localhost` becomes `127.0.0.1`.
fn tcp_for_localhost(host: &str) -> String {
    match split_host_port(host) {
        Ok((name, port)) if name.eq_ignore_ascii_case("localhost") => match port {
            Some(port) => format!("127.0.0.1:{port}"),
            None => "127.0.0.1".to_owned(),
        },
        _ => host.to_owned(),
    }
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

/// Checks a name for [`ConnectionUrl::with_database`].
pub(super) fn validate_database_name(name: &str) -> Result<(), UrlError> {
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

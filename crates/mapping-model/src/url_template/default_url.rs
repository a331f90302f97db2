//! Reading the default URL as Python's `urllib.parse.urlparse` does, and
//! the per-host entries of a multi-host netloc as Nova does.

use super::{HostEntry, Value, Vars};
use crate::url_scheme;

/// The characters (other than `/?#@:` themselves) whose NFKC normal form
/// contains one of `/?#@:`; Python refuses a non-ASCII netloc holding one.
const NFKC_DELIMITER_LOOKALIKES: [char; 19] = [
    '\u{2047}', '\u{2048}', '\u{2049}', '\u{2100}', '\u{2101}', '\u{2105}', '\u{2106}', '\u{2A74}',
    '\u{FE13}', '\u{FE16}', '\u{FE55}', '\u{FE56}', '\u{FE5F}', '\u{FE6B}', '\u{FF03}', '\u{FF0F}',
    '\u{FF1A}', '\u{FF1F}', '\u{FF20}',
];

/// Schemes for which Python's `urlparse` splits `;params` off the path.
const SCHEMES_WITH_PARAMS: [&str; 16] = [
    "", "ftp", "hdl", "prospero", "http", "imap", "https", "shttp", "rtsp", "rtsps", "rtspu",
    "sip", "sips", "mms", "sftp", "tel",
];

/// Splits `text` at the first `sep`: `(before, Some(after))`, or
/// `(text, None)` when `sep` does not occur (Python's `partition`).
fn partition(text: &str, sep: char) -> (&str, Option<&str>) {
    match text.split_once(sep) {
        Some((before, after)) => (before, Some(after)),
        None => (text, None),
    }
}

/// Splits `text` at the last `sep` (Python's `rpartition`).
fn rpartition(text: &str, sep: char) -> (Option<&str>, &str) {
    match text.rsplit_once(sep) {
        Some((before, after)) => (Some(before), after),
        None => (None, text),
    }
}

/// Parses the default URL the way `urllib.parse.urlparse` does and builds the
/// variables as Nova does; `None` where Python would raise.
pub(super) fn parse_default(default_url: &str) -> Option<Vars> {
    // Python drops leading C0 controls and spaces, and every tab, CR and LF.
    let cleaned: String = default_url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();

    let (scheme, rest) = split_scheme(&cleaned);

    let (netloc, rest) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (after.get(..end)?, after.get(end..)?)
        }
        None => ("", rest),
    };
    check_netloc(netloc)?;

    let (rest, fragment) = partition(rest, '#');
    let (path, query) = partition(rest, '?');
    let path = if SCHEMES_WITH_PARAMS.contains(&scheme.as_str()) {
        strip_params(path)
    } else {
        path
    };

    let (username, password) = match rpartition(netloc, '@') {
        (Some(userinfo), _) => {
            let (user, pass) = partition(userinfo, ':');
            (Some(user), pass)
        }
        (None, _) => (None, None),
    };

    let (_, hostinfo) = rpartition(netloc, '@');
    let (hostname, port) = match hostinfo.split_once('[') {
        Some((_, bracketed)) => {
            let (host, after) = partition(bracketed, ']');
            let port = after.and_then(|a| partition(a, ':').1).unwrap_or("");
            (host, port)
        }
        None => {
            let (host, port) = partition(hostinfo, ':');
            (host, port.unwrap_or(""))
        }
    };
    let hostname = if hostname.is_empty() {
        Value::Missing
    } else {
        let (name, zone) = partition(hostname, '%');
        let mut lowered = name.to_lowercase();
        if let Some(zone) = zone {
            lowered.push('%');
            lowered.push_str(zone);
        }
        Value::Text(lowered)
    };
    let port = if port.is_empty() {
        Value::Missing
    } else {
        Value::Number(parse_port(port)?)
    };

    let hosts = if netloc.contains(',') {
        netloc
            .split(',')
            .map(parse_host_entry)
            .collect::<Option<Vec<_>>>()?
    } else {
        Vec::new()
    };

    Some(Vars {
        scheme: Value::Text(scheme),
        username: Value::from_opt(username),
        password: Value::from_opt(password),
        hostname,
        port,
        path: Value::Text(path.trim_start_matches('/').to_owned()),
        query: Value::Text(query.unwrap_or("").to_owned()),
        fragment: Value::Text(fragment.unwrap_or("").to_owned()),
        hosts,
    })
}

/// Splits off a scheme as `urlsplit` does ([`url_scheme::split_scheme`]).
/// Returns the lowercased scheme (empty when there is none) and the rest.
fn split_scheme(url: &str) -> (String, &str) {
    match url_scheme::split_scheme(url) {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (String::new(), url),
    }
}

/// Drops `;params` from a path as `urlparse` does for the schemes that use
/// them: after the last `/` when there is one, else after the first `;`.
fn strip_params(path: &str) -> &str {
    let search_from = path.rfind('/').unwrap_or(0);
    match path.get(search_from..).and_then(|tail| tail.find(';')) {
        Some(offset) => path.get(..search_from + offset).unwrap_or(path),
        None => path,
    }
}

/// The checks `urlsplit` applies to a netloc; `None` where Python raises.
fn check_netloc(netloc: &str) -> Option<()> {
    let has_open = netloc.contains('[');
    let has_close = netloc.contains(']');
    if has_open != has_close {
        return None;
    }
    if has_open {
        let (_, after_open) = netloc.split_once('[')?;
        let (bracketed, _) = partition(after_open, ']');
        check_bracketed_host(bracketed)?;
    }
    if !netloc.is_ascii() && netloc.contains(NFKC_DELIMITER_LOOKALIKES) {
        return None;
    }
    Some(())
}

/// Accepts what Python accepts between brackets: an `IPvFuture` literal
/// (`v1.anything`) or an IPv6 address with an optional `%zone`.
fn check_bracketed_host(host: &str) -> Option<()> {
    if let Some(future) = host.strip_prefix('v') {
        let (version, rest) = future.split_once('.')?;
        let version_ok = !version.is_empty() && version.bytes().all(|b| b.is_ascii_hexdigit());
        return (version_ok && !rest.is_empty()).then_some(());
    }
    let (address, zone) = partition(host, '%');
    if zone.is_some_and(|z| z.is_empty() || z.contains('%')) {
        return None;
    }
    address.parse::<std::net::Ipv6Addr>().ok().map(|_| ())
}

/// Reads a port as Python's `urlparse` does: ASCII digits only, 0 to 65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = text.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    if significant.len() > 5 {
        return None;
    }
    significant.parse().ok()
}

/// Reads one comma-separated netloc entry the way Nova does (see the module
/// documentation); `None` for a `[` without `]`.
fn parse_host_entry(entry: &str) -> Option<HostEntry> {
    let (userpass, hostport) = match entry.split_once('@') {
        Some((userpass, hostport)) => (userpass, hostport),
        None => ("", entry),
    };
    let (hostname, port) = match hostport.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, Some(after))
        }
        None => partition(hostport, ':'),
    };
    let (username, password) = partition(userpass, ':');
    Some(HostEntry {
        username: Value::Text(username.to_owned()),
        password: Value::from_opt(password),
        hostname: Value::Text(hostname.to_owned()),
        port: Value::from_opt(port),
    })
}

//! Expansion of the templates Nova allows in a cell mapping's `transport_url`
//! and `database_connection` (SPEC §5).
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

/// Expands `template` against `default_url`; returns the template unchanged when there is no default or expansion fails.
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
enum Value {
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
struct HostEntry {
    username: Value,
    password: Value,
    hostname: Value,
    port: Value,
}

/// All variables a template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vars {
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
fn parse_default(default_url: &str) -> Option<Vars> {
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

/// Splits off a scheme as `urlsplit` does: letters, digits, `+`, `-` and `.`
/// before the first `:`, starting with an ASCII letter. Returns the lowercased
/// scheme (empty when there is none) and the rest.
fn split_scheme(url: &str) -> (String, &str) {
    if let Some((candidate, rest)) = url.split_once(':') {
        let starts_with_letter = candidate
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
        let all_scheme_chars = candidate
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if starts_with_letter && all_scheme_chars {
            return (candidate.to_ascii_lowercase(), rest);
        }
    }
    (String::new(), url)
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

/// Formats `template` like Python's `str.format(**vars)`, limited to what
/// the module documentation allows; `None` on any failure.
fn format_template(template: &str, vars: &Vars) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(rest.get(..pos)?);
        let tail = rest.get(pos..)?;
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let close = after.find(['{', '}'])?;
            if !after.get(close..)?.starts_with('}') {
                // A nested field in a format spec: not supported.
                return None;
            }
            let field = after.get(..close)?;
            resolve_field(field, vars)?.write_to(&mut out);
            rest = after.get(close + 1..)?;
        } else {
            // A single `}`.
            return None;
        }
    }
    out.push_str(rest);
    Some(out)
}

/// Resolves the text between `{` and `}`: a variable name, optionally
/// followed by `!s` and/or an empty format spec.
fn resolve_field<'v>(field: &str, vars: &'v Vars) -> Option<&'v Value> {
    let name_end = field.find(['!', ':']).unwrap_or(field.len());
    let name = field.get(..name_end)?;
    let mut rest = field.get(name_end..)?;
    if let Some(conversion) = rest.strip_prefix('!') {
        rest = conversion.strip_prefix('s')?;
    }
    if let Some(spec) = rest.strip_prefix(':') {
        rest = spec;
    }
    if !rest.is_empty() {
        return None;
    }
    vars.get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB_DEFAULT: &str =
        "mysql+pymysql://root:secret@DB.Example:3306/nova_api?charset=utf8#frag";

    fn expand(template: &str) -> String {
        expand_url_template(template, Some(DB_DEFAULT))
    }

    #[test]
    fn each_variable() {
        assert_eq!(expand("{scheme}"), "mysql+pymysql");
        assert_eq!(expand("{username}"), "root");
        assert_eq!(expand("{password}"), "secret");
        assert_eq!(expand("{hostname}"), "db.example");
        assert_eq!(expand("{port}"), "3306");
        assert_eq!(expand("{path}"), "nova_api");
        assert_eq!(expand("{query}"), "charset=utf8");
        assert_eq!(expand("{fragment}"), "frag");
    }

    #[test]
    fn realistic_database_template() {
        let got = expand_url_template(
            "mysql+pymysql://{username}:{password}@{hostname}/nova_cell1",
            Some("mysql+pymysql://root:secret@db.example:3306/nova_api?charset=utf8"),
        );
        assert_eq!(got, "mysql+pymysql://root:secret@db.example/nova_cell1");
        let got = expand_url_template(
            "{scheme}://{username}:{password}@{hostname}:{port}/nova_cell1?{query}",
            Some("mysql+pymysql://root:secret@db.example:3306/nova_api?charset=utf8"),
        );
        assert_eq!(
            got,
            "mysql+pymysql://root:secret@db.example:3306/nova_cell1?charset=utf8"
        );
    }

    #[test]
    fn conversion_and_empty_spec() {
        assert_eq!(expand("{port!s}"), "3306");
        assert_eq!(expand("{port:}"), "3306");
        assert_eq!(expand("{username!s:}"), "root");
    }

    #[test]
    fn multi_host_numbered_variables() {
        let default = "rabbit://u1:p1@h1:5672,u2:p2@H2:5673/vhost";
        let e = |t: &str| expand_url_template(t, Some(default));
        assert_eq!(e("{username1}"), "u1");
        assert_eq!(e("{password1}"), "p1");
        assert_eq!(e("{hostname1}"), "h1");
        assert_eq!(e("{port1}"), "5672");
        assert_eq!(e("{username2}"), "u2");
        assert_eq!(e("{password2}"), "p2");
        // Numbered host names are not lowercased.
        assert_eq!(e("{hostname2}"), "H2");
        assert_eq!(e("{port2}"), "5673");
        assert_eq!(e("{path}"), "vhost");
        assert_eq!(
            e("rabbit://{username1}:{password1}@{hostname1}:{port1},{username2}:{password2}@{hostname2}:{port2}/cell1"),
            "rabbit://u1:p1@h1:5672,u2:p2@H2:5673/cell1"
        );
        // No third host, no index zero, no leading zeros.
        assert_eq!(e("{hostname3}"), "{hostname3}");
        assert_eq!(e("{hostname0}"), "{hostname0}");
        assert_eq!(e("{hostname01}"), "{hostname01}");
        assert_eq!(
            e("{hostname99999999999999999999999}"),
            "{hostname99999999999999999999999}"
        );
    }

    #[test]
    fn multi_host_plain_variables_follow_urlparse() {
        let default = "rabbit://u1:p1@h1:5672,u2:p2@H2:5673/vhost";
        let e = |t: &str| expand_url_template(t, Some(default));
        assert_eq!(e("{username}"), "u1");
        assert_eq!(e("{password}"), "p1@h1:5672,u2:p2");
        assert_eq!(e("{hostname}"), "h2");
        assert_eq!(e("{port}"), "5673");
    }

    #[test]
    fn multi_host_entries_without_credentials_or_port() {
        let default = "rabbit://h1,[::1]:5673,[fe80::1],guest@h2:5672/";
        let e = |t: &str| expand_url_template(t, Some(default));
        assert_eq!(
            e("{username1}|{password1}|{hostname1}|{port1}"),
            "|None|h1|None"
        );
        assert_eq!(e("{hostname2}|{port2}"), "::1|:5673");
        assert_eq!(e("{hostname3}|{port3}"), "fe80::1|");
        assert_eq!(
            e("{username4}|{password4}|{hostname4}|{port4}"),
            "guest|None|h2|5672"
        );
    }

    #[test]
    fn multi_host_entry_with_unclosed_bracket_fails() {
        // Passes urlparse's checks but Nova's per-entry parser raises.
        let default = "rabbit://[::1],[h/";
        assert_eq!(
            expand_url_template("{hostname}", Some(default)),
            "{hostname}"
        );
    }

    #[test]
    fn missing_port_and_password_print_none() {
        let default = "mysql+pymysql://root@db/nova_api";
        let e = |t: &str| expand_url_template(t, Some(default));
        assert_eq!(e("{username}"), "root");
        assert_eq!(e("{password}"), "None");
        assert_eq!(e("{port}"), "None");
        assert_eq!(e("{hostname}"), "db");
        assert_eq!(e("{query}|{fragment}"), "|");
        assert_eq!(e("{username1}"), "{username1}");

        let e = |t: &str| expand_url_template(t, Some("sqlite:////var/lib/nova/api.db"));
        assert_eq!(
            e("{username}|{password}|{hostname}|{port}"),
            "None|None|None|None"
        );
        assert_eq!(e("{path}"), "var/lib/nova/api.db");
        assert_eq!(e("{scheme}"), "sqlite");
    }

    #[test]
    fn empty_password_is_empty_not_none() {
        let e = |t: &str| expand_url_template(t, Some("mysql://root:@db/x"));
        assert_eq!(e("[{password}]"), "[]");
    }

    #[test]
    fn ipv6_default() {
        let default = "rabbit://guest:guest@[FE80::1%Eth0]:5672/";
        let e = |t: &str| expand_url_template(t, Some(default));
        assert_eq!(e("{hostname}"), "fe80::1%Eth0");
        assert_eq!(e("{port}"), "5672");
        let e = |t: &str| expand_url_template(t, Some("mysql://u:p@[::1]/db"));
        assert_eq!(e("{hostname}|{port}"), "::1|None");
    }

    #[test]
    fn bad_defaults_fail() {
        for default in [
            "mysql://u:p@[::1/db",
            "mysql://u:p@::1]/db",
            "mysql://u:p@[not-ipv6]/db",
            "mysql://u:p@[1.2.3.4]/db",
            "mysql://u:p@[::1%]/db",
            "mysql://u:p@host:abc/db",
            "mysql://u:p@host:65536/db",
            "mysql://u:p@host:-1/db",
            "mysql://u:p@host:\u{0665}/db",
            "mysql://u:p@ho\u{FF0F}st/db",
        ] {
            assert_eq!(
                expand_url_template("{username}", Some(default)),
                "{username}",
                "{default}"
            );
        }
    }

    #[test]
    fn unusual_but_valid_defaults() {
        let e = |d: &str, t: &str| expand_url_template(t, Some(d));
        assert_eq!(e("mysql://u:p@[v1.x]/db", "{hostname}"), "v1.x");
        assert_eq!(e("mysql://u:p@h:00080/db", "{port}"), "80");
        assert_eq!(e("mysql://u:p@h:/db", "{port}"), "None");
        assert_eq!(e("mysql://u:p@h:0/db", "{port}"), "0");
        assert_eq!(e("mysql://us\u{e9}r:p@h/db", "{username}"), "us\u{e9}r");
        // Leading spaces are dropped; tabs and newlines removed.
        assert_eq!(e("  my\tsql://u:p@h/d\nb", "{scheme}/{path}"), "mysql/db");
        // The scheme is lowercased; `;params` leave the path for http only.
        assert_eq!(e("HTTP://h/a;b", "{scheme}:{path}"), "http:a");
        assert_eq!(e("rabbit://h/a;b", "{path}"), "a;b");
        // No scheme, no netloc.
        assert_eq!(
            e("just/a/path?q#f", "{scheme}|{path}|{query}|{fragment}"),
            "|just/a/path|q|f"
        );
        // Percent-escapes stay as written.
        assert_eq!(
            e("mysql://u%40x:p%2Fw@h/db", "{username}:{password}"),
            "u%40x:p%2Fw"
        );
    }

    #[test]
    fn literal_braces() {
        assert_eq!(expand("{{literal}}"), "{literal}");
        assert_eq!(expand("{{{username}}}"), "{root}");
        assert_eq!(expand("a}}b{{c"), "a}b{c");
    }

    #[test]
    fn broken_templates_are_returned_unchanged() {
        for template in [
            "{",
            "}",
            "{unknown}",
            "{0}",
            "{}",
            "x{username",
            "x}username",
            "}}}",
            "{username}}",
            "{port:>5}",
            "{port!r}",
            "{port!}",
            "{port!ss}",
            "{port.real}",
            "{path[0]}",
            "{username:{port}}",
            "{ username}",
            "{Username}",
        ] {
            assert_eq!(expand(template), template);
        }
    }

    #[test]
    fn no_default_returns_template_unchanged() {
        assert_eq!(expand_url_template("{username}", None), "{username}");
        assert_eq!(expand_url_template("", None), "");
    }

    #[test]
    fn template_without_braces_is_returned_as_is() {
        let plain = "mysql+pymysql://a:b@c/d";
        assert_eq!(expand_url_template(plain, Some(DB_DEFAULT)), plain);
        assert_eq!(expand_url_template(plain, Some("mysql://h:bad/")), plain);
    }

    #[test]
    fn non_ascii_template() {
        assert_eq!(
            expand("h\u{e9}{{\u{1F600}}}{username}\u{e9}"),
            "h\u{e9}{\u{1F600}}root\u{e9}"
        );
    }

    #[test]
    fn odd_strings_never_panic() {
        let punct: Vec<char> = (0x21u8..0x7f)
            .map(char::from)
            .filter(|c| c.is_ascii_punctuation())
            .collect();
        let mut samples = vec![String::new()];
        for &a in &punct {
            samples.push(a.to_string());
            for &b in &punct {
                samples.push([a, b].iter().collect());
                for &c in &punct {
                    samples.push([a, b, c].iter().collect());
                }
            }
        }
        let defaults = [
            Some(DB_DEFAULT),
            Some("rabbit://u1:p1@h1:5672,u2:p2@[::1]:5672/"),
            Some(""),
            None,
        ];
        for sample in &samples {
            for default in defaults {
                let _ = expand_url_template(sample, default);
            }
            let _ = expand_url_template("{username}{hostname1}{port}", Some(sample));
            let wrapped = format!("x://{sample}@{sample}:{sample}/{sample}");
            let _ = expand_url_template("{password}{port2}", Some(&wrapped));
        }
    }
}

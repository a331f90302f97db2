//! Hiding secrets in URL text that is about to be shown: the one masking
//! rule used by every `Debug` of a type that holds a URL, and by
//! `mapping-diesel` for input it could not parse.

use std::fmt;

/// True for query keys whose values may be secrets (`password`, `api_key`,
/// `secret`, `token`, …), after form-decoding the key.
fn is_sensitive_key(key: &str) -> bool {
    let key = form_decode_lossy(key).to_ascii_lowercase();
    ["pass", "key", "secret", "token"]
        .iter()
        .any(|word| key.contains(word))
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space); a `%`
/// without two hexadecimal digits is kept as written, and bytes that are not
/// UTF-8 become U+FFFD.
fn form_decode_lossy(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Masks the values of sensitive keys in a raw query string
/// (`a=1&password=x` → `a=1&password=***`).
///
/// ```
/// assert_eq!(mapping_model::mask_query("a=1&Pass%77ord=x"), "a=1&Pass%77ord=***");
/// ```
pub fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|piece| match piece.split_once('=') {
            Some((key, _)) if is_sensitive_key(key) => format!("{key}=***"),
            _ => piece.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A copy of `url` safe to show: everything from the first `:` after the
/// scheme to the last `@` is replaced by `user:***` (so every password of a
/// multi-host URL such as `rabbit://a:x@h1,b:y@h2/` is hidden), and the values
/// of sensitive query keys by `***`. Works on any text, parsed or not;
/// text without a secret comes back unchanged.
///
/// ```
/// use mapping_model::redact_url;
/// assert_eq!(redact_url("mysql+pymysql://nova:s3cret@db/nova"), "mysql+pymysql://nova:***@db/nova");
/// assert_eq!(redact_url("rabbit://a:x@h1:5672,b:y@h2:5672/"), "rabbit://a:***@h2:5672/");
/// assert_eq!(redact_url("sqlite:///nova.db?password=x"), "sqlite:///nova.db?password=***");
/// assert_eq!(redact_url("none:///"), "none:///");
/// ```
pub fn redact_url(url: &str) -> String {
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
        // `user:password@host` without `//` reads as scheme `user`: all
        // before the `@` may be the password.
        (_, Some(at)) if prefix.ends_with(':') => ("***".to_owned(), body.get(at..).unwrap_or("")),
        _ => (String::new(), body),
    };
    let after = match after.split_once('?') {
        Some((before, query)) => format!("{before}?{}", mask_query(query)),
        None => after.to_owned(),
    };
    format!("{prefix}{masked}{after}")
}

/// The scheme splitter of [`crate::url_scheme`], except that a single letter
/// followed by `/` or `\` is a Windows drive, not a scheme.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = crate::url_scheme::split_scheme(url)?;
    let drive = scheme.len() == 1 && rest.starts_with(['/', '\\']);
    (!drive).then_some((scheme, rest))
}

/// Shows a URL through [`redact_url`] in `Debug` output.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(self.0), f)
    }
}

/// Shows an optional URL through [`redact_url`] in `Debug` output.
pub(crate) struct RedactedOpt<'a>(pub(crate) Option<&'a str>);

impl fmt::Debug for RedactedOpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(url) => f.debug_tuple("Some").field(&Redacted(url)).finish(),
            None => f.write_str("None"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_password_position_is_hidden() {
        for (url, secret) in [
            ("mysql://nova:pw1@db/x", "pw1"),
            ("postgresql+psycopg2://nova:p%40ss@db:5432/x", "p%40ss"),
            ("mysql://nova:p@ss@db/x", "p@ss"),
            ("rabbit://a:one@h1,b:two@h2/", "one"),
            ("rabbit://a:one@h1,b:two@h2/", "two"),
            ("mysql://db/x?password=hid", "hid"),
            ("mysql://db/x?ssl_key=hid&a=b", "hid"),
            ("sqlite:///x.db?Secret=hid", "hid"),
            ("nova:pw@db", "pw"),
            ("mysql://nova:pw/with/slash@db/x", "pw/with/slash"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} -> {shown}");
        }
    }

    #[test]
    fn text_without_secrets_is_unchanged() {
        for url in [
            "none:///",
            "sqlite:////var/lib/nova/nova.sqlite",
            "mysql://nova@db/x?charset=utf8",
            "C:/nova/x.db",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
        // A template's password placeholder is masked like a password.
        assert_eq!(
            redact_url("rabbit://{username}:{password}@{hostname}/x"),
            "rabbit://{username}:***@{hostname}/x"
        );
    }

    #[test]
    fn odd_text_never_panics() {
        for url in [
            "%",
            "%zz",
            "://",
            ":@",
            "@:",
            "a:?b=%",
            "\u{fffd}:\u{1F600}@x?key=%E2%82",
        ] {
            let _ = redact_url(url);
        }
    }
}

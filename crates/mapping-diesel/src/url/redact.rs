//! Rendering and redaction: the URL diesel gets, the form safe for logs, and
//! a conservatively masked copy of input that could not be parsed.

#[cfg(any(test, feature = "fuzzing"))]
use super::text::split_scheme;
use super::{BackendKind, ServerParts, UrlError};

/// A `Malformed` error carrying a conservatively redacted copy of `url`.
pub(super) fn malformed(url: &str, reason: &str) -> UrlError {
    UrlError::Malformed {
        url: redact_unparsed(url),
        reason: reason.to_owned(),
    }
}

/// True for query keys whose values may be secrets (the rule of
/// [`mapping_model::mask_query`]).
#[cfg(any(test, feature = "fuzzing"))]
fn is_sensitive_key(key: &str) -> bool {
    mask_query(&format!("{key}=x")).ends_with("=***")
}

pub(super) use mapping_model::mask_query;

/// Writes a PG/MySQL URL, masking secrets when `redact` is set.
pub(super) fn render_server(backend: BackendKind, parts: &ServerParts, redact: bool) -> String {
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
/// after that ([`mapping_model::redact_url`]).
fn redact_unparsed(url: &str) -> String {
    mapping_model::redact_url(url)
}

/// The values of the sensitive keys of a raw query string (those
/// [`mask_query`] hides), non-empty ones only. (For the fuzz oracle and
/// the tests.)
#[cfg(any(test, feature = "fuzzing"))]
fn sensitive_values(query: &str) -> impl Iterator<Item = &str> {
    query
        .split('&')
        .filter_map(|piece| match piece.split_once('=') {
            Some((key, value)) if is_sensitive_key(key) && !value.is_empty() => Some(value),
            _ => None,
        })
}

/// The fuzz oracle's and the tests' view of a URL's secrets.
#[cfg(any(test, feature = "fuzzing"))]
impl super::ConnectionUrl {
    /// The normalised URL as [`redacted`](Self::redacted) writes it, but with
    /// the secrets in place: the form that parses back to this same value.
    /// Holds the password: never log it.
    pub(crate) fn unredacted(&self) -> String {
        if self.server.is_some() || self.is_file_uri() {
            // PG/MySQL: the same rendering without masks; `file:` URIs: as given.
            self.diesel.clone()
        } else {
            // Other SQLite forms hold no secret: the redacted form is exact.
            self.redacted.clone()
        }
    }

    /// True for an SQLite `file:` URI, handed to SQLite as written.
    fn is_file_uri(&self) -> bool {
        split_scheme(&self.diesel).is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("file"))
    }

    /// Every secret [`redacted`](Self::redacted) masks: a non-empty password
    /// and the non-empty values of sensitive query keys.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match &self.server {
            Some(parts) => parts
                .password
                .as_deref()
                .filter(|p| !p.is_empty())
                .into_iter()
                .chain(parts.query.iter().flat_map(|piece| sensitive_values(piece)))
                .collect(),
            None => match self.diesel.split_once('?') {
                Some((_, query)) if self.is_file_uri() => sensitive_values(query).collect(),
                _ => Vec::new(),
            },
        }
    }
}

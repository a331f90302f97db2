//! The one URL scheme splitter shared by connection-URL parsing
//! (`mapping-diesel`) and URL-template expansion ([`crate::url_template`]).

/// Splits `scheme:rest` at the first `:` when the text before it is a URL
/// scheme as Python's `urllib.parse.urlsplit` and RFC 3986 read one: an ASCII
/// letter, then ASCII letters, digits, `+`, `-` or `.`. The scheme is returned
/// as written (not lowercased); `None` when there is no such scheme.
///
/// ```
/// use mapping_model::url_scheme::split_scheme;
/// assert_eq!(split_scheme("mysql+pymysql://h/db"), Some(("mysql+pymysql", "//h/db")));
/// assert_eq!(split_scheme("/var/lib/nova.db"), None);
/// assert_eq!(split_scheme("1x:y"), None);
/// ```
pub fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some((scheme, rest))
}

//! Small text helpers shared by the URL parsers: the scheme splitter, query
//! splitting and percent-decoding.

use percent_encoding::percent_decode_str;

/// Splits `scheme:rest` when the text before the first `:` is a URL scheme
/// ([`mapping_model::url_scheme::split_scheme`]). A single letter followed by
/// `/` or `\` is a Windows drive, not a scheme.
pub(super) fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = mapping_model::url_scheme::split_scheme(url)?;
    let drive = scheme.len() == 1 && rest.starts_with(['/', '\\']);
    (!drive).then_some((scheme, rest))
}

/// True for `base+driver` with a non-empty driver.
pub(super) fn has_driver(scheme: &str, base: &str) -> bool {
    scheme
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('+'))
        .is_some_and(|driver| !driver.is_empty())
}

/// Splits at the first `?`.
pub(super) fn split_query(text: &str) -> (&str, Option<&str>) {
    match text.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (text, None),
    }
}

/// Escapes raw `@` as `%40`.
pub(super) fn escape_at(text: &str) -> String {
    text.replace('@', "%40")
}

/// The key of a `key=value` query piece.
pub(super) fn query_key(piece: &str) -> &str {
    piece.split('=').next().unwrap_or(piece)
}

/// Decodes `%XX` escapes; `None` for a `%` not followed by two hexadecimal
/// digits, or for a result that is not UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let escapes_ok = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_ok {
        return None;
    }
    percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// Decodes `%XX` escapes leniently: a `%` without two hexadecimal digits is
/// kept as written, and bytes that are not UTF-8 become U+FFFD.
pub(crate) fn percent_decode_lossy(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// Decodes as `application/x-www-form-urlencoded` does (`+` is a space);
/// text with a bad escape is returned as written.
pub(super) fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode(&spaced).unwrap_or(spaced)
}

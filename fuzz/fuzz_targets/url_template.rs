//! Cell URL template expansion against any default transport or database
//! URL. The input is `default URL`, a newline, then the template.
//!
//! Invariants: no panic; the output equals the template whenever the
//! template names a key that no default can define, has a malformed field,
//! or there is no default.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping_diesel::__fuzz::expand_url_template;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (default, template) = text.split_once('\n').unwrap_or((text, text));

    let expanded = expand_url_template(template, Some(default));
    assert_eq!(expand_url_template(template, None), template);
    if !fields_all_known(template) {
        assert_eq!(
            expanded, template,
            "a template with an unknown key or a bad field was expanded"
        );
    }
    // The template read as a default, and the default as a template.
    let _ = expand_url_template(default, Some(template));
});

/// The names every default defines.
const PLAIN: [&str; 8] = [
    "scheme", "username", "password", "hostname", "port", "path", "query", "fragment",
];

/// The prefixes of the numbered per-host names (`hostname1`, …).
const NUMBERED: [&str; 4] = ["username", "password", "hostname", "port"];

/// False when some field of `template` names a key no default defines, or
/// the template's braces are malformed: an independent reading of the
/// `str.format` subset the module documents (`{{`, `}}`, `{name}`,
/// `{name!s}`, `{name:}`, `{name!s:}`).
fn fields_all_known(template: &str) -> bool {
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        let tail = &rest[pos..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return false;
        }
        let after = &tail[1..];
        let Some(close) = after.find(['{', '}']) else {
            return false;
        };
        if !after[close..].starts_with('}') {
            return false;
        }
        let field = &after[..close];
        let name = ["!s:", "!s", ":"]
            .iter()
            .find_map(|suffix| field.strip_suffix(suffix))
            .unwrap_or(field);
        if !is_known(name) {
            return false;
        }
        rest = &after[close + 1..];
    }
    true
}

/// True for a plain name, or a numbered one (`hostname1`: no sign, no
/// leading zero) that a default with enough hosts defines.
fn is_known(name: &str) -> bool {
    PLAIN.contains(&name)
        || NUMBERED.iter().any(|prefix| {
            name.strip_prefix(prefix).is_some_and(|digits| {
                !digits.is_empty()
                    && !digits.starts_with('0')
                    && digits.bytes().all(|b| b.is_ascii_digit())
            })
        })
}

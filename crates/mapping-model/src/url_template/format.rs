//! Formatting a template like Python's `str.format(**variables)`, limited
//! to what the module documentation allows.

use super::{Value, Vars};

/// Formats `template` like Python's `str.format(**vars)`, limited to what
/// the module documentation allows; `None` on any failure.
pub(super) fn format_template(template: &str, vars: &Vars) -> Option<String> {
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

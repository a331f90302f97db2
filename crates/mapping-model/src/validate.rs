//! Input validation shared by every backend, run before any SQL.
//!
//! The rules are the intersection of what the three engines can store
//! faithfully, so that data written on one backend can always move to another:
//! no NUL bytes (PostgreSQL rejects them), nothing outside the Basic
//! Multilingual Plane (MySQL's 3-byte `utf8` cannot hold it), and lengths
//! counted in characters as `VARCHAR(n)` does.

use crate::error::{Error, Result};

/// Longest value of a `VARCHAR(255)` column, in characters.
pub const MAX_VARCHAR: usize = 255;
/// Longest value of a MySQL `TEXT` column, in bytes.
pub const MAX_TEXT_BYTES: usize = 65_535;

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        field,
        reason: reason.into(),
    }
}

fn check_chars(field: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(invalid(field, "contains a NUL character"));
    }
    if let Some(c) = value.chars().find(|c| u32::from(*c) > 0xFFFF) {
        return Err(invalid(
            field,
            format!(
                "contains U+{:X}, outside the Basic Multilingual Plane (not storable in MySQL utf8)",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// How many characters of a refused value an error message repeats.
pub const MAX_ECHO_CHARS: usize = 100;

/// `value` as an error message repeats it: debug-quoted, cut after
/// [`MAX_ECHO_CHARS`] characters (with the full length noted), so a huge
/// value never makes a huge message.
pub fn echo(value: &str) -> String {
    let n = value.chars().count();
    if n <= MAX_ECHO_CHARS {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_ECHO_CHARS).collect();
        format!("{head:?}... ({n} characters)")
    }
}

/// Parses a UUID given by the caller in any form [`uuid::Uuid::parse_str`]
/// accepts (hyphenated in any case, 32 hex digits, braced, `urn:uuid:`).
pub fn parse_uuid(field: &'static str, value: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(value)
        .map_err(|e| invalid(field, format!("{} is not a UUID: {e}", echo(value))))
}

/// Checks a UUID given by the caller and returns its canonical form
/// (lower-case, hyphenated, 36 characters), the form Nova writes.
pub fn uuid(field: &'static str, value: &str) -> Result<String> {
    parse_uuid(field, value).map(|u| u.hyphenated().to_string())
}

/// True when `s` is already a UUID in the canonical stored form
/// (lower-case, hyphenated): such a key needs no parsing.
pub fn is_canonical_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// Checks a required `VARCHAR(255)` value: non-empty, at most 255 characters.
pub fn required_varchar(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    optional_varchar(field, value)
}

/// Checks an optional `VARCHAR(255)` value: at most 255 characters.
pub fn optional_varchar(field: &'static str, value: &str) -> Result<()> {
    check_chars(field, value)?;
    let n = value.chars().count();
    if n > MAX_VARCHAR {
        return Err(invalid(
            field,
            format!("is {n} characters long, at most {MAX_VARCHAR} fit"),
        ));
    }
    Ok(())
}

/// Checks a `TEXT` value: at most 65,535 bytes (MySQL's limit).
pub fn text(field: &'static str, value: &str) -> Result<()> {
    check_chars(field, value)?;
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid(
            field,
            format!(
                "is {} bytes long, at most {MAX_TEXT_BYTES} fit",
                value.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_canonicalised() {
        let u = uuid("instance_uuid", "A0B1C2D3-E4F5-4789-ABCD-0123456789AB").unwrap();
        assert_eq!(u, "a0b1c2d3-e4f5-4789-abcd-0123456789ab");
    }

    #[test]
    fn bad_uuids_name_the_field() {
        for bad in [
            "",
            "not-a-uuid",
            "a0b1c2d3 e4f5 4789 abcd 0123456789ab",
            "a0b1c2d3-e4f5-4789-abcd-0123456789aé",
        ] {
            match uuid("cell_uuid", bad) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "cell_uuid"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn huge_values_are_echoed_short() {
        let huge = "x".repeat(1_000_000);
        let msg = uuid("instance_uuid", &huge).unwrap_err().to_string();
        assert!(msg.len() < 300, "{} bytes", msg.len());
        assert!(msg.contains("1000000 characters"), "{msg}");
        assert!(is_canonical_uuid("0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10"));
        assert!(!is_canonical_uuid("0B9F4A36-59B8-4B8E-BF0B-4E1C9F6D2A10"));
        assert!(!is_canonical_uuid("0b9f4a3659b84b8ebf0b4e1c9f6d2a10"));
    }

    #[test]
    fn varchar_rules() {
        assert!(required_varchar("host", "").is_err());
        assert!(required_varchar("host", &"h".repeat(255)).is_ok());
        assert!(required_varchar("host", &"h".repeat(256)).is_err());
        // 255 two-byte characters still fit: the limit is in characters.
        assert!(required_varchar("host", &"é".repeat(255)).is_ok());
        assert!(required_varchar("host", "a\0b").is_err());
        assert!(required_varchar("host", "emoji \u{1F600}").is_err());
        assert!(optional_varchar("name", "").is_ok());
    }

    #[test]
    fn text_rules() {
        assert!(text("transport_url", &"x".repeat(MAX_TEXT_BYTES)).is_ok());
        assert!(text("transport_url", &"x".repeat(MAX_TEXT_BYTES + 1)).is_err());
        assert!(text("transport_url", "rabbit://\0").is_err());
    }
}

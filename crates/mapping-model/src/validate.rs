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

/// Checks a UUID given by the caller and returns its canonical form
/// (lower-case, hyphenated, 36 characters), the form Nova writes.
pub fn uuid(field: &'static str, value: &str) -> Result<String> {
    if value.len() != 36 {
        return Err(invalid(
            field,
            format!(
                "{value:?} is not a UUID in hyphenated form (expected 36 characters, got {})",
                value.chars().count()
            ),
        ));
    }
    match uuid::Uuid::try_parse(value) {
        Ok(u) => Ok(u.hyphenated().to_string()),
        Err(e) => Err(invalid(field, format!("{value:?} is not a UUID: {e}"))),
    }
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
            "a0b1c2d3e4f54789abcd0123456789ab",
            "{a0b1c2d3-e4f5-4789-abcd-0123456789ab}",
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

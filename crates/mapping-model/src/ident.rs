//! Typed identities: the [`ToUuid`] conversion every uuid argument of the
//! API accepts, and [`InstanceUuid`], the instance uuid of a stored row.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

use uuid::Uuid;

use crate::error::Result;
use crate::validate;

mod sealed {
    pub trait Sealed {}
    impl Sealed for uuid::Uuid {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for super::InstanceUuid {}
    impl<T: Sealed + ?Sized> Sealed for &T {}
}

/// A value naming a UUID: a [`Uuid`], or text in any form
/// [`Uuid::parse_str`] accepts (hyphenated in any case, 32 hex digits,
/// braced, `urn:uuid:`). Every uuid argument of the API takes one, so
/// `get_by_uuid(cell.uuid)`, `get_by_uuid(&u)` and
/// `get_by_uuid("6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e")` all work.
///
/// Sealed: implemented for `Uuid`, `str`, `String` and [`InstanceUuid`], and
/// references to them.
pub trait ToUuid: sealed::Sealed {
    /// The UUID, or [`Error::InvalidInput`](crate::Error::InvalidInput)
    /// naming `field` when the text is not a UUID.
    fn to_uuid(&self, field: &'static str) -> Result<Uuid>;

    /// The text itself when it is already in the canonical stored form
    /// (a fast path that skips parsing).
    #[doc(hidden)]
    fn canonical_str(&self) -> Option<&str> {
        None
    }

    /// The canonical stored form (lower-case, hyphenated).
    #[doc(hidden)]
    fn to_canonical(&self, field: &'static str) -> Result<String> {
        match self.canonical_str() {
            Some(s) => Ok(s.to_owned()),
            None => self.to_uuid(field).map(|u| canonical(&u)),
        }
    }
}

impl ToUuid for Uuid {
    fn to_uuid(&self, _field: &'static str) -> Result<Uuid> {
        Ok(*self)
    }
}

impl ToUuid for str {
    fn to_uuid(&self, field: &'static str) -> Result<Uuid> {
        validate::parse_uuid(field, self)
    }

    fn canonical_str(&self) -> Option<&str> {
        let s: &str = self;
        validate::is_canonical_uuid(s).then_some(s)
    }
}

impl ToUuid for String {
    fn to_uuid(&self, field: &'static str) -> Result<Uuid> {
        validate::parse_uuid(field, self)
    }

    fn canonical_str(&self) -> Option<&str> {
        let s: &str = self;
        validate::is_canonical_uuid(s).then_some(s)
    }
}

impl<T: ToUuid + ?Sized> ToUuid for &T {
    fn to_uuid(&self, field: &'static str) -> Result<Uuid> {
        (**self).to_uuid(field)
    }

    fn canonical_str(&self) -> Option<&str> {
        (**self).canonical_str()
    }
}

impl ToUuid for InstanceUuid {
    /// The UUID the row names; [`Error::InvalidInput`](crate::Error::InvalidInput)
    /// for a row whose text is not one (such as Nova's `map_instances` marker).
    fn to_uuid(&self, field: &'static str) -> Result<Uuid> {
        match self.uuid {
            Some(u) => Ok(u),
            None => validate::parse_uuid(field, &self.text),
        }
    }

    fn canonical_str(&self) -> Option<&str> {
        validate::is_canonical_uuid(&self.text).then_some(self.text.as_str())
    }
}

/// The `instance_uuid` of a stored instance mapping: exactly the text of the
/// row, and the [`Uuid`] it names when it names one.
///
/// Nearly every row holds a UUID in the canonical form (lower-case,
/// hyphenated), which is all this API writes. But the column is text, and
/// some rows are not instances: Nova's `nova-manage cell_v2 map_instances`
/// keeps its resume point as a row whose instance_uuid is a uuid with spaces
/// for hyphens (see `InstanceMappings::marker` in `mapping-diesel`). Such
/// rows stay readable in every listing, so the field keeps the stored text
/// ([`as_str`], [`Display`]) and offers the typed value beside it
/// ([`as_uuid`]):
///
/// ```
/// use mapping_model::{InstanceUuid, Uuid};
/// let u: Uuid = "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10".parse().unwrap();
/// let stored = InstanceUuid::from(u);
/// assert_eq!(stored.as_uuid(), Some(u));
/// assert_eq!(stored, u);
/// assert_eq!(stored, "0b9f4a36-59b8-4b8e-bf0b-4e1c9f6d2a10");
///
/// let marker = InstanceUuid::from_stored("0b9f4a36 59b8 4b8e bf0b 4e1c9f6d2a10");
/// assert_eq!(marker.as_uuid(), None);
/// assert_eq!(marker.to_string(), "0b9f4a36 59b8 4b8e bf0b 4e1c9f6d2a10");
/// ```
///
/// Equality, ordering and hashing are those of the stored text (so two
/// spellings of one UUID are different rows); comparing with a [`Uuid`]
/// compares the UUID named, with text compares the text. As an argument
/// (it is a [`ToUuid`]) it names its UUID, and a row that names none is
/// [`Error::InvalidInput`](crate::Error::InvalidInput).
///
/// [`as_str`]: InstanceUuid::as_str
/// [`as_uuid`]: InstanceUuid::as_uuid
/// [`Display`]: fmt::Display
#[derive(Clone)]
pub struct InstanceUuid {
    text: String,
    /// `text` parsed (any form [`Uuid::parse_str`] accepts), when it parses.
    uuid: Option<Uuid>,
}

impl InstanceUuid {
    /// The value of a row holding `text`, as read: typed when the text is a
    /// UUID in any form [`Uuid::parse_str`] accepts, kept as it is in any case.
    pub fn from_stored(text: impl Into<String>) -> Self {
        let text = text.into();
        let uuid = Uuid::parse_str(&text).ok();
        Self { text, uuid }
    }

    /// The UUID the row names, or `None` for a row whose text is not a UUID.
    pub fn as_uuid(&self) -> Option<Uuid> {
        self.uuid
    }

    /// The text as stored.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text as stored, owned.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl From<Uuid> for InstanceUuid {
    /// The canonical stored form of `u`, as this API writes it.
    fn from(u: Uuid) -> Self {
        Self {
            text: canonical(&u),
            uuid: Some(u),
        }
    }
}

impl From<String> for InstanceUuid {
    /// The value of a row holding this text ([`InstanceUuid::from_stored`]).
    fn from(text: String) -> Self {
        Self::from_stored(text)
    }
}

impl From<&str> for InstanceUuid {
    /// The value of a row holding this text ([`InstanceUuid::from_stored`]).
    fn from(text: &str) -> Self {
        Self::from_stored(text)
    }
}

impl From<InstanceUuid> for String {
    /// The stored text ([`InstanceUuid::into_string`]).
    fn from(u: InstanceUuid) -> Self {
        u.text
    }
}

impl fmt::Display for InstanceUuid {
    /// The stored text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for InstanceUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InstanceUuid").field(&self.text).finish()
    }
}

impl PartialEq for InstanceUuid {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for InstanceUuid {}

impl Hash for InstanceUuid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialOrd for InstanceUuid {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InstanceUuid {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl AsRef<str> for InstanceUuid {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl Borrow<str> for InstanceUuid {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl PartialEq<Uuid> for InstanceUuid {
    fn eq(&self, other: &Uuid) -> bool {
        self.uuid == Some(*other)
    }
}

impl PartialEq<InstanceUuid> for Uuid {
    fn eq(&self, other: &InstanceUuid) -> bool {
        other == self
    }
}

impl PartialEq<str> for InstanceUuid {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for InstanceUuid {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl PartialEq<String> for InstanceUuid {
    fn eq(&self, other: &String) -> bool {
        &self.text == other
    }
}

impl PartialEq<InstanceUuid> for str {
    fn eq(&self, other: &InstanceUuid) -> bool {
        other == self
    }
}

impl PartialEq<InstanceUuid> for &str {
    fn eq(&self, other: &InstanceUuid) -> bool {
        other == self
    }
}

impl PartialEq<InstanceUuid> for String {
    fn eq(&self, other: &InstanceUuid) -> bool {
        other == self
    }
}

/// The canonical stored form of a UUID: lower-case, hyphenated (what Nova
/// writes).
pub fn canonical(u: &Uuid) -> String {
    // Encoded directly: `to_string` goes through `fmt` (a measurable share
    // of a save, which names its cell by uuid).
    u.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parse_str_accepts_is_taken() {
        let want: Uuid = "a0b1c2d3-e4f5-4789-abcd-0123456789ab".parse().unwrap();
        for form in [
            "a0b1c2d3-e4f5-4789-abcd-0123456789ab",
            "A0B1C2D3-E4F5-4789-ABCD-0123456789AB",
            "a0b1c2d3e4f54789abcd0123456789ab",
            "{a0b1c2d3-e4f5-4789-abcd-0123456789ab}",
            "urn:uuid:a0b1c2d3-e4f5-4789-abcd-0123456789ab",
        ] {
            assert_eq!(form.to_uuid("f").unwrap(), want, "{form}");
            assert_eq!(form.to_owned().to_uuid("f").unwrap(), want, "{form}");
        }
        assert_eq!(want.to_uuid("f").unwrap(), want);
        assert_eq!(canonical(&want), "a0b1c2d3-e4f5-4789-abcd-0123456789ab");
    }

    #[test]
    fn instance_uuid_keeps_the_stored_text() {
        let u: Uuid = "a0b1c2d3-e4f5-4789-abcd-0123456789ab".parse().unwrap();
        let upper = InstanceUuid::from_stored("A0B1C2D3-E4F5-4789-ABCD-0123456789AB");
        assert_eq!(upper.as_uuid(), Some(u));
        assert_eq!(upper, u);
        assert_eq!(upper.as_str(), "A0B1C2D3-E4F5-4789-ABCD-0123456789AB");
        assert_ne!(
            upper,
            InstanceUuid::from(u),
            "another spelling is another row"
        );
        assert_eq!(upper.canonical_str(), None);
        assert_eq!(upper.to_canonical("f").unwrap(), canonical(&u));
        let canon = InstanceUuid::from(u);
        assert_eq!(
            canon.canonical_str(),
            Some("a0b1c2d3-e4f5-4789-abcd-0123456789ab")
        );
        assert_eq!(canon, InstanceUuid::from_stored(canonical(&u)));

        let marker = InstanceUuid::from_stored("a0b1c2d3 e4f5 4789 abcd 0123456789ab");
        assert_eq!(marker.as_uuid(), None);
        assert_ne!(marker, u);
        assert_eq!(marker.to_string(), "a0b1c2d3 e4f5 4789 abcd 0123456789ab");
        assert_eq!(
            format!("{marker:?}"),
            r#"InstanceUuid("a0b1c2d3 e4f5 4789 abcd 0123456789ab")"#
        );
        assert!(matches!(
            marker.to_uuid("instance_uuid"),
            Err(crate::Error::InvalidInput {
                field: "instance_uuid",
                ..
            })
        ));
        let set: std::collections::HashSet<InstanceUuid> = [marker.clone()].into();
        assert!(set.contains("a0b1c2d3 e4f5 4789 abcd 0123456789ab"));
    }
}

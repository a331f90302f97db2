//! Typed identities: the [`ToUuid`] conversion every uuid argument of the
//! API accepts.

use uuid::Uuid;

use crate::error::Result;
use crate::validate;

mod sealed {
    pub trait Sealed {}
    impl Sealed for uuid::Uuid {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl<T: Sealed + ?Sized> Sealed for &T {}
}

/// A value naming a UUID: a [`Uuid`], or text in any form
/// [`Uuid::parse_str`] accepts (hyphenated in any case, 32 hex digits,
/// braced, `urn:uuid:`). Every uuid argument of the API takes one, so
/// `get_by_uuid(cell.uuid)`, `get_by_uuid(&u)` and
/// `get_by_uuid("6a1a7a3c-1d0e-4a55-9d49-3f0a1c2b3d4e")` all work.
///
/// Sealed: implemented for `Uuid`, `str` and `String`, and references to them.
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

/// The canonical stored form of a UUID: lower-case, hyphenated (what Nova
/// writes).
pub fn canonical(u: &Uuid) -> String {
    u.hyphenated().to_string()
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
}

//! Connection URLs (`ConnectionUrl`): any string, every scheme.
//!
//! Invariants: no panic; a parsed URL renders back (with its secrets) to a
//! form that parses to the same value; the redacted form (which `Display`
//! and `Debug` show) never shows the password or a secret query value; the
//! same holds for the URL moved to another database by `with_database`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping_diesel::__fuzz::{secrets, unredacted, ConnectionUrl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = ConnectionUrl::parse(text) else {
        return;
    };
    check(&url);
    if let Ok(other) = url.with_database("fuzz_other_db") {
        check(&other);
    }
});

/// Checks the round trip and the redaction of one parsed URL.
fn check(url: &ConnectionUrl) {
    let rendered = unredacted(url);
    match ConnectionUrl::parse(&rendered) {
        Ok(again) => assert_eq!(&again, url, "{rendered:?} parses to another value"),
        Err(e) => panic!("the rendered form {rendered:?} does not parse: {e}"),
    }

    // Display and Debug show the redacted form and nothing else.
    let redacted = url.redacted();
    assert_eq!(url.to_string(), redacted);
    assert_eq!(
        format!("{url:?}"),
        format!(
            "ConnectionUrl {{ backend: {:?}, url: {redacted:?} }}",
            url.backend()
        )
    );

    // A mask cannot be part of a secret (`***` becomes NUL, which no parsed
    // URL holds), so every place a secret still shows in the redacted form
    // is a place it also has in the real URL outside a masked slot: fewer
    // than in the real URL, where each masked slot holds one more.
    let unmasked = redacted.replace("***", "\0");
    let diesel = url.diesel_url();
    for secret in secrets(url) {
        let left = occurrences(&unmasked, secret);
        let real = occurrences(diesel, secret);
        assert!(
            left < real,
            "secret {secret:?} shows {left} time(s) in {redacted:?} (the URL holds it {real} time(s))"
        );
    }
}

/// Overlapping occurrences of `needle` in `haystack`.
fn occurrences(haystack: &str, needle: &str) -> usize {
    (0..haystack.len())
        .filter(|&i| haystack.get(i..).is_some_and(|rest| rest.starts_with(needle)))
        .count()
}

//! Nova's SQLite timestamp text, read by the fast path and by the full
//! column read (fast path, then diesel's parser) on a real SQLite value.
//!
//! Invariants: no panic; every valid `YYYY-MM-DD HH:MM:SS.ffffff` (year
//! 0000–9999, a real date, hour < 24, minute and second < 60) reads to that
//! instant on both paths and is written back by `SQLITE_FORMAT` exactly; any
//! text the fast path accepts is written back in a form that reads to the
//! same instant (cut to microseconds).
#![no_main]

use std::cell::RefCell;

use chrono::{NaiveDate, NaiveDateTime, SubsecRound, Timelike};
use libfuzzer_sys::fuzz_target;
use mapping_diesel::__fuzz::{
    parse_nova_timestamp, read_sqlite_timestamp, sqlite_memory, SQLITE_FORMAT,
};

thread_local! {
    static CONN: RefCell<mapping_diesel::DbConnection> =
        RefCell::new(sqlite_memory().expect("an in-memory SQLite database"));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fast = parse_nova_timestamp(text);
    let read = CONN.with(|conn| read_sqlite_timestamp(&mut conn.borrow_mut(), text));

    if let Some(expected) = valid_nova_text(text) {
        assert_eq!(fast, Some(expected), "fast path on {text:?}");
        assert_eq!(read, Some(expected), "column read of {text:?}");
        assert_eq!(expected.format(SQLITE_FORMAT).to_string(), text);
    }
    if let Some(t) = fast {
        assert_eq!(read, Some(t), "the column read differs from the fast path");
        let written = t.format(SQLITE_FORMAT).to_string();
        let micros = t.trunc_subsecs(6);
        assert_eq!(parse_nova_timestamp(&written), Some(micros), "{written:?}");
    }
});

/// The instant a `YYYY-MM-DD HH:MM:SS.ffffff` text names, when it is one
/// Nova can write; checked digit by digit, independently of the parsers.
fn valid_nova_text(text: &str) -> Option<NaiveDateTime> {
    let b = text.as_bytes();
    if b.len() != 26 {
        return None;
    }
    for (i, &c) in b.iter().enumerate() {
        let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19);
        let ok = match i {
            4 | 7 => c == b'-',
            10 => c == b' ',
            13 | 16 => c == b':',
            19 => c == b'.',
            _ => c.is_ascii_digit(),
        };
        if !ok || (want_digit && !c.is_ascii_digit()) {
            return None;
        }
    }
    let n = |a: usize, z: usize| text[a..z].parse::<u32>().ok();
    let date = NaiveDate::from_ymd_opt(i32::try_from(n(0, 4)?).ok()?, n(5, 7)?, n(8, 10)?)?;
    let (hour, minute, second) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    if second >= 60 {
        return None;
    }
    let t = date.and_hms_micro_opt(hour, minute, second, n(20, 26)?)?;
    debug_assert_eq!(t.nanosecond() % 1_000, 0);
    Some(t)
}

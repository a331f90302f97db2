//! The SQLite DDL tokenizer and the schema check on arbitrary
//! `CREATE TABLE` / `CREATE INDEX` text.
//!
//! The tokenizer reads the input as stored `CREATE TABLE` text. The input's
//! `CREATE TABLE` / `CREATE [UNIQUE] INDEX` statements are then run on a fresh
//! in-memory SQLite database, which is introspected, compared with Nova's
//! schema and offered for adoption. Invariants: no panic, no hang (the run
//! uses libFuzzer's `-timeout`); a constraint found has a name and columns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mapping_diesel::__fuzz::{sqlite_named_unique_constraints, sqlite_schema_check};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (_name, columns) in sqlite_named_unique_constraints(text) {
        assert!(!columns.is_empty(), "a unique constraint without columns");
    }
    if let Err(error) = sqlite_schema_check(text) {
        // SQLite made the tables; reading them back must work.
        panic!("the schema of {text:?} could not be read: {error}");
    }
});

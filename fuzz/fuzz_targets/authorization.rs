//! Fuzz target: The `Authorization` header parsers: Basic (`auth::parse_basic`) and Digest (`digest::parse`).
//!
//! Invariant: no panic; refusal is `None`; accepted Basic credentials and
//! Digest fields round-trip through a re-encoded header.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzzing::authorization(data));

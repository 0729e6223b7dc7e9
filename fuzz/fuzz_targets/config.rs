//! Fuzz target: The configuration file parser (`Config::parse`) and the API input parser (`parse_input`).
//!
//! Invariant: no panic (validation included); a refusal is a typed
//! `ValidationError` with a code; an accepted configuration written back
//! parses to the same value with no unknown keys.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzzing::config(data));

//! Fuzz target: The multipart upload path (`api::certificate::fields`, behind axum's `Multipart`).
//!
//! Invariant: no panic; a refusal is an `ApiError` with a 4xx status and a
//! code; accepted fields are allowed ones and round-trip through a re-encoded
//! body. Input: the boundary on the first line, then the body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzzing::multipart(data));

//! Fuzz target: PEM / key / certificate import, encrypted keys with passphrases included.
//!
//! Invariant: no panic; a refusal is a typed `CertError` with a code and a
//! field; accepted material loads as a TLS key and round-trips through the
//! stored form (`parse_stored`) unchanged. Framing: see
//! `portcullis_fuzzing::cert_intake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzzing::cert_intake(data));

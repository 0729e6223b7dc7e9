//! Fuzz target: The access-control rule parser: `IpNetwork` (FromStr) and `AccessControlSettings`.
//!
//! Invariant: no panic; a refusal is a typed `IpNetworkError` /
//! `ValidationError`; accepted networks and settings round-trip through
//! their text / JSON form, and valid settings compile to a policy.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_fuzzing::access_control(data));

//! Integration tests: the real `portcullis` binary on free loopback ports,
//! driven by real clients (reqwest, curl, openssl).

mod acme;
mod certificate;
mod cli;
mod digest;
mod foundation;
mod intrusion;
mod live_apply;
mod notify;
mod reliability;
mod webroot;

use std::path::PathBuf;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

//! Integration tests: the real `portcullis` binary on free loopback ports,
//! driven by real clients (reqwest, curl, openssl).

// Modules that need an optional feature are built only with it (the build's
// features are the binary's: `cargo test -p portcullis-cli --features ...`);
// `features` checks what every build carries and what it answers for the rest.
#[cfg(feature = "acme")]
mod acme;
mod certificate;
mod cli;
#[cfg(feature = "digest")]
mod digest;
mod features;
mod foundation;
mod intrusion;
mod live_apply;
mod memory;
#[cfg(all(feature = "email", feature = "ip-notify", feature = "sip"))]
mod notify;
mod reliability;
#[cfg(feature = "webroot")]
mod webroot;

use std::path::PathBuf;

/// Runs hydra's Basic-auth attack (`http-get`, 4 tasks, user `admin`, the
/// words in `words`) against `path` on `127.0.0.1:port`, bounded to 60 s;
/// its standard output and error.
pub fn hydra_http_get(port: u16, words: &std::path::Path, path: &str) -> (String, String) {
    let port = port.to_string();
    let words = words.to_str().expect("utf8");
    let (_, out, err) = portcullis_testkit::run(
        "timeout",
        &[
            "60",
            "hydra",
            "-l",
            "admin",
            "-P",
            words,
            "-s",
            &port,
            "-t",
            "4",
            "-w",
            "5",
            "-I",
            "127.0.0.1",
            "http-get",
            path,
        ],
    );
    (out, err)
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

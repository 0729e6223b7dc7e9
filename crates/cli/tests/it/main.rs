//! Integration tests: the real `portcullis` binary on free loopback ports,
//! driven by real clients (reqwest, curl, openssl).

mod acme;
mod certificate;
mod cli;
mod digest;
mod foundation;
mod intrusion;
mod live_apply;
mod memory;
mod notify;
mod reliability;
mod service;
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

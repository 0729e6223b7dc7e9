//! Integration tests: the real `portcullis` binary on free loopback ports,
//! driven by real clients (reqwest, curl, openssl).

// Modules that need an optional feature are built only with it (the build's
// features are the binary's: `cargo test -p portcullis-cli --features ...`);
// `features` checks what every build carries and what it answers for the rest.
mod account_lockout;
#[cfg(feature = "acme")]
mod acme;
#[cfg(feature = "backup")]
mod backup;
mod block_length;
mod caching;
mod certificate;
mod cli;
mod clock;
mod config_cli;
#[cfg(feature = "digest")]
mod digest;
mod features;
#[cfg(all(feature = "metrics", feature = "syslog", feature = "crowdsec"))]
mod fleet;
mod foundation;
mod guessing;
mod hosts;
mod i18n;
mod input;
mod intrusion;
mod live_apply;
mod log_flood;
mod memory;
#[cfg(all(feature = "email", feature = "ip-notify", feature = "sip"))]
mod notify;
mod port_policy;
mod reliability;
mod service;
mod session;
mod startup_lock;
mod tokens;
#[cfg(feature = "totp")]
mod totp;
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

/// The nonce of the MD5 Digest challenge `server` answers `uri` with (Digest must be on).
pub fn digest_nonce(client: &reqwest::blocking::Client, url: &str) -> String {
    let challenge = client.get(url).send().expect("challenge");
    challenge
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("algorithm=MD5"))
        .and_then(|v| v.split("nonce=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .expect("a Digest MD5 challenge")
        .to_string()
}

/// An `Authorization: Digest` value (MD5, as legacy clients send) of `user`
/// `admin` with `password`, for `GET uri`, nonce count `nc`.
pub fn digest_md5_header(nonce: &str, uri: &str, nc: u32, password: &str) -> String {
    use md5::{Digest, Md5};
    let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
    let ha1 = md5(format!("admin:portcullis:{password}"));
    let ha2 = md5(format!("GET:{uri}"));
    let nc = format!("{nc:08x}");
    let response = md5(format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"));
    format!(
        "Digest username=\"admin\", realm=\"portcullis\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"0a4f113b\", response=\"{response}\""
    )
}

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

//! The bodies of the fuzz targets in `fuzz/`, shared by the cargo-fuzz
//! binaries (nightly, libFuzzer) and by the corpus replay test of this crate
//! (stable, every CI run), so a crash found by fuzzing stays fixed.
//!
//! Every body takes arbitrary bytes and checks its target's invariant with
//! `assert!`: a panic here is a finding. The invariants:
//!
//! * nothing panics, whatever the input;
//! * a refusal is the target's typed error, with a stable non-empty code;
//! * where the target has an encoder, accepted input round-trips: encoding
//!   what was accepted and parsing it again gives the same value.
//!
//! Input framing is documented on each body; `fuzz/make-corpus` writes seeds
//! in that framing.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::OnceLock;

use axum::extract::{FromRequest, Multipart};
use base64::Engine;
use portcullis::digest::DigestResponse;
use portcullis_cert::{CertError, CertificateDer, IntakeOptions};
use portcullis_core::access_control::{AccessControlSettings, AccessPolicy, IpNetwork};
use portcullis_core::config::{Config, parse_input};
use portcullis_core::settings::WebServerSettings;

/// The body of a fuzz target: panics on a broken invariant.
pub type Body = fn(&[u8]);

/// The fuzz targets, by name (the file names under `fuzz/fuzz_targets/`).
pub const TARGETS: &[(&str, Body)] = &[
    ("cert_intake", cert_intake),
    ("config", config),
    ("authorization", authorization),
    ("multipart", multipart),
    ("access_control", access_control),
];

/// The intake clock: the real one, since `fuzz/make-corpus` makes seed
/// certificates valid from the moment it runs. A validity refusal is a typed
/// error like any other, so a panic reproduces whatever the date.
fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn check_cert_error(e: &CertError) {
    assert!(!e.to_string().is_empty(), "a certificate refusal has a message: {e:?}");
    assert!(
        ["certificate", "private_key", "passphrase", ""].contains(&e.field()),
        "unexpected field {:?} for {e:?}",
        e.field()
    );
}

/// Certificate and key intake (PEM, PKCS#8/PKCS#1/SEC1, encrypted keys).
///
/// Input: one mode byte, then up to three parts separated by NUL bytes:
/// certificate file, key file, passphrase (PEM holds no NUL). Mode bits 0-1
/// choose the call: 0 `intake_upload(cert, key, passphrase)`, 1
/// `parse_stored(cert, key)`, 2 `intake_upload(cert, None, passphrase)` (key
/// inside the certificate file), 3 `describe` on the first part as DER. Bit 2
/// marks the clock as untrusted.
///
/// Invariant: no panic; a refusal is a [`CertError`] with a code and a field;
/// accepted material loads as a rustls key, describes, and round-trips through
/// `chain_pem`/`key_pem` and [`portcullis_cert::parse_stored`] unchanged.
pub fn cert_intake(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(3, |b| *b == 0);
    let cert = parts.next().unwrap_or_default();
    let key = parts.next();
    let passphrase = parts.next().map(String::from_utf8_lossy);
    let opts = IntakeOptions { now: now(), clock_trusted: mode & 4 == 0 };
    let result = match mode & 3 {
        0 => portcullis_cert::intake_upload(cert, key, passphrase.as_deref(), &opts),
        1 => portcullis_cert::parse_stored(cert, key.unwrap_or_default()).map(|m| (m, Vec::new())),
        2 => portcullis_cert::intake_upload(cert, None, passphrase.as_deref(), &opts),
        _ => {
            if let Err(e) = portcullis_cert::describe(&[CertificateDer::from(cert.to_vec())], opts.now) {
                check_cert_error(&e);
            }
            return;
        }
    };
    match result {
        Err(e) => check_cert_error(&e),
        Ok((material, _warnings)) => {
            material.certified_key().expect("accepted material loads as a TLS key");
            material.describe(opts.now).expect("accepted material describes");
            let chain_pem = material.chain_pem();
            let key_pem = material.key_pem();
            let again = portcullis_cert::parse_stored(chain_pem.as_bytes(), key_pem.as_bytes())
                .expect("what was accepted and stored reads back");
            assert_eq!(again.chain_pem(), chain_pem, "the chain round-trips");
            assert_eq!(again.key_pem(), key_pem, "the key round-trips");
        }
    }
}

/// The configuration file parser and the API's input parser.
///
/// Input: the text of a `config.json` (non-UTF-8 input is refused before
/// the parser, as reading the file does).
///
/// Invariant: no panic (validation included); a refusal is a
/// `ValidationError` with a code; an accepted file written back with
/// `to_file_text` parses to the same configuration with no unknown keys, and
/// the same holds for API input (`parse_input`).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text) {
        Err(e) => assert!(!e.message.is_empty(), "a refusal says why: {e:?}"),
        Ok(parsed) => {
            let _ = parsed.config.validate();
            let written = parsed.config.to_file_text();
            let again = Config::parse(&written).expect("a written configuration parses");
            assert_eq!(again.config, parsed.config, "the configuration round-trips");
            assert!(again.unknown_keys.is_empty(), "written files hold no unknown keys");
        }
    }
    match parse_input::<Config>(data) {
        Err(e) => assert!(!e.message.is_empty(), "a refusal says why: {e:?}"),
        Ok(c) => {
            let again: Config = parse_input(c.to_file_text().as_bytes()).expect("round-trips as API input");
            assert_eq!(again, c);
        }
    }
    match parse_input::<WebServerSettings>(data) {
        Err(e) => assert!(!e.message.is_empty(), "a refusal says why: {e:?}"),
        Ok(s) => {
            let _ = s.validate(&Config::default().profile_names());
            let json = serde_json::to_vec(&s).expect("serializes");
            let again: WebServerSettings = parse_input(&json).expect("round-trips");
            assert_eq!(again, s);
        }
    }
}

/// Quotes a Digest parameter value the way the parser reads it back.
fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// An `Authorization: Digest` value holding every field of `d`.
fn digest_header(d: &DigestResponse) -> String {
    let mut params = vec![
        format!("username={}", quote(&d.username)),
        format!("realm={}", quote(&d.realm)),
        format!("nonce={}", quote(&d.nonce)),
        format!("uri={}", quote(&d.uri)),
        format!("response={}", quote(&d.response)),
    ];
    for (name, value) in [("algorithm", &d.algorithm), ("qop", &d.qop), ("nc", &d.nc), ("cnonce", &d.cnonce)]
    {
        if let Some(v) = value {
            params.push(format!("{name}={}", quote(v)));
        }
    }
    format!("Digest {}", params.join(", "))
}

/// The `Authorization` header parsers: Basic and Digest.
///
/// Input: a header value (lossily decoded as UTF-8, as the server sees a
/// header it could turn into a string).
///
/// Invariant: no panic; refusal is `None`; an accepted Basic value encoded
/// again parses to the same user and password; an accepted Digest value
/// written again with every field quoted parses to the same fields.
pub fn authorization(data: &[u8]) {
    let value = String::from_utf8_lossy(data);
    if let Some((user, password)) = portcullis::auth::parse_basic(&value) {
        assert!(!user.contains(':'), "a Basic user name never holds the separator");
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        assert_eq!(
            portcullis::auth::parse_basic(&format!("Basic {encoded}")),
            Some((user, password)),
            "Basic credentials round-trip"
        );
    }
    if let Some(d) = portcullis::digest::parse(&value) {
        let header = digest_header(&d);
        // Values longer than the parser's bound are refused by design.
        if header.len() <= 4000 {
            assert_eq!(
                portcullis::digest::parse(&header).as_ref(),
                Some(&d),
                "Digest fields round-trip: {header}"
            );
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
    })
}

/// The upload fields allowed by `POST /api/v1/certificate/upload`.
const UPLOAD_FIELDS: &[&str] = &["certificate", "private_key", "passphrase"];

/// Reads `body` as multipart with `boundary` through the server's field reader.
fn read_fields(
    boundary: &str,
    body: Vec<u8>,
) -> Option<Result<HashMap<String, Vec<u8>>, portcullis::error::ApiError>> {
    let request = http::Request::builder()
        .method("POST")
        .uri("/api/v1/certificate/upload")
        .header(http::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(axum::body::Body::from(body))
        .ok()?;
    runtime().block_on(async {
        match Multipart::from_request(request, &()).await {
            // A content type the extractor refuses never reaches the reader.
            Err(_) => None,
            Ok(multipart) => Some(portcullis::api::certificate::fields(multipart, UPLOAD_FIELDS).await),
        }
    })
}

/// The multipart upload path: `portcullis::api::certificate::fields`.
///
/// Input: the boundary (first line, without its line end), then the body.
///
/// Invariant: no panic; a refusal is an `ApiError` with a 4xx status and a
/// code; accepted fields are among the allowed ones, and writing them again
/// as multipart (with a fresh boundary) reads back the same fields.
pub fn multipart(data: &[u8]) {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let Ok(boundary) = std::str::from_utf8(&data[..split]) else { return };
    let boundary = boundary.trim_end_matches('\r');
    let body = data.get(split + 1..).unwrap_or_default().to_vec();
    let Some(result) = read_fields(boundary, body) else { return };
    match result {
        Err(e) => {
            assert!(
                e.status.is_client_error(),
                "a bad upload is the client's error: {} {} {}",
                e.status,
                e.code,
                e.message
            );
            assert!(!e.message.is_empty());
        }
        Ok(fields) => {
            assert!(fields.keys().all(|k| UPLOAD_FIELDS.contains(&k.as_str())), "{:?}", fields.keys());
            let mut boundary = String::from("portcullis-fuzz-boundary");
            while fields.values().any(|v| v.windows(boundary.len()).any(|w| w == boundary.as_bytes())) {
                boundary.push('x');
            }
            let mut names: Vec<&String> = fields.keys().collect();
            names.sort();
            let mut body = Vec::new();
            for name in names {
                body.extend_from_slice(
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                        .as_bytes(),
                );
                body.extend_from_slice(&fields[name]);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            let again = read_fields(&boundary, body).expect("our own content type is accepted");
            assert_eq!(again.ok().as_ref(), Some(&fields), "multipart fields round-trip");
        }
    }
}

/// The access-control rule parser: `IpNetwork` and `AccessControlSettings`.
///
/// Input: a network text (`10.0.0.0/8`) or an access-control JSON body; both
/// parsers see every input.
///
/// Invariant: no panic; a refusal is an `IpNetworkError` / `ValidationError`
/// with a code; an accepted network displays as text that parses to the same
/// network and contains its own address; accepted settings serialize to JSON
/// that parses to the same settings, and valid settings compile to a policy.
pub fn access_control(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        match IpNetwork::from_str(text) {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(net) => {
                let shown = net.to_string();
                assert_eq!(IpNetwork::from_str(&shown), Ok(net), "{text:?} shown as {shown:?}");
                assert!(net.contains(net.addr()));
                assert_eq!(IpNetwork::new(net.addr(), net.prefix_len()), Ok(net));
            }
        }
    }
    match parse_input::<AccessControlSettings>(data) {
        Err(e) => assert!(!e.message.is_empty(), "a refusal says why: {e:?}"),
        Ok(settings) => {
            let json = serde_json::to_vec(&settings).expect("serializes");
            let again: AccessControlSettings = parse_input(&json).expect("round-trips");
            assert_eq!(again, settings);
            if settings.validate().is_ok() {
                let policy = AccessPolicy::compile(&settings, &[]);
                for rule in &settings.rules {
                    let _ = policy.decide(rule.source.addr());
                }
            }
        }
    }
}

//! HTTP Digest authentication (RFC 7616), SHA-256 and MD5, for API clients
//! that cannot send Basic. Off by default: it needs a password-equivalent
//! hash per user (`H(user:realm:password)`) stored beside the argon2 hash,
//! which is fast to brute-force if the accounts file leaks.
//!
//! Nonces are stateless (time, random, HMAC) and expire after
//! [`NONCE_LIFETIME`]; an expired nonce with a correct response is answered
//! `stale=true` (not a failed attempt). Their time is the monotonic clock's
//! (seconds since the server started; the key is per process too), so a
//! step of the wall clock neither makes every nonce stale nor keeps old ones alive. Replays are refused: each nonce's
//! highest `nc` is remembered (bounded table).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// The realm of every challenge; HA1 values are bound to it.
pub const REALM: &str = "portcullis";
/// How long a nonce may be used.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Nonces whose counter is remembered at once (oldest forgotten first).
pub const MAX_TRACKED_NONCES: usize = 4096;

/// A hash algorithm of Digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5, for legacy clients.
    Md5,
    /// SHA-256 (RFC 7616).
    Sha256,
}

impl Algorithm {
    fn hash(self, data: &str) -> String {
        match self {
            Self::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Self::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }
}

/// `H(user:realm:password)` for both algorithms, stored per user while Digest is on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DigestSecrets {
    /// MD5 HA1, hex.
    pub ha1_md5: String,
    /// SHA-256 HA1, hex.
    pub ha1_sha256: String,
}

impl DigestSecrets {
    /// The secrets of `user` with `password` in [`REALM`].
    pub fn derive(user: &str, password: &str) -> Self {
        let a1 = format!("{user}:{REALM}:{password}");
        Self { ha1_md5: Algorithm::Md5.hash(&a1), ha1_sha256: Algorithm::Sha256.hash(&a1) }
    }

    fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// The fields of an `Authorization: Digest …` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestResponse {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri`.
    pub uri: String,
    /// `response`.
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Option<String>,
    /// `qop`.
    pub qop: Option<String>,
    /// `nc`.
    pub nc: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
}

/// Parses an `Authorization: Digest …` value; `None` if it is not well formed.
pub fn parse(value: &str) -> Option<DigestResponse> {
    let (scheme, rest) = value.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") || rest.len() > 4096 {
        return None;
    }
    let mut out = DigestResponse::default();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => val.push(chars.next()?),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        match key.to_ascii_lowercase().as_str() {
            "username" => out.username = val,
            "realm" => out.realm = val,
            "nonce" => out.nonce = val,
            "uri" => out.uri = val,
            "response" => out.response = val,
            "algorithm" => out.algorithm = Some(val),
            "qop" => out.qop = Some(val),
            "nc" => out.nc = Some(val),
            "cnonce" => out.cnonce = Some(val),
            _ => {}
        }
    }
    if out.username.is_empty() || out.nonce.is_empty() || out.response.is_empty() {
        return None;
    }
    Some(out)
}

/// Outcome of checking a Digest response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestVerdict {
    /// Correct: the user name.
    Valid(String),
    /// The response is correct but its nonce expired: challenge again with `stale=true`.
    Stale,
    /// Wrong credentials, a replay, or a malformed response: a failed attempt.
    Invalid,
}

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks nonces; remembers nonce counters against replays.
#[derive(Debug)]
pub struct DigestAuth {
    key: [u8; 32],
    counters: Mutex<HashMap<String, (u64, u32)>>,
}

impl Default for DigestAuth {
    fn default() -> Self {
        Self { key: rand::random(), counters: Mutex::new(HashMap::new()) }
    }
}

impl DigestAuth {
    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// A fresh nonce for time `now_unix` (seconds on the monotonic clock).
    pub fn nonce(&self, now_unix: u64) -> String {
        let mut data = now_unix.to_be_bytes().to_vec();
        data.extend_from_slice(&rand::random::<[u8; 8]>());
        let mac = self.mac(&data);
        data.extend_from_slice(&mac[..16]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    /// The `WWW-Authenticate` values of a Digest challenge, SHA-256 first (RFC 7616 order).
    pub fn challenges(&self, now_unix: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now_unix);
        let opaque = hex::encode(&self.mac(b"opaque")[..8]);
        let stale = if stale { ", stale=true" } else { "" };
        [Algorithm::Sha256, Algorithm::Md5]
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{REALM}\", qop=\"auth\", algorithm={}, nonce=\"{nonce}\", opaque=\"{opaque}\", charset=UTF-8{stale}",
                    a.name()
                )
            })
            .collect()
    }

    /// The issue time of a nonce we made, or `None` if it is not ours.
    fn nonce_time(&self, nonce: &str) -> Option<u64> {
        let data = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if data.len() != 32 {
            return None;
        }
        let mac = self.mac(&data[..16]);
        if !bool::from(mac[..16].ct_eq(&data[16..])) {
            return None;
        }
        Some(u64::from_be_bytes(data[..8].try_into().ok()?))
    }

    /// Checks `resp` for a request `method` on `request_target` (path and
    /// query as sent), given the user's stored secrets (None: unknown user).
    pub fn verify(
        &self,
        resp: &DigestResponse,
        method: &str,
        request_target: &str,
        secrets: Option<&DigestSecrets>,
        now_unix: u64,
    ) -> DigestVerdict {
        let algorithm = match resp.algorithm.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("MD5") => Algorithm::Md5,
            Some("SHA-256") => Algorithm::Sha256,
            _ => return DigestVerdict::Invalid,
        };
        let (Some(secrets), Some(issued)) = (secrets, self.nonce_time(&resp.nonce)) else {
            return DigestVerdict::Invalid;
        };
        // The URI must be the one requested, so a response cannot be reused for another resource.
        if resp.realm != REALM || resp.uri != request_target || resp.qop.as_deref() != Some("auth") {
            return DigestVerdict::Invalid;
        }
        let (Some(nc), Some(cnonce)) = (resp.nc.as_deref(), resp.cnonce.as_deref()) else {
            return DigestVerdict::Invalid;
        };
        let Ok(nc_value) = u32::from_str_radix(nc, 16) else { return DigestVerdict::Invalid };
        let ha2 = algorithm.hash(&format!("{method}:{}", resp.uri));
        let expected =
            algorithm.hash(&format!("{}:{}:{nc}:{cnonce}:auth:{ha2}", secrets.ha1(algorithm), resp.nonce));
        if !bool::from(expected.as_bytes().ct_eq(resp.response.to_ascii_lowercase().as_bytes())) {
            return DigestVerdict::Invalid;
        }
        if now_unix.saturating_sub(issued) > NONCE_LIFETIME.as_secs() {
            return DigestVerdict::Stale;
        }
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if counters.len() >= MAX_TRACKED_NONCES {
            counters.retain(|_, (t, _)| now_unix.saturating_sub(*t) <= NONCE_LIFETIME.as_secs());
            if counters.len() >= MAX_TRACKED_NONCES
                && let Some(oldest) = counters.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| k.clone())
            {
                counters.remove(&oldest);
            }
        }
        let last = counters.entry(resp.nonce.clone()).or_insert((issued, 0));
        if nc_value <= last.1 {
            return DigestVerdict::Invalid;
        }
        last.1 = nc_value;
        DigestVerdict::Valid(resp.username.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn respond(
        auth: &DigestAuth,
        alg: Algorithm,
        password: &str,
        nonce: &str,
        nc: &str,
        uri: &str,
    ) -> DigestResponse {
        let secrets = DigestSecrets::derive("admin", password);
        let ha2 = alg.hash(&format!("GET:{uri}"));
        let response = alg.hash(&format!("{}:{nonce}:{nc}:abc:auth:{ha2}", secrets.ha1(alg)));
        let _ = auth;
        DigestResponse {
            username: "admin".into(),
            realm: REALM.into(),
            nonce: nonce.into(),
            uri: uri.into(),
            response,
            algorithm: Some(alg.name().into()),
            qop: Some("auth".into()),
            nc: Some(nc.into()),
            cnonce: Some("abc".into()),
        }
    }

    #[test]
    fn correct_responses_pass_once() {
        let auth = DigestAuth::default();
        let secrets = DigestSecrets::derive("admin", "pw-123456");
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let nonce = auth.nonce(1000);
            let r = respond(&auth, alg, "pw-123456", &nonce, "00000001", "/api/v1/webserver?x=1");
            assert_eq!(
                auth.verify(&r, "GET", "/api/v1/webserver?x=1", Some(&secrets), 1001),
                DigestVerdict::Valid("admin".into())
            );
            assert_eq!(
                auth.verify(&r, "GET", "/api/v1/webserver?x=1", Some(&secrets), 1002),
                DigestVerdict::Invalid,
                "replay"
            );
            let r2 = respond(&auth, alg, "pw-123456", &nonce, "00000002", "/api/v1/webserver?x=1");
            assert_eq!(
                auth.verify(&r2, "GET", "/api/v1/webserver?x=1", Some(&secrets), 1003),
                DigestVerdict::Valid("admin".into())
            );
        }
    }

    #[test]
    fn wrong_password_other_uri_forged_and_stale_nonces() {
        let auth = DigestAuth::default();
        let secrets = DigestSecrets::derive("admin", "pw-123456");
        let nonce = auth.nonce(1000);
        let wrong = respond(&auth, Algorithm::Sha256, "guess", &nonce, "00000001", "/a");
        assert_eq!(auth.verify(&wrong, "GET", "/a", Some(&secrets), 1001), DigestVerdict::Invalid);
        let other_uri = respond(&auth, Algorithm::Sha256, "pw-123456", &nonce, "00000001", "/a");
        assert_eq!(auth.verify(&other_uri, "GET", "/b", Some(&secrets), 1001), DigestVerdict::Invalid);
        let forged = respond(
            &auth,
            Algorithm::Sha256,
            "pw-123456",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "00000001",
            "/a",
        );
        assert_eq!(auth.verify(&forged, "GET", "/a", Some(&secrets), 1001), DigestVerdict::Invalid);
        let late = respond(&auth, Algorithm::Sha256, "pw-123456", &nonce, "00000001", "/a");
        assert_eq!(auth.verify(&late, "GET", "/a", Some(&secrets), 1000 + 301), DigestVerdict::Stale);
        assert_eq!(auth.verify(&late, "GET", "/a", None, 1001), DigestVerdict::Invalid, "unknown user");
    }

    #[test]
    fn header_parsing() {
        let h = r#"Digest username="ad\"min", realm="portcullis", nonce="n1", uri="/x?a=b,c", algorithm=SHA-256, response="ab", qop=auth, nc=00000001, cnonce="c""#;
        let r = parse(h).expect("parses");
        assert_eq!(r.username, "ad\"min");
        assert_eq!(r.uri, "/x?a=b,c");
        assert_eq!(r.algorithm.as_deref(), Some("SHA-256"));
        assert_eq!(r.nc.as_deref(), Some("00000001"));
        assert!(parse("Digest").is_none());
        assert!(parse(r#"Digest username="unterminated"#).is_none());
        assert!(parse("Basic abc").is_none());
    }
}

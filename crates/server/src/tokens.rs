//! API tokens' secrets and records: a secret is 32 random bytes shown once
//! as `pcl_` + base64url, and stored only as HMAC-SHA256 under the device's
//! token key (`token.key`, 0600). A keyed hash, not argon2: the secret has
//! full entropy, so a slow hash would add nothing against guessing and cost
//! every request; the key means a copy of `users.json` alone does not even
//! let one check a leaked secret offline. The rules (names, scopes, expiry,
//! sources) are the core's ([`portcullis_core::tokens`]).

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use portcullis_core::access_control::IpNetwork;
use portcullis_core::tokens::{SECRET_PREFIX, TokenScope};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::store::{SECRET_MODE, Store, StoreError};

/// File name of the key the tokens' secrets are hashed with.
pub const TOKEN_KEY_FILE: &str = "token.key";
/// Longest `Authorization: Bearer` value looked at (a secret is 47 characters).
const MAX_SECRET_LEN: usize = 128;

/// The device's key for tokens' keyed hashes; never shown, never logged.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from 32 bytes (tests; the device's comes from [`TokenKey::load_or_create`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The data folder's key, made (32 random bytes, mode 0600) on first
    /// use. An unreadable key is moved aside and replaced: the tokens made
    /// with it stop working, which is safer than guessing.
    pub fn load_or_create(store: &Store, now_unix: i64) -> Result<Self, StoreError> {
        if let Some(bytes) = store.read(TOKEN_KEY_FILE)? {
            if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(Self(key));
            }
            let moved = store.move_aside(TOKEN_KEY_FILE, now_unix)?;
            tracing::error!(moved = %moved.display(), "the token key is unreadable: moved aside; existing API tokens no longer work");
        }
        let key: [u8; 32] = rand::random();
        store.write_atomic(TOKEN_KEY_FILE, &key, SECRET_MODE)?;
        Ok(Self(key))
    }

    /// The keyed hash of a secret, as stored (hex).
    pub fn hash(&self, secret: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A new secret: 32 random bytes, `pcl_` + base64url (47 characters).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The secret of an `Authorization: Bearer …` value, if it is one.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let secret = rest.trim();
    (!secret.is_empty() && secret.len() <= MAX_SECRET_LEN).then_some(secret)
}

/// One stored token (in the accounts file): never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its name, unique on the device.
    pub name: String,
    /// The account whose rights it uses.
    pub account: String,
    /// What it may do within them.
    pub scope: TokenScope,
    /// HMAC-SHA256 of the secret under the token key, hex.
    pub hash: String,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it stops working by itself; none: never.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The addresses it may be used from; empty: any.
    #[serde(default)]
    pub allowed_sources: Vec<IpNetwork>,
    /// When it was last used, as last written (the running server keeps newer uses in memory).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_used: Option<OffsetDateTime>,
}

/// A token as the API lists it (never the secret, nor its hash).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenView {
    /// Its name.
    pub name: String,
    /// The account whose rights it uses.
    pub account: String,
    /// `read-only`, `operator` or `administrator`.
    pub scope: TokenScope,
    /// When it was made (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created: OffsetDateTime,
    /// When it was last used (RFC 3339), or null.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used: Option<OffsetDateTime>,
    /// When it expires (RFC 3339), or null: never.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// The addresses and networks it may be used from; empty: any.
    #[schema(value_type = Vec<String>)]
    pub allowed_sources: Vec<IpNetwork>,
}

impl TokenRecord {
    /// The record as listed, with `last_used` as given.
    pub fn view(&self, last_used: Option<OffsetDateTime>) -> TokenView {
        TokenView {
            name: self.name.clone(),
            account: self.account.clone(),
            scope: self.scope,
            created: self.created,
            last_used,
            expires_at: self.expires_at,
            allowed_sources: self.allowed_sources.clone(),
        }
    }
}

/// What makes a token (API body, command line).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewToken {
    /// 1-64 characters: letters, digits, `.`, `_`, `-`; unique.
    pub name: String,
    /// `read-only`, `operator` or `administrator`; never wider than the account's rights.
    pub scope: TokenScope,
    /// The account it belongs to; default: the administrator making it.
    #[serde(default)]
    pub account: Option<String>,
    /// When it expires (RFC 3339); not with `expires_in_days`.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Days until it expires (1-3650); not with `expires_at`.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// Addresses or networks (`10.0.0.0/8`) it may be used from; default: any.
    #[serde(default)]
    pub allowed_sources: Vec<String>,
}

portcullis_core::input!(NewToken);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognisable_distinct_and_hashed_under_the_key() {
        let a = new_secret();
        let b = new_secret();
        assert!(a.starts_with("pcl_") && a.len() == 47, "{a}");
        assert_ne!(a, b);
        let key = TokenKey::from_bytes([7; 32]);
        assert_eq!(key.hash(&a), key.hash(&a));
        assert_ne!(key.hash(&a), TokenKey::from_bytes([8; 32]).hash(&a), "keyed");
        assert!(!key.hash(&a).contains(&a[4..]));
        assert_eq!(format!("{key:?}"), "TokenKey(..)");
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer pcl_abc"), Some("pcl_abc"));
        assert_eq!(bearer("bearer   pcl_abc "), Some("pcl_abc"));
        assert_eq!(bearer("Basic YWRtaW46eA=="), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer(&format!("Bearer {}", "a".repeat(200))), None);
    }

    #[test]
    fn the_key_is_made_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path().join("data")).expect("store");
        let k1 = TokenKey::load_or_create(&store, 0).expect("made");
        let k2 = TokenKey::load_or_create(&store, 0).expect("read");
        assert_eq!(k1.hash("x"), k2.hash("x"));
        let mode = std::fs::metadata(store.path(TOKEN_KEY_FILE)).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

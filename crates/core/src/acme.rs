//! The rules of automatic certificates (ACME, RFC 8555): the operator's
//! settings (typed, with defaults, normalization, validation and redaction
//! of the EAB secret) and when to renew or retry. The enrolment itself (the
//! protocol, the network) is `portcullis-acme`'s; scheduling is the server's.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::ErrorCode;
use crate::ValidationError;
use crate::certificate::KeyType;

/// Most identifiers one certificate may carry (Let's Encrypt's limit is 100).
pub const MAX_IDENTIFIERS: usize = 100;
/// Most contact addresses accepted; more is a typo, not a need.
pub const MAX_CONTACTS: usize = 10;
/// Longest directory URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Largest CA bundle accepted, in bytes.
pub const MAX_CA_BUNDLE_LEN: usize = 256 * 1024;
/// Longest EAB key id accepted.
pub const MAX_EAB_KEY_ID_LEN: usize = 256;
/// Shortest EAB HMAC key accepted, in decoded bytes (HS256 wants at least 256 bits,
/// but some CAs hand out 128-bit keys; below that it is surely a paste error).
pub const MIN_EAB_HMAC_KEY_BYTES: usize = 16;
/// The `mailto:` scheme every contact gets.
const MAILTO: &str = "mailto:";

/// How the ACME server validates control over the identifiers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Challenge {
    /// The CA fetches `http://<identifier>/.well-known/acme-challenge/<token>` on port 80.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// The CA opens TLS to `<identifier>:443` with ALPN `acme-tls/1` (RFC 8737).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl Challenge {
    /// The RFC 8555 name, as in the settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// The ACME enrolment settings of the device.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AcmeSettings {
    /// Whether the certificate is managed by ACME (enrolled and renewed automatically).
    pub enabled: bool,
    /// The ACME directory URL (https), e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// Contact addresses for the CA; `mailto:` is added where missing.
    pub contact: Vec<String>,
    /// The names the certificate is for: DNS names or IP addresses (where the CA allows).
    pub identifiers: Vec<String>,
    /// The challenge type answered by this device.
    pub challenge: Challenge,
    /// The certificate's key type.
    pub key_type: KeyType,
    /// External Account Binding key id, when the CA requires one.
    pub eab_key_id: Option<String>,
    /// External Account Binding HMAC key, base64url; a secret, never read back.
    pub eab_hmac_key: Option<String>,
    /// PEM certificates that sign the ACME server's own TLS certificate; when set,
    /// only these are trusted for it, else the system's trust store.
    pub ca_bundle_pem: Option<String>,
}

impl std::fmt::Debug for AcmeSettings {
    // Manual, so that the EAB key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeSettings")
            .field("enabled", &self.enabled)
            .field("directory_url", &self.directory_url)
            .field("contact", &self.contact)
            .field("identifiers", &self.identifiers)
            .field("challenge", &self.challenge)
            .field("key_type", &self.key_type)
            .field("eab_key_id", &self.eab_key_id)
            .field("eab_hmac_key", &self.eab_hmac_key.as_ref().map(|_| "[secret elided]"))
            .field("ca_bundle_pem", &self.ca_bundle_pem.as_ref().map(|p| format!("{} bytes", p.len())))
            .finish()
    }
}

/// A contact with `mailto:` in front unless it already has it (any case), trimmed.
pub fn normalize_contact(contact: &str) -> String {
    let c = contact.trim();
    match c.get(..MAILTO.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(MAILTO) => format!("{MAILTO}{}", &c[MAILTO.len()..]),
        _ => format!("{MAILTO}{c}"),
    }
}

/// An identifier as the CA and the CSR want it: trimmed, DNS names lowercased
/// without a trailing dot, IP addresses in their canonical text form.
pub fn normalize_identifier(identifier: &str) -> String {
    let t = identifier.trim();
    // Brackets are how IPv6 appears in URLs; operators paste them.
    let unbracketed = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(t);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return ip.to_string();
    }
    t.trim_end_matches('.').to_ascii_lowercase()
}

/// Trimmed value, `None` when absent or empty.
fn present(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// A parsed identifier: what the certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    /// A DNS name (lowercase, no trailing dot).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl Ident {
    /// Parses a normalized identifier.
    pub fn parse(s: &str) -> Result<Ident, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Ident::Ip(ip));
        }
        if s.starts_with("*.") {
            return Err(format!(
                "\"{}\": wildcard names need the dns-01 challenge, which this device does not answer",
                s.escape_debug()
            ));
        }
        if is_dns_name(s) {
            Ok(Ident::Dns(s.to_owned()))
        } else {
            Err(format!("\"{}\" is neither a DNS name nor an IP address", s.escape_debug()))
        }
    }
}

/// Hostname rules (RFC 1123): labels of letters, digits and hyphens, not
/// starting or ending with a hyphen, 1..=63 characters, 253 in total; the
/// last label not all digits (it would read as a malformed IPv4 address).
fn is_dns_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) && labels.last().is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// A plausible e-mail address: `local@domain`, no spaces or specials.
fn is_email(addr: &str) -> bool {
    if addr.len() > 254
        || addr.chars().any(|c| c.is_control() || c.is_whitespace() || "<>\",;()[]\\".contains(c))
    {
        return false;
    }
    let Some((local, domain)) = addr.rsplit_once('@') else { return false };
    !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && is_dns_name(&domain.to_ascii_lowercase())
}

/// Decodes an EAB HMAC key: base64url as CAs hand it out, padded or not.
pub fn decode_eab_key(key: &str) -> Option<Vec<u8>> {
    let key = key.trim();
    URL_SAFE_NO_PAD.decode(key).or_else(|_| URL_SAFE.decode(key)).ok()
}

/// The certificates of the `ca_bundle_pem` setting (at most
/// [`MAX_CA_BUNDLE_LEN`] bytes), each usable as a trust anchor.
pub fn parse_ca_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::trust::parse_ca_bundle(pem, MAX_CA_BUNDLE_LEN)
}

impl AcmeSettings {
    /// A copy with contacts prefixed by `mailto:`, identifiers normalized and
    /// deduplicated, empty optional strings turned into `None`.
    pub fn normalized(&self) -> Self {
        let mut seen = BTreeSet::new();
        let identifiers = self
            .identifiers
            .iter()
            .map(|i| normalize_identifier(i))
            .filter(|i| !i.is_empty() && seen.insert(i.clone()))
            .collect();
        let mut seen = BTreeSet::new();
        let contact = self
            .contact
            .iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| normalize_contact(c))
            .filter(|c| seen.insert(c.clone()))
            .collect();
        Self {
            enabled: self.enabled,
            directory_url: self.directory_url.trim().to_owned(),
            contact,
            identifiers,
            challenge: self.challenge,
            key_type: self.key_type,
            eab_key_id: present(&self.eab_key_id),
            eab_hmac_key: present(&self.eab_hmac_key),
            ca_bundle_pem: present(&self.ca_bundle_pem),
        }
    }

    /// A copy without the EAB HMAC key, for API reads and configuration downloads.
    pub fn redacted(&self) -> Self {
        Self { eab_hmac_key: None, ..self.clone() }
    }

    /// `self` with an omitted EAB HMAC key taken from `old` when the key id is
    /// unchanged, so that a PUT of a redacted read keeps the secret.
    pub fn merge_secrets(mut self, old: &AcmeSettings) -> Self {
        if self.eab_hmac_key.is_none() && self.eab_key_id.is_some() && self.eab_key_id == old.eab_key_id {
            self.eab_hmac_key.clone_from(&old.eab_hmac_key);
        }
        self
    }

    /// Checks the settings. Formats are always checked; the directory URL and
    /// at least one identifier are required only while `enabled` (see
    /// [`AcmeSettings::validate_for_enrolment`]). Call on [`AcmeSettings::normalized`] settings.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.check(self.enabled)
    }

    /// Checks the settings as an enrolment needs them, whether enabled or not.
    pub fn validate_for_enrolment(&self) -> Result<(), ValidationError> {
        self.check(true)
    }

    fn check(&self, complete: bool) -> Result<(), ValidationError> {
        let url = self.directory_url.trim();
        if url.is_empty() {
            if complete {
                return Err(ValidationError::new(
                    "directory_url",
                    ErrorCode::Required,
                    "the ACME directory URL is required, e.g. https://acme-v02.api.letsencrypt.org/directory",
                ));
            }
        } else {
            check_url(url).map_err(|m| ValidationError::new("directory_url", ErrorCode::InvalidUrl, m))?;
        }

        if self.contact.len() > MAX_CONTACTS {
            return Err(ValidationError::new(
                "contact",
                ErrorCode::TooMany,
                format!("at most {MAX_CONTACTS} contacts are allowed"),
            ));
        }
        for (i, c) in self.contact.iter().enumerate() {
            let n = normalize_contact(c);
            let addr = &n[MAILTO.len()..];
            if !is_email(addr) {
                return Err(ValidationError::new(
                    format!("contact[{i}]"),
                    ErrorCode::InvalidAddress,
                    format!("\"{}\" is not an e-mail address like name@example.com", addr.escape_debug()),
                ));
            }
        }

        if self.identifiers.is_empty() && complete {
            return Err(ValidationError::new(
                "identifiers",
                ErrorCode::Required,
                "at least one identifier (DNS name or IP address) is required",
            ));
        }
        if self.identifiers.len() > MAX_IDENTIFIERS {
            return Err(ValidationError::new(
                "identifiers",
                ErrorCode::TooMany,
                format!("at most {MAX_IDENTIFIERS} identifiers are allowed"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, raw) in self.identifiers.iter().enumerate() {
            let id = normalize_identifier(raw);
            Ident::parse(&id).map_err(|m| {
                ValidationError::new(format!("identifiers[{i}]"), ErrorCode::InvalidIdentifier, m)
            })?;
            if !seen.insert(id.clone()) {
                return Err(ValidationError::new(
                    format!("identifiers[{i}]"),
                    ErrorCode::Duplicate,
                    format!("\"{id}\" is listed twice"),
                ));
            }
        }

        let key_id = present(&self.eab_key_id);
        let hmac = present(&self.eab_hmac_key);
        match (&key_id, &hmac) {
            (Some(_), None) => {
                return Err(ValidationError::new(
                    "eab_hmac_key",
                    ErrorCode::Required,
                    "an External Account Binding key id needs its HMAC key",
                ));
            }
            (None, Some(_)) => {
                return Err(ValidationError::new(
                    "eab_key_id",
                    ErrorCode::Required,
                    "an External Account Binding HMAC key needs its key id",
                ));
            }
            _ => {}
        }
        if let Some(id) = &key_id
            && (id.len() > MAX_EAB_KEY_ID_LEN || id.chars().any(char::is_control))
        {
            return Err(ValidationError::new(
                "eab_key_id",
                ErrorCode::InvalidKeyId,
                format!("the key id must be at most {MAX_EAB_KEY_ID_LEN} printable characters"),
            ));
        }
        if let Some(key) = &hmac {
            // The message never repeats the key: it is a secret.
            match decode_eab_key(key) {
                Some(bytes) if bytes.len() >= MIN_EAB_HMAC_KEY_BYTES => {}
                Some(_) => {
                    return Err(ValidationError::new(
                        "eab_hmac_key",
                        ErrorCode::InvalidKey,
                        format!(
                            "the HMAC key is too short: at least {MIN_EAB_HMAC_KEY_BYTES} bytes are needed"
                        ),
                    ));
                }
                None => {
                    return Err(ValidationError::new(
                        "eab_hmac_key",
                        ErrorCode::InvalidKey,
                        "the HMAC key must be base64url, as the CA hands it out",
                    ));
                }
            }
        }

        if let Some(pem) = present(&self.ca_bundle_pem) {
            parse_ca_bundle(&pem)
                .map_err(|m| ValidationError::new("ca_bundle_pem", ErrorCode::InvalidPem, m))?;
        }
        Ok(())
    }

    /// The parsed identifiers (of normalized, validated settings).
    pub fn parsed_identifiers(&self) -> Result<Vec<Ident>, ValidationError> {
        self.identifiers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ident::parse(&normalize_identifier(s)).map_err(|m| {
                    ValidationError::new(format!("identifiers[{i}]"), ErrorCode::InvalidIdentifier, m)
                })
            })
            .collect()
    }
}

/// An `https://host[:port]/path` URL, as RFC 8555 §6.1 requires.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("at most {MAX_URL_LEN} characters are allowed"));
    }
    let uri: http::Uri = url.parse().map_err(|_| format!("\"{}\" is not a URL", url.escape_debug()))?;
    if uri.scheme_str() != Some("https") {
        return Err("the ACME directory URL must start with https:// (RFC 8555 requires TLS)".to_owned());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the ACME directory URL has no host".to_owned());
    }
    Ok(())
}

/// First retry delay after a failed enrolment.
pub const BACKOFF_BASE: Duration = Duration::from_secs(60);
/// Longest retry delay: a CA outage should not keep a renewal waiting for days.
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 60 * 60);

/// When to renew: two thirds into the lifetime, as Let's Encrypt advises
/// (30 days before the end of a 90-day certificate). A certificate whose
/// `not_after` precedes `not_before` is due at once (`not_before`).
pub fn renewal_time(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    let lifetime = not_after - not_before;
    if lifetime.is_negative() {
        return not_before;
    }
    not_before + lifetime * 2 / 3
}

/// Delay before retry number `attempt` (0 = the first retry): 1 min, 2, 4,
/// ... doubled each time, capped at [`BACKOFF_MAX`] (6 h).
pub fn backoff(attempt: u32) -> Duration {
    // 2^9 min > 6 h already: capping the exponent avoids overflow.
    let factor = 1u32 << attempt.min(9);
    (BACKOFF_BASE * factor).min(BACKOFF_MAX)
}

/// When to try again after `failures` failed enrolments in a row, the last at `now`.
pub fn retry_time(now: OffsetDateTime, failures: u32) -> OffsetDateTime {
    now + backoff(failures)
}

/// When the renewal task should act next, if ever: never while ACME is off;
/// at `next_renewal` when one is planned (renewal or retry); at once
/// (`now`) when switched on and the certificate in use is not ACME's yet.
pub fn next_due(
    enabled: bool,
    managed: bool,
    next_renewal: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    if !enabled {
        return None;
    }
    match next_renewal {
        Some(next) => Some(next),
        None if !managed => Some(now),
        None => None,
    }
}

/// Whether the renewal task should enrol now.
pub fn is_due(
    enabled: bool,
    managed: bool,
    next_renewal: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    next_due(enabled, managed, next_renewal, now).is_some_and(|due| due <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> AcmeSettings {
        AcmeSettings {
            enabled: true,
            directory_url: "https://acme.example.com/directory".into(),
            contact: vec!["ops@example.com".into()],
            identifiers: vec!["camera.example.com".into(), "192.0.2.7".into()],
            ..AcmeSettings::default()
        }
    }

    fn code(s: &AcmeSettings) -> Option<(String, String)> {
        s.validate().err().map(|e| (e.field, e.code.as_str().to_owned()))
    }

    fn err(field: &str, code: &str) -> Option<(String, String)> {
        Some((field.to_owned(), code.to_owned()))
    }

    #[test]
    fn defaults_and_omitted_fields() {
        let s: AcmeSettings = serde_json::from_str("{}").expect("parses");
        assert_eq!(s, AcmeSettings::default());
        assert!(!s.enabled);
        assert_eq!(s.challenge, Challenge::Http01);
        assert_eq!(s.validate(), Ok(()), "disabled and empty is fine");
        let s: AcmeSettings = serde_json::from_str(
            r#"{"directory_url":"https://a.example/dir","identifiers":["a.example"],"challenge":"tls-alpn-01","key_type":"ecdsa-p256"}"#,
        )
        .expect("parses");
        assert_eq!(s.challenge, Challenge::TlsAlpn01);
        assert_eq!(s.key_type, KeyType::EcdsaP256);
        assert!(serde_json::from_str::<AcmeSettings>(r#"{"challenge":"dns-01"}"#).is_err());
    }

    #[test]
    fn contacts_get_mailto() {
        assert_eq!(normalize_contact(" ops@example.com "), "mailto:ops@example.com");
        assert_eq!(normalize_contact("mailto:ops@example.com"), "mailto:ops@example.com");
        assert_eq!(normalize_contact("MAILTO:ops@example.com"), "mailto:ops@example.com");
        let mut s = valid();
        s.contact =
            vec!["a@example.com".into(), "mailto:a@example.com".into(), " ".into(), "b@example.com".into()];
        assert_eq!(s.normalized().contact, vec!["mailto:a@example.com", "mailto:b@example.com"]);
    }

    #[test]
    fn identifiers_are_normalized() {
        let mut s = valid();
        s.identifiers = vec![
            " Camera.Example.COM. ".into(),
            "camera.example.com".into(),
            "[2001:DB8::1]".into(),
            "".into(),
        ];
        let n = s.normalized();
        assert_eq!(n.identifiers, vec!["camera.example.com", "2001:db8::1"]);
        assert_eq!(n.validate(), Ok(()));
        assert_eq!(n.normalized(), n, "idempotent");
    }

    #[test]
    fn validation() {
        assert_eq!(code(&valid()), None);
        let mut s = valid();
        s.directory_url = String::new();
        assert_eq!(code(&s), err("directory_url", "required"));
        s.enabled = false;
        assert_eq!(code(&s), None);
        assert_eq!(
            s.validate_for_enrolment().map_err(|e| e.code),
            Err(ErrorCode::Required),
            "an enrolment needs the URL even when disabled"
        );
        for bad in ["http://acme.example.com/dir", "acme.example.com", "https:///dir", "ftp://x/"] {
            let mut s = valid();
            s.directory_url = bad.into();
            assert_eq!(code(&s), err("directory_url", "invalid_url"), "{bad}");
        }
        let mut s = valid();
        s.contact = vec!["ops@example.com".into(), "not an address".into()];
        assert_eq!(code(&s), err("contact[1]", "invalid_address"));
        let mut s = valid();
        s.identifiers.clear();
        assert_eq!(code(&s), err("identifiers", "required"));
        for bad in ["*.example.com", "a b", "under_score.example", "999.1.1.1", "-a.example"] {
            let mut s = valid();
            s.identifiers = vec![bad.into()];
            assert_eq!(code(&s), err("identifiers[0]", "invalid_identifier"), "{bad}");
        }
        let mut s = valid();
        s.identifiers = vec!["a.example".into(), "A.example.".into()];
        assert_eq!(code(&s), err("identifiers[1]", "duplicate"));
        let mut s = valid();
        s.identifiers = (0..=MAX_IDENTIFIERS).map(|i| format!("h{i}.example")).collect();
        assert_eq!(code(&s), err("identifiers", "too_many"));
    }

    #[test]
    fn eab_validation_never_echoes_the_key() {
        let key = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let mut s = valid();
        s.eab_key_id = Some("kid-1".into());
        assert_eq!(code(&s), err("eab_hmac_key", "required"));
        s.eab_hmac_key = Some(key.clone());
        assert_eq!(code(&s), None);
        s.eab_hmac_key = Some(format!("{key}=="));
        assert_eq!(code(&s), err("eab_hmac_key", "invalid_key"), "bad padding");
        s.eab_hmac_key = Some(URL_SAFE.encode([7u8; 32]));
        assert_eq!(code(&s), None, "padded base64url is accepted");
        s.eab_hmac_key = Some("secret+/not-url-safe!".into());
        let e = s.validate().expect_err("invalid");
        assert!(!e.message.contains("secret"), "{}", e.message);
        s.eab_hmac_key = Some(URL_SAFE_NO_PAD.encode([7u8; 8]));
        assert_eq!(code(&s), err("eab_hmac_key", "invalid_key"), "too short");
        s.eab_key_id = None;
        assert_eq!(code(&s), err("eab_key_id", "required"));
        // The pebble example key.
        assert!(decode_eab_key("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W").is_some());
    }

    #[test]
    fn redaction_and_merge() {
        let mut s = valid();
        s.eab_key_id = Some("kid-1".into());
        s.eab_hmac_key = Some(URL_SAFE_NO_PAD.encode([7u8; 32]));
        let r = s.redacted();
        assert_eq!(r.eab_hmac_key, None);
        assert_eq!(r.eab_key_id.as_deref(), Some("kid-1"));
        assert!(!format!("{s:?}").contains(s.eab_hmac_key.as_deref().unwrap_or("?")));
        assert!(!serde_json::to_string(&r).expect("json").contains("AcHBwcHBw"));
        assert_eq!(r.clone().merge_secrets(&s), s, "a PUT of the read keeps the key");
        let mut other = r.clone();
        other.eab_key_id = Some("kid-2".into());
        assert_eq!(other.merge_secrets(&s).eab_hmac_key, None, "a new key id needs its own key");
    }

    #[test]
    fn ca_bundle() {
        let mut s = valid();
        s.ca_bundle_pem = Some("garbage".into());
        assert_eq!(code(&s), err("ca_bundle_pem", "invalid_pem"));
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).expect("cert");
        s.ca_bundle_pem = Some(ca.cert.pem());
        assert_eq!(code(&s), None);
        s.ca_bundle_pem = Some("   ".into());
        assert_eq!(s.normalized().ca_bundle_pem, None);
    }

    use time::macros::datetime;

    #[test]
    fn renewal_at_two_thirds() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(renewal_time(nb, nb + time::Duration::days(90)), nb + time::Duration::days(60));
        assert_eq!(renewal_time(nb, nb + time::Duration::seconds(300)), nb + time::Duration::seconds(200));
        assert_eq!(renewal_time(nb, nb), nb);
        assert_eq!(renewal_time(nb, nb - time::Duration::days(1)), nb, "inverted validity renews at once");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let minutes: Vec<u64> = (0..12).map(|a| backoff(a).as_secs() / 60).collect();
        assert_eq!(minutes, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 360, 360, 360]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(retry_time(now, 1), now + time::Duration::minutes(2));
        assert_eq!(retry_time(now, u32::MAX), now + time::Duration::hours(6));
    }

    #[test]
    fn due_edges_on_the_clock() {
        let now = datetime!(2026-03-01 12:00 UTC);
        let second = time::Duration::seconds(1);
        // Off: never, whatever is planned.
        assert_eq!(next_due(false, false, Some(now), now), None);
        assert!(!is_due(false, false, None, now));
        // On and not yet managed: at once.
        assert_eq!(next_due(true, false, None, now), Some(now));
        assert!(is_due(true, false, None, now));
        // Managed without a plan (cannot happen after an enrolment): never.
        assert_eq!(next_due(true, true, None, now), None);
        // Planned: due from that instant on, not a second before.
        assert!(!is_due(true, true, Some(now + second), now));
        assert!(is_due(true, true, Some(now), now));
        assert!(is_due(true, true, Some(now - second), now));
        assert!(!is_due(true, false, Some(now + second), now), "a planned retry waits");
    }
}

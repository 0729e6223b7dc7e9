//! Generating a key, a self-signed certificate and a CSR for the same key.
//!
//! # Randomness
//!
//! The caller passes the random source ([`CryptoRng`]) the serial numbers are
//! drawn from, so tests can fix them. The keys cannot take it: rcgen asks
//! aws-lc-rs for them, whose random-source trait is sealed (no caller may
//! implement it) and whose key generation (and ECDSA signing) ignores the
//! source passed in and draws from AWS-LC's own generator, seeded by the
//! operating system. That is the one source a key should come from anyway.

use std::net::IpAddr;

use rand::CryptoRng;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::CertError;

/// Longest validity accepted: 10 years, as the seed's certificates.
pub const MAX_VALIDITY_DAYS: u32 = 3650;
/// Validity above which Apple platforms refuse a trusted TLS certificate.
pub const APPLE_MAX_VALIDITY_DAYS: u32 = 825;
/// The warning given when the validity exceeds [`APPLE_MAX_VALIDITY_DAYS`].
pub const APPLE_VALIDITY_WARNING: &str =
    "Apple platforms refuse trusted certificates valid for more than 825 days";
/// Organization of the factory certificate.
pub const FACTORY_ORGANIZATION: &str = "portcullis factory certificate";
/// Longest accepted subject attribute (state, locality, O, OU), in characters.
const MAX_ATTRIBUTE_CHARS: usize = 128;
/// Backdating of `not_before`, so that clients with a slightly slow clock
/// accept a certificate generated a moment ago.
const BACKDATE: Duration = Duration::minutes(5);
/// `notBefore` of the factory certificate: the Unix epoch, the earliest time a
/// device clock that was never set can show, so the certificate has begun
/// whatever the clock of the device that made it, or of a client (say, a
/// recorder on an isolated network with no NTP either), says.
pub const FACTORY_NOT_BEFORE: OffsetDateTime = time::macros::datetime!(1970-01-01 00:00:00 UTC);
/// `notAfter` of the factory certificate: 9999-12-31T23:59:59Z, which RFC 5280
/// §4.1.2.5 sets aside for a certificate with no well-defined expiration, as
/// device identity certificates (IEEE 802.1AR) use. The factory certificate is
/// the device's own identity for its lifetime; a first start with the clock
/// still in 1970 must not make one that expires in 1980 and is served
/// expired for good once NTP sets the clock.
pub const FACTORY_NOT_AFTER: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59 UTC);
/// OID of the PKCS#9 emailAddress attribute.
const OID_EMAIL_ADDRESS: [u64; 7] = [1, 2, 840, 113549, 1, 9, 1];

pub use portcullis_core::certificate::KeyType;

/// The "generate" form: subject of a new self-signed certificate and CSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GenerateRequest {
    /// Common name (required): a DNS name or an IP address; also the subjectAltName.
    pub common_name: String,
    /// Country, two letters (uppercased).
    #[serde(default)]
    pub country: Option<String>,
    /// State or province.
    #[serde(default)]
    pub state: Option<String>,
    /// Locality (city).
    #[serde(default)]
    pub locality: Option<String>,
    /// Organization.
    #[serde(default)]
    pub organization: Option<String>,
    /// Organizational unit.
    #[serde(default)]
    pub organizational_unit: Option<String>,
    /// Contact e-mail address (loosely checked: one `@`, no spaces).
    #[serde(default)]
    pub email: Option<String>,
    /// Key to generate.
    #[serde(default)]
    pub key_type: KeyType,
    /// Validity of the self-signed certificate in days, 1..=3650.
    #[serde(default = "default_validity_days")]
    #[schema(default = 3650, minimum = 1, maximum = 3650)]
    pub validity_days: u32,
}

portcullis_core::input!(GenerateRequest);

fn default_validity_days() -> u32 {
    MAX_VALIDITY_DAYS
}

impl GenerateRequest {
    /// A request with only a common name; everything else at its default.
    pub fn new(common_name: impl Into<String>) -> Self {
        GenerateRequest {
            common_name: common_name.into(),
            country: None,
            state: None,
            locality: None,
            organization: None,
            organizational_unit: None,
            email: None,
            key_type: KeyType::default(),
            validity_days: MAX_VALIDITY_DAYS,
        }
    }
}

/// The result of a generation: PEM texts and warnings for the operator.
#[derive(Clone, PartialEq, Eq)]
pub struct Generated {
    /// The self-signed certificate (the whole chain), PEM.
    pub chain_pem: String,
    /// The new private key, PKCS#8 PEM (`PRIVATE KEY`).
    pub key_pem: String,
    /// A PKCS#10 certificate signing request for the same key and subject, PEM.
    pub csr_pem: String,
    /// Things the operator should know, one sentence each.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated")
            .field("chain_pem", &self.chain_pem)
            .field("key_pem", &"[secret key elided]")
            .field("csr_pem", &self.csr_pem)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// A subject name accepted in a certificate: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostName {
    Dns(String),
    Ip(IpAddr),
}

impl HostName {
    fn parse(s: &str) -> Result<HostName, CertError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(HostName::Ip(ip));
        }
        if is_dns_name(s) {
            Ok(HostName::Dns(s.to_ascii_lowercase()))
        } else {
            Err(CertError::InvalidCommonName)
        }
    }

    fn text(&self) -> String {
        match self {
            HostName::Dns(d) => d.clone(),
            HostName::Ip(ip) => ip.to_string(),
        }
    }

    fn san(&self) -> Result<SanType, CertError> {
        Ok(match self {
            HostName::Dns(d) => {
                SanType::DnsName(d.as_str().try_into().map_err(|_| CertError::InvalidCommonName)?)
            }
            HostName::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

/// Hostname rules (RFC 1123): labels of letters, digits and hyphens, not
/// starting or ending with a hyphen, 1..=63 characters, 253 in total. A
/// leading `*` label (wildcard, for CSRs sent to a CA) is allowed when at
/// least two labels follow. A name whose last label is all digits is refused
/// because browsers would take it for a malformed IPv4 address.
fn is_dns_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let wildcard = labels.first() == Some(&"*");
    if wildcard && labels.len() < 3 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let rest = if wildcard { &labels[1..] } else { &labels[..] };
    rest.iter().all(|l| label_ok(l)) && rest.last().is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// Trimmed value, `None` when absent or empty.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn check_attribute(value: &str, field: &'static str) -> Result<(), CertError> {
    if value.chars().count() > MAX_ATTRIBUTE_CHARS || value.chars().any(char::is_control) {
        return Err(CertError::InvalidAttribute { field });
    }
    Ok(())
}

/// The checked subject of a request.
struct Subject {
    host: HostName,
    dn: DistinguishedName,
}

fn subject(req: &GenerateRequest) -> Result<Subject, CertError> {
    let host = HostName::parse(req.common_name.trim())?;
    let mut dn = DistinguishedName::new();
    if let Some(c) = present(&req.country) {
        if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(CertError::InvalidCountry);
        }
        let c = c.to_ascii_uppercase();
        let printable = c.as_str().try_into().map_err(|_| CertError::InvalidCountry)?;
        dn.push(DnType::CountryName, DnValue::PrintableString(printable));
    }
    for (value, field, ty) in [
        (&req.state, "state", DnType::StateOrProvinceName),
        (&req.locality, "locality", DnType::LocalityName),
        (&req.organization, "organization", DnType::OrganizationName),
        (&req.organizational_unit, "organizational_unit", DnType::OrganizationalUnitName),
    ] {
        if let Some(v) = present(value) {
            check_attribute(v, field)?;
            dn.push(ty, DnValue::Utf8String(v.to_owned()));
        }
    }
    dn.push(DnType::CommonName, DnValue::Utf8String(host.text()));
    if let Some(e) = present(&req.email) {
        let ok = e.matches('@').count() == 1
            && !e.starts_with('@')
            && !e.ends_with('@')
            && e.len() <= 254
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        let ia5 = e.try_into().map_err(|_| CertError::InvalidEmail)?;
        if !ok {
            return Err(CertError::InvalidEmail);
        }
        dn.push(DnType::CustomDnType(OID_EMAIL_ADDRESS.to_vec()), DnValue::Ia5String(ia5));
    }
    Ok(Subject { host, dn })
}

/// Random positive 16-byte serial from `rng` (top bit cleared; never a
/// leading zero byte, so the DER INTEGER is always 16 bytes long). 127 bits
/// of randomness, more than the 64 the CA/Browser Forum requires.
fn random_serial(rng: &mut (impl CryptoRng + ?Sized)) -> SerialNumber {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7F;
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    SerialNumber::from_slice(&bytes)
}

fn failed(e: rcgen::Error) -> CertError {
    CertError::GenerationFailed { detail: e.to_string() }
}

/// A new key pair of `key_type`, for rcgen to sign certificates and CSRs with.
///
/// With aws-lc-rs the provider generates both kinds. ring cannot generate RSA
/// keys: then the `rsa` crate (RustCrypto) generates the 2048-bit key, and
/// everything after that (self-signature, CSR signature, TLS handshakes) is
/// done by ring with the PKCS#8 key it hands over. Why that is safe:
///
/// * RUSTSEC-2023-0071 ("Marvin") is a timing side channel in the `rsa`
///   crate's private-key *operations* (PKCS#1 v1.5 decryption, signing),
///   measured by an attacker who submits many ciphertexts or messages and
///   times the answers. Generation takes no input from anyone: it runs once,
///   at the operator's request, on random primes, and no attacker can ask for
///   it repeatedly with inputs of its choice or see a private-key operation
///   of this crate, because there is none — the key leaves it as PKCS#8 DER.
///   (`rsa` 0.10 has moved its arithmetic to the constant-time crypto-bigint
///   besides.)
/// * The primes come from the operating system's CSPRNG (`rand`'s thread
///   generator, seeded from `getrandom`), are tested by crypto-primes
///   (Miller-Rabin and Lucas, FIPS 186-5 style), e = 65537, and the crate
///   validates the key (`rsa::PrivateKey::new`); ring validates it again when it loads it (it refuses
///   inconsistent or small keys), so a bad key cannot reach the TLS server.
/// * `deny.toml` allows `rsa` only as a dependency of this crate.
pub fn new_key_pair(key_type: KeyType) -> Result<KeyPair, CertError> {
    match key_type {
        #[cfg(feature = "aws-lc-rs")]
        KeyType::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(failed),
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        KeyType::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::PrivateKey::new(&mut rand::rng(), 2048)
                .map_err(|e| CertError::GenerationFailed { detail: format!("RSA key generation: {e}") })?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| CertError::GenerationFailed { detail: format!("RSA key encoding: {e}") })?;
            let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
            KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).map_err(failed)
        }
        KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed),
    }
}

/// Builds key, self-signed certificate and CSR from finished parameters.
fn issue(
    mut params: CertificateParams,
    key_type: KeyType,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<(String, String, String), CertError> {
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = new_key_pair(key_type)?;

    // rcgen refuses a serial number in CSR parameters (UnsupportedInCsr):
    // the CSR gets a copy without it.
    let mut csr_params = params.clone();
    csr_params.serial_number = None;
    let csr = csr_params.serialize_request(&key).map_err(failed)?.pem().map_err(failed)?;

    params.serial_number = Some(random_serial(rng));
    // Authority Key Identifier = its own Subject Key Identifier (self-signed):
    // RFC 5280 asks for it, and path builders and linters look for it.
    params.use_authority_key_identifier_extension = true;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem(), csr))
}

/// Generates a new key, a self-signed certificate and a CSR for it.
///
/// The certificate is v3 with SAN = the common name (DNS or IP), key usage
/// digitalSignature + keyEncipherment, extended key usage serverAuth,
/// CA:FALSE, a random 16-byte serial, valid from `now` - 5 minutes for
/// `validity_days`, its serial drawn from `rng`. RSA-2048 keys take tens to
/// hundreds of milliseconds: call this off the async executor.
pub fn generate(
    req: &GenerateRequest,
    now: OffsetDateTime,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Generated, CertError> {
    if !(1..=MAX_VALIDITY_DAYS).contains(&req.validity_days) {
        return Err(CertError::InvalidValidity { days: req.validity_days });
    }
    let Subject { host, dn } = subject(req)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.subject_alt_names = vec![host.san()?];
    let not_after = now + Duration::days(i64::from(req.validity_days));
    let (chain_pem, key_pem, csr_pem) = issue(params, req.key_type, now - BACKDATE, not_after, rng)?;
    let mut warnings = Vec::new();
    if req.validity_days > APPLE_MAX_VALIDITY_DAYS {
        warnings.push(APPLE_VALIDITY_WARNING.to_owned());
    }
    Ok(Generated { chain_pem, key_pem, csr_pem, warnings })
}

/// Generates the device's own, unique factory certificate.
///
/// ECDSA P-256 (generated in well under a millisecond), CN = the first usable
/// host name (else `localhost`), SAN = every usable host name, `localhost`
/// and every address, O = [`FACTORY_ORGANIZATION`], valid from
/// [`FACTORY_NOT_BEFORE`] to [`FACTORY_NOT_AFTER`]: its validity does not
/// depend on the device's clock, which may not be set yet at the first start.
/// Its serial is drawn from `rng`. Host names that are not valid DNS names
/// (the system may report anything) are left out rather than failing the
/// device's start.
pub fn factory_certificate(
    host_names: &[String],
    addresses: &[IpAddr],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Generated, CertError> {
    let mut names: Vec<HostName> = Vec::new();
    let candidates =
        host_names.iter().map(|h| h.trim().trim_end_matches('.')).chain(std::iter::once("localhost"));
    for name in candidates {
        if let Ok(host) = HostName::parse(name)
            && !names.contains(&host)
        {
            names.push(host);
        }
    }
    for ip in addresses {
        let host = HostName::Ip(*ip);
        if !names.contains(&host) {
            names.push(host);
        }
    }
    let cn = names.first().map_or_else(|| "localhost".to_owned(), HostName::text);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, FACTORY_ORGANIZATION);
    dn.push(DnType::CommonName, cn);
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.subject_alt_names = names.iter().map(HostName::san).collect::<Result<_, _>>()?;
    let (chain_pem, key_pem, csr_pem) =
        issue(params, KeyType::EcdsaP256, FACTORY_NOT_BEFORE, FACTORY_NOT_AFTER, rng)?;
    Ok(Generated { chain_pem, key_pem, csr_pem, warnings: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for ok in ["camera", "camera.example.com", "a-b.c", "*.example.com", "xn--mnchen-3ya.de"] {
            assert!(is_dns_name(ok), "{ok}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 5].join(".");
        for bad in [
            "",
            "has space.com",
            "-a.com",
            "a-.com",
            "a..b",
            ".a",
            "a.",
            "under_score",
            "*.com",
            "a.*.com",
            "999.1.1.1",
            long_label.as_str(),
            long_name.as_str(),
            "münchen.de",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn common_name_may_be_ip() {
        assert_eq!(HostName::parse("192.168.0.90"), Ok(HostName::Ip("192.168.0.90".parse().expect("ip"))));
        assert!(matches!(HostName::parse("fe80::1"), Ok(HostName::Ip(_))));
        assert_eq!(HostName::parse("a b"), Err(CertError::InvalidCommonName));
    }

    #[test]
    fn request_validation() {
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        let code =
            |req: GenerateRequest| generate(&req, now, &mut rand::rng()).err().map(|e| e.code().as_str());
        let base = || {
            let mut r = GenerateRequest::new("camera.local");
            r.key_type = KeyType::EcdsaP256;
            r
        };
        assert_eq!(code(base()), None);
        let mut r = base();
        r.country = Some("Deu".into());
        assert_eq!(code(r), Some("invalid_country"));
        let mut r = base();
        r.country = Some("d1".into());
        assert_eq!(code(r), Some("invalid_country"));
        let mut r = base();
        r.email = Some("a@b@c".into());
        assert_eq!(code(r), Some("invalid_email"));
        let mut r = base();
        r.email = Some("a b@c".into());
        assert_eq!(code(r), Some("invalid_email"));
        let mut r = base();
        r.validity_days = 0;
        assert_eq!(code(r), Some("invalid_validity"));
        let mut r = base();
        r.validity_days = 3651;
        assert_eq!(code(r), Some("invalid_validity"));
        let mut r = base();
        r.organization = Some("x".repeat(129));
        assert_eq!(code(r), Some("invalid_attribute"));
        let mut r = base();
        r.common_name = "not a host".into();
        assert_eq!(code(r), Some("invalid_common_name"));
        // Empty optional strings count as absent.
        let mut r = base();
        r.country = Some(String::new());
        r.email = Some("  ".into());
        assert_eq!(code(r), None);
    }

    /// RSA-2048 with the build's provider (with ring: generated by the `rsa`
    /// crate, then loaded and used by ring): a 2048-bit key the TLS side can
    /// sign with, and a certificate and CSR signed with it.
    #[test]
    fn rsa_2048_keys_are_generated_and_usable_with_this_provider() {
        let key = new_key_pair(KeyType::Rsa2048).expect("generates");
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = crate::crypto::load_signing_key(&der).expect("the provider loads it");
        assert_eq!(signing.algorithm(), rustls::SignatureAlgorithm::RSA);
        let signer = signing.choose_scheme(&[rustls::SignatureScheme::RSA_PSS_SHA256]).expect("PSS");
        assert_eq!(signer.sign(b"handshake").expect("signs").len(), 256, "a 2048-bit signature");
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        let g = generate(&GenerateRequest::new("camera.local"), now, &mut rand::rng()).expect("generates");
        let der = ::pem::parse(&g.chain_pem).expect("pem").into_contents();
        let (_, cert) = <x509_parser::prelude::X509Certificate as x509_parser::prelude::FromDer<
            x509_parser::error::X509Error,
        >>::from_der(&der)
        .expect("parses");
        let spki = cert.public_key().parsed().expect("key");
        assert!(matches!(spki, x509_parser::public_key::PublicKey::RSA(ref k) if k.key_size() == 2048));
        assert!(crate::intake::csr_pem_is_valid(g.csr_pem.as_bytes()));
        // Two keys are never the same.
        let other = new_key_pair(KeyType::Rsa2048).expect("generates");
        assert_ne!(other.serialize_der(), key.serialize_der());
    }

    #[test]
    fn apple_warning_only_above_825_days() {
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        let mut r = GenerateRequest::new("camera.local");
        r.key_type = KeyType::EcdsaP256;
        r.validity_days = 825;
        assert!(generate(&r, now, &mut rand::rng()).expect("generates").warnings.is_empty());
        r.validity_days = 826;
        assert_eq!(
            generate(&r, now, &mut rand::rng()).expect("generates").warnings,
            vec![APPLE_VALIDITY_WARNING.to_owned()]
        );
    }

    #[test]
    fn serde_names_and_defaults() {
        let r: GenerateRequest =
            serde_json::from_str(r#"{"common_name":"cam","key_type":"ecdsa-p256"}"#).expect("parses");
        assert_eq!(r.key_type, KeyType::EcdsaP256);
        assert_eq!(r.validity_days, 3650);
        assert_eq!(r.country, None);
        let r: GenerateRequest = serde_json::from_str(r#"{"common_name":"cam"}"#).expect("parses");
        assert_eq!(r.key_type, KeyType::Rsa2048);
        assert!(serde_json::from_str::<GenerateRequest>(r#"{"key_type":"rsa2048"}"#).is_err());
        assert_eq!(serde_json::to_string(&KeyType::Rsa2048).expect("serializes"), r#""rsa2048""#);
    }
}

#[cfg(test)]
mod certificate_tests {
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;

    fn leaf_der(pem: &str) -> Vec<u8> {
        ::pem::parse(pem).expect("pem").into_contents()
    }

    #[test]
    fn generated_certificate_fields() {
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        let mut req = GenerateRequest::new("Camera.Example.COM");
        req.key_type = KeyType::EcdsaP256;
        req.validity_days = 30;
        for _ in 0..20 {
            let g = generate(&req, now, &mut rand::rng()).expect("generates");
            let der = leaf_der(&g.chain_pem);
            let (_, cert) = X509Certificate::from_der(&der).expect("parses");
            assert_eq!(cert.version().0, 2, "v3");
            let serial = cert.raw_serial();
            assert_eq!(serial.len(), 16);
            assert!(serial[0] & 0x80 == 0 && serial[0] != 0);
            assert_eq!(cert.validity().not_before.timestamp(), (now - BACKDATE).unix_timestamp());
            assert_eq!(cert.validity().not_after.timestamp(), (now + Duration::days(30)).unix_timestamp());
            assert_eq!(cert.subject().to_string(), "CN=camera.example.com");
            assert!(!cert.is_ca());
            let bc = cert.basic_constraints().expect("ok").expect("present");
            assert!(bc.critical && !bc.value.ca);
            let ku = cert.key_usage().expect("ok").expect("present").value;
            assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
            let eku = cert.extended_key_usage().expect("ok").expect("present").value;
            assert!(eku.server_auth && !eku.client_auth);
            assert!(crate::intake::csr_pem_is_valid(g.csr_pem.as_bytes()));
            assert!(g.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            assert_authority_is_subject_key(&cert);
        }
    }

    /// A "random" source that repeats one byte, to reach the serial's edges.
    struct Repeat(u8);

    impl rand::TryRng for Repeat {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(u32::from_ne_bytes([self.0; 4]))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::from_ne_bytes([self.0; 8]))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(self.0);
            Ok(())
        }
    }

    impl rand::TryCryptoRng for Repeat {}

    fn serial_of(g: &Generated) -> Vec<u8> {
        let der = leaf_der(&g.chain_pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("parses");
        cert.raw_serial().to_vec()
    }

    #[test]
    fn serial_numbers_come_from_the_injected_source() {
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        let mut req = GenerateRequest::new("camera.local");
        req.key_type = KeyType::EcdsaP256;
        let serial = |byte: u8| serial_of(&generate(&req, now, &mut Repeat(byte)).expect("generates"));
        // All zero bits: the leading byte becomes 1, so the INTEGER keeps 16 bytes.
        assert_eq!(serial(0x00), [[0x01].as_slice(), &[0x00; 15]].concat());
        // All one bits: the sign bit is cleared, the serial stays positive.
        assert_eq!(serial(0xFF), [[0x7F].as_slice(), &[0xFF; 15]].concat());
        // Only the sign bit in the leading byte: cleared to zero, then made 1.
        assert_eq!(serial(0x80), [[0x01].as_slice(), &[0x80; 15]].concat());
        // The same seed gives the same serial; the key is still the provider's own.
        use rand::SeedableRng;
        let a = generate(&req, now, &mut rand::rngs::StdRng::seed_from_u64(7)).expect("a");
        let b = generate(&req, now, &mut rand::rngs::StdRng::seed_from_u64(7)).expect("b");
        assert_eq!(serial_of(&a), serial_of(&b));
        assert_ne!(a.key_pem, b.key_pem, "keys come from AWS-LC's own generator");
        let f = factory_certificate(&["cam".into()], &[], &mut Repeat(0x42)).expect("factory");
        assert_eq!(serial_of(&f), [0x42; 16]);
    }

    #[test]
    fn the_factory_certificate_is_valid_whatever_the_clock_said_at_its_making() {
        let generated = factory_certificate(&["cam".into()], &[], &mut rand::rng()).expect("generates");
        let material = crate::parse_stored(generated.chain_pem.as_bytes(), generated.key_pem.as_bytes())
            .expect("parses");
        for year in [1970, 2026, 2099] {
            let at = time::Date::from_calendar_date(year, time::Month::January, 2)
                .expect("date")
                .midnight()
                .assume_utc();
            let info = material.describe(at).expect("describes");
            assert!(info.days_until_expiry > 2_800_000, "{year}: {info:?}");
            assert_eq!(info.not_before, "1970-01-01T00:00:00Z");
            assert_eq!(info.not_after, "9999-12-31T23:59:59Z");
        }
        // RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime after.
        let der = material.chain[0].as_ref();
        let utc_1970 = [&[0x17, 13][..], b"700101000000Z"].concat();
        let generalized_9999 = [&[0x18, 15][..], b"99991231235959Z"].concat();
        assert!(der.windows(utc_1970.len()).any(|w| w == utc_1970), "notBefore as UTCTime");
        assert!(
            der.windows(generalized_9999.len()).any(|w| w == generalized_9999),
            "notAfter as GeneralizedTime"
        );
    }

    /// The certificate names its own key as its issuer's: AKI = SKI.
    #[track_caller]
    fn assert_authority_is_subject_key(cert: &X509Certificate<'_>) {
        use x509_parser::extensions::ParsedExtension;
        let (mut ski, mut aki) = (None, None);
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    assert!(!ext.critical, "AKI is never critical");
                    aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                _ => {}
            }
        }
        let ski = ski.expect("subject key identifier");
        assert!(!ski.is_empty());
        assert_eq!(aki.as_ref(), Some(&ski), "authority key identifier = subject key identifier");
    }

    #[test]
    fn the_factory_certificate_names_its_authority_key() {
        let g = factory_certificate(&["cam".into()], &["192.0.2.1".parse().expect("ip")], &mut rand::rng())
            .expect("factory");
        let der = leaf_der(&g.chain_pem);
        let (_, cert) = X509Certificate::from_der(&der).expect("parses");
        assert_authority_is_subject_key(&cert);
        assert_eq!(crate::host_names(&[der.clone().into()]), vec!["cam".to_string(), "localhost".into()]);
    }
}

//! What the "show" operation displays about a certificate chain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::der;
use crate::error::CertError;
use crate::private_key::KeyAlgorithm;

/// Facts about a certificate chain's leaf, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CertificateInfo {
    /// Issuer distinguished name, OpenSSL order (`C=DE, O=..., CN=...`).
    pub issuer: String,
    /// Subject distinguished name, OpenSSL order.
    pub subject: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Serial number, uppercase hex bytes separated by colons.
    pub serial: String,
    /// SHA-256 fingerprint of the DER, uppercase hex with colons (as browsers show it).
    pub fingerprint_sha256: String,
    /// `RSA`, `ECDSA`, `Ed25519`, or another algorithm name.
    pub key_type: String,
    /// Key size in bits (RSA modulus, EC curve size, 256 for Ed25519).
    pub key_bits: u32,
    /// Curve name for ECDSA keys (`P-256`, `P-384`, ...).
    pub curve: Option<String>,
    /// Subject alternative names as `DNS:name`, `IP:address`, `email:...`, `URI:...`.
    pub subject_alt_names: Vec<String>,
    /// Number of certificates in the chain, leaf included.
    pub chain_length: usize,
    /// Whole days from `now` until the end of validity (negative once expired).
    pub days_until_expiry: i64,
    /// Whether the leaf's issuer is its own subject.
    pub self_signed: bool,
}

/// Describes the leaf (first certificate) of `chain` as of `now`.
pub fn describe(chain: &[CertificateDer<'_>], now: OffsetDateTime) -> Result<CertificateInfo, CertError> {
    let leaf_der = chain.first().ok_or(CertError::NoCertificate)?;
    let cert = parse_certificate(leaf_der)?;
    let not_before = asn1_time(cert.validity().not_before.timestamp());
    let not_after = asn1_time(cert.validity().not_after.timestamp());
    let algorithm = spki_algorithm(cert.public_key());
    let (key_type, key_bits, curve) = match &algorithm {
        KeyAlgorithm::Rsa { bits } => ("RSA".to_owned(), *bits, None),
        KeyAlgorithm::Ecdsa(c) => ("ECDSA".to_owned(), c.bits(), Some(c.name().to_owned())),
        KeyAlgorithm::Ed25519 => ("Ed25519".to_owned(), 256, None),
        KeyAlgorithm::Other(name) => (name.clone(), 0, None),
    };
    Ok(CertificateInfo {
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        serial: colon_hex(cert.raw_serial()),
        fingerprint_sha256: fingerprint_sha256(leaf_der),
        key_type,
        key_bits,
        curve,
        subject_alt_names: subject_alt_names(&cert),
        chain_length: chain.len(),
        days_until_expiry: (not_after - now).whole_days(),
        self_signed: is_self_signed(&cert),
    })
}

/// What the HSTS rule needs of the leaf of `chain`: whether it is
/// self-signed, and its validity.
pub fn served_certificate(
    chain: &[CertificateDer<'_>],
) -> Result<portcullis_core::hsts::ServedCertificate, CertError> {
    let leaf = parse_certificate(chain.first().ok_or(CertError::NoCertificate)?)?;
    Ok(portcullis_core::hsts::ServedCertificate {
        self_signed: is_self_signed(&leaf),
        not_before: asn1_time(leaf.validity().not_before.timestamp()),
        not_after: asn1_time(leaf.validity().not_after.timestamp()),
    })
}

/// The host names the leaf of `chain` is issued for, lower case: its
/// subjectAltName DNS names (wildcards as `*.example.com`) and its subject's
/// common names that are not IP addresses. Empty if it does not parse.
pub fn host_names(chain: &[CertificateDer<'_>]) -> Vec<String> {
    let Some(cert) = chain.first().and_then(|der| parse_certificate(der).ok()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    out.extend(
        cert.subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .filter(|cn| cn.parse::<IpAddr>().is_err() && !cn.is_empty())
            .map(str::to_ascii_lowercase),
    );
    out.sort();
    out.dedup();
    out
}

/// SHA-256 fingerprint of DER bytes: uppercase hex pairs joined by colons.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    colon_hex(&Sha256::digest(der))
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse_certificate<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, CertError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CertError::InvalidCertificate { detail: "trailing data after the certificate".into() }),
        Err(e) => Err(CertError::InvalidCertificate { detail: e.to_string() }),
    }
}

/// The key algorithm of a certificate's SubjectPublicKeyInfo.
pub(crate) fn spki_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> KeyAlgorithm {
    let oid = spki.algorithm.algorithm.as_bytes();
    let rsa_bits = if oid == der::OID_RSA_ENCRYPTION {
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        // (x509-parser's own key_size() is off for moduli without a 0 pad byte.)
        let fields =
            der::read_exact(&spki.subject_public_key.data, der::TAG_SEQUENCE).and_then(der::children);
        let modulus = fields.as_ref().and_then(|f| f.first());
        modulus.filter(|t| t.tag == der::TAG_INTEGER).map_or(0, |t| der::integer_bits(t.value))
    } else {
        0
    };
    let params = match &spki.algorithm.parameters {
        Some(p) if p.as_oid().is_ok() => Some(der::Tlv { tag: der::TAG_OID, value: p.data }),
        _ => None,
    };
    KeyAlgorithm::from_oid(oid, params, rsa_bits)
}

/// Subject alternative names as display strings.
pub(crate) fn subject_alt_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
                Some(ip) => format!("IP:{ip}"),
                None => format!("IP:{}", colon_hex(bytes)),
            },
            GeneralName::RFC822Name(m) => format!("email:{m}"),
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DirectoryName(n) => format!("DirName:{n}"),
            other => format!("{other}"),
        })
        .collect()
}

/// Subject equals issuer (the usual definition of self-issued; a signature
/// check would need a second crypto stack in x509-parser).
pub(crate) fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        16 => <[u8; 16]>::try_from(bytes).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// Time from an ASN.1 timestamp; out-of-range values clamp.
pub(crate) fn asn1_time(timestamp: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(timestamp).unwrap_or(if timestamp < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        time::macros::datetime!(9999-12-31 23:59:59 UTC)
    })
}

/// RFC 3339 text of a time.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format() {
        let f = fingerprint_sha256(b"");
        assert!(f.starts_with("E3:B0:C4:42:98:FC"));
        assert_eq!(f.len(), 32 * 3 - 1);
    }

    #[test]
    fn ip_bytes() {
        assert_eq!(ip_from_bytes(&[127, 0, 0, 1]).map(|i| i.to_string()), Some("127.0.0.1".into()));
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ip_from_bytes(&v6).map(|i| i.to_string()), Some("::1".into()));
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }
}

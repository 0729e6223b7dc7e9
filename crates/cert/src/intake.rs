//! Intake of uploaded certificates and keys: tolerant parsing, decryption,
//! key matching, chain ordering and the checks that refuse bad uploads.

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::collection::collect;
use crate::description::{
    asn1_time, is_self_signed, parse_certificate, rfc3339, spki_algorithm, subject_alt_names,
};
use crate::error::{CertError, FIELD_CERTIFICATE, FIELD_PRIVATE_KEY};
use crate::generation::{APPLE_MAX_VALIDITY_DAYS, APPLE_VALIDITY_WARNING};
use crate::material::Material;
use crate::pem_input::read_blocks;
use crate::private_key::{self, DecodedKey};

/// How uploads are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeOptions {
    /// The current time, for validity checks.
    pub now: OffsetDateTime,
    /// Whether `now` can be trusted. When the device clock is unset (before
    /// the build date), expired / not-yet-valid certificates are accepted
    /// with a warning instead of refused: the operator cannot fix the clock
    /// by uploading a different certificate.
    pub clock_trusted: bool,
}

impl IntakeOptions {
    /// Options for a trusted clock reading.
    pub fn at(now: OffsetDateTime) -> Self {
        IntakeOptions { now, clock_trusted: true }
    }
}

/// "Upload certificate and key": a chain and its private key, in one file or
/// two, the key optionally encrypted.
///
/// The certificate whose public key matches the private key becomes the
/// leaf, wherever it is in the files; the certificates it chains to follow
/// in issuing order. Refuses (see [`CertError`]) oversized, empty, binary,
/// truncated or corrupt files, a CSR instead of a certificate, a missing or
/// wrong passphrase, keys that match no certificate, RSA under 2048 bits and
/// unsupported key types, and (with a trusted clock) a leaf outside its
/// validity period. Returns the material and warnings for the operator.
pub fn intake_upload(
    cert_file: &[u8],
    key_file: Option<&[u8]>,
    passphrase: Option<&str>,
    opts: &IntakeOptions,
) -> Result<(Material, Vec<String>), CertError> {
    // Either file may be the combined certificate+key file: an empty
    // certificate file beside a key file that holds the certificate is no
    // error.
    let mut files = Vec::new();
    let key_has_certificate = key_file
        .is_some_and(|k| collect(&[(k, FIELD_PRIVATE_KEY)]).is_ok_and(|c| !c.certificates.is_empty()));
    if !(key_has_certificate && cert_file.iter().all(u8::is_ascii_whitespace)) {
        files.push((cert_file, FIELD_CERTIFICATE));
    }
    if let Some(key_file) = key_file {
        files.push((key_file, FIELD_PRIVATE_KEY));
    }
    let collected = collect(&files)?;
    let key_blocks = collected.keys.clone();
    let certificates = collected.certificates_or_error()?;
    if key_blocks.is_empty() {
        return Err(CertError::NoPrivateKey);
    }

    // Decode every key block; with several, the one matching a certificate wins.
    let mut first_error = None;
    let mut keys: Vec<DecodedKey> = Vec::new();
    for block in &key_blocks {
        match private_key::decode(block, passphrase) {
            Ok(key) => keys.push(key),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let mut last_error = first_error;
    for key in keys {
        let was_encrypted = key.was_encrypted;
        match assemble(&certificates, key.der, opts, FIELD_PRIVATE_KEY) {
            Ok((material, mut warnings)) => {
                if !was_encrypted && passphrase.is_some_and(|p| !p.is_empty()) {
                    warnings.push(
                        "a passphrase was given but the private key is not encrypted; it was ignored"
                            .to_owned(),
                    );
                }
                return Ok((material, warnings));
            }
            Err(e) => {
                // A mismatch of one key block should not hide a real
                // problem of another; otherwise the first error stands.
                if last_error.is_none() || !matches!(e, CertError::KeyMismatch { .. }) {
                    last_error = Some(e);
                }
            }
        }
    }
    Err(last_error.unwrap_or(CertError::NoPrivateKey))
}

/// "Upload certificate": a CA-signed certificate (with chain) for a key the
/// device already has (the pending CSR's key or the current one).
///
/// Refused with [`CertError::KeyMismatch`] unless one of the certificates
/// carries that key's public key. Private keys in the file are ignored.
pub fn intake_certificate_for_key(
    cert_file: &[u8],
    key: &PrivateKeyDer<'static>,
    opts: &IntakeOptions,
) -> Result<(Material, Vec<String>), CertError> {
    let collected = collect(&[(cert_file, FIELD_CERTIFICATE)])?;
    let ignored_keys = !collected.keys.is_empty();
    let certificates = collected.certificates_or_error()?;
    let (material, mut warnings) = assemble(&certificates, key.clone_key(), opts, FIELD_CERTIFICATE)?;
    if ignored_keys {
        warnings.push(
            "the file also contains a private key; it was ignored and the device's own key is used"
                .to_owned(),
        );
    }
    Ok((material, warnings))
}

/// Whether `pem` holds a parsable PKCS#10 certificate signing request.
pub fn csr_pem_is_valid(pem: &[u8]) -> bool {
    let Ok(blocks) = read_blocks(pem, FIELD_CERTIFICATE) else {
        return false;
    };
    let mut csrs = blocks
        .iter()
        .filter(|b| matches!(b.label.as_str(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"));
    match (csrs.next(), csrs.next()) {
        (Some(block), None) => matches!(X509CertificationRequest::from_der(&block.contents), Ok(([], _))),
        _ => false,
    }
}

/// Matches `key` to one of `certificates`, orders the chain and runs the checks.
fn assemble(
    certificates: &[CertificateDer<'static>],
    key: PrivateKeyDer<'static>,
    opts: &IntakeOptions,
    mismatch_field: &'static str,
) -> Result<(Material, Vec<String>), CertError> {
    let parsed: Vec<X509Certificate<'_>> =
        certificates.iter().map(|c| parse_certificate(c)).collect::<Result<_, _>>()?;

    let algorithm = private_key::algorithm(&key).ok_or_else(|| CertError::InvalidPrivateKey {
        detail: "the key's structure is not PKCS#8, PKCS#1 or SEC1".into(),
    })?;
    algorithm.check_supported()?;
    let signing_key = private_key::load(&key)?;
    let spki = signing_key
        .public_key()
        .ok_or_else(|| CertError::InvalidPrivateKey { detail: "its public key cannot be derived".into() })?;
    // Several certificates may carry the key (a renewed certificate next to
    // the old one): prefer one valid now, then the one valid longest.
    let leaf_index = (0..parsed.len())
        .filter(|&i| parsed[i].public_key().raw == spki.as_ref())
        .max_by_key(|&i| {
            let validity = parsed[i].validity();
            let now = opts.now.unix_timestamp();
            let valid_now = validity.not_before.timestamp() <= now && now <= validity.not_after.timestamp();
            // Reverse index: among equals, the first in the file wins.
            (valid_now, validity.not_after.timestamp(), std::cmp::Reverse(i))
        })
        .ok_or(CertError::KeyMismatch { field: mismatch_field })?;
    let leaf = &parsed[leaf_index];
    spki_algorithm(leaf.public_key()).check_supported()?;
    // Version 1 (what `openssl x509 -req` makes without extensions) carries
    // no subjectAltName and no key usage; TLS libraries refuse it for a
    // server. Said plainly, with the way to a version 3 certificate.
    if leaf.version() != x509_parser::x509::X509Version::V3 {
        return Err(CertError::UnsupportedVersion { version: leaf.version().0 + 1 });
    }

    // Chain: the leaf, then each certificate's issuer among the rest.
    let mut order = vec![leaf_index];
    while let Some(&current) = order.last() {
        let cert = &parsed[current];
        if is_self_signed(cert) {
            break;
        }
        let next = (0..parsed.len())
            .find(|&i| !order.contains(&i) && parsed[i].subject().as_raw() == cert.issuer().as_raw());
        match next {
            Some(i) => order.push(i),
            None => break,
        }
    }

    let mut warnings = Vec::new();
    let left_out = parsed.len() - order.len();
    if left_out > 0 {
        warnings.push(format!(
            "{left_out} certificate(s) in the upload are not part of the certificate's chain and were left out"
        ));
    }
    check_validity(leaf, opts, &mut warnings)?;
    for &i in &order[1..] {
        let c = &parsed[i];
        let not_after = asn1_time(c.validity().not_after.timestamp());
        if not_after < opts.now {
            warnings.push(format!(
                "the issuing certificate \"{}\" expired on {}",
                c.subject(),
                rfc3339(not_after)
            ));
        }
    }
    if subject_alt_names(leaf).is_empty() {
        warnings.push(
            "the certificate has no subjectAltName; browsers ignore the common name and will reject it"
                .to_owned(),
        );
    }
    if leaf.is_ca() {
        warnings.push(
            "the certificate is a CA certificate (CA:TRUE); browsers may reject it as a server certificate"
                .to_owned(),
        );
    }
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    if (not_after - not_before) / 86_400 > i64::from(APPLE_MAX_VALIDITY_DAYS) {
        warnings.push(APPLE_VALIDITY_WARNING.to_owned());
    }

    let chain: Vec<CertificateDer<'static>> = order.iter().map(|&i| certificates[i].clone()).collect();
    // x509-parser is lenient; the leaf must also satisfy webpki, the parser
    // rustls uses to match keys and that strict TLS clients apply (e.g.
    // matching signature algorithms inside and outside the signed part).
    // Issuing certificates only get a warning: an old v1 root in the upload
    // should not block it, OpenSSL-based clients accept those.
    for (n, cert) in chain.iter().enumerate() {
        if let Err(e) = rustls::server::ParsedCertificate::try_from(cert) {
            if n == 0 {
                return Err(CertError::InvalidCertificate { detail: e.to_string() });
            }
            warnings.push(format!(
                "the issuing certificate \"{}\" is malformed for strict clients ({e})",
                parsed[order[n]].subject()
            ));
        }
    }
    // Store keys as PKCS#8, the form OpenSSL 3 writes and all tools read.
    let key = match private_key::to_pkcs8(&key) {
        Some(pkcs8) => PrivateKeyDer::Pkcs8(pkcs8),
        None => key,
    };
    let material = Material { chain, key };
    material.certified_key()?;
    Ok((material, warnings))
}

/// Refuses (or, with an untrusted clock, warns about) a leaf outside its validity.
fn check_validity(
    leaf: &X509Certificate<'_>,
    opts: &IntakeOptions,
    warnings: &mut Vec<String>,
) -> Result<(), CertError> {
    let not_before = asn1_time(leaf.validity().not_before.timestamp());
    let not_after = asn1_time(leaf.validity().not_after.timestamp());
    let problem = if opts.now > not_after {
        Some(CertError::Expired { not_after: rfc3339(not_after) })
    } else if opts.now < not_before {
        Some(CertError::NotYetValid { not_before: rfc3339(not_before) })
    } else {
        None
    };
    match problem {
        Some(e) if opts.clock_trusted => Err(e),
        Some(e) => {
            warnings.push(format!("{e} (by the device clock, which is not set; accepted anyway)"));
            Ok(())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::generation::factory_certificate;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 12:00 UTC)
    }

    fn sample() -> String {
        let g = factory_certificate(&["cam".into()], &[], &mut rand::rng()).expect("generates");
        format!("{}{}", g.chain_pem, g.key_pem)
    }

    #[test]
    fn unrelated_certificates_are_left_out_with_a_warning() {
        let other = factory_certificate(&["other".into()], &[], &mut rand::rng()).expect("generates");
        let upload = format!("{}{}", other.chain_pem, sample());
        let (m, warnings) =
            intake_upload(upload.as_bytes(), None, None, &IntakeOptions::at(now())).expect("accepted");
        assert_eq!(m.chain.len(), 1);
        assert_eq!(m.describe(now()).expect("describes").subject, "O=portcullis factory certificate, CN=cam");
        assert_eq!(warnings.len(), 2, "{warnings:?}"); // left out + 10 years > 825 days
    }

    #[test]
    fn renewed_certificate_wins_over_expired_one() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = |cn: &str, from: OffsetDateTime, days: i64| {
            let mut params = rcgen::CertificateParams::new(vec![format!("{cn}.test")]).expect("params");
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            params.not_before = from;
            params.not_after = from + time::Duration::days(days);
            params.self_signed(&key).expect("signs").pem()
        };
        let old = cert("old", now() - time::Duration::days(400), 365);
        let renewed = cert("renewed", now() - time::Duration::days(10), 365);
        let upload = format!("{old}{renewed}{}", key.serialize_pem());
        let (m, warnings) =
            intake_upload(upload.as_bytes(), None, None, &IntakeOptions::at(now())).expect("accepted");
        assert_eq!(m.describe(now()).expect("describes").subject, "CN=renewed");
        assert_eq!(m.chain.len(), 1);
        assert_eq!(warnings.len(), 1, "{warnings:?}"); // the old one was left out
    }

    #[test]
    fn csr_validity() {
        assert!(!csr_pem_is_valid(b""));
        assert!(!csr_pem_is_valid(sample().as_bytes()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Invariant: arbitrary bytes never panic, they are accepted or refused.
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = intake_upload(&input, Some(&input), Some("x"), &IntakeOptions::at(now()));
            let _ = csr_pem_is_valid(&input);
        }

        /// Invariant: a valid upload with bytes flipped never panics, and
        /// whatever is accepted still loads into rustls.
        #[test]
        fn mutated_upload_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut input = sample().into_bytes();
            for (at, byte) in flips {
                let i = at.index(input.len());
                input[i] = byte;
            }
            if let Ok((m, _)) = intake_upload(&input, None, None, &IntakeOptions::at(now())) {
                let loaded = m.certified_key();
                prop_assert!(loaded.is_ok(), "{:?}", loaded.err());
            }
        }
    }
}

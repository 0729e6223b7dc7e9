//! A checked certificate chain with its private key, ready for TLS.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::collection::{collect, decode_single_key};
use crate::description::{CertificateInfo, describe};
use crate::error::{CertError, FIELD_CERTIFICATE, FIELD_PRIVATE_KEY};
use crate::private_key;

/// A certificate chain (leaf first) and the leaf's private key.
///
/// Only this crate builds one, after checking that the key matches the leaf.
pub struct Material {
    /// The chain, leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("chain_length", &self.chain.len())
            .field("key", &"[secret key elided]")
            .finish()
    }
}

impl Clone for Material {
    fn clone(&self) -> Self {
        Material { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl Material {
    /// The chain as PEM `CERTIFICATE` blocks, leaf first (LF line ends).
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| {
                ::pem::encode_config(
                    &::pem::Pem::new("CERTIFICATE", c.as_ref().to_vec()),
                    ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
                )
            })
            .collect()
    }

    /// The private key as PEM: PKCS#8 `PRIVATE KEY` if possible, else its original form.
    pub fn key_pem(&self) -> String {
        private_key::to_pem(&self.key)
    }

    /// The chain and a signing key loaded with the build's provider, for a rustls certificate resolver.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, CertError> {
        let signing_key = private_key::load(&self.key)?;
        let certified = CertifiedKey::new(self.chain.clone(), signing_key);
        match certified.keys_match() {
            Ok(()) => Ok(Arc::new(certified)),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(CertError::KeyMismatch { field: FIELD_PRIVATE_KEY })
            }
            Err(rustls::Error::NoCertificatesPresented) => Err(CertError::NoCertificate),
            Err(e) => Err(CertError::InvalidCertificate { detail: e.to_string() }),
        }
    }

    /// What the HSTS rule needs to know of the leaf.
    pub fn served(&self) -> Result<portcullis_core::hsts::ServedCertificate, CertError> {
        crate::description::served_certificate(&self.chain)
    }

    /// Describes the leaf certificate as of `now`.
    pub fn describe(&self, now: OffsetDateTime) -> Result<CertificateInfo, CertError> {
        describe(&self.chain, now)
    }
}

/// Reads back a chain and key the server stored itself (PEM, unencrypted).
///
/// Checks that the key matches the first certificate; does not check
/// validity dates (a stored certificate that has expired since must still
/// load, and "show" reports the expiry).
pub fn parse_stored(chain_pem: &[u8], key_pem: &[u8]) -> Result<Material, CertError> {
    let collected = collect(&[(chain_pem, FIELD_CERTIFICATE)])?;
    let chain = collected.certificates_or_error()?;
    // The server describes what it serves: a leaf that does not parse
    // strictly (a corrupted date, say) is refused here as at intake, rather
    // than served and then undescribable (found by fuzzing).
    if let Some(leaf) = chain.first() {
        crate::description::parse_certificate(leaf)?;
    }
    let key = decode_single_key(key_pem)?;
    let material = Material { chain, key };
    material.certified_key()?;
    Ok(material)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::{GenerateRequest, KeyType, factory_certificate, generate};

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 12:00 UTC)
    }

    #[test]
    fn generated_round_trip() {
        let mut req = GenerateRequest::new("192.168.0.90");
        req.key_type = KeyType::EcdsaP256;
        req.validity_days = 365;
        let generated = generate(&req, now(), &mut rand::rng()).expect("generates");
        let material =
            parse_stored(generated.chain_pem.as_bytes(), generated.key_pem.as_bytes()).expect("parses");
        assert_eq!(material.chain_pem(), generated.chain_pem);
        assert_eq!(material.key_pem(), generated.key_pem);
        material.certified_key().expect("loads");
        let info = material.describe(now()).expect("describes");
        assert_eq!(info.subject_alt_names, vec!["IP:192.168.0.90".to_owned()]);
        assert_eq!(info.key_type, "ECDSA");
        assert_eq!(info.curve.as_deref(), Some("P-256"));
        assert_eq!(info.days_until_expiry, 365);
        assert!(info.self_signed);
        assert_eq!(info.chain_length, 1);
    }

    #[test]
    fn stored_mismatch_is_refused() {
        let a = factory_certificate(&["a".into()], &[], &mut rand::rng()).expect("a");
        let b = factory_certificate(&["b".into()], &[], &mut rand::rng()).expect("b");
        let err = parse_stored(a.chain_pem.as_bytes(), b.key_pem.as_bytes()).expect_err("mismatch");
        assert_eq!(err.code(), "key_mismatch");
    }

    #[test]
    fn factory_certificate_names() {
        let generated = factory_certificate(
            &["cam01".into(), "cam01.example.com".into(), "bad_name".into()],
            &["192.168.0.90".parse().expect("ip"), "fe80::1".parse().expect("ip")],
            &mut rand::rng(),
        )
        .expect("generates");
        let material =
            parse_stored(generated.chain_pem.as_bytes(), generated.key_pem.as_bytes()).expect("parses");
        let info = material.describe(now()).expect("describes");
        assert_eq!(
            info.subject_alt_names,
            vec!["DNS:cam01", "DNS:cam01.example.com", "DNS:localhost", "IP:192.168.0.90", "IP:fe80::1"]
        );
        assert_eq!(info.subject, "O=portcullis factory certificate, CN=cam01");
        assert_eq!(
            (info.not_before.as_str(), info.not_after.as_str()),
            ("1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z")
        );
        assert!(generated.warnings.is_empty());
    }
}

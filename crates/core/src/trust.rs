//! CA certificates an operator gives the device to trust instead of the
//! system's store: a notification profile's `ca_pem`, the ACME server's
//! `ca_bundle_pem`.
//!
//! They are checked the way the TLS clients will take them: each PEM
//! `CERTIFICATE` block must be usable as a trust anchor by webpki (what
//! rustls' `RootCertStore` calls), so a bundle accepted here is one the
//! senders can use, and a broken one is refused when it is set rather than
//! at the first alert or renewal.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The certificates of a PEM bundle of CA certificates (at most `max_len`
/// bytes), each usable as a trust anchor; else what is wrong, for a person.
/// Text outside the `CERTIFICATE` blocks (comments, other blocks) is ignored,
/// as `openssl` does.
pub fn parse_ca_bundle(pem: &str, max_len: usize) -> Result<Vec<CertificateDer<'static>>, String> {
    if pem.len() > max_len {
        return Err(format!("at most {max_len} bytes are allowed"));
    }
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a valid PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("expected one or more PEM certificates (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    for (i, cert) in certs.iter().enumerate() {
        webpki::anchor_from_trusted_cert(cert).map_err(|e| {
            format!("certificate {} of the bundle cannot be used as a trust anchor: {e}", i + 1)
        })?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA certificate made for the test (rcgen, a dev-dependency only).
    fn root() -> String {
        let mut params = rcgen::CertificateParams::new(vec!["ca.example".to_owned()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        params.self_signed(&key).expect("self-signed").pem()
    }

    #[test]
    fn a_root_is_accepted_with_text_around_it() {
        let root = root();
        assert_eq!(parse_ca_bundle(&root, 64 * 1024).map(|c| c.len()), Ok(1));
        let two = format!("# our CA\n{root}\nsome comment\n{root}");
        assert_eq!(parse_ca_bundle(&two, 64 * 1024).map(|c| c.len()), Ok(2));
    }

    #[test]
    fn refusals_say_why() {
        let refused = |pem: &str| parse_ca_bundle(pem, 64 * 1024).expect_err(pem);
        assert!(refused("junk").contains("expected one or more PEM certificates"));
        assert!(refused("").contains("expected one or more"));
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(
            refused(not_der).contains("certificate 1 of the bundle cannot be used"),
            "{}",
            refused(not_der)
        );
        let second_broken = format!("{}{not_der}", root());
        assert!(refused(&second_broken).contains("certificate 2"));
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(refused(bad_base64).contains("not a valid PEM"), "{}", refused(bad_base64));
        let unterminated = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(parse_ca_bundle(unterminated, 64 * 1024).is_err());
    }

    #[test]
    fn the_length_limit_is_inclusive() {
        let root = root();
        assert!(parse_ca_bundle(&root, root.len()).is_ok());
        assert_eq!(
            parse_ca_bundle(&root, root.len() - 1),
            Err(format!("at most {} bytes are allowed", root.len() - 1))
        );
    }
}

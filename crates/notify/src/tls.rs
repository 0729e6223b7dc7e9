//! TLS client configuration shared by the HTTPS sender.
//!
//! Certificates are always verified. A profile's `ca_pem` replaces the
//! system's trust store rather than extending it: an operator who names a
//! private CA means "this server's certificate comes from that CA", and
//! nothing else should be accepted for it.

#[cfg(feature = "ip-notify")]
use std::sync::Arc;

#[cfg(feature = "ip-notify")]
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use crate::NotifyError;

/// The trusted roots: the certificates of `ca_pem`, or the system's store.
#[cfg(feature = "ip-notify")]
pub(crate) fn root_store(ca_pem: Option<&str>) -> Result<RootCertStore, NotifyError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let certs = parse_ca_pem(pem)?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(NotifyError::InvalidProfile("ca_pem holds no usable CA certificate".to_string()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(NotifyError::InvalidProfile(
                    "the system has no trusted CA certificates; set ca_pem in the profile".to_string(),
                ));
            }
        }
    }
    Ok(roots)
}

/// The certificates of a profile's `ca_pem`, by the rule the profile was
/// checked with when it was set.
pub(crate) fn parse_ca_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, NotifyError> {
    portcullis_core::trust::parse_ca_bundle(pem, portcullis_core::profiles::MAX_CA_PEM_LEN)
        .map_err(|e| NotifyError::InvalidProfile(format!("ca_pem: {e}")))
}

/// A client configuration with the build's provider and the given roots.
#[cfg(feature = "ip-notify")]
pub(crate) fn client_config(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, NotifyError> {
    // The provider is named explicitly so that the result does not depend on
    // which provider the embedding firmware installed as process default.
    let provider = Arc::new(portcullis_cert::crypto::provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NotifyError::InvalidProfile(format!("TLS configuration: {e}")))?
        .with_root_certificates(root_store(ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(all(test, feature = "ip-notify"))]
mod tests {
    #[test]
    fn ca_pem_must_hold_a_usable_certificate() {
        let code = |pem| super::root_store(Some(pem)).map(|_| ()).map_err(|e| e.code().as_str());
        assert_eq!(code("junk"), Err("invalid_profile"));
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(code(not_der), Err("invalid_profile"));
    }
}

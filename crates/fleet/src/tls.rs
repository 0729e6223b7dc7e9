//! TLS client configurations: the build's provider, a CA bundle or the
//! system's trust store, an optional pinned certificate and client certificate.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
#[cfg(feature = "syslog")]
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{ServerName, UnixTime},
};

/// The build's crypto provider, named explicitly so the result does not
/// depend on a process-wide default an embedding firmware may install.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(portcullis_cert::crypto::provider())
}

/// The certificates of a PEM text.
pub(crate) fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() { Err("holds no certificate".into()) } else { Ok(certs) }
}

/// The trusted roots: those of `ca_pem`, or the system's store.
pub(crate) fn roots(ca_pem: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, _) = match ca_pem {
        Some(pem) => roots.add_parsable_certificates(certificates(pem)?),
        None => roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs),
    };
    if added == 0 {
        return Err(match ca_pem {
            Some(_) => "holds no usable CA certificate".into(),
            None => "the system has no trusted CA certificates; give a CA certificate".into(),
        });
    }
    Ok(roots)
}

/// How the server's certificate is checked.
pub(crate) enum Trust {
    /// Chains to these roots and names the server.
    Roots(RootCertStore),
    /// Is exactly the certificate with this SHA-256 fingerprint.
    #[cfg(feature = "syslog")]
    Pinned([u8; 32]),
}

/// A client configuration (TLS 1.2 and 1.3) with `trust` and, when given,
/// a client certificate chain and key (PEM). Errors never quote the key.
pub(crate) fn client_config(
    trust: Trust,
    client: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, (&'static str, String)> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("", format!("TLS configuration: {e}")))?;
    let builder = match trust {
        Trust::Roots(roots) => builder.with_root_certificates(roots),
        #[cfg(feature = "syslog")]
        Trust::Pinned(pin) => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedVerifier { pin, provider }))
        }
    };
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let certs = certificates(cert_pem).map_err(|m| ("client_certificate_pem", m))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|_| ("client_key_pem", "not an unencrypted PEM private key".to_string()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|_| ("client_key_pem", "the key does not fit the client certificate".to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// Accepts exactly one certificate (by its SHA-256), as an operator pins a
/// collector's self-signed certificate; the handshake's signatures are
/// still verified with that certificate's key.
#[cfg(feature = "syslog")]
#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

#[cfg(feature = "syslog")]
impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let seen: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if seen == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::General("the server's certificate is not the pinned one".into()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

//! The one crypto provider of the build: aws-lc-rs or ring, chosen by a
//! cargo feature (`aws-lc-rs` or `ring`, exactly one). Everything that does
//! cryptography (the TLS server, the TLS clients of notifications and ACME,
//! key loading, key generation) takes it from here, so a build never mixes
//! providers and a key accepted here is a key the server can serve.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::SigningKey;
use rustls_pki_types::PrivateKeyDer;

#[cfg(all(feature = "aws-lc-rs", feature = "ring"))]
compile_error!(
    "portcullis: choose ONE crypto provider: the features `aws-lc-rs` and `ring` are both on \
     (build with --no-default-features --features ring, or keep the default)"
);
#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "portcullis: no crypto provider: enable the feature `aws-lc-rs` or `ring` \
     (e.g. --no-default-features --features ring)"
);

/// Name of the crypto provider this build uses (`aws-lc-rs` or `ring`).
#[cfg(feature = "aws-lc-rs")]
pub const PROVIDER_NAME: &str = "aws-lc-rs";
/// Name of the crypto provider this build uses (`aws-lc-rs` or `ring`).
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
pub const PROVIDER_NAME: &str = "ring";

/// The build's crypto provider, with its default cipher suites and key exchanges.
pub fn provider() -> CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return rustls::crypto::ring::default_provider();
}

/// The session-ticket encrypter of the build's provider (keys rotate every 6 hours).
pub fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, rustls::Error> {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::Ticketer::new();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return rustls::crypto::ring::Ticketer::new();
}

/// Loads a private key for signing with the build's provider.
pub fn load_signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
    provider().key_provider.load_private_key(key.clone_key())
}

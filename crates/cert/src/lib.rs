//! Certificates for the portcullis web server, without any I/O.
//!
//! * [`generate`] / [`factory_certificate`]: a new key, a self-signed
//!   certificate and a CSR for the same key (rcgen on the build's provider).
//! * [`intake_upload`] / [`intake_certificate_for_key`]: tolerant intake of
//!   PEM files as `openssl` and operators produce them, with decryption of
//!   encrypted keys, key/certificate matching and clear refusals.
//! * [`parse_stored`]: reading back what the server stored itself.
//! * [`describe`]: what the "show" operation displays.
//!
//! The clock is passed in (`now`); nothing here reads files, sockets or the
//! wall clock. Keys are loaded and matched with the build's crypto provider
//! ([`crypto`]: aws-lc-rs or ring), the one the TLS server uses, so a key
//! accepted here is a key it can serve.

mod collection;
pub mod crypto;
mod der;
mod description;
mod error;
mod generation;
mod intake;
mod material;
mod pem_input;
mod private_key;

pub use description::{CertificateInfo, describe, fingerprint_sha256, host_names};
pub use error::{CertError, FIELD_CERTIFICATE, FIELD_PASSPHRASE, FIELD_PRIVATE_KEY};
pub use generation::{
    APPLE_MAX_VALIDITY_DAYS, APPLE_VALIDITY_WARNING, FACTORY_NOT_AFTER, FACTORY_NOT_BEFORE,
    FACTORY_ORGANIZATION, GenerateRequest, Generated, KeyType, MAX_VALIDITY_DAYS, factory_certificate,
    generate, new_key_pair,
};
pub use intake::{IntakeOptions, csr_pem_is_valid, intake_certificate_for_key, intake_upload};
pub use material::{Material, parse_stored};
pub use pem_input::MAX_INPUT_LEN;
/// Re-exported so callers name the same DER types as this crate.
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};

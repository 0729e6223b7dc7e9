//! ACME (RFC 8555) certificate enrolment for portcullis.
//!
//! * [`AcmeSettings`]: what the operator configures (directory, contacts,
//!   identifiers, challenge type, key type, External Account Binding, CA
//!   bundle for the ACME server itself). Its rules (normalization,
//!   validation, redaction), and when to renew and retry, are pure and live
//!   in [`portcullis_core::acme`]; this crate re-exports the settings types.
//! * [`enrol`]: one enrolment with instant-acme (on the build's crypto provider),
//!   answering http-01 or tls-alpn-01 through a [`ChallengeResponder`] the
//!   server implements; the key and CSR are made with rcgen for all
//!   identifiers; every wait is bounded.
//!
//! Storing the account credentials and the certificate, scheduling and hot
//! swapping are the server's business.

mod client;
mod enrol;
mod error;

pub use client::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};
pub use enrol::{
    ChallengeResponder, ENROL_TIMEOUT, Enrolled, Limits, POLL_TIMEOUT, enrol, enrol_with, tls_alpn01_sni,
    validity,
};
pub use error::AcmeError;
/// Re-exported so responders name the identifier type [`tls_alpn01_sni`] takes.
pub use instant_acme::Identifier;
/// The ALPN protocol id of tls-alpn-01 (RFC 8737), for the server's TLS listener.
pub const ACME_TLS_ALPN_PROTOCOL: &[u8] = b"acme-tls/1";
/// Re-exported: the settings [`enrol`] takes are the core's.
pub use portcullis_core::acme::{AcmeSettings, Challenge};

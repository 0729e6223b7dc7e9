//! What can go wrong in an enrolment, for operators and the API.

use portcullis_core::ErrorCode;
use std::time::Duration;

use portcullis_core::ValidationError;

/// A failed enrolment. Messages are for operators; [`AcmeError::code`] is for the API.
///
/// No variant carries the EAB HMAC key: messages are built from the ACME
/// server's problem documents, URLs, identifiers and transport errors only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The settings are incomplete or invalid.
    #[error("invalid ACME settings: {0}")]
    InvalidSettings(#[from] ValidationError),
    /// The directory could not be fetched: network, TLS, or not an ACME server.
    #[error("the ACME server at {url} cannot be reached: {detail}")]
    Unreachable {
        /// The directory URL.
        url: String,
        /// What failed, e.g. "connection refused" or a TLS verification error.
        detail: String,
    },
    /// The CA requires External Account Binding and none is configured.
    #[error("the CA requires External Account Binding: set eab_key_id and eab_hmac_key")]
    ExternalAccountRequired,
    /// The CA refused to create or use the account (e.g. a wrong EAB key, an invalid contact).
    #[error("the CA refused the account: {detail}")]
    AccountRejected {
        /// The CA's explanation.
        detail: String,
    },
    /// The CA refused the order (e.g. an identifier it does not issue for).
    #[error("the CA refused the order: {detail}")]
    OrderRejected {
        /// The CA's explanation.
        detail: String,
    },
    /// The CA offers no challenge of the configured type for an identifier.
    #[error("the CA offers no {challenge} challenge for {identifier}; choose another challenge type")]
    ChallengeNotOffered {
        /// The identifier.
        identifier: String,
        /// The configured challenge type.
        challenge: &'static str,
    },
    /// The CA could not validate control over an identifier.
    #[error("validation of {identifier} failed: {detail}")]
    ValidationFailed {
        /// The identifier (or "order" when the CA did not say which).
        identifier: String,
        /// The CA's explanation, e.g. a connection error to port 80.
        detail: String,
    },
    /// The CA limits requests; try later.
    #[error("the CA is rate limiting: {detail}")]
    RateLimited {
        /// The CA's explanation.
        detail: String,
    },
    /// A step did not finish in time.
    #[error("timed out after {} s while {stage}", .after.as_secs())]
    Timeout {
        /// What was going on, e.g. "waiting for validation".
        stage: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// The certificate's key or the CSR could not be generated.
    #[error("key or CSR generation failed: {detail}")]
    KeyGeneration {
        /// Why.
        detail: String,
    },
    /// The CA returned a certificate that does not fit the key or cannot be read.
    #[error("the issued certificate is unusable: {detail}")]
    InvalidCertificate {
        /// Why.
        detail: String,
    },
    /// Any other protocol failure reported by the CA or the ACME client.
    #[error("ACME protocol error: {detail}")]
    Protocol {
        /// What failed.
        detail: String,
    },
}

impl AcmeError {
    /// Stable machine-readable code for the API.
    pub fn code(&self) -> ErrorCode {
        match self {
            AcmeError::InvalidSettings(_) => ErrorCode::InvalidSettings,
            AcmeError::Unreachable { .. } => ErrorCode::AcmeServerUnreachable,
            AcmeError::ExternalAccountRequired => ErrorCode::EabRequired,
            AcmeError::AccountRejected { .. } => ErrorCode::AccountRejected,
            AcmeError::OrderRejected { .. } => ErrorCode::OrderRejected,
            AcmeError::ChallengeNotOffered { .. } => ErrorCode::ChallengeNotOffered,
            AcmeError::ValidationFailed { .. } => ErrorCode::ValidationFailed,
            AcmeError::RateLimited { .. } => ErrorCode::RateLimited,
            AcmeError::Timeout { .. } => ErrorCode::Timeout,
            AcmeError::KeyGeneration { .. } => ErrorCode::KeyGenerationFailed,
            AcmeError::InvalidCertificate { .. } => ErrorCode::InvalidCertificate,
            AcmeError::Protocol { .. } => ErrorCode::ProtocolError,
        }
    }

    /// Whether retrying later may help (everything except settings the operator must fix).
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            AcmeError::InvalidSettings(_)
                | AcmeError::ExternalAccountRequired
                | AcmeError::ChallengeNotOffered { .. }
        )
    }
}

/// The text of an instant-acme error, with the problem type's short name.
pub(crate) fn describe(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => describe_problem(p),
        other => portcullis_core::error::error_chain(other),
    }
}

/// A problem document as one line: detail, then the type, then subproblems.
pub(crate) fn describe_problem(p: &instant_acme::Problem) -> String {
    let mut text = p.detail.clone().unwrap_or_else(|| "no detail given".to_owned());
    if let Some(t) = &p.r#type {
        text.push_str(&format!(" ({})", t.trim_start_matches(PROBLEM_PREFIX)));
    }
    for sub in &p.subproblems {
        text.push_str("; ");
        if let Some(id) = &sub.identifier {
            text.push_str(&format!("{}: ", id.authorized(false)));
        }
        text.push_str(sub.detail.as_deref().unwrap_or("no detail given"));
    }
    text
}

/// Prefix of the RFC 8555 problem types.
pub(crate) const PROBLEM_PREFIX: &str = "urn:ietf:params:acme:error:";

/// The short RFC 8555 problem type of an API error, e.g. `badNonce`.
pub(crate) fn problem_type(e: &instant_acme::Error) -> Option<&str> {
    match e {
        instant_acme::Error::Api(p) => p.r#type.as_deref().map(|t| t.trim_start_matches(PROBLEM_PREFIX)),
        _ => None,
    }
}

//! The one error type of this crate.

use portcullis_core::ErrorCode;

/// Form / upload field name of the certificate file.
pub const FIELD_CERTIFICATE: &str = "certificate";
/// Form / upload field name of the private key file.
pub const FIELD_PRIVATE_KEY: &str = "private_key";
/// Form field name of the private key passphrase.
pub const FIELD_PASSPHRASE: &str = "passphrase";

/// Everything that can go wrong when reading, checking or generating
/// certificates and keys.
///
/// Every variant says when it happens. [`CertError::code`] gives a stable
/// snake_case code for API clients and [`CertError::field`] the form or upload
/// field it concerns; the `Display` text is one sentence for an operator and
/// never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// An input file is larger than [`crate::MAX_INPUT_LEN`] (1 MiB); checked
    /// before anything else is done with it.
    #[error("the {} file is larger than 1 MiB", label(.field))]
    TooLarge {
        /// Which input: [`FIELD_CERTIFICATE`] or [`FIELD_PRIVATE_KEY`].
        field: &'static str,
    },
    /// An input file is empty or contains only white space.
    #[error("the {} file is empty", label(.field))]
    Empty {
        /// Which input: [`FIELD_CERTIFICATE`] or [`FIELD_PRIVATE_KEY`].
        field: &'static str,
    },
    /// An input file is binary DER (or PKCS#12) where PEM text is expected.
    #[error(
        "the {} file is binary (DER or PKCS#12), but PEM text is expected; convert it with openssl, for example `openssl x509 -inform der -in cert.der -out cert.pem`",
        label(.field)
    )]
    DerNotPem {
        /// Which input: [`FIELD_CERTIFICATE`] or [`FIELD_PRIVATE_KEY`].
        field: &'static str,
    },
    /// An input file contains no `-----BEGIN ...-----` line at all.
    #[error("the {} file is not in PEM format (no -----BEGIN line found)", label(.field))]
    NotPem {
        /// Which input: [`FIELD_CERTIFICATE`] or [`FIELD_PRIVATE_KEY`].
        field: &'static str,
    },
    /// A PEM block has a BEGIN line but no matching END line.
    #[error("the {} file is truncated: a PEM block has no matching -----END line", label(.field))]
    Truncated {
        /// Which input: [`FIELD_CERTIFICATE`] or [`FIELD_PRIVATE_KEY`].
        field: &'static str,
    },
    /// A PEM block is framed correctly but its body is not valid base64 or
    /// its headers are malformed.
    #[error("the {} file contains a corrupt PEM block (invalid base64 or headers)", label(.field))]
    InvalidPem {
        /// Which input: [`FIELD_CERTIFICATE`] or [`FIELD_PRIVATE_KEY`].
        field: &'static str,
    },
    /// A certificate signing request was given where a certificate is expected.
    #[error(
        "a certificate signing request was given where a certificate is expected; upload the certificate the CA issued for it"
    )]
    CsrNotCertificate,
    /// No `CERTIFICATE` block was found in the uploaded files.
    #[error("no certificate was found in the uploaded file")]
    NoCertificate,
    /// No private key block was found in the uploaded files.
    #[error("no private key was found; upload it in the certificate file or as a separate file")]
    NoPrivateKey,
    /// A `CERTIFICATE` block does not contain a parsable X.509 certificate.
    #[error("a certificate could not be parsed: {detail}")]
    InvalidCertificate {
        /// What the parser reported.
        detail: String,
    },
    /// The certificate is X.509 version 1 or 2: no extensions, so no
    /// subjectAltName; TLS clients and libraries refuse it for a server.
    #[error(
        "the certificate is X.509 version {version}, which TLS clients refuse for a server (it carries no extensions, so no subjectAltName); have it signed again as version 3 with the names in a subjectAltName, e.g. `openssl x509 -req -in device.csr -CA ca.pem -CAkey ca.key -days 100 -copy_extensions copy` or with `-extfile` naming `subjectAltName=DNS:camera.example`"
    )]
    UnsupportedVersion {
        /// The version found (1 or 2).
        version: u32,
    },
    /// A private key block does not contain a usable private key.
    #[error("the private key could not be read: {detail}")]
    InvalidPrivateKey {
        /// What went wrong (never contains key material).
        detail: String,
    },
    /// The private key is encrypted and no passphrase was given.
    #[error("the private key is encrypted; enter its passphrase")]
    PassphraseRequired,
    /// Decrypting the private key with the given passphrase failed. Also used
    /// when the ciphertext is corrupt: the two cannot be told apart, and one
    /// generic error avoids a padding oracle.
    #[error("the passphrase is wrong or the encrypted private key is corrupt")]
    WrongPassphrase,
    /// The private key is encrypted with a scheme this device cannot decrypt
    /// (for example PKCS#12-style PBES1).
    #[error(
        "the private key's encryption ({detail}) is not supported; re-export it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
    )]
    UnsupportedEncryption {
        /// The scheme or the reason.
        detail: String,
    },
    /// The private key does not belong to any of the given certificates.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch {
        /// The field blamed: [`FIELD_PRIVATE_KEY`] when a certificate and key
        /// were uploaded together, [`FIELD_CERTIFICATE`] when a certificate was
        /// uploaded for an existing key.
        field: &'static str,
    },
    /// The certificate's validity period ended before `now`.
    #[error("the certificate expired on {not_after}")]
    Expired {
        /// End of validity, RFC 3339.
        not_after: String,
    },
    /// The certificate's validity period starts after `now`.
    #[error("the certificate is not valid before {not_before}")]
    NotYetValid {
        /// Start of validity, RFC 3339.
        not_before: String,
    },
    /// The certificate (and key) is RSA with fewer than 2048 bits.
    #[error("the RSA key has {bits} bits; at least 2048 bits are required")]
    RsaKeyTooSmall {
        /// Modulus size in bits.
        bits: u32,
    },
    /// The key is of a type TLS cannot use here (DSA, Ed448, P-521, ...).
    #[error(
        "{key_type} keys are not supported; use RSA (2048 bits or more), ECDSA P-256 or P-384, or Ed25519"
    )]
    UnsupportedKeyType {
        /// A human name of the key type found.
        key_type: String,
    },
    /// The common name is neither a DNS name nor an IP address.
    #[error("the common name must be a DNS name (such as camera.example.com) or an IP address")]
    InvalidCommonName,
    /// The country is not exactly two ASCII letters.
    #[error("the country must be a two-letter code such as DE")]
    InvalidCountry,
    /// The e-mail address does not have exactly one `@` or contains white space.
    #[error("the e-mail address must contain exactly one @ and no spaces")]
    InvalidEmail,
    /// `validity_days` is outside 1..=3650.
    #[error("the validity must be between 1 and 3650 days, not {days}")]
    InvalidValidity {
        /// The rejected value.
        days: u32,
    },
    /// A subject attribute (state, locality, organization, organizational
    /// unit) is longer than 128 characters or contains control characters.
    #[error("the {} must be at most 128 characters without control characters", label(.field))]
    InvalidAttribute {
        /// Which form field.
        field: &'static str,
    },
    /// Key, certificate or CSR generation failed inside the crypto library.
    #[error("the key or certificate could not be generated: {detail}")]
    GenerationFailed {
        /// What the library reported.
        detail: String,
    },
}

/// Human name of a field for messages.
fn label(field: &str) -> &str {
    match field {
        FIELD_PRIVATE_KEY => "private key",
        "organizational_unit" => "organizational unit",
        "common_name" => "common name",
        other => other,
    }
}

impl CertError {
    /// Stable snake_case code for API clients.
    pub fn code(&self) -> ErrorCode {
        match self {
            CertError::TooLarge { .. } => ErrorCode::TooLarge,
            CertError::Empty { .. } => ErrorCode::Empty,
            CertError::DerNotPem { .. } => ErrorCode::DerNotPem,
            CertError::NotPem { .. } => ErrorCode::NotPem,
            CertError::Truncated { .. } => ErrorCode::Truncated,
            CertError::InvalidPem { .. } => ErrorCode::InvalidPem,
            CertError::CsrNotCertificate => ErrorCode::CsrNotCertificate,
            CertError::NoCertificate => ErrorCode::NoCertificate,
            CertError::NoPrivateKey => ErrorCode::NoPrivateKey,
            CertError::InvalidCertificate { .. } => ErrorCode::InvalidCertificate,
            CertError::UnsupportedVersion { .. } => ErrorCode::UnsupportedCertificateVersion,
            CertError::InvalidPrivateKey { .. } => ErrorCode::InvalidPrivateKey,
            CertError::PassphraseRequired => ErrorCode::PassphraseRequired,
            CertError::WrongPassphrase => ErrorCode::WrongPassphrase,
            CertError::UnsupportedEncryption { .. } => ErrorCode::UnsupportedEncryption,
            CertError::KeyMismatch { .. } => ErrorCode::KeyMismatch,
            CertError::Expired { .. } => ErrorCode::Expired,
            CertError::NotYetValid { .. } => ErrorCode::NotYetValid,
            CertError::RsaKeyTooSmall { .. } => ErrorCode::RsaKeyTooSmall,
            CertError::UnsupportedKeyType { .. } => ErrorCode::UnsupportedKeyType,
            CertError::InvalidCommonName => ErrorCode::InvalidCommonName,
            CertError::InvalidCountry => ErrorCode::InvalidCountry,
            CertError::InvalidEmail => ErrorCode::InvalidEmail,
            CertError::InvalidValidity { .. } => ErrorCode::InvalidValidity,
            CertError::InvalidAttribute { .. } => ErrorCode::InvalidAttribute,
            CertError::GenerationFailed { .. } => ErrorCode::GenerationFailed,
        }
    }

    /// The upload or form field this error concerns.
    pub fn field(&self) -> &'static str {
        match self {
            CertError::TooLarge { field }
            | CertError::Empty { field }
            | CertError::DerNotPem { field }
            | CertError::NotPem { field }
            | CertError::Truncated { field }
            | CertError::InvalidPem { field }
            | CertError::KeyMismatch { field }
            | CertError::InvalidAttribute { field } => field,
            CertError::CsrNotCertificate
            | CertError::NoCertificate
            | CertError::InvalidCertificate { .. }
            | CertError::UnsupportedVersion { .. }
            | CertError::Expired { .. }
            | CertError::NotYetValid { .. }
            | CertError::RsaKeyTooSmall { .. }
            | CertError::UnsupportedKeyType { .. } => FIELD_CERTIFICATE,
            CertError::NoPrivateKey
            | CertError::InvalidPrivateKey { .. }
            | CertError::UnsupportedEncryption { .. } => FIELD_PRIVATE_KEY,
            CertError::PassphraseRequired | CertError::WrongPassphrase => FIELD_PASSPHRASE,
            CertError::InvalidCommonName => "common_name",
            CertError::InvalidCountry => "country",
            CertError::InvalidEmail => "email",
            CertError::InvalidValidity { .. } => "validity_days",
            CertError::GenerationFailed { .. } => "key_type",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_sentence_with_labels() {
        let e = CertError::Empty { field: FIELD_PRIVATE_KEY };
        assert_eq!(e.to_string(), "the private key file is empty");
        assert_eq!(e.code(), "empty");
        assert_eq!(e.field(), "private_key");
        let e = CertError::KeyMismatch { field: FIELD_CERTIFICATE };
        assert_eq!(e.to_string(), "the private key does not match the certificate's public key");
        assert_eq!(e.field(), "certificate");
    }
}

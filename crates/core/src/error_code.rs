//! Every machine-readable error code portcullis gives: in API error bodies
//! (`{"error": {"code", ...}}`), in test-notification outcomes and in the
//! event log's details.
//!
//! The codes are a contract with API clients, the web UI (which translates
//! some of them) and outside checks: each is serialised as the snake_case
//! text written next to it, and that text never changes. A new situation gets
//! a new code rather than a new meaning for an old one. The OpenAPI document
//! lists them all (the `ErrorCode` schema).

use serde::Serialize;

/// Declares [`ErrorCode`] with each variant's wire text, so the text is
/// written once and [`ErrorCode::as_str`], serde and the list of all codes
/// cannot disagree.
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $text:literal, )+) => {
        /// A stable machine-readable error code (see the [module](self) docs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])+ #[serde(rename = $text)] $variant, )+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as it appears on the wire, e.g. `out_of_range`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)+
                }
            }
        }
    };
}

error_codes! {
    // ---- Operator input: settings, profiles, accounts, forms ----
    /// A number lies outside its allowed range (ports, minutes, limits).
    OutOfRange = "out_of_range",
    /// A value is listed twice where each must be unique (ports, rules, identifiers).
    Duplicate = "duplicate",
    /// More entries than allowed (rules, profiles, recipients, identifiers).
    TooMany = "too_many",
    /// A value is too large (a profile's audio, an uploaded file).
    TooLarge = "too_large",
    /// A required value is missing (a field of the body, an upload's file, a new account's password).
    Required = "required",
    /// A value has the wrong form or is not one of the allowed choices.
    InvalidValue = "invalid_value",
    /// The body names a field that does not exist.
    UnknownField = "unknown_field",
    /// A JSON object names the same key twice (which one would count is ambiguous).
    DuplicateKey = "duplicate_key",
    /// The body is not valid JSON.
    MalformedJson = "malformed_json",
    /// A configuration file cannot be read as a configuration.
    InvalidConfig = "invalid_config",
    /// A configuration file was written by a newer version.
    UnsupportedVersion = "unsupported_version",
    /// Two listeners of the settings use the same port.
    PortConflict = "port_conflict",
    /// HTTP and HTTPS would both be switched off.
    NoListener = "no_listener",
    /// A setting needs HTTPS switched on (e.g. redirecting HTTP to it).
    NeedsHttps = "needs_https",
    /// No open port would allow the admin UI and API: the operator would be locked out.
    NoAdminPort = "no_admin_port",
    /// The intrusion detection settings select a profile that does not exist.
    UnknownProfile = "unknown_profile",
    /// HSTS switched on while the certificate in use could lock browsers out
    /// (self-signed, or outside its validity).
    HstsNeedsTrustedCertificate = "hsts_needs_trusted_certificate",
    /// A trusted proxy entry would trust every address.
    TooBroad = "too_broad",
    /// Not an IP address (or an e-mail address, where one is expected).
    InvalidAddress = "invalid_address",
    /// A network's prefix length is not a number.
    InvalidPrefix = "invalid_prefix",
    /// A network's prefix length is longer than the address.
    PrefixOutOfRange = "prefix_out_of_range",
    /// A network has bits set beyond its prefix, as in `10.0.0.1/8`.
    HostBitsSet = "host_bits_set",
    /// Not a host name or IP address.
    InvalidHost = "invalid_host",
    /// A message template is too long or holds control characters.
    InvalidTemplate = "invalid_template",
    /// Text that should be PEM (certificates, a CA bundle) is not, or holds nothing usable.
    InvalidPem = "invalid_pem",
    /// An IP Notify destination is not `host:port`.
    InvalidDestination = "invalid_destination",
    /// Not an upper-case HTTP method.
    InvalidMethod = "invalid_method",
    /// An HTTP request path that does not start with `/` or holds spaces.
    InvalidPath = "invalid_path",
    /// Not a valid HTTP header name or value.
    InvalidHeader = "invalid_header",
    /// A header the device sets itself.
    ReservedHeader = "reserved_header",
    /// A user name for a remote service (SMTP, HTTP, SIP) that cannot be sent.
    InvalidUsername = "invalid_username",
    /// A password for a remote service that cannot be sent.
    InvalidPassword = "invalid_password",
    /// A content type that is not one line.
    InvalidContentType = "invalid_content_type",
    /// Not a `sip:` URI.
    InvalidUri = "invalid_uri",
    /// A phone profile's audio is not base64 of a usable WAV file.
    InvalidAudio = "invalid_audio",
    /// A profile or API token name with characters other than letters, digits, `.`, `_`, `-`.
    InvalidName = "invalid_name",
    /// A profile whose CA certificate or audio its sender cannot use.
    InvalidProfile = "invalid_profile",
    /// A profile the intrusion detection settings select cannot be deleted.
    ProfileInUse = "profile_in_use",
    /// An ACME directory URL that is not `https://host/...`.
    InvalidUrl = "invalid_url",
    /// An ACME identifier that is neither a DNS name nor an IP address.
    InvalidIdentifier = "invalid_identifier",
    /// An External Account Binding key id that is too long or not printable.
    InvalidKeyId = "invalid_key_id",
    /// An External Account Binding HMAC key that is not base64url or too short.
    InvalidKey = "invalid_key",
    /// A login name of the device with characters it does not allow.
    InvalidUserName = "invalid_user_name",
    /// A new password shorter than allowed.
    PasswordTooShort = "password_too_short",
    /// A new password longer than allowed.
    PasswordTooLong = "password_too_long",
    /// The last member of `admins` cannot be deleted or leave the group.
    LastAdmin = "last_admin",
    /// The current password given to change one's own password is wrong.
    CurrentPasswordWrong = "current_password_wrong",
    /// An API token's scope is wider than its account's own rights.
    ScopeExceedsAccount = "scope_exceeds_account",

    // ---- Configuration life cycle ----
    /// A port of the new settings cannot be opened.
    PortUnavailable = "port_unavailable",
    /// Another change still waits for confirmation.
    ChangeUnconfirmed = "change_unconfirmed",
    /// A confirmation came while nothing waits for one.
    NothingPending = "nothing_pending",
    /// A confirmation came through a listener or address the change removes.
    ConfirmFromNewAddress = "confirm_from_new_address",
    /// Access rules that deny the requester's own address, sent without `?force=true`.
    WouldLockOut = "would_lock_out",
    /// A backup's passphrase shorter than 12 characters.
    PassphraseTooShort = "passphrase_too_short",
    /// A backup file that is not an age file of a portcullis backup, is cut
    /// short or was changed.
    BackupDamaged = "backup_damaged",
    /// A backup made by a newer version (its format or its configuration).
    BackupNewerVersion = "backup_newer_version",

    // ---- Certificates: uploads, generation, state ----
    /// An uploaded file is empty.
    Empty = "empty",
    /// An uploaded file is binary DER; PEM is expected.
    DerNotPem = "der_not_pem",
    /// An uploaded file is not PEM.
    NotPem = "not_pem",
    /// A PEM block has no end line.
    Truncated = "truncated",
    /// A certificate request was uploaded instead of a certificate.
    CsrNotCertificate = "csr_not_certificate",
    /// The upload holds no certificate.
    NoCertificate = "no_certificate",
    /// The upload holds no private key.
    NoPrivateKey = "no_private_key",
    /// A certificate cannot be parsed or used (also: an ACME CA returned one that is unusable).
    InvalidCertificate = "invalid_certificate",
    /// An X.509 version 1 certificate (no extensions): it must be signed again as version 3.
    UnsupportedCertificateVersion = "unsupported_certificate_version",
    /// A private key cannot be parsed or used.
    InvalidPrivateKey = "invalid_private_key",
    /// The key is encrypted and no passphrase was given.
    PassphraseRequired = "passphrase_required",
    /// The passphrase does not decrypt the key.
    WrongPassphrase = "wrong_passphrase",
    /// The key is encrypted with a scheme the device cannot decrypt.
    UnsupportedEncryption = "unsupported_encryption",
    /// The private key does not belong to the certificate.
    KeyMismatch = "key_mismatch",
    /// The certificate's validity has ended.
    Expired = "expired",
    /// The certificate's validity has not begun.
    NotYetValid = "not_yet_valid",
    /// An RSA key under 2048 bits.
    RsaKeyTooSmall = "rsa_key_too_small",
    /// A key type TLS cannot serve here.
    UnsupportedKeyType = "unsupported_key_type",
    /// A common name that is neither a DNS name nor an IP address.
    InvalidCommonName = "invalid_common_name",
    /// A country that is not two letters.
    InvalidCountry = "invalid_country",
    /// A contact e-mail address that is not one.
    InvalidEmail = "invalid_email",
    /// A validity outside 1 to 3650 days.
    InvalidValidity = "invalid_validity",
    /// A subject attribute that is too long or holds control characters.
    InvalidAttribute = "invalid_attribute",
    /// Key or certificate generation failed inside the crypto library.
    GenerationFailed = "generation_failed",
    /// "Upload certificate" without a request or individual key to match.
    NoKey = "no_key",
    /// Download asked for while only the factory certificate exists.
    NoIndividualCertificate = "no_individual_certificate",
    /// Download of a certificate request while none is pending.
    NoCertificateRequest = "no_certificate_request",
    /// An upload is not valid `multipart/form-data`.
    InvalidMultipart = "invalid_multipart",
    /// An upload field was sent twice.
    DuplicateField = "duplicate_field",

    /// A setting that only a TLS syslog destination takes was given for another transport.
    TlsOnly = "tls_only",
    /// A setting that only an `https` URL takes was given for an `http` one.
    HttpsOnly = "https_only",
    /// Two settings that exclude each other were both given (a pinned certificate and a CA).
    ConflictingSettings = "conflicting_settings",
    /// A certificate fingerprint is not 64 hexadecimal digits (colons allowed).
    InvalidFingerprint = "invalid_fingerprint",
    /// A duration is not in the form the receiver takes.
    InvalidDuration = "invalid_duration",
    /// A CrowdSec machine id has characters or a length the LAPI refuses.
    InvalidMachineId = "invalid_machine_id",

    // ---- ACME enrolment ----
    /// The ACME settings are incomplete or invalid.
    InvalidSettings = "invalid_settings",
    /// The ACME server cannot be reached (network, TLS, not an ACME server).
    AcmeServerUnreachable = "acme_server_unreachable",
    /// The CA requires External Account Binding and none is set.
    EabRequired = "eab_required",
    /// The CA refused the account.
    AccountRejected = "account_rejected",
    /// The CA refused the order.
    OrderRejected = "order_rejected",
    /// The CA offers no challenge of the configured type.
    ChallengeNotOffered = "challenge_not_offered",
    /// The CA could not validate control over an identifier.
    ValidationFailed = "validation_failed",
    /// The CA limits requests.
    RateLimited = "rate_limited",
    /// A step of an enrolment or a delivery did not finish in time.
    Timeout = "timeout",
    /// The key or CSR of an enrolment could not be generated.
    KeyGenerationFailed = "key_generation_failed",
    /// Any other ACME protocol failure.
    ProtocolError = "protocol_error",

    // ---- Notification delivery ----
    /// The peer's name did not resolve, or the connection was refused.
    ConnectFailed = "connect_failed",
    /// The TLS handshake with the peer failed (e.g. its certificate is not trusted).
    TlsFailed = "tls_failed",
    /// The connection broke while talking to the peer.
    ConnectionFailed = "connection_failed",
    /// The SMTP server refused the message.
    SmtpRefused = "smtp_refused",
    /// The SMTP server offers no login the device can use.
    SmtpAuthUnavailable = "smtp_auth_unavailable",
    /// The SMTP server does not offer STARTTLS, which the profile requires.
    StarttlsUnavailable = "starttls_unavailable",
    /// Any other SMTP failure.
    SmtpFailed = "smtp_failed",
    /// The HTTP peer answered with an error status.
    HttpStatus = "http_status",
    /// Some destinations got the message, some did not.
    PartialDelivery = "partial_delivery",
    /// No destination got the message.
    AllDestinationsFailed = "all_destinations_failed",
    /// The callee was busy.
    CallBusy = "call_busy",
    /// The callee declined the call.
    CallDeclined = "call_declined",
    /// Nobody answered within the ring timeout.
    NoAnswer = "no_answer",
    /// The SIP registrar or proxy refused the credentials.
    SipAuthFailed = "sip_auth_failed",
    /// The SIP peer refused the request.
    SipRefused = "sip_refused",
    /// The SIP peer answered something the device cannot follow.
    SipProtocol = "sip_protocol",
    /// The delivery queue is full.
    QueueFull = "queue_full",
    /// The server is shutting down.
    Shutdown = "shutdown",

    // ---- Requests: login, authorization, limits ----
    /// Wrong user name or password at the login.
    WrongCredentials = "wrong_credentials",
    /// Too many password checks wait; retry after `Retry-After`.
    Busy = "busy",
    /// Too many failed logins from the client's address; retry after `Retry-After`.
    TooManyAttempts = "too_many_attempts",
    /// The account's password logins are locked after too many failed
    /// logins (from any addresses); retry after `Retry-After`, or use an API token.
    AccountLocked = "account_locked",
    /// The account signs in with a second factor: the login needs its code
    /// (from the authenticator app) or a recovery code besides the password.
    SecondFactorRequired = "second_factor_required",
    /// The second factor's code (or recovery code) is wrong: a failed login.
    SecondFactorWrong = "second_factor_wrong",
    /// The second factor's code was used already (each works once): wait for the next one.
    SecondFactorCodeUsed = "second_factor_code_used",
    /// Basic or Digest for an account with a second factor: people sign in
    /// through the web UI, machines use an API token.
    SecondFactorAccount = "second_factor_account",
    /// The account has a second factor already (reset it to enrol another).
    SecondFactorExists = "second_factor_exists",
    /// No enrolment of a second factor waits for its first code (none was
    /// started, or it was started over ten minutes ago).
    SecondFactorNotPending = "second_factor_not_pending",
    /// No valid credentials (or the session has ended).
    Unauthorized = "unauthorized",
    /// The user's group may not do this.
    Forbidden = "forbidden",
    /// An unsafe request of a session without its CSRF token.
    CsrfTokenInvalid = "csrf_token_invalid",
    /// The client's address is denied by access control.
    AccessDenied = "access_denied",
    /// The admin UI and API are not allowed on the port the request came through.
    AdminNotAllowed = "admin_not_allowed",
    /// A request another web site made a browser send.
    CrossOriginRefused = "cross_origin_refused",
    /// The request's `Host` is not one of the device's names (DNS rebinding).
    HostNotAllowed = "host_not_allowed",
    /// The request needs a part of the server this build does not carry (501).
    FeatureNotBuilt = "feature_not_built",
    /// The request is malformed.
    BadRequest = "bad_request",
    /// No such resource.
    NotFound = "not_found",
    /// The resource does not answer this method.
    MethodNotAllowed = "method_not_allowed",
    /// No representation the client accepts.
    NotAcceptable = "not_acceptable",
    /// The request (or its body) did not arrive in time.
    RequestTimeout = "request_timeout",
    /// The body is larger than allowed.
    PayloadTooLarge = "payload_too_large",
    /// The URI is longer than allowed.
    UriTooLong = "uri_too_long",
    /// The body is not of the expected type (e.g. not JSON).
    UnsupportedMediaType = "unsupported_media_type",
    /// The request is well-formed but cannot be processed.
    Unprocessable = "unprocessable",
    /// The client sends too many requests.
    TooManyRequests = "too_many_requests",
    /// The request headers are larger than allowed.
    HeadersTooLarge = "headers_too_large",
    /// A precondition of the request (`If-Match`, `If-Unmodified-Since`) failed (412).
    PreconditionFailed = "precondition_failed",
    /// The requested range lies outside the file (416).
    RangeNotSatisfiable = "range_not_satisfiable",
    /// The device's storage is full; nothing was changed (507).
    StorageFull = "storage_full",
    /// The service is unavailable for a moment.
    Unavailable = "unavailable",
    /// The server failed; the cause is in its log, never in the answer.
    InternalError = "internal_error",
    /// An error status no other code describes.
    Error = "error",
}

// Written by hand: utoipa's derive does not see the serde renames the macro
// passes through, and would list the variant names instead of the codes.
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A stable machine-readable error code; its text never changes."))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets tests and callers compare a code with its wire text.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Lets tests and callers compare a code with its wire text.
impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_text_is_serde_text_and_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert_eq!(serde_json::to_value(code).expect("serialises"), text, "{code:?}");
            assert!(
                !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !text.starts_with('_')
                    && !text.ends_with('_'),
                "{text} is not snake_case"
            );
            assert!(seen.insert(text), "{text} is declared twice");
            assert_eq!(code.to_string(), text);
            assert_eq!(*code, text);
        }
    }

    #[test]
    fn codes_clients_rely_on_keep_their_text() {
        // A sample across the areas: these texts are a contract.
        let pairs = [
            (ErrorCode::OutOfRange, "out_of_range"),
            (ErrorCode::HstsNeedsTrustedCertificate, "hsts_needs_trusted_certificate"),
            (ErrorCode::KeyMismatch, "key_mismatch"),
            (ErrorCode::AcmeServerUnreachable, "acme_server_unreachable"),
            (ErrorCode::AllDestinationsFailed, "all_destinations_failed"),
            (ErrorCode::CsrfTokenInvalid, "csrf_token_invalid"),
            (ErrorCode::InternalError, "internal_error"),
        ];
        for (code, text) in pairs {
            assert_eq!(code.as_str(), text);
        }
    }
}

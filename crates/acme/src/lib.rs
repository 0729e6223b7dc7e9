//! ACME (RFC 8555) certificate enrolment for portcullis.
//!
//! * [`AcmeSettings`]: what the operator configures (directory, contacts,
//!   identifiers, challenge type, key type, External Account Binding, CA
//!   bundle for the ACME server itself), with normalization, validation and
//!   redaction of the EAB secret.
//! * [`enrol`]: one enrolment with instant-acme (on the build's crypto provider),
//!   answering http-01 or tls-alpn-01 through a [`ChallengeResponder`] the
//!   server implements; the key and CSR are made with rcgen for all
//!   identifiers; every wait is bounded.
//! * [`renewal_time`] and [`backoff`]: when to renew and when to retry.
//!
//! Storing the account credentials and the certificate, scheduling and hot
//! swapping are the server's business.

mod client;
mod enrol;
mod error;
mod settings;

use std::time::Duration;

use time::OffsetDateTime;

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
pub use settings::{
    AcmeSettings, Challenge, MAX_CA_BUNDLE_LEN, MAX_CONTACTS, MAX_IDENTIFIERS, normalize_contact,
    normalize_identifier,
};

/// First retry delay after a failed enrolment.
pub const BACKOFF_BASE: Duration = Duration::from_secs(60);
/// Longest retry delay: a CA outage should not keep a renewal waiting for days.
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 60 * 60);

/// When to renew: two thirds into the lifetime, as Let's Encrypt advises
/// (30 days before the end of a 90-day certificate). A certificate whose
/// `not_after` precedes `not_before` is due at once (`not_before`).
pub fn renewal_time(not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
    let lifetime = not_after - not_before;
    if lifetime.is_negative() {
        return not_before;
    }
    not_before + lifetime * 2 / 3
}

/// Delay before retry number `attempt` (0 = the first retry): 1 min, 2, 4,
/// ... doubled each time, capped at [`BACKOFF_MAX`] (6 h).
pub fn backoff(attempt: u32) -> Duration {
    // 2^9 min > 6 h already: capping the exponent avoids overflow.
    let factor = 1u32 << attempt.min(9);
    (BACKOFF_BASE * factor).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn renewal_at_two_thirds() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(renewal_time(nb, nb + time::Duration::days(90)), nb + time::Duration::days(60));
        assert_eq!(renewal_time(nb, nb + time::Duration::seconds(300)), nb + time::Duration::seconds(200));
        assert_eq!(renewal_time(nb, nb), nb);
        assert_eq!(renewal_time(nb, nb - time::Duration::days(1)), nb, "inverted validity renews at once");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let minutes: Vec<u64> = (0..12).map(|a| backoff(a).as_secs() / 60).collect();
        assert_eq!(minutes, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 360, 360, 360]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}

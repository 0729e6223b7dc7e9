//! HSTS (RFC 6797, `Strict-Transport-Security`): when the device may tell
//! browsers to come back over HTTPS only.
//!
//! A browser that has seen the header refuses to let its user click through
//! any certificate warning for the device until `max-age` has passed. With a
//! self-signed certificate, or one outside its validity, that warning is
//! certain: everyone would be locked out. So HSTS is only *eligible* while
//! the certificate in use is CA-signed and valid at the (injected) time, and
//! the header is sent only then, and only over HTTPS.

use time::OffsetDateTime;

use crate::ErrorCode;
use crate::ValidationError;
use crate::settings::WebServerSettings;

/// What the HSTS rule needs to know of the certificate in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedCertificate {
    /// Whether the leaf's issuer is its own subject (no CA vouches for it).
    pub self_signed: bool,
    /// Start of the leaf's validity.
    pub not_before: OffsetDateTime,
    /// End of the leaf's validity.
    pub not_after: OffsetDateTime,
}

/// Whether HSTS is safe with `cert` at `now`: CA-signed, and `now` within
/// its validity (both ends included, as in X.509).
pub fn eligible(cert: &ServedCertificate, now: OffsetDateTime) -> bool {
    !cert.self_signed && cert.not_before <= now && now <= cert.not_after
}

/// Checks a change of the web server settings: HSTS may be switched on
/// (`was_enabled` false, `settings.hsts_enabled` true) only while
/// [`eligible`]. Settings that keep it on are not refused when the
/// certificate later stops being eligible (it expires, or is deleted): the
/// header simply stops ([`max_age`]), and the operator can still change
/// everything else, reboot and roll back.
pub fn check(
    was_enabled: bool,
    settings: &WebServerSettings,
    cert: &ServedCertificate,
    now: OffsetDateTime,
) -> Result<(), ValidationError> {
    if settings.hsts_enabled && !was_enabled && !eligible(cert, now) {
        return Err(ValidationError::new(
            "hsts_enabled",
            ErrorCode::HstsNeedsTrustedCertificate,
            "HSTS can only be switched on while a CA-signed certificate within its validity is in use: with a self-signed or expired one, browsers would lock everyone out",
        ));
    }
    Ok(())
}

/// The `max-age` to send on an HTTPS answer, if HSTS is on and eligible now.
/// Plain HTTP answers never carry the header (RFC 6797 §7.2).
pub fn max_age(settings: &WebServerSettings, cert: &ServedCertificate, now: OffsetDateTime) -> Option<u32> {
    (settings.hsts_enabled && eligible(cert, now)).then_some(settings.hsts_max_age_seconds)
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    const NOT_BEFORE: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);
    const NOT_AFTER: OffsetDateTime = datetime!(2026-04-01 0:00 UTC);
    const SECOND: Duration = Duration::seconds(1);

    fn cert(self_signed: bool) -> ServedCertificate {
        ServedCertificate { self_signed, not_before: NOT_BEFORE, not_after: NOT_AFTER }
    }

    fn settings(on: bool) -> WebServerSettings {
        WebServerSettings { hsts_enabled: on, hsts_max_age_seconds: 86_400, ..WebServerSettings::default() }
    }

    #[test]
    fn eligible_only_ca_signed_within_validity_both_ends_included() {
        let ca = cert(false);
        assert!(!eligible(&ca, NOT_BEFORE - SECOND));
        assert!(eligible(&ca, NOT_BEFORE));
        assert!(eligible(&ca, NOT_AFTER));
        assert!(!eligible(&ca, NOT_AFTER + SECOND));
        assert!(!eligible(&cert(true), NOT_BEFORE + Duration::days(1)), "self-signed never");
    }

    #[test]
    fn switching_on_is_refused_unless_eligible() {
        let now = NOT_BEFORE + Duration::days(1);
        let e = check(false, &settings(true), &cert(true), now).expect_err("self-signed");
        assert_eq!((e.field.as_str(), e.code), ("hsts_enabled", ErrorCode::HstsNeedsTrustedCertificate));
        assert!(check(false, &settings(true), &cert(false), NOT_AFTER + SECOND).is_err(), "expired");
        assert!(check(false, &settings(true), &cert(false), NOT_BEFORE - SECOND).is_err(), "not yet valid");
        assert_eq!(check(false, &settings(true), &cert(false), NOT_AFTER), Ok(()));
        assert_eq!(check(false, &settings(false), &cert(true), now), Ok(()), "off is always fine");
    }

    #[test]
    fn kept_on_is_not_refused_but_the_header_stops() {
        let expired = NOT_AFTER + SECOND;
        assert_eq!(check(true, &settings(true), &cert(false), expired), Ok(()));
        assert_eq!(check(true, &settings(true), &cert(true), expired), Ok(()));
        assert_eq!(max_age(&settings(true), &cert(false), NOT_AFTER), Some(86_400));
        assert_eq!(max_age(&settings(true), &cert(false), expired), None);
        assert_eq!(max_age(&settings(true), &cert(true), NOT_AFTER), None);
        assert_eq!(max_age(&settings(false), &cert(false), NOT_AFTER), None);
    }
}

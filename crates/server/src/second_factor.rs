//! The second factor of an account (two-step verification, README
//! "Two-step verification"): its stored form, the codes computed from its
//! secret (TOTP, RFC 6238, with the `totp-rs` crate), its recovery codes, and
//! the QR code of the enrolment (SVG, with the `qrcode` crate). The rules
//! (steps, replay, the recovery codes' form) are the core's
//! ([`portcullis_core::second_factor`]).
//!
//! Stored with the account in `users.json` (0600, written atomically): the
//! secret itself, which the server needs to compute codes (as it needs the
//! Digest secrets), never shown again after the enrolment and never logged
//! (the `Debug` form leaves it out); the last time step used, so that a
//! code works once, across restarts too; and each unused recovery code as
//! its SHA-256 only. An unkeyed hash, not argon2 and not the token key:
//! the codes have 80 random bits, so no dictionary helps against the hash,
//! and a backup restored on another device keeps them working.

use portcullis_core::second_factor::{self as rules, CodeRefusal};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// An account's confirmed second factor, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondFactor {
    /// The shared secret, base32 (RFC 4648, as authenticator apps take it).
    pub secret: String,
    /// When it was confirmed.
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled: OffsetDateTime,
    /// The time step of the last code accepted: that step and older ones are refused.
    #[serde(default)]
    pub last_step: Option<u64>,
    /// SHA-256 (hex) of each recovery code not used yet.
    #[serde(default)]
    pub recovery: Vec<String>,
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondFactor")
            .field("enrolled", &self.enrolled)
            .field("last_step", &self.last_step)
            .field("recovery_codes_left", &self.recovery.len())
            .finish_non_exhaustive()
    }
}

/// An enrolment just started: what the authenticator app needs, shown to
/// its person now and never again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The shared secret, base32 (to type into the app if it cannot scan).
    pub secret: String,
    /// The `otpauth://totp/…` URI the QR code holds.
    pub otpauth_uri: String,
    /// The QR code of `otpauth_uri`, an SVG picture.
    pub qr_svg: String,
    /// Seconds the enrolment waits for its first code.
    pub expires_in_seconds: u64,
}

/// What a code accepted was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeUse {
    /// A code of the authenticator app, of this time step.
    Code {
        /// Its time step.
        step: u64,
    },
    /// A recovery code, now gone.
    Recovery {
        /// Recovery codes still unused.
        left: usize,
    },
}

/// How the server computes the code of a secret at a time step.
pub type CodeAt = fn(&[u8], u64) -> u32;

impl SecondFactor {
    /// Checks `input` at `now_unix`: a 6-digit code of the app (its step
    /// newer than the last one used), else a recovery code not used yet;
    /// an accepted one is recorded as used (the caller writes the record).
    pub fn use_code(&mut self, input: &str, now_unix: i64, code_at: CodeAt) -> Result<CodeUse, CodeRefusal> {
        if rules::parse_code(input).is_some() {
            let Some(secret) = rules::base32_decode(&self.secret) else { return Err(CodeRefusal::Wrong) };
            let step = rules::check_code(input, now_unix, self.last_step, |s| code_at(&secret, s))?;
            self.last_step = Some(step);
            return Ok(CodeUse::Code { step });
        }
        let Some(code) = rules::normalize_recovery_code(input) else { return Err(CodeRefusal::Wrong) };
        let presented = recovery_hash(&code);
        // Compared with every stored hash, without an early exit.
        let mut found = None;
        for (i, h) in self.recovery.iter().enumerate() {
            if bool::from(h.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(i);
            }
        }
        let Some(i) = found else { return Err(CodeRefusal::Wrong) };
        self.recovery.remove(i);
        Ok(CodeUse::Recovery { left: self.recovery.len() })
    }
}

/// The stored form of a recovery code (its canonical form's SHA-256, hex).
pub fn recovery_hash(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// New recovery codes (shown once) and their hashes (stored).
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    (0..rules::RECOVERY_CODES)
        .map(|_| {
            let code = rules::recovery_code(rand::random());
            let hash = recovery_hash(&code);
            (code, hash)
        })
        .unzip()
}

/// A new secret: 160 random bits.
pub fn new_secret() -> Vec<u8> {
    rand::random::<[u8; rules::SECRET_BYTES]>().to_vec()
}

/// The TOTP code of `secret` at time step `step` (RFC 6238: HMAC-SHA-1,
/// 6 digits, 30-second steps), by `totp-rs`.
#[cfg(feature = "totp")]
pub fn code_at(secret: &[u8], step: u64) -> u32 {
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(rules::DIGITS as u8)
        .with_skew(0)
        .with_step_duration(rules::STEP_SECONDS)
        .with_secret(totp_rs::Secret::from(secret.to_vec()))
        .build();
    match totp {
        Ok(totp) => {
            totp.generate(step.saturating_mul(rules::STEP_SECONDS)).to_string().parse().unwrap_or(u32::MAX)
        }
        // Never for a secret of ours (160 bits); a code no input equals.
        Err(_) => u32::MAX,
    }
}

/// The enrolment's QR code: an SVG picture of the `otpauth://` URI (no
/// image crate: SVG is text, and the browser draws it).
#[cfg(feature = "totp")]
pub fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => {
            code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).quiet_zone(true).build()
        }
        // A URI of ours is far below a QR code's capacity.
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_work_once_and_the_debug_form_hides_the_secret() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!((codes.len(), hashes.len()), (10, 10));
        assert!(codes.iter().all(|c| c.len() == 19 && !hashes.contains(c)));
        let mut f = SecondFactor {
            secret: rules::base32(&[7; 20]),
            enrolled: OffsetDateTime::UNIX_EPOCH,
            last_step: None,
            recovery: hashes,
        };
        let never: CodeAt = |_, _| u32::MAX;
        let typed = codes[3].to_lowercase().replace('-', "");
        assert_eq!(f.use_code(&typed, 1_800_000_000, never), Ok(CodeUse::Recovery { left: 9 }));
        assert_eq!(f.use_code(&codes[3], 1_800_000_000, never), Err(CodeRefusal::Wrong), "once");
        assert_eq!(f.use_code("not a code", 1_800_000_000, never), Err(CodeRefusal::Wrong));
        let shown = format!("{f:?}");
        assert!(!shown.contains(&f.secret) && shown.contains("recovery_codes_left: 9"), "{shown}");
    }

    #[test]
    fn app_codes_record_their_step() {
        let mut f = SecondFactor {
            secret: rules::base32(&[7; 20]),
            enrolled: OffsetDateTime::UNIX_EPOCH,
            last_step: None,
            recovery: Vec::new(),
        };
        let by_step: CodeAt = |_, s| (s % 1_000_000) as u32;
        let now = 1_800_000_000;
        let step = rules::step_at(now).expect("step");
        let code = format!("{:06}", step % 1_000_000);
        assert_eq!(f.use_code(&code, now, by_step), Ok(CodeUse::Code { step }));
        assert_eq!(f.last_step, Some(step));
        assert_eq!(f.use_code(&code, now, by_step), Err(CodeRefusal::Used));
    }

    /// RFC 6238's SHA-1 test vectors (its appendix B), last six digits.
    #[cfg(feature = "totp")]
    #[test]
    fn codes_are_rfc_6238() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59u64, 287_082u32),
            (1_111_111_109, 81_804),
            (1_111_111_111, 50_471),
            (1_234_567_890, 5_924),
            (2_000_000_000, 279_037),
            (20_000_000_000, 353_130),
        ] {
            assert_eq!(code_at(secret, time / 30), code, "at {time}");
        }
    }

    #[cfg(feature = "totp")]
    #[test]
    fn the_qr_code_is_an_svg_picture() {
        let svg = qr_svg(&rules::otpauth_uri("portcullis", "admin", &rules::base32(&[1; 20])));
        assert!(svg.contains("<svg") && svg.ends_with("</svg>"), "{svg}");
    }
}

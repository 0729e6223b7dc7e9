//! A second factor for people (two-step verification): time-based one-time
//! codes (TOTP, RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) and
//! one-time recovery codes. The rules are here: which time steps a code may
//! come from, that a step is used once, what a recovery code looks like, the
//! enrolment's `otpauth://` URI and the secret's base32 form. Computing a
//! code from the secret is the server's (it passes it in as `code_at`), as
//! are the random bytes and the recovery codes' hashes.
//!
//! Machines do not use a second factor: they use API tokens
//! ([`crate::tokens`]); an account with one refuses Basic and Digest.

use std::time::Duration;

use crate::clock::Monotonic;

/// Seconds per time step (RFC 6238's recommended value, what every app uses).
pub const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one (clock drift, typing time).
pub const SKEW_STEPS: u64 = 1;
/// Bytes of a secret: 160 bits, RFC 4226's recommendation.
pub const SECRET_BYTES: usize = 20;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODES: usize = 10;
/// Random bytes per recovery code: 80 bits, 16 base32 characters.
pub const RECOVERY_CODE_BYTES: usize = 10;
/// How long a started enrolment waits for its first code.
pub const ENROLMENT_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The issuer the authenticator app shows beside the account's name.
pub const ISSUER: &str = "portcullis";

/// Why a presented code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    /// Neither a current code nor an unused recovery code.
    Wrong,
    /// A right code whose time step was used already (a replay, or the same
    /// code twice): wait for the next one.
    Used,
}

/// The time step of a Unix time; none before 1970 (a device whose clock is
/// not set yet cannot check codes).
pub fn step_at(unix_seconds: i64) -> Option<u64> {
    u64::try_from(unix_seconds).ok().map(|s| s / STEP_SECONDS)
}

/// The code a TOTP code is, if `input` is one: six digits, spaces ignored.
pub fn parse_code(input: &str) -> Option<u32> {
    let digits: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() != DIGITS as usize || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks a TOTP code at `now_unix` against the account's codes
/// (`code_at(step)`), one step either side; `last_step` is the step of the
/// last code the account used: a step at or before it is refused, so each
/// code works once, and an older one never again. Answers the step the
/// code belongs to (to remember as the new `last_step`). All candidate
/// steps are computed, whichever matches.
pub fn check_code(
    input: &str,
    now_unix: i64,
    last_step: Option<u64>,
    code_at: impl Fn(u64) -> u32,
) -> Result<u64, CodeRefusal> {
    let Some(code) = parse_code(input) else { return Err(CodeRefusal::Wrong) };
    let Some(now) = step_at(now_unix) else { return Err(CodeRefusal::Wrong) };
    let mut matched: Option<u64> = None;
    for step in now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS) {
        if code_at(step) == code {
            matched = Some(step);
        }
    }
    match matched {
        None => Err(CodeRefusal::Wrong),
        Some(step) if last_step.is_some_and(|last| step <= last) => Err(CodeRefusal::Used),
        Some(step) => Ok(step),
    }
}

/// The alphabet of recovery codes: Crockford's base32 (no I, L, O, U, so
/// nothing reads as another character).
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A recovery code from 10 random bytes: 16 characters in groups of four
/// (`7K2Q-M9XA-…`), 80 bits.
pub fn recovery_code(bytes: [u8; RECOVERY_CODE_BYTES]) -> String {
    let chars = base32_with(&bytes, RECOVERY_ALPHABET);
    let mut out = String::with_capacity(19);
    for (i, c) in chars.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// The canonical form of a typed recovery code (dashes and spaces dropped,
/// any case, O read as 0 and I or L as 1), if it is one.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    let mut chars = String::with_capacity(16);
    for c in input.chars().filter(|c| !c.is_whitespace() && *c != '-') {
        let c = match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !RECOVERY_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        chars.push(c);
    }
    if chars.len() != 16 {
        return None;
    }
    let mut out = String::with_capacity(19);
    for (i, c) in chars.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    Some(out)
}

/// RFC 4648 base32 (no padding): how authenticator apps take a secret.
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_with(bytes: &[u8], alphabet: &[u8; 32]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(alphabet[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(alphabet[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// A secret in RFC 4648 base32, without padding (as stored and shown).
pub fn base32(bytes: &[u8]) -> String {
    base32_with(bytes, BASE32_ALPHABET)
}

/// The bytes of a base32 secret (any case, spaces and padding ignored);
/// none if a character is not base32.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let c = c.to_ascii_uppercase();
        let value = BASE32_ALPHABET.iter().position(|&a| a as char == c)? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `otpauth://totp/…` URI an authenticator app reads from the enrolment's
/// QR code (Key Uri Format): the issuer and account as the label, the
/// secret, and the parameters spelt out (every app's defaults, but some
/// apps read only what is written).
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={secret_base32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        percent(issuer),
        percent(account),
        percent(issuer)
    )
}

/// Whether an enrolment started at `started` still waits for its first code at `now`.
pub fn enrolment_alive(started: Monotonic, now: Monotonic) -> bool {
    now.since(started) < ENROLMENT_LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for the HMAC: the code of a step is the step itself (mod 10^6).
    fn codes(step: u64) -> u32 {
        (step % 1_000_000) as u32
    }

    #[test]
    fn a_code_is_accepted_one_step_either_side_and_no_further() {
        let now = 1_800_000_000i64; // step 60_000_000
        let step = step_at(now).expect("after 1970");
        assert_eq!(step, 60_000_000);
        let code = |s: u64| format!("{:06}", codes(s));
        assert_eq!(check_code(&code(step), now, None, codes), Ok(step));
        assert_eq!(check_code(&code(step - 1), now, None, codes), Ok(step - 1), "the step before");
        assert_eq!(check_code(&code(step + 1), now, None, codes), Ok(step + 1), "the step after");
        assert_eq!(check_code(&code(step - 2), now, None, codes), Err(CodeRefusal::Wrong));
        assert_eq!(check_code(&code(step + 2), now, None, codes), Err(CodeRefusal::Wrong));
        // The step's edges: its first and last second.
        let first = (step * STEP_SECONDS) as i64;
        assert_eq!(check_code(&code(step + 1), first + 29, None, codes), Ok(step + 1));
        assert_eq!(check_code(&code(step - 1), first, None, codes), Ok(step - 1));
        assert_eq!(check_code(&code(step - 2), first + 29, None, codes), Err(CodeRefusal::Wrong));
    }

    #[test]
    fn a_step_is_used_once_and_an_older_one_never() {
        let now = 1_800_000_000i64;
        let step = step_at(now).expect("step");
        let code = |s: u64| format!("{:06}", codes(s));
        let used = check_code(&code(step), now, None, codes).expect("first use");
        assert_eq!(check_code(&code(step), now, Some(used), codes), Err(CodeRefusal::Used), "replay");
        assert_eq!(check_code(&code(step - 1), now, Some(used), codes), Err(CodeRefusal::Used), "older");
        assert_eq!(check_code(&code(step + 1), now, Some(used), codes), Ok(step + 1), "the next one");
        // 30 s on, the current step is a new one.
        assert_eq!(check_code(&code(step + 1), now + 30, Some(step), codes), Ok(step + 1));
    }

    #[test]
    fn what_is_not_a_code_is_wrong() {
        let now = 1_800_000_000i64;
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(check_code(bad, now, None, codes), Err(CodeRefusal::Wrong), "{bad:?}");
        }
        assert_eq!(parse_code(" 012 345 "), Some(12345), "spaces as apps show them");
        assert_eq!(step_at(-1), None, "a clock before 1970 checks nothing");
        assert_eq!(check_code("000000", -1, None, |_| 0), Err(CodeRefusal::Wrong));
        assert_eq!(check_code("000000", 0, None, |_| 0), Ok(1), "step 0 has no step before it");
    }

    #[test]
    fn recovery_codes_are_readable_groups_typed_loosely() {
        let code = recovery_code([0xff; RECOVERY_CODE_BYTES]);
        assert_eq!(code, "ZZZZ-ZZZZ-ZZZZ-ZZZZ");
        let code = recovery_code([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(code.len(), 19);
        assert_eq!(normalize_recovery_code(&code).as_deref(), Some(code.as_str()));
        assert_eq!(
            normalize_recovery_code(&code.to_lowercase().replace('-', " ")).as_deref(),
            Some(code.as_str())
        );
        assert_eq!(normalize_recovery_code("o1il-0000-0000-0000").as_deref(), Some("0111-0000-0000-0000"));
        for bad in ["", "ZZZZ-ZZZZ-ZZZZ", "ZZZZ-ZZZZ-ZZZZ-ZZZZ-Z", "UUUU-ZZZZ-ZZZZ-ZZZZ", "123456"] {
            assert_eq!(normalize_recovery_code(bad), None, "{bad:?}");
        }
        assert_ne!(recovery_code([1; 10]), recovery_code([2; 10]));
    }

    #[test]
    fn base32_is_rfc_4648() {
        // RFC 4648's test vectors, without padding.
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).as_deref(), Some(plain.as_bytes()));
        }
        assert_eq!(base32_decode("mzxw 6ytb oi==").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(base32_decode("MZ1W"), None);
        assert_eq!(base32(&[0u8; SECRET_BYTES]).len(), 32, "a secret is 32 characters");
    }

    #[test]
    fn the_uri_names_issuer_account_and_parameters() {
        assert_eq!(
            otpauth_uri("portcullis", "ops.team", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/portcullis:ops.team?secret=JBSWY3DPEHPK3PXP&issuer=portcullis&algorithm=SHA1&digits=6&period=30"
        );
        assert!(otpauth_uri("my camera", "a", "X").starts_with("otpauth://totp/my%20camera:a?"));
    }

    #[test]
    fn an_enrolment_waits_ten_minutes() {
        let start = Monotonic::from_origin(Duration::from_secs(100));
        assert!(enrolment_alive(start, start.after(ENROLMENT_LIFETIME - Duration::from_secs(1))));
        assert!(!enrolment_alive(start, start.after(ENROLMENT_LIFETIME)));
    }
}

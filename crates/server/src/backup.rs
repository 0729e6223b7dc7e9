//! Configuration backups (README "Backup and restore"): one file holding
//! what is needed to recover a device or clone it — the stored settings
//! (with the profiles' and fleet sections' secrets), the accounts with their
//! password hashes and, when asked for, the individual certificate with its
//! private key — encrypted with a passphrase in the age format
//! (<https://age-encryption.org/v1>, scrypt recipient).
//!
//! Inside the encryption is JSON ([`Backup`]): a format name and version,
//! the product version, and for information the device's host name and the
//! fingerprint of the certificate it served. Opening a file checks all of it
//! ([`Backup::checked`]: every section through the core's validation, the
//! accounts, the certificate) before anything is changed; applying it is the
//! runtime's (`Runtime::import_backup`).

use std::io::Read as _;

use portcullis_core::config::{Config, ParsedConfig};
use portcullis_core::{ErrorCode, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Group, UsersFile};
use crate::certs::StoredPair;

/// What the decrypted content says it is.
pub const FORMAT: &str = "portcullis-backup";
/// Version of the content's layout; a file with a higher one is refused
/// (`backup_newer_version`): an older firmware cannot know what it would drop.
pub const FORMAT_VERSION: u32 = 1;
/// Shortest passphrase a backup is made with: the file may leave the
/// device's network, and holds secrets an offline guesser could try at will.
pub const MIN_PASSPHRASE_LEN: usize = 12;
/// Longest passphrase taken (the scrypt input; a bound for the request).
pub const MAX_PASSPHRASE_LEN: usize = 1024;
/// Largest backup file taken (an import's upload; also what is decrypted).
pub const MAX_BACKUP_BYTES: usize = 3 * 1024 * 1024;
/// scrypt work factor of a new backup, N = 2^15 (32 MiB, r = 8): fixed rather
/// than calibrated to a second on the machine that makes it (age's default),
/// so that a backup made on a fast PC still opens on a device with little
/// memory; the 12-character minimum carries the rest of the strength.
pub const WORK_FACTOR: u8 = 15;
/// Highest work factor an import accepts, N = 2^18 (256 MiB): a file
/// re-encrypted elsewhere (`rage -p`) still opens, and a hostile one cannot
/// make the device compute for minutes or run out of memory.
pub const MAX_WORK_FACTOR: u8 = 18;

/// Why a backup could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The passphrase is missing or shorter than [`MIN_PASSPHRASE_LEN`].
    #[error("the passphrase must have at least {MIN_PASSPHRASE_LEN} characters")]
    PassphraseTooShort,
    /// The passphrase is longer than [`MAX_PASSPHRASE_LEN`].
    #[error("the passphrase may have at most {MAX_PASSPHRASE_LEN} characters")]
    PassphraseTooLong,
    /// The passphrase does not open the file.
    #[error("the passphrase does not open this backup; nothing was changed")]
    WrongPassphrase,
    /// The file is not an age file, is cut short or was changed.
    #[error("the file is not a portcullis backup or it is damaged ({0}); nothing was changed")]
    Damaged(String),
    /// The file is larger than [`MAX_BACKUP_BYTES`].
    #[error("the backup is larger than the {MAX_BACKUP_BYTES} bytes taken; nothing was changed")]
    TooLarge,
    /// The file was made by a newer firmware.
    #[error(
        "the backup was made by a newer version ({what} {found}; this one reads up to {supported}); update the firmware first; nothing was changed"
    )]
    NewerVersion {
        /// Which version: the backup format or the configuration's.
        what: &'static str,
        /// The file's version.
        found: u32,
        /// The newest this firmware reads.
        supported: u32,
    },
    /// A section, an account or the certificate breaks a rule.
    #[error("{0}")]
    Invalid(ValidationError),
    /// The backup could not be made (the certificate files unreadable,
    /// encryption failed inside the age library).
    #[error("the backup could not be made: {0}")]
    Failed(String),
}

impl BackupError {
    /// The stable code of the API's answer.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::PassphraseTooShort => ErrorCode::PassphraseTooShort,
            Self::PassphraseTooLong => ErrorCode::OutOfRange,
            Self::WrongPassphrase => ErrorCode::WrongPassphrase,
            Self::Damaged(_) => ErrorCode::BackupDamaged,
            Self::TooLarge => ErrorCode::TooLarge,
            Self::NewerVersion { .. } => ErrorCode::BackupNewerVersion,
            Self::Invalid(v) => v.code,
            Self::Failed(_) => ErrorCode::InternalError,
        }
    }

    /// The field concerned (the request's, or the file's section).
    pub fn field(&self) -> String {
        match self {
            Self::PassphraseTooShort | Self::PassphraseTooLong | Self::WrongPassphrase => "passphrase".into(),
            Self::Invalid(v) => v.field.clone(),
            _ => "file".into(),
        }
    }
}

/// What a backup says about where it comes from (for information: an
/// import never needs it to match).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupInfo {
    /// Always [`FORMAT`].
    pub format: String,
    /// The content's layout version ([`FORMAT_VERSION`] when made here).
    pub format_version: u32,
    /// The portcullis version that made it.
    pub product_version: String,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    /// The host name of the device it was made on.
    pub host_name: String,
    /// SHA-256 fingerprint of the certificate that device served.
    pub certificate_fingerprint_sha256: String,
    /// Whether the file carries the individual certificate and its key.
    pub includes_certificate: bool,
}

/// The decrypted content of a backup file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    /// Where it comes from.
    #[serde(flatten)]
    pub info: BackupInfo,
    /// The stored configuration, every section with its secrets (as
    /// `config.json` holds it; read through [`Config::parse`]).
    pub configuration: serde_json::Value,
    /// The accounts with their argon2id password hashes.
    pub users: UsersFile,
    /// The individual certificate chain and its private key, if asked for
    /// and the device has one (the factory certificate's key never leaves it).
    pub certificate: Option<StoredPair>,
}

/// A backup whose every part passed the checks, ready to apply.
#[derive(Debug, Clone)]
pub struct CheckedBackup {
    /// Where it comes from.
    pub info: BackupInfo,
    /// The configuration, valid.
    pub config: Config,
    /// Keys of the configuration this firmware does not know (ignored).
    pub unknown_keys: Vec<String>,
    /// The accounts, valid, with at least one administrator.
    pub users: UsersFile,
    /// The certificate, usable (chain and matching key), with its fingerprint.
    pub certificate: Option<(StoredPair, String)>,
}

/// Checks a passphrase for a new backup.
pub fn check_passphrase(passphrase: &str) -> Result<(), BackupError> {
    let chars = passphrase.chars().count();
    if chars < MIN_PASSPHRASE_LEN {
        return Err(BackupError::PassphraseTooShort);
    }
    if passphrase.len() > MAX_PASSPHRASE_LEN {
        return Err(BackupError::PassphraseTooLong);
    }
    Ok(())
}

/// Encrypts `backup` with `passphrase` (checked first); CPU-bound for a
/// fraction of a second (scrypt): call off the async threads.
pub fn seal(backup: &Backup, passphrase: &str) -> Result<Vec<u8>, BackupError> {
    check_passphrase(passphrase)?;
    let plain = serde_json::to_vec(backup).map_err(|e| BackupError::Failed(e.to_string()))?;
    let mut recipient = age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase.to_owned()));
    recipient.set_work_factor(WORK_FACTOR);
    age::encrypt(&recipient, &plain).map_err(|e| BackupError::Failed(e.to_string()))
}

/// Decrypts and reads a backup file: the wrong passphrase, a damaged file
/// and a newer format are told apart. CPU-bound (scrypt): call off the
/// async threads.
pub fn open(file: &[u8], passphrase: &str) -> Result<Backup, BackupError> {
    if file.len() > MAX_BACKUP_BYTES {
        return Err(BackupError::TooLarge);
    }
    if passphrase.is_empty() {
        return Err(BackupError::WrongPassphrase);
    }
    if passphrase.len() > MAX_PASSPHRASE_LEN {
        return Err(BackupError::PassphraseTooLong);
    }
    let decryptor = age::Decryptor::new_buffered(file).map_err(|e| damaged(&e))?;
    if !decryptor.is_scrypt() {
        return Err(BackupError::Damaged("it is not encrypted with a passphrase".into()));
    }
    let mut identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_owned()));
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let mut reader =
        decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)).map_err(|e| match e {
            // The header's file key did not decrypt: with a passphrase
            // recipient, that is the passphrase (a changed stanza reads the same).
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => BackupError::WrongPassphrase,
            age::DecryptError::ExcessiveWork { required, .. } => BackupError::Damaged(format!(
                "its passphrase work factor 2^{required} is above the 2^{MAX_WORK_FACTOR} this device accepts"
            )),
            other => damaged(&other),
        })?;
    let mut plain = Vec::new();
    // The payload's chunks are authenticated as they are read: a changed or
    // cut file fails here.
    (&mut reader)
        .take(MAX_BACKUP_BYTES as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| BackupError::Damaged(format!("its content does not decrypt: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&plain)
        .map_err(|e| BackupError::Damaged(format!("its content is not JSON: {e}")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(BackupError::Damaged("its content is not a portcullis backup".into()));
    }
    let found = value.get("format_version").and_then(|v| v.as_u64()).unwrap_or(0);
    if found > u64::from(FORMAT_VERSION) {
        return Err(BackupError::NewerVersion {
            what: "backup format",
            found: u32::try_from(found).unwrap_or(u32::MAX),
            supported: FORMAT_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| BackupError::Damaged(format!("its content is incomplete: {e}")))
}

fn damaged(e: &age::DecryptError) -> BackupError {
    let what = match e {
        age::DecryptError::InvalidHeader => "its header is not that of an age file".to_string(),
        age::DecryptError::InvalidMac => "its header was changed".to_string(),
        age::DecryptError::UnknownFormat => "it is not in a format this device reads".to_string(),
        age::DecryptError::Io(io) => format!("it cannot be read: {io}"),
        other => other.to_string(),
    };
    BackupError::Damaged(what)
}

impl Backup {
    /// Checks every part as the API checks a Set, an account and a
    /// certificate: nothing of a backup is applied unless all of it passes.
    /// `now` dates the certificate check.
    pub fn checked(self, now: time::OffsetDateTime) -> Result<CheckedBackup, BackupError> {
        let text = self.configuration.to_string();
        let ParsedConfig { config, unknown_keys } = Config::parse(&text).map_err(|e| {
            if e.code == ErrorCode::UnsupportedVersion {
                BackupError::NewerVersion {
                    what: "configuration version",
                    found: self.configuration.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
                    supported: portcullis_core::config::CONFIG_VERSION,
                }
            } else {
                BackupError::Invalid(e)
            }
        })?;
        config.validate().map_err(BackupError::Invalid)?;
        check_built(&config)?;
        check_users(&self.users)?;
        let certificate = match self.certificate {
            None => None,
            Some(pair) => {
                let invalid = |e: portcullis_cert::CertError| {
                    BackupError::Invalid(ValidationError::new("certificate", e.code(), e.to_string()))
                };
                let material =
                    portcullis_cert::parse_stored(pair.chain_pem.as_bytes(), pair.key_pem.as_bytes())
                        .map_err(invalid)?;
                material.certified_key().map_err(invalid)?;
                let fingerprint = material.describe(now).map_err(invalid)?.fingerprint_sha256;
                Some((pair, fingerprint))
            }
        };
        Ok(CheckedBackup { info: self.info, config, unknown_keys, users: self.users, certificate })
    }
}

/// Sections a backup uses that this build left out are refused, as their
/// Sets are (`feature_not_built`): the device could not do what they say. A
/// section at its factory settings is not "used".
fn check_built(config: &Config) -> Result<(), BackupError> {
    let factory = Config::default();
    let used = [
        ("profiles.email", "email", !config.profiles.email.is_empty()),
        ("profiles.ip_notify", "ip-notify", !config.profiles.ip_notify.is_empty()),
        ("profiles.phone", "sip", !config.profiles.phone.is_empty()),
        ("authentication.digest", "digest", config.authentication.digest),
        ("syslog", "syslog", config.syslog != factory.syslog),
        ("crowdsec", "crowdsec", config.crowdsec != factory.crowdsec),
        ("webroot", "webroot", config.webroot != factory.webroot),
    ];
    for (field, feature, in_use) in used {
        if in_use && !crate::build_info::built(feature) {
            return Err(BackupError::Invalid(ValidationError::new(
                field,
                ErrorCode::FeatureNotBuilt,
                format!("the backup uses \"{feature}\", which this build of portcullis does not include"),
            )));
        }
    }
    Ok(())
}

/// The accounts of a backup: valid names (each under its own name), a
/// password hash the device can verify, and at least one administrator.
fn check_users(users: &UsersFile) -> Result<(), BackupError> {
    let invalid = |field: String, code, message: String| {
        BackupError::Invalid(ValidationError::new(field, code, message))
    };
    for (key, user) in &users.users {
        crate::auth::validate_user_name(key)
            .map_err(|e| invalid(format!("users.{key}"), e.code, e.message))?;
        if &user.name != key {
            return Err(invalid(
                format!("users.{key}"),
                ErrorCode::InvalidValue,
                format!("the account \"{key}\" is recorded under the name \"{}\"", user.name),
            ));
        }
        if argon2::password_hash::phc::PasswordHash::new(&user.password_hash).is_err() {
            return Err(invalid(
                format!("users.{key}.password_hash"),
                ErrorCode::InvalidValue,
                format!("the password hash of \"{key}\" is not a PHC string"),
            ));
        }
        if let Some(factor) = &user.second_factor {
            // Its people could not log in where the codes cannot be checked.
            if !crate::build_info::built("totp") {
                return Err(invalid(
                    format!("users.{key}.second_factor"),
                    ErrorCode::FeatureNotBuilt,
                    "the backup uses \"totp\", which this build of portcullis does not include".into(),
                ));
            }
            let secret = portcullis_core::second_factor::base32_decode(&factor.secret);
            if secret.is_none_or(|s| s.len() < 16) {
                return Err(invalid(
                    format!("users.{key}.second_factor.secret"),
                    ErrorCode::InvalidValue,
                    format!("the second factor of \"{key}\" has no valid secret"),
                ));
            }
        }
    }
    if !users.users.values().any(|u| u.group == Group::Admins) {
        return Err(invalid(
            "users".into(),
            ErrorCode::LastAdmin,
            "the backup has no member of \"admins\": nobody could change the device after the import".into(),
        ));
    }
    Ok(())
}

/// What an import did with the certificate a backup may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateImport {
    /// The backup carries no certificate.
    None,
    /// The backup's certificate is the one in use already.
    Unchanged,
    /// The backup's certificate and key are now in use (asked for with
    /// `include_certificate`).
    Installed,
    /// The backup carries another certificate, not asked for: the device
    /// keeps its own.
    Skipped,
}

/// The answer to an import (inside a Set's answer: 200, or 202 when provisional).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportOutcome {
    /// Where the backup comes from.
    pub backup: BackupInfo,
    /// The running configuration now (secrets left out); like every Set,
    /// it is stored by `POST /api/v1/config/store`.
    #[schema(value_type = Object)]
    pub configuration: serde_json::Value,
    /// Sections the import changed.
    pub changed_sections: Vec<String>,
    /// The accounts now (written at once, as account changes always are).
    pub users: Vec<String>,
    /// What was done with the backup's certificate.
    pub certificate: CertificateImport,
    /// Configuration keys of the backup this version does not know (ignored).
    pub unknown_keys: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Backup {
        let mut users = UsersFile::default();
        users
            .upsert(
                "admin",
                Some(Group::Admins),
                Some(crate::auth::hash_password("secret-pass").expect("hash")),
            )
            .expect("user");
        Backup {
            info: BackupInfo {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                product_version: "0.1.0".into(),
                created: "2026-01-01T00:00:00Z".into(),
                host_name: "device".into(),
                certificate_fingerprint_sha256: "00".into(),
                includes_certificate: false,
            },
            configuration: serde_json::to_value(Config::default()).expect("json"),
            users,
            certificate: None,
        }
    }

    #[test]
    fn round_trip_and_the_wrong_passphrase_and_a_damaged_file_are_told_apart() {
        let sealed = seal(&sample(), "correct horse battery").expect("sealed");
        let opened = open(&sealed, "correct horse battery").expect("opened");
        assert_eq!(opened.info.host_name, "device");
        assert!(matches!(open(&sealed, "wrong horse battery"), Err(BackupError::WrongPassphrase)));
        let mut cut = sealed.clone();
        let last = cut.len() - 1;
        cut[last] ^= 1;
        assert!(matches!(open(&cut, "correct horse battery"), Err(BackupError::Damaged(_))));
        assert!(matches!(open(b"not age at all", "correct horse battery"), Err(BackupError::Damaged(_))));
        opened.checked(time::OffsetDateTime::now_utc()).expect("valid");
    }

    #[test]
    fn short_passphrases_are_refused() {
        assert!(matches!(seal(&sample(), "short"), Err(BackupError::PassphraseTooShort)));
        assert!(check_passphrase("twelve chars").is_ok());
    }

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let mut b = sample();
        b.info.format_version = FORMAT_VERSION + 1;
        let sealed = seal(&b, "correct horse battery").expect("sealed");
        let e = open(&sealed, "correct horse battery").expect_err("newer");
        assert_eq!(e.code(), ErrorCode::BackupNewerVersion);
    }

    /// The second factor travels with its account (secret, last step,
    /// recovery hashes), so a restored device keeps its people's.
    #[cfg(feature = "totp")]
    #[test]
    fn a_second_factor_travels_with_its_account() {
        let mut b = sample();
        let factor = crate::second_factor::SecondFactor {
            secret: portcullis_core::second_factor::base32(&[9; 20]),
            enrolled: time::OffsetDateTime::UNIX_EPOCH,
            last_step: Some(42),
            recovery: vec![crate::second_factor::recovery_hash("0000-0000-0000-0000")],
        };
        b.users.users.get_mut("admin").expect("admin").second_factor = Some(factor.clone());
        let opened = open(&seal(&b, "correct horse battery").expect("sealed"), "correct horse battery")
            .expect("opened");
        assert_eq!(opened.users.users["admin"].second_factor.as_ref(), Some(&factor));
        opened.checked(time::OffsetDateTime::now_utc()).expect("valid");
        let mut broken = sample();
        broken.users.users.get_mut("admin").expect("admin").second_factor =
            Some(crate::second_factor::SecondFactor { secret: "not base32!".into(), ..factor });
        let e = broken.checked(time::OffsetDateTime::now_utc()).expect_err("no secret");
        assert_eq!(e.code(), ErrorCode::InvalidValue);
    }

    #[test]
    fn a_backup_without_an_administrator_is_refused() {
        let mut b = sample();
        b.users.users.values_mut().for_each(|u| u.group = Group::Users);
        let e = b.checked(time::OffsetDateTime::now_utc()).expect_err("no admin");
        assert_eq!(e.code(), ErrorCode::LastAdmin);
    }
}

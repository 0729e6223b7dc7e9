//! Users, passwords (argon2id), HTTP Basic, login sessions with CSRF tokens.
//!
//! Argon2 costs ~25 ms and 19 MiB per check, so verification runs on its own
//! worker threads: one fewer than the cores (at least one), at a lower
//! scheduling priority (nice 10), behind a bounded queue. A flood of wrong
//! guesses then queues there and gets only the CPU that serving requests
//! leaves over, instead of starving the server; and a correct password is
//! remembered for [`CACHE_LIFETIME`] under a keyed hash so that an API
//! client sending Basic on every request pays the cost once.

use portable_atomic::AtomicU64;
use portcullis_core::ErrorCode;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use portcullis_core::Monotonic;
use portcullis_core::session::SessionTimes;

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordVerifier};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use portcullis_core::ValidationError;
use portcullis_core::tokens::TokenScope;
use std::net::IpAddr;
use time::OffsetDateTime;

pub use crate::second_factor::{CodeUse, SecondFactor};
pub use crate::tokens::{TokenKey, TokenRecord, TokenView};
use portcullis_core::second_factor::CodeRefusal;

/// An argon2id hash (same parameters as every account's) of a password no
/// one knows: unknown user names are checked against it, so that a wrong
/// name costs as much as a wrong password (no user enumeration by timing).
/// A constant, because computing one at start costs 25 ms and 19 MiB.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$N69OvH2j7CU2uJF0d/UE3g$WZT9QLFXTpqWPd18dGBeMPDo2fE7ReVUQWvtOGGgfQI";

/// Password checks waiting at most; beyond, a login is answered 503 at once.
pub const VERIFY_QUEUE: usize = 64;
/// Longest a login waits for its password check before it is answered 503.
pub const VERIFY_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Scheduling priority (nice) of the password-check threads.
pub const VERIFY_NICE: i32 = 10;

/// Password checks that may run at once: one fewer than the cores, at least one.
pub fn verify_concurrency() -> usize {
    std::thread::available_parallelism().map(|n| n.get().saturating_sub(1)).unwrap_or(1).max(1)
}

struct VerifyJob {
    hash: String,
    password: String,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// The password-check threads.
#[derive(Debug)]
struct VerifyPool {
    queue: std::sync::mpsc::SyncSender<VerifyJob>,
}

impl VerifyPool {
    fn start() -> Self {
        let (queue, jobs) = std::sync::mpsc::sync_channel::<VerifyJob>(VERIFY_QUEUE);
        let jobs = Arc::new(std::sync::Mutex::new(jobs));
        for i in 0..verify_concurrency() {
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                // A lower priority for this thread only (Linux applies it per thread).
                if let Err(e) =
                    rustix::process::setpriority_process(Some(rustix::thread::gettid()), VERIFY_NICE)
                {
                    tracing::debug!(error = %e, "cannot lower the password-check thread's priority");
                }
                loop {
                    let job = match jobs.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok(job) = job else { break };
                    let ok = verify_hash(&job.hash, &job.password);
                    let _ = job.reply.send(ok);
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        Self { queue }
    }

    /// Checks `password` against `hash`; `None` when the queue is full or the check took too long.
    async fn verify(&self, hash: String, password: String) -> Option<bool> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue.try_send(VerifyJob { hash, password, reply }).ok()?;
        tokio::time::timeout(VERIFY_QUEUE_WAIT, answer).await.ok()?.ok()
    }
}
/// How long a verified password is remembered.
pub const CACHE_LIFETIME: Duration = Duration::from_secs(300);
/// How many verified credentials are remembered at most.
pub const CACHE_CAPACITY: usize = 256;
/// Login sessions open at once; the oldest is dropped beyond.
pub const MAX_SESSIONS: usize = 256;
/// A session's idle and absolute limits: the core's rule.
pub use portcullis_core::session::{IDLE as SESSION_IDLE, MAX_AGE as SESSION_MAX_AGE};
/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (argon2 input is bounded, and so is abuse).
pub const MAX_PASSWORD_LEN: usize = 256;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "portcullis_session";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Everything, including changing settings.
    Admins,
    /// View pages and settings, change nothing.
    Users,
}

impl std::str::FromStr for Group {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admins" => Ok(Self::Admins),
            "users" => Ok(Self::Users),
            _ => Err(ValidationError::new(
                "group",
                ErrorCode::InvalidValue,
                "the group must be \"admins\" or \"users\"",
            )),
        }
    }
}

/// One stored account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// Group.
    pub group: Group,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Bumped at every password change; invalidates cached credentials and sessions.
    #[serde(default)]
    pub generation: u64,
    /// Digest HA1 values; present only while Digest authentication is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<crate::digest::DigestSecrets>,
    /// The second factor (TOTP), once enrolled and confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factor: Option<SecondFactor>,
}

/// The accounts file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsersFile {
    /// Accounts by name.
    pub users: BTreeMap<String, UserRecord>,
    /// API tokens by name (their keyed hashes, never their secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, TokenRecord>,
}

impl UsersFile {
    /// Number of members of `admins`.
    pub fn admin_count(&self) -> usize {
        self.users.values().filter(|u| u.group == Group::Admins).count()
    }

    /// Creates or changes account `name`: `group` (kept when `None`, `users`
    /// for a new account) and the argon2 hash of a new password (required for
    /// a new account). The last admin cannot leave `admins`.
    pub fn upsert(
        &mut self,
        name: &str,
        group: Option<Group>,
        password_hash: Option<String>,
    ) -> Result<Group, ValidationError> {
        validate_user_name(name)?;
        let existing = self.users.get(name).cloned();
        let group = group.or(existing.as_ref().map(|u| u.group)).unwrap_or(Group::Users);
        if let Some(e) = &existing
            && e.group == Group::Admins
            && group != Group::Admins
            && self.admin_count() == 1
        {
            return Err(ValidationError::new(
                "group",
                ErrorCode::LastAdmin,
                "the last member of \"admins\" cannot leave the group",
            ));
        }
        let record = match (password_hash, existing) {
            (Some(hash), e) => UserRecord {
                name: name.into(),
                group,
                password_hash: hash,
                generation: e.as_ref().map_or(1, |e| e.generation + 1),
                digest: None,
                // A new password keeps the second factor: they are two factors.
                second_factor: e.and_then(|e| e.second_factor),
            },
            (None, Some(e)) => {
                let generation = if e.group != group { e.generation + 1 } else { e.generation };
                UserRecord { group, generation, ..e }
            }
            (None, None) => {
                return Err(ValidationError::new(
                    "password",
                    ErrorCode::Required,
                    "a new account needs a password",
                ));
            }
        };
        self.users.insert(name.into(), record);
        Ok(group)
    }

    /// Sets the Digest secrets of `name` from its new password (while Digest is on).
    pub fn set_digest(&mut self, name: &str, password: &str) {
        if let Some(u) = self.users.get_mut(name) {
            u.digest = Some(crate::digest::DigestSecrets::derive(name, password));
        }
    }

    /// Removes every Digest secret (Digest switched off); true if any was removed.
    pub fn purge_digest(&mut self) -> bool {
        let mut any = false;
        for u in self.users.values_mut() {
            any |= u.digest.take().is_some();
        }
        any
    }

    /// Deletes account `name`; never the last admin.
    pub fn delete(&mut self, name: &str) -> Result<(), ValidationError> {
        let Some(u) = self.users.get(name) else {
            return Err(ValidationError::new(
                "name",
                ErrorCode::NotFound,
                format!("there is no user \"{name}\""),
            ));
        };
        if u.group == Group::Admins && self.admin_count() == 1 {
            return Err(ValidationError::new(
                "name",
                ErrorCode::LastAdmin,
                "the last member of \"admins\" cannot be deleted",
            ));
        }
        self.users.remove(name);
        // A token has no rights of its own: it goes with its account.
        self.tokens.retain(|_, t| t.account != name);
        Ok(())
    }

    /// Gives account `name` its confirmed second factor; refused if it has one.
    pub fn enrol_second_factor(&mut self, name: &str, factor: SecondFactor) -> Result<(), ValidationError> {
        let Some(u) = self.users.get_mut(name) else {
            return Err(ValidationError::new(
                "name",
                ErrorCode::NotFound,
                format!("there is no user \"{name}\""),
            ));
        };
        if u.second_factor.is_some() {
            return Err(ValidationError::new(
                "name",
                ErrorCode::SecondFactorExists,
                format!("the account \"{name}\" has a second factor already; reset it to enrol another"),
            ));
        }
        u.second_factor = Some(factor);
        Ok(())
    }

    /// Removes the second factor of account `name` (its password alone logs in again).
    pub fn reset_second_factor(&mut self, name: &str) -> Result<(), ValidationError> {
        let Some(u) = self.users.get_mut(name) else {
            return Err(ValidationError::new(
                "name",
                ErrorCode::NotFound,
                format!("there is no user \"{name}\""),
            ));
        };
        if u.second_factor.take().is_none() {
            return Err(ValidationError::new(
                "name",
                ErrorCode::NotFound,
                format!("the account \"{name}\" has no second factor"),
            ));
        }
        Ok(())
    }

    /// Checks a code of account `name`'s second factor at `now_unix`, and
    /// records its use (see [`SecondFactor::use_code`]); an account without
    /// one has no right code.
    pub fn use_second_factor(
        &mut self,
        name: &str,
        code: &str,
        now_unix: i64,
        code_at: crate::second_factor::CodeAt,
    ) -> Result<CodeUse, CodeRefusal> {
        let Some(factor) = self.users.get_mut(name).and_then(|u| u.second_factor.as_mut()) else {
            return Err(CodeRefusal::Wrong);
        };
        factor.use_code(code, now_unix, code_at)
    }

    /// Adds a token, after the rules that need the accounts: its account
    /// exists, its scope is within the account's rights, its name is
    /// unused, and there is room ([`portcullis_core::tokens::MAX_TOKENS`]).
    pub fn add_token(&mut self, token: TokenRecord) -> Result<(), ValidationError> {
        let Some(account) = self.users.get(&token.account) else {
            return Err(ValidationError::new(
                "account",
                ErrorCode::NotFound,
                format!("there is no user \"{}\"", token.account),
            ));
        };
        portcullis_core::tokens::validate_scope(token.scope, &account.name, account.group == Group::Admins)?;
        if self.tokens.contains_key(&token.name) {
            return Err(ValidationError::new(
                "name",
                ErrorCode::Duplicate,
                format!("a token named \"{}\" exists already", token.name),
            ));
        }
        if self.tokens.len() >= portcullis_core::tokens::MAX_TOKENS {
            return Err(ValidationError::new(
                "name",
                ErrorCode::TooMany,
                format!("the device holds at most {} tokens", portcullis_core::tokens::MAX_TOKENS),
            ));
        }
        self.tokens.insert(token.name.clone(), token);
        Ok(())
    }

    /// Removes the token `name`.
    pub fn revoke_token(&mut self, name: &str) -> Result<TokenRecord, ValidationError> {
        self.tokens.remove(name).ok_or_else(|| {
            ValidationError::new("name", ErrorCode::NotFound, format!("there is no token \"{name}\""))
        })
    }
}

/// Checks a user name: 1-64 characters, letters, digits, `.`, `_`, `-`.
pub fn validate_user_name(name: &str) -> Result<(), ValidationError> {
    if portcullis_core::tokens::is_plain_name(name) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "name",
            ErrorCode::InvalidUserName,
            "a user name has 1 to 64 characters: letters, digits, '.', '_' or '-'",
        ))
    }
}

/// Checks a new password's length.
pub fn validate_password(password: &str) -> Result<(), ValidationError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(ValidationError::new(
            "password",
            ErrorCode::PasswordTooShort,
            format!("a password needs at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ValidationError::new(
            "password",
            ErrorCode::PasswordTooLong,
            format!("a password has at most {MAX_PASSWORD_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id (OWASP parameters: m=19 MiB, t=2, p=1).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Checks `password` against a PHC hash.
pub fn verify_hash(hash: &str, password: &str) -> bool {
    match argon2::password_hash::phc::PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A random password of 20 characters from an alphabet without look-alikes.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes: [u8; 20] = rand::random();
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// Group.
    pub group: Group,
    /// How the user authenticated.
    pub via: AuthMethod,
}

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// HTTP Basic.
    Basic,
    /// HTTP Digest.
    Digest,
    /// The session cookie; holds the session's CSRF token.
    Session {
        /// Token that unsafe requests must echo in `X-CSRF-Token`.
        csrf: String,
    },
    /// An API token (`Authorization: Bearer`).
    Token {
        /// The token's name.
        name: String,
        /// What it may do within its account's rights.
        scope: TokenScope,
    },
}

/// Outcome of checking a presented API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    /// A token of the device, usable now from this client.
    Valid(Identity),
    /// No token has this secret (or its account cannot give its scope any
    /// more): a failed attempt.
    Invalid,
    /// The token has expired.
    Expired {
        /// Its account.
        account: String,
        /// Its name.
        name: String,
    },
    /// The token may not be used from this client's address.
    WrongSource {
        /// Its account.
        account: String,
        /// Its name.
        name: String,
    },
}

/// Outcome of checking a presented user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Correct.
    Valid(Identity),
    /// Presented and wrong (unknown user or wrong password): a failed attempt.
    Invalid,
    /// Too many checks queued; try again later (not a failed attempt).
    Busy,
}

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug)]
struct CacheEntry {
    user: String,
    generation: u64,
    expires: Instant,
}

/// Verified credentials by keyed hash, and their insertion order for eviction.
type CredentialCache = (HashMap<[u8; 32], CacheEntry>, VecDeque<[u8; 32]>);

#[derive(Debug)]
struct Session {
    user: String,
    generation: u64,
    csrf: String,
    /// When it was opened and last used, on the injected monotonic clock.
    times: SessionTimes,
}

/// Accounts and authentication state of a running server.
#[derive(Debug)]
pub struct Authenticator {
    users: std::sync::RwLock<UsersFile>,
    /// Keys the credential cache and session ids; random per process, never stored.
    key: [u8; 32],
    cache: std::sync::Mutex<CredentialCache>,
    sessions: std::sync::Mutex<HashMap<[u8; 32], Session>>,
    pool: VerifyPool,
    dummy_hash: String,
    /// Digest nonces and replay counters.
    pub digest: crate::digest::DigestAuth,
    /// Argon2 verifications performed (for tests and metrics).
    pub verifications: AtomicU64,
    /// Hashes tokens' secrets; kept in the data folder.
    token_key: TokenKey,
    /// When each token was last used, kept here (not written per request)
    /// and merged into the accounts file at its next write.
    token_use: std::sync::Mutex<HashMap<String, OffsetDateTime>>,
    /// Failed logins per account, and the accounts whose password logins are locked.
    lockout: std::sync::Mutex<portcullis_core::account_lockout::AccountLockout>,
    /// Enrolments of a second factor waiting for their first code: the
    /// secret and when it was made, in memory only (a restart drops them;
    /// the person starts again).
    enrolments: std::sync::Mutex<HashMap<String, (Vec<u8>, Monotonic)>>,
}

impl Authenticator {
    /// An authenticator over `users`, hashing tokens with `token_key`.
    pub fn new(users: UsersFile, token_key: TokenKey) -> Self {
        Self {
            users: std::sync::RwLock::new(users),
            key: rand::random(),
            cache: std::sync::Mutex::new((HashMap::new(), VecDeque::new())),
            sessions: std::sync::Mutex::new(HashMap::new()),
            pool: VerifyPool::start(),
            dummy_hash: DUMMY_HASH.to_string(),
            digest: crate::digest::DigestAuth::default(),
            verifications: AtomicU64::new(0),
            token_key,
            token_use: std::sync::Mutex::new(HashMap::new()),
            lockout: std::sync::Mutex::new(Default::default()),
            enrolments: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Whether account `user` has a second factor (and so logs in with its code).
    pub fn has_second_factor(&self, user: &str) -> bool {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .get(user)
            .is_some_and(|u| u.second_factor.is_some())
    }

    /// Keeps `secret` as `user`'s enrolment waiting for its first code
    /// (replacing one started before), started at `now`.
    pub fn start_enrolment(&self, user: &str, secret: Vec<u8>, now: Monotonic) {
        let mut e = self.enrolments.lock().unwrap_or_else(|e| e.into_inner());
        e.retain(|_, (_, started)| portcullis_core::second_factor::enrolment_alive(*started, now));
        e.insert(user.to_string(), (secret, now));
    }

    /// The secret of `user`'s enrolment, if one waits at `now`.
    pub fn enrolment(&self, user: &str, now: Monotonic) -> Option<Vec<u8>> {
        let e = self.enrolments.lock().unwrap_or_else(|e| e.into_inner());
        e.get(user)
            .filter(|(_, started)| portcullis_core::second_factor::enrolment_alive(*started, now))
            .map(|(secret, _)| secret.clone())
    }

    /// Forgets `user`'s waiting enrolment.
    pub fn end_enrolment(&self, user: &str) {
        self.enrolments.lock().unwrap_or_else(|e| e.into_inner()).remove(user);
    }

    /// How long `user`'s password logins stay locked at `now`, if they are.
    pub fn account_locked(&self, user: &str, now: Monotonic) -> Option<Duration> {
        self.lockout.lock().unwrap_or_else(|e| e.into_inner()).locked(user, now)
    }

    /// Counts a failed login of `user` if it is an account (an unknown name
    /// locks nothing, and so cannot grow the table); true when it locks it.
    pub fn account_failure(&self, user: &str, now: Monotonic, threshold: u32, minutes: u32) -> bool {
        if !self.users.read().unwrap_or_else(|e| e.into_inner()).users.contains_key(user) {
            return false;
        }
        self.lockout.lock().unwrap_or_else(|e| e.into_inner()).record_failure(user, now, threshold, minutes)
    }

    /// Lifts every account's lockout (Reboot).
    pub fn clear_lockouts(&self) {
        self.lockout.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The keyed hash a token's secret is stored as.
    pub fn token_hash(&self, secret: &str) -> String {
        self.token_key.hash(secret)
    }

    /// Checks a presented token's secret at `now` from `client`. The
    /// secret's hash is compared with every token's in constant time (no
    /// early exit, no lookup keyed by it), so timing tells nothing about
    /// how close a guess came.
    pub fn verify_token(&self, secret: &str, now: OffsetDateTime, client: Option<IpAddr>) -> TokenVerdict {
        let presented = self.token_key.hash(secret);
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        let mut found: Option<&TokenRecord> = None;
        for t in users.tokens.values() {
            if bool::from(t.hash.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(t);
            }
        }
        let Some(t) = found else { return TokenVerdict::Invalid };
        let Some(account) = users.users.get(&t.account) else { return TokenVerdict::Invalid };
        // The account may have left `admins` since: the token never has more than it.
        if t.scope > TokenScope::widest_for(account.group == Group::Admins) {
            return TokenVerdict::Invalid;
        }
        let (account_name, name) = (account.name.clone(), t.name.clone());
        if portcullis_core::tokens::expired(t.expires_at, now) {
            return TokenVerdict::Expired { account: account_name, name };
        }
        if !portcullis_core::tokens::source_allowed(&t.allowed_sources, client) {
            return TokenVerdict::WrongSource { account: account_name, name };
        }
        TokenVerdict::Valid(Identity {
            user: account_name,
            group: account.group,
            via: AuthMethod::Token { name, scope: t.scope },
        })
    }

    /// Notes that the token `name` was used at `now` (in memory).
    pub fn token_used(&self, name: &str, now: OffsetDateTime) {
        self.token_use.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), now);
    }

    /// Every token as listed, with its last use as known now (the memory's
    /// when more recent than the file's).
    pub fn tokens(&self) -> Vec<TokenView> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        let used = self.token_use.lock().unwrap_or_else(|e| e.into_inner());
        users.tokens.values().map(|t| t.view(t.last_used.max(used.get(&t.name).copied()))).collect()
    }

    /// Writes the last uses kept in memory into `users`' records; whether
    /// any changed (then the file is worth writing).
    pub(crate) fn merge_token_use(&self, users: &mut UsersFile) -> bool {
        let used = self.token_use.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for t in users.tokens.values_mut() {
            if let Some(at) = used.get(&t.name).copied()
                && t.last_used < Some(at)
            {
                t.last_used = Some(at);
                changed = true;
            }
        }
        changed
    }

    /// A copy of the accounts.
    pub fn users(&self) -> UsersFile {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the accounts (after they were written to disk), dropping the
    /// cached credentials and sessions of users whose password or group changed.
    pub(crate) fn replace_users(&self, users: UsersFile) {
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = users;
        let current = self.users();
        self.token_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| current.tokens.contains_key(name));
        let still_valid =
            |user: &str, generation: u64| current.users.get(user).is_some_and(|u| u.generation == generation);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.0.retain(|_, e| still_valid(&e.user, e.generation));
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| still_valid(&s.user, s.generation));
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    fn identity_of(&self, user: &str, generation: Option<u64>, via: AuthMethod) -> Option<Identity> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        let u = users.users.get(user)?;
        if generation.is_some_and(|g| g != u.generation) {
            return None;
        }
        Some(Identity { user: u.name.clone(), group: u.group, via })
    }

    /// The identity of a user name and password verified a moment ago (from
    /// the cache: no password check), if any.
    pub fn cached(&self, user: &str, password: &str) -> Option<Identity> {
        if password.len() > MAX_PASSWORD_LEN || user.len() > 256 {
            return None;
        }
        let key = self.mac(&[user.as_bytes(), password.as_bytes()]);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let e = cache.0.get(&key)?;
        if e.expires <= Instant::now() {
            cache.0.remove(&key);
            return None;
        }
        let (user, generation) = (e.user.clone(), e.generation);
        drop(cache);
        self.identity_of(&user, Some(generation), AuthMethod::Basic)
    }

    /// Checks a presented user name and password.
    pub async fn verify(&self, user: &str, password: &str) -> Verdict {
        if password.len() > MAX_PASSWORD_LEN || user.len() > 256 {
            return Verdict::Invalid;
        }
        if let Some(id) = self.cached(user, password) {
            return Verdict::Valid(id);
        }
        let key = self.mac(&[user.as_bytes(), password.as_bytes()]);
        let now = Instant::now();
        let record = self.users.read().unwrap_or_else(|e| e.into_inner()).users.get(user).cloned();
        let hash =
            record.as_ref().map(|r| r.password_hash.clone()).unwrap_or_else(|| self.dummy_hash.clone());
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let Some(ok) = self.pool.verify(hash, password.to_string()).await else { return Verdict::Busy };
        match record {
            Some(r) if ok => {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                let (map, order) = &mut *cache;
                while map.len() >= CACHE_CAPACITY {
                    match order.pop_front() {
                        Some(old) => {
                            map.remove(&old);
                        }
                        None => break,
                    }
                }
                map.insert(
                    key,
                    CacheEntry {
                        user: r.name.clone(),
                        generation: r.generation,
                        expires: now + CACHE_LIFETIME,
                    },
                );
                order.push_back(key);
                Verdict::Valid(Identity { user: r.name, group: r.group, via: AuthMethod::Basic })
            }
            _ => Verdict::Invalid,
        }
    }

    /// Checks a Digest response; unknown users and wrong responses are failures.
    pub fn verify_digest(
        &self,
        resp: &crate::digest::DigestResponse,
        method: &str,
        request_target: &str,
        now_unix: u64,
    ) -> crate::digest::DigestVerdict {
        let secrets = self
            .users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .get(&resp.username)
            .and_then(|u| u.digest.clone());
        self.digest.verify(resp, method, request_target, secrets.as_ref(), now_unix)
    }

    /// Whether `user` lacks Digest secrets (to derive them at its next password login).
    pub fn lacks_digest(&self, user: &str) -> bool {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .get(user)
            .is_some_and(|u| u.digest.is_none())
    }

    /// The identity of `user` authenticated by Digest.
    pub fn digest_identity(&self, user: &str) -> Option<Identity> {
        self.identity_of(user, None, AuthMethod::Digest)
    }

    /// Opens a session for `identity` at `now` (the injected monotonic
    /// clock); returns the cookie value and the CSRF token.
    pub fn open_session(&self, identity: &Identity, now: Monotonic) -> (String, String) {
        let token: [u8; 32] = rand::random();
        let csrf: [u8; 24] = rand::random();
        let token_s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token);
        let csrf_s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(csrf);
        let generation = self
            .users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .get(&identity.user)
            .map(|u| u.generation);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.times.alive(now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.times.last_seen).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            self.mac(&[b"session", token_s.as_bytes()]),
            Session {
                user: identity.user.clone(),
                generation: generation.unwrap_or(0),
                csrf: csrf_s.clone(),
                times: SessionTimes::opened(now),
            },
        );
        (token_s, csrf_s)
    }

    /// The identity behind a session cookie value, if the session is alive
    /// at `now` (the core's idle and absolute limits, on the injected
    /// monotonic clock); using it restarts its idle time.
    pub fn session(&self, cookie: &str, now: Monotonic) -> Option<Identity> {
        let id = self.mac(&[b"session", cookie.as_bytes()]);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = sessions.get_mut(&id)?;
        if !s.times.use_at(now) {
            sessions.remove(&id);
            return None;
        }
        let (user, generation, csrf) = (s.user.clone(), s.generation, s.csrf.clone());
        drop(sessions);
        self.identity_of(&user, Some(generation), AuthMethod::Session { csrf })
    }

    /// Ends a session.
    pub fn close_session(&self, cookie: &str) {
        let id = self.mac(&[b"session", cookie.as_bytes()]);
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// Compares two secrets in constant time.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Splits an `Authorization: Basic …` value into user name and password.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::from_bytes([3; 32])
    }

    fn users_with(name: &str, password: &str, group: Group) -> UsersFile {
        let mut f = UsersFile::default();
        f.users.insert(
            name.into(),
            UserRecord {
                name: name.into(),
                group,
                password_hash: hash_password(password).expect("hash"),
                generation: 1,
                digest: None,
                second_factor: None,
            },
        );
        f
    }

    fn token(
        auth: &Authenticator,
        name: &str,
        account: &str,
        scope: TokenScope,
        secret: &str,
    ) -> TokenRecord {
        TokenRecord {
            name: name.into(),
            account: account.into(),
            scope,
            hash: auth.token_hash(secret),
            created: OffsetDateTime::UNIX_EPOCH,
            expires_at: None,
            allowed_sources: Vec::new(),
            last_used: None,
        }
    }

    #[tokio::test]
    async fn tokens_are_checked_by_keyed_hash_expiry_source_and_the_accounts_rights() {
        let mut users = users_with("admin", "password1", Group::Admins);
        users.users.insert(
            "viewer".into(),
            UserRecord { name: "viewer".into(), group: Group::Users, ..users.users["admin"].clone() },
        );
        let auth = Authenticator::new(users.clone(), key());
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(100);
        let mut ci = token(&auth, "ci", "admin", TokenScope::Operator, "pcl_ci");
        ci.expires_at = Some(now + time::Duration::days(1));
        ci.allowed_sources = vec!["127.0.0.2".parse().expect("net")];
        users.add_token(ci).expect("added");
        assert_eq!(
            users.add_token(token(&auth, "ci", "admin", TokenScope::ReadOnly, "x")).expect_err("dup").code,
            ErrorCode::Duplicate
        );
        let e = users.add_token(token(&auth, "v", "viewer", TokenScope::Operator, "x")).expect_err("wide");
        assert_eq!((e.field.as_str(), e.code), ("scope", ErrorCode::ScopeExceedsAccount));
        users.add_token(token(&auth, "v", "viewer", TokenScope::ReadOnly, "pcl_v")).expect("read-only");
        assert_eq!(
            users.add_token(token(&auth, "n", "nobody", TokenScope::ReadOnly, "x")).expect_err("no").field,
            "account"
        );
        auth.replace_users(users.clone());
        let from = |ip: &str| Some(ip.parse::<IpAddr>().expect("ip"));
        let TokenVerdict::Valid(id) = auth.verify_token("pcl_ci", now, from("127.0.0.2")) else {
            panic!("valid")
        };
        assert_eq!((id.user.as_str(), id.group), ("admin", Group::Admins));
        assert_eq!(id.via, AuthMethod::Token { name: "ci".into(), scope: TokenScope::Operator });
        assert_eq!(auth.verify_token("pcl_cj", now, from("127.0.0.2")), TokenVerdict::Invalid);
        assert!(matches!(
            auth.verify_token("pcl_ci", now, from("127.0.0.1")),
            TokenVerdict::WrongSource { .. }
        ));
        let later = now + time::Duration::days(1);
        assert!(matches!(
            auth.verify_token("pcl_ci", later, from("127.0.0.2")),
            TokenVerdict::Expired { .. }
        ));
        // Last use: in memory, merged into the file's records when written.
        auth.token_used("ci", now);
        assert_eq!(auth.tokens().iter().find(|t| t.name == "ci").and_then(|t| t.last_used), Some(now));
        assert!(auth.merge_token_use(&mut users));
        assert!(!auth.merge_token_use(&mut users), "nothing newer the second time");
        // A token goes with its account, and never outlives a demotion.
        users.users.get_mut("admin").expect("admin").group = Group::Users;
        auth.replace_users(users.clone());
        assert_eq!(auth.verify_token("pcl_ci", now, from("127.0.0.2")), TokenVerdict::Invalid);
        assert!(matches!(auth.verify_token("pcl_v", now, None), TokenVerdict::Valid(_)));
        users.users.get_mut("admin").expect("admin").group = Group::Admins;
        users.delete("viewer").expect("deleted");
        assert!(!users.tokens.contains_key("v"));
        assert_eq!(users.revoke_token("v").expect_err("gone").code, ErrorCode::NotFound);
        assert!(users.revoke_token("ci").is_ok());
    }

    #[test]
    fn a_second_factor_is_enrolled_once_kept_across_a_new_password_and_reset() {
        let mut users = users_with("alice", "password1", Group::Users);
        let factor = SecondFactor {
            secret: portcullis_core::second_factor::base32(&[5; 20]),
            enrolled: OffsetDateTime::UNIX_EPOCH,
            last_step: None,
            recovery: Vec::new(),
        };
        users.enrol_second_factor("alice", factor.clone()).expect("enrolled");
        let e = users.enrol_second_factor("alice", factor.clone()).expect_err("once");
        assert_eq!(e.code, ErrorCode::SecondFactorExists);
        assert_eq!(users.enrol_second_factor("bob", factor).expect_err("no one").code, ErrorCode::NotFound);
        users.upsert("alice", None, Some(hash_password("password2").expect("hash"))).expect("new password");
        assert!(users.users["alice"].second_factor.is_some(), "two factors: a new password keeps the other");
        let auth = Authenticator::new(users.clone(), key());
        assert!(auth.has_second_factor("alice") && !auth.has_second_factor("bob"));
        assert_eq!(users.use_second_factor("bob", "123456", 0, |_, _| 123_456), Err(CodeRefusal::Wrong));
        users.reset_second_factor("alice").expect("reset");
        assert_eq!(users.reset_second_factor("alice").expect_err("none").code, ErrorCode::NotFound);
        // A waiting enrolment lives ten minutes, in memory.
        let now = Monotonic::from_origin(Duration::from_secs(5));
        auth.start_enrolment("alice", vec![1; 20], now);
        assert_eq!(auth.enrolment("alice", now.after(Duration::from_secs(599))), Some(vec![1; 20]));
        assert_eq!(auth.enrolment("alice", now.after(Duration::from_secs(600))), None);
        auth.end_enrolment("alice");
        assert_eq!(auth.enrolment("alice", now), None);
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_costs() {
        let real = hash_password("x").expect("hash");
        let params = |h: &str| h.split('$').nth(3).map(str::to_string);
        assert_eq!(params(DUMMY_HASH), params(&real), "same argon2 parameters");
        assert!(!verify_hash(DUMMY_HASH, "portcullis"), "parses, and is nobody's password");
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(parse_basic("Basic YWRtaW46c2VjcmV0OjE="), Some(("admin".into(), "secret:1".into())));
        assert_eq!(parse_basic("basic   YWRtaW46eA=="), Some(("admin".into(), "x".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic"), None);
    }

    #[tokio::test]
    async fn verified_password_is_cached_until_it_changes() {
        let auth = Authenticator::new(users_with("admin", "correct horse", Group::Admins), key());
        assert!(matches!(auth.verify("admin", "correct horse").await, Verdict::Valid(_)));
        let after_first = auth.verifications.load(Ordering::Relaxed);
        assert!(matches!(auth.verify("admin", "correct horse").await, Verdict::Valid(_)));
        assert_eq!(
            auth.verifications.load(Ordering::Relaxed),
            after_first,
            "second check came from the cache"
        );
        assert_eq!(auth.verify("admin", "wrong").await, Verdict::Invalid);
        assert_eq!(auth.verify("nobody", "correct horse").await, Verdict::Invalid);
        let mut changed = users_with("admin", "new password", Group::Admins);
        changed.users.get_mut("admin").expect("admin").generation = 2;
        auth.replace_users(changed);
        assert_eq!(auth.verify("admin", "correct horse").await, Verdict::Invalid);
    }

    #[tokio::test]
    async fn sessions_end_when_the_password_changes() {
        let auth = Authenticator::new(users_with("op", "password1", Group::Users), key());
        let Verdict::Valid(id) = auth.verify("op", "password1").await else { panic!("valid") };
        let now = Monotonic::from_origin(Duration::from_secs(60));
        let (cookie, csrf) = auth.open_session(&id, now);
        let back = auth.session(&cookie, now).expect("session alive");
        assert_eq!(back.via, AuthMethod::Session { csrf });
        assert!(auth.session("forged", now).is_none());
        let mut changed = users_with("op", "password2", Group::Users);
        changed.users.get_mut("op").expect("op").generation = 2;
        auth.replace_users(changed);
        assert!(auth.session(&cookie, now).is_none());
    }

    /// The core's limits, as the authenticator applies them on the clock it
    /// is given: used just before the idle limit it lives on, left idle to
    /// the limit it ends, and it ends at the absolute limit however busy;
    /// an ended session stays ended.
    #[tokio::test]
    async fn sessions_end_at_the_idle_and_absolute_limits_of_the_clock_given() {
        let auth = Authenticator::new(users_with("op", "password1", Group::Users), key());
        let Verdict::Valid(id) = auth.verify("op", "password1").await else { panic!("valid") };
        let second = Duration::from_secs(1);
        let start = Monotonic::from_origin(Duration::from_secs(10));
        let (idle, _) = auth.open_session(&id, start);
        assert!(
            auth.session(&idle, start.after(SESSION_IDLE - second)).is_some(),
            "just before the idle limit"
        );
        let used = start.after(SESSION_IDLE - second);
        assert!(auth.session(&idle, used.after(SESSION_IDLE)).is_none(), "idle to the limit");
        assert!(auth.session(&idle, used).is_none(), "gone once ended");

        let (busy, _) = auth.open_session(&id, start);
        let mut now = start;
        while now.since(start) + SESSION_IDLE / 2 < SESSION_MAX_AGE {
            now = now.after(SESSION_IDLE / 2);
            assert!(auth.session(&busy, now).is_some(), "used every 15 minutes: alive");
        }
        assert!(auth.session(&busy, start.after(SESSION_MAX_AGE - second)).is_some());
        assert!(auth.session(&busy, start.after(SESSION_MAX_AGE)).is_none(), "the absolute limit");
    }
}

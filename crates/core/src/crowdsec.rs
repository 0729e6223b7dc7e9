//! CrowdSec (SPEC §9): the settings, the Local API's decisions as the
//! device enforces them, how they join the access decision, and the alert
//! a local block becomes.
//!
//! The HTTP client lives in `portcullis-fleet`; every rule it follows is
//! here, tested on the injected clock.
//!
//! # Decisions (the bouncer)
//!
//! The device polls `GET /v1/decisions/stream` (first with `startup=true`)
//! every [`CrowdSecSettings::poll_interval_seconds`]. Each answer lists new
//! and deleted decisions ([`DecisionStream`]). Only `ban` decisions on the
//! `Ip` or `Range` scope are enforced (other types, such as `captcha`, and
//! other scopes, such as `Country`, mean nothing to a web server at the
//! connection); the others are counted as ignored. A decision's `duration`
//! (Go's notation, `3h59m58.9s`) is turned into an expiry on the monotonic
//! clock, so a step of the wall clock neither lifts nor lengthens a ban.
//!
//! The [`DecisionSet`] is bounded ([`CrowdSecSettings::max_decisions`],
//! default [`DEFAULT_MAX_DECISIONS`]): decisions beyond it are not enforced
//! and are counted, never an unbounded growth of memory. It answers "is this
//! address banned?" with one hash lookup per distinct prefix length present
//! (in practice the /32 and /128 of single addresses and a few range
//! lengths). It survives a LAPI outage unchanged: the last known set stays
//! enforced until its decisions expire.
//!
//! # How a decision joins the access decision
//!
//! [`admit`]: an allow rule of access control still wins (an operator's own
//! address is never locked out by a fleet-wide decision); a trusted proxy is
//! never refused for a ban (the client behind it is resolved from
//! `X-Forwarded-For` and checked); then a live ban refuses, and otherwise
//! access control decides as without CrowdSec.
//!
//! # Signals (the watcher)
//!
//! With machine credentials, each local block becomes an alert
//! ([`Alert::for_block`]) carrying one `ban` decision, posted to
//! `POST /v1/alerts`: every other bouncer of the fleet then refuses the
//! attacker. The LAPI answers a missing required field with a 500 and no
//! detail, so [`Alert::validate`] checks them before sending.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::access_control::{AccessPolicy, Decision, IpNetwork, canonical_ip, mask_v4, mask_v6};
use crate::clock::{Monotonic, Timestamp};
use crate::profiles::{HostPort, MAX_CA_PEM_LEN, Secret};
use crate::{ErrorCode, ValidationError};

/// Poll interval used when the settings name none, in seconds.
pub const DEFAULT_POLL_INTERVAL: u32 = 10;
/// Shortest and longest poll interval, in seconds.
pub const POLL_INTERVAL_RANGE: (u32, u32) = (1, 3600);
/// Decisions enforced at most by default.
pub const DEFAULT_MAX_DECISIONS: u32 = 100_000;
/// Smallest and largest bound of the decision set.
pub const MAX_DECISIONS_RANGE: (u32, u32) = (100, 1_000_000);
/// How long a ban sent for a local block lasts by default, in seconds
/// (4 hours, CrowdSec's own default).
pub const DEFAULT_BAN_SECONDS: u32 = 4 * 3600;
/// Shortest and longest ban sent for a local block, in seconds.
pub const BAN_SECONDS_RANGE: (u32, u32) = (60, 30 * 24 * 3600);
/// Longest LAPI URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest bouncer key or machine password, in bytes.
pub const MAX_SECRET_LEN: usize = 256;
/// Longest machine id, in bytes.
pub const MAX_MACHINE_ID_LEN: usize = 128;
/// The scenario of the alerts the device sends: the product's name.
pub const SCENARIO: &str = "portcullis/login-bf";
/// The version of [`SCENARIO`].
pub const SCENARIO_VERSION: &str = "1.0";
/// SHA-256 of [`SCENARIO`]: the LAPI requires a hash; there is no scenario
/// file to hash, so the name stands for it.
pub const SCENARIO_HASH: &str = "d4a60fbdc1f07de5add495e47815755f8d12a41b78653d28e33da7f548596dd4";
/// The origin of the decisions the device sends (what CrowdSec's own agents use).
pub const DECISION_ORIGIN: &str = "crowdsec";
/// Longest scenario or origin name kept per decision; longer ones are cut.
pub const MAX_NAME_LEN: usize = 128;

/// The CrowdSec settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CrowdSecSettings {
    /// Whether the device bounces (and, with machine credentials, signals); off by default.
    pub enabled: bool,
    /// The Local API: `http://HOST:PORT` or `https://HOST:PORT`, optionally with a path.
    pub lapi_url: String,
    /// The bouncer's API key (`cscli bouncers add NAME`); never returned by API reads.
    #[schema(value_type = Option<String>)]
    pub bouncer_key: Option<Secret>,
    /// Seconds between two polls of the decision stream (1-3600).
    pub poll_interval_seconds: u32,
    /// The machine login (`cscli machines add NAME`) used to send alerts;
    /// without it the device only bounces.
    pub machine_id: Option<String>,
    /// The machine's password; never returned by API reads.
    #[schema(value_type = Option<String>)]
    pub machine_password: Option<Secret>,
    /// Decisions enforced at most (100-1000000); beyond, they are counted and not enforced.
    pub max_decisions: u32,
    /// Seconds a ban sent for a local block lasts (60 s - 30 days).
    pub ban_seconds: u32,
    /// `https` only: PEM of the CA certificate(s) the LAPI's certificate
    /// must chain to, instead of the system's trust store.
    pub ca_pem: Option<String>,
}

impl Default for CrowdSecSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            lapi_url: String::new(),
            bouncer_key: None,
            poll_interval_seconds: DEFAULT_POLL_INTERVAL,
            machine_id: None,
            machine_password: None,
            max_decisions: DEFAULT_MAX_DECISIONS,
            ban_seconds: DEFAULT_BAN_SECONDS,
            ca_pem: None,
        }
    }
}

impl fmt::Debug for CrowdSecSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secret's own Debug hides the key and the password.
        f.debug_struct("CrowdSecSettings")
            .field("enabled", &self.enabled)
            .field("lapi_url", &self.lapi_url)
            .field("bouncer_key", &self.bouncer_key)
            .field("poll_interval_seconds", &self.poll_interval_seconds)
            .field("machine_id", &self.machine_id)
            .field("machine_password", &self.machine_password)
            .field("max_decisions", &self.max_decisions)
            .field("ban_seconds", &self.ban_seconds)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "..."))
            .finish()
    }
}

impl CrowdSecSettings {
    /// Checks the settings; the first problem is returned, naming its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let url = if self.lapi_url.is_empty() && !self.enabled {
            None
        } else {
            Some(
                LapiUrl::parse(&self.lapi_url)
                    .map_err(|m| ValidationError::new("lapi_url", ErrorCode::InvalidUrl, m))?,
            )
        };
        match &self.bouncer_key {
            None if self.enabled => {
                return Err(ValidationError::new(
                    "bouncer_key",
                    ErrorCode::Required,
                    "the bouncer key is required",
                ));
            }
            Some(k) if !is_token(k.expose(), MAX_SECRET_LEN) => {
                // The message never repeats the key.
                return Err(ValidationError::new(
                    "bouncer_key",
                    ErrorCode::InvalidKey,
                    format!(
                        "the bouncer key is 1-{MAX_SECRET_LEN} printable ASCII characters without spaces"
                    ),
                ));
            }
            _ => {}
        }
        let (lo, hi) = POLL_INTERVAL_RANGE;
        if !(lo..=hi).contains(&self.poll_interval_seconds) {
            return Err(ValidationError::new(
                "poll_interval_seconds",
                ErrorCode::OutOfRange,
                format!("the poll interval is {lo}-{hi} seconds"),
            ));
        }
        match (&self.machine_id, &self.machine_password) {
            (Some(id), Some(password)) => {
                let id_ok = !id.is_empty()
                    && id.len() <= MAX_MACHINE_ID_LEN
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
                if !id_ok {
                    return Err(ValidationError::new(
                        "machine_id",
                        ErrorCode::InvalidMachineId,
                        format!(
                            "the machine id is 1-{MAX_MACHINE_ID_LEN} letters, digits, '.', '_', '@' or '-'"
                        ),
                    ));
                }
                if password.is_empty()
                    || password.expose().len() > MAX_SECRET_LEN
                    || password.expose().contains(char::is_control)
                {
                    return Err(ValidationError::new(
                        "machine_password",
                        ErrorCode::InvalidPassword,
                        format!(
                            "the machine password is 1-{MAX_SECRET_LEN} bytes without control characters"
                        ),
                    ));
                }
            }
            (Some(_), None) => {
                return Err(ValidationError::new(
                    "machine_password",
                    ErrorCode::Required,
                    "a machine id needs its password",
                ));
            }
            (None, Some(_)) => {
                return Err(ValidationError::new(
                    "machine_id",
                    ErrorCode::Required,
                    "a machine password needs its machine id",
                ));
            }
            (None, None) => {}
        }
        let (lo, hi) = MAX_DECISIONS_RANGE;
        if !(lo..=hi).contains(&self.max_decisions) {
            return Err(ValidationError::new(
                "max_decisions",
                ErrorCode::OutOfRange,
                format!("between {lo} and {hi} decisions are kept"),
            ));
        }
        let (lo, hi) = BAN_SECONDS_RANGE;
        if !(lo..=hi).contains(&self.ban_seconds) {
            return Err(ValidationError::new(
                "ban_seconds",
                ErrorCode::OutOfRange,
                format!("a ban lasts {lo}-{hi} seconds"),
            ));
        }
        if let Some(pem) = &self.ca_pem {
            if url.as_ref().is_some_and(|u| !u.https) {
                return Err(ValidationError::new(
                    "ca_pem",
                    ErrorCode::HttpsOnly,
                    "ca_pem applies to an https LAPI URL only",
                ));
            }
            let has_cert =
                pem.len() <= MAX_CA_PEM_LEN && pem.lines().any(|l| l.trim() == "-----BEGIN CERTIFICATE-----");
            if !has_cert {
                return Err(ValidationError::new(
                    "ca_pem",
                    ErrorCode::InvalidPem,
                    format!(
                        "expected PEM certificates (-----BEGIN CERTIFICATE-----), at most {MAX_CA_PEM_LEN} bytes"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether alerts are sent (machine credentials are set).
    pub fn signals(&self) -> bool {
        self.machine_id.is_some() && self.machine_password.is_some()
    }

    /// The parsed LAPI URL (after [`CrowdSecSettings::validate`]).
    pub fn lapi(&self) -> Result<LapiUrl, String> {
        LapiUrl::parse(&self.lapi_url)
    }

    /// The poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.poll_interval_seconds))
    }

    /// A copy without secrets, for API reads and configuration downloads.
    pub fn redacted(&self) -> Self {
        Self { bouncer_key: None, machine_password: None, ..self.clone() }
    }

    /// `self` with each omitted secret taken from `old`, so that a PUT of a
    /// redacted read keeps them; an empty one clears it. The machine
    /// password is kept only for the same machine id.
    pub fn merge_secrets(mut self, old: &Self) -> Self {
        self.bouncer_key = match self.bouncer_key {
            Some(k) if k.is_empty() => None,
            Some(k) => Some(k),
            None => old.bouncer_key.clone(),
        };
        self.machine_password = match self.machine_password {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(p),
            None if self.machine_id.is_some() && self.machine_id == old.machine_id => {
                old.machine_password.clone()
            }
            None => None,
        };
        self
    }
}

/// `1..=max` printable ASCII characters without spaces (an HTTP header value).
fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

/// A parsed LAPI URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LapiUrl {
    /// Whether the LAPI is reached over TLS.
    pub https: bool,
    /// Host and port (80 or 443 when the URL names none).
    pub host_port: HostPort,
    /// The path prefix, without a trailing `/` (usually empty).
    pub path: String,
}

impl LapiUrl {
    /// Parses `http(s)://HOST[:PORT][/PATH]`; no user, query or fragment.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_URL_LEN {
            return Err(format!("the URL is at most {MAX_URL_LEN} bytes"));
        }
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("expected http://HOST:PORT or https://HOST:PORT".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("the URL must not carry a user or password: give the bouncer key".into());
        }
        if path.contains(['?', '#']) || path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err("the URL's path must have no query, fragment or spaces".into());
        }
        let host_port = HostPort::parse(authority, Some(if https { 443 } else { 80 }))?;
        Ok(Self { https, host_port, path: path.trim_end_matches('/').to_string() })
    }

    /// The full URL of an endpoint such as `/v1/decisions/stream`.
    pub fn endpoint(&self, endpoint: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}{endpoint}", self.host_port, self.path)
    }
}

/// One decision as the LAPI sends it (fields the device does not use are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LapiDecision {
    /// The LAPI's id of the decision.
    #[serde(default)]
    pub id: Option<i64>,
    /// Who made it: `crowdsec`, `cscli`, `CAPI`, `lists`, ...
    #[serde(default)]
    pub origin: String,
    /// `ban`, `captcha`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `Ip`, `Range`, `Country`, ...
    pub scope: String,
    /// The address or range.
    pub value: String,
    /// Time left, in Go's notation (`3h59m58.9s`).
    #[serde(default)]
    pub duration: String,
    /// The scenario that led to it.
    #[serde(default)]
    pub scenario: String,
}

/// One answer of `GET /v1/decisions/stream` (the LAPI writes `null` for an empty list).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DecisionStream {
    /// Decisions made since the last poll (all live ones with `startup=true`).
    #[serde(default)]
    pub new: Option<Vec<LapiDecision>>,
    /// Decisions deleted or expired since the last poll.
    #[serde(default)]
    pub deleted: Option<Vec<LapiDecision>>,
}

/// Why a decision of the stream is not enforced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    /// A type other than `ban`.
    #[error("decision type {0:?} is not enforced")]
    NotBan(String),
    /// A scope other than `Ip` and `Range`.
    #[error("scope {0:?} is not enforced")]
    Scope(String),
    /// The value is not an address or range of its scope.
    #[error("{0:?} is not an address or range")]
    Value(String),
    /// The duration is not Go's notation, or already over.
    #[error("duration {0:?} is not a live duration")]
    Duration(String),
}

/// A ban decision as the device enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The address or range refused.
    pub network: IpNetwork,
    /// The LAPI's id.
    pub id: Option<i64>,
    /// Expiry on the monotonic clock.
    pub expires: Monotonic,
    /// Who made it (`cscli`, `crowdsec`, ...), at most [`MAX_NAME_LEN`] bytes.
    pub origin: String,
    /// The scenario, at most [`MAX_NAME_LEN`] bytes.
    pub scenario: String,
}

impl LapiDecision {
    /// The network this decision names (for new and deleted decisions alike).
    pub fn network(&self) -> Result<IpNetwork, Skipped> {
        let value = self.value.trim();
        match self.scope.to_ascii_lowercase().as_str() {
            "ip" => {
                value.parse::<IpAddr>().map(IpNetwork::host).map_err(|_| Skipped::Value(self.value.clone()))
            }
            "range" => {
                // Go's net.ParseCIDR masks the host bits; so does the device.
                let (addr, prefix) =
                    value.split_once('/').ok_or_else(|| Skipped::Value(self.value.clone()))?;
                let addr: IpAddr = addr.parse().map_err(|_| Skipped::Value(self.value.clone()))?;
                let prefix: u8 = prefix.parse().map_err(|_| Skipped::Value(self.value.clone()))?;
                let width = if addr.is_ipv4() { 32 } else { 128 };
                if prefix > width {
                    return Err(Skipped::Value(self.value.clone()));
                }
                Ok(IpNetwork::containing(addr, prefix))
            }
            _ => Err(Skipped::Scope(self.scope.clone())),
        }
    }

    /// The ban this decision is at `now`, or why it is not enforced.
    pub fn to_ban(&self, now: Monotonic) -> Result<Ban, Skipped> {
        if !self.kind.eq_ignore_ascii_case("ban") {
            return Err(Skipped::NotBan(self.kind.clone()));
        }
        let network = self.network()?;
        let left = parse_go_duration(&self.duration)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Skipped::Duration(self.duration.clone()))?;
        Ok(Ban {
            network,
            id: self.id,
            expires: now.after(left),
            origin: cut(&self.origin),
            scenario: cut(&self.scenario),
        })
    }
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Parses a Go duration (`72h`, `3h59m58.9s`, `1m30.5s`, `250ms`). A
/// negative one (an expired decision) is `None`, as is anything malformed
/// or longer than ten years.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.starts_with('-') || text.is_empty() || text.len() > 64 {
        return None;
    }
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let unit_end = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * seconds;
        rest = tail;
    }
    (total.is_finite() && total <= 10.0 * 365.0 * 86400.0).then(|| Duration::from_secs_f64(total))
}

/// Go's notation of a whole number of seconds (`4h0m0s`), as the LAPI takes it.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}h{}m{}s", s / 3600, s / 60 % 60, s % 60)
}

/// What one poll changed in a [`DecisionSet`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOutcome {
    /// Bans added or extended.
    pub added: usize,
    /// Bans removed because the LAPI deleted them.
    pub deleted: usize,
    /// Bans removed because they expired.
    pub expired: usize,
    /// Decisions not enforced: not a ban, another scope, malformed.
    pub ignored: usize,
    /// Bans not enforced because the set was full.
    pub dropped: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    id: Option<i64>,
    /// Monotonic expiry in milliseconds: 8 bytes rather than a Duration's 16.
    expires_ms: u64,
    origin: u32,
    scenario: u32,
}

/// Interned names: 100,000 decisions share a handful of origins and scenarios.
#[derive(Debug, Clone, Default)]
struct Names {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl Names {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(name.into());
        self.index.insert(name.into(), i);
        i
    }

    fn get(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", |s| s)
    }
}

fn millis(m: Monotonic) -> u64 {
    u64::try_from(m.since_origin().as_millis()).unwrap_or(u64::MAX)
}

/// The bans in force (see the module docs): bounded, keyed by network,
/// looked up per prefix length.
#[derive(Debug, Clone)]
pub struct DecisionSet {
    capacity: usize,
    entries: HashMap<IpNetwork, Entry>,
    /// How many entries have each IPv4 (0..=32) and IPv6 (33..=161) prefix length.
    prefix_counts: Vec<u32>,
    /// The IPv4 and IPv6 prefix lengths present, longest first: what a lookup tries.
    v4_lengths: Vec<u8>,
    v6_lengths: Vec<u8>,
    names: Names,
    dropped: u64,
}

impl DecisionSet {
    /// An empty set enforcing at most `capacity` bans.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            prefix_counts: vec![0; 33 + 129],
            v4_lengths: Vec::new(),
            v6_lengths: Vec::new(),
            names: Names::default(),
            dropped: 0,
        }
    }

    /// Counts one more (`add`) or one less entry of `network`'s prefix
    /// length, keeping the lists of lengths present.
    fn count(&mut self, network: &IpNetwork, add: bool) {
        let slot = Self::slot(network);
        let count = &mut self.prefix_counts[slot];
        let was = *count;
        *count = if add { was + 1 } else { was.saturating_sub(1) };
        if (was == 0) != (*count == 0) {
            let lengths = if network.addr().is_ipv4() { &mut self.v4_lengths } else { &mut self.v6_lengths };
            let p = network.prefix_len();
            if add {
                lengths.push(p);
                lengths.sort_unstable_by(|a, b| b.cmp(a));
            } else {
                lengths.retain(|l| *l != p);
            }
        }
    }

    fn slot(network: &IpNetwork) -> usize {
        let p = usize::from(network.prefix_len());
        if network.addr().is_ipv4() { p } else { 33 + p }
    }

    /// Number of bans held (expired ones until the next purge included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no ban is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bans not enforced because the set was full, since it was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Heap bytes the set holds, estimated from its tables' capacities (the
    /// hash table's slots and control bytes, the interned names).
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(IpNetwork, Entry)>() + 1;
        let names: usize =
            self.names.names.iter().map(|n| 2 * n.len() + 2 * std::mem::size_of::<Box<str>>() + 5).sum();
        self.entries.capacity() * slot + self.prefix_counts.capacity() * 4 + names
    }

    /// Adds or extends a ban; `false` (and counted) when the set is full.
    pub fn insert(&mut self, ban: &Ban) -> bool {
        let expires_ms = millis(ban.expires);
        if let Some(e) = self.entries.get_mut(&ban.network) {
            // Two decisions on one address: the later expiry holds.
            if expires_ms > e.expires_ms {
                e.expires_ms = expires_ms;
                e.id = ban.id;
            }
            return true;
        }
        if self.entries.len() >= self.capacity {
            self.dropped += 1;
            return false;
        }
        let entry = Entry {
            id: ban.id,
            expires_ms,
            origin: self.names.intern(&ban.origin),
            scenario: self.names.intern(&ban.scenario),
        };
        self.entries.insert(ban.network, entry);
        self.count(&ban.network, true);
        true
    }

    /// Removes the ban on `network` if it is the decision `id` (or `id` is
    /// not given): a deleted older decision does not lift a newer one.
    pub fn remove(&mut self, network: &IpNetwork, id: Option<i64>) -> bool {
        match self.entries.get(network) {
            Some(e) if id.is_none() || e.id == id => {
                self.entries.remove(network);
                self.count(network, false);
                true
            }
            _ => false,
        }
    }

    /// Removes the bans expired at `now`; returns how many.
    pub fn purge_expired(&mut self, now: Monotonic) -> usize {
        let now = millis(now);
        let expired: Vec<IpNetwork> =
            self.entries.iter().filter(|(_, e)| e.expires_ms <= now).map(|(network, _)| *network).collect();
        for network in &expired {
            self.entries.remove(network);
            self.count(network, false);
        }
        expired.len()
    }

    /// Applies one answer of the decision stream at `now`: expired bans go
    /// first, then deletions, then new bans (up to the bound).
    pub fn apply(&mut self, stream: &DecisionStream, now: Monotonic) -> StreamOutcome {
        let mut out = StreamOutcome { expired: self.purge_expired(now), ..Default::default() };
        for d in stream.deleted.iter().flatten() {
            if let Ok(network) = d.network()
                && self.remove(&network, d.id)
            {
                out.deleted += 1;
            }
        }
        for d in stream.new.iter().flatten() {
            match d.to_ban(now) {
                Ok(ban) if self.insert(&ban) => out.added += 1,
                Ok(_) => out.dropped += 1,
                Err(_) => out.ignored += 1,
            }
        }
        out
    }

    /// Drops every ban (CrowdSec switched off, or a new LAPI).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.prefix_counts.iter_mut().for_each(|c| *c = 0);
        self.v4_lengths.clear();
        self.v6_lengths.clear();
        self.names = Names::default();
    }

    /// The live ban covering `ip` at `now`, if any (the narrowest one).
    pub fn lookup(&self, ip: IpAddr, now: Monotonic) -> Option<IpNetwork> {
        let now = millis(now);
        let key = |prefix: u8| match canonical_ip(ip) {
            IpAddr::V4(a) => IpNetwork::containing(IpAddr::V4(mask_v4(a, prefix).into()), prefix),
            IpAddr::V6(a) => IpNetwork::containing(IpAddr::V6(mask_v6(a, prefix).into()), prefix),
        };
        let lengths = if canonical_ip(ip).is_ipv4() { &self.v4_lengths } else { &self.v6_lengths };
        lengths.iter().map(|p| key(*p)).find(|k| self.entries.get(k).is_some_and(|e| e.expires_ms > now))
    }

    /// Whether a live ban covers `ip` at `now`.
    pub fn is_banned(&self, ip: IpAddr, now: Monotonic) -> bool {
        self.lookup(ip, now).is_some()
    }

    /// The live bans at `now`, for `/api/v1/blocked`: expiry in UTC read
    /// from `now`'s two clocks, by address.
    pub fn list(&self, now: Timestamp) -> Vec<BannedClient> {
        let now_ms = millis(now.monotonic);
        let mut out: Vec<BannedClient> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires_ms > now_ms)
            .map(|(network, e)| {
                let left =
                    time::Duration::milliseconds(i64::try_from(e.expires_ms - now_ms).unwrap_or(i64::MAX));
                BannedClient {
                    address: *network,
                    until: now.utc.checked_add(left).unwrap_or(now.utc),
                    origin: self.names.get(e.origin).to_string(),
                    scenario: self.names.get(e.scenario).to_string(),
                }
            })
            .collect();
        out.sort_by_key(|b| b.address);
        out
    }
}

/// A ban as `/api/v1/blocked` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BannedClient {
    /// The address or range refused.
    pub address: IpNetwork,
    /// When the ban ends.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: OffsetDateTime,
    /// Who made the decision (`cscli`, `crowdsec`, `CAPI`, ...).
    pub origin: String,
    /// The scenario behind it.
    pub scenario: String,
}

/// Whether `ip` may connect, with the access `policy` and the CrowdSec
/// `bans` (see the module docs for the order).
pub fn admit(policy: &AccessPolicy, bans: &DecisionSet, ip: IpAddr, now: Monotonic) -> Decision {
    if policy.is_enabled() && policy.is_allowed_by_rule(ip) {
        return Decision::Allow;
    }
    if !policy.is_trusted_proxy(ip) && bans.is_banned(ip, now) {
        return Decision::Deny;
    }
    policy.decide(ip)
}

/// What is known of a local block, to become an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFacts {
    /// The blocked address or IPv6 network.
    pub network: IpNetwork,
    /// Failed logins counted.
    pub failures: u32,
    /// The first failure counted (the alert's `start_at`).
    pub first_failure: OffsetDateTime,
    /// When the block was set (the alert's `stop_at`).
    pub blocked_at: OffsetDateTime,
    /// How long the fleet should refuse the client.
    pub ban: Duration,
    /// The window failures are counted in (the alert's `leakspeed`).
    pub window: Duration,
}

/// One key-value pair of an alert's or event's meta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// An alert's source (`models.Source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSource {
    /// `Ip` or `Range`.
    pub scope: String,
    /// The address or range.
    pub value: String,
    /// The address, for the `Ip` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The range, for the `Range` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

/// An alert's event (`models.Event`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// RFC 3339.
    pub timestamp: String,
    /// What happened.
    pub meta: Vec<Meta>,
}

/// A decision the device asks the fleet to enforce (`models.Decision`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDecision {
    /// [`DECISION_ORIGIN`].
    pub origin: String,
    /// `ban`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `Ip` or `Range`.
    pub scope: String,
    /// The address or range.
    pub value: String,
    /// Go's notation.
    pub duration: String,
    /// [`SCENARIO`].
    pub scenario: String,
}

/// An alert as `POST /v1/alerts` takes it (`models.Alert`, the fields the LAPI requires and the decisions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// [`SCENARIO`].
    pub scenario: String,
    /// [`SCENARIO_HASH`].
    pub scenario_hash: String,
    /// [`SCENARIO_VERSION`].
    pub scenario_version: String,
    /// One line for a person.
    pub message: String,
    /// Failed logins counted.
    pub events_count: i32,
    /// The first failure, RFC 3339.
    pub start_at: String,
    /// The block, RFC 3339.
    pub stop_at: String,
    /// CrowdSec's bucket capacity: events before overflow, less one.
    pub capacity: i32,
    /// The counting window, Go's notation.
    pub leakspeed: String,
    /// Always false: the device's blocks are real.
    pub simulated: bool,
    /// Always true: the alert carries a decision.
    pub remediation: bool,
    /// One event describing the failures.
    pub events: Vec<AlertEvent>,
    /// The attacker.
    pub source: AlertSource,
    /// The ban.
    pub decisions: Vec<AlertDecision>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

impl Alert {
    /// The alert for a local block.
    pub fn for_block(facts: &BlockFacts) -> Self {
        let value = facts.network.to_string();
        let (scope, ip, range) = if facts.network.is_host() {
            ("Ip", Some(value.clone()), None)
        } else {
            ("Range", None, Some(value.clone()))
        };
        let (start, stop) = if facts.first_failure <= facts.blocked_at {
            (facts.first_failure, facts.blocked_at)
        } else {
            (facts.blocked_at, facts.blocked_at)
        };
        let count = i32::try_from(facts.failures).unwrap_or(i32::MAX);
        Self {
            scenario: SCENARIO.into(),
            scenario_hash: SCENARIO_HASH.into(),
            scenario_version: SCENARIO_VERSION.into(),
            message: format!("portcullis blocked {value} after {} failed logins", facts.failures),
            events_count: count,
            start_at: rfc3339(start),
            stop_at: rfc3339(stop),
            capacity: count.saturating_sub(1).max(0),
            leakspeed: go_duration(facts.window.max(Duration::from_secs(1))),
            simulated: false,
            remediation: true,
            events: vec![AlertEvent {
                timestamp: rfc3339(stop),
                meta: vec![
                    Meta { key: "source_ip".into(), value: facts.network.addr().to_string() },
                    Meta { key: "service".into(), value: "http".into() },
                    Meta { key: "log_type".into(), value: "portcullis_login_failed".into() },
                ],
            }],
            source: AlertSource { scope: scope.into(), value: value.clone(), ip, range },
            decisions: vec![AlertDecision {
                origin: DECISION_ORIGIN.into(),
                kind: "ban".into(),
                scope: scope.into(),
                value,
                duration: go_duration(facts.ban.max(Duration::from_secs(1))),
                scenario: SCENARIO.into(),
            }],
        }
    }

    /// Checks what the LAPI requires (it answers a missing field with a bare 500).
    pub fn validate(&self) -> Result<(), ValidationError> {
        let required = [
            ("scenario", &self.scenario),
            ("scenario_hash", &self.scenario_hash),
            ("scenario_version", &self.scenario_version),
            ("message", &self.message),
            ("start_at", &self.start_at),
            ("stop_at", &self.stop_at),
            ("leakspeed", &self.leakspeed),
            ("source.scope", &self.source.scope),
            ("source.value", &self.source.value),
        ];
        if let Some((field, _)) = required.iter().find(|(_, v)| v.is_empty()) {
            return Err(ValidationError::new(
                *field,
                ErrorCode::Required,
                format!("the alert's {field} is required"),
            ));
        }
        if self.events_count < 1 {
            return Err(ValidationError::new(
                "events_count",
                ErrorCode::OutOfRange,
                "an alert counts at least one event",
            ));
        }
        if self.events.is_empty() {
            return Err(ValidationError::new(
                "events",
                ErrorCode::Required,
                "an alert carries at least one event",
            ));
        }
        for (i, d) in self.decisions.iter().enumerate() {
            let fields = [
                ("origin", &d.origin),
                ("type", &d.kind),
                ("scope", &d.scope),
                ("value", &d.value),
                ("duration", &d.duration),
                ("scenario", &d.scenario),
            ];
            if let Some((name, _)) = fields.iter().find(|(_, v)| v.is_empty()) {
                return Err(ValidationError::new(
                    format!("decisions[{i}].{name}"),
                    ErrorCode::Required,
                    format!("a decision's {name} is required"),
                ));
            }
            if parse_go_duration(&d.duration).is_none_or(|x| x.is_zero()) {
                return Err(ValidationError::new(
                    format!("decisions[{i}].duration"),
                    ErrorCode::InvalidDuration,
                    "a decision lasts a positive Go duration",
                ));
            }
        }
        Ok(())
    }
}

/// When an alert that could not be sent is tried again: the delays
/// double from [`RETRY_MIN`] and the alert is given up after [`MAX_ATTEMPTS`].
pub const RETRY_MIN: Duration = Duration::from_secs(2);
/// Attempts per alert before it is given up (and counted as failed).
pub const MAX_ATTEMPTS: u32 = 5;
/// Alerts waiting to be sent at most; the oldest is given up beyond.
pub const MAX_PENDING_ALERTS: usize = 256;

/// The delay before attempt `attempt` (1-based, the first is immediate), or
/// `None` when the alert is given up.
pub fn alert_retry_delay(attempt: u32) -> Option<Duration> {
    match attempt {
        0 | 1 => Some(Duration::ZERO),
        n if n <= MAX_ATTEMPTS => Some(RETRY_MIN.saturating_mul(1 << (n - 2))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_control::{AccessControlSettings, AccessRule, NoMatch, RuleKind};
    use time::macros::datetime;

    fn enabled() -> CrowdSecSettings {
        CrowdSecSettings {
            enabled: true,
            lapi_url: "http://127.0.0.1:8080".into(),
            bouncer_key: Some(Secret::new("0123456789abcdef")),
            ..Default::default()
        }
    }

    fn refused(s: &CrowdSecSettings) -> ValidationError {
        s.validate().expect_err("refused")
    }

    #[test]
    fn the_names_the_api_uses() {
        let s: CrowdSecSettings = crate::config::parse_input(
            br#"{"enabled": true, "lapi_url": "http://127.0.0.1:8080", "bouncer_key": "k3y",
                 "poll_interval_seconds": 2, "machine_id": "cam-1", "machine_password": "pw"}"#,
        )
        .expect("parses");
        assert_eq!(s.validate(), Ok(()));
        assert!(s.signals());
        assert_eq!(s.poll_interval(), Duration::from_secs(2));
        assert_eq!(
            s.lapi().expect("url").endpoint("/v1/decisions/stream"),
            "http://127.0.0.1:8080/v1/decisions/stream"
        );
        let only_bounce: CrowdSecSettings = crate::config::parse_input(
            br#"{"enabled": true, "lapi_url": "https://lapi.example/crowdsec/", "bouncer_key": "k"}"#,
        )
        .expect("parses");
        assert_eq!(only_bounce.validate(), Ok(()));
        assert!(!only_bounce.signals());
        assert_eq!(only_bounce.poll_interval_seconds, DEFAULT_POLL_INTERVAL);
        assert_eq!(
            only_bounce.lapi().expect("url").endpoint("/v1/alerts"),
            "https://lapi.example:443/crowdsec/v1/alerts"
        );
        let e = crate::config::parse_input::<CrowdSecSettings>(br#"{"bouncer_kee": "x"}"#).expect_err("typo");
        assert_eq!(e.field, "bouncer_kee");
        assert!(!CrowdSecSettings::default().enabled);
        assert_eq!(CrowdSecSettings::default().validate(), Ok(()));
    }

    #[test]
    fn refusals_name_the_field() {
        let field = |s: &CrowdSecSettings| {
            let e = refused(s);
            (e.field, e.code.as_str().to_string())
        };
        let f = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            field(&CrowdSecSettings { lapi_url: "".into(), ..enabled() }),
            f("lapi_url", "invalid_url")
        );
        for bad in [
            "ftp://h:1",
            "http://h:99999",
            "http://user:pw@h:1",
            "http://h:1/a?b",
            "http://bad host:1",
            "h:1",
        ] {
            assert_eq!(field(&CrowdSecSettings { lapi_url: bad.into(), ..enabled() }).0, "lapi_url", "{bad}");
        }
        assert_eq!(field(&CrowdSecSettings { bouncer_key: None, ..enabled() }), f("bouncer_key", "required"));
        let e = refused(&CrowdSecSettings { bouncer_key: Some(Secret::new("sec ret")), ..enabled() });
        assert_eq!(e.code, "invalid_key");
        assert!(!e.message.contains("sec ret"), "the key is not repeated");
        assert_eq!(
            field(&CrowdSecSettings { poll_interval_seconds: 0, ..enabled() }),
            f("poll_interval_seconds", "out_of_range")
        );
        assert_eq!(
            field(&CrowdSecSettings { poll_interval_seconds: 3601, ..enabled() }).0,
            "poll_interval_seconds"
        );
        assert_eq!(
            field(&CrowdSecSettings { machine_id: Some("m".into()), ..enabled() }),
            f("machine_password", "required")
        );
        assert_eq!(
            field(&CrowdSecSettings { machine_password: Some(Secret::new("p")), ..enabled() }),
            f("machine_id", "required")
        );
        let m = CrowdSecSettings {
            machine_id: Some("a b".into()),
            machine_password: Some(Secret::new("p")),
            ..enabled()
        };
        assert_eq!(field(&m).0, "machine_id");
        let m = CrowdSecSettings {
            machine_id: Some("ab".into()),
            machine_password: Some(Secret::new("p\n")),
            ..enabled()
        };
        assert_eq!(field(&m).0, "machine_password");
        assert_eq!(field(&CrowdSecSettings { max_decisions: 99, ..enabled() }).0, "max_decisions");
        assert_eq!(field(&CrowdSecSettings { ban_seconds: 59, ..enabled() }).0, "ban_seconds");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(
            field(&CrowdSecSettings { ca_pem: Some(pem.into()), ..enabled() }),
            f("ca_pem", "https_only")
        );
        let https = CrowdSecSettings { lapi_url: "https://lapi.example:8443".into(), ..enabled() };
        assert_eq!(CrowdSecSettings { ca_pem: Some(pem.into()), ..https.clone() }.validate(), Ok(()));
        assert_eq!(
            field(&CrowdSecSettings { ca_pem: Some("x".into()), ..https }),
            f("ca_pem", "invalid_pem")
        );
        // Off, an unset URL and key are fine; a bad one is still refused.
        assert_eq!(
            CrowdSecSettings { enabled: false, lapi_url: "".into(), bouncer_key: None, ..enabled() }
                .validate(),
            Ok(())
        );
        assert_eq!(
            field(&CrowdSecSettings { enabled: false, lapi_url: "x".into(), ..enabled() }).0,
            "lapi_url"
        );
    }

    #[test]
    fn secrets_are_never_read_back_and_survive_a_put_of_a_read() {
        let stored = CrowdSecSettings {
            machine_id: Some("cam-1".into()),
            machine_password: Some(Secret::new("pw-xyz")),
            ..enabled()
        };
        let read = stored.redacted();
        let json = serde_json::to_string(&read).expect("json");
        assert!(!json.contains("0123456789abcdef") && !json.contains("pw-xyz"), "{json}");
        let debug = format!("{stored:?}");
        assert!(!debug.contains("0123456789abcdef") && !debug.contains("pw-xyz"), "{debug}");
        assert_eq!(read.clone().merge_secrets(&stored), stored);
        let cleared =
            CrowdSecSettings { bouncer_key: Some(Secret::new("")), ..read.clone() }.merge_secrets(&stored);
        assert_eq!(cleared.bouncer_key, None);
        let other_machine =
            CrowdSecSettings { machine_id: Some("cam-2".into()), ..read }.merge_secrets(&stored);
        assert_eq!(other_machine.machine_password, None, "another machine does not inherit the password");
        assert_eq!(other_machine.validate().expect_err("needs its password").field, "machine_password");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("4h"), Some(Duration::from_secs(4 * 3600)));
        assert_eq!(parse_go_duration("3h59m58.5s"), Some(Duration::from_secs_f64(4.0 * 3600.0 - 1.5)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5µs"), Some(Duration::from_nanos(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "-1h", "-3m2s", "1x", "h", "1h-2m", ".s", "99999999h"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
        assert_eq!(go_duration(Duration::from_secs(4 * 3600 + 61)), "4h1m1s");
        assert_eq!(
            parse_go_duration(&go_duration(Duration::from_secs(12345))),
            Some(Duration::from_secs(12345))
        );
    }

    fn decision(id: i64, kind: &str, scope: &str, value: &str, duration: &str) -> LapiDecision {
        LapiDecision {
            id: Some(id),
            origin: "cscli".into(),
            kind: kind.into(),
            scope: scope.into(),
            value: value.into(),
            duration: duration.into(),
            scenario: "manual 'ban' from 'localhost'".into(),
        }
    }

    fn at(secs: u64) -> Monotonic {
        Monotonic::from_origin(Duration::from_secs(secs))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_stream_as_the_lapi_writes_it() {
        let body = br#"{"deleted": null, "new": [
            {"duration": "3h59m59.7s", "id": 1, "origin": "cscli", "scenario": "manual 'ban' from 'localhost'",
             "scope": "Ip", "type": "ban", "value": "127.0.0.3", "uuid": "x"},
            {"duration": "1h", "id": 2, "origin": "crowdsec", "scenario": "crowdsecurity/ssh-bf",
             "scope": "Range", "type": "ban", "value": "10.1.2.3/24"},
            {"duration": "1h", "id": 3, "origin": "cscli", "scenario": "s", "scope": "Ip", "type": "captcha", "value": "10.9.9.9"},
            {"duration": "1h", "id": 4, "origin": "cscli", "scenario": "s", "scope": "Country", "type": "ban", "value": "FR"},
            {"duration": "-2s", "id": 5, "origin": "cscli", "scenario": "s", "scope": "Ip", "type": "ban", "value": "10.8.8.8"},
            {"duration": "1h", "id": 6, "origin": "cscli", "scenario": "s", "scope": "ip", "type": "ban", "value": "::ffff:10.7.7.7"}
        ]}"#;
        let stream: DecisionStream = serde_json::from_slice(body).expect("parses");
        let mut set = DecisionSet::new(100);
        let out = set.apply(&stream, at(10));
        assert_eq!(out, StreamOutcome { added: 3, ignored: 3, ..Default::default() });
        assert!(set.is_banned(ip("127.0.0.3"), at(10)));
        assert!(set.is_banned(ip("::ffff:127.0.0.3"), at(10)), "a mapped address is the IPv4 one");
        assert!(set.is_banned(ip("10.1.2.200"), at(10)), "the range's host bits are cleared");
        assert!(!set.is_banned(ip("10.1.3.1"), at(10)));
        assert!(set.is_banned(ip("10.7.7.7"), at(10)));
        assert!(!set.is_banned(ip("10.9.9.9"), at(10)), "captcha is not enforced");
        assert!(!set.is_banned(ip("10.8.8.8"), at(10)), "expired on arrival");
        let list = set.list(Timestamp { utc: datetime!(2026-01-01 0:00 UTC), monotonic: at(10) });
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].address.to_string(), "10.1.2.0/24");
        assert_eq!(
            (list[0].origin.as_str(), list[0].scenario.as_str()),
            ("crowdsec", "crowdsecurity/ssh-bf")
        );
        assert_eq!(list[0].until, datetime!(2026-01-01 1:00 UTC));
        let empty: DecisionStream =
            serde_json::from_slice(br#"{"new": null, "deleted": null}"#).expect("parses");
        assert_eq!(set.apply(&empty, at(11)), StreamOutcome::default());
    }

    #[test]
    fn bans_expire_on_the_monotonic_clock_and_deletions_lift_them() {
        let mut set = DecisionSet::new(100);
        let new = DecisionStream {
            new: Some(vec![
                decision(1, "ban", "Ip", "192.0.2.1", "60s"),
                decision(2, "ban", "Ip", "192.0.2.2", "1h"),
            ]),
            deleted: None,
        };
        set.apply(&new, at(100));
        assert!(set.is_banned(ip("192.0.2.1"), at(159)));
        assert!(!set.is_banned(ip("192.0.2.1"), at(160)), "expired, even before the purge");
        assert_eq!(set.purge_expired(at(160)), 1);
        assert_eq!(set.len(), 1);
        // A deletion of an older decision on the same address does not lift the newer one.
        let renewed =
            DecisionStream { new: Some(vec![decision(3, "ban", "Ip", "192.0.2.2", "2h")]), deleted: None };
        set.apply(&renewed, at(200));
        let stale =
            DecisionStream { new: None, deleted: Some(vec![decision(2, "ban", "Ip", "192.0.2.2", "0s")]) };
        assert_eq!(set.apply(&stale, at(201)).deleted, 0);
        assert!(set.is_banned(ip("192.0.2.2"), at(201)));
        let gone =
            DecisionStream { new: None, deleted: Some(vec![decision(3, "ban", "Ip", "192.0.2.2", "0s")]) };
        assert_eq!(set.apply(&gone, at(202)).deleted, 1);
        assert!(!set.is_banned(ip("192.0.2.2"), at(202)));
        assert!(set.is_empty());
        // A shorter decision does not shorten a longer one.
        set.insert(&decision(4, "ban", "Ip", "192.0.2.3", "1h").to_ban(at(0)).expect("ban"));
        set.insert(&decision(5, "ban", "Ip", "192.0.2.3", "1m").to_ban(at(0)).expect("ban"));
        assert!(set.is_banned(ip("192.0.2.3"), at(120)));
    }

    #[test]
    fn the_set_is_bounded_and_counts_what_it_leaves_out() {
        let mut set = DecisionSet::new(3);
        let stream = DecisionStream {
            new: Some((1..=5).map(|i| decision(i, "ban", "Ip", &format!("192.0.2.{i}"), "1h")).collect()),
            deleted: None,
        };
        let out = set.apply(&stream, at(0));
        assert_eq!((out.added, out.dropped, set.len(), set.dropped()), (3, 2, 3, 2));
        assert!(set.is_banned(ip("192.0.2.3"), at(1)));
        assert!(!set.is_banned(ip("192.0.2.4"), at(1)));
        // Room made by expiry is used by the next poll.
        let out = set.apply(&stream, at(3600));
        assert_eq!((out.expired, out.added, out.dropped), (3, 3, 2));
    }

    #[test]
    fn the_narrowest_ban_and_ipv6_ranges_are_found() {
        let mut set = DecisionSet::new(100);
        for (i, (scope, value)) in
            [("Range", "2001:db8::/32"), ("Ip", "2001:db8::5"), ("Range", "0.0.0.0/0")].iter().enumerate()
        {
            set.insert(&decision(i as i64, "ban", scope, value, "1h").to_ban(at(0)).expect("ban"));
        }
        assert_eq!(
            set.lookup(ip("2001:db8::5"), at(1)).map(|n| n.to_string()).as_deref(),
            Some("2001:db8::5")
        );
        assert_eq!(
            set.lookup(ip("2001:db8:1::1"), at(1)).map(|n| n.to_string()).as_deref(),
            Some("2001:db8::/32")
        );
        assert_eq!(set.lookup(ip("2001:db9::1"), at(1)), None);
        assert!(set.is_banned(ip("203.0.113.9"), at(1)), "a /0 range covers every IPv4 address");
        assert!(set.remove(&"0.0.0.0/0".parse().expect("net"), None));
        assert!(!set.is_banned(ip("203.0.113.9"), at(1)));
        set.clear();
        assert!(!set.is_banned(ip("2001:db8::5"), at(1)));
    }

    #[test]
    fn allow_rules_win_and_trusted_proxies_are_not_refused() {
        let mut set = DecisionSet::new(100);
        set.insert(&decision(1, "ban", "Range", "198.51.100.0/24", "1h").to_ban(at(0)).expect("ban"));
        let rule = |kind, s: &str| AccessRule { kind, source: s.parse().expect("net") };
        let settings = AccessControlSettings {
            enabled: true,
            no_match: NoMatch::Allow,
            rules: vec![rule(RuleKind::Allow, "198.51.100.7")],
            trusted_proxies: vec!["198.51.100.8".parse().expect("net")],
        };
        let policy = AccessPolicy::compile(&settings, &[]);
        assert_eq!(admit(&policy, &set, ip("198.51.100.9"), at(1)), Decision::Deny);
        assert_eq!(admit(&policy, &set, ip("198.51.100.7"), at(1)), Decision::Allow, "allow rule");
        assert_eq!(admit(&policy, &set, ip("198.51.100.8"), at(1)), Decision::Allow, "trusted proxy");
        assert_eq!(admit(&policy, &set, ip("192.0.2.1"), at(1)), Decision::Allow);
        assert_eq!(admit(&policy, &set, ip("198.51.100.9"), at(3600)), Decision::Allow, "expired");
        // With access control off, bans still refuse and the allow list means nothing.
        let off = AccessPolicy::compile(&AccessControlSettings { enabled: false, ..settings }, &[]);
        assert_eq!(admit(&off, &set, ip("198.51.100.7"), at(1)), Decision::Deny);
        assert_eq!(admit(&off, &set, ip("192.0.2.1"), at(1)), Decision::Allow);
    }

    fn facts() -> BlockFacts {
        BlockFacts {
            network: "192.0.2.66".parse().expect("net"),
            failures: 6,
            first_failure: datetime!(2026-03-04 05:00:00 UTC),
            blocked_at: datetime!(2026-03-04 05:01:30 UTC),
            ban: Duration::from_secs(4 * 3600),
            window: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_block_becomes_an_alert_with_a_ban_decision() {
        let alert = Alert::for_block(&facts());
        assert_eq!(alert.validate(), Ok(()));
        let json = serde_json::to_value(vec![&alert]).expect("json");
        let a = &json[0];
        for field in [
            "scenario",
            "scenario_hash",
            "scenario_version",
            "message",
            "events_count",
            "start_at",
            "stop_at",
            "capacity",
            "leakspeed",
            "simulated",
            "events",
            "source",
        ] {
            assert!(!a[field].is_null(), "required field {field}");
        }
        assert_eq!(a["scenario"], "portcullis/login-bf");
        assert_eq!(a["events_count"], 6);
        assert_eq!(a["start_at"], "2026-03-04T05:00:00Z");
        assert_eq!(a["stop_at"], "2026-03-04T05:01:30Z");
        assert_eq!(a["leakspeed"], "0h5m0s");
        assert_eq!(
            a["source"],
            serde_json::json!({"scope": "Ip", "value": "192.0.2.66", "ip": "192.0.2.66"})
        );
        assert_eq!(
            a["decisions"][0],
            serde_json::json!({"origin": "crowdsec", "type": "ban", "scope": "Ip", "value": "192.0.2.66",
                "duration": "4h0m0s", "scenario": "portcullis/login-bf"})
        );
        let v6 =
            Alert::for_block(&BlockFacts { network: "2001:db8:1:2::/64".parse().expect("net"), ..facts() });
        assert_eq!(
            (v6.source.scope.as_str(), v6.source.range.as_deref()),
            ("Range", Some("2001:db8:1:2::/64"))
        );
        assert_eq!(v6.decisions[0].scope, "Range");
        // A wall clock stepped back between the first failure and the block: still start <= stop.
        let stepped =
            Alert::for_block(&BlockFacts { first_failure: datetime!(2026-03-05 00:00 UTC), ..facts() });
        assert_eq!(stepped.start_at, stepped.stop_at);
    }

    #[test]
    fn an_incomplete_alert_is_refused_before_it_is_sent() {
        let mut alert = Alert::for_block(&facts());
        alert.scenario_hash.clear();
        assert_eq!(alert.validate().expect_err("refused").field, "scenario_hash");
        let mut alert = Alert::for_block(&facts());
        alert.events.clear();
        assert_eq!(alert.validate().expect_err("refused").field, "events");
        let mut alert = Alert::for_block(&facts());
        alert.decisions[0].duration = "-1h".into();
        assert_eq!(alert.validate().expect_err("refused").field, "decisions[0].duration");
        let mut alert = Alert::for_block(&facts());
        alert.source.value.clear();
        assert_eq!(alert.validate().expect_err("refused").field, "source.value");
    }

    #[test]
    fn alert_retries_are_bounded() {
        assert_eq!(alert_retry_delay(1), Some(Duration::ZERO));
        assert_eq!(alert_retry_delay(2), Some(Duration::from_secs(2)));
        assert_eq!(alert_retry_delay(5), Some(Duration::from_secs(16)));
        assert_eq!(alert_retry_delay(6), None);
    }
}

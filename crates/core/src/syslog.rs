//! Syslog export (SPEC §9): the settings, what is sent, how a message is
//! written (RFC 5424) and framed (RFC 6587 octet counting), the bounded
//! queue in front of each collector and when a lost connection is retried.
//!
//! The sockets live in `portcullis-fleet`; every rule it follows is here,
//! tested on the injected clock.
//!
//! # What is sent
//!
//! Every event of the event log ([`crate::events`]): alerts, blocks,
//! configuration changes with their actor, reboots, certificate changes,
//! notification outcomes. With [`SyslogSettings::include_logfile`], also each
//! access the web server logfile records (MSGID `access`). The event's kind
//! is the MSGID (`client_blocked`, `config_changed`, ...), so a collector
//! filters on it without parsing the text.
//!
//! # The message
//!
//! `<PRI>1 TIMESTAMP HOSTNAME portcullis PROCID MSGID [SD] MSG`, with
//! structured data `[portcullis@32473 ...]` carrying the event's fields
//! (client, user, count; 32473 is the private enterprise number RFC 5612
//! reserves for documentation, since the product has none of its own) and
//! `[meta sequenceId="N"]` (RFC 5424 §7.3.1), which counts every message the
//! device made: a collector that sees a gap knows messages were lost. MSG is
//! one line: control characters become spaces, so a user name sent by an
//! attacker cannot forge a line in a collector's file.
//!
//! # Bounds and retries
//!
//! Each destination has its own queue of at most
//! [`SyslogSettings::queue_capacity`] messages (default
//! [`DEFAULT_QUEUE_CAPACITY`]) and [`MAX_QUEUE_BYTES`]. Producing a message never waits: when the
//! queue is full, the **oldest** message is dropped (the newest say what is
//! happening now), and the drop is counted. A failed connection or send is
//! retried after a delay that doubles from [`RETRY_MIN`] up to [`RETRY_MAX`],
//! each delay shortened by a random part of up to a half (so that a fleet of
//! devices does not reconnect to a collector in step after it restarts).
//! When messages flow again after drops, one report says how many were
//! dropped ([`SendQueue::take_drop_report`]); it becomes an event itself.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::clock::Monotonic;
use crate::events::{Event, EventKind};
use crate::profiles::{HostPort, MAX_CA_PEM_LEN, Secret};
use crate::{ErrorCode, ValidationError};

/// Most collectors one device sends to.
pub const MAX_DESTINATIONS: usize = 8;
/// Messages queued per destination by default: about an hour of a busy
/// device's events (a message is about 250 bytes: about 250 KB).
pub const DEFAULT_QUEUE_CAPACITY: u32 = 1000;
/// Smallest and largest queue a destination may have, in messages.
pub const QUEUE_CAPACITY_RANGE: (u32, u32) = (10, 100_000);
/// Bytes one destination's queue holds at most, whatever its capacity in
/// messages: with eight destinations, 8 MiB at worst on a device.
pub const MAX_QUEUE_BYTES: usize = 1 << 20;
/// Longest message sent over UDP, in bytes: what RFC 5426 §3.2 says every
/// receiver should take (IPv4 guarantees only 480; 2048 is what collectors
/// accept in practice); longer ones are cut.
pub const MAX_UDP_MESSAGE: usize = 2048;
/// Longest message sent over TCP or TLS, in bytes; longer ones are cut.
pub const MAX_STREAM_MESSAGE: usize = 8192;
/// Longest PEM of a client certificate or key, in bytes.
pub const MAX_PEM_LEN: usize = MAX_CA_PEM_LEN;
/// The first retry delay after a failure.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(60);
/// APP-NAME of every message.
pub const APP_NAME: &str = "portcullis";
/// SD-ID of the event's fields: the product's name at the documentation PEN.
pub const SD_ID: &str = "portcullis@32473";

/// How messages travel to a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    /// One datagram per message (RFC 5426); nothing says whether it arrived.
    Udp,
    /// A TCP stream with octet-counting framing (RFC 6587).
    Tcp,
    /// TLS (RFC 5425): the collector's certificate is verified.
    Tls,
}

impl SyslogTransport {
    /// The port used when the address names none: 514 for UDP and TCP, 6514 for TLS.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Udp | Self::Tcp => 514,
            Self::Tls => 6514,
        }
    }

    /// The longest message this transport carries.
    pub fn max_message(self) -> usize {
        match self {
            Self::Udp => MAX_UDP_MESSAGE,
            Self::Tcp | Self::Tls => MAX_STREAM_MESSAGE,
        }
    }

    /// The name used in the settings (`udp`, `tcp`, `tls`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// The syslog facility of every message (RFC 5424 §6.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Facility {
    /// 0: kernel messages.
    Kern,
    /// 1: user-level messages.
    User,
    /// 3: system daemons.
    Daemon,
    /// 4: security/authorization messages.
    Auth,
    /// 10: security/authorization messages (private).
    Authpriv,
    /// 13: log audit.
    Audit,
    /// 16: local use 0, the default: facilities a site assigns to its devices.
    #[default]
    Local0,
    /// 17: local use 1.
    Local1,
    /// 18: local use 2.
    Local2,
    /// 19: local use 3.
    Local3,
    /// 20: local use 4.
    Local4,
    /// 21: local use 5.
    Local5,
    /// 22: local use 6.
    Local6,
    /// 23: local use 7.
    Local7,
}

impl Facility {
    /// The facility's number.
    pub fn code(self) -> u8 {
        match self {
            Self::Kern => 0,
            Self::User => 1,
            Self::Daemon => 3,
            Self::Auth => 4,
            Self::Authpriv => 10,
            Self::Audit => 13,
            Self::Local0 => 16,
            Self::Local1 => 17,
            Self::Local2 => 18,
            Self::Local3 => 19,
            Self::Local4 => 20,
            Self::Local5 => 21,
            Self::Local6 => 22,
            Self::Local7 => 23,
        }
    }
}

/// A message's severity (RFC 5424 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// 0: the system is unusable.
    Emergency,
    /// 1: action must be taken immediately.
    Alert,
    /// 2: critical conditions.
    Critical,
    /// 3: error conditions.
    Error,
    /// 4: warning conditions.
    Warning,
    /// 5: normal but significant condition.
    Notice,
    /// 6: informational messages.
    Informational,
    /// 7: debug-level messages.
    Debug,
}

impl Severity {
    /// The severity's number.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The severity an event of `kind` is sent with: attacks and failures
    /// are warnings or errors, changes (the audit trail) notices, the rest
    /// informational.
    pub fn of(kind: EventKind) -> Self {
        match kind {
            EventKind::ConfigLoadProblem
            | EventKind::AcmeFailed
            | EventKind::NotificationFailed
            | EventKind::SyslogDropped
            | EventKind::CrowdsecAlertFailed
            | EventKind::StorageFull => Self::Error,
            EventKind::CrowdsecUnreachable => Self::Warning,
            EventKind::IntrusionAlert
            | EventKind::ClientBlocked
            | EventKind::ConfigRolledBack
            | EventKind::CertificateExpiring
            | EventKind::CertificateDownloaded
            | EventKind::ConfigExported
            | EventKind::AccountLocked
            | EventKind::SecondFactorReset
            | EventKind::RecoveryCodeUsed => Self::Warning,
            EventKind::Reboot
            | EventKind::ClientUnblocked
            | EventKind::ConfigChanged
            | EventKind::ConfigStored
            | EventKind::ConfigRestored
            | EventKind::ConfigConfirmed
            | EventKind::ConfigImported
            | EventKind::CertificateChanged
            | EventKind::UserChanged
            | EventKind::TokenCreated
            | EventKind::TokenRevoked
            | EventKind::SecondFactorEnrolled => Self::Notice,
            EventKind::Startup | EventKind::NotificationSent | EventKind::Other => Self::Informational,
        }
    }
}

/// One collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyslogDestination {
    /// `host:port` (`[v6]:port` for IPv6); a bare host takes the
    /// transport's usual port (514, or 6514 for TLS).
    pub address: String,
    /// How messages travel; required, since the collector decides it.
    pub transport: SyslogTransport,
    /// TLS only: PEM of the CA certificate(s) the collector's certificate
    /// must chain to, instead of the system's trust store.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// TLS only: the SHA-256 fingerprint (hex, colons allowed) of the one
    /// certificate the collector must present, instead of a CA (a pinned
    /// self-signed certificate).
    #[serde(default)]
    pub pinned_sha256: Option<String>,
    /// TLS only: the name the collector's certificate must carry; the
    /// address's host when not set.
    #[serde(default)]
    pub server_name: Option<String>,
    /// TLS only: PEM of the device's client certificate (and chain), for a
    /// collector that asks for one.
    #[serde(default)]
    pub client_certificate_pem: Option<String>,
    /// TLS only: PEM of the client certificate's private key; never
    /// returned by API reads.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_key_pem: Option<Secret>,
}

impl SyslogDestination {
    /// A destination with only an address and a transport.
    pub fn new(address: impl Into<String>, transport: SyslogTransport) -> Self {
        Self {
            address: address.into(),
            transport,
            ca_pem: None,
            pinned_sha256: None,
            server_name: None,
            client_certificate_pem: None,
            client_key_pem: None,
        }
    }

    /// The parsed address (with the transport's default port).
    pub fn host_port(&self) -> Result<HostPort, String> {
        HostPort::parse(&self.address, Some(self.transport.default_port()))
    }

    /// The pinned fingerprint as 32 bytes, if one is set and well-formed.
    pub fn pin(&self) -> Option<[u8; 32]> {
        self.pinned_sha256.as_deref().and_then(parse_fingerprint)
    }

    /// The name the collector's certificate is checked against.
    pub fn tls_name(&self) -> Option<String> {
        self.server_name.clone().or_else(|| self.host_port().ok().map(|hp| hp.host))
    }

    fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        let f = |name: &str| format!("{prefix}.{name}");
        self.host_port().map_err(|m| ValidationError::new(f("address"), ErrorCode::InvalidAddress, m))?;
        let tls_fields = [
            ("ca_pem", self.ca_pem.is_some()),
            ("pinned_sha256", self.pinned_sha256.is_some()),
            ("server_name", self.server_name.is_some()),
            ("client_certificate_pem", self.client_certificate_pem.is_some()),
            ("client_key_pem", self.client_key_pem.is_some()),
        ];
        if self.transport != SyslogTransport::Tls {
            if let Some((name, _)) = tls_fields.iter().find(|(_, set)| *set) {
                return Err(ValidationError::new(
                    f(name),
                    ErrorCode::TlsOnly,
                    format!("{name} applies to the tls transport only"),
                ));
            }
            return Ok(());
        }
        if self.ca_pem.is_some() && self.pinned_sha256.is_some() {
            return Err(ValidationError::new(
                f("pinned_sha256"),
                ErrorCode::ConflictingSettings,
                "give either ca_pem or pinned_sha256: a pinned certificate is trusted alone",
            ));
        }
        if let Some(pem) = &self.ca_pem {
            check_pem(pem, "CERTIFICATE")
                .map_err(|m| ValidationError::new(f("ca_pem"), ErrorCode::InvalidPem, m))?;
        }
        if let Some(pin) = &self.pinned_sha256
            && parse_fingerprint(pin).is_none()
        {
            return Err(ValidationError::new(
                f("pinned_sha256"),
                ErrorCode::InvalidFingerprint,
                "expected a SHA-256 fingerprint: 64 hexadecimal digits, colons allowed",
            ));
        }
        if let Some(name) = &self.server_name {
            HostPort::parse(name, Some(1)).ok().filter(|hp| hp.host == *name).ok_or_else(|| {
                ValidationError::new(
                    f("server_name"),
                    ErrorCode::InvalidHost,
                    "expected a DNS name or an IP address",
                )
            })?;
        }
        match (&self.client_certificate_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => {
                check_pem(cert, "CERTIFICATE").map_err(|m| {
                    ValidationError::new(f("client_certificate_pem"), ErrorCode::InvalidPem, m)
                })?;
                // The message never repeats the key.
                check_pem(key.expose(), "PRIVATE KEY").map_err(|_| {
                    ValidationError::new(
                        f("client_key_pem"),
                        ErrorCode::InvalidPem,
                        "expected an unencrypted PEM private key (-----BEGIN ... PRIVATE KEY-----)",
                    )
                })?;
            }
            (Some(_), None) => {
                return Err(ValidationError::new(
                    f("client_key_pem"),
                    ErrorCode::Required,
                    "a client certificate needs its private key",
                ));
            }
            (None, Some(_)) => {
                return Err(ValidationError::new(
                    f("client_certificate_pem"),
                    ErrorCode::Required,
                    "a client key needs its certificate",
                ));
            }
            (None, None) => {}
        }
        Ok(())
    }
}

/// A hex SHA-256 fingerprint, with or without colons, any case.
fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// A PEM block whose label ends with `label` is present, within the size bound.
fn check_pem(pem: &str, label: &str) -> Result<(), String> {
    if pem.len() > MAX_PEM_LEN {
        return Err(format!("at most {MAX_PEM_LEN} bytes are allowed"));
    }
    let found = pem.lines().any(|l| {
        l.trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label) && !l.starts_with("ENCRYPTED"))
    });
    if found { Ok(()) } else { Err(format!("expected PEM (-----BEGIN {label}-----)")) }
}

/// The syslog export settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct SyslogSettings {
    /// Whether events are sent; off by default (nothing leaves the device unasked).
    pub enabled: bool,
    /// The collectors (at most 8); each gets every message.
    pub destinations: Vec<SyslogDestination>,
    /// Facility of every message.
    pub facility: Facility,
    /// HOSTNAME of every message; the device's host name when not set.
    pub hostname: Option<String>,
    /// Also send each access the web server logfile records (MSGID `access`).
    pub include_logfile: bool,
    /// Messages queued per destination while it cannot be reached (10-100000).
    pub queue_capacity: u32,
}

impl Default for SyslogSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            destinations: Vec::new(),
            facility: Facility::default(),
            hostname: None,
            include_logfile: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

impl SyslogSettings {
    /// Checks the settings; the first problem is returned.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.enabled && self.destinations.is_empty() {
            return Err(ValidationError::new(
                "destinations",
                ErrorCode::Required,
                "syslog export needs at least one destination",
            ));
        }
        if self.destinations.len() > MAX_DESTINATIONS {
            return Err(ValidationError::new(
                "destinations",
                ErrorCode::TooMany,
                format!("at most {MAX_DESTINATIONS} destinations are allowed"),
            ));
        }
        let mut seen = Vec::new();
        for (i, d) in self.destinations.iter().enumerate() {
            let prefix = format!("destinations[{i}]");
            d.validate(&prefix)?;
            let key = (d.host_port().map(|hp| hp.to_string()).unwrap_or_default(), d.transport);
            if let Some(first) = seen.iter().position(|k| *k == key) {
                return Err(ValidationError::new(
                    format!("{prefix}.address"),
                    ErrorCode::Duplicate,
                    format!("this destination repeats destinations[{first}]"),
                ));
            }
            seen.push(key);
        }
        if let Some(h) = &self.hostname
            && !is_header_token(h, 255)
        {
            return Err(ValidationError::new(
                "hostname",
                ErrorCode::InvalidHost,
                "the host name must be 1-255 printable ASCII characters without spaces",
            ));
        }
        let (lo, hi) = QUEUE_CAPACITY_RANGE;
        if !(lo..=hi).contains(&self.queue_capacity) {
            return Err(ValidationError::new(
                "queue_capacity",
                ErrorCode::OutOfRange,
                format!("the queue holds between {lo} and {hi} messages"),
            ));
        }
        Ok(())
    }

    /// A copy without secrets, for API reads and configuration downloads.
    pub fn redacted(&self) -> Self {
        let mut out = self.clone();
        out.destinations.iter_mut().for_each(|d| d.client_key_pem = None);
        out
    }

    /// `self` with each omitted client key taken from the destination of
    /// the same address and transport in `old`, so that a PUT of a redacted
    /// read keeps the keys; an empty key clears it.
    pub fn merge_secrets(mut self, old: &Self) -> Self {
        for d in &mut self.destinations {
            match &d.client_key_pem {
                Some(k) if k.is_empty() => d.client_key_pem = None,
                Some(_) => {}
                None => {
                    d.client_key_pem = old
                        .destinations
                        .iter()
                        .find(|o| o.address == d.address && o.transport == d.transport)
                        .and_then(|o| o.client_key_pem.clone());
                }
            }
        }
        self
    }
}

/// `1..=max` printable US-ASCII characters (33-126), as RFC 5424 header fields are.
fn is_header_token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

/// A header field: the value cut to `max` printable ASCII characters, or
/// `-` (the NILVALUE) when nothing printable is left.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if out.is_empty() { "-".to_string() } else { out }
}

/// What one message says, before it is written for a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogRecord {
    /// When it happened.
    pub time: OffsetDateTime,
    /// Its severity.
    pub severity: Severity,
    /// MSGID: the event's kind, or `access`.
    pub msgid: String,
    /// Parameters of the `portcullis@32473` element, in order.
    pub params: Vec<(&'static str, String)>,
    /// MSG: one line for a person.
    pub message: String,
}

impl SyslogRecord {
    /// The record of an event of the event log.
    pub fn of_event(event: &Event) -> Self {
        let mut params = vec![("event_id", event.id.to_string())];
        if let Some(actor) = &event.actor {
            if let Some(user) = &actor.user {
                params.push(("user", user.clone()));
            }
            if let Some(ip) = actor.client_ip {
                params.push(("actor_ip", ip.to_string()));
            }
        }
        // The details' flat values (the client blocked, the failure count,
        // the sections changed) as parameters; nested ones stay in the API.
        if let serde_json::Value::Object(map) = &event.details {
            for (key, value) in map {
                let Some(name) = DETAIL_PARAMS.iter().find(|p| **p == key.as_str()) else { continue };
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .filter_map(|v| {
                            v.as_str().map(str::to_string).or_else(|| v.as_number().map(|n| n.to_string()))
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => continue,
                };
                params.push((name, text));
            }
        }
        Self {
            time: event.time,
            severity: Severity::of(event.kind),
            msgid: event_kind_name(event.kind),
            params,
            message: event.message.clone(),
        }
    }

    /// The record of one access the web server logfile records.
    pub fn of_access(
        time: OffsetDateTime,
        client_ip: std::net::IpAddr,
        user: Option<&str>,
        authorized: bool,
        url: &str,
    ) -> Self {
        let mut params = vec![("client_ip", client_ip.to_canonical().to_string())];
        if let Some(user) = user {
            params.push(("user", user.to_string()));
        }
        params.push(("authorized", authorized.to_string()));
        params.push(("url", url.to_string()));
        let outcome = if authorized { "authorized" } else { "unauthorized" };
        let who = user.map(|u| format!(" as \"{u}\"")).unwrap_or_default();
        Self {
            time,
            severity: if authorized { Severity::Informational } else { Severity::Notice },
            msgid: "access".to_string(),
            params,
            message: format!("{} {outcome}{who} for {url}", client_ip.to_canonical()),
        }
    }
}

/// Keys of an event's details that become structured-data parameters.
const DETAIL_PARAMS: &[&str] = &[
    "client",
    "client_ip",
    "address",
    "count",
    "failures",
    "user",
    "sections",
    "profile",
    "channel",
    "origin",
    "until",
    "not_after",
    "dropped",
    "destination",
];

/// The snake_case name of an event kind, as the API writes it.
pub fn event_kind_name(kind: EventKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "other".to_string(),
    }
}

/// The parts of the header that are the same for every message of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Facility of every message.
    pub facility: Facility,
    /// HOSTNAME.
    pub hostname: String,
    /// PROCID: the process id.
    pub procid: String,
}

/// Writes `record` as an RFC 5424 message of at most `max_len` bytes (MSG
/// is cut at a character boundary to fit), numbered `sequence` in the
/// `meta` element.
pub fn format_message(origin: &Origin, record: &SyslogRecord, sequence: u64, max_len: usize) -> String {
    let pri = u16::from(origin.facility.code()) * 8 + u16::from(record.severity.code());
    let time = rfc3339_micros(record.time);
    let mut out = String::with_capacity(256);
    let _ = write!(
        out,
        "<{pri}>1 {time} {} {} {} {} ",
        header_field(&origin.hostname, 255),
        APP_NAME,
        header_field(&origin.procid, 128),
        header_field(&record.msgid, 32),
    );
    // sequenceId is 1..=2147483647 and wraps (RFC 5424 §7.3.1).
    let meta = format!("][meta sequenceId=\"{}\"]", sequence % 2_147_483_647 + 1);
    out.push('[');
    out.push_str(SD_ID);
    // The structured data is never cut in the middle (a collector would
    // refuse the whole message): a value that does not fit is shortened,
    // and parameters that do not fit at all are left out. The header and
    // the SD-ID and meta element take about 120 bytes, far under any
    // transport's limit.
    let room = max_len.saturating_sub(meta.len());
    for (name, value) in &record.params {
        let fixed = name.len() + 4; // ` name=""`
        if out.len() + fixed > room {
            break;
        }
        let _ = write!(out, " {name}=\"");
        escape_param(&mut out, value, room - 1);
        out.push('"');
    }
    out.push_str(&meta);
    if !record.message.is_empty() {
        out.push(' ');
        for c in record.message.chars() {
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    truncate_at_char(&mut out, max_len);
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\\` and `]` get a
/// backslash; control characters become spaces (one line). Stops before
/// `out` grows past `limit` bytes, never between a backslash and the
/// character it escapes.
fn escape_param(out: &mut String, value: &str, limit: usize) {
    for c in value.chars() {
        let escaped = matches!(c, '"' | '\\' | ']');
        if out.len() + c.len_utf8() + usize::from(escaped) > limit {
            return;
        }
        match c {
            c if escaped => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// `2026-03-04T05:06:07.123456Z`: UTC, microseconds (RFC 5424 allows at most six digits).
fn rfc3339_micros(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Frames a message for a stream (TCP, TLS): octet counting, `LEN SP MSG`
/// (RFC 6587 §3.4.1, RFC 5425 §4.3).
pub fn frame_octet_counted(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 6);
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
    out
}

/// Messages dropped because a destination's queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropReport {
    /// How many since the last report.
    pub count: u64,
}

/// The size an item of a [`SendQueue`] counts for in the queue's byte bound.
pub trait QueueWeight {
    /// Bytes the item holds.
    fn weight(&self) -> usize;
}

impl QueueWeight for String {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl QueueWeight for Vec<u8> {
    fn weight(&self) -> usize {
        self.len()
    }
}

/// The bounded queue in front of one destination (see the module docs):
/// never refuses a message, drops the oldest when it holds `capacity`
/// items or [`MAX_QUEUE_BYTES`], and counts.
#[derive(Debug, Clone)]
pub struct SendQueue<T> {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    items: VecDeque<T>,
    unreported: u64,
    dropped: u64,
}

impl<T: QueueWeight> SendQueue<T> {
    /// An empty queue holding at most `capacity` items (at least 1) and
    /// [`MAX_QUEUE_BYTES`].
    pub fn new(capacity: usize) -> Self {
        Self::with_byte_limit(capacity, MAX_QUEUE_BYTES)
    }

    /// An empty queue holding at most `capacity` items (at least 1) and
    /// `max_bytes` (one item always fits, whatever its size).
    pub fn with_byte_limit(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            items: VecDeque::new(),
            unreported: 0,
            dropped: 0,
        }
    }

    /// Adds `item`; while the queue is full (by count or bytes), the oldest
    /// item is dropped and counted.
    pub fn push(&mut self, item: T) {
        let weight = item.weight();
        while !self.items.is_empty()
            && (self.items.len() >= self.capacity || self.bytes + weight > self.max_bytes)
        {
            self.pop_oldest();
            self.unreported += 1;
            self.dropped += 1;
        }
        self.bytes += weight;
        self.items.push_back(item);
    }

    fn pop_oldest(&mut self) -> Option<T> {
        let item = self.items.pop_front()?;
        self.bytes -= item.weight();
        Some(item)
    }

    /// The oldest item, left in the queue until [`SendQueue::sent`] says it went out.
    pub fn front(&self) -> Option<&T> {
        self.items.front()
    }

    /// Removes the oldest item after it was sent.
    pub fn sent(&mut self) -> Option<T> {
        self.pop_oldest()
    }

    /// Takes the oldest item out to send it; the queue cannot drop it
    /// while it is on its way. Give it back with [`SendQueue::put_back`] if
    /// sending failed.
    pub fn take(&mut self) -> Option<T> {
        self.pop_oldest()
    }

    /// Puts an item whose sending failed back in front. When newer items
    /// filled the queue meanwhile, it is the oldest: it is dropped (and counted).
    pub fn put_back(&mut self, item: T) {
        let weight = item.weight();
        if !self.items.is_empty()
            && (self.items.len() >= self.capacity || self.bytes + weight > self.max_bytes)
        {
            self.unreported += 1;
            self.dropped += 1;
            return;
        }
        self.bytes += weight;
        self.items.push_front(item);
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Items dropped since the queue was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The drops not yet reported, to report once messages flow again; `None` when there were none.
    pub fn take_drop_report(&mut self) -> Option<DropReport> {
        (self.unreported > 0).then(|| DropReport { count: std::mem::take(&mut self.unreported) })
    }
}

/// When a destination that failed may be tried again (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retry {
    failures: u32,
    next_attempt: Option<Monotonic>,
}

impl Retry {
    /// Whether an attempt may be made at `now`.
    pub fn may_attempt(&self, now: Monotonic) -> bool {
        self.next_attempt.is_none_or(|at| now >= at)
    }

    /// When the next attempt may be made, if it must wait.
    pub fn next_attempt(&self) -> Option<Monotonic> {
        self.next_attempt
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure at `now`; `jitter` in `[0, 1)` (from the injected
    /// random source) shortens the delay by up to a half. Returns the delay.
    pub fn failed(&mut self, now: Monotonic, jitter: f64) -> Duration {
        let delay = retry_delay(self.failures, jitter);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = Some(now.after(delay));
        delay
    }

    /// Records a success: the next failure starts over at [`RETRY_MIN`].
    pub fn succeeded(&mut self) {
        *self = Self::default();
    }
}

/// The delay after `failures` earlier failures in a row: [`RETRY_MIN`]
/// doubled per failure up to [`RETRY_MAX`], less `jitter` (clamped to
/// `[0, 1)`) times half of it.
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let full = RETRY_MIN.saturating_mul(1u32 << failures.min(16)).min(RETRY_MAX);
    let jitter = if jitter.is_finite() { jitter.clamp(0.0, 0.999_999) } else { 0.0 };
    full.mul_f64(1.0 - jitter / 2.0)
}

impl fmt::Display for SyslogDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_port() {
            Ok(hp) => write!(f, "{}://{hp}", self.transport.as_str()),
            Err(_) => write!(f, "{}://{}", self.transport.as_str(), self.address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Actor;
    use proptest::prelude::*;
    use time::macros::datetime;

    const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    fn settings(destinations: Vec<SyslogDestination>) -> SyslogSettings {
        SyslogSettings { enabled: true, destinations, ..Default::default() }
    }

    fn refused(s: &SyslogSettings) -> ValidationError {
        s.validate().expect_err("refused")
    }

    fn origin() -> Origin {
        Origin { facility: Facility::Local0, hostname: "cam-lobby".into(), procid: "42".into() }
    }

    #[test]
    fn the_names_the_api_uses() {
        let s: SyslogSettings = crate::config::parse_input(
            br#"{"enabled": true, "destinations": [{"address": "127.0.0.1:5514", "transport": "udp"},
                {"address": "collector.example", "transport": "tls"}]}"#,
        )
        .expect("parses");
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.destinations[0].host_port().expect("hp").port, 5514);
        assert_eq!(s.destinations[1].host_port().expect("hp").port, 6514, "TLS's port");
        assert_eq!(s.queue_capacity, DEFAULT_QUEUE_CAPACITY);
        assert_eq!(s.facility, Facility::Local0);
        let e = crate::config::parse_input::<SyslogSettings>(br#"{"destinations": [{"address": "h:1"}]}"#)
            .expect_err("a transport is required");
        assert_eq!((e.field.as_str(), e.code.as_str()), ("destinations[0].transport", "required"));
        let e = crate::config::parse_input::<SyslogSettings>(
            br#"{"destinations": [{"address": "h:1", "transport": "sctp"}]}"#,
        )
        .expect_err("unknown transport");
        assert_eq!(e.field, "destinations[0].transport");
        // Off by default, and valid so.
        assert!(!SyslogSettings::default().enabled);
        assert_eq!(SyslogSettings::default().validate(), Ok(()));
    }

    #[test]
    fn refusals_name_the_field() {
        let e = refused(&settings(vec![]));
        assert_eq!((e.field.as_str(), e.code.as_str()), ("destinations", "required"));
        let e = refused(&settings(vec![SyslogDestination::new("host:99999", SyslogTransport::Tcp)]));
        assert_eq!((e.field.as_str(), e.code.as_str()), ("destinations[0].address", "invalid_address"));
        let e = refused(&settings(vec![SyslogDestination::new("bad host:514", SyslogTransport::Udp)]));
        assert_eq!(e.field, "destinations[0].address");
        let e = refused(&settings(vec![
            SyslogDestination::new("10.0.0.1", SyslogTransport::Udp),
            SyslogDestination::new("10.0.0.1:514", SyslogTransport::Udp),
        ]));
        assert_eq!((e.field.as_str(), e.code.as_str()), ("destinations[1].address", "duplicate"));
        // The same collector over two transports is two destinations.
        assert_eq!(
            settings(vec![
                SyslogDestination::new("10.0.0.1:514", SyslogTransport::Udp),
                SyslogDestination::new("10.0.0.1:514", SyslogTransport::Tcp),
            ])
            .validate(),
            Ok(())
        );
        let many = (0..=MAX_DESTINATIONS)
            .map(|i| SyslogDestination::new(format!("10.0.0.{i}"), SyslogTransport::Udp));
        assert_eq!(refused(&settings(many.collect())).code, "too_many");
        let mut s = settings(vec![SyslogDestination::new("10.0.0.1", SyslogTransport::Udp)]);
        s.queue_capacity = 9;
        assert_eq!(refused(&s).field, "queue_capacity");
        s.queue_capacity = 100_001;
        assert_eq!(refused(&s).field, "queue_capacity");
        s.queue_capacity = 10;
        s.hostname = Some("cam lobby".into());
        assert_eq!(refused(&s).field, "hostname");
        s.hostname = Some("cam-lobby.example".into());
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn tls_fields_belong_to_tls() {
        let mut d = SyslogDestination::new("10.0.0.1", SyslogTransport::Tcp);
        d.ca_pem = Some(PEM_CERT.into());
        let e = refused(&settings(vec![d.clone()]));
        assert_eq!((e.field.as_str(), e.code.as_str()), ("destinations[0].ca_pem", "tls_only"));
        d.transport = SyslogTransport::Tls;
        assert_eq!(settings(vec![d.clone()]).validate(), Ok(()));
        d.pinned_sha256 = Some("ab".repeat(32));
        assert_eq!(refused(&settings(vec![d.clone()])).code, "conflicting_settings");
        d.ca_pem = None;
        assert_eq!(settings(vec![d.clone()]).validate(), Ok(()));
        let colons = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
        d.pinned_sha256 = Some(colons);
        assert_eq!(d.pin(), Some([0xab; 32]));
        d.pinned_sha256 = Some("abc".into());
        assert_eq!(refused(&settings(vec![d.clone()])).code, "invalid_fingerprint");
        d.pinned_sha256 = Some("zz".repeat(32));
        assert_eq!(refused(&settings(vec![d.clone()])).code, "invalid_fingerprint");
        d.pinned_sha256 = None;
        d.ca_pem = Some("not pem".into());
        assert_eq!(refused(&settings(vec![d.clone()])).code, "invalid_pem");
        d.ca_pem = None;
        d.client_certificate_pem = Some(PEM_CERT.into());
        assert_eq!(refused(&settings(vec![d.clone()])).field, "destinations[0].client_key_pem");
        d.client_key_pem = Some(Secret::new("-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n"));
        let e = refused(&settings(vec![d.clone()]));
        assert_eq!(e.code, "invalid_pem");
        assert!(!e.message.contains("ENCRYPTED PRIVATE KEY-----\nx"), "the key is not repeated");
        d.client_key_pem = Some(Secret::new(PEM_KEY));
        assert_eq!(settings(vec![d.clone()]).validate(), Ok(()));
        d.client_certificate_pem = None;
        assert_eq!(refused(&settings(vec![d.clone()])).field, "destinations[0].client_certificate_pem");
        d.client_key_pem = None;
        d.server_name = Some("collector.example".into());
        assert_eq!(settings(vec![d.clone()]).validate(), Ok(()));
        assert_eq!(d.tls_name().as_deref(), Some("collector.example"));
        d.server_name = Some("collector.example:6514".into());
        assert_eq!(refused(&settings(vec![d.clone()])).field, "destinations[0].server_name");
        d.server_name = None;
        assert_eq!(d.tls_name().as_deref(), Some("10.0.0.1"), "the address's host");
    }

    #[test]
    fn client_keys_are_never_read_back_and_survive_a_put_of_a_read() {
        let mut d = SyslogDestination::new("10.0.0.1", SyslogTransport::Tls);
        d.client_certificate_pem = Some(PEM_CERT.into());
        d.client_key_pem = Some(Secret::new(PEM_KEY));
        let stored = settings(vec![d]);
        let read = stored.redacted();
        assert_eq!(read.destinations[0].client_key_pem, None);
        assert!(!serde_json::to_string(&read).expect("json").contains("MIIE"));
        assert!(!format!("{stored:?}").contains("MIIE"), "Debug hides the key");
        assert_eq!(read.clone().merge_secrets(&stored), stored);
        let mut cleared = read.clone();
        cleared.destinations[0].client_key_pem = Some(Secret::new(""));
        assert_eq!(cleared.merge_secrets(&stored).destinations[0].client_key_pem, None);
        // Another destination does not inherit the key.
        let mut moved = read;
        moved.destinations[0].address = "10.0.0.2".into();
        assert_eq!(moved.merge_secrets(&stored).destinations[0].client_key_pem, None);
    }

    fn blocked_event() -> Event {
        Event {
            id: 17,
            time: datetime!(2026-03-04 05:06:07.123456789 UTC),
            kind: EventKind::ClientBlocked,
            actor: None,
            message: "client 192.0.2.66 blocked after 6 failed logins".into(),
            details: serde_json::json!({"client": "192.0.2.66", "count": 6, "nested": {"x": 1}}),
        }
    }

    #[test]
    fn an_event_becomes_an_rfc5424_message_with_its_kind_as_msgid() {
        let record = SyslogRecord::of_event(&blocked_event());
        let msg = format_message(&origin(), &record, 0, MAX_STREAM_MESSAGE);
        assert_eq!(
            msg,
            "<132>1 2026-03-04T05:06:07.123456Z cam-lobby portcullis 42 client_blocked \
             [portcullis@32473 event_id=\"17\" client=\"192.0.2.66\" count=\"6\"][meta sequenceId=\"1\"] \
             client 192.0.2.66 blocked after 6 failed logins"
        );
        // PRI = facility * 8 + severity: local0 (16) and warning (4).
        assert_eq!(16 * 8 + 4, 132);
        let changed = Event {
            kind: EventKind::ConfigChanged,
            actor: Some(Actor::new(Some("admin"), Some("198.51.100.7".parse().expect("ip")))),
            details: serde_json::json!({"sections": ["syslog", "crowdsec"]}),
            message: "settings changed".into(),
            ..blocked_event()
        };
        let o = Origin { facility: Facility::Auth, ..origin() };
        let msg = format_message(&o, &SyslogRecord::of_event(&changed), 41, MAX_STREAM_MESSAGE);
        assert!(msg.starts_with("<37>1 "), "auth (4) * 8 + notice (5): {msg}");
        assert!(msg.contains(" config_changed [portcullis@32473 event_id=\"17\" user=\"admin\" actor_ip=\"198.51.100.7\" sections=\"syslog,crowdsec\"][meta sequenceId=\"42\"]"), "{msg}");
    }

    #[test]
    fn attacker_text_cannot_break_the_message() {
        let record = SyslogRecord::of_access(
            datetime!(2026-03-04 05:06:07 UTC),
            "::ffff:192.0.2.66".parse().expect("ip"),
            Some("eve\"] [x=\"1\nFAKE"),
            false,
            "/admin/\r\nFAKE",
        );
        let msg = format_message(&origin(), &record, 0, MAX_STREAM_MESSAGE);
        assert!(!msg.contains('\n') && !msg.contains('\r'), "{msg}");
        assert!(msg.contains("user=\"eve\\\"\\] [x=\\\"1 FAKE\""), "{msg}");
        assert!(msg.contains(" access [portcullis@32473 client_ip=\"192.0.2.66\""), "{msg}");
        assert!(msg.starts_with("<133>1 "), "unauthorized access is a notice: {msg}");
        // Header fields: non-printable or empty values become the NILVALUE.
        let o = Origin { hostname: "".into(), procid: "p id".into(), ..origin() };
        let msg = format_message(&o, &record, 0, MAX_STREAM_MESSAGE);
        assert!(msg.contains(" - portcullis pid access "), "{msg}");
    }

    #[test]
    fn messages_are_cut_to_the_transport_and_framed_by_their_length() {
        let mut record = SyslogRecord::of_event(&blocked_event());
        record.message = "ä".repeat(3000);
        let udp = format_message(&origin(), &record, 0, MAX_UDP_MESSAGE);
        assert!(udp.len() <= MAX_UDP_MESSAGE && udp.len() > MAX_UDP_MESSAGE - 2, "{}", udp.len());
        assert!(udp.ends_with('ä'), "cut at a character boundary");
        let framed = frame_octet_counted("<13>1 - - - - - - hi");
        assert_eq!(framed, b"20 <13>1 - - - - - - hi");
        let framed = frame_octet_counted(&udp);
        assert!(framed.starts_with(format!("{} <132>1", udp.len()).as_bytes()));
    }

    #[test]
    fn sequence_ids_wrap_within_their_range() {
        let record = SyslogRecord::of_event(&blocked_event());
        let at = |n| format_message(&origin(), &record, n, MAX_STREAM_MESSAGE);
        assert!(at(2_147_483_646).contains("sequenceId=\"2147483647\""));
        assert!(at(2_147_483_647).contains("sequenceId=\"1\""));
    }

    #[test]
    fn severities_follow_the_kind() {
        assert_eq!(Severity::of(EventKind::IntrusionAlert), Severity::Warning);
        assert_eq!(Severity::of(EventKind::NotificationFailed), Severity::Error);
        assert_eq!(Severity::of(EventKind::ConfigChanged), Severity::Notice);
        assert_eq!(Severity::of(EventKind::Startup), Severity::Informational);
        assert_eq!(event_kind_name(EventKind::ClientBlocked), "client_blocked");
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_reports_once() {
        let mut q = SendQueue::new(3);
        for i in 0..5 {
            q.push(i.to_string());
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.front().map(String::as_str), Some("2"), "0 and 1 were dropped");
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.take_drop_report(), Some(DropReport { count: 2 }));
        assert_eq!(q.take_drop_report(), None, "reported once");
        assert_eq!(q.sent().as_deref(), Some("2"));
        q.push("5".into());
        q.push("6".into());
        assert_eq!(q.take_drop_report(), Some(DropReport { count: 1 }));
        assert_eq!(q.dropped(), 3);
        let drained: Vec<_> = std::iter::from_fn(|| q.sent()).collect();
        assert_eq!(drained, ["4", "5", "6"]);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn an_item_on_its_way_is_never_dropped_and_goes_back_in_front() {
        let mut q = SendQueue::new(2);
        q.push("a".to_string());
        q.push("b".to_string());
        let on_its_way = q.take().expect("a");
        q.push("c".to_string());
        assert_eq!(q.dropped(), 0, "the queue had room: b and c");
        q.put_back(on_its_way);
        assert_eq!(q.dropped(), 1, "full again: the failed oldest one goes");
        assert_eq!(q.front().map(String::as_str), Some("b"));
        let b = q.take().expect("b");
        q.put_back(b);
        assert_eq!(
            (q.len(), q.dropped(), q.front().map(String::as_str)),
            (2, 1, Some("b")),
            "room: back in front"
        );
        assert_eq!(q.bytes(), 2);
    }

    #[test]
    fn a_queue_is_bounded_in_bytes_too() {
        let mut q = SendQueue::with_byte_limit(100, 10);
        q.push("aaaa".to_string());
        q.push("bbbb".to_string());
        assert_eq!((q.len(), q.bytes(), q.dropped()), (2, 8, 0));
        q.push("cccc".to_string());
        assert_eq!((q.len(), q.bytes(), q.dropped()), (2, 8, 1), "the oldest made room");
        assert_eq!(q.front().map(String::as_str), Some("bbbb"));
        q.push("x".repeat(50));
        assert_eq!((q.len(), q.bytes(), q.dropped()), (1, 50, 3), "one item always fits");
        // The default bound: a full default queue of the longest messages stays within it.
        let mut q = SendQueue::new(DEFAULT_QUEUE_CAPACITY as usize);
        for _ in 0..DEFAULT_QUEUE_CAPACITY {
            q.push("m".repeat(MAX_STREAM_MESSAGE));
        }
        assert!(q.bytes() <= MAX_QUEUE_BYTES);
        assert_eq!(q.len(), MAX_QUEUE_BYTES / MAX_STREAM_MESSAGE);
    }

    #[test]
    fn retries_back_off_on_the_monotonic_clock() {
        let t0 = Monotonic::from_origin(Duration::from_secs(100));
        let mut r = Retry::default();
        assert!(r.may_attempt(t0));
        assert_eq!(r.failed(t0, 0.0), Duration::from_secs(1));
        assert!(!r.may_attempt(t0.after(Duration::from_millis(999))));
        assert!(r.may_attempt(t0.after(Duration::from_secs(1))));
        assert_eq!(r.failed(t0, 0.0), Duration::from_secs(2));
        assert_eq!(r.failed(t0, 0.0), Duration::from_secs(4));
        for _ in 0..20 {
            r.failed(t0, 0.0);
        }
        assert_eq!(r.failed(t0, 0.0), RETRY_MAX, "capped");
        assert_eq!(r.failed(t0, 0.5), RETRY_MAX.mul_f64(0.75), "jitter shortens by up to a half");
        assert_eq!(r.next_attempt(), Some(t0.after(RETRY_MAX.mul_f64(0.75))));
        r.succeeded();
        assert_eq!(r.failures(), 0);
        assert!(r.may_attempt(t0));
        assert_eq!(retry_delay(0, f64::NAN), RETRY_MIN, "a broken random source means no jitter");
    }

    /// Whether the message's STRUCTURED-DATA (after the six header fields)
    /// is a run of complete `[...]` elements followed by a space or the end.
    fn structured_data_is_closed(msg: &str) -> bool {
        let mut rest = msg;
        for _ in 0..6 {
            let Some((_, r)) = rest.split_once(' ') else { return false };
            rest = r;
        }
        let mut chars = rest.chars().peekable();
        let mut elements = 0;
        while chars.peek() == Some(&'[') {
            chars.next();
            let (mut quoted, mut closed) = (false, false);
            while let Some(c) = chars.next() {
                match c {
                    '\\' if quoted => {
                        chars.next();
                    }
                    '"' => quoted = !quoted,
                    ']' if !quoted => {
                        closed = true;
                        break;
                    }
                    _ => {}
                }
            }
            if !closed {
                return false;
            }
            elements += 1;
        }
        elements > 0 && matches!(chars.next(), None | Some(' '))
    }

    #[test]
    fn long_values_are_shortened_without_breaking_the_structured_data() {
        let long = format!("/{}", "\"]\\x".repeat(2000));
        let record = SyslogRecord::of_access(
            datetime!(2026-03-04 05:06:07 UTC),
            "192.0.2.1".parse().expect("ip"),
            Some(&long),
            true,
            &long,
        );
        for max in [480, MAX_UDP_MESSAGE, MAX_STREAM_MESSAGE] {
            let msg = format_message(&origin(), &record, 0, max);
            assert!(msg.len() <= max);
            assert!(structured_data_is_closed(&msg), "{msg}");
            assert!(msg.contains("[meta sequenceId=\"1\"]"), "the sequence survives: {msg}");
        }
        assert!(structured_data_is_closed(&format_message(
            &origin(),
            &SyslogRecord::of_event(&blocked_event()),
            0,
            480
        )));
    }

    proptest! {
        #[test]
        fn every_message_is_one_line_within_bounds(
            msg in "\\PC{0,300}|[\\x00-\\x7f]{0,300}",
            user in proptest::option::of("\\PC{0,40}"),
            host in "\\PC{0,20}",
            max in 64usize..3000,
        ) {
            let record = SyslogRecord::of_access(datetime!(2026-03-04 05:06:07 UTC), "192.0.2.1".parse().expect("ip"), user.as_deref(), true, &msg);
            let o = Origin { hostname: host, ..origin() };
            let out = format_message(&o, &record, 7, max);
            prop_assert!(out.len() <= max);
            prop_assert!(!out.chars().any(char::is_control));
            if max >= 480 {
                prop_assert!(structured_data_is_closed(&out), "{}", out);
            }
            let header: Vec<&str> = out.splitn(7, ' ').collect();
            if out.len() > 80 {
                prop_assert_eq!(header[0], "<134>1");
                prop_assert!(header[2].bytes().all(|b| (33..=126).contains(&b)));
            }
        }

        #[test]
        fn retry_delays_stay_in_bounds(failures in 0u32..100, jitter in proptest::num::f64::ANY) {
            let d = retry_delay(failures, jitter);
            prop_assert!(d >= RETRY_MIN / 2 && d <= RETRY_MAX);
        }
    }
}

//! Notification profiles (SPEC §6): e-mail, network message (IP Notify) and
//! phone call, as the operator configures them, with validation, secret
//! handling for API reads, and the default message templates (filled in by
//! [`crate::alert`]).
//!
//! The types are pure data; sending lives in `portcullis-notify`. Operator
//! input is checked here once ([`Profiles::validate`]) and the parsed forms
//! ([`HostPort`], [`SipUri`]) are what the senders use.
//!
//! # Secrets
//!
//! Passwords are [`Secret`]s: their `Debug` output is `"***"`, so a profile
//! can be logged without leaking them. API reads use [`Profiles::redacted`],
//! and a PUT that omits a password keeps the stored one ([`merge_secrets`]);
//! an empty string clears it.
//!
//! # Bounds
//!
//! At most [`MAX_PROFILES_PER_KIND`] profiles of each kind, names of at most
//! [`MAX_NAME_LEN`] characters, and per-field limits below, so a stored
//! configuration stays small whatever is PUT into it.

use crate::ErrorCode;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::settings::ProfileNames;

/// Most profiles of one kind.
pub const MAX_PROFILES_PER_KIND: usize = 32;
/// Longest profile name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Most e-mail recipients in one profile.
pub const MAX_RECIPIENTS: usize = 32;
/// Most IP Notify destinations in one profile.
pub const MAX_DESTINATIONS: usize = 16;
/// Most extra HTTP headers in one IP Notify profile.
pub const MAX_HEADERS: usize = 32;
/// Longest subject template, in bytes (SMTP lines are limited to 998).
pub const MAX_SUBJECT_LEN: usize = 512;
/// Longest body template, in bytes.
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// Longest `ca_pem`, in bytes.
pub const MAX_CA_PEM_LEN: usize = 64 * 1024;
/// Longest `audio` (base64 of a WAV file), in bytes: about 1.5 MB of WAV.
pub const MAX_AUDIO_LEN: usize = 2 * 1024 * 1024;
/// Longest user name or password, in bytes.
pub const MAX_CREDENTIAL_LEN: usize = 256;
/// Shortest and longest time a call may ring before it counts as unanswered, in seconds.
pub const RING_TIMEOUT_RANGE: (u32, u32) = (5, 120);
/// Port a SIP URI or registrar without a port uses.
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// A password or other secret: serialized as a plain string, printed by
/// `Debug` as `***` so that logging a profile cannot leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (an empty password means "none").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailSecurity {
    /// Plain SMTP (port 25 by default). Passwords travel in clear text.
    None,
    /// SMTP upgraded with STARTTLS, which is required: a server that does not
    /// offer it fails the delivery (port 587 by default). The default, because
    /// a downgrade to clear text must not happen silently.
    #[default]
    Starttls,
    /// SMTP inside TLS from the first byte (port 465 by default).
    Tls,
}

impl EmailSecurity {
    /// The port used when the profile names none.
    pub fn default_port(self) -> u16 {
        match self {
            EmailSecurity::None => 25,
            EmailSecurity::Starttls => 587,
            EmailSecurity::Tls => 465,
        }
    }
}

/// An e-mail profile: where and how an alert is mailed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct EmailProfile {
    /// SMTP server host name or IP address.
    pub server: String,
    /// SMTP port; null means the usual port for `security` (25, 587 or 465).
    pub port: Option<u16>,
    /// Connection security; certificates are always verified.
    pub security: EmailSecurity,
    /// Login name; null means no login.
    pub username: Option<String>,
    /// Login password; never returned by API reads.
    #[schema(value_type = Option<String>)]
    pub password: Option<Secret>,
    /// Sender address.
    pub from: String,
    /// Recipient addresses (at least one).
    pub to: Vec<String>,
    /// Subject template (placeholders, see [`crate::alert::render`]).
    pub subject: String,
    /// Body template (placeholders, see [`crate::alert::render`]).
    pub body: String,
    /// PEM of the CA certificate(s) to trust instead of the system's, for a
    /// server with a private CA.
    pub ca_pem: Option<String>,
}

/// Subject template used when a profile names none.
pub const DEFAULT_EMAIL_SUBJECT: &str = "[{device}] {event}: {message}";
/// Body template used when a profile names none.
pub const DEFAULT_EMAIL_BODY: &str = "Device: {device}\nEvent: {event}\n{message}\n\nClient: {client_ip}\nUser: {user}\nFailed attempts: {count}\nTime: {time}\n\nThe web server logfile is attached.\n";

impl Default for EmailProfile {
    fn default() -> Self {
        Self {
            server: String::new(),
            port: None,
            security: EmailSecurity::default(),
            username: None,
            password: None,
            from: String::new(),
            to: Vec::new(),
            subject: DEFAULT_EMAIL_SUBJECT.to_string(),
            body: DEFAULT_EMAIL_BODY.to_string(),
            ca_pem: None,
        }
    }
}

impl EmailProfile {
    /// The port in effect.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.security.default_port())
    }

    /// Checks the profile; `prefix` is the field path of the profile, e.g. `email.ops`.
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        let f = |name: &str| format!("{prefix}.{name}");
        check_host(&self.server).map_err(|m| ValidationError::new(f("server"), ErrorCode::InvalidHost, m))?;
        if self.port == Some(0) {
            return Err(ValidationError::new(
                f("port"),
                ErrorCode::OutOfRange,
                "port 0 is not valid; use 1-65535",
            ));
        }
        check_credentials(prefix, self.username.as_deref(), self.password.as_ref(), false)?;
        check_address(&self.from)
            .map_err(|m| ValidationError::new(f("from"), ErrorCode::InvalidAddress, m))?;
        if self.to.is_empty() {
            return Err(ValidationError::new(
                f("to"),
                ErrorCode::Required,
                "at least one recipient is needed",
            ));
        }
        if self.to.len() > MAX_RECIPIENTS {
            return Err(ValidationError::new(
                f("to"),
                ErrorCode::TooMany,
                format!("at most {MAX_RECIPIENTS} recipients are allowed"),
            ));
        }
        for (i, to) in self.to.iter().enumerate() {
            check_address(to)
                .map_err(|m| ValidationError::new(f(&format!("to[{i}]")), ErrorCode::InvalidAddress, m))?;
        }
        check_text(&self.subject, MAX_SUBJECT_LEN, false)
            .map_err(|m| ValidationError::new(f("subject"), ErrorCode::InvalidTemplate, m))?;
        check_text(&self.body, MAX_BODY_LEN, true)
            .map_err(|m| ValidationError::new(f("body"), ErrorCode::InvalidTemplate, m))?;
        check_ca_pem(self.ca_pem.as_deref())
            .map_err(|m| ValidationError::new(f("ca_pem"), ErrorCode::InvalidPem, m))
    }
}

/// How an IP Notify message travels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IpNotifyProtocol {
    /// Raw TCP: connect, write the rendered body, close.
    Tcp,
    /// An HTTP/1.1 request.
    #[default]
    Http,
    /// An HTTP/1.1 request over TLS; the certificate is verified.
    Https,
}

/// Which destinations of an IP Notify profile get the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// All destinations at once.
    #[default]
    Parallel,
    /// All destinations, one after another, in the order given.
    Sequential,
    /// One after another until the first that succeeds.
    NextOnError,
}

/// Body template of an IP Notify profile that names none: a JSON document.
pub const DEFAULT_IP_NOTIFY_BODY: &str = r#"{"device":"{device}","event":"{event}","message":"{message}","client_ip":"{client_ip}","user":"{user}","count":{count},"time":"{time}"}"#;
/// Content type of an IP Notify message that names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// An IP Notify profile: a message to one or more network destinations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct IpNotifyProfile {
    /// Destinations as `host:port` (IPv6 as `[addr]:port`).
    pub destinations: Vec<String>,
    /// Raw TCP or HTTP(S).
    pub protocol: IpNotifyProtocol,
    /// HTTP method (ignored for TCP).
    pub method: String,
    /// HTTP request path, starting with `/` (ignored for TCP).
    pub path: String,
    /// Extra HTTP request headers (ignored for TCP). Shown in API reads: put
    /// credentials in `username`/`password`, not here.
    pub headers: BTreeMap<String, String>,
    /// HTTP Basic user name; null means no authentication.
    pub username: Option<String>,
    /// HTTP Basic password; never returned by API reads.
    #[schema(value_type = Option<String>)]
    pub password: Option<Secret>,
    /// Body template (placeholders, see [`crate::alert::render`]); JSON by default.
    pub body: String,
    /// Content type of the body; when it mentions `json`, placeholder values
    /// are JSON-escaped so that an attacker's user name cannot break the document.
    pub content_type: String,
    /// All destinations in parallel, one after another, or until one succeeds.
    pub mode: DeliveryMode,
    /// PEM of the CA certificate(s) to trust for HTTPS instead of the system's.
    pub ca_pem: Option<String>,
}

impl Default for IpNotifyProfile {
    fn default() -> Self {
        Self {
            destinations: Vec::new(),
            protocol: IpNotifyProtocol::default(),
            method: "POST".to_string(),
            path: "/".to_string(),
            headers: BTreeMap::new(),
            username: None,
            password: None,
            body: DEFAULT_IP_NOTIFY_BODY.to_string(),
            content_type: DEFAULT_CONTENT_TYPE.to_string(),
            mode: DeliveryMode::default(),
            ca_pem: None,
        }
    }
}

/// Headers the HTTP sender sets itself; a profile may not override them.
const RESERVED_HEADERS: [&str; 4] = ["content-length", "transfer-encoding", "connection", "upgrade"];

impl IpNotifyProfile {
    /// Whether placeholder values must be JSON-escaped for this profile's body.
    pub fn body_is_json(&self) -> bool {
        self.content_type.to_ascii_lowercase().contains("json")
    }

    /// Checks the profile; `prefix` is the field path of the profile, e.g. `ip_notify.siem`.
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        let f = |name: &str| format!("{prefix}.{name}");
        if self.destinations.is_empty() {
            return Err(ValidationError::new(
                f("destinations"),
                ErrorCode::Required,
                "at least one destination is needed",
            ));
        }
        if self.destinations.len() > MAX_DESTINATIONS {
            return Err(ValidationError::new(
                f("destinations"),
                ErrorCode::TooMany,
                format!("at most {MAX_DESTINATIONS} destinations are allowed"),
            ));
        }
        for (i, d) in self.destinations.iter().enumerate() {
            HostPort::parse(d, None).map_err(|m| {
                ValidationError::new(f(&format!("destinations[{i}]")), ErrorCode::InvalidDestination, m)
            })?;
        }
        if self.method.is_empty()
            || self.method.len() > 16
            || !self.method.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(ValidationError::new(
                f("method"),
                ErrorCode::InvalidMethod,
                "the method must be an upper-case HTTP method such as POST, PUT or GET",
            ));
        }
        if !self.path.starts_with('/')
            || self.path.len() > 2048
            || self.path.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ValidationError::new(
                f("path"),
                ErrorCode::InvalidPath,
                "the path must start with / and contain no spaces or control characters (at most 2048 bytes)",
            ));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(ValidationError::new(
                f("headers"),
                ErrorCode::TooMany,
                format!("at most {MAX_HEADERS} headers are allowed"),
            ));
        }
        for (name, value) in &self.headers {
            let field = f(&format!("headers.{name}"));
            if name.is_empty() || name.len() > 64 || !name.bytes().all(is_token_byte) {
                return Err(ValidationError::new(
                    field,
                    ErrorCode::InvalidHeader,
                    "not a valid HTTP header name",
                ));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(ValidationError::new(
                    field,
                    ErrorCode::ReservedHeader,
                    format!("the header {name} is set by the device itself"),
                ));
            }
            if value.len() > 1024 || value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(ValidationError::new(
                    field,
                    ErrorCode::InvalidHeader,
                    "a header value must be one line of at most 1024 bytes",
                ));
            }
        }
        // Basic authentication cannot carry a ':' in the user name.
        check_credentials(prefix, self.username.as_deref(), self.password.as_ref(), true)?;
        check_text(&self.body, MAX_BODY_LEN, true)
            .map_err(|m| ValidationError::new(f("body"), ErrorCode::InvalidTemplate, m))?;
        if self.content_type.is_empty()
            || self.content_type.len() > 256
            || self.content_type.chars().any(char::is_control)
        {
            return Err(ValidationError::new(
                f("content_type"),
                ErrorCode::InvalidContentType,
                "the content type must be one line of at most 256 bytes",
            ));
        }
        check_ca_pem(self.ca_pem.as_deref())
            .map_err(|m| ValidationError::new(f("ca_pem"), ErrorCode::InvalidPem, m))
    }
}

/// How SIP messages travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SipTransport {
    /// SIP over UDP (the usual default of phones and PBXs).
    #[default]
    Udp,
    /// SIP over TCP.
    Tcp,
}

/// A phone profile: a SIP call that plays an audio message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct PhoneProfile {
    /// Whom to call: `sip:user@host[:port]`.
    pub uri: String,
    /// UDP or TCP.
    pub transport: SipTransport,
    /// Registrar/proxy `host[:port]`; when set, the device registers there
    /// and sends the call through it. Null calls the URI's host directly.
    pub registrar: Option<String>,
    /// Digest user name (and caller identity); null means no authentication.
    pub username: Option<String>,
    /// Digest password; never returned by API reads.
    #[schema(value_type = Option<String>)]
    pub password: Option<Secret>,
    /// Audio message: null plays a built-in tone sequence of about 3 s; else
    /// base64 of a PCM WAV file (8 or 16 bit, any rate, mono or stereo).
    pub audio: Option<String>,
    /// Seconds the call may ring before it counts as unanswered.
    pub ring_timeout_seconds: u32,
}

impl Default for PhoneProfile {
    fn default() -> Self {
        Self {
            uri: String::new(),
            transport: SipTransport::default(),
            registrar: None,
            username: None,
            password: None,
            audio: None,
            ring_timeout_seconds: 30,
        }
    }
}

impl PhoneProfile {
    /// Checks the profile; `prefix` is the field path of the profile, e.g. `phone.guard`.
    pub fn validate(&self, prefix: &str) -> Result<(), ValidationError> {
        let f = |name: &str| format!("{prefix}.{name}");
        SipUri::parse(&self.uri).map_err(|m| ValidationError::new(f("uri"), ErrorCode::InvalidUri, m))?;
        if let Some(registrar) = &self.registrar {
            HostPort::parse(registrar, Some(DEFAULT_SIP_PORT))
                .map_err(|m| ValidationError::new(f("registrar"), ErrorCode::InvalidHost, m))?;
        }
        check_credentials(prefix, self.username.as_deref(), self.password.as_ref(), false)?;
        if let Some(audio) = &self.audio {
            if audio.len() > MAX_AUDIO_LEN {
                return Err(ValidationError::new(
                    f("audio"),
                    ErrorCode::TooLarge,
                    format!("the audio may be at most {MAX_AUDIO_LEN} bytes of base64"),
                ));
            }
            if !audio.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=\r\n ".contains(&b)) {
                return Err(ValidationError::new(
                    f("audio"),
                    ErrorCode::InvalidAudio,
                    "the audio must be base64 of a WAV file",
                ));
            }
            // What the call will play: PCM of a supported format, 0-30 s.
            crate::audio::check(audio)
                .map_err(|m| ValidationError::new(f("audio"), ErrorCode::InvalidAudio, m))?;
        }
        let (lo, hi) = RING_TIMEOUT_RANGE;
        if !(lo..=hi).contains(&self.ring_timeout_seconds) {
            return Err(ValidationError::new(
                f("ring_timeout_seconds"),
                ErrorCode::OutOfRange,
                format!("the ring timeout must be between {lo} and {hi} seconds"),
            ));
        }
        Ok(())
    }
}

/// Every notification profile, by kind and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Profiles {
    /// E-mail profiles by name.
    pub email: BTreeMap<String, EmailProfile>,
    /// IP Notify profiles by name.
    pub ip_notify: BTreeMap<String, IpNotifyProfile>,
    /// Phone profiles by name.
    pub phone: BTreeMap<String, PhoneProfile>,
}

impl Profiles {
    /// Checks every profile and name; the first broken rule is returned.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_names("email", self.email.keys())?;
        check_names("ip_notify", self.ip_notify.keys())?;
        check_names("phone", self.phone.keys())?;
        for (name, p) in &self.email {
            p.validate(&format!("email.{name}"))?;
        }
        for (name, p) in &self.ip_notify {
            p.validate(&format!("ip_notify.{name}"))?;
        }
        for (name, p) in &self.phone {
            p.validate(&format!("phone.{name}"))?;
        }
        Ok(())
    }

    /// The names of the profiles, to check the settings' references against.
    pub fn names(&self) -> ProfileNames {
        ProfileNames {
            email: self.email.keys().cloned().collect(),
            phone: self.phone.keys().cloned().collect(),
            ip_notify: self.ip_notify.keys().cloned().collect(),
        }
    }

    /// A copy without secrets, for API reads and configuration downloads.
    pub fn redacted(&self) -> Self {
        let mut out = self.clone();
        out.email.values_mut().for_each(|p| p.password = None);
        out.ip_notify.values_mut().for_each(|p| p.password = None);
        out.phone.values_mut().for_each(|p| p.password = None);
        out
    }
}

/// `new` with each omitted password taken from the profile of the same kind
/// and name in `old`, so that a PUT of a redacted read keeps the secrets.
pub fn merge_secrets(mut new: Profiles, old: &Profiles) -> Profiles {
    fn keep<P>(
        new: &mut BTreeMap<String, P>,
        old: &BTreeMap<String, P>,
        secret: fn(&mut P) -> &mut Option<Secret>,
    ) where
        P: Clone,
    {
        for (name, p) in new.iter_mut() {
            if secret(p).is_none()
                && let Some(mut o) = old.get(name).cloned()
            {
                *secret(p) = secret(&mut o).take();
            }
        }
    }
    keep(&mut new.email, &old.email, |p| &mut p.password);
    keep(&mut new.ip_notify, &old.ip_notify, |p| &mut p.password);
    keep(&mut new.phone, &old.phone, |p| &mut p.password);
    new
}

/// Whether `name` is a valid profile name: 1-64 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn check_names<'a>(
    kind: &str,
    names: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), ValidationError> {
    if names.len() > MAX_PROFILES_PER_KIND {
        return Err(ValidationError::new(
            kind,
            ErrorCode::TooMany,
            format!("at most {MAX_PROFILES_PER_KIND} profiles of this kind are allowed"),
        ));
    }
    for name in names {
        if !is_valid_name(name) {
            return Err(ValidationError::new(
                kind,
                ErrorCode::InvalidName,
                format!(
                    "\"{}\" is not a valid profile name: use 1-{MAX_NAME_LEN} letters, digits, '.', '_' or '-'",
                    name.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

fn check_credentials(
    prefix: &str,
    username: Option<&str>,
    password: Option<&Secret>,
    basic: bool,
) -> Result<(), ValidationError> {
    if let Some(user) = username
        && (user.is_empty()
            || user.len() > MAX_CREDENTIAL_LEN
            || user.chars().any(char::is_control)
            || (basic && user.contains(':')))
    {
        return Err(ValidationError::new(
            format!("{prefix}.username"),
            ErrorCode::InvalidUsername,
            format!(
                "the user name must be 1-{MAX_CREDENTIAL_LEN} bytes without control characters{}",
                if basic { " or ':'" } else { "" }
            ),
        ));
    }
    if let Some(password) = password
        && (password.expose().len() > MAX_CREDENTIAL_LEN || password.expose().chars().any(char::is_control))
    {
        // The message never repeats the password.
        return Err(ValidationError::new(
            format!("{prefix}.password"),
            ErrorCode::InvalidPassword,
            format!("the password must be at most {MAX_CREDENTIAL_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

fn check_text(text: &str, max: usize, multiline: bool) -> Result<(), String> {
    if text.len() > max {
        return Err(format!("at most {max} bytes are allowed"));
    }
    if text.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t'))) {
        return Err(if multiline {
            "control characters other than line breaks and tabs are not allowed".to_string()
        } else {
            "must be one line without control characters".to_string()
        });
    }
    Ok(())
}

/// A profile's `ca_pem`, checked as the sender will take it: every
/// certificate usable as a trust anchor.
fn check_ca_pem(pem: Option<&str>) -> Result<(), String> {
    match pem {
        None => Ok(()),
        Some(p) => crate::trust::parse_ca_bundle(p, MAX_CA_PEM_LEN).map(|_| ()),
    }
}

/// A plausible e-mail address: `local@domain`, no spaces, brackets or control
/// characters. The SMTP client parses it again strictly.
fn check_address(addr: &str) -> Result<(), String> {
    let bad = || Err(format!("\"{}\" is not an e-mail address like name@example.com", addr.escape_debug()));
    if addr.len() > 254
        || addr.chars().any(|c| c.is_control() || c.is_whitespace() || "<>\",;()[]\\".contains(c))
    {
        return bad();
    }
    let Some((local, domain)) = addr.rsplit_once('@') else { return bad() };
    if local.is_empty() || local.len() > 64 || local.contains('@') || check_host(domain).is_err() {
        return bad();
    }
    Ok(())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A host name or IP address (IPv6 without brackets).
fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid { Ok(()) } else { Err(format!("\"{}\" is not a host name or IP address", host.escape_debug())) }
}

/// A `host:port` pair as operators write it (`[v6]:port` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, 1-65535.
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`; with `default_port`, a bare host is accepted too.
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<Self, String> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((host, after)) = rest.split_once(']') else {
                return Err(format!("\"{}\": missing ']' after the IPv6 address", text.escape_debug()));
            };
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(format!("\"{}\" is not an IPv6 address", host.escape_debug()));
            }
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("\"{}\" is not host:port", text.escape_debug())),
            }
        } else if text.parse::<Ipv6Addr>().is_ok() {
            (text, None)
        } else {
            match text.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        let port = match (port, default_port) {
            (Some(p), _) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(format!("\"{}\" is not a port (1-65535)", p.escape_debug())),
            },
            (None, Some(d)) => d,
            (None, None) => return Err(format!("\"{}\" needs a port: host:port", text.escape_debug())),
        };
        if !host.contains(':') {
            check_host(host)?;
        }
        Ok(Self { host: host.to_string(), port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed `sip:user@host[:port]` URI (no parameters, no `sips:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// The user part, if any.
    pub user: Option<String>,
    /// Host name or IP address, and port (5060 when absent).
    pub host_port: HostPort,
}

impl SipUri {
    /// Parses a SIP URI as a phone profile names it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let lower = text.get(..5).map(str::to_ascii_lowercase);
        if lower.as_deref() == Some("sips:") {
            return Err("sips: (SIP over TLS) is not supported; use sip: with UDP or TCP".to_string());
        }
        let Some(rest) =
            text.get(4..).filter(|_| text.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("sip:")))
        else {
            return Err(format!(
                "\"{}\" is not a SIP URI like sip:alarm@pbx.example.com",
                text.escape_debug()
            ));
        };
        if rest.contains([';', '?']) {
            return Err("URI parameters and headers are not supported; use the transport field".to_string());
        }
        let (user, host) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if let Some(u) = user
            && (u.is_empty()
                || u.len() > 64
                || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,%#".contains(&b)))
        {
            return Err(format!("\"{}\" is not a valid SIP user part", u.escape_debug()));
        }
        let host_port = HostPort::parse(host, Some(DEFAULT_SIP_PORT))?;
        Ok(Self { user: user.map(str::to_string), host_port })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(u) => write!(f, "sip:{u}@{}", self.host_port),
            None => write!(f, "sip:{}", self.host_port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> EmailProfile {
        EmailProfile {
            server: "mail.example.com".into(),
            from: "camera@example.com".into(),
            to: vec!["ops@example.com".into()],
            ..Default::default()
        }
    }

    fn ip_notify() -> IpNotifyProfile {
        IpNotifyProfile { destinations: vec!["10.0.0.5:8080".into()], ..Default::default() }
    }

    fn phone() -> PhoneProfile {
        PhoneProfile { uri: "sip:alarm@pbx.example.com".into(), ..Default::default() }
    }

    fn all() -> Profiles {
        let mut p = Profiles::default();
        p.email.insert("ops".into(), email());
        p.ip_notify.insert("siem".into(), ip_notify());
        p.phone.insert("guard".into(), phone());
        p
    }

    fn refused(p: &Profiles) -> ValidationError {
        match p.validate() {
            Err(e) => e,
            Ok(()) => panic!("expected a refusal for {p:?}"),
        }
    }

    #[test]
    fn field_names_and_defaults_are_as_in_issue_7() {
        let e: EmailProfile = serde_json::from_str(
            r#"{"server":"smtp.example.com","port":2525,"security":"tls","username":"u","password":"p",
                "from":"a@example.com","to":["b@example.com"],"subject":"s","body":"b"}"#,
        )
        .expect("email");
        assert_eq!(e.security, EmailSecurity::Tls);
        assert_eq!(e.password.as_ref().map(Secret::expose), Some("p"));
        let minimal: EmailProfile =
            serde_json::from_str(r#"{"server":"x","from":"a@b.c","to":["d@e.f"]}"#).expect("minimal email");
        assert_eq!(minimal.security, EmailSecurity::Starttls, "secure by default");
        assert_eq!(minimal.effective_port(), 587);
        assert_eq!(minimal.subject, DEFAULT_EMAIL_SUBJECT);

        let i: IpNotifyProfile = serde_json::from_str(
            r#"{"destinations":["a:1"],"protocol":"https","method":"PUT","path":"/x","body":"{}","mode":"next_on_error"}"#,
        )
        .expect("ip notify");
        assert_eq!((i.protocol, i.mode), (IpNotifyProtocol::Https, DeliveryMode::NextOnError));
        let i: IpNotifyProfile = serde_json::from_str(r#"{"destinations":["a:1"]}"#).expect("minimal");
        assert_eq!(
            (i.protocol, i.mode, i.method.as_str()),
            (IpNotifyProtocol::Http, DeliveryMode::Parallel, "POST")
        );
        assert!(i.body_is_json());

        let p: PhoneProfile = serde_json::from_str(
            r#"{"uri":"sip:a@b:5062","transport":"tcp","registrar":"pbx","username":"u","password":"p","audio":null}"#,
        )
        .expect("phone");
        assert_eq!(p.transport, SipTransport::Tcp);
        let json = serde_json::to_value(&p).expect("serialize");
        assert_eq!(json["password"], "p", "the store keeps secrets");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let mut e = email();
        e.password = Some(Secret::new("hunter2"));
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn valid_profiles_pass_and_names_are_listed() {
        let p = all();
        assert_eq!(p.validate(), Ok(()));
        let names = p.names();
        assert!(
            names.email.contains("ops") && names.ip_notify.contains("siem") && names.phone.contains("guard")
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let mut p = all();
        p.email.get_mut("ops").expect("ops").port = Some(0);
        assert_eq!(refused(&p).field, "email.ops.port");

        let mut p = all();
        p.email.get_mut("ops").expect("ops").to = vec![];
        assert_eq!(refused(&p).field, "email.ops.to");
        p.email.get_mut("ops").expect("ops").to = vec!["ok@example.com".into(), "not an address".into()];
        assert_eq!(refused(&p).field, "email.ops.to[1]");
        p.email.get_mut("ops").expect("ops").to = vec!["a@b@c".into()];
        assert_eq!(refused(&p).code, "invalid_address");

        let mut p = all();
        p.email.get_mut("ops").expect("ops").subject = "x\r\nBcc: victim@example.com".into();
        assert_eq!(refused(&p).field, "email.ops.subject");

        let mut p = all();
        p.email.get_mut("ops").expect("ops").ca_pem = Some("junk".into());
        assert_eq!(refused(&p).field, "email.ops.ca_pem");

        for bad in ["host", "host:0", "host:99999", ":80", "[::1", "a b:80"] {
            let mut p = all();
            p.ip_notify.get_mut("siem").expect("siem").destinations = vec![bad.into()];
            assert_eq!(refused(&p).field, "ip_notify.siem.destinations[0]", "{bad}");
        }
        let mut p = all();
        p.ip_notify.get_mut("siem").expect("siem").headers.insert("Content-Length".into(), "5".into());
        assert_eq!(refused(&p).code, "reserved_header");
        let mut p = all();
        p.ip_notify.get_mut("siem").expect("siem").headers.insert("X-A".into(), "a\nb".into());
        assert_eq!(refused(&p).field, "ip_notify.siem.headers.X-A");
        let mut p = all();
        p.ip_notify.get_mut("siem").expect("siem").username = Some("a:b".into());
        assert_eq!(refused(&p).field, "ip_notify.siem.username");
        let mut p = all();
        p.ip_notify.get_mut("siem").expect("siem").path = "no-slash".into();
        assert_eq!(refused(&p).field, "ip_notify.siem.path");
        let mut p = all();
        p.ip_notify.get_mut("siem").expect("siem").method = "post it".into();
        assert_eq!(refused(&p).field, "ip_notify.siem.method");

        for bad in ["alarm@pbx", "sips:a@b", "sip:", "sip:a@b:0", "sip:a@b;transport=tcp", "sip:a b@c"] {
            let mut p = all();
            p.phone.get_mut("guard").expect("guard").uri = bad.into();
            assert_eq!(refused(&p).field, "phone.guard.uri", "{bad}");
        }
        let mut p = all();
        p.phone.get_mut("guard").expect("guard").audio = Some("not base64!".into());
        assert_eq!(refused(&p).field, "phone.guard.audio");
        let mut p = all();
        p.phone.get_mut("guard").expect("guard").ring_timeout_seconds = 1;
        assert_eq!(refused(&p).field, "phone.guard.ring_timeout_seconds");
        let mut p = all();
        p.phone.get_mut("guard").expect("guard").password = Some(Secret::new("pw\nx"));
        let e = refused(&p);
        assert_eq!(e.field, "phone.guard.password");
        assert!(!e.message.contains("pw"), "the message must not repeat the password");
    }

    #[test]
    fn ca_and_audio_are_checked_as_the_senders_will_use_them() {
        // A BEGIN line is not enough: the block must be a certificate usable as a trust anchor.
        let mut p = all();
        let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        p.ip_notify.get_mut("siem").expect("siem").ca_pem = Some(not_der.into());
        let e = refused(&p);
        assert_eq!((e.field.as_str(), e.code), ("ip_notify.siem.ca_pem", ErrorCode::InvalidPem));
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let ca = rcgen::CertificateParams::new(vec!["ca.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("ca")
            .pem();
        p.ip_notify.get_mut("siem").expect("siem").ca_pem = Some(ca.clone());
        p.email.get_mut("ops").expect("ops").ca_pem = Some(ca);
        assert_eq!(p.validate(), Ok(()));

        // Base64 is not enough: it must be a WAV file the call can play.
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut p = all();
        p.phone.get_mut("guard").expect("guard").audio = Some(b64(b"not a wav file"));
        let e = refused(&p);
        assert_eq!((e.field.as_str(), e.code), ("phone.guard.audio", ErrorCode::InvalidAudio));
        let wav = |samples: usize| {
            let data = vec![0u8; samples * 2];
            let mut w = b"RIFF".to_vec();
            w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
            w.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0\x40\x1f\0\0\x80\x3e\0\0\x02\0\x10\0data");
            w.extend_from_slice(&(data.len() as u32).to_le_bytes());
            w.extend_from_slice(&data);
            b64(&w)
        };
        p.phone.get_mut("guard").expect("guard").audio = Some(wav(8000));
        assert_eq!(p.validate(), Ok(()));
        p.phone.get_mut("guard").expect("guard").audio = Some(wav(30 * 8000 + 1));
        assert!(refused(&p).message.contains("longer than 30 s"));
    }

    #[test]
    fn names_and_counts_are_bounded() {
        for bad in ["", "has space", "ünï", &"x".repeat(65), "a/b"] {
            let mut p = Profiles::default();
            p.email.insert(bad.to_string(), email());
            let e = refused(&p);
            assert_eq!((e.field.as_str(), e.code.as_str()), ("email", "invalid_name"), "{bad:?}");
        }
        assert!(is_valid_name("night-shift_2.ops"));
        let mut p = Profiles::default();
        for i in 0..=MAX_PROFILES_PER_KIND {
            p.phone.insert(format!("p{i}"), phone());
        }
        assert_eq!(refused(&p).code, "too_many");
    }

    #[test]
    fn host_port_and_sip_uri_parse() {
        assert_eq!(
            HostPort::parse("a.example:80", None),
            Ok(HostPort { host: "a.example".into(), port: 80 })
        );
        assert_eq!(HostPort::parse("[::1]:5060", None).map(|h| h.host), Ok("::1".into()));
        assert_eq!(HostPort::parse("::1", Some(5060)).map(|h| h.port), Ok(5060));
        assert_eq!(HostPort::parse("pbx", Some(5060)).map(|h| h.to_string()), Ok("pbx:5060".into()));
        assert!(HostPort::parse("pbx", None).is_err());
        let uri = SipUri::parse("sip:alarm@127.0.0.1:5070").expect("uri");
        assert_eq!(uri.user.as_deref(), Some("alarm"));
        assert_eq!(uri.host_port.port, 5070);
        assert_eq!(uri.to_string(), "sip:alarm@127.0.0.1:5070");
        assert_eq!(SipUri::parse("SIP:pbx.example").map(|u| u.host_port.port), Ok(5060));
        assert_eq!(SipUri::parse("sip:a@[::1]:5070").map(|u| u.to_string()), Ok("sip:a@[::1]:5070".into()));
    }

    #[test]
    fn redacted_drops_secrets_and_merge_keeps_them() {
        let mut stored = all();
        stored.email.get_mut("ops").expect("ops").password = Some(Secret::new("smtp-pw"));
        stored.phone.get_mut("guard").expect("guard").password = Some(Secret::new("sip-pw"));
        let read = stored.redacted();
        let json = serde_json::to_string(&read).expect("json");
        assert!(!json.contains("smtp-pw") && !json.contains("sip-pw"));

        // A PUT of what was read keeps the stored secrets ...
        let merged = merge_secrets(read.clone(), &stored);
        assert_eq!(merged, stored);
        // ... a new password replaces it, an empty one clears it.
        let mut put = read;
        put.email.get_mut("ops").expect("ops").password = Some(Secret::new("new"));
        put.phone.get_mut("guard").expect("guard").password = Some(Secret::new(""));
        let merged = merge_secrets(put, &stored);
        assert_eq!(merged.email["ops"].password.as_ref().map(Secret::expose), Some("new"));
        assert_eq!(merged.phone["guard"].password.as_ref().map(Secret::is_empty), Some(true));
        // A renamed profile does not inherit another's secret.
        let mut renamed = Profiles::default();
        renamed.email.insert("other".into(), email());
        assert_eq!(merge_secrets(renamed, &stored).email["other"].password, None);
    }
}

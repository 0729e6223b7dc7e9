//! The settings of the "Web Server" dialog (SPEC §1): typed, with factory
//! defaults and validation.

use crate::ErrorCode;
use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;

/// Port HTTP uses when `http_ports` is empty.
pub const DEFAULT_HTTP_PORT: u16 = 80;
/// Port HTTPS uses when `https_port` is null.
pub const DEFAULT_HTTPS_PORT: u16 = 443;
/// Fewest failed attempts the notification threshold may allow (as the seed).
pub const MIN_NOTIFICATION_THRESHOLD: u32 = 5;
/// Most HTTP ports one device may open; more is a typo, not a need.
pub const MAX_HTTP_PORTS: usize = 16;
/// Shortest grace period for confirming a change that could cut the operator off.
pub const MIN_CONFIRM_TIMEOUT_SECONDS: u32 = 30;
/// Longest grace period for confirming a change.
pub const MAX_CONFIRM_TIMEOUT_SECONDS: u32 = 3600;
/// Longest HSTS max-age accepted (two years, the preload lists' ceiling).
pub const MAX_HSTS_MAX_AGE_SECONDS: u32 = 63_072_000;

/// Ports Chromium and Firefox refuse to connect to ("unsafe ports"): a web
/// server there cannot be reached from a browser.
pub const BROWSER_UNSAFE_PORTS: &[u16] = &[
    1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104,
    109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515,
    526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049,
    3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
];
/// Longest block accepted, in seconds (one year).
pub const MAX_BLOCK_SECONDS: u32 = 365 * 24 * 3600;
/// Longest timeout and deadtime accepted, in minutes (one week).
pub const MAX_MINUTES: u32 = 7 * 24 * 60;

/// The settings of the "Web Server" dialog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct WebServerSettings {
    /// TCP ports for plain HTTP; an empty list means `[80]`. An entry is a
    /// port number (every address, admin allowed, redirect as
    /// `http_redirect_to_https`), or an object naming the port's addresses
    /// and policy: `{"port": 8080, "addresses": ["192.168.1.1"], "admin": true,
    /// "redirect_to_https": null}`.
    #[schema(value_type = Vec<HttpPortEntry>)]
    pub http_ports: Vec<HttpPort>,
    /// Whether plain HTTP is served on `http_ports`.
    pub http_enabled: bool,
    /// Whether HTTPS is served on `https_port`.
    pub https_enabled: bool,
    /// The one HTTPS port; null means 443.
    pub https_port: Option<u16>,
    /// Addresses the HTTPS port listens on (IPv4 or IPv6 literals); empty
    /// means every address (or those of `serve --listen`).
    pub https_addresses: Vec<String>,
    /// Whether the admin UI and API answer on the HTTPS port (else 403
    /// `admin_not_allowed`; the webroot and `/healthz` still answer).
    pub https_admin: bool,
    /// Password-guessing defence.
    pub intrusion_detection: IntrusionDetectionSettings,
    /// Seconds a change that could cut the operator off waits for confirmation
    /// before it is rolled back (30-3600; the value sent in a Set governs that Set).
    pub confirm_timeout_seconds: u32,
    /// Answer plain HTTP with a redirect (308) to the HTTPS port, except `/healthz`.
    pub http_redirect_to_https: bool,
    /// Send `Strict-Transport-Security` over HTTPS; only while a CA-signed
    /// certificate is in use (HSTS with a self-signed one locks browsers out).
    pub hsts_enabled: bool,
    /// HSTS `max-age`, in seconds.
    pub hsts_max_age_seconds: u32,
    /// Host names the device answers for besides its own (the certificate's
    /// names, its host name, `localhost`, any IP address): DNS names, or
    /// `*.example.com` for one level of subdomains. Requests naming another
    /// host (DNS rebinding) get 421 `host_not_allowed`.
    pub allowed_hosts: Vec<String>,
}

impl Default for WebServerSettings {
    fn default() -> Self {
        Self {
            http_ports: vec![HttpPort::from(DEFAULT_HTTP_PORT)],
            http_enabled: true,
            https_enabled: true,
            https_port: None,
            https_addresses: Vec::new(),
            https_admin: true,
            intrusion_detection: IntrusionDetectionSettings::default(),
            confirm_timeout_seconds: 120,
            http_redirect_to_https: false,
            hsts_enabled: false,
            // Six months: long enough to matter, short enough to recover from a mistake.
            hsts_max_age_seconds: 15_552_000,
            allowed_hosts: Vec::new(),
        }
    }
}

/// The intrusion detection part of the "Web Server" dialog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct IntrusionDetectionSettings {
    /// Whether failed logins are counted and alerted on.
    pub enabled: bool,
    /// Failed attempts allowed before an alert (minimum 5; the alert fires when exceeded).
    pub notification_threshold: u32,
    /// Minutes after which a client's failure count expires and logfile entries stop merging.
    pub timeout_minutes: u32,
    /// Minimum minutes between two alerts (global); 0 alerts on every failure past the threshold.
    pub deadtime_minutes: u32,
    /// Whether an attacker past the threshold is blocked by a temporary deny rule.
    pub block_ip: bool,
    /// Length of a block, in seconds; 0 blocks until the next reboot (the seed's way).
    pub block_duration_seconds: u32,
    /// Each repeat offence of a client the detector still remembers doubles
    /// its block (fail2ban's `bantime.increment`), up to `block_duration_max_seconds`.
    pub block_duration_increment: bool,
    /// Upper bound of a block grown by repeat offences, in seconds; 0 means
    /// [`MAX_BLOCK_SECONDS`] (one year).
    pub block_duration_max_seconds: u32,
    /// Blocks outlive a Reboot and a restart of the server (stored in the
    /// data folder), with their remaining time.
    pub blocks_survive_reboot: bool,
    /// Name of the e-mail profile alerted, if any.
    pub email_profile: Option<String>,
    /// Name of the phone profile alerted, if any.
    pub phone_profile: Option<String>,
    /// Name of the IP Notify profile alerted, if any.
    pub ip_notify_profile: Option<String>,
    /// Failed logins of one account (from any addresses) within
    /// `account_lockout_minutes` that lock its password logins for that
    /// long (its API tokens and the console keep working); 0: off.
    pub account_lockout_threshold: u32,
    /// Minutes a failure counts towards the account's lockout, and the lockout lasts.
    pub account_lockout_minutes: u32,
}

impl Default for IntrusionDetectionSettings {
    fn default() -> Self {
        Self {
            // On by default: security by default (SPEC §1).
            enabled: true,
            notification_threshold: 10,
            timeout_minutes: 60,
            deadtime_minutes: 60,
            block_ip: false,
            block_duration_seconds: 0,
            block_duration_increment: false,
            block_duration_max_seconds: 0,
            blocks_survive_reboot: false,
            email_profile: None,
            phone_profile: None,
            ip_notify_profile: None,
            // Off by default: see the constant for why.
            account_lockout_threshold: crate::account_lockout::DEFAULT_THRESHOLD,
            account_lockout_minutes: crate::account_lockout::DEFAULT_MINUTES,
        }
    }
}

/// How clients may authenticate, beyond HTTP Basic and the UI's login.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AuthenticationSettings {
    /// Accept HTTP Digest (RFC 7616, SHA-256 and MD5) from API clients. Off by
    /// default: it needs a password-equivalent hash per user on disk.
    pub digest: bool,
}

/// Static content served from the webroot folder (`serve --webroot DIR`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct WebrootSettings {
    /// Require a login for the static content. Off by default: the operator
    /// chose to publish the folder.
    pub login_required: bool,
}

/// Names of the notification profiles that exist, to check references against.
#[derive(Debug, Clone, Default)]
pub struct ProfileNames {
    /// E-mail profile names.
    pub email: BTreeSet<String>,
    /// Phone profile names.
    pub phone: BTreeSet<String>,
    /// IP Notify profile names.
    pub ip_notify: BTreeSet<String>,
}

/// One listener the settings ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
pub struct ListenerSpec {
    /// TCP port.
    pub port: u16,
    /// Whether the port speaks TLS.
    pub tls: bool,
}

/// Most addresses one port may name.
pub const MAX_ADDRESSES_PER_PORT: usize = 16;

/// One entry of `http_ports`: a port, the addresses it listens on, and its
/// policy. Written as a bare number when it names no address and keeps the
/// default policy, as an object otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPort {
    /// TCP port.
    pub port: u16,
    /// IPv4 or IPv6 literals to listen on; empty means every address (or
    /// those of `serve --listen`).
    pub addresses: Vec<String>,
    /// Redirect this port's plain HTTP to HTTPS; null follows `http_redirect_to_https`.
    pub redirect_to_https: Option<bool>,
    /// Whether the admin UI and API answer on this port.
    pub admin: bool,
}

impl From<u16> for HttpPort {
    fn from(port: u16) -> Self {
        Self { port, addresses: Vec::new(), redirect_to_https: None, admin: true }
    }
}

/// Lets tests and callers compare the ports with plain numbers.
impl PartialEq<u16> for HttpPort {
    fn eq(&self, other: &u16) -> bool {
        self.port == *other && self.is_plain()
    }
}

impl HttpPort {
    /// Whether the entry is a plain port number (every address, default policy).
    pub fn is_plain(&self) -> bool {
        self.addresses.is_empty() && self.redirect_to_https.is_none() && self.admin
    }
}

/// The object form of an [`HttpPort`], as the API's JSON writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HttpPortObject {
    /// TCP port.
    pub port: u16,
    /// IPv4 or IPv6 literals to listen on; empty or absent means every address.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Redirect this port's plain HTTP to HTTPS; null or absent follows `http_redirect_to_https`.
    #[serde(default)]
    pub redirect_to_https: Option<bool>,
    /// Whether the admin UI and API answer on this port (default true).
    #[serde(default = "yes")]
    pub admin: bool,
}

fn yes() -> bool {
    true
}

/// An entry of `http_ports` in the API's JSON (for the OpenAPI document):
/// a port number, or the object naming its addresses and policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum HttpPortEntry {
    /// A port on every address, with the default policy.
    Port(u16),
    /// A port with its addresses and policy.
    Object(HttpPortObject),
}

impl Serialize for HttpPort {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_plain() {
            return s.serialize_u16(self.port);
        }
        HttpPortObject {
            port: self.port,
            addresses: self.addresses.clone(),
            redirect_to_https: self.redirect_to_https,
            admin: self.admin,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for HttpPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HttpPort;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("u16")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HttpPort, E> {
                // The same words as a plain u16's refusal, which the API turns into
                // "70000 is out of range: give a whole number from 0 to 65535".
                u16::try_from(v)
                    .map(HttpPort::from)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HttpPort, E> {
                u16::try_from(v)
                    .map(HttpPort::from)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HttpPort, A::Error> {
                let o = HttpPortObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(HttpPort {
                    port: o.port,
                    addresses: o.addresses,
                    redirect_to_https: o.redirect_to_https,
                    admin: o.admin,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// What a port allows, from its entry of the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPolicy {
    /// Whether the admin UI and API answer there.
    pub admin: bool,
    /// Whether plain HTTP there is redirected to HTTPS.
    pub redirect_to_https: bool,
}

/// The listener a request came through: its port, protocol and the local
/// address the client connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via {
    /// The port and protocol.
    pub spec: ListenerSpec,
    /// The local address (IPv4-mapped IPv6 turned back into IPv4).
    pub local: IpAddr,
}

/// Parses and checks a port's address list: IP literals, none twice, no
/// wildcard beside an address of its family (the sockets would collide).
fn validate_addresses(field: &str, addresses: &[String]) -> Result<Vec<IpAddr>, ValidationError> {
    if addresses.len() > MAX_ADDRESSES_PER_PORT {
        return Err(ValidationError::new(
            field,
            ErrorCode::TooMany,
            format!("at most {MAX_ADDRESSES_PER_PORT} addresses per port"),
        ));
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for (i, text) in addresses.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let ip: IpAddr = text.trim().parse().map_err(|_| {
            ValidationError::new(
                &at,
                ErrorCode::InvalidAddress,
                format!("\"{text}\" is not an IP address; give an IPv4 or IPv6 literal such as 192.168.1.1 or fd00::1"),
            )
        })?;
        let ip = ip.to_canonical();
        if ip.is_multicast() {
            return Err(ValidationError::new(
                &at,
                ErrorCode::InvalidAddress,
                format!("{ip} is a multicast address; a server cannot listen on it"),
            ));
        }
        if out.contains(&ip) {
            return Err(ValidationError::new(&at, ErrorCode::Duplicate, format!("{ip} is listed twice")));
        }
        if let Some(other) =
            out.iter().find(|o| o.is_ipv4() == ip.is_ipv4() && (o.is_unspecified() || ip.is_unspecified()))
        {
            return Err(ValidationError::new(
                &at,
                ErrorCode::Duplicate,
                format!(
                    "{ip} and {other} overlap: an unspecified address already means every address of its family"
                ),
            ));
        }
        out.push(ip);
    }
    Ok(out)
}

/// Whether a listener bound to `addresses` (empty: every address) accepts
/// connections to `local`.
fn covers(addresses: &[IpAddr], local: IpAddr) -> bool {
    addresses.is_empty()
        || addresses.iter().any(|a| *a == local || (a.is_unspecified() && a.is_ipv4() == local.is_ipv4()))
}

impl WebServerSettings {
    /// The HTTP ports in effect (`[80]` when the list is empty).
    pub fn effective_http_ports(&self) -> Vec<u16> {
        self.effective_http_entries().into_iter().map(|p| p.port).collect()
    }

    /// The HTTP port entries in effect (`[80]` when the list is empty).
    pub fn effective_http_entries(&self) -> Vec<HttpPort> {
        if self.http_ports.is_empty() {
            vec![HttpPort::from(DEFAULT_HTTP_PORT)]
        } else {
            self.http_ports.clone()
        }
    }

    /// The listeners these settings open with the addresses each binds
    /// (empty: every address, or those of `serve --listen`), sorted by port.
    /// Addresses that do not parse are left out: validation refuses them first.
    pub fn bindings(&self) -> Vec<(ListenerSpec, Vec<IpAddr>)> {
        let parse = |list: &[String]| -> Vec<IpAddr> {
            list.iter().filter_map(|a| a.trim().parse::<IpAddr>().ok()).map(|a| a.to_canonical()).collect()
        };
        let mut out = Vec::new();
        if self.http_enabled {
            out.extend(
                self.effective_http_entries()
                    .iter()
                    .map(|p| (ListenerSpec { port: p.port, tls: false }, parse(&p.addresses))),
            );
        }
        if self.https_enabled {
            out.push((
                ListenerSpec { port: self.effective_https_port(), tls: true },
                parse(&self.https_addresses),
            ));
        }
        out.sort();
        out
    }

    /// What the listener `spec` allows (a listener these settings do not
    /// open gets the default policy: it is one a provisional change keeps).
    pub fn port_policy(&self, spec: ListenerSpec) -> PortPolicy {
        if spec.tls {
            let admin = self.https_admin || spec.port != self.effective_https_port();
            return PortPolicy { admin, redirect_to_https: false };
        }
        // Looked up on every request: no copy of the list (an empty list's
        // port 80 has the default policy, as an unknown port).
        match self.http_ports.iter().find(|p| p.port == spec.port) {
            Some(p) => PortPolicy {
                admin: p.admin,
                redirect_to_https: p.redirect_to_https.unwrap_or(self.http_redirect_to_https),
            },
            None => PortPolicy { admin: true, redirect_to_https: self.http_redirect_to_https },
        }
    }

    /// Whether an administrator connected through `via` keeps reaching the
    /// admin UI and API under these settings: the listener stays, still
    /// binds the address they connected to, and still allows admin.
    pub fn keeps_admin(&self, via: Via) -> bool {
        self.bindings().iter().any(|(spec, addresses)| *spec == via.spec && covers(addresses, via.local))
            && self.port_policy(via.spec).admin
    }

    /// The HTTPS port in effect (443 when unset).
    pub fn effective_https_port(&self) -> u16 {
        self.https_port.unwrap_or(DEFAULT_HTTPS_PORT)
    }

    /// The listeners these settings open, sorted by port.
    pub fn listeners(&self) -> Vec<ListenerSpec> {
        let mut out = Vec::new();
        if self.http_enabled {
            out.extend(self.effective_http_ports().into_iter().map(|port| ListenerSpec { port, tls: false }));
        }
        if self.https_enabled {
            out.push(ListenerSpec { port: self.effective_https_port(), tls: true });
        }
        out.sort();
        out
    }

    /// Checks every rule of SPEC §1; the first broken rule is returned.
    pub fn validate(&self, profiles: &ProfileNames) -> Result<(), ValidationError> {
        if !self.http_enabled && !self.https_enabled {
            return Err(ValidationError::new(
                "https_enabled",
                ErrorCode::NoListener,
                "HTTP and HTTPS cannot both be disabled: the device would accept no connections",
            ));
        }
        if self.http_ports.len() > MAX_HTTP_PORTS {
            return Err(ValidationError::new(
                "http_ports",
                ErrorCode::TooMany,
                format!("at most {MAX_HTTP_PORTS} HTTP ports may be configured"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, entry) in self.http_ports.iter().enumerate() {
            let port = &entry.port;
            if *port == 0 {
                return Err(ValidationError::new(
                    format!("http_ports[{i}]"),
                    ErrorCode::OutOfRange,
                    "port 0 is not a valid port; use 1-65535",
                ));
            }
            if !seen.insert(*port) {
                return Err(ValidationError::new(
                    format!("http_ports[{i}]"),
                    ErrorCode::Duplicate,
                    format!("port {port} is listed twice"),
                ));
            }
            validate_addresses(&format!("http_ports[{i}].addresses"), &entry.addresses)?;
            if entry.redirect_to_https == Some(true) && !(self.https_enabled && self.http_enabled) {
                return Err(ValidationError::new(
                    format!("http_ports[{i}].redirect_to_https"),
                    ErrorCode::NeedsHttps,
                    "the redirect to HTTPS needs both HTTP and HTTPS enabled",
                ));
            }
        }
        validate_addresses("https_addresses", &self.https_addresses)?;
        if self.https_port == Some(0) {
            return Err(ValidationError::new(
                "https_port",
                ErrorCode::OutOfRange,
                "port 0 is not a valid port; use 1-65535",
            ));
        }
        if self.http_enabled && self.https_enabled {
            let https = self.effective_https_port();
            if let Some(i) = self.effective_http_ports().iter().position(|p| *p == https) {
                let field = if self.http_ports.is_empty() {
                    "http_ports".to_string()
                } else {
                    format!("http_ports[{i}]")
                };
                return Err(ValidationError::new(
                    field,
                    ErrorCode::PortConflict,
                    format!(
                        "port {https} is already the HTTPS port; a port can serve HTTP or HTTPS, not both"
                    ),
                ));
            }
        }
        if !(MIN_CONFIRM_TIMEOUT_SECONDS..=MAX_CONFIRM_TIMEOUT_SECONDS)
            .contains(&self.confirm_timeout_seconds)
        {
            return Err(ValidationError::new(
                "confirm_timeout_seconds",
                ErrorCode::OutOfRange,
                format!(
                    "the confirmation grace period must be between {MIN_CONFIRM_TIMEOUT_SECONDS} and {MAX_CONFIRM_TIMEOUT_SECONDS} seconds"
                ),
            ));
        }
        if self.http_redirect_to_https && !(self.https_enabled && self.http_enabled) {
            return Err(ValidationError::new(
                "http_redirect_to_https",
                ErrorCode::NeedsHttps,
                "the redirect to HTTPS needs both HTTP and HTTPS enabled",
            ));
        }
        self.validate_admin_reachable()?;
        if self.hsts_max_age_seconds > MAX_HSTS_MAX_AGE_SECONDS {
            return Err(ValidationError::new(
                "hsts_max_age_seconds",
                ErrorCode::OutOfRange,
                format!("the HSTS max-age is at most {MAX_HSTS_MAX_AGE_SECONDS} seconds (two years)"),
            ));
        }
        if self.hsts_enabled && !self.https_enabled {
            return Err(ValidationError::new(
                "hsts_enabled",
                ErrorCode::NeedsHttps,
                "HSTS needs HTTPS enabled",
            ));
        }
        crate::hosts::validate_allowed_hosts(&self.allowed_hosts)?;
        self.intrusion_detection.validate(profiles)
    }

    /// Refuses settings under which no port answers the admin UI and API:
    /// nobody could change them back but from the command line. A port that
    /// redirects to HTTPS counts as reaching the HTTPS port.
    fn validate_admin_reachable(&self) -> Result<(), ValidationError> {
        let https_admin = self.https_enabled && self.https_admin;
        let http_admin = self.http_enabled
            && self
                .effective_http_entries()
                .iter()
                .any(|p| p.admin && !p.redirect_to_https.unwrap_or(self.http_redirect_to_https));
        if https_admin || http_admin {
            return Ok(());
        }
        let field = if self.https_enabled { "https_admin" } else { "http_ports" };
        Err(ValidationError::new(
            field,
            ErrorCode::NoAdminPort,
            "no port would answer the admin UI and API: allow admin on at least one port that does not redirect to HTTPS",
        ))
    }

    /// Things that are allowed but probably not meant: ports browsers refuse,
    /// privileged ports.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in self.listeners() {
            let proto = if l.tls { "HTTPS" } else { "HTTP" };
            if BROWSER_UNSAFE_PORTS.contains(&l.port) {
                out.push(format!(
                    "{proto} port {} is on the browsers' list of unsafe ports: Chrome and Firefox will refuse to open it",
                    l.port
                ));
            }
        }
        out
    }
}

impl IntrusionDetectionSettings {
    /// How long the `offence`-th block of one client lasts (1 = its first),
    /// or `None` for a block until reboot.
    pub fn block_length(&self, offence: u32) -> Option<std::time::Duration> {
        if self.block_duration_seconds == 0 {
            return None;
        }
        let max = if self.block_duration_max_seconds == 0 {
            MAX_BLOCK_SECONDS
        } else {
            self.block_duration_max_seconds
        };
        let base = u64::from(self.block_duration_seconds);
        let seconds = if self.block_duration_increment {
            let doublings = offence.saturating_sub(1).min(40);
            base.saturating_mul(1u64 << doublings)
        } else {
            base
        };
        Some(std::time::Duration::from_secs(seconds.min(u64::from(max.max(self.block_duration_seconds)))))
    }

    /// Checks the intrusion detection rules of SPEC §1.
    pub fn validate(&self, profiles: &ProfileNames) -> Result<(), ValidationError> {
        let field = |name: &str| format!("intrusion_detection.{name}");
        if self.notification_threshold < MIN_NOTIFICATION_THRESHOLD {
            return Err(ValidationError::new(
                field("notification_threshold"),
                ErrorCode::OutOfRange,
                format!("the notification threshold must be at least {MIN_NOTIFICATION_THRESHOLD}"),
            ));
        }
        if self.timeout_minutes == 0 || self.timeout_minutes > MAX_MINUTES {
            return Err(ValidationError::new(
                field("timeout_minutes"),
                ErrorCode::OutOfRange,
                format!("the timeout must be between 1 and {MAX_MINUTES} minutes"),
            ));
        }
        use crate::account_lockout::{MAX_THRESHOLD, MIN_THRESHOLD};
        let t = self.account_lockout_threshold;
        if t != 0 && !(MIN_THRESHOLD..=MAX_THRESHOLD).contains(&t) {
            return Err(ValidationError::new(
                field("account_lockout_threshold"),
                ErrorCode::OutOfRange,
                format!("the account lockout threshold is 0 (off) or {MIN_THRESHOLD} to {MAX_THRESHOLD}"),
            ));
        }
        if self.account_lockout_minutes == 0 || self.account_lockout_minutes > MAX_MINUTES {
            return Err(ValidationError::new(
                field("account_lockout_minutes"),
                ErrorCode::OutOfRange,
                format!("the account lockout lasts between 1 and {MAX_MINUTES} minutes"),
            ));
        }
        if self.deadtime_minutes > MAX_MINUTES {
            return Err(ValidationError::new(
                field("deadtime_minutes"),
                ErrorCode::OutOfRange,
                format!("the deadtime must be between 0 and {MAX_MINUTES} minutes"),
            ));
        }
        if self.block_duration_seconds > MAX_BLOCK_SECONDS {
            return Err(ValidationError::new(
                field("block_duration_seconds"),
                ErrorCode::OutOfRange,
                format!(
                    "a block lasts at most {MAX_BLOCK_SECONDS} seconds (one year); 0 blocks until reboot"
                ),
            ));
        }
        if self.block_duration_max_seconds > MAX_BLOCK_SECONDS
            || (self.block_duration_max_seconds != 0
                && self.block_duration_max_seconds < self.block_duration_seconds)
        {
            return Err(ValidationError::new(
                field("block_duration_max_seconds"),
                ErrorCode::OutOfRange,
                format!(
                    "the upper bound must be 0 (one year) or between block_duration_seconds and {MAX_BLOCK_SECONDS} seconds"
                ),
            ));
        }
        let refs = [
            ("email_profile", &self.email_profile, &profiles.email, "e-mail"),
            ("phone_profile", &self.phone_profile, &profiles.phone, "phone"),
            ("ip_notify_profile", &self.ip_notify_profile, &profiles.ip_notify, "IP Notify"),
        ];
        for (name, value, known, kind) in refs {
            if let Some(profile) = value
                && !known.contains(profile)
            {
                return Err(ValidationError::new(
                    field(name),
                    ErrorCode::UnknownProfile,
                    format!("there is no {kind} profile named \"{profile}\""),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &WebServerSettings) -> ValidationError {
        match s.validate(&ProfileNames::default()) {
            Err(e) => e,
            Ok(()) => panic!("expected a refusal for {s:?}"),
        }
    }

    #[test]
    fn factory_defaults_are_valid_and_as_specified() {
        let s = WebServerSettings::default();
        assert_eq!(s.validate(&ProfileNames::default()), Ok(()));
        assert_eq!(
            s.listeners(),
            vec![ListenerSpec { port: 80, tls: false }, ListenerSpec { port: 443, tls: true }]
        );
        assert_eq!(s.intrusion_detection.notification_threshold, 10);
        assert!(s.intrusion_detection.enabled);
        assert_eq!(
            (s.intrusion_detection.account_lockout_threshold, s.intrusion_detection.account_lockout_minutes),
            (0, 15)
        );
    }

    #[test]
    fn empty_port_list_means_80() {
        let s = WebServerSettings { http_ports: vec![], ..Default::default() };
        assert_eq!(s.effective_http_ports(), vec![80]);
        assert!(s.validate(&ProfileNames::default()).is_ok());
    }

    #[test]
    fn refusals() {
        let both_off = WebServerSettings { http_enabled: false, https_enabled: false, ..Default::default() };
        assert_eq!(refused(&both_off).code, "no_listener");
        let dup =
            WebServerSettings { http_ports: vec![80.into(), 8080.into(), 80.into()], ..Default::default() };
        assert_eq!(refused(&dup).field, "http_ports[2]");
        let conflict =
            WebServerSettings { http_ports: vec![8443.into()], https_port: Some(8443), ..Default::default() };
        assert_eq!(refused(&conflict).code, "port_conflict");
        let implicit_conflict = WebServerSettings { http_ports: vec![443.into()], ..Default::default() };
        assert_eq!(refused(&implicit_conflict).code, "port_conflict");
        let zero = WebServerSettings { http_ports: vec![0.into()], ..Default::default() };
        assert_eq!(refused(&zero).code, "out_of_range");
        let zero_tls = WebServerSettings { https_port: Some(0), ..Default::default() };
        assert_eq!(refused(&zero_tls).field, "https_port");
        let mut low = WebServerSettings::default();
        low.intrusion_detection.notification_threshold = 4;
        assert_eq!(refused(&low).field, "intrusion_detection.notification_threshold");
        for (threshold, minutes, field) in [
            (4, 15, "intrusion_detection.account_lockout_threshold"),
            (100_001, 15, "intrusion_detection.account_lockout_threshold"),
            (20, 0, "intrusion_detection.account_lockout_minutes"),
        ] {
            let mut c = WebServerSettings::default();
            c.intrusion_detection.account_lockout_threshold = threshold;
            c.intrusion_detection.account_lockout_minutes = minutes;
            assert_eq!(refused(&c).field, field);
        }
        let mut off = WebServerSettings::default();
        off.intrusion_detection.account_lockout_threshold = 0;
        assert!(off.validate(&ProfileNames::default()).is_ok(), "0 switches it off");
        let mut unknown = WebServerSettings::default();
        unknown.intrusion_detection.email_profile = Some("ops".into());
        assert_eq!(refused(&unknown).code, "unknown_profile");
        let host =
            WebServerSettings { allowed_hosts: vec!["https://cam.example".into()], ..Default::default() };
        assert_eq!(
            (refused(&host).field.as_str(), refused(&host).code.as_str()),
            ("allowed_hosts[0]", "invalid_host")
        );
    }

    #[test]
    fn https_port_may_equal_an_http_port_only_while_one_is_off() {
        let s =
            WebServerSettings { http_ports: vec![443.into()], https_enabled: false, ..Default::default() };
        assert!(s.validate(&ProfileNames::default()).is_ok());
    }

    #[test]
    fn live_apply_settings() {
        let mut s = WebServerSettings { confirm_timeout_seconds: 29, ..Default::default() };
        assert_eq!(refused(&s).field, "confirm_timeout_seconds");
        s.confirm_timeout_seconds = 30;
        assert!(s.validate(&ProfileNames::default()).is_ok());
        s.https_enabled = false;
        s.http_redirect_to_https = true;
        assert_eq!(refused(&s).code, "needs_https");
        let unsafe_port = WebServerSettings { http_ports: vec![6000.into()], ..Default::default() };
        assert_eq!(unsafe_port.warnings().len(), 1);
        assert!(WebServerSettings::default().warnings().is_empty());
    }

    #[test]
    fn threshold_five_is_the_minimum() {
        let mut s = WebServerSettings::default();
        s.intrusion_detection.notification_threshold = 5;
        assert!(s.validate(&ProfileNames::default()).is_ok());
    }

    fn parse(json: &str) -> Result<WebServerSettings, ValidationError> {
        let s: WebServerSettings = crate::config::parse_input(json.as_bytes())?;
        s.validate(&ProfileNames::default()).map(|()| s)
    }

    #[test]
    fn a_port_entry_is_a_number_or_an_object_and_plain_ones_stay_numbers() {
        let s = parse(
            r#"{"http_ports": [8080, {"port": 8081, "addresses": ["127.0.0.2", "::1"], "admin": false, "redirect_to_https": true}]}"#,
        )
        .expect("valid");
        assert_eq!(s.http_ports[0], 8080);
        assert_eq!(s.http_ports[1].addresses, vec!["127.0.0.2".to_string(), "::1".to_string()]);
        let json = serde_json::to_value(&s).expect("serialises");
        assert_eq!(
            json["http_ports"],
            serde_json::json!([8080, {"port": 8081, "addresses": ["127.0.0.2", "::1"], "redirect_to_https": true, "admin": false}])
        );
        // An object with nothing of its own is written back as the bare number.
        let s = parse(r#"{"http_ports": [{"port": 8082}]}"#).expect("valid");
        assert_eq!(serde_json::to_value(&s).expect("serialises")["http_ports"], serde_json::json!([8082]));
        let l = ListenerSpec { port: 8081, tls: false };
        let s = parse(r#"{"http_ports": [8080, {"port": 8081, "admin": false, "redirect_to_https": true}]}"#)
            .expect("valid");
        assert_eq!(s.port_policy(l), PortPolicy { admin: false, redirect_to_https: true });
        assert_eq!(
            s.port_policy(ListenerSpec { port: 8080, tls: false }),
            PortPolicy { admin: true, redirect_to_https: false }
        );
    }

    #[test]
    fn bad_entries_are_refused_with_their_path() {
        let cases = [
            (
                r#"{"http_ports": [80, {"port": 81, "addresses": ["nope"]}]}"#,
                "http_ports[1].addresses[0]",
                "invalid_address",
            ),
            (
                r#"{"http_ports": [{"port": 81, "addresses": ["10.0.0.1", "10.0.0.1"]}]}"#,
                "http_ports[0].addresses[1]",
                "duplicate",
            ),
            (
                r#"{"http_ports": [{"port": 81, "addresses": ["0.0.0.0", "10.0.0.1"]}]}"#,
                "http_ports[0].addresses[1]",
                "duplicate",
            ),
            (
                r#"{"http_ports": [{"port": 81, "addresses": ["224.0.0.1"]}]}"#,
                "http_ports[0].addresses[0]",
                "invalid_address",
            ),
            (
                r#"{"http_ports": [81, {"port": 81, "addresses": ["10.0.0.1"]}]}"#,
                "http_ports[1]",
                "duplicate",
            ),
            (
                r#"{"http_ports": [{"port": 443, "addresses": ["10.0.0.1"]}]}"#,
                "http_ports[0]",
                "port_conflict",
            ),
            (r#"{"http_ports": [{"port": 70000}]}"#, "http_ports[0].port", "invalid_value"),
            (r#"{"http_ports": [{"addresses": []}]}"#, "http_ports[0].port", "required"),
            (r#"{"http_ports": [{"port": 81, "colour": "red"}]}"#, "http_ports.0.colour", "unknown_field"),
            (r#"{"https_addresses": ["::1", "::1"]}"#, "https_addresses[1]", "duplicate"),
            (
                r#"{"https_enabled": false, "http_ports": [{"port": 81, "redirect_to_https": true}]}"#,
                "http_ports[0].redirect_to_https",
                "needs_https",
            ),
            (
                r#"{"https_admin": false, "http_ports": [{"port": 81, "admin": false}]}"#,
                "https_admin",
                "no_admin_port",
            ),
            (r#"{"https_admin": false, "http_redirect_to_https": true}"#, "https_admin", "no_admin_port"),
        ];
        for (json, field, code) in cases {
            let e = parse(json).expect_err(json);
            assert_eq!((e.field.as_str(), e.code.as_str()), (field, code), "{json}: {}", e.message);
        }
    }

    #[test]
    fn keeps_admin_follows_the_listener_its_address_and_its_policy() {
        let lan: IpAddr = "127.0.0.2".parse().expect("ip");
        let wan: IpAddr = "127.0.0.3".parse().expect("ip");
        let via = |port, local| Via { spec: ListenerSpec { port, tls: false }, local };
        let s = parse(
            r#"{"http_ports": [{"port": 8080, "addresses": ["127.0.0.2"]}, {"port": 8081, "admin": false}]}"#,
        )
        .expect("valid");
        assert!(s.keeps_admin(via(8080, lan)));
        assert!(!s.keeps_admin(via(8080, wan)), "8080 no longer binds 127.0.0.3");
        assert!(!s.keeps_admin(via(8081, lan)), "8081 refuses admin");
        assert!(!s.keeps_admin(via(8082, lan)), "8082 is not open");
        let any = parse(r#"{"http_ports": [{"port": 8080, "addresses": ["0.0.0.0"]}]}"#).expect("valid");
        assert!(any.keeps_admin(via(8080, wan)));
        assert_eq!(
            any.bindings(),
            vec![
                (ListenerSpec { port: 443, tls: true }, vec![]),
                (ListenerSpec { port: 8080, tls: false }, vec![IpAddr::from([0, 0, 0, 0])])
            ]
        );
    }
}

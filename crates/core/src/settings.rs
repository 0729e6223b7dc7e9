//! The settings of the "Web Server" dialog (SPEC §1): typed, with factory
//! defaults and validation.

use crate::ErrorCode;
use std::collections::BTreeSet;

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
/// Longest timeout and deadtime accepted, in minutes (one week).
pub const MAX_MINUTES: u32 = 7 * 24 * 60;

/// The settings of the "Web Server" dialog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct WebServerSettings {
    /// TCP ports for plain HTTP; an empty list means `[80]`.
    pub http_ports: Vec<u16>,
    /// Whether plain HTTP is served on `http_ports`.
    pub http_enabled: bool,
    /// Whether HTTPS is served on `https_port`.
    pub https_enabled: bool,
    /// The one HTTPS port; null means 443.
    pub https_port: Option<u16>,
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
            http_ports: vec![DEFAULT_HTTP_PORT],
            http_enabled: true,
            https_enabled: true,
            https_port: None,
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

impl WebServerSettings {
    /// The HTTP ports in effect (`[80]` when the list is empty).
    pub fn effective_http_ports(&self) -> Vec<u16> {
        if self.http_ports.is_empty() { vec![DEFAULT_HTTP_PORT] } else { self.http_ports.clone() }
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
        for (i, port) in self.http_ports.iter().enumerate() {
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
        }
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
        let dup = WebServerSettings { http_ports: vec![80, 8080, 80], ..Default::default() };
        assert_eq!(refused(&dup).field, "http_ports[2]");
        let conflict =
            WebServerSettings { http_ports: vec![8443], https_port: Some(8443), ..Default::default() };
        assert_eq!(refused(&conflict).code, "port_conflict");
        let implicit_conflict = WebServerSettings { http_ports: vec![443], ..Default::default() };
        assert_eq!(refused(&implicit_conflict).code, "port_conflict");
        let zero = WebServerSettings { http_ports: vec![0], ..Default::default() };
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
        let s = WebServerSettings { http_ports: vec![443], https_enabled: false, ..Default::default() };
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
        let unsafe_port = WebServerSettings { http_ports: vec![6000], ..Default::default() };
        assert_eq!(unsafe_port.warnings().len(), 1);
        assert!(WebServerSettings::default().warnings().is_empty());
    }

    #[test]
    fn threshold_five_is_the_minimum() {
        let mut s = WebServerSettings::default();
        s.intrusion_detection.notification_threshold = 5;
        assert!(s.validate(&ProfileNames::default()).is_ok());
    }
}

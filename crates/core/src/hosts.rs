//! Which host names the device answers for (the `Host` allow-list), against
//! DNS rebinding: a page on a name its attacker controls, resolved to the
//! device's address, makes the victim's browser send requests that are
//! same-origin for that page. The browser says which name it resolved in
//! `Host`, so the device answers only for its own names.
//!
//! Its own names: the names of the certificate in use, the configured
//! `allowed_hosts`, the device's host name, `localhost`, and every IP literal.
//! An IP literal can be accepted whatever it is: a browser never resolves it,
//! so no rebound name can arrive as one (and a device behind NAT or a port
//! forward is reached by an address it does not have).

use std::net::IpAddr;

use crate::{ErrorCode, ValidationError};

/// Most entries `allowed_hosts` may hold.
pub const MAX_ALLOWED_HOSTS: usize = 64;
/// Longest DNS name (RFC 1035).
const MAX_NAME_LEN: usize = 253;

/// The host a request names, from its `Host` header or `:authority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestHost<'a> {
    /// An IP literal (IPv6 in brackets in the header).
    Ip(IpAddr),
    /// A name, port and a final dot removed (case as sent).
    Name(&'a str),
    /// Not a host at all (empty, a bracket without its pair, a bad port).
    Invalid,
}

/// Splits `authority` (`host`, `host:port`, `[v6]`, `[v6]:port`) into the host.
pub fn request_host(authority: &str) -> RequestHost<'_> {
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return RequestHost::Invalid };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(ip) if port_ok => RequestHost::Ip(IpAddr::V6(ip)),
            _ => RequestHost::Invalid,
        };
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if valid_port(port) => host,
        Some(_) => return RequestHost::Invalid,
        None => authority,
    };
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return RequestHost::Ip(IpAddr::V4(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return RequestHost::Invalid;
    }
    RequestHost::Name(name)
}

fn valid_port(p: &str) -> bool {
    // An empty port is allowed by RFC 3986 (`host:`).
    p.is_empty() || (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` (as sent) matches `pattern` (lower case: a name, or
/// `*.suffix` for exactly one more label, as in certificates).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            name.len() > suffix.len() + 1 && {
                let (label, rest) = name.split_at(name.len() - suffix.len());
                rest.eq_ignore_ascii_case(suffix)
                    && label.ends_with('.')
                    && !label[..label.len() - 1].contains('.')
            }
        }
        None => pattern.eq_ignore_ascii_case(name),
    }
}

/// The names the device answers for besides IP literals, fixed while it runs
/// (`localhost` and its host name); the certificate's and the configured ones
/// are passed to [`HostNames::allows`] as they are now.
#[derive(Debug, Clone, Default)]
pub struct HostNames {
    own: Vec<String>,
}

impl HostNames {
    /// `localhost` and the device's host name(s) (lower case).
    pub fn new(host_names: &[String]) -> Self {
        let mut own = vec!["localhost".to_string()];
        own.extend(
            host_names.iter().map(|n| n.trim_end_matches('.').to_ascii_lowercase()).filter(|n| !n.is_empty()),
        );
        own.sort();
        own.dedup();
        Self { own }
    }

    /// Whether a request whose `Host` (or `:authority`) is `authority` is for
    /// this device: an IP literal, or a name among its own, `certificate`'s
    /// (DNS names, wildcards allowed) or `configured` (`allowed_hosts`).
    pub fn allows(&self, authority: &str, certificate: &[String], configured: &[String]) -> bool {
        match request_host(authority) {
            RequestHost::Ip(_) => true,
            RequestHost::Invalid => false,
            RequestHost::Name(name) => self.allows_name(name, certificate, configured),
        }
    }

    /// Whether `name` (a [`RequestHost::Name`]) is one of the device's own,
    /// `certificate`'s or `configured`.
    pub fn allows_name(&self, name: &str, certificate: &[String], configured: &[String]) -> bool {
        self.own.iter().chain(certificate).chain(configured).any(|pattern| name_matches(pattern, name))
    }
}

/// Checks the `allowed_hosts` setting: DNS names (or `*.` and a name, for
/// its subdomains) or IP literals, without scheme, port or path; no
/// duplicates; at most [`MAX_ALLOWED_HOSTS`].
pub fn validate_allowed_hosts(hosts: &[String]) -> Result<(), ValidationError> {
    if hosts.len() > MAX_ALLOWED_HOSTS {
        return Err(ValidationError::new(
            "allowed_hosts",
            ErrorCode::TooMany,
            format!("at most {MAX_ALLOWED_HOSTS} host names may be allowed"),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, entry) in hosts.iter().enumerate() {
        let field = format!("allowed_hosts[{i}]");
        if entry.parse::<IpAddr>().is_err() && !valid_pattern(entry) {
            return Err(ValidationError::new(
                field,
                ErrorCode::InvalidHost,
                format!(
                    "{:?} is not a host name: give a DNS name such as camera.example.com (or *.example.com for its subdomains), without scheme, port or path",
                    truncate(entry)
                ),
            ));
        }
        if !seen.insert(entry.to_ascii_lowercase()) {
            return Err(ValidationError::new(
                field,
                ErrorCode::Duplicate,
                format!("{entry} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// A DNS name (letters, digits, `-` and `_` in labels of 1-63, not starting
/// or ending with `-`), lower or upper case, optionally after `*.`.
fn valid_pattern(entry: &str) -> bool {
    let name = entry.strip_prefix("*.").unwrap_or(entry);
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // All digits would read as an IPv4 address in a browser.
        && !name.split('.').all(|label| label.bytes().all(|b| b.is_ascii_digit()))
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hosts() {
        assert_eq!(request_host("127.0.0.1:8080"), RequestHost::Ip([127, 0, 0, 1].into()));
        assert_eq!(request_host("[::1]:443"), RequestHost::Ip(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(request_host("[::1]"), RequestHost::Ip(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(request_host("Camera.example.:80"), RequestHost::Name("Camera.example"));
        assert_eq!(request_host("camera"), RequestHost::Name("camera"));
        for bad in ["", ":80", "[::1", "[::1]x", "[zz]", "a:b", "a:123456", "."] {
            assert_eq!(request_host(bad), RequestHost::Invalid, "{bad}");
        }
    }

    #[test]
    fn wildcards_match_one_label() {
        assert!(name_matches("*.example.com", "cam.example.com"));
        assert!(name_matches("*.example.com", "CAM.Example.COM"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "evilexample.com"));
        assert!(!name_matches("*.example.com", ".example.com"));
        assert!(name_matches("cam.example.com", "Cam.Example.Com"));
        assert!(!name_matches("cam.example.com", "cam.example.com.evil"));
    }

    #[test]
    fn only_the_devices_own_names() {
        let names = HostNames::new(&["Cam-01".to_string()]);
        let cert = vec!["device.example".to_string(), "*.cams.example".to_string()];
        let configured = vec!["nvr.lan".to_string()];
        for ok in [
            "localhost",
            "localhost:8443",
            "cam-01",
            "CAM-01:80",
            "device.example",
            "x.cams.example",
            "nvr.lan.",
            "192.0.2.7",
            "[2001:db8::1]:443",
        ] {
            assert!(names.allows(ok, &cert, &configured), "{ok}");
        }
        for refused in
            ["evil.example", "device.example.evil.example", "a.b.cams.example", "", "[::1", "nvr.lan:x"]
        {
            assert!(!names.allows(refused, &cert, &configured), "{refused}");
        }
    }

    #[test]
    fn the_setting_is_checked() {
        let ok: Vec<String> =
            ["camera.example.com", "*.example.org", "NVR", "192.0.2.1", "::1", "my_host.lan"]
                .map(String::from)
                .into();
        assert_eq!(validate_allowed_hosts(&ok), Ok(()));
        for (bad, code) in [
            ("http://camera.example", "invalid_host"),
            ("camera.example:8080", "invalid_host"),
            ("camera.example/admin", "invalid_host"),
            ("", "invalid_host"),
            ("*", "invalid_host"),
            ("*.", "invalid_host"),
            ("a..b", "invalid_host"),
            ("-a.example", "invalid_host"),
            ("10.0.0", "invalid_host"),
            ("cam era", "invalid_host"),
        ] {
            let list = vec!["fine.example".to_string(), bad.to_string()];
            let e = validate_allowed_hosts(&list).expect_err(bad);
            assert_eq!((e.field.as_str(), e.code.as_str()), ("allowed_hosts[1]", code), "{bad}");
        }
        let dup = vec!["a.example".to_string(), "A.example".to_string()];
        assert_eq!(validate_allowed_hosts(&dup).expect_err("dup").code, "duplicate");
        let many: Vec<String> = (0..=MAX_ALLOWED_HOSTS).map(|i| format!("h{i}.example")).collect();
        assert_eq!(validate_allowed_hosts(&many).expect_err("many").code, "too_many");
    }
}

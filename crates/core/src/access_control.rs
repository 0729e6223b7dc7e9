//! IP-level access control (SPEC §5): who may open a connection at all.
//!
//! Operator input ([`AccessControlSettings`]) is compiled once into an
//! [`AccessPolicy`], which answers "may this address connect?" with a few hash
//! lookups, so the listener can refuse a denied client before TLS and before
//! any password work.
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 address
//! (`::ffff:192.0.2.1`, what a dual-stack socket reports for an IPv4 client)
//! is the IPv4 address, both in rules and in client addresses. A rule on an
//! IPv6 network such as `::/0` therefore does not cover IPv4 clients.

use crate::ErrorCode;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::ValidationError;

/// Most rules one device may hold; a list longer than this is a script gone
/// wrong, not a policy, and a bound keeps every Set and compile cheap.
pub const MAX_RULES: usize = 256;
/// Most trusted proxies; a deployment has one or two.
pub const MAX_TRUSTED_PROXIES: usize = 32;

/// The canonical form of an address: IPv4-mapped IPv6 becomes IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// An IPv4 or IPv6 network in CIDR form, or a single address.
///
/// Parsing is strict: the prefix length must be in range (0-32 or 0-128,
/// decimal, no sign, no leading zeros), and an address with host bits set
/// under its prefix (`10.0.0.1/8`) is refused rather than silently widened or
/// narrowed, because the operator may have meant the network or the host and a
/// guess either way changes who gets in. IPv4-mapped IPv6 networks
/// (`::ffff:10.0.0.0/104`) are normalized to IPv4 (`10.0.0.0/8`).
///
/// Displayed as the bare address for a single host (`10.0.0.1`, `2001:db8::1`)
/// and as `address/prefix` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNetwork {
    // Invariant: host bits are zero, prefix <= the family's width, and an
    // IPv4-mapped network is stored as IPv4.
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not an [`IpNetwork`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetworkError {
    /// The address part is not an IPv4 or IPv6 address (or the text is empty).
    #[error("\"{0}\" is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// The part after `/` is not a decimal number without sign or leading zeros.
    #[error("\"{0}\" is not a prefix length")]
    BadPrefix(String),
    /// The prefix length is longer than the address (32 for IPv4, 128 for IPv6).
    #[error("prefix length {prefix} is out of range (0-{max})")]
    PrefixOutOfRange {
        /// The prefix length given.
        prefix: u32,
        /// The family's width.
        max: u8,
    },
    /// The address has bits set beyond the prefix, as in `10.0.0.1/8`.
    #[error("{given} has host bits set: write {network} for the network or {host} for the single address")]
    HostBitsSet {
        /// The text as given.
        given: String,
        /// The network the prefix describes.
        network: String,
        /// The single address.
        host: String,
    },
}

impl IpNetworkError {
    /// A stable machine-readable code for API errors.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadAddress(_) => ErrorCode::InvalidAddress,
            Self::BadPrefix(_) => ErrorCode::InvalidPrefix,
            Self::PrefixOutOfRange { .. } => ErrorCode::PrefixOutOfRange,
            Self::HostBitsSet { .. } => ErrorCode::HostBitsSet,
        }
    }
}

fn width(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> u32 {
    let bits = u32::from(ip);
    // A shift by the full width overflows, hence the explicit /0 case.
    if prefix == 0 { 0 } else { bits & (u32::MAX << (32 - u32::from(prefix))) }
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> u128 {
    let bits = u128::from(ip);
    if prefix == 0 { 0 } else { bits & (u128::MAX << (128 - u32::from(prefix))) }
}

fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(mask_v4(v4, prefix))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(mask_v6(v6, prefix))),
    }
}

impl IpNetwork {
    /// The network `addr/prefix`, refusing host bits and out-of-range prefixes.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, IpNetworkError> {
        let (addr, prefix) = normalize_mapped(addr, prefix)?;
        let network = masked(addr, prefix);
        if network != addr {
            return Err(IpNetworkError::HostBitsSet {
                given: format!("{addr}/{prefix}"),
                network: format!("{network}/{prefix}"),
                host: addr.to_string(),
            });
        }
        Ok(Self { addr, prefix })
    }

    /// The network of length `prefix` that contains `addr` (host bits cleared;
    /// the prefix is capped at the family's width). Used to group clients.
    pub fn containing(addr: IpAddr, prefix: u8) -> Self {
        let addr = canonical_ip(addr);
        let prefix = prefix.min(width(&addr));
        Self { addr: masked(addr, prefix), prefix }
    }

    /// The single address `addr` (a /32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        let addr = canonical_ip(addr);
        Self { addr, prefix: width(&addr) }
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether this is a single address rather than a wider network.
    pub fn is_host(&self) -> bool {
        self.prefix == width(&self.addr)
    }

    /// Whether `ip` (compared in canonical form) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

/// Turns `::ffff:a.b.c.d/p` (p >= 96) into `a.b.c.d/(p-96)` and checks the
/// prefix range.
fn normalize_mapped(addr: IpAddr, prefix: u8) -> Result<(IpAddr, u8), IpNetworkError> {
    let max = width(&addr);
    if prefix > max {
        return Err(IpNetworkError::PrefixOutOfRange { prefix: u32::from(prefix), max });
    }
    if let IpAddr::V6(v6) = addr
        && prefix >= 96
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Ok((IpAddr::V4(v4), prefix - 96));
    }
    Ok((addr, prefix))
}

impl FromStr for IpNetwork {
    type Err = IpNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr =
            addr_text.parse().map_err(|_| IpNetworkError::BadAddress(addr_text.to_string()))?;
        let prefix = match prefix_text {
            None => width(&addr),
            Some(p) => {
                let well_formed = !p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && !(p.len() > 1 && p.starts_with('0'));
                if !well_formed {
                    return Err(IpNetworkError::BadPrefix(p.to_string()));
                }
                let n: u32 = p.parse().map_err(|_| IpNetworkError::BadPrefix(p.to_string()))?;
                let max = width(&addr);
                if n > u32::from(max) {
                    return Err(IpNetworkError::PrefixOutOfRange { prefix: n, max });
                }
                // n <= 128 was checked just above.
                u8::try_from(n).map_err(|_| IpNetworkError::PrefixOutOfRange { prefix: n, max })?
            }
        };
        Self::new(addr, prefix).map_err(|e| match e {
            // Name the text the operator wrote, not our normalized form.
            IpNetworkError::HostBitsSet { network, host, .. } => {
                IpNetworkError::HostBitsSet { given: s.to_string(), network, host }
            }
            other => other,
        })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() { write!(f, "{}", self.addr) } else { write!(f, "{}/{}", self.addr, self.prefix) }
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for IpNetwork {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "An IPv4 or IPv6 address, or a network in CIDR form without host bits set \
                 (e.g. \"192.168.1.0/24\", \"10.0.0.1\", \"2001:db8::/32\")",
            ))
            .examples(["192.168.1.0/24"])
            .into()
    }
}

impl ToSchema for IpNetwork {}

/// What happens to a client that no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoMatch {
    /// Let it connect (the default: enabling access control with no rules must not lock anyone out).
    #[default]
    Allow,
    /// Refuse it.
    Deny,
}

/// The kind of an access rule, as in the seed's "IP-Level Access Control" dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Always let the source connect.
    Allow,
    /// Like `allow`, until the next reboot.
    TemporaryAllow,
    /// Refuse the source unless an allow rule covers it.
    Deny,
    /// Like `deny`, until the next reboot.
    TemporaryDeny,
    /// Kept in the list but ignored.
    Inactive,
}

impl RuleKind {
    /// Whether the rule is lifted at reboot.
    pub fn is_temporary(self) -> bool {
        matches!(self, Self::TemporaryAllow | Self::TemporaryDeny)
    }
}

/// One access rule: a kind applied to an address or network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct AccessRule {
    /// What the rule does; required, since no default would be safe.
    pub kind: RuleKind,
    /// The address or network it applies to.
    pub source: IpNetwork,
}

/// The "IP-Level Access Control" settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AccessControlSettings {
    /// Whether the rules apply; off (the factory default) lets everyone connect.
    pub enabled: bool,
    /// What happens to a client no active rule matches.
    pub no_match: NoMatch,
    /// The rules (at most 256); their order does not matter, allow rules always win.
    pub rules: Vec<AccessRule>,
    /// Reverse proxies whose `X-Forwarded-For` is believed; never blocked automatically.
    /// They apply even while `enabled` is off, since they describe the network, not a policy.
    pub trusted_proxies: Vec<IpNetwork>,
}

impl AccessControlSettings {
    /// Checks the bounds and refuses duplicates; the first problem is returned.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.rules.len() > MAX_RULES {
            return Err(ValidationError::new(
                "rules",
                ErrorCode::TooMany,
                format!("at most {MAX_RULES} access rules may be configured"),
            ));
        }
        let mut seen = HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(first) = seen.insert(rule, i) {
                return Err(ValidationError::new(
                    format!("rules[{i}]"),
                    ErrorCode::Duplicate,
                    format!("this rule repeats rules[{first}] (same kind and source {})", rule.source),
                ));
            }
        }
        if self.trusted_proxies.len() > MAX_TRUSTED_PROXIES {
            return Err(ValidationError::new(
                "trusted_proxies",
                ErrorCode::TooMany,
                format!("at most {MAX_TRUSTED_PROXIES} trusted proxies may be configured"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, proxy) in self.trusted_proxies.iter().enumerate() {
            // Trusting everyone would let any client choose its own address
            // with a forged header, and exempt everyone from blocking.
            if proxy.prefix_len() == 0 {
                return Err(ValidationError::new(
                    format!("trusted_proxies[{i}]"),
                    ErrorCode::TooBroad,
                    format!("{proxy} would trust every address; name the proxies themselves"),
                ));
            }
            if !seen.insert(proxy) {
                return Err(ValidationError::new(
                    format!("trusted_proxies[{i}]"),
                    ErrorCode::Duplicate,
                    format!("the trusted proxy {proxy} is listed twice"),
                ));
            }
        }
        Ok(())
    }

    /// These settings without their temporary rules: what survives a reboot.
    pub fn without_temporary(&self) -> Self {
        Self {
            rules: self.rules.iter().filter(|r| !r.kind.is_temporary()).cloned().collect(),
            ..self.clone()
        }
    }
}

/// The answer of an [`AccessPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The client may connect.
    Allow,
    /// The client is refused.
    Deny,
}

/// A set of networks answering "does any contain this address?" with one hash
/// lookup per distinct prefix length present (at most 33 or 129, in practice 1-3).
#[derive(Debug, Clone, Default)]
struct PrefixSet {
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
}

impl PrefixSet {
    fn insert(&mut self, net: &IpNetwork) {
        fn slot<T: std::hash::Hash + Eq>(list: &mut Vec<(u8, HashSet<T>)>, prefix: u8) -> &mut HashSet<T> {
            let i = match list.iter().position(|(p, _)| *p == prefix) {
                Some(i) => i,
                None => {
                    list.push((prefix, HashSet::new()));
                    list.len() - 1
                }
            };
            &mut list[i].1
        }
        match net.addr() {
            IpAddr::V4(a) => {
                slot(&mut self.v4, net.prefix_len()).insert(u32::from(a));
            }
            IpAddr::V6(a) => {
                slot(&mut self.v6, net.prefix_len()).insert(u128::from(a));
            }
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match canonical_ip(ip) {
            IpAddr::V4(a) => self.v4.iter().any(|(p, set)| set.contains(&mask_v4(a, *p))),
            IpAddr::V6(a) => self.v6.iter().any(|(p, set)| set.contains(&mask_v6(a, *p))),
        }
    }
}

impl<'a> FromIterator<&'a IpNetwork> for PrefixSet {
    fn from_iter<I: IntoIterator<Item = &'a IpNetwork>>(iter: I) -> Self {
        let mut set = Self::default();
        for net in iter {
            set.insert(net);
        }
        set
    }
}

/// [`AccessControlSettings`] plus the automatic temporary blocks, compiled for
/// fast decisions. Rebuild it whenever either changes; it is cheap.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    enabled: bool,
    no_match: NoMatch,
    allow: PrefixSet,
    deny: PrefixSet,
    blocks: PrefixSet,
    trusted: PrefixSet,
}

impl AccessPolicy {
    /// Compiles `settings` and the intrusion detector's `temporary_blocks`.
    pub fn compile(settings: &AccessControlSettings, temporary_blocks: &[IpNetwork]) -> Self {
        let of = |kinds: &[RuleKind]| -> PrefixSet {
            settings.rules.iter().filter(|r| kinds.contains(&r.kind)).map(|r| &r.source).collect()
        };
        Self {
            enabled: settings.enabled,
            no_match: settings.no_match,
            allow: of(&[RuleKind::Allow, RuleKind::TemporaryAllow]),
            deny: of(&[RuleKind::Deny, RuleKind::TemporaryDeny]),
            blocks: temporary_blocks.iter().collect(),
            trusted: settings.trusted_proxies.iter().collect(),
        }
    }

    /// Whether `ip` may connect: with access control off, yes; else allow
    /// rules first, then deny rules and automatic blocks, then `no_match`.
    pub fn decide(&self, ip: IpAddr) -> Decision {
        if !self.enabled || self.allow.contains(ip) {
            return Decision::Allow;
        }
        // A block covering a whole IPv6 /64 must not cut off a trusted proxy
        // inside it: automatic blocks never apply to proxies (SPEC §5).
        if self.deny.contains(ip) || (self.blocks.contains(ip) && !self.trusted.contains(ip)) {
            return Decision::Deny;
        }
        match self.no_match {
            NoMatch::Allow => Decision::Allow,
            NoMatch::Deny => Decision::Deny,
        }
    }

    /// Whether access control is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `ip` is one of the configured trusted proxies.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
    }

    /// Whether an allow or temporary allow rule covers `ip` (such a client is never blocked).
    pub fn is_allowed_by_rule(&self, ip: IpAddr) -> bool {
        self.allow.contains(ip)
    }

    /// Whether the intrusion detector may block `ip`: access control is on,
    /// and `ip` is neither covered by an allow rule nor a trusted proxy.
    /// (`block_ip` is the caller's to add.)
    pub fn may_block(&self, ip: IpAddr) -> bool {
        self.enabled && !self.is_allowed_by_rule(ip) && !self.is_trusted_proxy(ip)
    }

    /// The client's address for a connection from `peer` carrying the given
    /// `X-Forwarded-For` header values (in the order received).
    ///
    /// The header is believed only when `peer` is a trusted proxy; then the
    /// rightmost address that is not itself a trusted proxy is the client
    /// (everything left of it was written by the client and may be forged).
    /// When every address is a trusted proxy, the leftmost is taken. An
    /// element that is not an address (optionally with a port) makes the
    /// header malformed, and then `peer` is the client. The result is canonical.
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let peer = canonical_ip(peer);
        if !self.is_trusted_proxy(peer) {
            return peer;
        }
        let elements: Vec<&str> = forwarded_for.into_iter().flat_map(|v| v.split(',')).collect();
        let mut leftmost = None;
        for element in elements.iter().rev() {
            let Some(ip) = parse_forwarded_element(element) else {
                return peer;
            };
            if !self.is_trusted_proxy(ip) {
                return ip;
            }
            leftmost = Some(ip);
        }
        leftmost.unwrap_or(peer)
    }
}

/// One `X-Forwarded-For` element: an address, `a.b.c.d:port` or `[v6]:port`.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let element = element.trim();
    if let Ok(ip) = element.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    if let Ok(sa) = element.parse::<SocketAddr>() {
        return Some(canonical_ip(sa.ip()));
    }
    // "[2001:db8::1]" without a port.
    element
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<Ipv6Addr>()
        .ok()
        .map(|v6| canonical_ip(IpAddr::V6(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn rule(kind: RuleKind, source: &str) -> AccessRule {
        AccessRule { kind, source: net(source) }
    }

    fn on(no_match: NoMatch, rules: Vec<AccessRule>) -> AccessControlSettings {
        AccessControlSettings { enabled: true, no_match, rules, trusted_proxies: vec![] }
    }

    #[test]
    fn parses_and_displays_networks() {
        assert_eq!(net("192.168.1.0/24").to_string(), "192.168.1.0/24");
        assert_eq!(net("10.0.0.1").to_string(), "10.0.0.1");
        assert_eq!(net("10.0.0.1/32").to_string(), "10.0.0.1");
        assert_eq!(net("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(net("2001:db8::1").prefix_len(), 128);
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("::/0").to_string(), "::/0");
        // IPv4-mapped IPv6 is IPv4.
        assert_eq!(net("::ffff:10.0.0.0/104"), net("10.0.0.0/8"));
        assert_eq!(net("::ffff:192.0.2.7"), net("192.0.2.7"));
    }

    #[test]
    fn refuses_sloppy_networks() {
        let err = |s: &str| s.parse::<IpNetwork>().expect_err(s);
        assert_eq!(err("10.0.0.1/8").code(), "host_bits_set");
        assert_eq!(
            err("10.0.0.1/8").to_string(),
            "10.0.0.1/8 has host bits set: write 10.0.0.0/8 for the network or 10.0.0.1 for the single address"
        );
        assert_eq!(err("2001:db8::1/32").code(), "host_bits_set");
        assert_eq!(err("10.0.0.0/33").code(), "prefix_out_of_range");
        assert_eq!(err("::/129").code(), "prefix_out_of_range");
        assert_eq!(err("10.0.0.0/999").code(), "prefix_out_of_range");
        for bad in ["10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/-1", "10.0.0.0/1000", "10.0.0.0/8/8"]
        {
            assert!(matches!(err(bad), IpNetworkError::BadPrefix(_)), "{bad}");
        }
        for bad in
            ["", "/8", "10.0.0", "10.0.0.256", " 10.0.0.1", "10.0.0.1 ", "host.example", "fe80::1%eth0"]
        {
            assert_eq!(err(bad).code(), "invalid_address", "{bad}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let s = on(
            NoMatch::Deny,
            vec![rule(RuleKind::Allow, "192.168.1.0/24"), rule(RuleKind::Deny, "2001:db8::/32")],
        );
        let json = serde_json::to_value(&s).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "enabled": true, "no_match": "deny",
                "rules": [{"kind": "allow", "source": "192.168.1.0/24"}, {"kind": "deny", "source": "2001:db8::/32"}],
                "trusted_proxies": []
            })
        );
        let back: AccessControlSettings = serde_json::from_value(json).expect("parses");
        assert_eq!(back, s);
    }

    #[test]
    fn omitted_fields_take_defaults_and_errors_name_the_field() {
        let s: AccessControlSettings = crate::config::parse_input(br#"{"enabled": true}"#).expect("parses");
        assert_eq!(s, AccessControlSettings { enabled: true, ..Default::default() });
        let e = crate::config::parse_input::<AccessControlSettings>(
            br#"{"rules": [{"kind": "allow", "source": "10.0.0.0/8"}, {"kind": "deny", "source": "10.0.0.1/8"}]}"#,
        )
        .expect_err("refused");
        assert_eq!(e.field, "rules[1].source");
        assert!(e.message.contains("host bits"), "{}", e.message);
        let e = crate::config::parse_input::<AccessControlSettings>(
            br#"{"rules": [{"kind": "maybe", "source": "10.0.0.1"}]}"#,
        )
        .expect_err("refused");
        assert_eq!(e.field, "rules[0].kind");
        let e =
            crate::config::parse_input::<AccessControlSettings>(br#"{"rules": [{"source": "10.0.0.1"}]}"#)
                .expect_err("a rule needs a kind");
        assert_eq!(e.field, "rules[0].kind");
        assert_eq!(e.code, "required");
    }

    #[test]
    fn validation_bounds_and_duplicates() {
        let mut s = on(NoMatch::Allow, vec![]);
        s.rules =
            (0..=MAX_RULES).map(|i| rule(RuleKind::Deny, &format!("10.0.{}.{}", i / 256, i % 256))).collect();
        assert_eq!(s.validate().expect_err("too many").field, "rules");
        s.rules.truncate(MAX_RULES);
        assert_eq!(s.validate(), Ok(()));
        s.rules.truncate(10);
        s.rules.push(s.rules[2].clone());
        let e = s.validate().expect_err("duplicate");
        assert_eq!((e.field.as_str(), e.code.as_str()), ("rules[10]", "duplicate"));
        assert!(e.message.contains("rules[2]"), "{}", e.message);
        // The same source under two kinds is fine (e.g. an inactive copy).
        let s =
            on(NoMatch::Allow, vec![rule(RuleKind::Inactive, "10.0.0.1"), rule(RuleKind::Deny, "10.0.0.1")]);
        assert_eq!(s.validate(), Ok(()));
        let mut s = AccessControlSettings { trusted_proxies: vec![net("0.0.0.0/0")], ..Default::default() };
        assert_eq!(s.validate().expect_err("too broad").field, "trusted_proxies[0]");
        s.trusted_proxies = vec![net("10.0.0.1"), net("10.0.0.1")];
        assert_eq!(s.validate().expect_err("dup").field, "trusted_proxies[1]");
    }

    #[test]
    fn off_allows_everyone() {
        let mut s = on(NoMatch::Deny, vec![rule(RuleKind::Deny, "0.0.0.0/0")]);
        s.enabled = false;
        let p = AccessPolicy::compile(&s, &[net("10.0.0.1")]);
        assert_eq!(p.decide(ip("10.0.0.1")), Decision::Allow);
        assert_eq!(p.decide(ip("2001:db8::1")), Decision::Allow);
        assert!(!p.may_block(ip("10.0.0.1")));
    }

    #[test]
    fn allow_before_deny_then_no_match() {
        let s = on(
            NoMatch::Allow,
            vec![
                rule(RuleKind::Deny, "10.0.0.0/8"),
                rule(RuleKind::Allow, "10.1.0.0/16"),
                rule(RuleKind::TemporaryAllow, "10.2.0.7"),
                rule(RuleKind::TemporaryDeny, "192.168.0.0/16"),
                rule(RuleKind::Inactive, "172.16.0.0/12"),
            ],
        );
        let p = AccessPolicy::compile(&s, &[]);
        assert_eq!(p.decide(ip("10.1.2.3")), Decision::Allow, "allow rule wins although listed after deny");
        assert_eq!(p.decide(ip("10.2.0.7")), Decision::Allow);
        assert_eq!(p.decide(ip("10.2.0.8")), Decision::Deny);
        assert_eq!(p.decide(ip("192.168.5.5")), Decision::Deny);
        assert_eq!(p.decide(ip("172.16.0.1")), Decision::Allow, "inactive ignored, no_match allow");
        assert_eq!(p.decide(ip("8.8.8.8")), Decision::Allow);

        let p = AccessPolicy::compile(&on(NoMatch::Deny, s.rules.clone()), &[]);
        assert_eq!(p.decide(ip("172.16.0.1")), Decision::Deny, "inactive ignored, no_match deny");
        assert_eq!(p.decide(ip("8.8.8.8")), Decision::Deny);
        assert_eq!(p.decide(ip("10.1.2.3")), Decision::Allow);

        // Inactive alone denies nothing and allows nothing.
        let p = AccessPolicy::compile(&on(NoMatch::Deny, vec![rule(RuleKind::Inactive, "10.0.0.1")]), &[]);
        assert_eq!(p.decide(ip("10.0.0.1")), Decision::Deny);
        let p = AccessPolicy::compile(&on(NoMatch::Allow, vec![rule(RuleKind::Inactive, "10.0.0.1")]), &[]);
        assert_eq!(p.decide(ip("10.0.0.1")), Decision::Allow);
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let s = on(NoMatch::Allow, vec![rule(RuleKind::Deny, "192.0.2.0/24"), rule(RuleKind::Deny, "::/0")]);
        let p = AccessPolicy::compile(&s, &[]);
        assert_eq!(p.decide(ip("::ffff:192.0.2.9")), Decision::Deny);
        assert_eq!(p.decide(ip("::ffff:198.51.100.1")), Decision::Allow, "::/0 does not cover IPv4 clients");
        assert_eq!(p.decide(ip("2001:db8::1")), Decision::Deny);
        let s = on(NoMatch::Deny, vec![rule(RuleKind::Allow, "::ffff:192.0.2.0/120")]);
        let p = AccessPolicy::compile(&s, &[]);
        assert_eq!(p.decide(ip("192.0.2.200")), Decision::Allow);
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.9.9.9")));
    }

    #[test]
    fn automatic_blocks_deny_unless_allowed_or_proxy() {
        let mut s = on(NoMatch::Allow, vec![rule(RuleKind::Allow, "2001:db8:0:0::7")]);
        s.trusted_proxies = vec![net("2001:db8::10")];
        let p = AccessPolicy::compile(&s, &[net("2001:db8::/64"), net("198.51.100.4")]);
        assert_eq!(p.decide(ip("2001:db8::1234")), Decision::Deny);
        assert_eq!(p.decide(ip("2001:db8::7")), Decision::Allow, "an allow rule beats a block");
        assert_eq!(p.decide(ip("2001:db8::10")), Decision::Allow, "a trusted proxy is never blocked");
        assert_eq!(p.decide(ip("2001:db8:0:1::1")), Decision::Allow);
        assert_eq!(p.decide(ip("::ffff:198.51.100.4")), Decision::Deny);
        assert!(p.may_block(ip("2001:db8::1234")));
        assert!(!p.may_block(ip("2001:db8::7")));
        assert!(!p.may_block(ip("2001:db8::10")));
    }

    #[test]
    fn without_temporary_keeps_the_rest() {
        let s = on(
            NoMatch::Deny,
            vec![
                rule(RuleKind::Allow, "10.0.0.1"),
                rule(RuleKind::TemporaryAllow, "10.0.0.2"),
                rule(RuleKind::Deny, "10.0.0.3"),
                rule(RuleKind::TemporaryDeny, "10.0.0.4"),
                rule(RuleKind::Inactive, "10.0.0.5"),
            ],
        );
        let kept: Vec<_> = s.without_temporary().rules.iter().map(|r| r.source.to_string()).collect();
        assert_eq!(kept, ["10.0.0.1", "10.0.0.3", "10.0.0.5"]);
        assert_eq!(s.without_temporary().no_match, NoMatch::Deny);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_proxies() {
        let s = AccessControlSettings {
            trusted_proxies: vec![net("10.0.0.1"), net("10.0.1.0/24")],
            ..Default::default()
        };
        let p = AccessPolicy::compile(&s, &[]);
        let proxy = ip("10.0.0.1");
        // Not from a proxy: the header is ignored.
        assert_eq!(p.client_ip(ip("203.0.113.9"), ["198.51.100.1"]), ip("203.0.113.9"));
        // From a proxy: the rightmost untrusted address.
        assert_eq!(p.client_ip(proxy, ["198.51.100.1"]), ip("198.51.100.1"));
        assert_eq!(p.client_ip(proxy, ["1.1.1.1, 198.51.100.1, 10.0.1.5"]), ip("198.51.100.1"));
        assert_eq!(p.client_ip(proxy, ["1.1.1.1", "198.51.100.1,10.0.1.5"]), ip("198.51.100.1"));
        // Ports and brackets are tolerated; mapped addresses canonicalized.
        assert_eq!(p.client_ip(proxy, ["198.51.100.1:5555"]), ip("198.51.100.1"));
        assert_eq!(p.client_ip(proxy, ["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(p.client_ip(proxy, ["[2001:db8::1]"]), ip("2001:db8::1"));
        assert_eq!(p.client_ip(proxy, ["::ffff:198.51.100.1"]), ip("198.51.100.1"));
        // Malformed, empty or absent: the peer.
        assert_eq!(p.client_ip(proxy, ["garbage"]), proxy);
        assert_eq!(p.client_ip(proxy, ["198.51.100.1, unknown"]), proxy);
        assert_eq!(p.client_ip(proxy, [""]), proxy);
        assert_eq!(p.client_ip(proxy, []), proxy);
        // A forged element left of the real client is never looked at.
        assert_eq!(p.client_ip(proxy, ["not-an-ip, 198.51.100.1"]), ip("198.51.100.1"));
        // Only proxies: the leftmost.
        assert_eq!(p.client_ip(proxy, ["10.0.1.7, 10.0.1.8"]), ip("10.0.1.7"));
        // The peer given in mapped form is still recognized as a proxy.
        assert_eq!(p.client_ip(ip("::ffff:10.0.0.1"), ["198.51.100.1"]), ip("198.51.100.1"));
    }

    #[test]
    fn schema_is_a_string() {
        let schema =
            serde_json::to_value(<IpNetwork as utoipa::PartialSchema>::schema()).expect("serializes");
        assert_eq!(schema["type"], "string");
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    proptest! {
        #[test]
        fn network_text_round_trips(addr in any_ip(), prefix in 0u8..=128) {
            let n = IpNetwork::containing(addr, prefix);
            let back: IpNetwork = n.to_string().parse().map_err(|e: IpNetworkError| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, n);
            prop_assert!(n.contains(addr));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,48}") {
            let _ = s.parse::<IpNetwork>();
        }

        #[test]
        fn contains_agrees_with_masking(net_addr in any_ip(), prefix in 0u8..=128, probe in any_ip()) {
            let n = IpNetwork::containing(net_addr, prefix);
            let probe_c = canonical_ip(probe);
            let expected = width(&probe_c) == width(&n.addr()) && masked(probe_c, n.prefix_len()) == n.addr();
            prop_assert_eq!(n.contains(probe), expected);
            // The compiled set agrees with the single network.
            let set: PrefixSet = [n].iter().collect();
            prop_assert_eq!(set.contains(probe), expected);
        }

        #[test]
        fn policy_matches_a_naive_reading_of_the_rules(
            rules in proptest::collection::vec((0usize..5, any_ip(), 0u8..=128), 0..12),
            blocks in proptest::collection::vec((any_ip(), 0u8..=128), 0..4),
            deny_by_default in any::<bool>(),
            probes in proptest::collection::vec(any_ip(), 1..8),
        ) {
            let kinds = [RuleKind::Allow, RuleKind::TemporaryAllow, RuleKind::Deny, RuleKind::TemporaryDeny, RuleKind::Inactive];
            let rules: Vec<AccessRule> = rules
                .into_iter()
                .map(|(k, a, p)| AccessRule { kind: kinds[k], source: IpNetwork::containing(a, p) })
                .collect();
            let blocks: Vec<IpNetwork> = blocks.into_iter().map(|(a, p)| IpNetwork::containing(a, p)).collect();
            let no_match = if deny_by_default { NoMatch::Deny } else { NoMatch::Allow };
            let s = on(no_match, rules.clone());
            let policy = AccessPolicy::compile(&s, &blocks);
            // Add a probe inside every rule so matches actually happen.
            let probes: Vec<IpAddr> = probes.into_iter().chain(rules.iter().map(|r| r.source.addr())).collect();
            for probe in probes {
                let covered = |pred: &dyn Fn(RuleKind) -> bool| rules.iter().any(|r| pred(r.kind) && r.source.contains(probe));
                let expected = if covered(&|k| matches!(k, RuleKind::Allow | RuleKind::TemporaryAllow)) {
                    Decision::Allow
                } else if deny_by_default
                    || covered(&|k| matches!(k, RuleKind::Deny | RuleKind::TemporaryDeny))
                    || blocks.iter().any(|b| b.contains(probe))
                {
                    Decision::Deny
                } else {
                    Decision::Allow
                };
                prop_assert_eq!(policy.decide(probe), expected, "probe {}", probe);
            }
        }
    }
}

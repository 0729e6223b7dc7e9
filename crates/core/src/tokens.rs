//! API tokens' rules: what a token's name, scope, expiry and source list may
//! be, and what a scope allows a request to do. The secret itself (its
//! making, its keyed hash) is the server's; nothing here sees it.
//!
//! A token is a credential made for a machine (a video management system, a
//! fleet tool, a metrics scraper): it belongs to one account, never has more
//! rights than that account, and may be limited further by its scope, an
//! expiry and a list of source addresses.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::access_control::IpNetwork;
use crate::{ErrorCode, ValidationError};

/// Prefix of every token's secret, so that secret scanners (and people)
/// recognise a leaked one.
pub const SECRET_PREFIX: &str = "pcl_";
/// Tokens a device holds at most (each request's check compares against all).
pub const MAX_TOKENS: usize = 100;
/// Source entries a token lists at most.
pub const MAX_SOURCES: usize = 32;
/// Longest lifetime given in days.
pub const MAX_EXPIRY_DAYS: u32 = 3650;
/// Longest token name.
pub const MAX_NAME_LEN: usize = 64;

/// What a token may do, within its account's rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    /// Read: `GET`, `HEAD` and `OPTIONS` only (a metrics scraper, a monitor).
    ReadOnly,
    /// Operate the device: everything but managing accounts and tokens.
    Operator,
    /// Everything the account may do.
    Administrator,
}

impl TokenScope {
    /// The scope as written on the wire (`read-only`, `operator`, `administrator`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Operator => "operator",
            Self::Administrator => "administrator",
        }
    }

    /// The widest scope an account may give its tokens: an administrator
    /// any, another account read-only (it may change nothing itself).
    pub fn widest_for(account_is_admin: bool) -> Self {
        if account_is_admin { Self::Administrator } else { Self::ReadOnly }
    }

    /// Whether the scope lets a request with `method` to `path` through
    /// (the account's own rights are checked by the route as usual).
    /// Read-only: safe methods only. Operator: also changes, except to the
    /// accounts and tokens (a token cannot make itself a wider one, nor
    /// take a person's account over).
    pub fn permits(self, method: &http::Method, path: &str) -> bool {
        let safe = matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
        match self {
            Self::ReadOnly => safe,
            Self::Operator => safe || !manages_accounts(path),
            Self::Administrator => true,
        }
    }
}

impl std::str::FromStr for TokenScope {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read-only" => Ok(Self::ReadOnly),
            "operator" => Ok(Self::Operator),
            "administrator" => Ok(Self::Administrator),
            _ => Err(ValidationError::new(
                "scope",
                ErrorCode::InvalidValue,
                "the scope must be \"read-only\", \"operator\" or \"administrator\"",
            )),
        }
    }
}

/// Whether `path` is one of the routes that manage accounts or tokens.
fn manages_accounts(path: &str) -> bool {
    ["/api/v1/users", "/api/v1/tokens"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/')))
}

/// Whether `name` follows the rule account and token names share: 1-64
/// characters, letters, digits, `.`, `_`, `-`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks a token name: 1-64 characters, letters, digits, `.`, `_`, `-`.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(ValidationError::new(
            "name",
            ErrorCode::InvalidName,
            "a token name has 1 to 64 characters: letters, digits, '.', '_' or '-'",
        ))
    }
}

/// Checks that `scope` is within what an account (an administrator or not) may give.
pub fn validate_scope(
    scope: TokenScope,
    account: &str,
    account_is_admin: bool,
) -> Result<(), ValidationError> {
    let widest = TokenScope::widest_for(account_is_admin);
    if scope > widest {
        return Err(ValidationError::new(
            "scope",
            ErrorCode::ScopeExceedsAccount,
            format!(
                "the account \"{account}\" may have tokens of scope \"{}\" at most, not \"{}\"",
                widest.as_str(),
                scope.as_str()
            ),
        ));
    }
    Ok(())
}

/// Parses a token's source list (addresses or networks, `10.0.0.0/8`); at
/// most [`MAX_SOURCES`], none twice. Empty: any source.
pub fn parse_sources(sources: &[String]) -> Result<Vec<IpNetwork>, ValidationError> {
    if sources.len() > MAX_SOURCES {
        return Err(ValidationError::new(
            "allowed_sources",
            ErrorCode::TooMany,
            format!("a token lists at most {MAX_SOURCES} sources"),
        ));
    }
    let mut out: Vec<IpNetwork> = Vec::with_capacity(sources.len());
    for (i, s) in sources.iter().enumerate() {
        let field = format!("allowed_sources[{i}]");
        let net: IpNetwork = s.trim().parse().map_err(|e: crate::access_control::IpNetworkError| {
            ValidationError::new(field.clone(), e.code(), e.to_string())
        })?;
        if out.contains(&net) {
            return Err(ValidationError::new(field, ErrorCode::Duplicate, format!("{net} is listed twice")));
        }
        out.push(net);
    }
    Ok(out)
}

/// Whether a request from `client` may use a token listing `sources` (none: any).
pub fn source_allowed(sources: &[IpNetwork], client: Option<IpAddr>) -> bool {
    if sources.is_empty() {
        return true;
    }
    client.is_some_and(|ip| {
        let ip = crate::access_control::canonical_ip(ip);
        sources.iter().any(|n| n.contains(ip))
    })
}

/// The expiry of a token made at `now`: `expires_at` (RFC 3339, in the
/// future) or `expires_in_days` (1 to [`MAX_EXPIRY_DAYS`]), never both;
/// none: it does not expire.
pub fn expiry(
    now: OffsetDateTime,
    expires_at: Option<&str>,
    expires_in_days: Option<u32>,
) -> Result<Option<OffsetDateTime>, ValidationError> {
    match (expires_at, expires_in_days) {
        (Some(_), Some(_)) => Err(ValidationError::new(
            "expires_in_days",
            ErrorCode::ConflictingSettings,
            "give expires_at or expires_in_days, not both",
        )),
        (None, None) => Ok(None),
        (None, Some(days)) => {
            if !(1..=MAX_EXPIRY_DAYS).contains(&days) {
                return Err(ValidationError::new(
                    "expires_in_days",
                    ErrorCode::OutOfRange,
                    format!("expires_in_days is 1 to {MAX_EXPIRY_DAYS}"),
                ));
            }
            Ok(Some(now + time::Duration::days(i64::from(days))))
        }
        (Some(text), None) => {
            let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(
                |_| {
                    ValidationError::new(
                        "expires_at",
                        ErrorCode::InvalidValue,
                        "expires_at is a time in RFC 3339 form, e.g. 2030-01-31T12:00:00Z",
                    )
                },
            )?;
            if at <= now {
                return Err(ValidationError::new(
                    "expires_at",
                    ErrorCode::OutOfRange,
                    "expires_at lies in the past",
                ));
            }
            if at > now + time::Duration::days(i64::from(MAX_EXPIRY_DAYS)) {
                return Err(ValidationError::new(
                    "expires_at",
                    ErrorCode::OutOfRange,
                    format!("expires_at is at most {MAX_EXPIRY_DAYS} days away"),
                ));
            }
            Ok(Some(at.to_offset(time::UtcOffset::UTC)))
        }
    }
}

/// Whether a token with `expires_at` has expired at `now` (at the instant itself, it has).
pub fn expired(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    expires_at.is_some_and(|at| now >= at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn scopes_permit_what_they_say() {
        use TokenScope::*;
        assert!(ReadOnly.permits(&Method::GET, "/api/v1/webserver"));
        assert!(ReadOnly.permits(&Method::HEAD, "/metrics"));
        assert!(!ReadOnly.permits(&Method::PUT, "/api/v1/webserver"));
        assert!(!ReadOnly.permits(&Method::POST, "/api/v1/config/store"));
        assert!(!ReadOnly.permits(&Method::DELETE, "/api/v1/tokens/x"));
        assert!(Operator.permits(&Method::PUT, "/api/v1/webserver"));
        assert!(Operator.permits(&Method::GET, "/api/v1/users"));
        assert!(!Operator.permits(&Method::PUT, "/api/v1/users/bob"));
        assert!(!Operator.permits(&Method::POST, "/api/v1/tokens"));
        assert!(!Operator.permits(&Method::DELETE, "/api/v1/tokens/ci"));
        assert!(Operator.permits(&Method::POST, "/api/v1/tokensmith"), "only the routes themselves");
        assert!(Administrator.permits(&Method::POST, "/api/v1/tokens"));
    }

    #[test]
    fn a_scope_never_exceeds_the_account() {
        assert!(validate_scope(TokenScope::Administrator, "admin", true).is_ok());
        assert!(validate_scope(TokenScope::ReadOnly, "viewer", false).is_ok());
        for s in [TokenScope::Operator, TokenScope::Administrator] {
            let e = validate_scope(s, "viewer", false).expect_err("too wide");
            assert_eq!((e.field.as_str(), e.code), ("scope", ErrorCode::ScopeExceedsAccount));
        }
        assert_eq!("read-only".parse::<TokenScope>().ok(), Some(TokenScope::ReadOnly));
        assert!("root".parse::<TokenScope>().is_err());
        assert_eq!(serde_json::to_string(&TokenScope::ReadOnly).ok().as_deref(), Some("\"read-only\""));
    }

    #[test]
    fn names() {
        assert!(validate_name("ci-scraper_1.a").is_ok());
        for bad in ["", "a b", "x/y", "ü", &"a".repeat(65)] {
            assert_eq!(validate_name(bad).expect_err(bad).code, ErrorCode::InvalidName);
        }
        assert!(validate_name(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn sources_are_checked_and_enforced() {
        let s = parse_sources(&["127.0.0.2".into(), "10.0.0.0/8".into()]).expect("valid");
        assert!(source_allowed(&s, Some("127.0.0.2".parse().expect("ip"))));
        assert!(source_allowed(&s, Some("10.1.2.3".parse().expect("ip"))));
        assert!(source_allowed(&s, Some("::ffff:10.1.2.3".parse().expect("ip"))), "mapped IPv4");
        assert!(!source_allowed(&s, Some("127.0.0.1".parse().expect("ip"))));
        assert!(!source_allowed(&s, None), "a list needs a network client");
        assert!(source_allowed(&[], None));
        let e = parse_sources(&["10.0.0.1/8".into()]).expect_err("host bits");
        assert_eq!((e.field.as_str(), e.code), ("allowed_sources[0]", ErrorCode::HostBitsSet));
        let e = parse_sources(&["1.2.3.4".into(), "1.2.3.4".into()]).expect_err("twice");
        assert_eq!(e.code, ErrorCode::Duplicate);
        let many: Vec<String> = (0..=MAX_SOURCES).map(|i| format!("10.0.0.{i}")).collect();
        assert_eq!(parse_sources(&many).expect_err("too many").code, ErrorCode::TooMany);
    }

    #[test]
    fn expiry_rules() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        assert_eq!(expiry(now, None, None).ok(), Some(None));
        assert_eq!(expiry(now, None, Some(2)).ok(), Some(Some(now + time::Duration::days(2))));
        assert_eq!(expiry(now, None, Some(0)).expect_err("0").code, ErrorCode::OutOfRange);
        assert_eq!(
            expiry(now, None, Some(MAX_EXPIRY_DAYS + 1)).expect_err("long").code,
            ErrorCode::OutOfRange
        );
        let at = expiry(now, Some("2030-01-31T12:00:00+01:00"), None).expect("valid").expect("some");
        assert_eq!(at.offset(), time::UtcOffset::UTC);
        assert_eq!(
            expiry(now, Some("2020-01-01T00:00:00Z"), None).expect_err("past").code,
            ErrorCode::OutOfRange
        );
        assert_eq!(expiry(now, Some("tomorrow"), None).expect_err("form").field, "expires_at");
        assert!(expiry(now, Some("2030-01-31T12:00:00Z"), Some(1)).is_err(), "not both");
        let end = now + time::Duration::days(1);
        assert!(!expired(Some(end), end - time::Duration::seconds(1)));
        assert!(expired(Some(end), end), "at the instant itself");
        assert!(!expired(None, end));
    }
}

//! Header helpers every layer uses: the security headers and cookie lookup.
//! A leaf: it imports nothing of this crate.

use http::header::{self, HeaderName};

/// The security headers every answer carries.
pub const SECURITY_HEADERS: [(HeaderName, &str); 3] = [
    (HeaderName::from_static("x-content-type-options"), "nosniff"),
    (HeaderName::from_static("x-frame-options"), "DENY"),
    (HeaderName::from_static("referrer-policy"), "same-origin"),
];

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

//! What this build carries: its optional features and its crypto provider,
//! for `GET /api/v1/build`, `portcullis --version` and the UI (which hides
//! what is absent), and the answer to a request for something not built.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use portcullis_core::ErrorCode;

/// Every optional feature, by its cargo feature name, in a fixed order.
pub const OPTIONAL_FEATURES: [&str; 14] = [
    "ui",
    "acme",
    "email",
    "ip-notify",
    "sip",
    "digest",
    "http2",
    "openapi",
    "webroot",
    "metrics",
    "syslog",
    "crowdsec",
    "backup",
    "totp",
];

/// Whether the optional feature `name` is built in (unknown names: false).
pub const fn built(name: &str) -> bool {
    // A `match` on strings is not allowed in const fn; compare bytes.
    let n = name.as_bytes();
    macro_rules! is {
        ($s:literal, $f:literal) => {
            const_eq(n, $s.as_bytes()) && cfg!(feature = $f)
        };
    }
    is!("ui", "ui")
        || is!("acme", "acme")
        || is!("email", "email")
        || is!("ip-notify", "ip-notify")
        || is!("sip", "sip")
        || is!("digest", "digest")
        || is!("http2", "http2")
        || is!("openapi", "openapi")
        || is!("webroot", "webroot")
        || is!("metrics", "metrics")
        || is!("syslog", "syslog")
        || is!("crowdsec", "crowdsec")
        || is!("backup", "backup")
        || is!("totp", "totp")
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The optional features built in, in [`OPTIONAL_FEATURES`] order.
pub fn features() -> Vec<&'static str> {
    OPTIONAL_FEATURES.into_iter().filter(|f| built(f)).collect()
}

/// The optional features left out of this build.
pub fn absent_features() -> Vec<&'static str> {
    OPTIONAL_FEATURES.into_iter().filter(|f| !built(f)).collect()
}

/// One line for `--version` and the start-up log: the version, the features
/// and the crypto provider.
pub fn summary() -> String {
    let features = features();
    format!(
        "{} (features: {}; crypto: {})",
        env!("CARGO_PKG_VERSION"),
        if features.is_empty() { "none".to_string() } else { features.join(", ") },
        portcullis_cert::crypto::PROVIDER_NAME
    )
}

/// The build, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildInfo {
    /// Version of portcullis.
    pub version: &'static str,
    /// Optional features built in (`ui`, `acme`, `email`, `ip-notify`, `sip`,
    /// `digest`, `http2`, `openapi`, `webroot`, `metrics`, `syslog`,
    /// `crowdsec`, `backup`, `totp`).
    pub features: Vec<&'static str>,
    /// Optional features left out; requests for them answer 501 `feature_not_built`.
    pub absent_features: Vec<&'static str>,
    /// The crypto provider: `aws-lc-rs` or `ring`.
    pub crypto_provider: &'static str,
}

impl BuildInfo {
    /// This build.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            features: features(),
            absent_features: absent_features(),
            crypto_provider: portcullis_cert::crypto::PROVIDER_NAME,
        }
    }
}

/// The error for a request that needs a feature this build left out.
pub fn not_built_error(feature: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        ErrorCode::FeatureNotBuilt,
        format!("this build of portcullis does not include the \"{feature}\" feature"),
    )
    .field(feature)
}

/// A route that answers every method with [`not_built_error`].
pub fn not_built_route<S: Clone + Send + Sync + 'static>(
    feature: &'static str,
) -> axum::routing::MethodRouter<S> {
    axum::routing::any(move || async move { not_built_error(feature).into_response() })
}

/// Answer of [`not_built_route`] as a plain function, for fallbacks.
pub fn not_built_response(feature: &'static str) -> Response {
    not_built_error(feature).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_agree_with_the_build() {
        let (on, off) = (features(), absent_features());
        assert_eq!(on.len() + off.len(), OPTIONAL_FEATURES.len());
        assert_eq!(built("ui"), cfg!(feature = "ui"));
        assert_eq!(built("ip-notify"), cfg!(feature = "ip-notify"));
        assert_eq!(built("webroot"), cfg!(feature = "webroot"));
        assert!(!built("nonsense"));
        assert!(summary().contains(portcullis_cert::crypto::PROVIDER_NAME));
        for f in on {
            assert!(summary().contains(f));
        }
    }

    #[test]
    fn not_built_names_the_feature() {
        let e = not_built_error("acme");
        assert_eq!(e.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(e.code, "feature_not_built");
        assert_eq!(e.field.as_deref(), Some("acme"));
        assert!(e.message.contains("\"acme\""));
    }
}

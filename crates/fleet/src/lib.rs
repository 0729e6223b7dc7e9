//! Fleet integrations of portcullis (SPEC §9): the shell around the pure
//! rules of `portcullis_core::{syslog, crowdsec}`.
//!
//! - [`metrics`]: the Prometheus registry and its text exposition
//!   (`prometheus-client`), for `/metrics`.
//! - [`syslog`]: RFC 5424 messages to collectors over UDP, TCP (RFC 6587
//!   octet counting) and TLS (RFC 5425), one bounded queue and one task per
//!   collector, retried with back-off; producing never waits.
//! - [`crowdsec`]: the CrowdSec Local API client: the decision stream a
//!   bouncer polls, and the watcher login and alerts that share the
//!   device's own blocks with the fleet.
//!
//! A crate of its own (beside notify and acme) rather than modules of the
//! server: each integration is a build feature a device may leave out, its
//! dependencies (prometheus-client, the HTTP client) stay out of builds
//! without it, and its tests run against the real engines without starting
//! the server.

#[cfg(feature = "crowdsec")]
pub mod crowdsec;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "syslog")]
pub mod syslog;
#[cfg(any(feature = "syslog", feature = "crowdsec"))]
mod tls;

/// Why an integration could not be started with its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SetupError {
    /// The settings' field at fault (dotted path, as in validation errors).
    pub field: String,
    /// What is wrong, one sentence, never a secret.
    pub message: String,
}

impl SetupError {
    #[cfg(any(feature = "syslog", feature = "crowdsec"))]
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A source of jitter in `[0, 1)`: random in the device, fixed in tests.
pub trait Jitter: Send + Sync + std::fmt::Debug {
    /// The next value in `[0, 1)`.
    fn next(&self) -> f64;
}

/// Jitter from the thread's random generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn next(&self) -> f64 {
        rand::random::<f64>()
    }
}

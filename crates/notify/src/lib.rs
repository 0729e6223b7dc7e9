//! Notification senders of portcullis (SPEC §6): e-mail over SMTP, network
//! messages (IP Notify) over raw TCP or HTTP(S), and SIP phone calls that
//! play an audio message over RTP; and the [`DeliveryQueue`] that sends them
//! without blocking request handling, with retries and backoff.
//!
//! The profiles themselves (operator input, validation, secrets, templates)
//! are pure data in [`portcullis_core::profiles`]; this crate is the I/O shell
//! around them.
//!
//! # Timeouts
//!
//! Every connect, read and write has a timeout ([`IO_TIMEOUT`]); a call
//! additionally rings at most the profile's `ring_timeout_seconds`, and the
//! queue bounds each whole attempt ([`RetryPolicy::attempt_timeout`]). No
//! delivery can hang forever.
//!
//! # Secrets
//!
//! Passwords are only read through [`portcullis_core::profiles::Secret::expose`]
//! at the moment they are sent; no error or log line formats them.

//!
//! # Features
//!
//! `email`, `ip-notify` and `sip` each build one channel; a notification of
//! a channel that is not built fails with [`NotifyError::FeatureNotBuilt`].
//! `aws-lc-rs` or `ring` picks the crypto provider of the TLS clients.

#[cfg(feature = "email")]
pub mod email;
pub mod error;
#[cfg(feature = "ip-notify")]
pub mod ip_notify;
#[cfg(feature = "sip")]
pub mod media;
#[cfg(feature = "sip")]
pub mod phone;
pub mod queue;
#[cfg(feature = "sip")]
mod sip;
#[cfg(any(feature = "email", feature = "ip-notify"))]
mod tls;

use std::time::Duration;

#[cfg(feature = "email")]
pub use email::send_email;
pub use error::NotifyError;
#[cfg(feature = "ip-notify")]
pub use ip_notify::send_ip_notify;
#[cfg(feature = "sip")]
pub use phone::place_call;
pub use queue::{DeliveryQueue, Job, Notification, Outcome, ProfileKind, QueueConfig, RetryPolicy, deliver};

/// Time allowed for each connect, read or write with a peer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A notification that reached its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// One line for the event log, e.g. `mailed to ops@example.com via mail.example.com:587`.
    pub summary: String,
    /// Who got it: recipients, destinations or the callee.
    pub reached: Vec<String>,
}

/// The channels this build carries, by their feature names (`email`, `ip-notify`, `sip`).
pub const CHANNELS_BUILT: &[&str] = &[
    #[cfg(feature = "email")]
    "email",
    #[cfg(feature = "ip-notify")]
    "ip-notify",
    #[cfg(feature = "sip")]
    "sip",
];

/// Runs `fut` with [`IO_TIMEOUT`], turning a timeout into [`NotifyError::Timeout`].
#[cfg_attr(not(any(feature = "email", feature = "ip-notify", feature = "sip")), allow(dead_code))]
pub(crate) async fn within<T>(
    target: &str,
    stage: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, NotifyError> {
    within_for(IO_TIMEOUT, target, stage, fut).await
}

/// Runs `fut` with the given timeout, turning a timeout into [`NotifyError::Timeout`].
#[cfg_attr(not(any(feature = "email", feature = "ip-notify", feature = "sip")), allow(dead_code))]
pub(crate) async fn within_for<T>(
    limit: Duration,
    target: &str,
    stage: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, NotifyError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| NotifyError::Timeout { target: target.to_string(), stage: stage.to_string() })
}

/// Connects over TCP within [`IO_TIMEOUT`].
#[cfg_attr(not(any(feature = "email", feature = "ip-notify", feature = "sip")), allow(dead_code))]
pub(crate) async fn connect_tcp(
    dest: &portcullis_core::profiles::HostPort,
) -> Result<tokio::net::TcpStream, NotifyError> {
    let target = dest.to_string();
    within(&target, "connect", tokio::net::TcpStream::connect((dest.host.as_str(), dest.port)))
        .await?
        .map_err(|e| NotifyError::Connect { target, reason: e.to_string() })
}

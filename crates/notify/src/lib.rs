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

pub mod email;
pub mod error;
pub mod ip_notify;
pub mod media;
pub mod phone;
pub mod queue;
mod sip;
mod tls;

use std::time::Duration;

pub use email::send_email;
pub use error::NotifyError;
pub use ip_notify::send_ip_notify;
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

/// Runs `fut` with [`IO_TIMEOUT`], turning a timeout into [`NotifyError::Timeout`].
pub(crate) async fn within<T>(
    target: &str,
    stage: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, NotifyError> {
    within_for(IO_TIMEOUT, target, stage, fut).await
}

/// Runs `fut` with the given timeout, turning a timeout into [`NotifyError::Timeout`].
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
pub(crate) async fn connect_tcp(
    dest: &portcullis_core::profiles::HostPort,
) -> Result<tokio::net::TcpStream, NotifyError> {
    let target = dest.to_string();
    within(&target, "connect", tokio::net::TcpStream::connect((dest.host.as_str(), dest.port)))
        .await?
        .map_err(|e| NotifyError::Connect { target, reason: e.to_string() })
}

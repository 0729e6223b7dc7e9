//! Why a notification was not delivered, in words for an operator.
//!
//! Messages name the peer and the step that failed, never a password: the
//! senders never format a secret, and peer texts (SMTP replies, SIP reason
//! phrases) are cut to one short line.

use portcullis_core::ErrorCode;

/// A delivery that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The profile cannot be used as it is (bad address, unreadable CA, bad audio).
    /// Retrying does not help.
    #[error("the profile cannot be used: {0}")]
    InvalidProfile(String),
    /// The peer's name could not be resolved, or the connection was refused or unreachable.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// The `host:port` tried.
        target: String,
        /// What the network said.
        reason: String,
    },
    /// The peer did not answer in time.
    #[error("{target} did not answer in time ({stage})")]
    Timeout {
        /// The peer.
        target: String,
        /// The step that timed out, e.g. `connect`, `TLS handshake`, `INVITE`.
        stage: String,
    },
    /// The TLS handshake failed, usually because the certificate is not trusted.
    #[error("TLS with {target} failed: {reason}")]
    Tls {
        /// The peer.
        target: String,
        /// Why, e.g. the certificate verification error.
        reason: String,
    },
    /// The connection broke while talking to the peer.
    #[error("connection to {target} failed: {reason}")]
    Io {
        /// The peer.
        target: String,
        /// What the network said.
        reason: String,
    },
    /// The SMTP server refused the message or the login.
    #[error("the SMTP server refused: {reason}")]
    SmtpRefused {
        /// The server's reply (code and text).
        reason: String,
        /// Whether the reply was permanent (5xx): retrying does not help.
        permanent: bool,
    },
    /// The SMTP server offers no login on this connection, usually because it
    /// requires STARTTLS first.
    #[error(
        "the SMTP server offers no login method on this connection; it probably requires STARTTLS \
         (set security to \"starttls\" or \"tls\")"
    )]
    SmtpAuthUnavailable,
    /// The SMTP server does not offer STARTTLS, which the profile requires.
    #[error(
        "the SMTP server does not offer STARTTLS; the message was not sent in clear text \
         (use security \"tls\" for implicit TLS, or \"none\" if the network is trusted)"
    )]
    StarttlsUnavailable,
    /// Another SMTP failure.
    #[error("e-mail delivery failed: {0}")]
    Smtp(String),
    /// An HTTP destination answered with a status outside 2xx.
    #[error("{target} answered HTTP {status}")]
    HttpStatus {
        /// The destination.
        target: String,
        /// The status code.
        status: u16,
    },
    /// Some destinations of an IP Notify profile got the message and some did not.
    #[error("delivered to {delivered_count} of {total} destinations; failed: {}", summary(failed))]
    PartialDelivery {
        /// Destinations that were reached.
        delivered: Vec<String>,
        /// How many destinations were reached.
        delivered_count: usize,
        /// Destinations tried in all.
        total: usize,
        /// Destinations that failed, with the reason.
        failed: Vec<(String, NotifyError)>,
    },
    /// Every destination of an IP Notify profile failed.
    #[error("no destination was reached: {}", summary(failed))]
    AllFailed {
        /// Destinations that failed, with the reason.
        failed: Vec<(String, NotifyError)>,
    },
    /// The callee (or its phone) answered "busy" (486, 600).
    #[error("the callee is busy (SIP {code} {reason})")]
    CallBusy {
        /// The SIP status code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The callee declined the call (603).
    #[error("the callee declined the call (SIP {code} {reason})")]
    CallDeclined {
        /// The SIP status code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The callee did not answer within the ring timeout.
    #[error("the call was not answered within {seconds} s")]
    NoAnswer {
        /// The ring timeout.
        seconds: u32,
    },
    /// The registrar or proxy refused our credentials.
    #[error("SIP authentication failed at {stage} (SIP {code}); check the user name and password")]
    SipAuthFailed {
        /// REGISTER or INVITE.
        stage: String,
        /// The SIP status code.
        code: u16,
    },
    /// The SIP peer refused the request with another status.
    #[error("{stage} was refused: SIP {code} {reason}")]
    SipRefused {
        /// REGISTER, INVITE or BYE.
        stage: String,
        /// The SIP status code.
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// The SIP peer sent something we cannot use (bad SDP, no common codec).
    #[error("the SIP peer's answer cannot be used: {0}")]
    SipProtocol(String),
    /// The delivery queue is full; the job was dropped.
    #[error("the delivery queue is full ({capacity} jobs); the notification was dropped")]
    QueueFull {
        /// The queue's bound.
        capacity: usize,
    },
    /// The queue is shutting down; the job was dropped.
    #[error("the delivery queue was shut down before the notification was delivered")]
    Shutdown,
    /// This build does not carry the profile's channel (a cargo feature left out).
    #[error("this build of portcullis does not include the \"{feature}\" feature")]
    FeatureNotBuilt {
        /// The feature: `email`, `ip-notify` or `sip`.
        feature: &'static str,
    },
}

fn summary(failed: &[(String, NotifyError)]) -> String {
    failed.iter().map(|(target, e)| format!("{target}: {e}")).collect::<Vec<_>>().join("; ")
}

impl NotifyError {
    /// A stable machine-readable code, e.g. `connect_failed`, `call_busy`.
    pub fn code(&self) -> ErrorCode {
        match self {
            NotifyError::InvalidProfile(_) => ErrorCode::InvalidProfile,
            NotifyError::Connect { .. } => ErrorCode::ConnectFailed,
            NotifyError::Timeout { .. } => ErrorCode::Timeout,
            NotifyError::Tls { .. } => ErrorCode::TlsFailed,
            NotifyError::Io { .. } => ErrorCode::ConnectionFailed,
            NotifyError::SmtpRefused { .. } => ErrorCode::SmtpRefused,
            NotifyError::SmtpAuthUnavailable => ErrorCode::SmtpAuthUnavailable,
            NotifyError::StarttlsUnavailable => ErrorCode::StarttlsUnavailable,
            NotifyError::Smtp(_) => ErrorCode::SmtpFailed,
            NotifyError::HttpStatus { .. } => ErrorCode::HttpStatus,
            NotifyError::PartialDelivery { .. } => ErrorCode::PartialDelivery,
            NotifyError::AllFailed { .. } => ErrorCode::AllDestinationsFailed,
            NotifyError::CallBusy { .. } => ErrorCode::CallBusy,
            NotifyError::CallDeclined { .. } => ErrorCode::CallDeclined,
            NotifyError::NoAnswer { .. } => ErrorCode::NoAnswer,
            NotifyError::SipAuthFailed { .. } => ErrorCode::SipAuthFailed,
            NotifyError::SipRefused { .. } => ErrorCode::SipRefused,
            NotifyError::SipProtocol(_) => ErrorCode::SipProtocol,
            NotifyError::QueueFull { .. } => ErrorCode::QueueFull,
            NotifyError::Shutdown => ErrorCode::Shutdown,
            NotifyError::FeatureNotBuilt { .. } => ErrorCode::FeatureNotBuilt,
        }
    }

    /// Whether retrying the same delivery cannot help (a refusal, not an outage).
    pub fn is_permanent(&self) -> bool {
        match self {
            NotifyError::InvalidProfile(_)
            | NotifyError::SmtpAuthUnavailable
            | NotifyError::StarttlsUnavailable
            | NotifyError::CallDeclined { .. }
            | NotifyError::SipAuthFailed { .. }
            | NotifyError::QueueFull { .. }
            | NotifyError::Shutdown
            | NotifyError::FeatureNotBuilt { .. } => true,
            NotifyError::SmtpRefused { permanent, .. } => *permanent,
            // 4xx other than "timeout" and "too many requests" will not change on a retry.
            NotifyError::HttpStatus { status, .. } => {
                (400..500).contains(status) && !matches!(status, 408 | 429)
            }
            NotifyError::AllFailed { failed } => failed.iter().all(|(_, e)| e.is_permanent()),
            _ => false,
        }
    }
}

/// Cuts a peer's text to one short printable line.
#[cfg_attr(not(any(feature = "email", feature = "ip-notify", feature = "sip")), allow(dead_code))]
pub(crate) fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect::<String>()
        .trim()
        .to_string();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_permanence() {
        let e = NotifyError::CallBusy { code: 486, reason: "Busy Here".into() };
        assert_eq!(e.code(), "call_busy");
        assert!(!e.is_permanent(), "busy may be free on the next attempt");
        assert!(NotifyError::CallDeclined { code: 603, reason: "Decline".into() }.is_permanent());
        assert!(NotifyError::HttpStatus { target: "a:1".into(), status: 404 }.is_permanent());
        assert!(!NotifyError::HttpStatus { target: "a:1".into(), status: 503 }.is_permanent());
        let partial = NotifyError::PartialDelivery {
            delivered: vec!["a:1".into()],
            delivered_count: 1,
            total: 2,
            failed: vec![(
                "b:2".into(),
                NotifyError::Timeout { target: "b:2".into(), stage: "connect".into() },
            )],
        };
        assert_eq!(
            partial.to_string(),
            "delivered to 1 of 2 destinations; failed: b:2: b:2 did not answer in time (connect)"
        );
    }

    #[test]
    fn one_line_cuts_control_characters_and_length() {
        assert_eq!(one_line("a\r\nb"), "a  b");
        assert_eq!(one_line(&"x".repeat(300)).chars().count(), 201);
    }
}

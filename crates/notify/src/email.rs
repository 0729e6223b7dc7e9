//! E-mail alerts over SMTP, with the web server logfile attached.
//!
//! Built on `lettre` (well kept, async, rustls with the build's crypto provider).
//! STARTTLS is *required* when the profile asks for it: a server that does
//! not offer it fails the delivery instead of silently downgrading to clear
//! text. Certificates are always verified, against the profile's `ca_pem`
//! alone when it is given, else against the system's trust store.

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portcullis_core::alert::{AlertContext, render};
use portcullis_core::profiles::{EmailProfile, EmailSecurity};

use crate::error::one_line;
use crate::{Delivery, IO_TIMEOUT, NotifyError, within_for};

/// File name of the logfile attachment.
pub const LOGFILE_ATTACHMENT: &str = "webserver-log.txt";

/// Longest a whole SMTP conversation may take; each step also has [`IO_TIMEOUT`].
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Mails the alert described by `ctx` as `profile` says, with `logfile_text`
/// attached as `webserver-log.txt`.
pub async fn send_email(
    profile: &EmailProfile,
    ctx: &AlertContext,
    logfile_text: &str,
) -> Result<Delivery, NotifyError> {
    let message = build_message(profile, ctx, logfile_text)?;
    let transport = transport(profile)?;
    let target = format!("{}:{}", profile.server, profile.effective_port());
    let response = within_for(SMTP_TIMEOUT, &target, "SMTP conversation", transport.send(message))
        .await?
        .map_err(|e| smtp_error(&e, &target))?;
    tracing::debug!(target = %target, code = %response.code(), "e-mail accepted");
    Ok(Delivery {
        summary: format!("mailed to {} via {target}", profile.to.join(", ")),
        reached: profile.to.clone(),
    })
}

/// The message: rendered subject and body, and the logfile as a plain-text attachment.
pub fn build_message(
    profile: &EmailProfile,
    ctx: &AlertContext,
    logfile_text: &str,
) -> Result<Message, NotifyError> {
    let mailbox = |field: &str, text: &str| {
        text.parse::<Mailbox>().map_err(|e| {
            NotifyError::InvalidProfile(format!("{field} \"{}\" is not an address: {e}", one_line(text)))
        })
    };
    let from = mailbox("from", &profile.from)?;
    // RFC 5322 §3.6.4: every message should carry a unique Message-ID (mail
    // filters and threading rely on it); random on the left, the sender's
    // domain on the right, which the device may speak for.
    let message_id = format!("<{}@{}>", hex::encode(rand::random::<[u8; 16]>()), from.email.domain());
    let mut builder =
        Message::builder().from(from).message_id(Some(message_id)).subject(render(&profile.subject, ctx));
    if profile.to.is_empty() {
        return Err(NotifyError::InvalidProfile("the profile has no recipient".to_string()));
    }
    for to in &profile.to {
        builder = builder.to(mailbox("to", to)?);
    }
    let body = render(&profile.body, ctx);
    let attachment = Attachment::new(LOGFILE_ATTACHMENT.to_string())
        .body(logfile_text.to_string(), ContentType::TEXT_PLAIN);
    builder
        .multipart(MultiPart::mixed().singlepart(SinglePart::plain(body)).singlepart(attachment))
        .map_err(|e| NotifyError::InvalidProfile(format!("cannot build the message: {e}")))
}

fn transport(profile: &EmailProfile) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifyError> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(profile.server.as_str())
        .port(profile.effective_port())
        .timeout(Some(IO_TIMEOUT));
    builder = match profile.security {
        EmailSecurity::None => builder.tls(Tls::None),
        EmailSecurity::Starttls => builder.tls(Tls::Required(tls_parameters(profile)?)),
        EmailSecurity::Tls => builder.tls(Tls::Wrapper(tls_parameters(profile)?)),
    };
    if let Some(user) = &profile.username {
        let password = profile.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}

fn tls_parameters(profile: &EmailProfile) -> Result<TlsParameters, NotifyError> {
    let mut builder = TlsParameters::builder(profile.server.clone());
    if let Some(pem) = &profile.ca_pem {
        // Checked first by the core's rule, for an error message that says what is wrong.
        crate::tls::parse_ca_pem(pem)?;
        let cert = Certificate::from_pem(pem.as_bytes())
            .map_err(|e| NotifyError::InvalidProfile(format!("ca_pem: {e}")))?;
        builder = builder.certificate_store(CertificateStore::None).add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| NotifyError::InvalidProfile(format!("TLS configuration: {e}")))
}

/// Turns lettre's error into one an operator can act on.
fn smtp_error(e: &lettre::transport::smtp::Error, target: &str) -> NotifyError {
    let text = one_line(&portcullis_core::error::error_chain(e));
    if e.is_timeout() {
        return NotifyError::Timeout { target: target.to_string(), stage: "SMTP".to_string() };
    }
    if e.status().is_some() {
        return NotifyError::SmtpRefused { reason: text, permanent: e.is_permanent() };
    }
    if text.contains("No compatible authentication mechanism") {
        return NotifyError::SmtpAuthUnavailable;
    }
    if text.contains("STARTTLS is not supported") {
        return NotifyError::StarttlsUnavailable;
    }
    let lower = text.to_ascii_lowercase();
    if e.is_tls() || lower.contains("certificate") || lower.contains("handshake") || lower.contains("tls") {
        return NotifyError::Tls { target: target.to_string(), reason: text };
    }
    if lower.contains("refused")
        || lower.contains("unreachable")
        || lower.contains("failed to lookup")
        || lower.contains("name or service")
    {
        return NotifyError::Connect { target: target.to_string(), reason: text };
    }
    NotifyError::Smtp(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> AlertContext {
        AlertContext {
            device: "cam-1".into(),
            event: "intrusion_alert".into(),
            message: "6 failed logins".into(),
            client_ip: Some("192.0.2.9".parse().expect("ip")),
            user: Some("root".into()),
            count: 6,
            time: time::macros::datetime!(2026-01-02 03:04:05 UTC),
        }
    }

    #[test]
    fn message_has_rendered_subject_and_logfile_attachment() {
        let profile = EmailProfile {
            server: "mail.example.com".into(),
            from: "cam@example.com".into(),
            to: vec!["a@example.com".into(), "b@example.com".into()],
            subject: "Alert from {device}: {count} x {user}".into(),
            ..Default::default()
        };
        let message = build_message(&profile, &ctx(), "192.0.2.9 root 6 failed\n").expect("message");
        let text = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(text.contains("Subject: Alert from cam-1: 6 x root"), "{text}");
        assert!(text.contains("To: a@example.com, b@example.com"), "{text}");
        assert!(text.contains("filename=\"webserver-log.txt\""), "{text}");
        assert!(text.contains("192.0.2.9 root 6 failed"), "{text}");
        // A Message-ID of its own, on the sender's domain.
        let id = |text: &str| {
            text.lines().find_map(|l| l.strip_prefix("Message-ID: ")).map(str::to_string).expect("Message-ID")
        };
        let first = id(&text);
        assert!(first.starts_with('<') && first.ends_with("@example.com>"), "{first}");
        let again = build_message(&profile, &ctx(), "").expect("message");
        assert_ne!(id(&String::from_utf8(again.formatted()).expect("utf-8")), first, "unique per message");
    }

    #[test]
    fn bad_addresses_are_invalid_profiles() {
        let profile =
            EmailProfile { from: "not an address".into(), to: vec!["a@b.c".into()], ..Default::default() };
        let e = build_message(&profile, &ctx(), "").expect_err("refused");
        assert_eq!(e.code(), "invalid_profile");
    }
}

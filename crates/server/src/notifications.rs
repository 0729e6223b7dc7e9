//! Alerts to the notification profiles (SPEC §6): a bounded queue with
//! retries that never blocks request handling, every outcome in the event log.
//!
//! What bounds it: the deadtime limits alerts to one per `deadtime_minutes`
//! (unless 0); each alert queues at most one job per kind of profile (three);
//! the queue holds at most 64 jobs (a full queue refuses the job and logs it);
//! at most 4 deliveries run at once; each has 4 attempts with 1 s, 4 s, 16 s
//! of backoff and a bounded time per attempt.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::Clock;
use portcullis_core::alert::AlertContext;
use portcullis_core::config::Config;
use portcullis_core::events::EventKind;
use portcullis_notify::{DeliveryQueue, Job, Notification, Outcome, QueueConfig, RetryPolicy};

use crate::security::Security;

/// The device's name in notifications: its host name.
pub fn device_name() -> String {
    gethostname::gethostname().into_string().unwrap_or_else(|_| "portcullis".into())
}

/// Sends alerts through the queue.
#[derive(Debug, Clone)]
pub struct Notifier {
    queue: DeliveryQueue,
    security: Arc<Security>,
    clock: Arc<dyn Clock>,
}

impl Notifier {
    /// A notifier on the current runtime; `first_retry` is the first backoff delay.
    pub fn new(security: Arc<Security>, clock: Arc<dyn Clock>, first_retry: Duration) -> Self {
        let (report_security, report_clock) = (security.clone(), clock.clone());
        let config = QueueConfig {
            retry: RetryPolicy { first_delay: first_retry, ..RetryPolicy::default() },
            ..QueueConfig::default()
        };
        let queue = DeliveryQueue::new(config, tokio::runtime::Handle::current(), move |outcome: Outcome| {
            record_outcome(&report_security, report_clock.now(), &outcome);
        });
        Self { queue, security, clock }
    }

    /// Queues the alert `ctx` to every profile the intrusion detection settings select.
    pub fn alert(&self, config: &Config, ctx: AlertContext) {
        let id = &config.webserver.intrusion_detection;
        let p = &config.profiles;
        let mut jobs = Vec::new();
        if let Some(name) = &id.email_profile
            && let Some(profile) = p.email.get(name)
        {
            // The logfile is always attached (as the seed does), as it is now.
            let logfile_text = self.security.logfile_text();
            jobs.push((name.clone(), Notification::Email { profile: profile.clone(), logfile_text }));
        }
        if let Some(name) = &id.ip_notify_profile
            && let Some(profile) = p.ip_notify.get(name)
        {
            jobs.push((name.clone(), Notification::IpNotify(profile.clone())));
        }
        if let Some(name) = &id.phone_profile
            && let Some(profile) = p.phone.get(name)
        {
            jobs.push((name.clone(), Notification::Phone(profile.clone())));
        }
        for (profile_name, notification) in jobs {
            // A full queue reports the refusal through the reporter itself.
            let _ = self.queue.try_enqueue(Job { profile_name, notification, context: ctx.clone() });
        }
    }

    /// Sends one test notification now (one attempt) and reports it in the event log.
    pub async fn test(
        &self,
        profile_name: &str,
        notification: Notification,
        ctx: AlertContext,
    ) -> Result<String, portcullis_notify::NotifyError> {
        let kind = notification.kind();
        let result =
            tokio::time::timeout(Duration::from_secs(90), portcullis_notify::deliver(&notification, &ctx))
                .await
                .unwrap_or(Err(portcullis_notify::NotifyError::Timeout {
                    target: profile_name.to_string(),
                    stage: "test notification".into(),
                }));
        let outcome = Outcome {
            job_id: 0,
            profile_name: profile_name.to_string(),
            kind,
            context: ctx,
            attempts: 1,
            result: result.clone(),
        };
        record_outcome(&self.security, self.clock.now(), &outcome);
        result.map(|d| d.summary)
    }

    /// Jobs not finished yet.
    pub fn pending(&self) -> usize {
        self.queue.pending()
    }
}

fn record_outcome(security: &Security, now: time::OffsetDateTime, outcome: &Outcome) {
    let kind = outcome.kind.as_str();
    let details = |code: Option<portcullis_core::ErrorCode>| {
        serde_json::json!({
            "profile": outcome.profile_name, "kind": kind, "attempts": outcome.attempts,
            "event": outcome.context.event, "code": code,
        })
    };
    match &outcome.result {
        Ok(d) => {
            security.event(
                now,
                EventKind::NotificationSent,
                None,
                format!(
                    "{kind} profile \"{}\": {} ({} attempt(s))",
                    outcome.profile_name, d.summary, outcome.attempts
                ),
                details(None),
            );
        }
        Err(e) => {
            tracing::warn!(profile = %outcome.profile_name, kind, error = %e, "notification failed");
            security.event(
                now,
                EventKind::NotificationFailed,
                None,
                format!(
                    "{kind} profile \"{}\" failed after {} attempt(s): {e}",
                    outcome.profile_name, outcome.attempts
                ),
                details(Some(e.code())),
            );
        }
    }
}

//! The delivery queue: notifications leave request handling at once and are
//! delivered in the background, with retries and exponential backoff; every
//! outcome is reported.
//!
//! # Bounds
//!
//! An attack must not grow the queue without limit. Alerts are already
//! rate-limited by the deadtime; on top of that:
//! - at most [`QueueConfig::capacity`] jobs exist at once, counting those
//!   waiting, being delivered and sleeping before a retry; a job offered to
//!   a full queue is dropped and reported ([`NotifyError::QueueFull`]);
//! - at most [`QueueConfig::concurrency`] deliveries run at once;
//! - each job makes at most [`RetryPolicy::attempts`] attempts, each bounded
//!   by [`RetryPolicy::attempt_timeout`].
//!
//! So the queue holds at most `capacity` jobs for at most
//! `attempts × attempt_timeout + sum of the delays` each.

use portable_atomic::AtomicU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_core::alert::AlertContext;
use portcullis_core::profiles::{EmailProfile, IpNotifyProfile, PhoneProfile};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, watch};

use crate::{Delivery, NotifyError};

/// The kind of a notification profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileKind {
    /// An e-mail profile.
    Email,
    /// An IP Notify profile.
    IpNotify,
    /// A phone profile.
    Phone,
}

impl ProfileKind {
    /// The build feature that carries this channel (`email`, `ip-notify`, `sip`).
    pub fn feature(self) -> &'static str {
        match self {
            ProfileKind::Email => "email",
            ProfileKind::IpNotify => "ip-notify",
            ProfileKind::Phone => "sip",
        }
    }

    /// Whether this build carries the channel.
    pub fn built(self) -> bool {
        crate::CHANNELS_BUILT.contains(&self.feature())
    }

    /// The name used in the configuration and the API (`email`, `ip_notify`, `phone`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Email => "email",
            ProfileKind::IpNotify => "ip_notify",
            ProfileKind::Phone => "phone",
        }
    }
}

/// What to send: a profile of one kind, with what it needs.
#[derive(Debug, Clone)]
pub enum Notification {
    /// An e-mail, with the web server logfile to attach.
    Email {
        /// The profile.
        profile: EmailProfile,
        /// The logfile as plain text, attached as `webserver-log.txt`.
        logfile_text: String,
    },
    /// A network message.
    IpNotify(IpNotifyProfile),
    /// A phone call.
    Phone(PhoneProfile),
}

impl Notification {
    /// The profile kind.
    pub fn kind(&self) -> ProfileKind {
        match self {
            Notification::Email { .. } => ProfileKind::Email,
            Notification::IpNotify(_) => ProfileKind::IpNotify,
            Notification::Phone(_) => ProfileKind::Phone,
        }
    }
}

/// Sends one notification now (one attempt, no retry): what the queue does
/// per attempt, and what a profile's "send test" action can await.
pub async fn deliver(notification: &Notification, ctx: &AlertContext) -> Result<Delivery, NotifyError> {
    // A channel left out of the build fails here, so that a profile kept in
    // a configuration from a fuller build says why it sends nothing.
    let not_built = || NotifyError::FeatureNotBuilt { feature: notification.kind().feature() };
    match notification {
        #[cfg(feature = "email")]
        Notification::Email { profile, logfile_text } => crate::send_email(profile, ctx, logfile_text).await,
        #[cfg(feature = "ip-notify")]
        Notification::IpNotify(profile) => crate::send_ip_notify(profile, ctx).await,
        #[cfg(feature = "sip")]
        Notification::Phone(profile) => crate::place_call(profile, ctx).await,
        #[allow(unreachable_patterns)]
        _ => {
            let _ = ctx;
            Err(not_built())
        }
    }
}

/// One job for the queue.
#[derive(Debug, Clone)]
pub struct Job {
    /// Name of the profile, for the report.
    pub profile_name: String,
    /// What to send.
    pub notification: Notification,
    /// What happened (the placeholder values).
    pub context: AlertContext,
}

/// The end of a job: delivered, or failed with the reason.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The id [`DeliveryQueue::try_enqueue`] gave the job (0 for a job refused by a full queue).
    pub job_id: u64,
    /// Name of the profile.
    pub profile_name: String,
    /// Kind of the profile.
    pub kind: ProfileKind,
    /// What the notification was about.
    pub context: AlertContext,
    /// Attempts made (0 when the job was never started).
    pub attempts: u32,
    /// The delivery, or the last error.
    pub result: Result<Delivery, NotifyError>,
}

/// How often and when a failed delivery is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt.
    pub first_delay: Duration,
    /// Each further delay is the previous one times this.
    pub factor: u32,
    /// Longest one attempt may take.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts: at once, then after 1 s, 4 s and 16 s; 2 minutes per attempt
    /// (a call may ring for up to 120 s).
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_secs(1),
            factor: 4,
            attempt_timeout: Duration::from_secs(180),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `n` (1-based).
    pub fn delay_after(&self, n: u32) -> Duration {
        self.first_delay.saturating_mul(self.factor.max(1).saturating_pow(n.saturating_sub(1)))
    }
}

/// Size and behaviour of a [`DeliveryQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most jobs at once (waiting, running or between retries).
    pub capacity: usize,
    /// Most deliveries running at once.
    pub concurrency: usize,
    /// Retries and backoff.
    pub retry: RetryPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { capacity: 64, concurrency: 4, retry: RetryPolicy::default() }
    }
}

/// Receives every outcome; called from the queue's tasks, so it must not block.
pub type Reporter = Arc<dyn Fn(Outcome) + Send + Sync>;

/// The bounded background delivery queue. Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct DeliveryQueue {
    inner: Arc<Inner>,
}

struct Inner {
    config: QueueConfig,
    handle: Handle,
    pending: AtomicUsize,
    next_id: AtomicU64,
    running: Arc<Semaphore>,
    report: Reporter,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for DeliveryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryQueue")
            .field("config", &self.inner.config)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl DeliveryQueue {
    /// A queue whose deliveries run on `handle`, reporting each outcome to `report`.
    pub fn new(
        config: QueueConfig,
        handle: Handle,
        report: impl Fn(Outcome) + Send + Sync + 'static,
    ) -> Self {
        let running = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let (shutdown, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                config,
                handle,
                pending: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                running,
                report: Arc::new(report),
                shutdown,
            }),
        }
    }

    /// Jobs not finished yet.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::SeqCst)
    }

    /// The configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// Queues `job` without waiting and returns its id; a full or shut-down
    /// queue drops the job, reports it as failed, and says so.
    pub fn try_enqueue(&self, job: Job) -> Result<u64, NotifyError> {
        let inner = &self.inner;
        let refused = if *inner.shutdown.borrow() {
            Some(NotifyError::Shutdown)
        } else {
            let capacity = inner.config.capacity;
            let taken = inner
                .pending
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < capacity).then_some(n + 1));
            taken.is_err().then_some(NotifyError::QueueFull { capacity })
        };
        if let Some(error) = refused {
            tracing::warn!(profile = %job.profile_name, kind = job.notification.kind().as_str(), "{error}");
            (inner.report)(Outcome {
                job_id: 0,
                profile_name: job.profile_name,
                kind: job.notification.kind(),
                context: job.context,
                attempts: 0,
                result: Err(error.clone()),
            });
            return Err(error);
        }
        let id = inner.next_id.fetch_add(1, Ordering::SeqCst);
        let task_inner = self.inner.clone();
        inner.handle.spawn(async move { run(task_inner, id, job).await });
        Ok(id)
    }

    /// Stops the queue: no new jobs; jobs waiting or between retries end as
    /// failed ([`NotifyError::Shutdown`]); a delivery in progress ends with its attempt.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

async fn run(inner: Arc<Inner>, id: u64, job: Job) {
    let policy = &inner.config.retry;
    let kind = job.notification.kind();
    let mut notification = job.notification;
    let mut shutdown = inner.shutdown.subscribe();
    let mut attempts = 0;
    // IP Notify destinations reached by earlier attempts, not sent to again.
    let mut reached_before: Vec<String> = Vec::new();
    let result = loop {
        if *shutdown.borrow() {
            break Err(NotifyError::Shutdown);
        }
        let permit = tokio::select! {
            permit = inner.running.clone().acquire_owned() => permit,
            _ = shutdown.changed() => break Err(NotifyError::Shutdown),
        };
        attempts += 1;
        let attempt =
            tokio::time::timeout(policy.attempt_timeout, deliver(&notification, &job.context)).await;
        drop(permit);
        let error = match attempt {
            Ok(Ok(mut delivery)) => {
                if !reached_before.is_empty() {
                    delivery.summary =
                        format!("{} (earlier: {})", delivery.summary, reached_before.join(", "));
                    reached_before.append(&mut delivery.reached);
                    delivery.reached = reached_before;
                }
                break Ok(delivery);
            }
            Ok(Err(e)) => e,
            Err(_) => {
                NotifyError::Timeout { target: job.profile_name.clone(), stage: "whole delivery".into() }
            }
        };
        if error.is_permanent() || attempts >= policy.attempts.max(1) {
            break Err(error);
        }
        // Retry only the destinations that failed, so nobody gets the message twice.
        if let (Notification::IpNotify(profile), NotifyError::PartialDelivery { delivered, failed, .. }) =
            (&mut notification, &error)
        {
            reached_before.extend(delivered.iter().cloned());
            profile.destinations = failed.iter().map(|(d, _)| d.clone()).collect();
        }
        let delay = policy.delay_after(attempts);
        tracing::info!(
            profile = %job.profile_name, kind = kind.as_str(), attempt = attempts, code = error.code().as_str(),
            "notification failed, retrying in {delay:?}: {error}"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break Err(error),
        }
    };
    match &result {
        Ok(d) => tracing::info!(profile = %job.profile_name, kind = kind.as_str(), attempts, "{}", d.summary),
        Err(e) => {
            tracing::warn!(profile = %job.profile_name, kind = kind.as_str(), attempts, code = e.code().as_str(), "notification failed: {e}")
        }
    }
    inner.pending.fetch_sub(1, Ordering::SeqCst);
    (inner.report)(Outcome {
        job_id: id,
        profile_name: job.profile_name,
        kind,
        context: job.context,
        attempts,
        result,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_is_1_4_16_seconds() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (1..p.attempts).map(|n| p.delay_after(n).as_secs()).collect();
        assert_eq!(delays, vec![1, 4, 16]);
    }
}

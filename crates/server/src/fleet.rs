//! The fleet integrations of a running server (README "Fleets"): the
//! Prometheus registry, the syslog exporter and the CrowdSec bouncer and
//! signaller of `portcullis-fleet`, started and replaced as the running
//! `syslog` and `crowdsec` settings change (the runtime calls
//! [`Fleet::apply`] on its one change path).
//!
//! A leaf: it imports nothing of this crate; what the integrations report
//! comes back through the observers the caller passes in.

#[cfg(feature = "crowdsec")]
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use portcullis_core::Clock;
use portcullis_core::config::Config;
use portcullis_core::events::Event;
use portcullis_fleet::SetupError;

/// What the integrations report to (the event log and metrics).
pub trait FleetObserver: Send + Sync {
    /// The syslog observer.
    #[cfg(feature = "syslog")]
    fn syslog(&self) -> Arc<dyn portcullis_fleet::syslog::SyslogObserver>;
    /// The CrowdSec observer.
    #[cfg(feature = "crowdsec")]
    fn crowdsec(&self) -> Arc<dyn portcullis_fleet::crowdsec::CrowdSecObserver>;
}

#[cfg(feature = "syslog")]
struct SyslogRun {
    settings: portcullis_core::syslog::SyslogSettings,
    exporter: portcullis_fleet::syslog::SyslogExporter,
}

#[cfg(feature = "crowdsec")]
struct CrowdSecRun {
    settings: portcullis_core::crowdsec::CrowdSecSettings,
    _bouncer: portcullis_fleet::crowdsec::Bouncer,
    signaller: Option<portcullis_fleet::crowdsec::Signaller>,
}

/// The integrations of one server.
pub struct Fleet {
    #[cfg_attr(not(any(feature = "syslog", feature = "crowdsec")), allow(dead_code))]
    clock: Arc<dyn Clock>,
    /// Whether the integrations run: only a serving server sends and polls
    /// (an offline change of the command line starts nothing).
    serving: AtomicBool,
    #[cfg(feature = "metrics")]
    metrics: portcullis_fleet::metrics::Metrics,
    #[cfg(feature = "syslog")]
    syslog: std::sync::Mutex<Option<SyslogRun>>,
    #[cfg(feature = "crowdsec")]
    decisions: portcullis_fleet::crowdsec::SharedDecisions,
    #[cfg(feature = "crowdsec")]
    crowdsec: std::sync::Mutex<Option<CrowdSecRun>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("serving", &self.serving.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(any(feature = "syslog", feature = "crowdsec"))]
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Fleet {
    /// Nothing running yet; `features` are the build's (for `build_info`).
    pub fn new(clock: Arc<dyn Clock>, version: &str, features: &[&str]) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = (version, features);
        Self {
            clock,
            serving: AtomicBool::new(false),
            #[cfg(feature = "metrics")]
            metrics: portcullis_fleet::metrics::Metrics::new(version, features),
            #[cfg(feature = "syslog")]
            syslog: std::sync::Mutex::new(None),
            #[cfg(feature = "crowdsec")]
            decisions: Arc::new(std::sync::RwLock::new(portcullis_core::crowdsec::DecisionSet::new(
                portcullis_core::crowdsec::DEFAULT_MAX_DECISIONS as usize,
            ))),
            #[cfg(feature = "crowdsec")]
            crowdsec: std::sync::Mutex::new(None),
        }
    }

    /// The metrics registry.
    #[cfg(feature = "metrics")]
    pub fn metrics(&self) -> &portcullis_fleet::metrics::Metrics {
        &self.metrics
    }

    /// Makes the integrations follow `config` (a serving server only): an
    /// integration whose settings did not change keeps running; a changed
    /// one is started anew and the old one stopped. Settings that cannot be
    /// used (a CA that is not PEM, say) refuse the change, naming the field.
    pub fn apply(
        &self,
        config: &Config,
        hostname: &str,
        observer: &dyn FleetObserver,
    ) -> Result<(), SetupError> {
        if !self.serving.load(Ordering::Relaxed) {
            return Ok(());
        }
        #[cfg(not(any(feature = "syslog", feature = "crowdsec")))]
        let _ = (config, observer);
        #[cfg(not(feature = "syslog"))]
        let _ = hostname;
        // Both are checked before either is replaced: a change is whole or nothing.
        #[cfg(feature = "syslog")]
        let syslog = self.prepare_syslog(&config.syslog, hostname, observer)?;
        #[cfg(feature = "crowdsec")]
        let crowdsec = self.prepare_crowdsec(&config.crowdsec, observer)?;
        #[cfg(feature = "syslog")]
        if let Some(new) = syslog
            && let Some(old) = std::mem::replace(&mut *lock(&self.syslog), new)
        {
            old.exporter.stop();
        }
        #[cfg(feature = "crowdsec")]
        if let Some(new) = crowdsec {
            let stopped = new.is_none();
            drop(std::mem::replace(&mut *lock(&self.crowdsec), new));
            if stopped {
                // Switched off: nothing of CrowdSec is enforced any more.
                self.decisions.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
            }
        }
        Ok(())
    }

    /// Starts the integrations of `config` (when the server starts serving).
    pub fn start(&self, config: &Config, hostname: &str, observer: &dyn FleetObserver) {
        self.serving.store(true, Ordering::Relaxed);
        if let Err(e) = self.apply(config, hostname, observer) {
            tracing::error!(error = %e, "a fleet integration cannot start with the stored settings");
        }
    }

    /// `Some(new run)` when the settings changed (`Some(None)`: switched off).
    #[cfg(feature = "syslog")]
    fn prepare_syslog(
        &self,
        settings: &portcullis_core::syslog::SyslogSettings,
        hostname: &str,
        observer: &dyn FleetObserver,
    ) -> Result<Option<Option<SyslogRun>>, SetupError> {
        let current = lock(&self.syslog).as_ref().map(|r| r.settings.clone());
        let wanted = settings.enabled && !settings.destinations.is_empty();
        match current {
            Some(c) if wanted && c == *settings => return Ok(None),
            None if !wanted => return Ok(None),
            _ => {}
        }
        if !wanted {
            return Ok(Some(None));
        }
        let exporter = portcullis_fleet::syslog::SyslogExporter::start(
            settings,
            hostname,
            self.clock.clone(),
            Arc::new(portcullis_fleet::RandomJitter),
            observer.syslog(),
        )
        .map_err(|e| SetupError { field: format!("syslog.{}", e.field), message: e.message })?;
        Ok(Some(Some(SyslogRun { settings: settings.clone(), exporter })))
    }

    #[cfg(feature = "crowdsec")]
    fn prepare_crowdsec(
        &self,
        settings: &portcullis_core::crowdsec::CrowdSecSettings,
        observer: &dyn FleetObserver,
    ) -> Result<Option<Option<CrowdSecRun>>, SetupError> {
        use portcullis_fleet::crowdsec::{Bouncer, LapiClient, Signaller};
        let current = lock(&self.crowdsec).as_ref().map(|r| r.settings.clone());
        match current {
            Some(c) if settings.enabled && c == *settings => return Ok(None),
            None if !settings.enabled => return Ok(None),
            _ => {}
        }
        if !settings.enabled {
            return Ok(Some(None));
        }
        let client = Arc::new(
            LapiClient::new(settings, env!("CARGO_PKG_VERSION"))
                .map_err(|e| SetupError { field: format!("crowdsec.{}", e.field), message: e.message })?,
        );
        let capacity = usize::try_from(settings.max_decisions).unwrap_or(usize::MAX);
        {
            let mut set = self.decisions.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if set.capacity() != capacity {
                *set = portcullis_core::crowdsec::DecisionSet::new(capacity);
            }
        }
        let obs = observer.crowdsec();
        let bouncer = Bouncer::start(
            client.clone(),
            settings.poll_interval(),
            self.decisions.clone(),
            self.clock.clone(),
            obs.clone(),
        );
        let signaller = settings.signals().then(|| Signaller::start(client, obs));
        Ok(Some(Some(CrowdSecRun { settings: settings.clone(), _bouncer: bouncer, signaller })))
    }

    /// Sends an event of the event log to the syslog collectors.
    pub fn event(&self, event: &Event) {
        #[cfg(feature = "syslog")]
        if let Some(run) = lock(&self.syslog).as_ref() {
            run.exporter.send_event(event);
        }
        #[cfg(not(feature = "syslog"))]
        let _ = event;
    }

    /// Sends an access the web server logfile records, if the syslog settings ask for it.
    pub fn access(
        &self,
        time: time::OffsetDateTime,
        ip: std::net::IpAddr,
        user: Option<&str>,
        authorized: bool,
        url: &str,
    ) {
        #[cfg(feature = "syslog")]
        if let Some(run) = lock(&self.syslog).as_ref()
            && run.exporter.includes_logfile()
        {
            run.exporter
                .send(&portcullis_core::syslog::SyslogRecord::of_access(time, ip, user, authorized, url));
        }
        #[cfg(not(feature = "syslog"))]
        let _ = (time, ip, user, authorized, url);
    }

    /// Whether a CrowdSec ban covers `ip` now.
    #[cfg(feature = "crowdsec")]
    pub fn banned(&self, ip: IpAddr) -> bool {
        self.decisions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_banned(ip, self.clock.monotonic())
    }

    /// The decisions enforced now (`/api/v1/blocked`).
    #[cfg(feature = "crowdsec")]
    pub fn bans(&self) -> Vec<portcullis_core::crowdsec::BannedClient> {
        self.decisions.read().unwrap_or_else(std::sync::PoisonError::into_inner).list(self.clock.timestamp())
    }

    /// The CrowdSec decision set, for the connection check.
    #[cfg(feature = "crowdsec")]
    pub fn decisions(&self) -> &portcullis_fleet::crowdsec::SharedDecisions {
        &self.decisions
    }

    /// Shares a local block with the fleet (when machine credentials are set).
    #[cfg(feature = "crowdsec")]
    /// The ban's length comes from the settings (`ban_seconds`).
    pub fn block(&self, mut facts: portcullis_core::crowdsec::BlockFacts) {
        let run = lock(&self.crowdsec);
        if let Some(run) = run.as_ref()
            && let Some(signaller) = run.signaller.as_ref()
        {
            facts.ban = std::time::Duration::from_secs(u64::from(run.settings.ban_seconds));
            signaller.block(facts);
        }
    }

    /// The monotonic clock's now, for the decision set.
    #[cfg(feature = "crowdsec")]
    pub fn monotonic(&self) -> portcullis_core::Monotonic {
        self.clock.monotonic()
    }

    /// Sets the gauges read at a scrape: messages waiting per syslog collector.
    #[cfg(feature = "metrics")]
    pub fn refresh_gauges(&self) {
        #[cfg(feature = "syslog")]
        if let Some(run) = lock(&self.syslog).as_ref() {
            for d in run.exporter.stats() {
                self.metrics
                    .syslog_queued
                    .get_or_create(&portcullis_fleet::metrics::DestinationLabel {
                        destination: d.destination,
                    })
                    .set(i64::try_from(d.queued).unwrap_or(i64::MAX));
            }
        }
    }

    /// Counts a request answered with `status` on the listener `port` (`tls`).
    pub fn request(&self, port: u16, tls: bool, status: u16) {
        #[cfg(feature = "metrics")]
        self.metrics.request(&listener_name(port, tls), status);
        #[cfg(not(feature = "metrics"))]
        let _ = (port, tls, status);
    }

    /// Counts a TLS handshake, completed or failed.
    pub fn handshake(&self, completed: bool) {
        #[cfg(feature = "metrics")]
        self.metrics
            .tls_handshakes
            .get_or_create(&portcullis_fleet::metrics::ResultLabel {
                result: if completed { "completed" } else { "failed" },
            })
            .inc();
        #[cfg(not(feature = "metrics"))]
        let _ = completed;
    }

    /// Counts a connection open on the listener `port` (`tls`) until the
    /// returned guard is dropped.
    pub fn connection(self: &Arc<Self>, port: u16, tls: bool) -> OpenConnection {
        #[cfg(feature = "metrics")]
        {
            let label = portcullis_fleet::metrics::ListenerLabel { listener: listener_name(port, tls) };
            self.metrics.connections_open.get_or_create(&label).inc();
            OpenConnection { fleet: self.clone(), label }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = (port, tls);
            OpenConnection
        }
    }

    /// Counts an alert of `channel` (`email`, `ip_notify`, `phone`), sent or failed.
    pub fn alert(&self, channel: &str, sent: bool) {
        #[cfg(feature = "metrics")]
        self.metrics
            .alerts
            .get_or_create(&portcullis_fleet::metrics::AlertLabels {
                channel: channel.to_string(),
                result: if sent { "sent" } else { "failed" },
            })
            .inc();
        #[cfg(not(feature = "metrics"))]
        let _ = (channel, sent);
    }
}

/// A listener's name in the metrics: `http:80`, `https:443`.
#[cfg(feature = "metrics")]
fn listener_name(port: u16, tls: bool) -> String {
    format!("{}:{port}", if tls { "https" } else { "http" })
}

/// A connection counted in `connections_open` while it lives.
#[cfg(feature = "metrics")]
pub struct OpenConnection {
    fleet: Arc<Fleet>,
    label: portcullis_fleet::metrics::ListenerLabel,
}

/// A connection (nothing is counted in this build).
#[cfg(not(feature = "metrics"))]
pub struct OpenConnection;

#[cfg(feature = "metrics")]
impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.fleet.metrics.connections_open.get_or_create(&self.label).dec();
    }
}

//! The running state and the one apply path every change takes: build the
//! new state, validate it, open what it needs, swap, then close what the old
//! state had — and change nothing if any step fails.
//!
//! Layers (SPEC §2): factory (built in), stored (on disk), running (here).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use portcullis_core::access_control::{AccessControlSettings, Decision};
use portcullis_core::config::Config;
use portcullis_core::events::EventKind;
use portcullis_core::{Clock, ValidationError};
use serde::Serialize;
use time::OffsetDateTime;

use crate::auth::Authenticator;
use crate::certs::{CertStoreError, CertificateView, Certificates};
use crate::conn::Limits;
use crate::notifications::Notifier;
use crate::ports::{BindError, ListenerSet};
use crate::security::Security;
use crate::store::{ConfigLoadReport, Store, StoreError};
use portcullis_core::settings::{HttpPort, ListenerSpec, Via};

/// Ports given on the command line; they replace the configured ones whenever
/// the running configuration is loaded from the stored one (start, Reboot, Restore).
#[derive(Debug, Clone, Default)]
pub struct PortOverrides {
    /// HTTP ports to use instead of the configured ones (and HTTP switched on).
    pub http_ports: Option<Vec<u16>>,
    /// HTTPS port to use instead of the configured one (and HTTPS switched on).
    pub https_port: Option<u16>,
}

impl PortOverrides {
    /// `config` with the overrides applied.
    pub fn apply(&self, config: &Config) -> Config {
        let mut c = config.clone();
        if let Some(ports) = &self.http_ports
            && !ports.is_empty()
        {
            // A port the settings also list keeps its addresses and policy
            // there: the command line picks ports, the settings say how each serves.
            let configured = c.webserver.effective_http_entries();
            c.webserver.http_ports = ports
                .iter()
                .map(|p| {
                    configured.iter().find(|e| e.port == *p).cloned().unwrap_or_else(|| HttpPort::from(*p))
                })
                .collect();
            c.webserver.http_enabled = true;
        }
        if let Some(port) = self.https_port {
            c.webserver.https_port = Some(port);
            c.webserver.https_enabled = true;
        }
        c
    }
}

pub use portcullis_core::events::Actor;

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A setting breaks a rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A port could not be opened.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Writing the data folder failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A certificate could not be installed (a backup's).
    #[error(transparent)]
    Certificate(#[from] CertStoreError),
    /// Another change is still waiting for confirmation.
    #[error("a change is waiting for confirmation until {} (POST /api/v1/config/confirm through the new configuration); confirm it or let it roll back first", .0.deadline)]
    Unconfirmed(PendingView),
    /// Nothing is waiting for confirmation.
    #[error("no change is waiting for confirmation")]
    NothingPending,
    /// Access rules that would deny the address of the requester, without `force`.
    #[error(
        "these rules deny your own address {0}: you would be locked out. Send them with ?force=true to apply them provisionally: they are then rolled back by themselves unless confirmed (POST /api/v1/config/confirm) from an address they allow"
    )]
    WouldLockOut(IpAddr),
    /// No setting has the key given (`config set KEY`).
    #[error("{0}")]
    UnknownSetting(String),
    /// The confirmation came through a listener the change removes.
    #[error("confirm through the new configuration: connect to one of the ports {}", .0.iter().map(|l| format!("{} ({})", l.port, if l.tls { "HTTPS" } else { "HTTP" })).collect::<Vec<_>>().join(", "))]
    ConfirmFromNew(Vec<ListenerSpec>),
}

/// Whether running differs from stored, and where.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfigStatus {
    /// Whether the running configuration differs from the stored one.
    pub unsaved_changes: bool,
    /// Top-level sections that differ.
    pub changed_sections: Vec<String>,
    /// How the stored configuration was loaded: at start, or at the last
    /// Reboot after a Store.
    pub load: ConfigLoadReport,
    /// A provisional change waiting for confirmation, or null.
    pub pending: Option<PendingView>,
    /// Settings that are allowed but probably not meant (e.g. ports browsers refuse).
    pub warnings: Vec<String>,
}

/// The running server's state. Its parts are private: every change to the
/// device is one of its methods (lock, validate with the core, write through
/// the store, swap what is served, record the event); what is read goes
/// through the read-only accessors.
pub struct Runtime {
    /// The data folder.
    store: Store,
    /// The clock.
    clock: Arc<dyn Clock>,
    /// Request and connection limits.
    limits: Arc<Limits>,
    /// Accounts and sessions.
    auth: Authenticator,
    /// The certificates.
    certs: Certificates,
    /// Access control, intrusion detection, logfile, event log.
    security: Arc<Security>,
    /// Static content folder, if one is served.
    webroot: Option<Arc<crate::webroot::Webroot>>,
    /// The device's own host names (`localhost`, its host name), for the
    /// `Host` check; the certificate's and the configured ones are added there.
    host_names: portcullis_core::hosts::HostNames,
    overrides: PortOverrides,
    running: ArcSwap<Config>,
    stored: Mutex<Config>,
    /// How the running configuration's stored layer was last loaded: at
    /// start, or at a Reboot after a Store (then from `config.json`).
    load_report: Mutex<ConfigLoadReport>,
    /// Whether a Store wrote `config.json` since the last load.
    stored_since_load: std::sync::atomic::AtomicBool,
    /// Serialises every change, so two Sets never interleave their steps.
    apply_lock: tokio::sync::Mutex<()>,
    /// Serialises writes of the accounts file.
    users_lock: tokio::sync::Mutex<()>,
    /// Serialises certificate changes.
    cert_lock: tokio::sync::Mutex<()>,
    /// The open ports; the sockets it binds are served by the listen module.
    listeners: tokio::sync::Mutex<ListenerSet>,
    notifier: Notifier,
    #[cfg(feature = "acme")]
    acme: Arc<crate::acme::Acme>,
    pending: Mutex<Option<Pending>>,
    next_pending: portable_atomic::AtomicU64,
    /// What the fleet integrations report to (event log, metrics).
    fleet_observers: crate::security::FleetObservers,
}

/// A provisional change waiting for confirmation.
#[derive(Debug, Clone)]
struct Pending {
    id: u64,
    previous: Config,
    deadline: OffsetDateTime,
    sections: Vec<String>,
    reason: String,
}

impl Pending {
    fn view(&self) -> PendingView {
        PendingView {
            deadline: self
                .deadline
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            sections: self.sections.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// A provisional change as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PendingView {
    /// When it is rolled back unless confirmed (RFC 3339).
    pub deadline: String,
    /// Sections it changed.
    pub sections: Vec<String>,
    /// Why it needs confirming.
    pub reason: String,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("store", &self.store).finish_non_exhaustive()
    }
}

/// Everything [`Runtime::new`] needs.
pub struct RuntimeParts {
    /// The data folder.
    pub store: Store,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The limits.
    pub limits: Arc<Limits>,
    /// Accounts.
    pub auth: Authenticator,
    /// Certificates.
    pub certs: Certificates,
    /// Security state.
    pub security: Arc<Security>,
    /// Static content folder.
    pub webroot: Option<Arc<crate::webroot::Webroot>>,
    /// Command-line port overrides.
    pub overrides: PortOverrides,
    /// The stored configuration as loaded.
    pub stored: Config,
    /// How it was loaded.
    pub load_report: ConfigLoadReport,
    /// The (still closed) set of listeners.
    pub listeners: ListenerSet,
    /// The notification queue.
    pub notifier: Notifier,
    /// The ACME state.
    #[cfg(feature = "acme")]
    pub acme: Arc<crate::acme::Acme>,
}

impl Runtime {
    /// A runtime whose running configuration is the stored one with overrides applied.
    pub fn new(parts: RuntimeParts) -> Result<Self, ValidationError> {
        let mut running = parts.overrides.apply(&parts.stored);
        // Temporary rules last until the next reboot, and a start is one.
        running.access_control = running.access_control.without_temporary();
        running.validate()?;
        parts.security.set_access_control(&running.access_control);
        let fleet_observers = crate::security::FleetObservers(crate::security::FleetEvents::new(
            &parts.security,
            parts.clock.clone(),
        ));
        Ok(Self {
            store: parts.store,
            clock: parts.clock,
            limits: parts.limits,
            auth: parts.auth,
            certs: parts.certs,
            security: parts.security,
            webroot: parts.webroot,
            host_names: portcullis_core::hosts::HostNames::new(&crate::certs::device_identity().0),
            overrides: parts.overrides,
            running: ArcSwap::new(Arc::new(running)),
            stored: Mutex::new(parts.stored),
            load_report: Mutex::new(parts.load_report),
            stored_since_load: std::sync::atomic::AtomicBool::new(false),
            apply_lock: tokio::sync::Mutex::new(()),
            users_lock: tokio::sync::Mutex::new(()),
            cert_lock: tokio::sync::Mutex::new(()),
            listeners: tokio::sync::Mutex::new(parts.listeners),
            notifier: parts.notifier,
            #[cfg(feature = "acme")]
            acme: parts.acme,
            pending: Mutex::new(None),
            next_pending: portable_atomic::AtomicU64::new(1),
            fleet_observers,
        })
    }

    /// The data folder (read-only use: changes go through the runtime's methods).
    pub fn data_folder(&self) -> &Store {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Request and connection limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Accounts and sessions.
    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// The certificates.
    pub fn certs(&self) -> &Certificates {
        &self.certs
    }

    /// Access control, intrusion detection, logfile, event log.
    pub fn security(&self) -> &Arc<Security> {
        &self.security
    }

    /// The static content folder, if one is served.
    pub fn webroot(&self) -> Option<&Arc<crate::webroot::Webroot>> {
        self.webroot.as_ref()
    }

    /// The device's own host names, for the `Host` check.
    pub fn host_names(&self) -> &portcullis_core::hosts::HostNames {
        &self.host_names
    }

    /// The notification queue.
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The ACME state (read-only use: changes go through the runtime's methods).
    #[cfg(feature = "acme")]
    pub fn acme(&self) -> &Arc<crate::acme::Acme> {
        &self.acme
    }

    /// Sends `ctx` to the profiles the intrusion detection settings select.
    pub fn alert(&self, ctx: portcullis_core::alert::AlertContext) {
        self.notifier.alert(&self.running(), ctx);
    }

    /// Counts a presented-and-wrong credential; alerts the selected profiles when due.
    pub fn failed_login(&self, ip: IpAddr, user: &str, path: &str) {
        let running = self.running();
        let now = self.timestamp();
        let id = &running.webserver.intrusion_detection;
        self.security.log_access(ip, Some(user), false, path, now, id.timeout_minutes);
        let result = self.security.record_failure(
            ip,
            Some(user),
            id,
            id.block_ip && running.access_control.enabled,
            now,
        );
        if result.alert {
            self.notifier.alert(
                &running,
                portcullis_core::alert::AlertContext {
                    device: crate::notifications::device_name(),
                    event: "intrusion_alert".into(),
                    message: format!("{} failed logins from {ip}", result.count),
                    client_ip: Some(ip),
                    user: Some(user.to_string()),
                    count: result.count,
                    time: now.utc,
                },
            );
        }
        let (threshold, minutes) = (id.account_lockout_threshold, id.account_lockout_minutes);
        if self.auth.account_failure(user, now.monotonic, threshold, minutes) {
            let message = format!(
                "password logins of the account \"{user}\" locked for {minutes} minutes after {threshold} failed logins (the last from {ip}); its API tokens still work"
            );
            self.security.event(
                now.utc,
                EventKind::AccountLocked,
                Some(Actor { user: None, client_ip: Some(ip) }),
                message.clone(),
                serde_json::json!({"account": user, "failures": threshold, "minutes": minutes}),
            );
            self.notifier.alert(
                &running,
                portcullis_core::alert::AlertContext {
                    device: crate::notifications::device_name(),
                    event: "account_locked".into(),
                    message,
                    client_ip: Some(ip),
                    user: Some(user.to_string()),
                    count: threshold,
                    time: now.utc,
                },
            );
        }
    }

    /// Set for the notification profiles.
    pub async fn set_profiles(
        &self,
        profiles: portcullis_core::profiles::Profiles,
        actor: &Actor,
    ) -> Result<Arc<Config>, ApplyError> {
        self.set_plain(actor, "notification profiles set", |c| c.profiles = profiles).await?;
        Ok(self.running())
    }

    /// The current time (UTC), for what is shown and stored.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The current time on both clocks (UTC, and monotonic for intervals).
    pub fn timestamp(&self) -> portcullis_core::Timestamp {
        self.clock.timestamp()
    }

    /// The running configuration.
    pub fn running(&self) -> Arc<Config> {
        self.running.load_full()
    }

    /// The stored configuration.
    pub fn stored(&self) -> Config {
        self.stored.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The listeners open now.
    pub async fn open_listeners(&self) -> Vec<portcullis_core::settings::ListenerSpec> {
        self.listeners.lock().await.specs()
    }

    /// Records an event (configuration changes, stores, reboots) with its actor.
    pub fn event(&self, kind: EventKind, actor: &Actor, message: &str) {
        self.event_with(kind, actor, message, serde_json::Value::Null);
    }

    /// Records an event with its details (for `config_changed`: what changed).
    pub fn event_with(&self, kind: EventKind, actor: &Actor, message: &str, details: serde_json::Value) {
        let user = actor.user.as_deref().unwrap_or("-");
        let client_ip = actor.client_ip.map(|ip| ip.to_string());
        let client_ip = client_ip.as_deref().unwrap_or("-");
        tracing::info!(event = ?kind, user = %user, client_ip = %client_ip, "{message}");
        self.security.event(self.now(), kind, Some(actor.clone()), message, details);
    }

    /// Records a `config_changed` event: what changed from `old` to the
    /// running configuration (sections and fields, no value).
    fn config_changed(&self, actor: &Actor, message: &str, old: &Config) {
        self.event_with(EventKind::ConfigChanged, actor, message, old.changes(&self.running()));
    }

    /// Makes `new` running: validates, opens new ports (refusing the change if
    /// one cannot be opened), swaps, then closes ports no longer wanted.
    async fn apply(&self, new: Config) -> Result<(), ApplyError> {
        self.apply_with(new, false).await
    }

    /// Makes `new` running; with `keep_old`, listeners it drops stay open
    /// (a provisional change, until confirmed or rolled back). Any pending
    /// provisional change is settled by this one.
    async fn apply_with(&self, new: Config, keep_old: bool) -> Result<(), ApplyError> {
        new.validate()?;
        let was_on = self.running().webserver.hsts_enabled;
        portcullis_core::hsts::check(was_on, &new.webserver, &self.certs.served(), self.now())?;
        // The syslog exporter and CrowdSec bouncer follow the new settings
        // (settings they cannot use refuse the change); if the ports cannot
        // be opened, they go back to the running ones.
        self.apply_fleet(&new)?;
        if let Err(e) = self.open_listeners_for(&new, keep_old).await {
            if let Err(back) = self.apply_fleet(&self.running()) {
                tracing::error!(error = %back, "the fleet integrations could not go back to the running settings");
            }
            return Err(e);
        }
        self.security.set_access_control(&new.access_control);
        self.running.store(Arc::new(new));
        if !keep_old {
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Ok(())
    }

    fn apply_fleet(&self, config: &Config) -> Result<(), ValidationError> {
        let hostname = crate::notifications::device_name();
        self.security
            .fleet()
            .apply(config, &hostname, &self.fleet_observers)
            .map_err(|e| ValidationError::new(e.field, portcullis_core::ErrorCode::InvalidValue, e.message))
    }

    async fn open_listeners_for(&self, config: &Config, keep_old: bool) -> Result<(), ApplyError> {
        let wanted = config.webserver.bindings();
        let mut set = self.listeners.lock().await;
        let prepared = set.prepare(&wanted)?;
        set.commit(prepared, &wanted, keep_old).await?;
        Ok(())
    }

    fn ensure_nothing_pending(&self) -> Result<(), ApplyError> {
        match &*self.pending.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(p) => Err(ApplyError::Unconfirmed(p.view())),
            None => Ok(()),
        }
    }

    /// Applies `new` provisionally: the old listeners stay open beside the
    /// new ones, and unless [`Runtime::confirm`] comes through the new
    /// configuration within the grace period, the change is undone.
    async fn apply_provisional(self: &Arc<Self>, new: Config, reason: String) -> Result<(), ApplyError> {
        let previous = (*self.running()).clone();
        let grace = std::time::Duration::from_secs(u64::from(new.webserver.confirm_timeout_seconds));
        let sections = previous.changed_sections(&new);
        self.apply_with(new, true).await?;
        let id = self.next_pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deadline = self.now() + time::Duration::seconds(grace.as_secs() as i64);
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Pending { id, previous, deadline, sections, reason });
        // The timer holds the runtime for the grace period only.
        let rt = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            rt.roll_back(id).await;
        });
        Ok(())
    }

    async fn roll_back(&self, id: u64) {
        let _guard = self.apply_lock.lock().await;
        let previous = match &*self.pending.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(p) if p.id == id => p.previous.clone(),
            _ => return,
        };
        match self.apply(previous).await {
            Ok(()) => self.event(
                EventKind::ConfigRolledBack,
                &Actor::default(),
                "the change was not confirmed within the grace period and has been rolled back",
            ),
            Err(e) => tracing::error!(error = %e, "rolling back an unconfirmed change failed"),
        }
    }

    /// Confirms a provisional change; it must come through the new
    /// configuration (a listener it keeps, and past its access rules).
    pub async fn confirm(&self, actor: &Actor, via: Option<Via>) -> Result<(), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        if self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return Err(ApplyError::NothingPending);
        }
        let running = self.running();
        let wanted = running.webserver.listeners();
        if let Some(v) = via
            && !running.webserver.keeps_admin(v)
        {
            let admin = wanted.iter().copied().filter(|l| running.webserver.port_policy(*l).admin).collect();
            return Err(ApplyError::ConfirmFromNew(admin));
        }
        self.listeners.lock().await.close_unwanted(&wanted);
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.event(EventKind::ConfigConfirmed, actor, "the provisional change was confirmed");
        Ok(())
    }

    /// The provisional change waiting for confirmation, if any.
    pub fn pending(&self) -> Option<PendingView> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(Pending::view)
    }

    /// Opens the listeners of the running configuration (at start).
    pub async fn start_listeners(&self) -> Result<(), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        let running = self.running();
        self.open_listeners_for(&running, false).await?;
        self.security.fleet().start(&running, &crate::notifications::device_name(), &self.fleet_observers);
        Ok(())
    }

    /// Closes every listener (at shutdown).
    pub async fn close_listeners(&self) {
        self.listeners.lock().await.close_all();
    }

    /// Set: makes `webserver` running, nothing written to disk.
    /// A Set arriving through a listener the new settings drop is provisional
    /// (then the pending change is returned beside the configuration).
    pub async fn set_webserver(
        self: &Arc<Self>,
        webserver: portcullis_core::settings::WebServerSettings,
        actor: &Actor,
        via: Option<Via>,
    ) -> Result<(Arc<Config>, Option<PendingView>), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        let old = self.running();
        let mut new = (*old).clone();
        if new.webserver == webserver {
            return Ok((self.running(), None));
        }
        new.webserver = webserver;
        self.apply_guarded(&old, new, actor, via, false, "web server settings").await?;
        for w in self.running().webserver.warnings() {
            tracing::warn!("{w}");
        }
        Ok((self.running(), self.pending()))
    }

    /// Set for IP-level access control. Rules that would deny the
    /// requester's own address are refused ([`ApplyError::WouldLockOut`])
    /// unless `force` is given, and then applied provisionally, as network
    /// gear's "commit confirmed": rolled back by themselves after the grace
    /// period unless confirmed from an address they allow (then the pending
    /// change is returned beside the configuration). A forced Set that turns
    /// out to lock everyone out therefore undoes itself.
    pub async fn set_access_control(
        self: &Arc<Self>,
        settings: AccessControlSettings,
        actor: &Actor,
        force: bool,
    ) -> Result<(Arc<Config>, Option<PendingView>), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        let old = self.running();
        let mut new = (*old).clone();
        if new.access_control == settings {
            return Ok((self.running(), None));
        }
        new.access_control = settings;
        self.apply_guarded(&old, new, actor, None, force, "access control").await?;
        Ok((self.running(), self.pending()))
    }

    /// The one path of the changes that could cut the operator off (the web
    /// server's and access control's Sets, a backup's import); the caller
    /// holds the apply lock. A change that closes the listener it came
    /// through (`via`), or whose access rules deny the requester's address
    /// (refused unless `force`), is applied provisionally: rolled back by
    /// itself unless confirmed through the new configuration in time.
    /// Anything else is applied at once. Either way with its
    /// `config_changed` event, `what` naming what was set.
    async fn apply_guarded(
        self: &Arc<Self>,
        old: &Config,
        new: Config,
        actor: &Actor,
        via: Option<Via>,
        force: bool,
        what: &str,
    ) -> Result<(), ApplyError> {
        self.ensure_nothing_pending()?;
        new.validate()?;
        let mut reasons = Vec::new();
        let mut how = Vec::new();
        if let Some(v) = via
            && !new.webserver.keeps_admin(v)
        {
            reasons.push(format!(
                "the {} port {} (address {}) this change was made through is closed by it or no longer allows admin",
                if v.spec.tls { "HTTPS" } else { "HTTP" },
                v.spec.port,
                v.local
            ));
            how.push(": confirm through the new configuration");
        }
        let denied_requester = actor.client_ip.filter(|ip| {
            new.access_control != old.access_control
                && self.security.policy_for(&new.access_control).decide(*ip) == Decision::Deny
        });
        if let Some(ip) = denied_requester {
            if !force {
                return Err(ApplyError::WouldLockOut(ip));
            }
            reasons.push(format!("these rules deny the address {ip} this change was made from"));
            how.push(" (forced although it denies the requester): confirm from an allowed address");
        }
        if reasons.is_empty() {
            self.apply(new).await?;
            self.config_changed(actor, &format!("{what} set"), old);
        } else {
            self.apply_provisional(new, reasons.join("; ")).await?;
            self.config_changed(actor, &format!("{what} set provisionally{}", how.join(";")), old);
        }
        Ok(())
    }

    /// Set for a section that needs nothing beyond validation and apply:
    /// makes `change` of the running configuration running, with an event.
    /// Returns whether anything changed.
    async fn set_plain(
        &self,
        actor: &Actor,
        message: &str,
        change: impl FnOnce(&mut Config),
    ) -> Result<bool, ApplyError> {
        let _guard = self.apply_lock.lock().await;
        let old = self.running();
        let mut new = (*old).clone();
        change(&mut new);
        if new == *old {
            return Ok(false);
        }
        self.ensure_nothing_pending()?;
        self.apply(new).await?;
        self.config_changed(actor, message, &old);
        Ok(true)
    }

    /// Set for the syslog export: the exporter is started anew with the
    /// settings (its queue starts empty), or stopped when switched off.
    pub async fn set_syslog(
        &self,
        settings: portcullis_core::syslog::SyslogSettings,
        actor: &Actor,
    ) -> Result<Arc<Config>, ApplyError> {
        self.set_plain(actor, "syslog export settings set", |c| c.syslog = settings).await?;
        Ok(self.running())
    }

    /// Set for the CrowdSec bouncer and signals: polling restarts with the
    /// new settings (the decisions known so far stay until the first poll
    /// replaces them); switched off, its bans are no longer enforced.
    pub async fn set_crowdsec(
        &self,
        settings: portcullis_core::crowdsec::CrowdSecSettings,
        actor: &Actor,
    ) -> Result<Arc<Config>, ApplyError> {
        self.set_plain(actor, "CrowdSec settings set", |c| c.crowdsec = settings).await?;
        Ok(self.running())
    }

    /// Set for one setting named by its path in the API's JSON
    /// (`intrusion_detection.notification_threshold`, `access_control.enabled`;
    /// see [`portcullis_core::setting_key`]): the section with that setting
    /// changed goes through its section's Set, parsed and checked exactly as
    /// the API's body would be. The command line's `config set`, offline.
    pub async fn set_setting(
        self: &Arc<Self>,
        key: &str,
        value: serde_json::Value,
        actor: &Actor,
    ) -> Result<Arc<Config>, ApplyError> {
        use portcullis_core::setting_key::{SettingError, SettingKey};
        let refused = |e: SettingError| match e {
            SettingError::Invalid(v) => ApplyError::Invalid(v),
            other => ApplyError::UnknownSetting(other.to_string()),
        };
        let key = SettingKey::parse(key).map_err(refused)?;
        let old = self.running();
        let new = key.set(&old, value).map_err(refused)?;
        let not_built = |field: &str, feature: &str| {
            ApplyError::Invalid(ValidationError::new(
                field,
                portcullis_core::ErrorCode::FeatureNotBuilt,
                format!("this build of portcullis does not include the \"{feature}\" feature"),
            ))
        };
        match key.section {
            "webserver" => Ok(self.set_webserver(new.webserver, actor, None).await?.0),
            "access_control" => Ok(self.set_access_control(new.access_control, actor, false).await?.0),
            "profiles" => {
                // As the API's profile PUT: a channel this build left out
                // could never send, and an omitted password keeps the stored one.
                fn changed<P: PartialEq>(
                    old: &std::collections::BTreeMap<String, P>,
                    new: &std::collections::BTreeMap<String, P>,
                ) -> bool {
                    new.iter().any(|(name, p)| old.get(name) != Some(p))
                }
                let (o, n) = (&old.profiles, &new.profiles);
                for (kind, feature, touched) in [
                    ("email", "email", changed(&o.email, &n.email)),
                    ("ip_notify", "ip-notify", changed(&o.ip_notify, &n.ip_notify)),
                    ("phone", "sip", changed(&o.phone, &n.phone)),
                ] {
                    if touched && !crate::build_info::built(feature) {
                        return Err(not_built(&format!("profiles.{kind}"), feature));
                    }
                }
                let profiles = portcullis_core::profiles::merge_secrets(new.profiles, &old.profiles);
                self.set_profiles(profiles, actor).await
            }
            "authentication" => {
                if new.authentication.digest && !crate::build_info::built("digest") {
                    return Err(not_built("authentication.digest", "digest"));
                }
                self.set_authentication(new.authentication, actor).await
            }
            "syslog" => {
                if !crate::build_info::built("syslog") {
                    return Err(not_built("syslog", "syslog"));
                }
                self.set_syslog(new.syslog.merge_secrets(&old.syslog), actor).await
            }
            "crowdsec" => {
                if !crate::build_info::built("crowdsec") {
                    return Err(not_built("crowdsec", "crowdsec"));
                }
                self.set_crowdsec(new.crowdsec.merge_secrets(&old.crowdsec), actor).await
            }
            _ => {
                if !crate::build_info::built("webroot") {
                    return Err(not_built("webroot", "webroot"));
                }
                self.set_webroot(new.webroot, actor).await
            }
        }
    }

    /// Set for the static content settings.
    pub async fn set_webroot(
        &self,
        settings: portcullis_core::settings::WebrootSettings,
        actor: &Actor,
    ) -> Result<Arc<Config>, ApplyError> {
        self.set_plain(actor, "static content settings set", |c| c.webroot = settings).await?;
        Ok(self.running())
    }

    /// Set for the authentication schemes. Switching Digest off removes every
    /// stored Digest secret at once.
    pub async fn set_authentication(
        &self,
        settings: portcullis_core::settings::AuthenticationSettings,
        actor: &Actor,
    ) -> Result<Arc<Config>, ApplyError> {
        if self.set_plain(actor, "authentication settings set", |c| c.authentication = settings).await? {
            self.after_authentication_change().await?;
        }
        Ok(self.running())
    }

    async fn after_authentication_change(&self) -> Result<(), ApplyError> {
        if !self.running().authentication.digest {
            self.update_users(|u| u.purge_digest()).await?;
        }
        Ok(())
    }

    /// Creates or changes the account `name` (its group, its password):
    /// the password checked by the rules, hashed off the async threads, the
    /// accounts file written crash-safely, then in force, with its event.
    /// Who may do it is the caller's check.
    pub async fn save_user(
        &self,
        name: &str,
        group: Option<crate::auth::Group>,
        password: Option<String>,
        actor: &Actor,
    ) -> Result<crate::auth::Group, ApplyError> {
        let hash = match &password {
            Some(p) => {
                crate::auth::validate_password(p)?;
                let p = p.clone();
                let hashed = tokio::task::spawn_blocking(move || crate::auth::hash_password(&p))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                Some(hashed.map_err(|e| StoreError::Io {
                    action: "hash the password for",
                    path: crate::store::USERS_FILE.into(),
                    source: std::io::Error::other(e),
                })?)
            }
            None => None,
        };
        let digest = self.digest_on();
        let group = self
            .update_users(|users| {
                let group = users.upsert(name, group, hash)?;
                if let (true, Some(p)) = (digest, &password) {
                    users.set_digest(name, p);
                }
                Ok::<_, ValidationError>(group)
            })
            .await??;
        self.event(EventKind::UserChanged, actor, &format!("account \"{name}\" saved"));
        Ok(group)
    }

    /// Deletes the account `name` (never the last admin), with its event.
    pub async fn delete_user(&self, name: &str, actor: &Actor) -> Result<(), ApplyError> {
        self.update_users(|users| users.delete(name)).await??;
        self.event(EventKind::UserChanged, actor, &format!("account \"{name}\" deleted"));
        Ok(())
    }

    /// Makes an API token for `input.account` (default: `creator`, the
    /// administrator making it): the core's rules, then the accounts' (the
    /// account exists, the scope is within its rights, the name unused),
    /// written with the accounts, then in force, with its event (never the
    /// secret). Returns the secret, the only time it is ever shown.
    pub async fn create_token(
        &self,
        input: crate::tokens::NewToken,
        creator: Option<&str>,
        actor: &Actor,
    ) -> Result<(String, crate::tokens::TokenView), ApplyError> {
        use portcullis_core::tokens;
        tokens::validate_name(&input.name)?;
        let sources = tokens::parse_sources(&input.allowed_sources)?;
        let now = self.now();
        let expires_at = tokens::expiry(now, input.expires_at.as_deref(), input.expires_in_days)?;
        let Some(account) = input.account.clone().or_else(|| creator.map(str::to_string)) else {
            return Err(ValidationError::new(
                "account",
                portcullis_core::ErrorCode::Required,
                "name the account the token belongs to",
            )
            .into());
        };
        crate::auth::validate_user_name(&account)
            .map_err(|e| ValidationError { field: "account".into(), ..e })?;
        let secret = crate::tokens::new_secret();
        let record = crate::tokens::TokenRecord {
            name: input.name.clone(),
            account: account.clone(),
            scope: input.scope,
            hash: self.auth.token_hash(&secret),
            created: now,
            expires_at,
            allowed_sources: sources,
            last_used: None,
        };
        let view = record.view(None);
        self.update_users(|users| users.add_token(record)).await??;
        self.event_with(
            EventKind::TokenCreated,
            actor,
            &format!("API token \"{}\" made for \"{account}\" ({})", input.name, input.scope.as_str()),
            serde_json::json!({"name": input.name, "account": account, "scope": input.scope}),
        );
        Ok((secret, view))
    }

    /// Revokes the API token `name`: written at once, refused from the
    /// next request on (open connections too: tokens are checked per
    /// request), with its event.
    pub async fn revoke_token(&self, name: &str, actor: &Actor) -> Result<(), ApplyError> {
        let gone = self.update_users(|users| users.revoke_token(name)).await??;
        self.event_with(
            EventKind::TokenRevoked,
            actor,
            &format!("API token \"{name}\" of \"{}\" revoked", gone.account),
            serde_json::json!({"name": name, "account": gone.account}),
        );
        Ok(())
    }

    /// Starts the enrolment of `name`'s second factor: a new secret, kept
    /// in memory until its first code confirms it (ten minutes at most; a
    /// new start replaces it). Nothing is written and the account logs in
    /// as before until then. Who may do it is the caller's check.
    #[cfg(feature = "totp")]
    pub fn start_second_factor(&self, name: &str) -> Result<crate::second_factor::Enrolment, ApplyError> {
        use portcullis_core::second_factor as rules;
        let users = self.auth.users();
        let Some(user) = users.users.get(name) else {
            return Err(ValidationError::new(
                "name",
                portcullis_core::ErrorCode::NotFound,
                format!("there is no user \"{name}\""),
            )
            .into());
        };
        if user.second_factor.is_some() {
            return Err(ValidationError::new(
                "name",
                portcullis_core::ErrorCode::SecondFactorExists,
                format!("the account \"{name}\" has a second factor already; reset it to enrol another"),
            )
            .into());
        }
        let secret = crate::second_factor::new_secret();
        let encoded = rules::base32(&secret);
        let uri = rules::otpauth_uri(rules::ISSUER, name, &encoded);
        let qr_svg = crate::second_factor::qr_svg(&uri);
        self.auth.start_enrolment(name, secret, self.clock.monotonic());
        Ok(crate::second_factor::Enrolment {
            secret: encoded,
            otpauth_uri: uri,
            qr_svg,
            expires_in_seconds: rules::ENROLMENT_LIFETIME.as_secs(),
        })
    }

    /// Confirms `name`'s waiting enrolment with its first `code`: the
    /// second factor is written with the account (that code's step counts
    /// as used), with its event; answers the recovery codes, the only time
    /// they are ever shown.
    #[cfg(feature = "totp")]
    pub async fn confirm_second_factor(
        &self,
        name: &str,
        code: &str,
        actor: &Actor,
    ) -> Result<Vec<String>, ApplyError> {
        use portcullis_core::second_factor as rules;
        let Some(secret) = self.auth.enrolment(name, self.clock.monotonic()) else {
            return Err(ValidationError::new(
                "code",
                portcullis_core::ErrorCode::SecondFactorNotPending,
                "no enrolment waits for its first code: start it again",
            )
            .into());
        };
        let now = self.now();
        let step =
            rules::check_code(code, now.unix_timestamp(), None, |s| crate::second_factor::code_at(&secret, s))
                .map_err(|_| {
                    ValidationError::new(
                        "code",
                        portcullis_core::ErrorCode::SecondFactorWrong,
                        "the code is not the app's current one: check the device's and the phone's clocks, and try the next code",
                    )
                })?;
        let (codes, hashes) = crate::second_factor::new_recovery_codes();
        let factor = crate::second_factor::SecondFactor {
            secret: rules::base32(&secret),
            enrolled: now,
            last_step: Some(step),
            recovery: hashes,
        };
        self.update_users(|users| users.enrol_second_factor(name, factor)).await??;
        self.auth.end_enrolment(name);
        self.event_with(
            EventKind::SecondFactorEnrolled,
            actor,
            &format!("second factor of \"{name}\" enrolled"),
            serde_json::json!({"account": name, "recovery_codes": codes.len()}),
        );
        Ok(codes)
    }

    /// Checks a code of `name`'s second factor (an app's code or a recovery
    /// code) and records its use, written at once: a code works once, a
    /// restart included. A recovery code's use is an event. The caller
    /// counts a refusal as a failed login.
    #[cfg(feature = "totp")]
    pub async fn use_second_factor(
        &self,
        name: &str,
        code: &str,
        actor: &Actor,
    ) -> Result<crate::auth::CodeUse, portcullis_core::second_factor::CodeRefusal> {
        use portcullis_core::second_factor::CodeRefusal;
        let now = self.now().unix_timestamp();
        let used = self
            .update_users(|users| users.use_second_factor(name, code, now, crate::second_factor::code_at))
            .await
            .map_err(|e| {
                // Unwritten, the use could be repeated: refused.
                tracing::error!(error = %e, "the second factor's use could not be written");
                CodeRefusal::Wrong
            })??;
        if let crate::auth::CodeUse::Recovery { left } = used {
            self.event_with(
                EventKind::RecoveryCodeUsed,
                actor,
                &format!("a recovery code of \"{name}\" was used; {left} left"),
                serde_json::json!({"account": name, "left": left}),
            );
        }
        Ok(used)
    }

    /// Removes `name`'s second factor (an administrator's reset, its
    /// person's, or the command line's for a locked-out owner), with its event.
    pub async fn reset_second_factor(&self, name: &str, actor: &Actor) -> Result<(), ApplyError> {
        self.update_users(|users| users.reset_second_factor(name)).await??;
        self.auth.end_enrolment(name);
        self.event_with(
            EventKind::SecondFactorReset,
            actor,
            &format!("second factor of \"{name}\" reset"),
            serde_json::json!({"account": name}),
        );
        Ok(())
    }

    /// Writes the tokens' last uses kept in memory, if any is newer than
    /// the file's (at Store, Reboot and a graceful stop; any other write of
    /// the accounts takes them along too).
    pub(crate) async fn flush_token_use(&self) {
        if let Err(e) = self.update_users(|users| self.auth.merge_token_use(users)).await {
            tracing::warn!(error = %e, "the API tokens' last uses could not be written");
        }
    }

    /// Changes the accounts with `change` (which says whether it changed
    /// anything), writes them crash-safely, then puts them in force.
    async fn update_users<T>(
        &self,
        change: impl FnOnce(&mut crate::auth::UsersFile) -> T,
    ) -> Result<T, StoreError>
    where
        T: UsersChanged,
    {
        let _guard = self.users_lock.lock().await;
        let mut users = self.auth.users();
        let result = change(&mut users);
        if result.changed() {
            self.auth.merge_token_use(&mut users);
            let store = self.store.clone();
            let to_write = users.clone();
            tokio::task::spawn_blocking(move || {
                store.write_json(crate::store::USERS_FILE, &to_write, crate::store::SECRET_MODE)
            })
            .await
            .map_err(|e| StoreError::Io {
                action: "write",
                path: crate::store::USERS_FILE.into(),
                source: std::io::Error::other(e),
            })??;
            self.auth.replace_users(users);
        }
        Ok(result)
    }

    /// The one certificate install sequence, for the API and ACME alike:
    /// takes the certificate lock, checks and writes the change off the
    /// async threads (RSA generation takes up to half a second), serves the
    /// new certificate to new connections, records the event. A refused
    /// change leaves the files and the certificate in use as they were.
    pub async fn change_certificate(
        &self,
        change: CertificateChange,
        actor: &Actor,
    ) -> Result<CertificateView, CertStoreError> {
        let _guard = self.cert_lock.lock().await;
        let files = self.certs.files.clone();
        let now = self.now();
        let what = change.what();
        let (material, warnings) =
            tokio::task::spawn_blocking(move || change.write(&files, now)).await.map_err(|e| {
                CertStoreError::Store(StoreError::Io {
                    action: "write",
                    path: crate::certs::CURRENT_FILE.into(),
                    source: std::io::Error::other(e),
                })
            })??;
        self.certs.install(&material)?;
        let view = self.certs.files.view(now, warnings)?;
        self.event(
            EventKind::CertificateChanged,
            actor,
            &format!(
                "{what}; now serving {} ({})",
                view.certificate.subject, view.certificate.fingerprint_sha256
            ),
        );
        Ok(view)
    }

    /// Serves a new factory certificate if the factory one in use expired
    /// (made while the clock was unset), with its event; for the expiry watch.
    pub async fn renew_expired_factory(&self) {
        let _guard = self.cert_lock.lock().await;
        let now = self.now();
        match self.certs.renew_expired_factory(now) {
            Ok(Some(info)) => {
                let message = format!(
                    "the factory certificate had expired (it was made while the clock was unset); a new one is in use, fingerprint {}",
                    info.fingerprint_sha256
                );
                tracing::warn!("{message}");
                self.security.event(
                    now,
                    EventKind::CertificateChanged,
                    None,
                    message,
                    serde_json::json!({"source": "factory", "fingerprint_sha256": info.fingerprint_sha256}),
                );
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot renew the expired factory certificate"),
        }
    }

    /// Replaces the ACME settings: merged with the stored secrets, checked
    /// by the core's rules, written at once (like every certificate
    /// operation), with an event.
    #[cfg(feature = "acme")]
    pub async fn set_acme_settings(
        &self,
        settings: portcullis_core::acme::AcmeSettings,
        actor: &Actor,
    ) -> Result<crate::acme::AcmeView, ApplyError> {
        let _guard = self.cert_lock.lock().await;
        let old = self.acme.settings();
        let settings = settings.merge_secrets(&old).normalized();
        settings.validate()?;
        // What changed, as paths only: the EAB key never reaches the event log.
        let details = portcullis_core::config::changes_between(
            &serde_json::to_value(&old).unwrap_or_default(),
            &serde_json::to_value(&settings).unwrap_or_default(),
            vec!["acme".to_string()],
        );
        self.acme.set_settings(&self.store, settings)?;
        self.event_with(EventKind::ConfigChanged, actor, "ACME settings changed", details);
        Ok(self.acme.view())
    }

    /// Enrols now (or renews) with ACME and installs the issued certificate
    /// through [`Runtime::change_certificate`]; on failure the current
    /// certificate stays, and the error is recorded for a retry.
    #[cfg(feature = "acme")]
    pub async fn enrol_acme(
        &self,
        actor: &Actor,
    ) -> Result<crate::acme::AcmeStatus, crate::acme::EnrolError> {
        let _one_at_a_time = self.acme.one_at_a_time().await;
        let settings = self.acme.settings();
        let now = self.now();
        let enrolled = match self.acme.issue(&self.store, &settings).await {
            Ok(e) => e,
            Err(e) => return Err(self.acme_failed(now, e)),
        };
        let change = CertificateChange::Issued {
            chain_pem: enrolled.chain_pem.clone(),
            key_pem: enrolled.key_pem.clone(),
            what: format!(
                "certificate issued by ACME for {}, valid until {}",
                settings.identifiers.join(", "),
                enrolled.not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
            ),
        };
        if let Err(e) = self.change_certificate(change, actor).await {
            return Err(self.acme_failed(now, crate::acme::install_error(e)));
        }
        Ok(self.acme.succeeded(&self.store, &enrolled))
    }

    #[cfg(feature = "acme")]
    fn acme_failed(&self, now: OffsetDateTime, e: crate::acme::EnrolError) -> crate::acme::EnrolError {
        self.acme.failed(&self.store, now, &e);
        self.security.event(
            now,
            EventKind::AcmeFailed,
            None,
            format!("ACME enrolment failed (the current certificate stays in use): {e}"),
            serde_json::json!({"code": e.code()}),
        );
        e
    }

    /// Renews with ACME by itself when due (two thirds of the lifetime, or
    /// the next retry); the task ends when the runtime is gone.
    #[cfg(feature = "acme")]
    pub fn spawn_acme_renewal(self: &Arc<Self>, check_every: std::time::Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(rt) = weak.upgrade() else { break };
                let acme = rt.acme.clone();
                if acme.is_due(rt.now()) {
                    let _ = rt.enrol_acme(&Actor::default()).await;
                }
                drop(rt);
                acme.next_check(check_every).await;
            }
        });
    }

    /// Ends timed blocks when their time is up (checked every second, so
    /// the connection guard lets the client in within a second of the
    /// end), and keeps the stored blocks in step when they survive a
    /// reboot; the task ends when the runtime is gone. At start, the blocks
    /// stored before are put back first when they are to survive.
    pub fn spawn_block_watch(self: &Arc<Self>) {
        let mut survive = self.running().webserver.intrusion_detection.blocks_survive_reboot;
        if survive {
            self.security.restore_blocks(self.timestamp());
        }
        self.security.store_blocks(survive, true);
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(rt) = weak.upgrade() else { break };
                rt.security.expire_blocks(rt.timestamp());
                let now = rt.running().webserver.intrusion_detection.blocks_survive_reboot;
                let security = rt.security.clone();
                let switched = now != survive;
                survive = now;
                drop(rt);
                let _ = tokio::task::spawn_blocking(move || security.store_blocks(now, switched)).await;
            }
        });
    }

    /// Lifts the block that covers `ip` (intrusion detection), with its
    /// event; the blocked address or network, or `None` if none covers it.
    pub fn unblock(&self, ip: IpAddr, actor: &Actor) -> Option<portcullis_core::access_control::IpNetwork> {
        self.security.unblock(ip, Some(actor.clone()), self.now())
    }

    /// Whether Digest authentication is in force: switched on, and built in
    /// (a configuration from a fuller build may say `digest: true`).
    pub fn digest_on(&self) -> bool {
        cfg!(feature = "digest") && self.running().authentication.digest
    }

    /// After a correct password: with Digest on, derive the user's Digest
    /// secrets if it has none yet (accounts created before Digest was switched on).
    pub async fn capture_digest(&self, user: &str, password: &str) {
        if self.digest_on() && self.auth.lacks_digest(user) {
            let (user, password) = (user.to_string(), password.to_string());
            if let Err(e) = self
                .update_users(|u| {
                    u.set_digest(&user, &password);
                    true
                })
                .await
            {
                tracing::error!(error = %e, "cannot store Digest secrets");
            }
        }
    }

    /// A backup of the device, not yet encrypted: the STORED configuration
    /// (what a start or Reboot loads: unsaved Sets are not in it), the
    /// accounts with their password hashes and, with `include_certificate`,
    /// the individual certificate with its key.
    #[cfg(feature = "backup")]
    pub fn backup(&self, include_certificate: bool) -> Result<crate::backup::Backup, CertStoreError> {
        let now = self.now();
        let view = self.certs.files.view(now, Vec::new())?;
        let certificate = if include_certificate { self.certs.files.state()?.individual } else { None };
        Ok(crate::backup::Backup {
            info: crate::backup::BackupInfo {
                format: crate::backup::FORMAT.into(),
                format_version: crate::backup::FORMAT_VERSION,
                product_version: env!("CARGO_PKG_VERSION").into(),
                created: now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                host_name: crate::notifications::device_name(),
                certificate_fingerprint_sha256: view.certificate.fingerprint_sha256,
                includes_certificate: certificate.is_some(),
            },
            configuration: serde_json::to_value(self.stored()).unwrap_or_default(),
            users: self.auth.users(),
            certificate,
        })
    }

    /// Export: the [backup](Self::backup) encrypted with `passphrase`
    /// (scrypt, off the async threads), with its event: secrets leave the
    /// device, encrypted, and the log says who took them.
    #[cfg(feature = "backup")]
    pub async fn export_backup(
        &self,
        passphrase: String,
        include_certificate: bool,
        actor: &Actor,
    ) -> Result<(Vec<u8>, crate::backup::BackupInfo), crate::backup::BackupError> {
        use crate::backup::BackupError;
        crate::backup::check_passphrase(&passphrase)?;
        let backup = self.backup(include_certificate).map_err(|e| BackupError::Failed(e.to_string()))?;
        let info = backup.info.clone();
        let file = tokio::task::spawn_blocking(move || crate::backup::seal(&backup, &passphrase))
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))??;
        self.event_with(
            EventKind::ConfigExported,
            actor,
            if info.includes_certificate {
                "configuration backup exported, with the certificate and its private key"
            } else {
                "configuration backup exported"
            },
            serde_json::json!({"includes_certificate": info.includes_certificate}),
        );
        Ok((file, info))
    }

    /// Import: makes a checked backup the device's, or changes nothing if a
    /// step is refused. Its configuration becomes running through the path
    /// of the Sets that could cut the operator off (provisional when it
    /// closes the port `via` or its rules deny the requester, the latter
    /// only with `force`), and is stored by Store as every Set is; its
    /// accounts are written at once, as account changes are (an account
    /// whose password or group differs loses its sessions); its certificate
    /// is installed only with `install_certificate`, else the device keeps
    /// its own. One `config_imported` event says what was done.
    #[cfg(feature = "backup")]
    pub async fn import_backup(
        self: &Arc<Self>,
        backup: crate::backup::CheckedBackup,
        install_certificate: bool,
        force: bool,
        actor: &Actor,
        via: Option<Via>,
    ) -> Result<crate::backup::ImportOutcome, ApplyError> {
        use crate::backup::CertificateImport;
        let _guard = self.apply_lock.lock().await;
        // Even an import that changes no setting: its answer's pending
        // change must be its own.
        self.ensure_nothing_pending()?;
        let old = self.running();
        // What a Reboot would make of the backup's configuration here: the
        // ports given on this device's command line still win over the
        // configured ones (unless they no longer fit it).
        let with_overrides = self.overrides.apply(&backup.config);
        let config = if with_overrides.validate().is_ok() { with_overrides } else { backup.config.clone() };
        let changed_sections = old.changed_sections(&config);
        if !changed_sections.is_empty() {
            self.apply_guarded(&old, config, actor, via, force, "configuration from a backup").await?;
        }
        // The accounts: a record that differs from the device's gets a
        // generation above both, so cached logins and sessions made with
        // the device's record end (the file's counters are another device's).
        let current = self.auth.users();
        let mut users = backup.users.clone();
        for (name, record) in &mut users.users {
            match current.users.get(name) {
                Some(c) if c.password_hash == record.password_hash && c.group == record.group => {
                    record.generation = c.generation;
                }
                Some(c) => record.generation = record.generation.max(c.generation) + 1,
                None => {}
            }
        }
        if let Err(e) = self
            .update_users(|u| {
                *u = users;
                true
            })
            .await
        {
            self.undo_import(&old).await;
            return Err(e.into());
        }
        if let Err(e) = self.after_authentication_change().await {
            tracing::error!(error = %e, "cannot remove the Digest secrets after an import");
        }
        let now = self.now();
        let in_use = self.certs.files.view(now, Vec::new())?.certificate.fingerprint_sha256;
        let certificate = match backup.certificate {
            None => CertificateImport::None,
            Some((_, fingerprint)) if fingerprint == in_use => CertificateImport::Unchanged,
            Some(_) if !install_certificate => CertificateImport::Skipped,
            Some((pair, _)) => {
                let change = CertificateChange::Issued {
                    chain_pem: pair.chain_pem,
                    key_pem: pair.key_pem,
                    what: format!("certificate restored from a backup of {}", backup.info.host_name),
                };
                self.change_certificate(change, actor).await?;
                CertificateImport::Installed
            }
        };
        let outcome = crate::backup::ImportOutcome {
            backup: backup.info,
            configuration: serde_json::to_value(self.running().redacted()).unwrap_or_default(),
            changed_sections,
            users: self.auth.users().users.into_keys().collect(),
            certificate,
            unknown_keys: backup.unknown_keys,
        };
        self.event_with(
            EventKind::ConfigImported,
            actor,
            &format!(
                "configuration backup of {} made {} imported: {} account(s), certificate {}",
                outcome.backup.host_name,
                outcome.backup.created,
                outcome.users.len(),
                serde_json::to_value(certificate).unwrap_or_default().as_str().unwrap_or_default()
            ),
            serde_json::json!({
                "host_name": outcome.backup.host_name,
                "created": outcome.backup.created,
                "product_version": outcome.backup.product_version,
                "changed_sections": outcome.changed_sections,
                "users": outcome.users,
                "certificate": certificate,
                "provisional": self.pending().is_some(),
            }),
        );
        Ok(outcome)
    }

    /// Puts the configuration back after an import failed half way (its
    /// accounts could not be written): nothing of it stays.
    #[cfg(feature = "backup")]
    async fn undo_import(&self, old: &Config) {
        if *self.running() == *old {
            return;
        }
        match self.apply(old.clone()).await {
            Ok(()) => self.event(
                EventKind::ConfigRolledBack,
                &Actor::default(),
                "the import could not write the accounts; its settings were undone",
            ),
            Err(e) => tracing::error!(error = %e, "undoing a failed import's settings failed"),
        }
    }

    /// Restore: running goes back to the stored configuration.
    pub async fn restore(&self, actor: &Actor) -> Result<Arc<Config>, ApplyError> {
        let _guard = self.apply_lock.lock().await;
        let target = self.loaded_from_stored();
        self.apply(target).await?;
        self.after_authentication_change().await?;
        self.event(EventKind::ConfigRestored, actor, "running configuration restored from the stored one");
        Ok(self.running())
    }

    /// Store: writes the running configuration permanently.
    pub async fn store(&self, actor: &Actor) -> Result<(), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        // An unconfirmed change must not become permanent: after a power cut
        // the device would come back with the settings that cut it off.
        self.ensure_nothing_pending()?;
        let running = self.running();
        let store = self.store.clone();
        let to_write = (*running).clone();
        tokio::task::spawn_blocking(move || store.store_config(&to_write)).await.map_err(|e| {
            StoreError::Io { action: "store", path: "config.json".into(), source: std::io::Error::other(e) }
        })??;
        *self.stored.lock().unwrap_or_else(|e| e.into_inner()) = (*running).clone();
        self.stored_since_load.store(true, std::sync::atomic::Ordering::SeqCst);
        self.event(EventKind::ConfigStored, actor, "running configuration stored permanently");
        drop(_guard);
        self.flush_token_use().await;
        Ok(())
    }

    /// Factory reset of the stored configuration: the factory settings
    /// become the stored ones (what the next start or Reboot loads), with an
    /// event; the running configuration is left as it is. The command line's
    /// `config factory-reset`, on a folder no server runs on.
    pub async fn store_factory_settings(&self, actor: &Actor) -> Result<(), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        self.ensure_nothing_pending()?;
        let factory = Config::default();
        factory.validate()?;
        let store = self.store.clone();
        let to_write = factory.clone();
        tokio::task::spawn_blocking(move || store.store_config(&to_write)).await.map_err(|e| {
            StoreError::Io { action: "store", path: "config.json".into(), source: std::io::Error::other(e) }
        })??;
        *self.stored.lock().unwrap_or_else(|e| e.into_inner()) = factory;
        self.event(EventKind::ConfigStored, actor, "factory settings stored");
        Ok(())
    }

    /// Reboot: a soft restart inside the process — running := stored,
    /// listeners rebound, certificates reloaded.
    pub async fn reboot(&self, actor: &Actor) -> Result<(), ApplyError> {
        self.reboot_as(
            actor,
            "soft reboot: stored configuration loaded, listeners rebound, certificates reloaded, temporary blocks lifted",
        )
        .await
    }

    /// Reload on the service manager's request (SIGHUP): what a Reboot
    /// does. Listeners whose port and protocol stay keep running, and so do
    /// their open connections; certificates change for new TLS connections.
    pub async fn reload(&self) -> Result<(), ApplyError> {
        self.reboot_as(
            &Actor::default(),
            "reload (SIGHUP): stored configuration loaded, listeners rebound, certificates reloaded, temporary blocks lifted",
        )
        .await
    }

    async fn reboot_as(&self, actor: &Actor, message: &str) -> Result<(), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        let target = self.loaded_from_stored();
        self.apply(target).await?;
        self.after_authentication_change().await?;
        let reloaded = {
            let _certs = self.cert_lock.lock().await;
            self.certs.reload(self.now())
        };
        if let Err(e) = reloaded {
            tracing::error!(error = %e, "certificate reload at reboot failed; the previous certificate stays in use");
        }
        // Blocks chosen to survive a reboot stay, with their remaining time.
        if !self.running().webserver.intrusion_detection.blocks_survive_reboot {
            self.security.clear_blocks();
        }
        self.auth.clear_lockouts();
        // What was stored since the last load is what this one loaded: a
        // valid `config.json` written by this server.
        if self.stored_since_load.swap(false, std::sync::atomic::Ordering::SeqCst) {
            *self.load_report.lock().unwrap_or_else(|e| e.into_inner()) = ConfigLoadReport {
                source: crate::store::ConfigSource::Stored,
                problems: Vec::new(),
                unknown_keys: Vec::new(),
            };
        }
        self.event(EventKind::Reboot, actor, message);
        drop(_guard);
        self.flush_token_use().await;
        Ok(())
    }

    /// The stored configuration with the command-line overrides, or without
    /// them if they no longer fit it (say, an override port now configured for the other protocol).
    fn loaded_from_stored(&self) -> Config {
        let mut stored = self.stored();
        stored.access_control = stored.access_control.without_temporary();
        let with = self.overrides.apply(&stored);
        match with.validate() {
            Ok(()) => with,
            Err(e) => {
                tracing::warn!(error = %e, "command-line ports conflict with the stored configuration; using the stored ports");
                stored
            }
        }
    }

    /// Whether running differs from stored, and where. Command-line port
    /// overrides are not unsaved changes: the comparison is with the stored
    /// configuration as loaded (overrides applied), which is what Restore and
    /// Reboot return to.
    pub fn status(&self) -> ConfigStatus {
        let changed = self.loaded_from_stored().changed_sections(&self.running());
        ConfigStatus {
            unsaved_changes: !changed.is_empty(),
            changed_sections: changed,
            load: self.load_report.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            pending: self.pending(),
            warnings: self.running().webserver.warnings(),
        }
    }
}

/// A change of the certificate in use, as [`Runtime::change_certificate`] applies it.
#[derive(Debug)]
pub enum CertificateChange {
    /// A new key, a self-signed certificate in use at once, and a request for the key.
    Generate(portcullis_cert::GenerateRequest),
    /// A certificate and key (PEM; the key may be in the certificate file, and encrypted).
    Upload {
        /// The certificate file.
        certificate: Vec<u8>,
        /// The key file, if apart.
        private_key: Option<Vec<u8>>,
        /// The key's passphrase.
        passphrase: Option<String>,
    },
    /// A CA-signed certificate for the pending request's key.
    UploadCertificate(Vec<u8>),
    /// Back to the factory certificate (a pending request goes too).
    Delete,
    /// A chain and key issued by ACME, or restored from a backup.
    Issued {
        /// The chain (PEM).
        chain_pem: String,
        /// The key (PEM).
        key_pem: String,
        /// What the event says happened.
        what: String,
    },
}

impl CertificateChange {
    fn what(&self) -> String {
        match self {
            CertificateChange::Generate(_) => "self-signed certificate and request generated".into(),
            CertificateChange::Upload { .. } => "certificate and key uploaded".into(),
            CertificateChange::UploadCertificate(_) => {
                "CA-signed certificate uploaded for the device's key".into()
            }
            CertificateChange::Delete => "individual certificate deleted".into(),
            CertificateChange::Issued { what, .. } => what.clone(),
        }
    }

    /// Checks the change with portcullis-cert's rules and writes the result
    /// (crash-safely): the material to serve, and warnings for the answer.
    fn write(
        self,
        files: &crate::certs::CertStore,
        now: OffsetDateTime,
    ) -> Result<(portcullis_cert::Material, Vec<String>), CertStoreError> {
        match self {
            CertificateChange::Generate(req) => files.generate(&req, now),
            CertificateChange::Upload { certificate, private_key, passphrase } => {
                files.upload(&certificate, private_key.as_deref(), passphrase.as_deref(), now)
            }
            CertificateChange::UploadCertificate(certificate) => files.upload_certificate(&certificate, now),
            CertificateChange::Delete => {
                files.delete()?;
                files.active(now).map(|(m, _)| (m, Vec::new()))
            }
            CertificateChange::Issued { chain_pem, key_pem, .. } => {
                files.install_pair(&chain_pem, &key_pem).map(|m| (m, Vec::new()))
            }
        }
    }
}

/// What an accounts change returns: whether the file must be written.
pub trait UsersChanged {
    /// Whether anything changed.
    fn changed(&self) -> bool;
}

impl UsersChanged for bool {
    fn changed(&self) -> bool {
        *self
    }
}

impl<T, E> UsersChanged for Result<T, E> {
    fn changed(&self) -> bool {
        self.is_ok()
    }
}

//! The running state and the one apply path every change takes: build the
//! new state, validate it, open what it needs, swap, then close what the old
//! state had — and change nothing if any step fails.
//!
//! Layers (SPEC §2): factory (built in), stored (on disk), running (here).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use portcullis_core::access_control::{AccessControlSettings, Decision};
use portcullis_core::config::Config;
use portcullis_core::events::EventKind;
use portcullis_core::{Clock, ValidationError};
use serde::Serialize;
use time::OffsetDateTime;

use crate::auth::Authenticator;
use crate::certs::Certificates;
use crate::listen::{BindError, Limits, ListenContext, ListenerSet};
use crate::security::Security;
use crate::store::{ConfigLoadReport, Store, StoreError};
use portcullis_core::settings::ListenerSpec;

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
            c.webserver.http_ports = ports.clone();
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

/// The running server's state.
pub struct Runtime {
    /// The data folder.
    pub store: Store,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Request and connection limits.
    pub limits: Arc<Limits>,
    /// Accounts and sessions.
    pub auth: Authenticator,
    /// The certificates.
    pub certs: Certificates,
    /// Access control, intrusion detection, logfile, event log.
    pub security: Arc<Security>,
    /// Static content folder, if one is served.
    pub webroot: Option<Arc<crate::webroot::Webroot>>,
    /// The device's own host names (`localhost`, its host name), for the
    /// `Host` check; the certificate's and the configured ones are added there.
    pub host_names: portcullis_core::hosts::HostNames,
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
    listeners: tokio::sync::Mutex<ListenerSet>,
    listen_ctx: OnceLock<ListenContext>,
    notifier: OnceLock<crate::notifications::Notifier>,
    #[cfg(feature = "acme")]
    acme: OnceLock<Arc<crate::acme::Acme>>,
    pending: Mutex<Option<Pending>>,
    next_pending: portable_atomic::AtomicU64,
    self_ref: OnceLock<std::sync::Weak<Runtime>>,
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
}

impl Runtime {
    /// A runtime whose running configuration is the stored one with overrides applied.
    pub fn new(parts: RuntimeParts) -> Result<Self, ValidationError> {
        let mut running = parts.overrides.apply(&parts.stored);
        // Temporary rules last until the next reboot, and a start is one.
        running.access_control = running.access_control.without_temporary();
        running.validate()?;
        parts.security.set_access_control(&running.access_control);
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
            listeners: tokio::sync::Mutex::new(ListenerSet::default()),
            listen_ctx: OnceLock::new(),
            notifier: OnceLock::new(),
            #[cfg(feature = "acme")]
            acme: OnceLock::new(),
            pending: Mutex::new(None),
            next_pending: portable_atomic::AtomicU64::new(1),
            self_ref: OnceLock::new(),
        })
    }

    /// Gives the runtime what its listeners need; called once at start.
    pub fn set_listen_context(&self, ctx: ListenContext) {
        let _ = self.listen_ctx.set(ctx);
    }

    /// Gives the runtime its notification queue; called once at start.
    pub fn set_notifier(&self, notifier: crate::notifications::Notifier) {
        let _ = self.notifier.set(notifier);
    }

    /// The notification queue.
    pub fn notifier(&self) -> &crate::notifications::Notifier {
        self.notifier.get().expect("the notifier is set at start, before any request")
    }

    /// Gives the runtime its ACME state; called once at start.
    #[cfg(feature = "acme")]
    pub fn set_acme(&self, acme: Arc<crate::acme::Acme>) {
        let _ = self.acme.set(acme);
    }

    /// The ACME state.
    #[cfg(feature = "acme")]
    pub fn acme(&self) -> &Arc<crate::acme::Acme> {
        self.acme.get().expect("the ACME state is set at start, before any request")
    }

    /// Sends `ctx` to the profiles the intrusion detection settings select.
    pub fn alert(&self, ctx: portcullis_core::profiles::AlertContext) {
        if let Some(n) = self.notifier.get() {
            n.alert(&self.running(), ctx);
        }
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
        if result.alert
            && let Some(n) = self.notifier.get()
        {
            n.alert(
                &running,
                portcullis_core::profiles::AlertContext {
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
        if new.webserver.hsts_enabled && !self.certs.trusted() {
            return Err(ApplyError::Invalid(ValidationError::new(
                "hsts_enabled",
                "hsts_needs_trusted_certificate",
                "HSTS can only be switched on while a CA-signed certificate is in use: with a self-signed one, browsers would lock everyone out",
            )));
        }
        self.open_listeners_for(&new, keep_old).await?;
        self.security.set_access_control(&new.access_control);
        self.running.store(Arc::new(new));
        if !keep_old {
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Ok(())
    }

    async fn open_listeners_for(&self, config: &Config, keep_old: bool) -> Result<(), ApplyError> {
        let Some(ctx) = self.listen_ctx.get() else { return Ok(()) };
        let wanted = config.webserver.listeners();
        let mut set = self.listeners.lock().await;
        let prepared = set.prepare(&wanted, &ctx.bind_addresses)?;
        set.commit(prepared, ctx, &wanted, keep_old).await?;
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
    async fn apply_provisional(&self, new: Config, reason: String) -> Result<(), ApplyError> {
        let previous = (*self.running()).clone();
        let grace = std::time::Duration::from_secs(u64::from(new.webserver.confirm_timeout_seconds));
        let sections = previous.changed_sections(&new);
        self.apply_with(new, true).await?;
        let id = self.next_pending.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let deadline = self.now() + time::Duration::seconds(grace.as_secs() as i64);
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Pending { id, previous, deadline, sections, reason });
        if let Some(me) = self.self_ref.get().cloned() {
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                if let Some(rt) = me.upgrade() {
                    rt.roll_back(id).await;
                }
            });
        }
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
    pub async fn confirm(&self, actor: &Actor, via: Option<ListenerSpec>) -> Result<(), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        if self.pending.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return Err(ApplyError::NothingPending);
        }
        let wanted = self.running().webserver.listeners();
        if let Some(v) = via
            && !wanted.contains(&v)
        {
            return Err(ApplyError::ConfirmFromNew(wanted));
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

    /// Gives the runtime a handle on itself, for its timers; called once at start.
    pub fn set_self_ref(self: &Arc<Self>) {
        let _ = self.self_ref.set(Arc::downgrade(self));
    }

    /// Opens the listeners of the running configuration (at start).
    pub async fn start_listeners(&self) -> Result<(), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        let running = self.running();
        self.open_listeners_for(&running, false).await
    }

    /// Closes every listener (at shutdown).
    pub async fn close_listeners(&self) {
        self.listeners.lock().await.close_all();
    }

    /// Set: makes `webserver` running, nothing written to disk.
    /// A Set arriving through a listener the new settings drop is provisional
    /// (then the pending change is returned beside the configuration).
    pub async fn set_webserver(
        &self,
        webserver: portcullis_core::settings::WebServerSettings,
        actor: &Actor,
        via: Option<ListenerSpec>,
    ) -> Result<(Arc<Config>, Option<PendingView>), ApplyError> {
        let _guard = self.apply_lock.lock().await;
        let old = self.running();
        let mut new = (*old).clone();
        if new.webserver == webserver {
            return Ok((self.running(), None));
        }
        self.ensure_nothing_pending()?;
        new.webserver = webserver;
        match via {
            Some(v) if !new.webserver.listeners().contains(&v) => {
                let reason = format!(
                    "the {} port {} this change was made through is closed by it",
                    if v.tls { "HTTPS" } else { "HTTP" },
                    v.port
                );
                self.apply_provisional(new, reason).await?;
                self.config_changed(
                    actor,
                    "web server settings set provisionally: confirm through the new configuration",
                    &old,
                );
            }
            _ => {
                self.apply(new).await?;
                self.config_changed(actor, "web server settings set", &old);
            }
        }
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
        &self,
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
        self.ensure_nothing_pending()?;
        new.access_control = settings;
        new.validate()?;
        let denied_requester = actor
            .client_ip
            .filter(|ip| self.security.policy_for(&new.access_control).decide(*ip) == Decision::Deny);
        match denied_requester {
            Some(ip) if !force => return Err(ApplyError::WouldLockOut(ip)),
            Some(ip) => {
                self.apply_provisional(
                    new,
                    format!("these rules deny the address {ip} this change was made from"),
                )
                .await?;
                self.config_changed(
                    actor,
                    "access control set provisionally (forced although it denies the requester): confirm from an allowed address",
                    &old,
                );
            }
            None => {
                self.apply(new).await?;
                self.config_changed(actor, "access control set", &old);
            }
        }
        Ok((self.running(), self.pending()))
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

    /// Changes the accounts with `change` (which says whether it changed
    /// anything), writes them crash-safely, then puts them in force.
    pub async fn update_users<T>(
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
        if let Err(e) = self.certs.reload(self.now()) {
            tracing::error!(error = %e, "certificate reload at reboot failed; the previous certificate stays in use");
        }
        self.security.clear_blocks();
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

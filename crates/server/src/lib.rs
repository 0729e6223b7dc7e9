//! portcullis: the web server of a network device, as a library a device's
//! firmware embeds. It serves the device's pages and API over HTTP and HTTPS,
//! manages the device's certificate, users and configuration life cycle.
//!
//! ```no_run
//! # async fn run() -> Result<(), portcullis::StartError> {
//! use axum::routing::get;
//! let device_routes = axum::Router::new().route("/api/device/snapshot", get(|| async { "jpeg…" }));
//! let server = portcullis::ServerBuilder::new("/var/lib/portcullis")
//!     .routes(device_routes) // protected by the same login, access control and intrusion detection
//!     .start()
//!     .await?;
//! server.wait_for_signal().await;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! `ui`, `acme`, `email`, `ip-notify`, `sip`, `digest`, `http2`, `openapi`
//! and `webroot` (all default) each carry one optional part; the crypto
//! provider is `aws-lc-rs` or `ring` (exactly one). What a build leaves out
//! answers 501 `feature_not_built` ([`build_info`]); [`build_info::BuildInfo`]
//! says what it carries.

#[cfg(feature = "acme")]
pub mod acme;
pub mod api;
pub mod auth;
#[cfg(feature = "backup")]
pub mod backup;
pub mod build_info;
pub mod certs;
#[cfg(any(feature = "ui", feature = "webroot"))]
mod conditional;
pub mod conn;
pub mod digest;
pub mod error;
pub mod expiry;
pub mod fleet;
#[cfg(feature = "http2")]
mod h2conn;
pub mod headers;
pub mod http;
pub mod i18n;
mod inflate;
pub mod listen;
pub mod notifications;
pub mod ports;
pub mod runtime;
pub mod second_factor;
pub mod security;
pub mod service;
mod storage;
pub mod store;
pub mod tls;
pub mod tokens;
#[cfg(feature = "ui")]
pub mod ui;
#[cfg(feature = "webroot")]
pub mod webroot;
#[cfg(not(feature = "webroot"))]
#[path = "webroot_absent.rs"]
pub mod webroot;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use portcullis_core::{Clock, SystemClock};
use tokio::sync::watch;

pub use crate::auth::{Group, Identity};
pub use crate::conn::Limits;
pub use crate::http::{Admin, Viewer};
pub use crate::runtime::{PortOverrides, Runtime};
pub use portcullis_sys::{Trimmed, trim_executable_pages, trim_heap};

use crate::auth::{Authenticator, UserRecord, UsersFile};
use crate::certs::Certificates;
use crate::listen::{ConnTracker, ListenContext};
use crate::store::{ADMIN_PASSWORD_FILE, SECRET_MODE, Store, StoreError, USERS_FILE};

/// Environment variable that may carry the first admin password.
pub const ADMIN_PASSWORD_ENV: &str = "PORTCULLIS_ADMIN_PASSWORD";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data folder could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration (with command-line ports) is not valid.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] portcullis_core::ValidationError),
    /// The certificate could not be loaded or created.
    #[error("certificate: {0}")]
    Certificate(#[from] certs::CertStoreError),
    /// The TLS server configuration could not be built (protocol versions,
    /// session ticket keys): a fault of the crypto library, not of the certificate.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A port could not be opened.
    #[error(transparent)]
    Apply(#[from] runtime::ApplyError),
    /// The first admin password was refused.
    #[error("admin password: {0}")]
    AdminPassword(String),
    /// The webroot folder cannot be served.
    #[error(transparent)]
    Webroot(#[from] webroot::WebrootError),
    /// The accounts file cannot be read (offline commands leave it as it is).
    #[error("the accounts file is unreadable: {0}")]
    Accounts(String),
}

/// Builds and starts a server on a data folder.
pub struct ServerBuilder {
    data_dir: PathBuf,
    overrides: PortOverrides,
    admin_password: Option<String>,
    limits: Limits,
    bind_addresses: Vec<IpAddr>,
    clock: Arc<dyn Clock>,
    routes: Router,
    webroot: Option<PathBuf>,
    notify_first_retry: std::time::Duration,
    #[cfg_attr(not(feature = "acme"), allow(dead_code))]
    acme_check_every: std::time::Duration,
    expiry_check_every: std::time::Duration,
    lock_wait: std::time::Duration,
}

/// How long a start waits by default for the data folder's lock, held by a
/// predecessor still on its way out (its threads may linger in the kernel
/// for a moment after it was told to stop, or killed).
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl ServerBuilder {
    /// A server on `data_dir`, with factory limits and no extra routes.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            overrides: PortOverrides::default(),
            admin_password: None,
            limits: Limits::default(),
            bind_addresses: Vec::new(),
            clock: Arc::new(SystemClock::new()),
            routes: Router::new(),
            webroot: None,
            notify_first_retry: std::time::Duration::from_secs(1),
            acme_check_every: std::time::Duration::from_secs(60),
            expiry_check_every: std::time::Duration::from_secs(3600),
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// How long to wait for the data folder's lock when another process
    /// holds it (default [`DEFAULT_LOCK_WAIT`]); then the start fails.
    pub fn lock_wait(mut self, wait: std::time::Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Ports that replace the configured ones for this run.
    pub fn port_overrides(mut self, overrides: PortOverrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Password of the `admin` account created on the first start (else one is generated).
    pub fn admin_password(mut self, password: Option<String>) -> Self {
        self.admin_password = password;
        self
    }

    /// Request and connection limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Addresses to listen on (default: every address, IPv6 and IPv4).
    pub fn bind_addresses(mut self, addresses: Vec<IpAddr>) -> Self {
        self.bind_addresses = addresses;
        self
    }

    /// A folder to serve at `/` (the UI and API keep `/admin/` and `/api/`).
    pub fn webroot(mut self, dir: Option<PathBuf>) -> Self {
        self.webroot = dir;
        self
    }

    /// First delay before a failed notification is tried again (then ×4 each time).
    pub fn notify_first_retry(mut self, delay: std::time::Duration) -> Self {
        self.notify_first_retry = delay;
        self
    }

    /// How often the ACME renewal task and the expiry watch look at the clock.
    pub fn certificate_checks(mut self, acme: std::time::Duration, expiry: std::time::Duration) -> Self {
        self.acme_check_every = acme;
        self.expiry_check_every = expiry;
        self
    }

    /// The clock (tests inject a manual one).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The device's own routes; they get the same login, access control and
    /// intrusion detection as the built-in ones. Use the [`Admin`] and
    /// [`Viewer`] extractors to require a group. They may use any path, and
    /// win over a webroot file of the same path; with them, every request
    /// for the webroot passes through the router first (without them, the
    /// webroot answers paths no built-in route claims at once).
    pub fn routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    /// Opens the data folder, loads or creates what is missing, opens the listeners.
    pub async fn start(self) -> Result<RunningServer, StartError> {
        tls::install_default_provider();
        // An invalid start leaves nothing behind: what can be checked without
        // the data folder is checked before it is created, and the
        // configuration before an account or a certificate is made.
        let webroot = self.webroot.as_deref().map(webroot::Webroot::new).transpose()?;
        if !self.data_dir.exists() {
            first_configuration(&self.overrides, &portcullis_core::config::Config::default())?;
            if let Some(p) = self.admin_password.as_deref() {
                auth::validate_password(p).map_err(|e| StartError::AdminPassword(e.message))?;
            }
        }
        let store = Store::open(&self.data_dir)?;
        let lock = wait_for_lock(&store, self.lock_wait).await?;
        let now = self.clock.now();
        let (stored, load_report) = store.load_config(now.unix_timestamp())?;
        first_configuration(&self.overrides, &stored)?;
        for problem in &load_report.problems {
            tracing::error!("CONFIGURATION PROBLEM: {problem}");
        }
        match load_report.source {
            store::ConfigSource::Stored => {}
            // A first start (nothing stored, nothing broken) is no fault.
            store::ConfigSource::Factory if load_report.problems.is_empty() => {
                tracing::info!(
                    "no configuration stored yet: running on factory settings until the first Store"
                );
            }
            store::ConfigSource::Factory => {
                tracing::warn!("the stored configuration is unreadable: running on factory settings");
            }
            store::ConfigSource::Backup => {
                tracing::warn!(
                    "config.json is unreadable: running on its previous good copy (config.json.bak)"
                );
            }
        }
        for key in &load_report.unknown_keys {
            tracing::warn!(key = %key, "unknown key in the stored configuration; ignored");
        }
        let users = load_or_create_users(&store, self.admin_password, now.unix_timestamp())?;
        let limits = Arc::new(self.limits);
        let (listeners, serve_jobs) = ports::ListenerSet::new(self.bind_addresses);
        // Recorded as events once the runtime (and its event log) is there.
        let problems = load_report.problems.clone();
        let (rt, info) = assemble(Assembly {
            store,
            clock: self.clock.clone(),
            now,
            stored,
            load_report,
            users,
            limits: limits.clone(),
            webroot,
            overrides: self.overrides,
            listeners,
            notify_first_retry: self.notify_first_retry,
        })?;
        tracing::info!(fingerprint_sha256 = %info.fingerprint_sha256, subject = %info.subject, "HTTPS certificate in use");
        let security = rt.security().clone();
        for problem in problems {
            security.event(
                now,
                portcullis_core::events::EventKind::ConfigLoadProblem,
                None,
                problem,
                serde_json::Value::Null,
            );
        }
        security.event(
            now,
            portcullis_core::events::EventKind::Startup,
            None,
            format!("portcullis {} started", build_info::summary()),
            serde_json::Value::Null,
        );
        let resolver = rt.certs().resolver.clone();
        // The front checks wrap the whole router once (not each route, which
        // would clone and box them per request).
        let direct_webroot = !self.routes.has_routes();
        let service = http::Front {
            rt: rt.clone(),
            body_limit: limits.max_body_bytes,
            upload_limit: limits.max_upload_bytes,
        }
        .wrap(app(rt.clone(), self.routes, &limits), direct_webroot);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let tracker = Arc::new(ConnTracker::default());
        let tls = tls::TlsConfigs::new(resolver)?;
        // The listeners get what they serve with now; the runtime's listener
        // set sends them the sockets it binds.
        listen::serve_jobs(
            ListenContext {
                service,
                tls: tls.clone(),
                limits,
                tracker: tracker.clone(),
                gate: security.clone(),
                shutdown: shutdown_rx,
                fleet: security.fleet().clone(),
            },
            serve_jobs,
        );
        // Stored blocks are back before the first connection is accepted.
        rt.spawn_block_watch();
        rt.start_listeners().await?;
        // What waited for the listeners: aws-lc's one-time seeding.
        tls::warm_up(tls.http());
        listen::spawn_heap_trim(tracker.clone());
        security.spawn_flusher();
        #[cfg(feature = "acme")]
        rt.spawn_acme_renewal(self.acme_check_every);
        expiry::spawn_expiry_watch(&rt, self.expiry_check_every);
        Ok(RunningServer { runtime: rt, shutdown_tx, tracker, _lock: lock })
    }
}

/// The data folder's lock, waiting up to `wait` for a holder to let go (saying
/// once that it waits, for which lock and whom).
async fn wait_for_lock(store: &Store, wait: std::time::Duration) -> Result<store::DataLock, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        match store.lock() {
            Err(StoreError::Locked(dir)) => {
                let lock = store.path(store::LOCK_FILE);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(StoreError::StillLocked {
                        dir,
                        lock,
                        holder: store.lock_holder(),
                        waited_seconds: wait.as_secs_f64().ceil() as u64,
                    });
                }
                if !said {
                    said = true;
                    tracing::warn!(
                        lock = %lock.display(),
                        holder = %store.lock_holder(),
                        "the data folder is locked; waiting up to {} s for it to be released",
                        wait.as_secs_f64().ceil()
                    );
                }
                tokio::time::sleep(left.min(std::time::Duration::from_millis(50))).await;
            }
            other => return other,
        }
    }
}

/// Reads the accounts, creating the `admin` account on the first start.
/// The running configuration a start makes of `stored`, checked: the
/// command-line ports applied, temporary rules gone (a start is a reboot).
fn first_configuration(
    overrides: &PortOverrides,
    stored: &portcullis_core::config::Config,
) -> Result<(), StartError> {
    let mut running = overrides.apply(stored);
    running.access_control = running.access_control.without_temporary();
    running.validate()?;
    Ok(())
}

fn load_or_create_users(
    store: &Store,
    password: Option<String>,
    now_unix: i64,
) -> Result<UsersFile, StartError> {
    if let Some(bytes) = store.read(USERS_FILE)? {
        match serde_json::from_slice::<UsersFile>(&bytes) {
            Ok(u) if !u.users.is_empty() => return Ok(u),
            Ok(_) => tracing::warn!("the accounts file holds no account; creating the admin account"),
            Err(e) => {
                let moved = store.move_aside(USERS_FILE, now_unix)?;
                tracing::error!(error = %e, moved = %moved.display(), "ACCOUNTS FILE UNREADABLE: moved aside; creating a new admin account");
            }
        }
    }
    let (password, generated) = match password.or_else(|| std::env::var(ADMIN_PASSWORD_ENV).ok()) {
        Some(p) => {
            auth::validate_password(&p).map_err(|e| StartError::AdminPassword(e.message))?;
            (p, false)
        }
        None => (auth::generate_password(), true),
    };
    let hash = auth::hash_password(&password).map_err(StartError::AdminPassword)?;
    let mut users = UsersFile::default();
    users.users.insert(
        "admin".into(),
        UserRecord {
            name: "admin".into(),
            group: auth::Group::Admins,
            password_hash: hash,
            generation: 1,
            digest: None,
            second_factor: None,
        },
    );
    if generated {
        store.write_atomic(ADMIN_PASSWORD_FILE, format!("{password}\n").as_bytes(), SECRET_MODE)?;
        // The password itself never goes to the log; only where to find it.
        eprintln!(
            "portcullis: created the account \"admin\"; its generated password is in {} (readable by root only). \
             Change it, then delete that file.",
            store.path(ADMIN_PASSWORD_FILE).display()
        );
    }
    store.write_json(USERS_FILE, &users, SECRET_MODE)?;
    Ok(users)
}

/// The whole application router.
fn app(rt: Arc<Runtime>, device_routes: Router, limits: &Limits) -> Router {
    // The JSON body limit goes on the routes that read bodies, not around
    // the whole router: static files and UI pages would pay for it on every
    // request. Routes with a limit of their own (uploads) override it.
    let protected = api::protected_routes(limits.max_upload_bytes)
        .merge(device_routes.with_state(()))
        .route_layer(middleware::from_fn_with_state(rt.clone(), http::authenticate))
        .route_layer(DefaultBodyLimit::max(limits.max_body_bytes));
    #[cfg(feature = "ui")]
    let ui_routes = ui::routes();
    // Without the UI, its paths say so instead of a 404.
    #[cfg(not(feature = "ui"))]
    let ui_routes = Router::new()
        .route("/admin", build_info::not_built_route("ui"))
        .route("/admin/", build_info::not_built_route("ui"))
        .route("/admin/{*rest}", build_info::not_built_route("ui"));
    Router::new()
        .merge(api::public_routes(&rt).route_layer(DefaultBodyLimit::max(limits.max_body_bytes)))
        .merge(ui_routes)
        .merge(protected)
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(rt.clone(), storage::watch))
        .with_state(rt)
}

/// Everything no route claims: the webroot's files, or `/` leading to the UI.
/// Every access with credentials is logged (SPEC), to a path that exists or
/// not: credentials are checked whenever they come, wrong ones counted and
/// answered 401 like anywhere else.
async fn fallback(
    axum::extract::State(rt): axum::extract::State<Arc<Runtime>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, _) = req.into_parts();
    let path = parts.uri.path();
    let webroot = rt.webroot().filter(|_| !http::reserved_for_api_and_ui(path));
    let login_required = webroot.is_some() && rt.running().webroot.login_required;
    let has_authorization = parts.headers.contains_key(::http::header::AUTHORIZATION);
    let has_session = http::cookie(&parts.headers, auth::SESSION_COOKIE).is_some();
    if login_required || has_authorization || has_session {
        match http::identify(&rt, &parts).await {
            Ok(id) => http::log_access(&rt, &parts, Some(&id.user), true),
            Err(resp) => {
                if login_required && !has_authorization {
                    http::log_access(&rt, &parts, None, false);
                }
                // A session that ended is no login attempt where none is needed.
                if login_required || has_authorization {
                    return resp;
                }
            }
        }
    }
    match webroot {
        Some(w) => w.serve(&parts.method, parts.uri.path(), &parts.headers).await,
        None if path == "/" && cfg!(feature = "ui") => {
            axum::response::Redirect::to("/admin/").into_response()
        }
        None if path == "/" => build_info::not_built_response("ui"),
        None => error::ApiError::not_found("no such resource").into_response(),
    }
}

/// A started server.
pub struct RunningServer {
    runtime: Arc<Runtime>,
    shutdown_tx: watch::Sender<bool>,
    tracker: Arc<ConnTracker>,
    _lock: store::DataLock,
}

impl RunningServer {
    /// The running state.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Stops accepting, lets open requests finish (bounded), then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        self.runtime.close_listeners().await;
        let grace = self.runtime.limits().shutdown_grace;
        if !self.tracker.wait_empty(grace).await {
            tracing::warn!(open = self.tracker.len(), "shutdown grace over; closing remaining connections");
        }
        self.runtime.flush_token_use().await;
        let security = self.runtime.security().clone();
        let _ = tokio::task::spawn_blocking(move || security.flush()).await;
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully; SIGHUP
    /// reloads (see [`RunningServer::run`]). The signal handlers are
    /// installed here; install them before [`ServerBuilder::start`] and call
    /// [`RunningServer::run`] instead to cover start-up too.
    pub async fn wait_for_signal(self) {
        match service::Signals::install() {
            Ok(signals) => self.run(signals).await,
            Err(e) => {
                tracing::warn!(error = %e, "no signal handlers; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                self.shutdown().await;
            }
        }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully. SIGHUP
    /// reloads what a Reboot reloads ([`Runtime::reload`]): the stored
    /// configuration, the listeners that changed, the certificates, and
    /// temporary blocks are lifted; open connections on ports that stay are
    /// kept. Under systemd (`NOTIFY_SOCKET`) it reports `READY=1` now,
    /// `RELOADING=1` then `READY=1` around each reload, `STOPPING=1` at the
    /// end, and feeds the watchdog when `WatchdogSec` is set.
    pub async fn run(self, mut signals: service::Signals) {
        service::notify_ready(&self.status_line().await);
        let watchdog = service::spawn_watchdog();
        while let service::Request::Reload = signals.next().await {
            tracing::info!("SIGHUP: reloading");
            service::notify_reloading();
            if let Err(e) = self.runtime.reload().await {
                tracing::error!(error = %e, "reload refused; the running configuration stays");
            }
            service::notify_ready(&self.status_line().await);
        }
        tracing::info!("shutting down");
        service::notify_stopping();
        drop(watchdog);
        self.shutdown().await;
    }

    /// One line saying what is open, for the service manager's status.
    async fn status_line(&self) -> String {
        let open = self.runtime.open_listeners().await;
        let ports = |tls: bool| {
            open.iter().filter(|l| l.tls == tls).map(|l| l.port.to_string()).collect::<Vec<_>>().join(", ")
        };
        match (ports(false), ports(true)) {
            (h, s) if s.is_empty() => format!("serving HTTP on {h}"),
            (h, s) if h.is_empty() => format!("serving HTTPS on {s}"),
            (h, s) => format!("serving HTTP on {h}, HTTPS on {s}"),
        }
    }
}

/// What a serving start and an offline opening load differently; [`assemble`]
/// loads the rest the same way for both.
struct Assembly {
    store: Store,
    clock: Arc<dyn Clock>,
    /// The instant the configuration was loaded at (one reading of the clock for the whole start).
    now: time::OffsetDateTime,
    stored: portcullis_core::config::Config,
    load_report: store::ConfigLoadReport,
    users: UsersFile,
    limits: Arc<Limits>,
    webroot: Option<Arc<webroot::Webroot>>,
    overrides: PortOverrides,
    listeners: ports::ListenerSet,
    notify_first_retry: std::time::Duration,
}

/// The runtime over a loaded data folder (API token key, certificate,
/// security state, ACME state, notification queue), with the certificate
/// in use.
fn assemble(a: Assembly) -> Result<(Arc<Runtime>, portcullis_cert::CertificateInfo), StartError> {
    let now = a.now;
    let token_key = tokens::TokenKey::load_or_create(&a.store, now.unix_timestamp())?;
    let (certs, info) = Certificates::load(a.store.clone(), now)?;
    let fleet =
        Arc::new(fleet::Fleet::new(a.clock.clone(), env!("CARGO_PKG_VERSION"), &build_info::features()));
    let security = Arc::new(security::Security::load(a.store.clone(), &a.stored.access_control, now, fleet));
    #[cfg(feature = "acme")]
    let acme = Arc::new(acme::Acme::load(&a.store, certs.resolver.clone()));
    let notifier = notifications::Notifier::new(security.clone(), a.clock.clone(), a.notify_first_retry);
    let runtime = runtime::Runtime::new(runtime::RuntimeParts {
        store: a.store,
        clock: a.clock,
        limits: a.limits,
        auth: Authenticator::new(a.users, token_key),
        certs,
        security,
        webroot: a.webroot,
        overrides: a.overrides,
        stored: a.stored,
        load_report: a.load_report,
        listeners: a.listeners,
        notifier,
        #[cfg(feature = "acme")]
        acme,
    })?;
    Ok((Arc::new(runtime), info))
}

/// The device's change path without serving, for the command line's
/// offline commands: the runtime over a data folder no server runs on (its
/// lock is held until this is closed), with nothing listening. Every change
/// goes through the runtime's methods, as the API's do.
pub struct OfflineDevice {
    runtime: Arc<Runtime>,
    _lock: store::DataLock,
}

impl OfflineDevice {
    /// Opens and locks the data folder `data_dir` and loads what a start
    /// loads, without creating an account; call inside a Tokio runtime.
    pub fn open(data_dir: impl Into<PathBuf>) -> Result<Self, StartError> {
        tls::install_default_provider();
        let data_dir: PathBuf = data_dir.into();
        let store = Store::open(&data_dir)?;
        let lock = store.lock()?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let now = clock.now();
        let (stored, load_report) = store.load_config(now.unix_timestamp())?;
        let users = match store.read(USERS_FILE)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| StartError::Accounts(e.to_string()))?,
            None => UsersFile::default(),
        };
        // Nothing is ever bound: a Set's ports are the next start's to open.
        let (runtime, _) = assemble(Assembly {
            store,
            clock,
            now,
            stored,
            load_report,
            users,
            limits: Arc::new(Limits::default()),
            webroot: None,
            overrides: PortOverrides::default(),
            listeners: ports::ListenerSet::offline(),
            notify_first_retry: std::time::Duration::from_secs(1),
        })?;
        Ok(Self { runtime, _lock: lock })
    }

    /// The runtime, whose methods make the changes.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Writes the events the changes recorded, then releases the folder.
    pub fn close(self) {
        self.runtime.security().flush();
    }
}

/// Gives the executable's start-up code back to the kernel, from a thread of
/// its own: half a second from now and again a second later (see
/// [`trim_executable_pages`]).
///
/// Call it once the server is up. The delay lets the work that follows
/// start-up (first requests, the first certificate and notification checks)
/// run first; the second pass catches pages that threads running during the
/// first one mapped again. It logs one line with what it gave back, or why
/// it could not.
pub fn trim_startup_code() {
    let spawned = std::thread::Builder::new().name("portcullis-trim".into()).spawn(|| {
        let mut given = 0u64;
        for wait_ms in [500, 1000] {
            std::thread::sleep(std::time::Duration::from_millis(wait_ms));
            match trim_executable_pages() {
                Ok(t) => given += t.resident_before,
                // Elsewhere than Linux this is expected: no warning.
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                    return tracing::debug!("start-up code stays resident: {e}");
                }
                Err(e) => return tracing::warn!("start-up code stays resident: {e}"),
            }
        }
        tracing::info!(kib = given / 1024, "start-up code given back to the kernel");
    });
    if let Err(e) = spawned {
        tracing::warn!("start-up code stays resident: no thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_configuration_failure_is_not_a_certificate_error() {
        let e = StartError::from(rustls::Error::FailedToGetRandomBytes);
        assert!(matches!(e, StartError::Tls(_)), "{e:?}");
        assert!(e.to_string().starts_with("TLS configuration: "), "{e}");
    }
}

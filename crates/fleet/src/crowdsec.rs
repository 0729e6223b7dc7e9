//! The CrowdSec Local API client (see `portcullis_core::crowdsec` for the
//! rules): the bouncer's decision stream, and the watcher's login and
//! alerts.
//!
//! [`Bouncer`] polls the stream every poll interval into a shared
//! [`DecisionSet`]; an unreachable LAPI leaves the set as it was (its bans
//! expire on their own). [`Signaller`] sends each local block as an alert
//! from a bounded queue, retrying a few times; it logs in when it has no
//! token or the LAPI refused the one it had. Neither the bouncer key nor
//! the machine password appears in an error, a log line or a `Debug`.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_core::Clock;
use portcullis_core::crowdsec::{
    Alert, BlockFacts, CrowdSecSettings, DecisionSet, DecisionStream, LapiUrl, MAX_PENDING_ALERTS, SCENARIO,
    StreamOutcome, alert_retry_delay,
};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::SetupError;
use crate::tls::{Trust, client_config, roots};

/// Longest wait for one LAPI request (connection and answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a decision stream answer per decision kept: a decision is
/// about 200 bytes of JSON; the bound leaves room for ignored ones.
pub const STREAM_BYTES_PER_DECISION: usize = 1024;
/// Longest answer other than the decision stream.
pub const MAX_SMALL_ANSWER: usize = 64 * 1024;

/// Why a LAPI request failed. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LapiError {
    /// No answer: connection refused, timeout, TLS failure.
    #[error("the CrowdSec LAPI cannot be reached: {0}")]
    Unreachable(String),
    /// The LAPI refused the bouncer key or the machine login (401, 403).
    #[error("the CrowdSec LAPI refused the credentials (HTTP {0})")]
    Refused(u16),
    /// Another error status.
    #[error("the CrowdSec LAPI answered HTTP {0}: {1}")]
    Status(u16, String),
    /// The answer is not what the LAPI documents, or too long.
    #[error("the CrowdSec LAPI's answer is malformed: {0}")]
    Malformed(String),
    /// The alert lacks a field the LAPI requires (checked before sending).
    #[error("the alert is incomplete: {0}")]
    Incomplete(String),
    /// No machine credentials are configured.
    #[error("no machine credentials are configured")]
    NoMachine,
}

impl LapiError {
    /// A stable code for metrics and the event log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Refused(_) => "refused",
            Self::Status(..) => "status",
            Self::Malformed(_) => "malformed",
            Self::Incomplete(_) => "incomplete",
            Self::NoMachine => "no_machine",
        }
    }
}

#[derive(Deserialize)]
struct LoginAnswer {
    token: String,
}

/// A client of one LAPI, with the settings' credentials.
pub struct LapiClient {
    url: LapiUrl,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    bouncer_key: Option<String>,
    machine: Option<(String, String)>,
    token: Mutex<Option<String>>,
    max_stream_bytes: usize,
    user_agent: String,
}

impl std::fmt::Debug for LapiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LapiClient")
            .field("url", &self.url)
            .field("machine_id", &self.machine.as_ref().map(|m| &m.0))
            .finish()
    }
}

impl LapiClient {
    /// A client for validated `settings`; `version` is the device
    /// software's, sent as `User-Agent: portcullis/VERSION` (the LAPI refuses
    /// a watcher whose agent is not `NAME/VERSION`).
    pub fn new(settings: &CrowdSecSettings, version: &str) -> Result<Self, SetupError> {
        let url = settings.lapi().map_err(|m| SetupError::new("lapi_url", m))?;
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        tcp.set_nodelay(true);
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let https = if url.https {
            let roots = roots(settings.ca_pem.as_deref()).map_err(|m| SetupError::new("ca_pem", m))?;
            let tls =
                client_config(Trust::Roots(roots), None).map_err(|(_, m)| SetupError::new("ca_pem", m))?;
            Arc::unwrap_or_clone(tls)
        } else {
            // Never used for http:// (the connector only wraps https URLs
            // in TLS), but the builder wants a configuration.
            let tls = client_config(Trust::Roots(rustls::RootCertStore::empty()), None);
            match tls {
                Ok(c) => Arc::unwrap_or_clone(c),
                Err((_, m)) => return Err(SetupError::new("lapi_url", m)),
            }
        };
        let https = builder.with_tls_config(https).https_or_http().enable_http1().wrap_connector(tcp);
        let max_decisions = usize::try_from(settings.max_decisions).unwrap_or(usize::MAX);
        Ok(Self {
            url,
            http: Client::builder(TokioExecutor::new()).build(https),
            bouncer_key: settings.bouncer_key.as_ref().map(|k| k.expose().to_string()),
            machine: match (&settings.machine_id, &settings.machine_password) {
                (Some(id), Some(pw)) => Some((id.clone(), pw.expose().to_string())),
                _ => None,
            },
            token: Mutex::new(None),
            max_stream_bytes: max_decisions.saturating_mul(STREAM_BYTES_PER_DECISION).max(1 << 20),
            user_agent: format!(
                "portcullis/{}",
                version.replace(|c: char| !c.is_ascii_graphic() || c == '/', "_")
            ),
        })
    }

    async fn request(
        &self,
        method: Method,
        endpoint: &str,
        auth: Option<(header::HeaderName, String)>,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Bytes, LapiError> {
        let mut req = Request::builder()
            .method(method)
            .uri(self.url.endpoint(endpoint))
            .header(header::USER_AGENT, &self.user_agent)
            .header(header::ACCEPT, "application/json");
        if let Some((name, value)) = auth {
            req = req.header(name, value);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        // The URL was validated and the key is printable ASCII: a failure
        // here names neither.
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| LapiError::Malformed("the request could not be built".into()))?;
        let answer = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| LapiError::Unreachable(portcullis_core::error::error_chain(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        LapiError::Malformed(format!("the answer is longer than {limit} bytes"))
                    } else {
                        LapiError::Unreachable(e.to_string())
                    }
                })?
                .to_bytes();
            Ok::<_, LapiError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, answer)
            .await
            .map_err(|_| LapiError::Unreachable("no answer in time".into()))??;
        match status {
            s if s.is_success() => Ok(body),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(LapiError::Refused(status.as_u16())),
            s => {
                let text =
                    String::from_utf8_lossy(&body[..body.len().min(200)]).replace(char::is_control, " ");
                Err(LapiError::Status(s.as_u16(), text))
            }
        }
    }

    /// One poll of the decision stream (`startup`: all live decisions).
    pub async fn decisions(&self, startup: bool) -> Result<DecisionStream, LapiError> {
        let key = self.bouncer_key.clone().ok_or(LapiError::Refused(401))?;
        let endpoint = if startup { "/v1/decisions/stream?startup=true" } else { "/v1/decisions/stream" };
        let auth = Some((header::HeaderName::from_static("x-api-key"), key));
        let body = self.request(Method::GET, endpoint, auth, None, self.max_stream_bytes).await?;
        serde_json::from_slice(&body).map_err(|e| LapiError::Malformed(e.to_string()))
    }

    /// Logs the machine in; the token is kept for the next alerts.
    pub async fn login(&self) -> Result<String, LapiError> {
        let (id, password) = self.machine.as_ref().ok_or(LapiError::NoMachine)?;
        let body = serde_json::json!({"machine_id": id, "password": password, "scenarios": [SCENARIO]});
        let body = serde_json::to_vec(&body).map_err(|e| LapiError::Malformed(e.to_string()))?;
        let answer =
            self.request(Method::POST, "/v1/watchers/login", None, Some(body), MAX_SMALL_ANSWER).await?;
        let LoginAnswer { token } =
            serde_json::from_slice(&answer).map_err(|e| LapiError::Malformed(e.to_string()))?;
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
        Ok(token)
    }

    /// Sends alerts (each checked first); returns the LAPI's alert ids. Logs
    /// in when there is no token, and once more when the token is refused.
    pub async fn post_alerts(&self, alerts: &[Alert]) -> Result<Vec<String>, LapiError> {
        for a in alerts {
            a.validate().map_err(|e| LapiError::Incomplete(format!("{}: {}", e.field, e.message)))?;
        }
        let body = serde_json::to_vec(alerts).map_err(|e| LapiError::Malformed(e.to_string()))?;
        let mut fresh = false;
        loop {
            let cached = self.token.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let token = match cached {
                Some(t) => t,
                None => {
                    fresh = true;
                    self.login().await?
                }
            };
            let auth = Some((header::AUTHORIZATION, format!("Bearer {token}")));
            match self.request(Method::POST, "/v1/alerts", auth, Some(body.clone()), MAX_SMALL_ANSWER).await {
                Err(LapiError::Refused(_)) if !fresh => {
                    *self.token.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                Err(e) => return Err(e),
                Ok(answer) => {
                    return serde_json::from_slice(&answer).map_err(|e| LapiError::Malformed(e.to_string()));
                }
            }
        }
    }
}

/// What the bouncer and the signaller report, for metrics and the event log.
pub trait CrowdSecObserver: Send + Sync {
    /// A poll succeeded with `outcome`; `held` bans are enforced now.
    fn polled(&self, outcome: &StreamOutcome, held: usize);
    /// A poll failed (the last known bans stay).
    fn poll_failed(&self, error: &LapiError);
    /// An alert was accepted by the LAPI.
    fn alert_sent(&self, facts: &BlockFacts);
    /// An alert was given up after its attempts (or the queue was full).
    fn alert_failed(&self, facts: &BlockFacts, error: &LapiError);
}

/// An observer that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl CrowdSecObserver for NoObserver {
    fn polled(&self, _: &StreamOutcome, _: usize) {}
    fn poll_failed(&self, _: &LapiError) {}
    fn alert_sent(&self, _: &BlockFacts) {}
    fn alert_failed(&self, _: &BlockFacts, _: &LapiError) {}
}

/// The bans shared between the bouncer and the connection check.
pub type SharedDecisions = Arc<RwLock<DecisionSet>>;

/// The polling task.
#[derive(Debug)]
pub struct Bouncer {
    task: JoinHandle<()>,
}

impl Bouncer {
    /// Polls `client` every `interval` (the first poll at once, with
    /// `startup=true` until one succeeds, whose answer replaces the whole
    /// set) into `decisions`.
    pub fn start(
        client: Arc<LapiClient>,
        interval: Duration,
        decisions: SharedDecisions,
        clock: Arc<dyn Clock>,
        observer: Arc<dyn CrowdSecObserver>,
    ) -> Self {
        let task = tokio::spawn(async move {
            let mut startup = true;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match client.decisions(startup).await {
                    Ok(stream) => {
                        let now = clock.monotonic();
                        let (outcome, held) = if startup {
                            // All live decisions: a new set, built without
                            // the lock (100,000 take tens of milliseconds),
                            // replaces the old one at once.
                            let capacity =
                                decisions.read().unwrap_or_else(PoisonError::into_inner).capacity();
                            let mut fresh = DecisionSet::new(capacity);
                            let outcome = fresh.apply(&stream, now);
                            let held = fresh.len();
                            *decisions.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                            (outcome, held)
                        } else {
                            let mut set = decisions.write().unwrap_or_else(PoisonError::into_inner);
                            (set.apply(&stream, now), set.len())
                        };
                        startup = false;
                        observer.polled(&outcome, held);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "CrowdSec poll failed");
                        // Expired bans still go while the LAPI is away.
                        decisions
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .purge_expired(clock.monotonic());
                        observer.poll_failed(&e);
                    }
                }
            }
        });
        Self { task }
    }

    /// Stops polling (the bans stay in the shared set).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The alert-sending task and its bounded queue.
pub struct Signaller {
    queue: mpsc::Sender<BlockFacts>,
    observer: Arc<dyn CrowdSecObserver>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Signaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaller").field("waiting", &(MAX_PENDING_ALERTS - self.queue.capacity())).finish()
    }
}

impl Signaller {
    /// Starts the task sending alerts through `client`.
    pub fn start(client: Arc<LapiClient>, observer: Arc<dyn CrowdSecObserver>) -> Self {
        let (queue, mut rx) = mpsc::channel::<BlockFacts>(MAX_PENDING_ALERTS);
        let obs = observer.clone();
        let task = tokio::spawn(async move {
            while let Some(facts) = rx.recv().await {
                let alert = Alert::for_block(&facts);
                let mut attempt = 1;
                while let Some(delay) = alert_retry_delay(attempt) {
                    tokio::time::sleep(delay).await;
                    match client.post_alerts(std::slice::from_ref(&alert)).await {
                        Ok(_) => {
                            obs.alert_sent(&facts);
                            break;
                        }
                        Err(e @ LapiError::Incomplete(_)) => {
                            obs.alert_failed(&facts, &e);
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, attempt, "CrowdSec alert failed");
                            if alert_retry_delay(attempt + 1).is_none() {
                                obs.alert_failed(&facts, &e);
                            }
                            attempt += 1;
                        }
                    }
                }
            }
        });
        Self { queue, observer, task }
    }

    /// Queues the alert for a local block; never waits (a full queue gives it up, reported).
    pub fn block(&self, facts: BlockFacts) {
        if let Err(mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f)) =
            self.queue.try_send(facts)
        {
            self.observer.alert_failed(&f, &LapiError::Unreachable("too many alerts waiting".into()));
        }
    }

    /// Stops the task; alerts waiting are not sent.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Signaller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

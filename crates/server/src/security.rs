//! Access control at the connection, intrusion detection, the web server
//! logfile and the event log of a running server (SPEC §4, §5).
//!
//! The decisions live in `portcullis-core`; this module holds their state,
//! swaps the compiled access policy atomically (the accept loop reads it
//! without a lock), and writes the logfile and event log to the data folder
//! (at most every [`FLUSH_INTERVAL`], and at shutdown).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_core::access_control::{AccessControlSettings, AccessPolicy, Decision, IpNetwork};
use portcullis_core::events::{Actor, Event, EventKind, EventLog};
use portcullis_core::intrusion::{BlockedClient, ClientKey, IntrusionDetector};
use portcullis_core::logfile::{LogEntry, Logfile};
use portcullis_core::settings::IntrusionDetectionSettings;
use portcullis_core::throttle::{FailureThrottle, Throttled};
use portcullis_core::{Monotonic, Timestamp};
use time::OffsetDateTime;

use crate::conn::ConnectionGate;
use crate::fleet::Fleet;
use crate::store::{SECRET_MODE, Store};

/// File of the web server logfile.
pub const LOGFILE_FILE: &str = "logfile.json";
/// File of the event log.
pub const EVENTS_FILE: &str = "events.json";
/// The blocks that survive a reboot (`blocks_survive_reboot`), in the data folder.
pub const BLOCKS_FILE: &str = "blocks.json";
/// Longest the logfile and event log stay unwritten after a change.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// Clients the intrusion detector tracks at once (blocked ones included):
/// when full, the client whose last failure is oldest is forgotten first,
/// blocked clients last (their block is then lifted and logged).
pub const TRACKED_CLIENTS: usize = portcullis_core::intrusion::DEFAULT_CAPACITY;
/// Entries the web server logfile keeps (oldest dropped first).
pub const LOGFILE_ENTRIES: usize = portcullis_core::logfile::DEFAULT_CAPACITY;
/// Events the event log keeps (oldest dropped first).
pub const EVENT_LOG_ENTRIES: usize = portcullis_core::events::DEFAULT_CAPACITY;
/// Password checks of one client (IPv4 address, IPv6 /64) that may run at
/// once; the others wait for their turn. One: a block or the rate bound that
/// a check leads to is then in force before the client's next check starts,
/// however many requests it sent at once (HTTP/2 streams, parallel
/// connections), and a client that knows its password loses nothing, since
/// a verified password is cached.
pub const PASSWORD_CHECKS_PER_CLIENT: usize = 1;

/// Why a client may not have its credentials checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptRefusal {
    /// Its address is denied (a block or an access rule), maybe since a
    /// moment ago: the request was admitted before.
    Denied,
    /// It failed too often too fast (see [`portcullis_core::throttle`]).
    Throttled(Throttled),
}

/// A client's turn to have a password checked (see
/// [`PASSWORD_CHECKS_PER_CLIENT`]); the next one's turn comes when it is dropped.
pub struct AttemptSlot<'a> {
    security: &'a Security,
    key: ClientKey,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for AttemptSlot<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        // Forget the client's semaphore once no one holds or awaits it: the
        // table only ever holds clients with a check in flight.
        let mut slots = self.security.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.get(&self.key).is_some_and(|s| Arc::strong_count(s) == 1) {
            slots.remove(&self.key);
        }
    }
}

/// What a failed login led to.
#[derive(Debug, Clone, Default)]
pub struct FailureResult {
    /// The client's failure count.
    pub count: u32,
    /// An alert is due (already written to the event log).
    pub alert: bool,
    /// The client was blocked now.
    pub blocked: bool,
}

/// Security state of a running server.
pub struct Security {
    policy: ArcSwap<AccessPolicy>,
    settings: Mutex<AccessControlSettings>,
    detector: Mutex<IntrusionDetector>,
    /// Whether the blocks changed since they were last stored (blocks that
    /// survive a reboot are written by [`Security::store_blocks`]).
    blocks_changed: AtomicBool,
    throttle: Mutex<FailureThrottle>,
    /// Per client with a password check in flight: its turns.
    slots: Mutex<HashMap<ClientKey, Arc<tokio::sync::Semaphore>>>,
    logfile: Mutex<Logfile>,
    events: Mutex<EventLog>,
    dirty: AtomicBool,
    store: Store,
    /// The fleet integrations: events go to syslog, blocks to CrowdSec, and
    /// CrowdSec's bans join the access decision.
    fleet: Arc<Fleet>,
    /// When the last storage-full alert went out.
    storage_alerted: Mutex<Option<portcullis_core::clock::Monotonic>>,
}

/// At most one storage-full alert in this long: an operator pressing Store
/// again on a full device must not flood the mailbox.
pub const STORAGE_ALERT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").finish_non_exhaustive()
    }
}

impl ConnectionGate for Security {
    fn admit(&self, peer: IpAddr) -> bool {
        self.decide_with(&self.policy.load(), peer) == Decision::Allow
    }
}

impl Security {
    /// Security state for `settings`, with the logfile and event log read
    /// back from the data folder (unreadable files are moved aside).
    pub fn load(
        store: Store,
        settings: &AccessControlSettings,
        now: OffsetDateTime,
        fleet: Arc<Fleet>,
    ) -> Self {
        let logfile = match store.read(LOGFILE_FILE) {
            Ok(Some(b)) => match Logfile::from_json(&String::from_utf8_lossy(&b), LOGFILE_ENTRIES) {
                Ok(l) => l,
                Err(e) => {
                    let _ = store.move_aside(LOGFILE_FILE, now.unix_timestamp());
                    tracing::error!(error = %e, "web server logfile unreadable; moved aside, starting a new one");
                    Logfile::new(LOGFILE_ENTRIES)
                }
            },
            _ => Logfile::new(LOGFILE_ENTRIES),
        };
        let events = match store.read(EVENTS_FILE) {
            Ok(Some(b)) => match EventLog::from_json(&String::from_utf8_lossy(&b), EVENT_LOG_ENTRIES) {
                Ok(l) => l,
                Err(e) => {
                    let _ = store.move_aside(EVENTS_FILE, now.unix_timestamp());
                    tracing::error!(error = %e, "event log unreadable; moved aside, starting a new one");
                    EventLog::new(EVENT_LOG_ENTRIES)
                }
            },
            _ => EventLog::new(EVENT_LOG_ENTRIES),
        };
        Self {
            policy: ArcSwap::new(Arc::new(AccessPolicy::compile(settings, &[]))),
            settings: Mutex::new(settings.clone()),
            detector: Mutex::new(IntrusionDetector::new(TRACKED_CLIENTS)),
            blocks_changed: AtomicBool::new(false),
            throttle: Mutex::new(FailureThrottle::default()),
            slots: Mutex::new(HashMap::new()),
            logfile: Mutex::new(logfile),
            events: Mutex::new(events),
            dirty: AtomicBool::new(false),
            store,
            fleet,
            storage_alerted: Mutex::new(None),
        }
    }

    /// The fleet integrations.
    pub fn fleet(&self) -> &Arc<Fleet> {
        &self.fleet
    }

    /// The decision for `ip` under `policy` and, when built, CrowdSec's bans:
    /// allow rules still win, trusted proxies are never banned at the
    /// connection (their clients are, per request, once resolved).
    pub fn decide_with(&self, policy: &AccessPolicy, ip: IpAddr) -> Decision {
        #[cfg(feature = "crowdsec")]
        {
            let bans = self.fleet.decisions().read().unwrap_or_else(|e| e.into_inner());
            if !bans.is_empty() {
                return portcullis_core::crowdsec::admit(policy, &bans, ip, self.fleet.monotonic());
            }
        }
        policy.decide(ip)
    }

    /// The compiled access policy in force.
    pub fn policy(&self) -> Arc<AccessPolicy> {
        self.policy.load_full()
    }

    /// The policy `settings` would give, with the current blocks (to check a change before making it).
    pub fn policy_for(&self, settings: &AccessControlSettings) -> AccessPolicy {
        let blocks = self.detector.lock().unwrap_or_else(|e| e.into_inner()).blocked_networks();
        AccessPolicy::compile(settings, &blocks)
    }

    /// Puts `settings` in force (with the current automatic blocks).
    pub(crate) fn set_access_control(&self, settings: &AccessControlSettings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings.clone();
        self.recompile();
    }

    fn recompile(&self) {
        let settings = self.settings.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let blocks = self.detector.lock().unwrap_or_else(|e| e.into_inner()).blocked_networks();
        self.policy.store(Arc::new(AccessPolicy::compile(&settings, &blocks)));
        self.blocks_changed.store(true, Ordering::Relaxed);
    }

    /// Lifts the blocks whose time is up at `now`, at once for new
    /// connections and requests too, each with its event.
    pub(crate) fn expire_blocks(&self, now: Timestamp) {
        let lifted = {
            let mut detector = self.detector.lock().unwrap_or_else(|e| e.into_inner());
            if detector.next_expiry().is_none_or(|due| due > now.monotonic) {
                return;
            }
            detector.expire(now)
        };
        if lifted.is_empty() {
            return;
        }
        self.recompile();
        for key in lifted {
            self.event(
                now.utc,
                EventKind::ClientUnblocked,
                None,
                format!("block of {key} ended: its time is up"),
                serde_json::json!({"address": key.to_string(), "reason": "expired"}),
            );
        }
    }

    /// Writes the blocks to the data folder when they changed and are to
    /// survive a reboot; removes the file when they are not. Errors are logged:
    /// the blocks in memory stay in force either way.
    pub(crate) fn store_blocks(&self, survive: bool, force: bool) {
        if !self.blocks_changed.swap(false, Ordering::Relaxed) && !force {
            return;
        }
        let result = if survive {
            self.store.write_json(BLOCKS_FILE, &self.blocked(), SECRET_MODE)
        } else {
            self.store.remove(BLOCKS_FILE)
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "the blocks could not be stored");
            self.blocks_changed.store(true, Ordering::Relaxed);
        }
    }

    /// Puts back the blocks stored before a restart, with their remaining
    /// time; those whose time is up are dropped (and from the file).
    pub(crate) fn restore_blocks(&self, now: Timestamp) {
        let stored = match self.store.read(BLOCKS_FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "the stored blocks could not be read");
                return;
            }
        };
        let blocks: Vec<BlockedClient> = match serde_json::from_slice(&stored) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "the stored blocks are not readable; they are dropped");
                Vec::new()
            }
        };
        let restored = self.detector.lock().unwrap_or_else(|e| e.into_inner()).restore(&blocks, now);
        tracing::info!(restored, stored = blocks.len(), "blocks restored from the data folder");
        self.recompile();
    }

    /// The client address of a request from `peer`: `X-Forwarded-For` is
    /// believed only from a trusted proxy.
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let policy = self.policy.load();
        if policy.is_trusted_proxy(peer) { policy.client_ip(peer, forwarded_for) } else { peer }
    }

    /// The key a client's failures, turns and rate are kept under (IPv6 per
    /// /64, as the intrusion detector counts).
    fn key_for(&self, ip: IpAddr) -> ClientKey {
        portcullis_core::intrusion::client_key(ip, portcullis_core::intrusion::DEFAULT_IPV6_PREFIX)
    }

    /// Whether the access policy now refuses `ip` (a block or an access rule).
    pub fn denies(&self, ip: IpAddr) -> bool {
        self.decide_with(&self.policy.load(), ip) == Decision::Deny
    }

    /// Whether `ip` may have credentials checked at `now`: not if it is
    /// denied by now, nor while the failed-login rate bound holds it back.
    pub fn may_attempt(&self, ip: IpAddr, now: Monotonic) -> Result<(), AttemptRefusal> {
        if self.denies(ip) {
            return Err(AttemptRefusal::Denied);
        }
        let key = self.key_for(ip);
        self.throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(&key, now)
            .map_err(AttemptRefusal::Throttled)
    }

    /// Waits (at most `wait`) for `ip`'s turn to have a password checked;
    /// `None` if it did not come in time.
    pub async fn attempt_slot(&self, ip: IpAddr, wait: Duration) -> Option<AttemptSlot<'_>> {
        let key = self.key_for(ip);
        let semaphore = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(PASSWORD_CHECKS_PER_CLIENT)))
            .clone();
        // Made before the wait, so that a waiter that gives up still removes
        // the client's entry if it was the last one to hold it.
        let mut slot = AttemptSlot { security: self, key, permit: None };
        slot.permit = tokio::time::timeout(wait, semaphore.acquire_owned()).await.ok()?.ok();
        slot.permit.is_some().then_some(slot)
    }

    /// Counts a presented-and-wrong credential; blocks and alerts as the
    /// rules say, and counts it against the client's failed-login rate
    /// (whether intrusion detection is on or not).
    pub fn record_failure(
        &self,
        ip: IpAddr,
        user: Option<&str>,
        settings: &IntrusionDetectionSettings,
        block_ip: bool,
        now: Timestamp,
    ) -> FailureResult {
        let policy = self.policy.load_full();
        let can_block = block_ip && policy.may_block(ip);
        let outcome = {
            self.throttle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_failure(self.key_for(ip), now.monotonic);
            self.detector
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_failure(ip, now, settings, can_block)
        };
        let now = now.utc;
        let Some(outcome) = outcome else { return FailureResult::default() };
        // The name is the client's choice: cut and without control characters,
        // so a guess cannot make a 10,000-character line or forge one.
        let user = user.map(|u| portcullis_core::logfile::clean(u, portcullis_core::logfile::MAX_USER_LEN));
        // The actor is the client; the name it tried is no one who acted
        // (shown as the actor, "admin" would read as an administrator's doing).
        let actor = Some(Actor::new(None, Some(ip)));
        if let Some(lifted) = outcome.lifted {
            self.event(
                now,
                EventKind::ClientUnblocked,
                None,
                format!("block of {lifted} lifted: the table of tracked clients is full"),
                serde_json::json!({"address": lifted.to_string(), "reason": "evicted"}),
            );
        }
        #[cfg(feature = "metrics")]
        self.fleet.metrics().failed_logins.inc();
        if outcome.block {
            #[cfg(feature = "crowdsec")]
            self.fleet.block(portcullis_core::crowdsec::BlockFacts {
                network: outcome.key,
                failures: outcome.count,
                first_failure: outcome.first_failure,
                blocked_at: now,
                ban: outcome
                    .until
                    .and_then(|u| std::time::Duration::try_from(u - now).ok())
                    .unwrap_or(std::time::Duration::ZERO),
                window: std::time::Duration::from_secs(u64::from(settings.timeout_minutes) * 60),
            });
            self.event(
                now,
                EventKind::ClientBlocked,
                actor.clone(),
                match outcome.until {
                    None if settings.blocks_survive_reboot => format!(
                        "{} blocked after {} failed logins (until an administrator lifts the block)",
                        outcome.key, outcome.count
                    ),
                    None => format!(
                        "{} blocked after {} failed logins (temporary deny until reboot)",
                        outcome.key, outcome.count
                    ),
                    Some(until) => format!(
                        "{} blocked after {} failed logins (temporary deny until {})",
                        outcome.key,
                        outcome.count,
                        until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
                    ),
                },
                serde_json::json!({"address": outcome.key.to_string(), "count": outcome.count, "attempted_user": user}),
            );
        }
        if outcome.block || outcome.lifted.is_some() {
            self.recompile();
        }
        if outcome.alert {
            self.event(
                now,
                EventKind::IntrusionAlert,
                actor,
                format!("intrusion alert: {} failed logins from {}", outcome.count, outcome.key),
                serde_json::json!({"address": outcome.key.to_string(), "count": outcome.count, "attempted_user": user}),
            );
        }
        tracing::warn!(client_ip = %ip, user = %user.as_deref().unwrap_or("-"), count = outcome.count, alert = outcome.alert, blocked = outcome.block, "failed login");
        FailureResult { count: outcome.count, alert: outcome.alert, blocked: outcome.block }
    }

    /// The blocked clients.
    pub fn blocked(&self) -> Vec<BlockedClient> {
        self.detector.lock().unwrap_or_else(|e| e.into_inner()).blocked()
    }

    /// Lifts the block of the client `address` belongs to; false if it was not blocked.
    pub(crate) fn unblock(
        &self,
        address: IpAddr,
        actor: Option<Actor>,
        now: OffsetDateTime,
    ) -> Option<IpNetwork> {
        let mut detector = self.detector.lock().unwrap_or_else(|e| e.into_inner());
        let key = detector.key_for(address);
        if !detector.is_blocked(&key) {
            return None;
        }
        detector.unblock(&key);
        drop(detector);
        self.recompile();
        self.event(
            now,
            EventKind::ClientUnblocked,
            actor,
            format!("block of {key} lifted by an admin"),
            serde_json::json!({"address": key.to_string(), "reason": "admin"}),
        );
        Some(key)
    }

    /// Lifts every automatic block (reboot).
    pub(crate) fn clear_blocks(&self) {
        self.detector.lock().unwrap_or_else(|e| e.into_inner()).clear_blocks();
        self.recompile();
    }

    /// Records an access in the web server logfile.
    pub fn log_access(
        &self,
        ip: IpAddr,
        user: Option<&str>,
        authorized: bool,
        url: &str,
        now: Timestamp,
        timeout_minutes: u32,
    ) {
        self.logfile.lock().unwrap_or_else(|e| e.into_inner()).record(
            ip,
            user,
            authorized,
            url,
            now,
            timeout_minutes,
        );
        self.dirty.store(true, Ordering::Relaxed);
        self.fleet.access(now.utc, ip, user, authorized, url);
    }

    /// The logfile entries, oldest first.
    pub fn logfile_entries(&self) -> Vec<LogEntry> {
        self.logfile.lock().unwrap_or_else(|e| e.into_inner()).entries().cloned().collect()
    }

    /// The logfile as plain text (e-mail attachments, `?format=text`).
    pub fn logfile_text(&self) -> String {
        self.logfile.lock().unwrap_or_else(|e| e.into_inner()).to_text()
    }

    /// Appends an event.
    pub fn event(
        &self,
        now: OffsetDateTime,
        kind: EventKind,
        actor: Option<Actor>,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> u64 {
        let (id, event) = {
            let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
            let id = events.push(now, kind, actor, message, details);
            (id, events.recent(1).pop())
        };
        self.dirty.store(true, Ordering::Relaxed);
        // Outside the lock: the exporter only queues, but a report it makes
        // (a drop) comes back here.
        if let Some(event) = event {
            self.fleet.event(&event);
        }
        id
    }

    /// Whether a storage-full alert is due at `now` (none in the last
    /// [`STORAGE_ALERT_INTERVAL`]); if so, counts it as sent.
    pub fn storage_alert_due(&self, now: portcullis_core::clock::Monotonic) -> bool {
        let mut last = self.storage_alerted.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| now.since(t) < STORAGE_ALERT_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Events after `since`, at most `limit` (the newest ones).
    pub fn events(&self, since: u64, limit: usize) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner()).since(since);
        let skip = events.len().saturating_sub(limit);
        events.into_iter().skip(skip).collect()
    }

    /// Writes the logfile and event log if they changed.
    pub fn flush(&self) {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let logfile = self.logfile.lock().unwrap_or_else(|e| e.into_inner()).to_json();
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner()).to_json();
        // Both hold user names and addresses: readable by the server's user only.
        if let Err(e) = self.store.write_atomic(LOGFILE_FILE, logfile.as_bytes(), SECRET_MODE) {
            tracing::error!(error = %e, "cannot write the web server logfile");
            self.dirty.store(true, Ordering::Relaxed);
        }
        if let Err(e) = self.store.write_atomic(EVENTS_FILE, events.as_bytes(), SECRET_MODE) {
            tracing::error!(error = %e, "cannot write the event log");
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Flushes every [`FLUSH_INTERVAL`] until the process ends.
    pub fn spawn_flusher(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_INTERVAL).await;
                let Some(me) = me.upgrade() else { break };
                let _ = tokio::task::spawn_blocking(move || me.flush()).await;
            }
        });
    }
}

/// What the fleet integrations report, written to the event log and the
/// metrics (it holds the security state weakly: the integrations' tasks
/// must not keep it alive).
pub struct FleetEvents {
    security: std::sync::Weak<Security>,
    clock: Arc<dyn portcullis_core::Clock>,
    /// Whether the last poll of the CrowdSec LAPI failed: an outage is one
    /// event, not one per poll.
    #[cfg_attr(not(feature = "crowdsec"), allow(dead_code))]
    lapi_down: AtomicBool,
}

impl FleetEvents {
    /// Reports into `security`'s event log.
    pub fn new(security: &Arc<Security>, clock: Arc<dyn portcullis_core::Clock>) -> Arc<Self> {
        Arc::new(Self { security: Arc::downgrade(security), clock, lapi_down: AtomicBool::new(false) })
    }

    /// Counts `n` messages for `destination` with `result` in the syslog metric.
    #[cfg(all(feature = "syslog", feature = "metrics"))]
    fn count_syslog(&self, destination: &str, result: &'static str, n: u64) {
        if let Some(s) = self.security.upgrade() {
            let labels =
                portcullis_fleet::metrics::SyslogLabels { destination: destination.to_string(), result };
            s.fleet().metrics().syslog_messages.get_or_create(&labels).inc_by(n);
        }
    }

    #[cfg_attr(not(any(feature = "syslog", feature = "crowdsec")), allow(dead_code))]
    fn record(&self, kind: EventKind, message: String, details: serde_json::Value) {
        if let Some(security) = self.security.upgrade() {
            security.event(self.clock.now(), kind, None, message, details);
        }
    }
}

/// The observers of one server, handed to [`crate::fleet::Fleet::apply`].
#[derive(Clone)]
pub struct FleetObservers(pub Arc<FleetEvents>);

impl crate::fleet::FleetObserver for FleetObservers {
    #[cfg(feature = "syslog")]
    fn syslog(&self) -> Arc<dyn portcullis_fleet::syslog::SyslogObserver> {
        self.0.clone()
    }
    #[cfg(feature = "crowdsec")]
    fn crowdsec(&self) -> Arc<dyn portcullis_fleet::crowdsec::CrowdSecObserver> {
        self.0.clone()
    }
}

#[cfg(feature = "syslog")]
impl portcullis_fleet::syslog::SyslogObserver for FleetEvents {
    fn sent(&self, destination: &str) {
        #[cfg(feature = "metrics")]
        self.count_syslog(destination, "sent", 1);
        #[cfg(not(feature = "metrics"))]
        let _ = destination;
    }

    fn dropped(&self, destination: &str, count: u64) {
        #[cfg(feature = "metrics")]
        self.count_syslog(destination, "dropped", count);
        self.record(
            EventKind::SyslogDropped,
            format!("{count} syslog messages for {destination} were dropped: its queue was full while it could not be reached"),
            serde_json::json!({"destination": destination, "dropped": count}),
        );
    }

    fn failed(&self, destination: &str, error: &str) {
        tracing::warn!(destination, error, "syslog collector unreachable; messages stay queued");
    }
}

#[cfg(feature = "crowdsec")]
impl portcullis_fleet::crowdsec::CrowdSecObserver for FleetEvents {
    fn polled(&self, outcome: &portcullis_core::crowdsec::StreamOutcome, held: usize) {
        let _ = outcome;
        self.lapi_down.store(false, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        if let Some(s) = self.security.upgrade() {
            let m = s.fleet().metrics();
            m.crowdsec_polls.get_or_create(&portcullis_fleet::metrics::ResultLabel { result: "ok" }).inc();
            m.crowdsec_decisions.set(i64::try_from(held).unwrap_or(i64::MAX));
        }
        #[cfg(not(feature = "metrics"))]
        let _ = held;
    }

    fn poll_failed(&self, error: &portcullis_fleet::crowdsec::LapiError) {
        #[cfg(feature = "metrics")]
        if let Some(s) = self.security.upgrade() {
            s.fleet()
                .metrics()
                .crowdsec_polls
                .get_or_create(&portcullis_fleet::metrics::ResultLabel { result: "failed" })
                .inc();
        }
        if !self.lapi_down.swap(true, Ordering::Relaxed) {
            self.record(
                EventKind::CrowdsecUnreachable,
                format!("the CrowdSec Local API cannot be polled ({error}); the last known decisions stay in force"),
                serde_json::json!({"code": error.code()}),
            );
        }
    }

    fn alert_sent(&self, facts: &portcullis_core::crowdsec::BlockFacts) {
        #[cfg(feature = "metrics")]
        if let Some(s) = self.security.upgrade() {
            s.fleet()
                .metrics()
                .alerts
                .get_or_create(&portcullis_fleet::metrics::AlertLabels {
                    channel: "crowdsec".into(),
                    result: "sent",
                })
                .inc();
        }
        tracing::info!(address = %facts.network, "block shared with CrowdSec");
    }

    fn alert_failed(
        &self,
        facts: &portcullis_core::crowdsec::BlockFacts,
        error: &portcullis_fleet::crowdsec::LapiError,
    ) {
        #[cfg(feature = "metrics")]
        if let Some(s) = self.security.upgrade() {
            s.fleet()
                .metrics()
                .alerts
                .get_or_create(&portcullis_fleet::metrics::AlertLabels {
                    channel: "crowdsec".into(),
                    result: "failed",
                })
                .inc();
        }
        self.record(
            EventKind::CrowdsecAlertFailed,
            format!("the block of {} could not be sent to CrowdSec: {error}", facts.network),
            serde_json::json!({"address": facts.network.to_string(), "code": error.code()}),
        );
    }
}

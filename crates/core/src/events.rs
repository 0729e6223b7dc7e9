//! The device's event log: alerts, blocks, configuration and certificate
//! changes, reboots, notification outcomes. Each event names its actor (user
//! and client IP) where there is one, so the log doubles as the audit trail.
//!
//! # Bound
//!
//! At most `capacity` events (default [`DEFAULT_CAPACITY`]); when full, the
//! oldest is dropped. Messages are cut to [`MAX_MESSAGE_LEN`] bytes, user names
//! to [`crate::logfile::MAX_USER_LEN`], and details larger than
//! [`MAX_DETAILS_LEN`] bytes of JSON are replaced by a marker, so one event
//! stays small (a user name can come from an attacker). Ids increase by one
//! per event and survive persistence, so a client polling with
//! [`EventLog::since`] never sees an id twice.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::logfile::{MAX_USER_LEN, clean};

/// Events kept by default.
pub const DEFAULT_CAPACITY: usize = 1000;
/// Longest message stored, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Largest `details` stored, in bytes of JSON.
pub const MAX_DETAILS_LEN: usize = 4096;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The server started.
    Startup,
    /// A soft restart: running := stored, temporary blocks lifted.
    Reboot,
    /// A client exceeded the intrusion detection threshold and an alert went out.
    IntrusionAlert,
    /// A client was blocked automatically.
    ClientBlocked,
    /// A block was lifted by an admin or by eviction.
    ClientUnblocked,
    /// Running settings were changed (Set).
    ConfigChanged,
    /// Running settings were stored permanently.
    ConfigStored,
    /// Running settings went back to the stored ones.
    ConfigRestored,
    /// A provisional change was confirmed through the new configuration.
    ConfigConfirmed,
    /// A provisional change was not confirmed in time and was undone.
    ConfigRolledBack,
    /// The stored configuration could not be read at start.
    ConfigLoadProblem,
    /// A configuration backup was downloaded (it holds every secret, encrypted).
    ConfigExported,
    /// A configuration backup was imported: settings, accounts, and the
    /// certificate if asked for.
    ConfigImported,
    /// The certificate was generated, uploaded or deleted.
    CertificateChanged,
    /// A notification was delivered.
    NotificationSent,
    /// A notification could not be delivered.
    NotificationFailed,
    /// A user was added, changed or removed.
    UserChanged,
    /// An API token was made (its name, account and scope; never its secret).
    TokenCreated,
    /// An API token was revoked.
    TokenRevoked,
    /// An account's second factor (TOTP) was enrolled and confirmed.
    SecondFactorEnrolled,
    /// An account's second factor was reset (by an administrator, its
    /// person, or the command line).
    SecondFactorReset,
    /// A recovery code of an account's second factor was used (it works once).
    RecoveryCodeUsed,
    /// An account's password logins were locked after too many failures
    /// (from any addresses); its tokens and the console still work.
    AccountLocked,
    /// The individual certificate and its private key were downloaded.
    CertificateDownloaded,
    /// The certificate in use expires soon, or has expired.
    CertificateExpiring,
    /// An ACME enrolment or renewal failed (it is retried).
    AcmeFailed,
    /// Syslog messages were dropped from a collector's full queue.
    SyslogDropped,
    /// The CrowdSec Local API could not be polled (the last known decisions stay).
    CrowdsecUnreachable,
    /// A local block could not be sent to the CrowdSec Local API.
    CrowdsecAlertFailed,
    /// The data folder's storage was full: a change could not be written
    /// and was not made (recorded when the log can be written again).
    StorageFull,
    /// An event of a kind this version does not know (read from a newer
    /// firmware's log; kept rather than failing the whole log).
    #[serde(other)]
    Other,
}

/// Who caused an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// The client's address, if the event came from a request.
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<IpAddr>,
}

impl Actor {
    /// An actor from an optional user name and client address.
    pub fn new(user: Option<&str>, client_ip: Option<IpAddr>) -> Self {
        Self { user: user.map(str::to_string), client_ip }
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increasing id, unique for the device's lifetime.
    pub id: u64,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: OffsetDateTime,
    /// What happened.
    pub kind: EventKind,
    /// Who caused it; none for the server itself.
    pub actor: Option<Actor>,
    /// One line for a person.
    pub message: String,
    /// Structured data for programs (e.g. the client blocked, the sections changed).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// The event log as the API returns it and as it is persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventLogDocument {
    /// The id the next event gets.
    #[serde(default)]
    pub next_id: u64,
    /// The events, oldest first.
    pub events: Vec<Event>,
}

/// A persisted event log that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the stored event log is not valid: {0}")]
pub struct EventLogError(#[from] serde_json::Error);

/// The bounded event log.
#[derive(Debug, Clone)]
pub struct EventLog {
    capacity: usize,
    /// Oldest first; ids strictly increasing.
    events: VecDeque<Event>,
    next_id: u64,
}

impl EventLog {
    /// An empty log holding at most `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // Ids start at 1 so that `since(0)` means "everything".
        Self { capacity, events: VecDeque::with_capacity(capacity), next_id: 1 }
    }

    /// Appends an event and returns its id.
    pub fn push(
        &mut self,
        time: OffsetDateTime,
        kind: EventKind,
        actor: Option<Actor>,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let event = Event { id, time, kind, actor, message: message.into(), details };
        self.append(bounded(event));
        id
    }

    fn append(&mut self, event: Event) {
        if self.events.len() >= self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The events with an id greater than `id`, oldest first.
    pub fn since(&self, id: u64) -> Vec<Event> {
        let start = self.events.partition_point(|e| e.id <= id);
        self.events.range(start..).cloned().collect()
    }

    /// The last `n` events, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Event> {
        let start = self.events.len().saturating_sub(n);
        self.events.range(start..).cloned().collect()
    }

    /// The id of the newest event (0 when none was ever logged).
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Number of events held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Most events kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A copy of the log in its API and storage shape.
    pub fn to_document(&self) -> EventLogDocument {
        EventLogDocument { next_id: self.next_id, events: self.events.iter().cloned().collect() }
    }

    /// A log holding `doc`'s events (the newest `capacity` of them).
    pub fn from_document(doc: EventLogDocument, capacity: usize) -> Self {
        let mut events = doc.events;
        events.sort_by_key(|e| e.id);
        events.dedup_by_key(|e| e.id);
        let mut log = Self::new(capacity);
        let after_last = events.last().map_or(1, |e| e.id.saturating_add(1));
        log.next_id = doc.next_id.max(after_last).max(1);
        for event in events {
            log.append(bounded(event));
        }
        log
    }

    /// The log as JSON, for persistence.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string(&self.to_document()).unwrap_or_default()
    }

    /// Reads a log written by [`EventLog::to_json`].
    pub fn from_json(text: &str, capacity: usize) -> Result<Self, EventLogError> {
        Ok(Self::from_document(serde_json::from_str(text)?, capacity))
    }
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// Applies the size bounds of the module docs.
fn bounded(mut event: Event) -> Event {
    event.message = clean(&event.message, MAX_MESSAGE_LEN);
    if let Some(actor) = &mut event.actor {
        actor.user = actor.user.as_deref().map(|u| clean(u, MAX_USER_LEN));
        actor.client_ip = actor.client_ip.map(|ip| ip.to_canonical());
    }
    let size = serde_json::to_string(&event.details).map_or(usize::MAX, |s| s.len());
    if size > MAX_DETAILS_LEN {
        event.details = serde_json::json!({ "truncated": true, "size": size });
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

    fn ids(events: &[Event]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    fn filled(capacity: usize, n: u64) -> EventLog {
        let mut log = EventLog::new(capacity);
        for i in 0..n {
            log.push(
                T0 + Duration::minutes(i as i64),
                EventKind::ConfigChanged,
                None,
                format!("change {i}"),
                json!(null),
            );
        }
        log
    }

    #[test]
    fn ids_increase_and_since_and_recent_page() {
        let log = filled(10, 5);
        assert_eq!(log.last_id(), 5);
        assert_eq!(ids(&log.since(0)), [1, 2, 3, 4, 5]);
        assert_eq!(ids(&log.since(3)), [4, 5]);
        assert!(log.since(5).is_empty());
        assert!(log.since(99).is_empty());
        assert_eq!(ids(&log.recent(2)), [4, 5]);
        assert_eq!(ids(&log.recent(50)), [1, 2, 3, 4, 5]);
        assert!(EventLog::new(3).since(0).is_empty());
        assert_eq!(EventLog::new(3).last_id(), 0);
    }

    #[test]
    fn the_oldest_is_dropped_first() {
        let log = filled(3, 7);
        assert_eq!(log.len(), 3);
        assert_eq!(ids(&log.since(0)), [5, 6, 7]);
        // A poller that fell behind gets what is left.
        assert_eq!(ids(&log.since(2)), [5, 6, 7]);
    }

    #[test]
    fn actor_and_details_are_kept_and_bounded() {
        let mut log = EventLog::new(10);
        let actor = Actor::new(Some("admin"), Some("::ffff:192.0.2.1".parse().expect("ip")));
        let id = log.push(
            T0,
            EventKind::ClientBlocked,
            Some(actor),
            "blocked 198.51.100.7",
            json!({"address": "198.51.100.7"}),
        );
        let e = &log.since(id - 1)[0];
        assert_eq!(e.actor.as_ref().and_then(|a| a.client_ip), Some("192.0.2.1".parse().expect("ip")));
        assert_eq!(e.details["address"], "198.51.100.7");
        let json = serde_json::to_value(e).expect("json");
        assert_eq!(json["kind"], "client_blocked");
        assert_eq!(json["time"], "2025-03-01T12:00:00Z");
        assert_eq!(json["actor"]["user"], "admin");

        let huge = "x".repeat(100_000);
        let id = log.push(
            T0,
            EventKind::IntrusionAlert,
            Some(Actor::new(Some(&huge), None)),
            huge.clone(),
            json!({ "user": huge }),
        );
        let e = &log.since(id - 1)[0];
        assert!(e.message.len() <= MAX_MESSAGE_LEN);
        assert!(e.actor.as_ref().and_then(|a| a.user.as_ref()).is_some_and(|u| u.len() <= MAX_USER_LEN));
        assert_eq!(e.details["truncated"], true);
    }

    #[test]
    fn persists_and_keeps_counting() {
        let mut log = filled(10, 4);
        log.push(T0, EventKind::Reboot, None, "reboot", json!({"by": "api"}));
        let back = EventLog::from_json(&log.to_json(), 10).expect("reads");
        assert_eq!(back.to_document(), log.to_document());
        // Ids continue after a restart, even if the file was cut down.
        let mut small = EventLog::from_json(&log.to_json(), 2).expect("reads");
        assert_eq!(ids(&small.since(0)), [4, 5]);
        assert_eq!(small.push(T0, EventKind::Startup, None, "up", json!(null)), 6);
        // Without next_id (a hand-made file), ids follow the highest stored one.
        let text = r#"{"events": [{"id": 9, "time": "2025-03-01T12:00:00Z", "kind": "startup", "actor": null, "message": "up"}]}"#;
        let mut log = EventLog::from_json(text, 10).expect("reads");
        assert_eq!(log.since(0)[0].details, serde_json::Value::Null);
        assert_eq!(log.push(T0, EventKind::Startup, None, "up", json!(null)), 10);
        assert!(EventLog::from_json("{", 10).is_err());
    }

    #[test]
    fn unknown_kinds_from_a_newer_firmware_are_kept() {
        let text = r#"{"next_id": 3, "events": [
            {"id": 1, "time": "2025-03-01T12:00:00Z", "kind": "acme_renewed", "actor": null, "message": "renewed", "details": {}},
            {"id": 2, "time": "2025-03-01T12:01:00Z", "kind": "reboot", "actor": null, "message": "reboot", "details": {}}
        ]}"#;
        let log = EventLog::from_json(text, 10).expect("reads");
        let kinds: Vec<_> = log.since(0).iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Other, EventKind::Reboot]);
    }

    #[test]
    fn every_kind_has_its_wire_name() {
        let names = [
            (EventKind::Startup, "startup"),
            (EventKind::Reboot, "reboot"),
            (EventKind::IntrusionAlert, "intrusion_alert"),
            (EventKind::ClientBlocked, "client_blocked"),
            (EventKind::ClientUnblocked, "client_unblocked"),
            (EventKind::ConfigChanged, "config_changed"),
            (EventKind::ConfigStored, "config_stored"),
            (EventKind::ConfigRestored, "config_restored"),
            (EventKind::ConfigLoadProblem, "config_load_problem"),
            (EventKind::ConfigExported, "config_exported"),
            (EventKind::ConfigImported, "config_imported"),
            (EventKind::CertificateChanged, "certificate_changed"),
            (EventKind::NotificationSent, "notification_sent"),
            (EventKind::NotificationFailed, "notification_failed"),
            (EventKind::UserChanged, "user_changed"),
        ];
        for (kind, name) in names {
            assert_eq!(serde_json::to_value(kind).expect("json"), name);
            assert_eq!(serde_json::from_value::<EventKind>(json!(name)).expect("parses"), kind);
        }
    }
}

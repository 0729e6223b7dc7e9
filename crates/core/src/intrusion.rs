//! Intrusion detection (SPEC §5): counting failed logins per client, deciding
//! when to alert and when to block.
//!
//! The detector is pure state: the caller reports each presented-and-wrong
//! credential with the current time and gets back what to do (alert, block).
//! It never sees successes, because a success must not reset a count (an
//! attacker holding one weak account must not launder its guesses with it).
//!
//! # Memory bound and eviction
//!
//! The table holds at most `capacity` clients (default [`DEFAULT_CAPACITY`]).
//! Its memory is allocated up front and does not grow: about 280 bytes per
//! client of capacity including hash-table slack, so about 3 MB by default. When a new client arrives at a full table, the
//! entry evicted is the one whose last failure is the oldest among the
//! entries that are **not blocked**; expired counts are by definition among
//! the oldest, so they go first. Only when every entry is blocked is the
//! blocked entry with the oldest last failure evicted, and its block lifted
//! (reported in [`FailureOutcome::lifted`]): at that point the attack comes
//! from more addresses than any per-address table can hold, and tracking the
//! newest attackers matters more than keeping the oldest out. "Oldest" is by
//! the order failures were recorded, so a clock step cannot confuse it.
//! Each failure costs one hash lookup and O(log capacity) index updates.
//!
//! # Clocks
//!
//! A count's timeout and the alert deadtime are intervals, measured on the
//! monotonic clock (see [`crate::clock`]): a wall clock stepped back by NTP
//! must not silence alerts for as long as the step, nor one stepped forward
//! expire every count. The wall clock only dates what is shown (when a block
//! was set, the last failure).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::access_control::IpNetwork;
use crate::clock::Timestamp;
use crate::settings::IntrusionDetectionSettings;

/// `now` moved on by `by`, on both clocks.
fn later(now: Timestamp, by: std::time::Duration) -> Timestamp {
    let utc = time::Duration::try_from(by).ok().and_then(|d| now.utc.checked_add(d)).unwrap_or(now.utc);
    Timestamp { utc, monotonic: now.monotonic.after(by) }
}

/// Clients tracked by default (about 3 MB): far more than the addresses that
/// legitimately fail a login between two count expiries.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// IPv6 clients are counted per /64 by default: one subscriber usually gets a
/// whole /64 and can pick any address in it, so counting per address would let
/// one attacker guess 2^64 times.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// What failures are counted under: an IPv4 address (/32) or an IPv6 network
/// (by default a /64). It is also exactly the network a block denies.
pub type ClientKey = IpNetwork;

/// What the caller must do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// The client the failure was counted for.
    pub key: ClientKey,
    /// The client's failure count including this one (before any reset by an alert).
    pub count: u32,
    /// Send an alert (and write it to the event log).
    pub alert: bool,
    /// Block `key` now (a temporary deny); true once per block.
    pub block: bool,
    /// A blocked client evicted to make room; its block is lifted.
    pub lifted: Option<ClientKey>,
    /// When the block set now ends (None: until reboot).
    pub until: Option<OffsetDateTime>,
    /// The first failure of the run this one belongs to (the run starts
    /// afresh after a timeout's gap or an alert's reset): where an alert
    /// about the client's attack begins.
    pub first_failure: OffsetDateTime,
}

/// A client the detector has blocked (also the form a block is stored in
/// when blocks survive a reboot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockedClient {
    /// The blocked address or IPv6 network.
    pub address: ClientKey,
    /// When the block was set.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
    /// When the client last failed a login.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_failure: OffsetDateTime,
    /// When the block ends by itself; null: at the next reboot.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
    /// How many times the client has been blocked while remembered (its
    /// blocks double with each when `block_duration_increment` is on).
    #[serde(default = "one")]
    pub offences: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone)]
struct Entry {
    count: u32,
    /// The first failure counted in `count` (wall clock: it is reported).
    first_failure: OffsetDateTime,
    last_failure: Timestamp,
    /// Position in `idle` or `blocked`: the recording order of the last failure.
    seq: u64,
    blocked_since: Option<OffsetDateTime>,
    /// When the block ends by itself (None while blocked: at reboot).
    blocked_until: Option<Timestamp>,
    /// Blocks this client has had while its entry was kept: a repeat
    /// offender's next block is longer. Forgotten with the entry (eviction,
    /// an administrator's unblock, a reboot's lift).
    offences: u32,
}

/// Failure counts per client, the global alert deadtime, and the blocks.
#[derive(Debug, Clone)]
pub struct IntrusionDetector {
    capacity: usize,
    ipv6_prefix: u8,
    entries: HashMap<ClientKey, Entry>,
    /// Non-blocked entries by the order of their last failure: eviction candidates first.
    idle: BTreeMap<u64, ClientKey>,
    /// Blocked entries by the order of their last failure.
    blocked: BTreeMap<u64, ClientKey>,
    next_seq: u64,
    /// The last alert for any client: the deadtime is global, as in the seed.
    last_alert: Option<Timestamp>,
}

impl IntrusionDetector {
    /// A detector tracking at most `capacity` clients (at least 1), IPv6 per /64.
    pub fn new(capacity: usize) -> Self {
        Self::with_ipv6_prefix(capacity, DEFAULT_IPV6_PREFIX)
    }

    /// A detector grouping IPv6 clients by `ipv6_prefix` bits (capped at 128).
    pub fn with_ipv6_prefix(capacity: usize, ipv6_prefix: u8) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            ipv6_prefix: ipv6_prefix.min(128),
            // Allocated once, at twice the entries ever held: evictions leave
            // tombstones, and with this slack the table cleans them up in
            // place instead of reallocating to a larger size.
            entries: HashMap::with_capacity(capacity.saturating_mul(2)),
            idle: BTreeMap::new(),
            blocked: BTreeMap::new(),
            next_seq: 0,
            last_alert: None,
        }
    }

    /// The key failures of `ip` are counted under.
    pub fn key_for(&self, ip: IpAddr) -> ClientKey {
        client_key(ip, self.ipv6_prefix)
    }

    /// Counts a presented-and-wrong credential from `ip` at `now`.
    ///
    /// `can_block` says whether this client may be blocked: `block_ip` is on,
    /// access control is enabled, and neither an allow rule nor the trusted
    /// proxy list covers it (see [`crate::access_control::AccessPolicy::may_block`]).
    /// Returns `None` when intrusion detection is off: nothing is counted.
    pub fn record_failure(
        &mut self,
        ip: IpAddr,
        now: Timestamp,
        settings: &IntrusionDetectionSettings,
        can_block: bool,
    ) -> Option<FailureOutcome> {
        if !settings.enabled {
            return None;
        }
        let key = self.key_for(ip);
        let lifted = if self.entries.contains_key(&key) { None } else { self.make_room() };
        let seq = self.next_seq;
        self.next_seq += 1;
        let timeout = minutes(settings.timeout_minutes);
        let entry = self.entries.entry(key).or_insert(Entry {
            count: 0,
            first_failure: now.utc,
            last_failure: now,
            seq,
            blocked_since: None,
            blocked_until: None,
            offences: 0,
        });
        // Same rule as the logfile: "within" the timeout means strictly less
        // than it, so a failure exactly `timeout_minutes` later starts over.
        if now.monotonic.since(entry.last_failure.monotonic) >= timeout {
            entry.count = 0;
        }
        if entry.count == 0 {
            entry.first_failure = now.utc;
        }
        entry.count = entry.count.saturating_add(1);
        let first_failure = entry.first_failure;
        entry.last_failure = now;
        let old_seq = std::mem::replace(&mut entry.seq, seq);
        let count = entry.count;

        let mut alert = false;
        let mut block = false;
        let mut until = None;
        if count > settings.notification_threshold {
            let deadtime = minutes(settings.deadtime_minutes);
            if self.last_alert.is_none_or(|last| now.monotonic.since(last.monotonic) >= deadtime) {
                alert = true;
                self.last_alert = Some(now);
                // "After an alert the count must again exceed the threshold".
                // With deadtime 0 every failure past the threshold alerts
                // (SPEC §1), so the count is kept.
                if settings.deadtime_minutes > 0 {
                    entry.count = 0;
                }
            }
            if can_block && entry.blocked_since.is_none() {
                block = true;
                entry.blocked_since = Some(now.utc);
                entry.offences = entry.offences.saturating_add(1);
                entry.blocked_until = settings.block_length(entry.offences).map(|d| later(now, d));
                until = entry.blocked_until.map(|t| t.utc);
            }
        }
        let is_blocked = entry.blocked_since.is_some();
        self.idle.remove(&old_seq);
        self.blocked.remove(&old_seq);
        if is_blocked {
            self.blocked.insert(seq, key);
        } else {
            self.idle.insert(seq, key);
        }
        Some(FailureOutcome { key, count, alert, block, lifted, until, first_failure })
    }

    /// Evicts one entry if the table is full (see the module docs); returns
    /// the key whose block was lifted, if a blocked entry had to go.
    fn make_room(&mut self) -> Option<ClientKey> {
        if self.entries.len() < self.capacity {
            return None;
        }
        if let Some((_, key)) = self.idle.pop_first() {
            self.entries.remove(&key);
            return None;
        }
        let (_, key) = self.blocked.pop_first()?;
        self.entries.remove(&key);
        Some(key)
    }

    /// Lifts the block on `key` and forgets its count (an admin's decision
    /// gives the client a fresh start). Returns whether it was blocked.
    pub fn unblock(&mut self, key: &ClientKey) -> bool {
        match self.entries.get(key) {
            Some(entry) if entry.blocked_since.is_some() => {
                let seq = entry.seq;
                self.blocked.remove(&seq);
                self.entries.remove(key);
                true
            }
            _ => false,
        }
    }

    /// Lifts every block (reboot). Blocked clients start over; the counts of
    /// the others and the alert deadtime are kept.
    pub fn clear_blocks(&mut self) {
        for (_, key) in std::mem::take(&mut self.blocked) {
            self.entries.remove(&key);
        }
    }

    /// Lifts the blocks whose time is up at `now`; returns their keys. The
    /// clients stay remembered (their offences count for the next block)
    /// with a fresh failure count.
    pub fn expire(&mut self, now: Timestamp) -> Vec<ClientKey> {
        let due: Vec<(u64, ClientKey)> = self
            .blocked
            .iter()
            .filter(|(_, key)| {
                self.entries
                    .get(key)
                    .and_then(|e| e.blocked_until)
                    .is_some_and(|u| u.monotonic <= now.monotonic)
            })
            .map(|(seq, key)| (*seq, *key))
            .collect();
        for (seq, key) in &due {
            self.blocked.remove(seq);
            if let Some(e) = self.entries.get_mut(key) {
                e.blocked_since = None;
                e.blocked_until = None;
                e.count = 0;
            }
            self.idle.insert(*seq, *key);
        }
        due.into_iter().map(|(_, key)| key).collect()
    }

    /// When the next block ends by itself, if any does.
    pub fn next_expiry(&self) -> Option<crate::clock::Monotonic> {
        self.blocked
            .values()
            .filter_map(|key| self.entries.get(key)?.blocked_until)
            .map(|u| u.monotonic)
            .min()
    }

    /// Puts back blocks stored before a restart: each keeps its remaining
    /// time (a block whose end has passed at `now` is dropped), blocks
    /// until reboot stay until the next one. Returns how many were put back.
    pub fn restore(&mut self, blocks: &[BlockedClient], now: Timestamp) -> usize {
        let mut restored = 0;
        for b in blocks {
            let until = match b.until {
                Some(u) if u <= now.utc => continue,
                Some(u) => {
                    let left = std::time::Duration::try_from(u - now.utc).unwrap_or_default();
                    Some(Timestamp { utc: u, monotonic: now.monotonic.after(left) })
                }
                None => None,
            };
            if self.entries.contains_key(&b.address) || self.entries.len() >= self.capacity {
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.entries.insert(
                b.address,
                Entry {
                    count: 0,
                    first_failure: b.last_failure,
                    last_failure: Timestamp { utc: b.last_failure, monotonic: now.monotonic },
                    seq,
                    blocked_since: Some(b.since),
                    blocked_until: until,
                    offences: b.offences.max(1),
                },
            );
            self.blocked.insert(seq, b.address);
            restored += 1;
        }
        restored
    }

    /// Whether `key` is blocked.
    pub fn is_blocked(&self, key: &ClientKey) -> bool {
        self.entries.get(key).is_some_and(|e| e.blocked_since.is_some())
    }

    /// The blocked clients, oldest last failure first.
    pub fn blocked(&self) -> Vec<BlockedClient> {
        self.blocked
            .values()
            .filter_map(|key| {
                let e = self.entries.get(key)?;
                Some(BlockedClient {
                    address: *key,
                    since: e.blocked_since?,
                    last_failure: e.last_failure.utc,
                    until: e.blocked_until.map(|u| u.utc),
                    offences: e.offences,
                })
            })
            .collect()
    }

    /// The blocked networks, for [`crate::access_control::AccessPolicy::compile`].
    pub fn blocked_networks(&self) -> Vec<IpNetwork> {
        self.blocked.values().copied().collect()
    }

    /// The stored failure count of `key` (0 if untracked; expiry is applied
    /// only when the next failure is recorded).
    pub fn count(&self, key: &ClientKey) -> u32 {
        self.entries.get(key).map_or(0, |e| e.count)
    }

    /// When the last alert went out, if any.
    pub fn last_alert(&self) -> Option<OffsetDateTime> {
        self.last_alert.map(|t| t.utc)
    }

    /// Number of clients tracked (blocked or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Most clients tracked at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Prefix length IPv6 clients are grouped by.
    pub fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }
}

impl Default for IntrusionDetector {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

fn minutes(m: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(m) * 60)
}

/// The key failures of `ip` are counted under: an IPv4 address, or the IPv6
/// network of `ipv6_prefix` bits holding it (IPv4-mapped IPv6 is IPv4).
pub fn client_key(ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => IpNetwork::host(v4),
        v6 @ IpAddr::V6(_) => IpNetwork::containing(v6, ipv6_prefix.min(128)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Monotonic;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use time::Duration;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

    /// Both clocks `d` after T0 (and after the monotonic origin).
    fn after(d: Duration) -> Timestamp {
        Timestamp {
            utc: T0 + d,
            monotonic: Monotonic::from_origin(std::time::Duration::try_from(d).expect("not negative")),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn settings(threshold: u32, timeout: u32, deadtime: u32) -> IntrusionDetectionSettings {
        IntrusionDetectionSettings {
            notification_threshold: threshold,
            timeout_minutes: timeout,
            deadtime_minutes: deadtime,
            ..Default::default()
        }
    }

    fn at(minute: i64) -> Timestamp {
        after(Duration::minutes(minute))
    }

    fn fail(
        d: &mut IntrusionDetector,
        who: &str,
        minute: i64,
        s: &IntrusionDetectionSettings,
    ) -> FailureOutcome {
        d.record_failure(ip(who), at(minute), s, false).expect("enabled")
    }

    /// Minute by minute, which failures alert.
    fn alerts(
        d: &mut IntrusionDetector,
        who: &str,
        minutes: std::ops::Range<i64>,
        s: &IntrusionDetectionSettings,
    ) -> Vec<i64> {
        minutes.filter(|m| fail(d, who, *m, s).alert).collect()
    }

    #[test]
    fn threshold_five_alerts_at_the_sixth_failure() {
        let s = settings(5, 60, 60);
        let mut d = IntrusionDetector::new(100);
        for minute in 0..5 {
            let o = fail(&mut d, "198.51.100.1", minute, &s);
            assert_eq!((o.count, o.alert, o.block), (minute as u32 + 1, false, false));
        }
        let o = fail(&mut d, "198.51.100.1", 5, &s);
        assert_eq!((o.count, o.alert), (6, true));
        assert_eq!(d.last_alert(), Some(at(5).utc));
        // After the alert the count starts again: it must exceed the threshold anew.
        assert_eq!(d.count(&o.key), 0);
    }

    #[test]
    fn deadtime_suppresses_alerts_then_lets_the_next_one_through() {
        let s = settings(5, 600, 60);
        let mut d = IntrusionDetector::new(100);
        // One failure a minute for three hours.
        let got = alerts(&mut d, "198.51.100.1", 0..180, &s);
        // 6th failure (minute 5) alerts; then the count exceeds 5 again at
        // minute 11 but the deadtime holds until minute 65; after that alert the
        // count restarts, exceeding again at minute 71, held until 125.
        assert_eq!(got, vec![5, 65, 125]);
    }

    #[test]
    fn deadtime_zero_alerts_on_every_failure_past_the_threshold() {
        let s = settings(5, 60, 0);
        let mut d = IntrusionDetector::new(100);
        assert_eq!(alerts(&mut d, "198.51.100.1", 0..10, &s), vec![5, 6, 7, 8, 9]);
        let o = fail(&mut d, "198.51.100.1", 10, &s);
        assert_eq!(o.count, 11);
        // Several failures in the same minute all alert.
        assert!(fail(&mut d, "198.51.100.1", 10, &s).alert);
    }

    #[test]
    fn deadtime_is_global_across_clients() {
        let s = settings(5, 600, 60);
        let mut d = IntrusionDetector::new(100);
        assert_eq!(alerts(&mut d, "198.51.100.1", 0..6, &s), vec![5]);
        // Client B exceeds the threshold ten minutes later: no alert yet.
        assert_eq!(alerts(&mut d, "203.0.113.7", 10..16, &s), Vec::<i64>::new());
        assert_eq!(d.count(&d.key_for(ip("203.0.113.7"))), 6, "a suppressed alert keeps the count");
        // B keeps failing; the first failure after the deadtime alerts.
        assert_eq!(alerts(&mut d, "203.0.113.7", 60..70, &s), vec![65]);
        // Exactly at the deadtime boundary the alert goes out (>= deadtime).
        assert_eq!(d.last_alert(), Some(at(65).utc));
    }

    #[test]
    fn count_expires_after_timeout_without_failure() {
        let s = settings(5, 30, 60);
        let mut d = IntrusionDetector::new(100);
        // Failures every 29 minutes keep the count alive: alert at the 6th.
        let got: Vec<_> = (0..6).map(|i| fail(&mut d, "198.51.100.1", i * 29, &s)).collect();
        assert_eq!(got.iter().map(|o| o.count).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
        assert!(got[5].alert);

        // Every 30 minutes (= timeout) each failure starts again at 1: never alerts.
        let mut d = IntrusionDetector::new(100);
        let got: Vec<_> = (0..20).map(|i| fail(&mut d, "198.51.100.2", i * 30, &s)).collect();
        assert!(got.iter().all(|o| o.count == 1 && !o.alert));

        // Five failures, a pause of an hour, five more: no alert.
        let mut d = IntrusionDetector::new(100);
        assert_eq!(alerts(&mut d, "198.51.100.3", 0..5, &s), Vec::<i64>::new());
        assert_eq!(alerts(&mut d, "198.51.100.3", 65..70, &s), Vec::<i64>::new());
        assert_eq!(fail(&mut d, "198.51.100.3", 70, &s).count, 6);
    }

    #[test]
    fn disabled_counts_nothing() {
        let s = IntrusionDetectionSettings { enabled: false, ..settings(5, 60, 60) };
        let mut d = IntrusionDetector::new(100);
        for m in 0..20 {
            assert_eq!(d.record_failure(ip("198.51.100.1"), at(m), &s, true), None);
        }
        assert!(d.is_empty());
    }

    #[test]
    fn blocks_once_when_the_threshold_is_exceeded_even_without_alert() {
        let s = settings(5, 600, 60);
        let mut d = IntrusionDetector::new(100);
        // An alert for another client starts the deadtime.
        for m in 0..6 {
            d.record_failure(ip("192.0.2.1"), at(m), &s, false);
        }
        let outcomes: Vec<_> = (10..20)
            .map(|m| d.record_failure(ip("198.51.100.1"), at(m), &s, true).expect("enabled"))
            .collect();
        let blocks: Vec<_> = outcomes.iter().map(|o| o.block).collect();
        assert_eq!(blocks, [false, false, false, false, false, true, false, false, false, false]);
        assert_eq!(outcomes[5].first_failure, at(10).utc, "the block's run began with the first guess");
        assert!(outcomes.iter().all(|o| !o.alert), "the deadtime suppressed the alert, not the block");
        let key = d.key_for(ip("198.51.100.1"));
        assert!(d.is_blocked(&key));
        assert_eq!(d.blocked_networks(), vec![key]);
        assert_eq!(d.blocked()[0].since, at(15).utc);
        assert_eq!(serde_json::to_value(&d.blocked()[0]).expect("json")["address"], "198.51.100.1");

        // Not blockable: never blocked however many failures.
        for m in 0..50 {
            assert!(!d.record_failure(ip("203.0.113.5"), at(m), &s, false).expect("enabled").block);
        }
        assert!(!d.is_blocked(&d.key_for(ip("203.0.113.5"))));
    }

    #[test]
    fn unblock_and_reboot_lift_blocks() {
        let s = settings(5, 600, 0);
        let mut d = IntrusionDetector::new(100);
        for who in ["198.51.100.1", "198.51.100.2"] {
            for m in 0..6 {
                d.record_failure(ip(who), at(m), &s, true);
            }
        }
        d.record_failure(ip("198.51.100.3"), at(7), &s, true);
        assert_eq!(d.blocked().len(), 2);
        let one = d.key_for(ip("198.51.100.1"));
        assert!(d.unblock(&one));
        assert!(!d.unblock(&one));
        assert!(!d.unblock(&d.key_for(ip("198.51.100.3"))), "not blocked");
        assert_eq!(d.count(&one), 0, "an unblocked client starts over");
        d.clear_blocks();
        assert!(d.blocked().is_empty());
        assert_eq!(d.len(), 1, "the non-blocked count survives");
        assert_eq!(d.count(&d.key_for(ip("198.51.100.3"))), 1);
        // A fresh start really is fresh: six more failures to be blocked again.
        let blocks: Vec<_> = (10..16)
            .map(|m| d.record_failure(ip("198.51.100.2"), at(m), &s, true).expect("on").block)
            .collect();
        assert_eq!(blocks, [false, false, false, false, false, true]);
    }

    #[test]
    fn ipv6_is_grouped_per_64() {
        let s = settings(5, 60, 60);
        let mut d = IntrusionDetector::new(100);
        // Six different addresses of one /64 are one client.
        let outcomes: Vec<_> =
            (1..=6).map(|i| fail(&mut d, &format!("2001:db8:1:2::{i:x}"), i64::from(i), &s)).collect();
        assert_eq!(outcomes[5].count, 6);
        assert!(outcomes[5].alert);
        assert_eq!(outcomes[5].key.to_string(), "2001:db8:1:2::/64");
        // The neighbouring /64 is another client.
        assert_eq!(fail(&mut d, "2001:db8:1:3::1", 7, &s).count, 1);
        // IPv4 clients are per address; mapped IPv4 is IPv4.
        assert_eq!(fail(&mut d, "192.0.2.1", 8, &s).count, 1);
        assert_eq!(fail(&mut d, "::ffff:192.0.2.1", 9, &s).count, 2);
        assert_eq!(fail(&mut d, "192.0.2.2", 10, &s).count, 1);

        // A configurable prefix: per address.
        let mut d = IntrusionDetector::with_ipv6_prefix(100, 128);
        assert_eq!(fail(&mut d, "2001:db8::1", 0, &s).count, 1);
        assert_eq!(fail(&mut d, "2001:db8::2", 0, &s).count, 1);
        assert_eq!(d.key_for(ip("2001:db8::2")).to_string(), "2001:db8::2");
        assert_eq!(IntrusionDetector::with_ipv6_prefix(1, 200).ipv6_prefix(), 128);
    }

    #[test]
    fn eviction_takes_the_oldest_unblocked_and_keeps_blocked() {
        let s = settings(5, 600, 60);
        let mut d = IntrusionDetector::new(3);
        for m in 0..6 {
            d.record_failure(ip("10.0.0.1"), at(m), &s, true);
        }
        assert!(d.is_blocked(&d.key_for(ip("10.0.0.1"))));
        fail(&mut d, "10.0.0.2", 10, &s);
        fail(&mut d, "10.0.0.3", 11, &s);
        fail(&mut d, "10.0.0.2", 12, &s); // 10.0.0.3 is now the oldest unblocked
        fail(&mut d, "10.0.0.4", 13, &s);
        assert_eq!(d.len(), 3);
        assert_eq!(d.count(&d.key_for(ip("10.0.0.3"))), 0, "evicted");
        assert_eq!(d.count(&d.key_for(ip("10.0.0.2"))), 2, "kept: failed more recently");
        assert!(d.is_blocked(&d.key_for(ip("10.0.0.1"))), "blocked entries are kept although oldest");

        // A table of blocked entries only: the oldest block goes, and says so.
        let mut d = IntrusionDetector::new(2);
        for who in ["10.0.0.1", "10.0.0.2"] {
            for m in 0..6 {
                d.record_failure(ip(who), at(m), &s, true);
            }
        }
        let o = fail(&mut d, "10.0.0.3", 20, &s);
        assert_eq!(o.lifted, Some(d.key_for(ip("10.0.0.1"))));
        assert_eq!(d.blocked_networks(), vec![d.key_for(ip("10.0.0.2"))]);
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn a_million_attackers_keep_memory_bounded_and_track_the_newest() {
        const CAPACITY: usize = 10_000;
        const ATTACKERS: u32 = 1_000_000;
        let s = settings(5, 60, 60);
        let mut d = IntrusionDetector::new(CAPACITY);
        let table_capacity = d.entries.capacity();
        // Three blocked clients first; they must survive the flood.
        let blocked: Vec<IpAddr> = (1..=3).map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))).collect();
        for who in &blocked {
            for _ in 0..6 {
                d.record_failure(*who, at(0), &s, true);
            }
        }
        let attacker = |i: u32| -> IpAddr {
            if i.is_multiple_of(2) {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
            } else {
                // Distinct /64s.
                IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | 1))
            }
        };
        for i in 0..ATTACKERS {
            // A millisecond apart: all within the timeout of each other.
            let now = after(Duration::milliseconds(i64::from(i)));
            let o = d.record_failure(attacker(i), now, &s, true).expect("enabled");
            assert_eq!(o.count, 1);
            assert_eq!(o.lifted, None);
        }
        assert_eq!(d.len(), CAPACITY);
        assert_eq!(d.idle.len() + d.blocked.len(), CAPACITY);
        // capacity() is entries + free slots; it can only exceed the initial
        // value by reallocating.
        assert!(d.entries.capacity() <= table_capacity, "the table never reallocated");
        for who in &blocked {
            assert!(d.is_blocked(&d.key_for(*who)));
        }
        // The newest attackers are tracked: a second failure counts 2 ...
        let now = after(Duration::seconds(1_001));
        let newest = CAPACITY as u32 - 3;
        for i in (ATTACKERS - newest)..ATTACKERS {
            assert_eq!(d.count(&d.key_for(attacker(i))), 1, "attacker {i}");
        }
        for i in (ATTACKERS - 5)..ATTACKERS {
            assert_eq!(d.record_failure(attacker(i), now, &s, true).expect("on").count, 2);
        }
        // ... and the oldest ones were forgotten.
        assert_eq!(d.count(&d.key_for(attacker(0))), 0);
        assert_eq!(d.count(&d.key_for(attacker(ATTACKERS - newest - 1))), 0);
    }

    /// `minute` minutes after T0 by the monotonic clock, with the wall clock
    /// stepped by `step` (as NTP does to a running device).
    fn stepped(minute: i64, step: Duration) -> Timestamp {
        let t = at(minute);
        Timestamp { utc: t.utc + step, ..t }
    }

    #[test]
    fn a_wall_clock_stepped_back_does_not_silence_alerts() {
        // Deadtime 0: every failure past the threshold alerts.
        let s = settings(5, 60, 0);
        let mut d = IntrusionDetector::new(100);
        assert_eq!(alerts(&mut d, "198.51.100.1", 0..6, &s), vec![5]);
        // NTP steps the wall clock back an hour; a new attacker comes.
        let back = Duration::hours(-1);
        let got: Vec<_> = (10..17)
            .map(|m| d.record_failure(ip("203.0.113.9"), stepped(m, back), &s, true).expect("on"))
            .map(|o| (o.count, o.alert, o.block))
            .collect();
        assert_eq!(
            got,
            [
                (1, false, false),
                (2, false, false),
                (3, false, false),
                (4, false, false),
                (5, false, false),
                (6, true, true),
                (7, true, false)
            ]
        );
        // The block is dated by the (stepped) wall clock: what the operator's clock says now.
        assert_eq!(d.blocked()[0].since, stepped(15, back).utc);
        assert_eq!(d.last_alert(), Some(stepped(16, back).utc));
    }

    #[test]
    fn a_deadtime_lasts_its_minutes_whatever_the_wall_clock_does() {
        let s = settings(5, 600, 60);
        let mut d = IntrusionDetector::new(100);
        assert_eq!(alerts(&mut d, "198.51.100.1", 0..6, &s), vec![5]);
        // Stepped back: still suppressed during the deadtime, not an hour longer.
        let back = Duration::hours(-1);
        let got: Vec<_> = (10..70)
            .filter(|m| d.record_failure(ip("203.0.113.9"), stepped(*m, back), &s, false).expect("on").alert)
            .collect();
        assert_eq!(got, vec![65]);
        // Stepped forward a day: the deadtime is not over early.
        let mut d = IntrusionDetector::new(100);
        assert_eq!(alerts(&mut d, "198.51.100.1", 0..6, &s), vec![5]);
        let forward = Duration::days(1);
        let alerted = (10..20)
            .any(|m| d.record_failure(ip("203.0.113.9"), stepped(m, forward), &s, false).expect("on").alert);
        assert!(!alerted, "ten minutes into a 60-minute deadtime");
    }

    #[test]
    fn a_count_expires_after_its_timeout_whatever_the_wall_clock_does() {
        let s = settings(5, 30, 60);
        let mut d = IntrusionDetector::new(100);
        for m in 0..5 {
            fail(&mut d, "198.51.100.1", m, &s);
        }
        // Stepped forward a day (NTP sets the clock at last): the count is one minute old, it stays.
        let o = d.record_failure(ip("198.51.100.1"), stepped(5, Duration::days(1)), &s, false).expect("on");
        assert_eq!((o.count, o.alert), (6, true));
        // Stepped back: 40 minutes later the count has expired, although the wall clock says otherwise.
        let mut d = IntrusionDetector::new(100);
        for m in 0..5 {
            fail(&mut d, "198.51.100.2", m, &s);
        }
        let o =
            d.record_failure(ip("198.51.100.2"), stepped(44, Duration::hours(-2)), &s, false).expect("on");
        assert_eq!(o.count, 1);
    }

    #[test]
    fn indexes_stay_consistent() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        let ops = proptest::collection::vec((0u8..12, 0i64..200, any::<bool>(), 0u8..10), 1..200);
        runner
            .run(&ops, |ops| {
                let s = settings(5, 30, 10);
                let mut d = IntrusionDetector::new(5);
                for (who, minute, can_block, action) in ops {
                    let who = IpAddr::V4(Ipv4Addr::new(10, 0, 0, who));
                    match action {
                        0 => {
                            d.unblock(&d.key_for(who));
                        }
                        1 => d.clear_blocks(),
                        _ => {
                            let o = d.record_failure(who, at(minute), &s, can_block).expect("on");
                            prop_assert!(o.count >= 1);
                            prop_assert!(!o.block || can_block);
                        }
                    }
                    prop_assert!(d.len() <= 5);
                    prop_assert_eq!(d.idle.len() + d.blocked.len(), d.len());
                    for (seq, key) in d.idle.iter().chain(d.blocked.iter()) {
                        let e = &d.entries[key];
                        prop_assert_eq!(e.seq, *seq);
                        prop_assert_eq!(e.blocked_since.is_some(), d.blocked.contains_key(seq));
                    }
                }
                Ok(())
            })
            .expect("invariants hold");
    }

    #[test]
    fn block_lengths_double_for_repeat_offenders_up_to_the_bound() {
        let mut s = settings(5, 600, 0);
        assert_eq!(s.block_length(1), None, "factory: until reboot");
        s.block_duration_seconds = 600;
        assert_eq!(
            s.block_length(3),
            Some(std::time::Duration::from_secs(600)),
            "no increment: always the same"
        );
        s.block_duration_increment = true;
        s.block_duration_max_seconds = 3000;
        let lengths: Vec<u64> = (1..=5).map(|n| s.block_length(n).expect("timed").as_secs()).collect();
        assert_eq!(lengths, [600, 1200, 2400, 3000, 3000]);
        assert_eq!(s.block_length(u32::MAX).expect("timed").as_secs(), 3000, "no overflow");
        s.block_duration_max_seconds = 0;
        assert_eq!(
            s.block_length(60).expect("timed").as_secs(),
            u64::from(crate::settings::MAX_BLOCK_SECONDS)
        );
    }

    #[test]
    fn a_block_with_a_length_lifts_itself_and_a_repeat_offence_lasts_longer() {
        let mut s = settings(5, 600, 0);
        s.block_duration_seconds = 600;
        s.block_duration_increment = true;
        s.block_duration_max_seconds = 1800;
        let mut d = IntrusionDetector::new(100);
        let who = ip("198.51.100.7");
        let key = d.key_for(who);
        let block = |d: &mut IntrusionDetector, from: i64| {
            (from..from + 6).map(|m| d.record_failure(who, at(m), &s, true).expect("on")).find(|o| o.block)
        };
        let first = block(&mut d, 0).expect("blocked");
        assert_eq!(first.until, Some(at(5).utc + Duration::minutes(10)));
        assert_eq!(d.blocked()[0].until, first.until);
        assert_eq!(d.next_expiry(), Some(at(15).monotonic));
        assert!(d.expire(at(14)).is_empty(), "not before its end");
        assert_eq!(d.expire(at(15)), vec![key]);
        assert!(!d.is_blocked(&key) && d.blocked().is_empty() && d.blocked_networks().is_empty());
        assert_eq!(d.count(&key), 0, "a fresh count after the block");
        // Again: 20 minutes, then 30 (the bound), never more.
        let second = block(&mut d, 20).expect("blocked again");
        assert_eq!(second.until, Some(at(25).utc + Duration::minutes(20)));
        assert_eq!(d.blocked()[0].offences, 2);
        assert_eq!(d.expire(at(45)), vec![key]);
        let third = block(&mut d, 50).expect("blocked a third time");
        assert_eq!(third.until, Some(at(55).utc + Duration::minutes(30)));
        // An administrator's unblock forgets the offences.
        assert!(d.unblock(&key));
        let fresh = block(&mut d, 100).expect("blocked");
        assert_eq!(fresh.until, Some(at(105).utc + Duration::minutes(10)));
    }

    #[test]
    fn stored_blocks_come_back_with_their_remaining_time_and_expired_ones_do_not() {
        let mut s = settings(5, 600, 0);
        s.block_duration_seconds = 600;
        let mut d = IntrusionDetector::new(100);
        for m in 0..6 {
            d.record_failure(ip("198.51.100.7"), at(m), &s, true);
        }
        s.block_duration_seconds = 0;
        for m in 0..6 {
            d.record_failure(ip("198.51.100.8"), at(m), &s, true);
        }
        let stored = d.blocked();
        let json = serde_json::to_string(&stored).expect("json");
        let stored: Vec<BlockedClient> = serde_json::from_str(&json).expect("read back");
        // A restart 4 minutes later (the monotonic clock starts over).
        let mut after_restart = IntrusionDetector::new(100);
        let now = Timestamp { utc: at(9).utc, monotonic: crate::clock::Monotonic::ZERO };
        assert_eq!(after_restart.restore(&stored, now), 2);
        assert_eq!(after_restart.blocked(), d.blocked());
        let left = after_restart.next_expiry().expect("one timed block").since_origin();
        assert_eq!(
            left,
            std::time::Duration::from_secs(6 * 60),
            "10 minutes from minute 5, restored at minute 9"
        );
        // Restored after its end: dropped; the block until reboot stays.
        let mut late = IntrusionDetector::new(100);
        let now = Timestamp { utc: at(16).utc, monotonic: crate::clock::Monotonic::ZERO };
        assert_eq!(late.restore(&stored, now), 1);
        assert_eq!(late.blocked()[0].until, None);
    }
}

//! The web server logfile (SPEC §4): accesses aggregated per client, user and
//! outcome.
//!
//! An access is added to the newest entry with the same client IP, user name
//! and outcome (authorized or not) if that entry's last access was less than
//! `timeout_minutes` ago (the same "within" as the intrusion detector's count
//! expiry); otherwise it opens a new entry. A success therefore never merges
//! into a failed entry, nor a failure into a successful one.
//!
//! "Ago" is measured on the monotonic clock (see [`crate::clock`]), so a step
//! of the wall clock neither merges accesses hours apart nor splits an
//! attack in two; the times shown are the wall clock's. An entry read back
//! from the file has no monotonic reading (the clock starts anew with the
//! process), so for it alone the wall clock decides.
//!
//! # Bound
//!
//! At most `capacity` entries (default [`DEFAULT_CAPACITY`]). When a new
//! entry would exceed it, the entry whose last access is the oldest is
//! dropped: an attack still in progress keeps its entry, however long ago it
//! started. User names and URLs are cut to [`MAX_USER_LEN`] and
//! [`MAX_URL_LEN`] bytes, so one entry stays small whatever a client sends;
//! with both, the log stays well under 1 MB.
//!
//! Entries are kept in the order of their last access (oldest first) with an
//! index of the newest entry per (client, user, outcome): an access costs one
//! hash lookup and O(log capacity), never a scan.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, UtcOffset};
use utoipa::ToSchema;

use crate::clock::{Monotonic, Timestamp};

/// Entries kept by default.
pub const DEFAULT_CAPACITY: usize = 1000;
/// Longest user name stored, in bytes; a longer one is cut (a client chooses
/// what it sends, and must not choose how much memory we spend).
pub const MAX_USER_LEN: usize = 128;
/// Longest URL stored, in bytes; a longer one is cut.
pub const MAX_URL_LEN: usize = 512;

/// One aggregated line of the logfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// The client's address (IPv4-mapped IPv6 shown as IPv4).
    #[schema(value_type = String)]
    pub client_ip: IpAddr,
    /// The user name presented, if any.
    pub user: Option<String>,
    /// Whether these accesses were authorized.
    pub authorized: bool,
    /// Number of accesses merged into this entry.
    pub count: u32,
    /// Time of the first access.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub first: OffsetDateTime,
    /// Time of the last access.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last: OffsetDateTime,
    /// URL of the last access.
    pub last_url: String,
}

/// The logfile as the API returns it and as it is persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogfileDocument {
    /// The entries, oldest last access first.
    pub entries: Vec<LogEntry>,
}

/// A persisted logfile that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the stored logfile is not valid: {0}")]
pub struct LogfileError(#[from] serde_json::Error);

/// What an entry merges on: client, user, outcome.
type Identity = (IpAddr, Option<String>, bool);

/// An entry and the monotonic reading of its last access (`None` for an
/// entry read back from the file).
#[derive(Debug, Clone)]
struct Slot {
    entry: LogEntry,
    last_monotonic: Option<Monotonic>,
}

/// The bounded, aggregated web server logfile.
#[derive(Debug, Clone)]
pub struct Logfile {
    capacity: usize,
    /// Entries by the order of their last access.
    entries: BTreeMap<u64, Slot>,
    /// The newest entry of each identity; the only one an access may merge into.
    newest: HashMap<Identity, u64>,
    next_seq: u64,
}

impl Logfile {
    /// An empty logfile holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), entries: BTreeMap::new(), newest: HashMap::new(), next_seq: 0 }
    }

    /// Records one access at `now`, merging it into the matching entry if that
    /// entry's last access is less than `timeout_minutes` ago.
    pub fn record(
        &mut self,
        client_ip: IpAddr,
        user: Option<&str>,
        authorized: bool,
        url: &str,
        now: Timestamp,
        timeout_minutes: u32,
    ) {
        let identity: Identity = (client_ip.to_canonical(), user.map(|u| clean(u, MAX_USER_LEN)), authorized);
        let last_url = clean(url, MAX_URL_LEN);
        let seq = self.next_seq;
        self.next_seq += 1;
        let timeout = std::time::Duration::from_secs(u64::from(timeout_minutes) * 60);

        if let Some(&old) = self.newest.get(&identity)
            && let Some(slot) = self.entries.get(&old)
            && match slot.last_monotonic {
                Some(last) => now.monotonic.since(last) < timeout,
                None => now.utc - slot.entry.last < Duration::minutes(i64::from(timeout_minutes)),
            }
            && let Some(mut slot) = self.entries.remove(&old)
        {
            let entry = &mut slot.entry;
            entry.count = entry.count.saturating_add(1);
            // A clock stepped back must not move `last` before earlier accesses.
            entry.last = entry.last.max(now.utc);
            entry.last_url = last_url;
            slot.last_monotonic = Some(now.monotonic);
            self.entries.insert(seq, slot);
            self.newest.insert(identity, seq);
            return;
        }

        let (client_ip, user, authorized) = identity.clone();
        let entry =
            LogEntry { client_ip, user, authorized, count: 1, first: now.utc, last: now.utc, last_url };
        self.entries.insert(seq, Slot { entry, last_monotonic: Some(now.monotonic) });
        self.newest.insert(identity, seq);
        self.trim();
    }

    /// Drops the entries with the oldest last access until the bound holds.
    fn trim(&mut self) {
        while self.entries.len() > self.capacity {
            let Some((seq, Slot { entry, .. })) = self.entries.pop_first() else { break };
            let identity = (entry.client_ip, entry.user, entry.authorized);
            // A newer entry of the same identity owns the index slot; keep it.
            if self.newest.get(&identity) == Some(&seq) {
                self.newest.remove(&identity);
            }
        }
    }

    /// The entries, oldest last access first.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &LogEntry> + DoubleEndedIterator {
        self.entries.values().map(|s| &s.entry)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A copy of the log in its API and storage shape.
    pub fn to_document(&self) -> LogfileDocument {
        LogfileDocument { entries: self.entries().cloned().collect() }
    }

    /// A logfile holding `doc`'s entries (ordered by last access; the oldest
    /// beyond `capacity` dropped).
    pub fn from_document(doc: LogfileDocument, capacity: usize) -> Self {
        let mut entries = doc.entries;
        // Stable: entries with equal `last` keep the stored order.
        entries.sort_by_key(|e| e.last);
        let mut log = Self::new(capacity);
        for mut entry in entries {
            // The file is ours, but re-applying the bounds costs nothing and
            // keeps a hand-edited file from breaking them.
            entry.client_ip = entry.client_ip.to_canonical();
            entry.user = entry.user.map(|u| clean(&u, MAX_USER_LEN));
            entry.last_url = clean(&entry.last_url, MAX_URL_LEN);
            let seq = log.next_seq;
            log.next_seq += 1;
            log.newest.insert((entry.client_ip, entry.user.clone(), entry.authorized), seq);
            log.entries.insert(seq, Slot { entry, last_monotonic: None });
            log.trim();
        }
        log
    }

    /// The log as JSON, `{"entries": [...]}`, for persistence.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(&self.to_document()).unwrap_or_default()
    }

    /// Reads a log written by [`Logfile::to_json`].
    pub fn from_json(text: &str, capacity: usize) -> Result<Self, LogfileError> {
        Ok(Self::from_document(serde_json::from_str(text)?, capacity))
    }

    /// The log as a plain text table (UTC), for e-mail attachments and `?format=text`.
    pub fn to_text(&self) -> String {
        let rows: Vec<[String; 7]> = self
            .entries()
            .map(|e| {
                [
                    text_time(e.first),
                    text_time(e.last),
                    e.count.to_string(),
                    if e.authorized { "authorized" } else { "unauthorized" }.to_string(),
                    e.client_ip.to_string(),
                    e.user.clone().unwrap_or_else(|| "-".to_string()),
                    e.last_url.clone(),
                ]
            })
            .collect();
        let header = ["first", "last", "count", "result", "client", "user", "last URL"].map(String::from);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i == 6 {
                    line.push_str(cell);
                } else if i == 2 {
                    // Counts right-aligned, as numbers read best.
                    let _ = write!(line, "{cell:>w$}  ", w = widths[i]);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

impl Default for Logfile {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

/// `2025-03-01 12:00:00Z`: seconds are enough for a person reading a table.
fn text_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Cuts `s` to at most `max` bytes (at a character boundary, marking the cut
/// with `…`) and replaces control characters, which could forge lines in the
/// text form, a mail reader or the server's log.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() { '\u{FFFD}' } else { c };
        if out.len() + c.len_utf8() > max {
            // Make room for the marker on a character boundary.
            while out.len() + '…'.len_utf8() > max {
                out.pop();
            }
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

    /// Both clocks `minute` minutes after T0.
    fn at(minute: i64) -> Timestamp {
        Timestamp {
            utc: T0 + Duration::minutes(minute),
            monotonic: Monotonic::from_origin(std::time::Duration::from_secs(minute as u64 * 60)),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// (client, user, authorized, count, first minute, last minute)
    fn summary(log: &Logfile) -> Vec<(String, Option<String>, bool, u32, i64, i64)> {
        log.entries()
            .map(|e| {
                (
                    e.client_ip.to_string(),
                    e.user.clone(),
                    e.authorized,
                    e.count,
                    (e.first - T0).whole_minutes(),
                    (e.last - T0).whole_minutes(),
                )
            })
            .collect()
    }

    #[test]
    fn accesses_within_the_timeout_merge_minute_by_minute() {
        let mut log = Logfile::new(100);
        let c = ip("192.0.2.10");
        for minute in [0, 5, 14] {
            log.record(c, Some("bob"), true, "/a", at(minute), 10);
        }
        // 14 - 5 = 9 < 10: one entry so far.
        assert_eq!(summary(&log), [("192.0.2.10".into(), Some("bob".into()), true, 3, 0, 14)]);
        // Exactly the timeout after the last access: a new entry.
        log.record(c, Some("bob"), true, "/b", at(24), 10);
        log.record(c, Some("bob"), true, "/c", at(33), 10);
        assert_eq!(
            summary(&log),
            [
                ("192.0.2.10".into(), Some("bob".into()), true, 3, 0, 14),
                ("192.0.2.10".into(), Some("bob".into()), true, 2, 24, 33),
            ]
        );
        assert_eq!(log.entries().last().map(|e| e.last_url.as_str()), Some("/c"));
    }

    #[test]
    fn a_success_never_merges_into_a_failure_nor_the_reverse() {
        let mut log = Logfile::new(100);
        let c = ip("192.0.2.10");
        log.record(c, Some("bob"), false, "/", at(0), 60);
        log.record(c, Some("bob"), false, "/", at(1), 60);
        log.record(c, Some("bob"), true, "/", at(2), 60); // the right password at last
        log.record(c, Some("bob"), false, "/", at(3), 60); // a typo again
        log.record(c, Some("bob"), true, "/", at(4), 60);
        assert_eq!(
            summary(&log),
            [
                ("192.0.2.10".into(), Some("bob".into()), false, 3, 0, 3),
                ("192.0.2.10".into(), Some("bob".into()), true, 2, 2, 4),
            ]
        );
    }

    #[test]
    fn client_and_user_separate_entries() {
        let mut log = Logfile::new(100);
        log.record(ip("192.0.2.10"), Some("bob"), false, "/", at(0), 60);
        log.record(ip("192.0.2.11"), Some("bob"), false, "/", at(1), 60);
        log.record(ip("192.0.2.10"), Some("alice"), false, "/", at(2), 60);
        log.record(ip("192.0.2.10"), None, false, "/", at(3), 60);
        log.record(ip("::ffff:192.0.2.10"), Some("bob"), false, "/", at(4), 60);
        let s = summary(&log);
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[3],
            ("192.0.2.10".into(), Some("bob".into()), false, 2, 0, 4),
            "mapped IPv4 is the same client"
        );
    }

    #[test]
    fn the_oldest_last_access_is_dropped_first() {
        let mut log = Logfile::new(3);
        log.record(ip("192.0.2.1"), None, false, "/", at(0), 60);
        log.record(ip("192.0.2.2"), None, false, "/", at(1), 60);
        log.record(ip("192.0.2.3"), None, false, "/", at(2), 60);
        log.record(ip("192.0.2.1"), None, false, "/", at(3), 60); // still active
        log.record(ip("192.0.2.4"), None, false, "/", at(4), 60);
        let clients: Vec<_> = summary(&log).into_iter().map(|s| s.0).collect();
        assert_eq!(clients, ["192.0.2.3", "192.0.2.1", "192.0.2.4"]);
        // The dropped client comes back as a new entry.
        log.record(ip("192.0.2.2"), None, false, "/", at(5), 60);
        assert_eq!(summary(&log).last().map(|s| (s.0.clone(), s.3)), Some(("192.0.2.2".into(), 1)));
        assert_eq!(log.len(), 3);
        assert!(log.newest.len() <= 3);
    }

    #[test]
    fn long_and_hostile_input_is_cut_and_cleaned() {
        let mut log = Logfile::new(10);
        let user = "ü".repeat(1000);
        let url = format!("/x\r\nforged line{}", "a".repeat(10_000));
        log.record(ip("192.0.2.1"), Some(&user), false, &url, at(0), 60);
        let e = log.entries().next().expect("one entry");
        let stored = e.user.as_deref().expect("user");
        assert!(stored.len() <= MAX_USER_LEN && stored.ends_with('…'), "{stored}");
        assert!(e.last_url.len() <= MAX_URL_LEN);
        assert!(!e.last_url.contains('\n') && e.last_url.starts_with("/x\u{FFFD}\u{FFFD}forged"));
        assert_eq!(log.to_text().lines().count(), 2);
        // The cut name still merges: the same long name is the same user.
        log.record(ip("192.0.2.1"), Some(&user), false, "/", at(1), 60);
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn persists_as_json() {
        let mut log = Logfile::new(100);
        log.record(ip("192.0.2.1"), Some("bob"), false, "/api/v1/webserver", at(0), 60);
        let later = Timestamp { utc: at(1).utc + Duration::nanoseconds(5), ..at(1) };
        log.record(ip("2001:db8::1"), None, true, "/", later, 60);
        let json = log.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["entries"][0]["first"], "2025-03-01T12:00:00Z");
        assert_eq!(v["entries"][0]["client_ip"], "192.0.2.1");
        assert_eq!(v["entries"][1]["user"], serde_json::Value::Null);
        let back = Logfile::from_json(&json, 100).expect("reads");
        assert_eq!(back.to_document(), log.to_document());
        // After loading, accesses still merge into the right entry.
        let mut back = back;
        back.record(ip("192.0.2.1"), Some("bob"), false, "/", at(2), 60);
        assert_eq!(summary(&back)[1].3, 2);
        // A smaller capacity keeps the newest.
        let small = Logfile::from_json(&json, 1).expect("reads");
        assert_eq!(summary(&small)[0].0, "2001:db8::1");
        assert!(Logfile::from_json("{\"entries\": [{}]}", 10).is_err());
        assert!(Logfile::from_json("", 10).is_err());
    }

    #[test]
    fn text_table() {
        let mut log = Logfile::new(100);
        log.record(ip("198.51.100.7"), Some("admin"), false, "/api/v1/webserver", at(0), 60);
        log.record(ip("198.51.100.7"), Some("admin"), false, "/api/v1/webserver", at(5), 60);
        log.record(ip("192.0.2.1"), None, true, "/healthz", at(6), 60);
        let text = log.to_text();
        let expected = "\
first                 last                  count  result        client        user   last URL
2025-03-01 12:00:00Z  2025-03-01 12:05:00Z      2  unauthorized  198.51.100.7  admin  /api/v1/webserver
2025-03-01 12:06:00Z  2025-03-01 12:06:00Z      1  authorized    192.0.2.1     -      /healthz
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_wall_clock_step_neither_merges_nor_splits() {
        let mut log = Logfile::new(100);
        let c = ip("192.0.2.10");
        // An attack, one failure a minute; the wall clock is stepped back an
        // hour in the middle (NTP), the monotonic clock goes on.
        log.record(c, Some("bob"), false, "/", at(0), 10);
        log.record(c, Some("bob"), false, "/", at(1), 10);
        let stepped = |minute: i64| Timestamp { utc: at(minute).utc - Duration::hours(1), ..at(minute) };
        log.record(c, Some("bob"), false, "/", stepped(2), 10);
        log.record(c, Some("bob"), false, "/", stepped(3), 10);
        let s = summary(&log);
        assert_eq!(s.len(), 1, "one attack, one entry: {s:?}");
        assert_eq!((s[0].3, s[0].4, s[0].5), (4, 0, 1), "shown times never go back");
        // Eleven minutes later by the monotonic clock, but only seconds later
        // by a wall clock stepped back: a new entry, as the timeout says.
        let stepped_more = Timestamp { utc: at(3).utc - Duration::hours(1), ..at(14) };
        log.record(c, Some("bob"), false, "/", stepped_more, 10);
        assert_eq!(summary(&log).len(), 2);
        // A wall clock stepped forward a day does not end a window either.
        let forward = Timestamp { utc: at(15).utc + Duration::days(1), ..at(15) };
        log.record(c, Some("bob"), false, "/", forward, 10);
        assert_eq!(summary(&log).len(), 2);
        assert_eq!(summary(&log)[1].3, 2);
    }

    proptest! {
        /// The indexed log behaves like the rule read naively: scan for the
        /// newest entry with the same identity; drop the oldest last access.
        #[test]
        fn matches_a_naive_model(
            ops in proptest::collection::vec((0u8..4, 0usize..3, any::<bool>(), 0i64..5), 1..120),
            capacity in 1usize..6,
        ) {
            let users = [None, Some("a"), Some("b")];
            let mut log = Logfile::new(capacity);
            let mut model: Vec<LogEntry> = Vec::new(); // ordered by last access
            let mut minute = 0;
            for (client, user, ok, step) in ops {
                minute += step;
                let now = at(minute).utc;
                let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, client));
                let user = users[user];
                log.record(client, user, ok, "/", at(minute), 3);
                let found = model.iter().rposition(|e| e.client_ip == client && e.user.as_deref() == user && e.authorized == ok);
                match found {
                    Some(i) if now - model[i].last < Duration::minutes(3) => {
                        let mut e = model.remove(i);
                        e.count += 1;
                        e.last = now;
                        model.push(e);
                    }
                    _ => {
                        model.push(LogEntry {
                            client_ip: client, user: user.map(String::from), authorized: ok,
                            count: 1, first: now, last: now, last_url: "/".into(),
                        });
                        if model.len() > capacity {
                            model.remove(0);
                        }
                    }
                }
                prop_assert_eq!(log.entries().cloned().collect::<Vec<_>>(), model.clone());
                prop_assert!(log.newest.len() <= log.len());
            }
        }

        #[test]
        fn clean_respects_the_bound(s in "\\PC{0,300}", max in 3usize..200) {
            let c = clean(&s, max);
            prop_assert!(c.len() <= max);
            prop_assert!(!c.chars().any(char::is_control));
            if s.len() <= max && !s.chars().any(char::is_control) {
                prop_assert_eq!(c, s);
            }
        }
    }
}

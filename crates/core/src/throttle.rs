//! The rate bound on failed logins per client, whatever the scheme.
//!
//! Intrusion detection alerts and (with `block_ip`) blocks, but with blocking
//! off, the factory default, nothing slowed a guesser down but the cost of a
//! check: about 28 guesses a second over Basic (argon2id), and about 4,000 over
//! Digest, whose check is a few hashes. The throttle bounds the rate of
//! failures per client itself: a client may fail [`DEFAULT_BURST`] times in a
//! row, then once per [`DEFAULT_INTERVAL`]; an attempt beyond that is refused
//! before any check (HTTP 429 with `Retry-After`), a correct password
//! included, since answering it would tell the guesser it is right.
//!
//! It is a token bucket, kept as the time at which the client's bucket is
//! full again (`full_at`, on the monotonic clock; see [`crate::clock`]): each
//! failure moves it one interval later (from now at the earliest), and an
//! attempt is admitted while it lies at most `burst - 1` intervals ahead.
//! Successes cost nothing, so a client that knows its password is never
//! slowed, and someone who mistyped a few times waits at most a second.
//!
//! # Memory bound
//!
//! At most `capacity` clients (default [`DEFAULT_CAPACITY`]), ordered by
//! `full_at`. A client whose bucket is full again is forgotten (it has
//! nothing left to remember); when a new client arrives at a full table, the
//! one whose bucket will be full soonest is forgotten: it owes the least.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::clock::Monotonic;
use crate::intrusion::ClientKey;

/// Failures a client may have in a row before the rate bound applies: a
/// person who mistypes is never slowed, and this exceeds the lowest
/// notification threshold (5), so alerts and blocks come first.
pub const DEFAULT_BURST: u32 = 10;
/// Past the burst, one failure per this interval: 3,600 guesses an hour at
/// most, where Digest allowed about 4,000 a second.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Clients tracked at once by default (as the intrusion detector).
pub const DEFAULT_CAPACITY: usize = crate::intrusion::DEFAULT_CAPACITY;

/// An attempt the rate bound refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// How long until an attempt is admitted again.
    pub retry_after: Duration,
}

impl Throttled {
    /// [`Throttled::retry_after`] in whole seconds, rounded up (for a `Retry-After` header).
    pub fn retry_after_seconds(&self) -> u64 {
        let d = self.retry_after;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

/// The failed-login rate bound of every client.
#[derive(Debug, Clone)]
pub struct FailureThrottle {
    burst: u32,
    interval: Duration,
    capacity: usize,
    /// Per client: when its bucket is full again, and its position in `order`.
    entries: HashMap<ClientKey, (Monotonic, u64)>,
    /// Clients by `full_at` (then by arrival): the first ones are forgotten first.
    order: BTreeMap<(Monotonic, u64), ClientKey>,
    next_seq: u64,
}

impl Default for FailureThrottle {
    fn default() -> Self {
        Self::new(DEFAULT_BURST, DEFAULT_INTERVAL, DEFAULT_CAPACITY)
    }
}

impl FailureThrottle {
    /// A bound of `burst` failures in a row (at least 1), then one per
    /// `interval`, for at most `capacity` clients (at least 1).
    pub fn new(burst: u32, interval: Duration, capacity: usize) -> Self {
        Self {
            burst: burst.max(1),
            interval,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// How far `full_at` may lie ahead of now for an attempt to be admitted.
    fn allowance(&self) -> Duration {
        self.interval.saturating_mul(self.burst - 1)
    }

    /// Whether `key` may attempt a login at `now`; refused with the time to wait.
    pub fn check(&self, key: &ClientKey, now: Monotonic) -> Result<(), Throttled> {
        let Some((full_at, _)) = self.entries.get(key) else { return Ok(()) };
        let ahead = full_at.since(now);
        match ahead.checked_sub(self.allowance()) {
            Some(wait) if !wait.is_zero() => Err(Throttled { retry_after: wait }),
            _ => Ok(()),
        }
    }

    /// Counts a failed login of `key` at `now`.
    pub fn record_failure(&mut self, key: ClientKey, now: Monotonic) {
        self.forget_full(now);
        let seq = self.next_seq;
        self.next_seq += 1;
        let full_at = match self.entries.get(&key).copied() {
            Some((full_at, old_seq)) => {
                self.order.remove(&(full_at, old_seq));
                full_at.max(now)
            }
            None => {
                if self.entries.len() >= self.capacity
                    && let Some((_, evicted)) = self.order.pop_first()
                {
                    self.entries.remove(&evicted);
                }
                now
            }
        }
        .after(self.interval);
        self.entries.insert(key, (full_at, seq));
        self.order.insert((full_at, seq), key);
    }

    /// Forgets the clients whose bucket is full again at `now`.
    fn forget_full(&mut self, now: Monotonic) {
        while let Some(entry) = self.order.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
    }

    /// Number of clients tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intrusion::client_key;

    fn key(s: &str) -> ClientKey {
        client_key(s.parse().expect("ip"), 64)
    }

    fn ms(n: u64) -> Monotonic {
        Monotonic::from_origin(Duration::from_millis(n))
    }

    /// Attempts every `step_ms` from 0 until `until_ms`, each one failing when
    /// admitted: (admitted, refused).
    fn hammer(t: &mut FailureThrottle, who: &str, step_ms: u64, until_ms: u64) -> (u32, u32) {
        let (mut admitted, mut refused) = (0, 0);
        let mut now = 0;
        while now < until_ms {
            match t.check(&key(who), ms(now)) {
                Ok(()) => {
                    admitted += 1;
                    t.record_failure(key(who), ms(now));
                }
                Err(_) => refused += 1,
            }
            now += step_ms;
        }
        (admitted, refused)
    }

    #[test]
    fn the_burst_passes_then_one_failure_per_interval() {
        let mut t = FailureThrottle::default();
        let who = key("198.51.100.1");
        for i in 0..10 {
            assert_eq!(t.check(&who, ms(0)), Ok(()), "failure {}", i + 1);
            t.record_failure(who, ms(0));
        }
        let refused = t.check(&who, ms(0)).expect_err("the 11th at once");
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert_eq!(refused.retry_after_seconds(), 1);
        let refused = t.check(&who, ms(400)).expect_err("still too early");
        assert_eq!(refused.retry_after, Duration::from_millis(600));
        assert_eq!(refused.retry_after_seconds(), 1, "rounded up");
        assert_eq!(t.check(&who, ms(1_000)), Ok(()));
        t.record_failure(who, ms(1_000));
        assert!(t.check(&who, ms(1_999)).is_err());
        assert_eq!(t.check(&who, ms(2_000)), Ok(()));
        // Another client is not affected.
        assert_eq!(t.check(&key("198.51.100.2"), ms(0)), Ok(()));
    }

    #[test]
    fn a_digest_speed_guesser_gets_one_guess_a_second() {
        // 4,000 attempts a second for a minute.
        let mut t = FailureThrottle::default();
        let (admitted, refused) = (0..240_000u64).fold((0, 0), |(a, r), i| {
            let now = Monotonic::from_origin(Duration::from_micros(i * 250));
            match t.check(&key("198.51.100.1"), now) {
                Ok(()) => {
                    t.record_failure(key("198.51.100.1"), now);
                    (a + 1, r)
                }
                Err(_) => (a, r + 1),
            }
        });
        // The burst, then one per second of the 60.
        assert_eq!(admitted, 10 + 59);
        assert_eq!(refused, 240_000 - admitted);
    }

    #[test]
    fn a_pause_refills_the_bucket_and_forgets_the_client() {
        let mut t = FailureThrottle::default();
        let (admitted, _) = hammer(&mut t, "198.51.100.1", 10, 100);
        assert_eq!(admitted, 10);
        assert!(t.check(&key("198.51.100.1"), ms(100)).is_err());
        // Ten seconds later the bucket is full: ten in a row again.
        let mut admitted = 0;
        for _ in 0..12 {
            if t.check(&key("198.51.100.1"), ms(11_000)).is_ok() {
                admitted += 1;
                t.record_failure(key("198.51.100.1"), ms(11_000));
            }
        }
        assert_eq!(admitted, 10);
        // Another failure much later: the old entry was forgotten, one is left.
        t.record_failure(key("198.51.100.2"), ms(60_000));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let mut t = FailureThrottle::default();
        for i in 0..10u32 {
            let k = client_key(format!("2001:db8:1:2::{i:x}").parse().expect("ip"), 64);
            t.record_failure(k, ms(0));
        }
        assert!(t.check(&key("2001:db8:1:2::ffff"), ms(0)).is_err());
        assert!(t.check(&key("2001:db8:1:3::1"), ms(0)).is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_forgets_who_owes_least() {
        let mut t = FailureThrottle::new(2, Duration::from_secs(1), 3);
        for _ in 0..3 {
            t.record_failure(key("10.0.0.1"), ms(0)); // owes 3 s
        }
        t.record_failure(key("10.0.0.2"), ms(0)); // owes 1 s
        t.record_failure(key("10.0.0.3"), ms(5)); // owes 1.005 s
        t.record_failure(key("10.0.0.4"), ms(10));
        assert_eq!(t.len(), 3);
        assert!(t.check(&key("10.0.0.1"), ms(10)).is_err(), "the biggest debtor is kept");
        assert!(t.check(&key("10.0.0.2"), ms(10)).is_ok(), "forgotten");
        assert!(t.check(&key("10.0.0.3"), ms(10)).is_ok(), "one left of two: admitted");
        t.record_failure(key("10.0.0.3"), ms(10));
        assert!(t.check(&key("10.0.0.3"), ms(10)).is_err());
    }

    #[test]
    fn matches_a_naive_token_bucket() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        let ops = proptest::collection::vec((0u8..3, 0u64..1_500), 1..300);
        runner
            .run(&ops, |ops| {
                let (burst, interval) = (4u32, 1_000u64);
                let mut t = FailureThrottle::new(burst, Duration::from_millis(interval), 100);
                // Tokens per client (as milli-tokens) and when last refilled.
                let mut model: HashMap<u8, (u64, u64)> = HashMap::new();
                let mut now = 0u64;
                for (who, step) in ops {
                    now += step;
                    let k = key(&format!("10.0.0.{who}"));
                    let (tokens, at) = model.get(&who).copied().unwrap_or((u64::from(burst) * 1_000, now));
                    let tokens = (tokens + (now - at) * 1_000 / interval).min(u64::from(burst) * 1_000);
                    let admitted = t.check(&k, ms(now)).is_ok();
                    prop_assert_eq!(admitted, tokens >= 1_000, "client {} at {}", who, now);
                    if admitted {
                        t.record_failure(k, ms(now));
                        model.insert(who, (tokens - 1_000, now));
                    } else {
                        model.insert(who, (tokens, now));
                    }
                }
                Ok(())
            })
            .expect("same decisions");
    }
}

//! Failed logins counted per account (issue 22): an attacker spreading
//! guesses at one account over many addresses stays under the per-client
//! threshold of the intrusion detection however many addresses it has, so the
//! account's password logins are locked for a while once it has failed
//! `account_lockout_threshold` times within `account_lockout_minutes`.
//!
//! Only password logins are locked: the account's API tokens (full-entropy
//! secrets, not guessable) and the console (offline commands) keep working,
//! so an attacker cannot lock the owner out of the device for good. Only
//! accounts that exist are counted (the caller's check), so the table is
//! bounded by the number of accounts. Intervals are on the monotonic clock.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock::Monotonic;

/// Failures counted per account before its password logins are locked, by
/// default: none (off). On, anyone who knows an account's name can lock its
/// owner's password logins from anywhere; a device reachable from many
/// addresses switches it on (20 is a fair value), one on a closed network
/// relies on the per-client counts.
pub const DEFAULT_THRESHOLD: u32 = 0;
/// Minutes a failure is counted, and a lockout lasts, by default.
pub const DEFAULT_MINUTES: u32 = 15;
/// Smallest threshold (0 switches the lockout off): a few typing mistakes never lock.
pub const MIN_THRESHOLD: u32 = 5;
/// Largest threshold.
pub const MAX_THRESHOLD: u32 = 100_000;

#[derive(Debug, Clone, Default)]
struct Entry {
    /// Failures since `first`.
    count: u32,
    /// The first failure counted.
    first: Monotonic,
    /// Locked until then.
    locked_until: Option<Monotonic>,
}

/// The per-account counts and lockouts.
#[derive(Debug, Default)]
pub struct AccountLockout {
    entries: HashMap<String, Entry>,
}

impl AccountLockout {
    /// How long `account`'s password logins stay locked at `now`; `None`: not locked.
    pub fn locked(&self, account: &str, now: Monotonic) -> Option<Duration> {
        let until = self.entries.get(account)?.locked_until?;
        (until > now).then(|| until.since(now))
    }

    /// Counts a failed login of `account` at `now` (`threshold` 0: off);
    /// true when this failure locks it (once per lockout).
    pub fn record_failure(&mut self, account: &str, now: Monotonic, threshold: u32, minutes: u32) -> bool {
        if threshold == 0 {
            return false;
        }
        let window = Duration::from_secs(u64::from(minutes) * 60);
        let e = self.entries.entry(account.to_string()).or_default();
        if e.locked_until.is_some_and(|u| u > now) {
            return false;
        }
        if e.count == 0 || now.since(e.first) >= window || e.locked_until.is_some() {
            *e = Entry { count: 0, first: now, locked_until: None };
        }
        e.count += 1;
        if e.count >= threshold {
            e.locked_until = Some(now.after(window));
            return true;
        }
        false
    }

    /// Lifts every lockout and count (a Reboot, like the per-client blocks).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Forgets accounts that no longer exist.
    pub fn retain(&mut self, exists: impl Fn(&str) -> bool) {
        self.entries.retain(|name, _| exists(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Monotonic {
        Monotonic::from_origin(Duration::from_secs(s))
    }

    #[test]
    fn the_threshold_locks_for_the_minutes_then_counting_starts_again() {
        let mut l = AccountLockout::default();
        for i in 0..4 {
            assert!(!l.record_failure("admin", at(i), 5, 15), "failure {i}");
        }
        assert_eq!(l.locked("admin", at(4)), None);
        assert!(l.record_failure("admin", at(10), 5, 15), "the fifth locks");
        assert_eq!(l.locked("admin", at(10)), Some(Duration::from_secs(900)));
        assert!(!l.record_failure("admin", at(11), 5, 15), "once per lockout");
        assert_eq!(l.locked("other", at(11)), None, "per account");
        assert_eq!(l.locked("admin", at(909)), Some(Duration::from_secs(1)));
        assert_eq!(l.locked("admin", at(910)), None, "lifted by itself");
        assert!(!l.record_failure("admin", at(911), 5, 15), "counting starts again");
    }

    #[test]
    fn old_failures_expire_and_zero_switches_it_off() {
        let mut l = AccountLockout::default();
        for i in 0..4 {
            l.record_failure("admin", at(i * 60), 5, 15);
        }
        // The fifth comes after the window of the first: a new count.
        assert!(!l.record_failure("admin", at(15 * 60), 5, 15));
        let mut off = AccountLockout::default();
        for i in 0..100 {
            assert!(!off.record_failure("admin", at(i), 0, 15));
        }
        assert_eq!(off.locked("admin", at(100)), None);
        l.clear();
        assert_eq!(l.locked("admin", at(0)), None);
    }
}

//! Injected time, so that timeouts and deadtimes are tested without waiting.
//!
//! Two clocks, for two jobs. The **wall clock** (UTC) says what time it is:
//! it is what the event log, the logfile and certificates show and store.
//! On a device it is also the clock that jumps: a camera boots without a set
//! clock (in 1970) and NTP steps it later, forward or back, by hours or
//! decades. The **monotonic clock** never jumps: it measures how much time
//! passed, and every interval a rule depends on (a count's timeout, the alert
//! deadtime, a logfile merge window, the rate of failed logins) is measured
//! on it, so that a step of the wall clock neither silences alerts nor
//! lengthens a window.

use std::sync::Mutex;
use std::time::Instant;

use time::OffsetDateTime;

/// A reading of the monotonic clock: the time elapsed since the clock's
/// origin (for the system clock, when it was made). It only moves forward,
/// whatever the wall clock does, and means nothing across a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Monotonic(std::time::Duration);

impl Monotonic {
    /// The origin.
    pub const ZERO: Self = Self(std::time::Duration::ZERO);

    /// The reading `elapsed` after the origin.
    pub const fn from_origin(elapsed: std::time::Duration) -> Self {
        Self(elapsed)
    }

    /// Time elapsed since the origin.
    pub const fn since_origin(self) -> std::time::Duration {
        self.0
    }

    /// Time from `earlier` to `self`; zero if `earlier` is not earlier.
    pub fn since(self, earlier: Self) -> std::time::Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// The reading `by` later (saturating).
    pub fn after(self, by: std::time::Duration) -> Self {
        Self(self.0.saturating_add(by))
    }
}

/// One reading of both clocks: UTC for what is shown and stored, monotonic
/// for intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// The wall clock (UTC).
    pub utc: OffsetDateTime,
    /// The monotonic clock.
    pub monotonic: Monotonic,
}

/// A source of the current time: the wall clock and the monotonic clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time (UTC), for what is shown and stored.
    fn now(&self) -> OffsetDateTime;

    /// The monotonic clock, for intervals.
    fn monotonic(&self) -> Monotonic;

    /// Both clocks at once.
    fn timestamp(&self) -> Timestamp {
        Timestamp { utc: self.now(), monotonic: self.monotonic() }
    }
}

/// The real clocks: the system's wall clock, and its monotonic clock
/// (`CLOCK_MONOTONIC` on Linux, which NTP slews but never steps) counted from
/// when this value was made.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// The system clocks, the monotonic one counted from now.
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn monotonic(&self) -> Monotonic {
        Monotonic(self.origin.elapsed())
    }
}

/// Clocks that only move when told to; for tests. Advancing moves both;
/// [`ManualClock::set`] and [`ManualClock::step_wall`] move the wall clock
/// alone, as NTP stepping a device's clock does.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// Clocks standing at `start` (wall) and [`Monotonic::ZERO`].
    pub fn new(start: OffsetDateTime) -> Self {
        Self(Mutex::new(Timestamp { utc: start, monotonic: Monotonic::ZERO }))
    }

    /// Lets `by` pass: both clocks move forward (a negative `by` moves nothing).
    pub fn advance(&self, by: time::Duration) {
        let Ok(by) = std::time::Duration::try_from(by) else { return };
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        now.utc += by;
        now.monotonic = now.monotonic.after(by);
    }

    /// Sets the wall clock to `to`; the monotonic clock does not move.
    pub fn set(&self, to: OffsetDateTime) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).utc = to;
    }

    /// Steps the wall clock by `by` (back when negative); the monotonic clock does not move.
    pub fn step_wall(&self, by: time::Duration) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).utc += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).utc
    }

    fn monotonic(&self) -> Monotonic {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).monotonic
    }

    fn timestamp(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_wall_step_leaves_the_monotonic_clock_alone() {
        let clock = ManualClock::new(datetime!(2025-03-01 12:00 UTC));
        clock.advance(time::Duration::minutes(10));
        let before = clock.timestamp();
        assert_eq!(before.monotonic.since_origin(), std::time::Duration::from_secs(600));
        clock.step_wall(time::Duration::hours(-1));
        clock.advance(time::Duration::seconds(1));
        let after = clock.timestamp();
        assert_eq!(after.utc, datetime!(2025-03-01 11:10:01 UTC));
        assert_eq!(after.monotonic.since(before.monotonic), std::time::Duration::from_secs(1));
        assert_eq!(before.monotonic.since(after.monotonic), std::time::Duration::ZERO, "saturates");
        clock.advance(time::Duration::seconds(-5));
        assert_eq!(clock.timestamp(), after, "time does not run backwards");
    }

    #[test]
    fn the_system_monotonic_clock_never_goes_back() {
        let clock = SystemClock::new();
        let a = clock.monotonic();
        let b = clock.monotonic();
        assert!(b >= a);
    }
}

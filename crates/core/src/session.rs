//! How long a login session lives: it ends after [`IDLE`] without a request,
//! and [`MAX_AGE`] after the login whatever happens (a stolen cookie is not
//! good forever). Both are measured on the monotonic clock, so that a step
//! of the wall clock (NTP after a boot in 1970) neither ends every session
//! nor keeps one alive.

use std::time::Duration;

use crate::clock::Monotonic;

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login, whatever happens.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 60 * 60);

/// When a session was opened and last used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimes {
    /// The login.
    pub created: Monotonic,
    /// The last request that used it.
    pub last_seen: Monotonic,
}

impl SessionTimes {
    /// A session opened at `now`.
    pub fn opened(now: Monotonic) -> Self {
        Self { created: now, last_seen: now }
    }

    /// Whether the session is still alive at `now`: less than [`IDLE`] since
    /// its last use and less than [`MAX_AGE`] since the login.
    pub fn alive(&self, now: Monotonic) -> bool {
        now.since(self.last_seen) < IDLE && now.since(self.created) < MAX_AGE
    }

    /// Uses the session at `now`: alive, its idle time starts again;
    /// `false` if it had already ended (then nothing changes).
    pub fn use_at(&mut self, now: Monotonic) -> bool {
        if !self.alive(now) {
            return false;
        }
        self.last_seen = self.last_seen.max(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(d: Duration) -> Monotonic {
        Monotonic::from_origin(d)
    }

    #[test]
    fn idle_ends_the_session_exactly_at_the_limit() {
        let start = at(Duration::from_secs(1000));
        let s = SessionTimes::opened(start);
        assert!(s.alive(start));
        assert!(s.alive(start.after(IDLE - SECOND)), "one second before the idle limit");
        assert!(!s.alive(start.after(IDLE)), "at the idle limit");
        assert!(!s.alive(start.after(IDLE + SECOND)));
    }

    #[test]
    fn use_restarts_the_idle_time() {
        let start = at(Duration::ZERO);
        let mut s = SessionTimes::opened(start);
        let used = start.after(IDLE - SECOND);
        assert!(s.use_at(used));
        assert!(s.alive(used.after(IDLE - SECOND)), "idle counts from the last use");
        assert!(!s.alive(used.after(IDLE)));
    }

    #[test]
    fn the_absolute_limit_holds_however_busy_the_session() {
        let start = at(Duration::from_secs(5));
        let mut s = SessionTimes::opened(start);
        // Used every 29 minutes: never idle for long, still ends at MAX_AGE.
        let mut now = start;
        while now.since(start) + (IDLE - 60 * SECOND) < MAX_AGE {
            now = now.after(IDLE - 60 * SECOND);
            assert!(s.use_at(now), "alive at {:?}", now.since(start));
        }
        assert!(s.alive(start.after(MAX_AGE - SECOND)), "one second before the absolute limit");
        assert!(!s.alive(start.after(MAX_AGE)), "at the absolute limit");
        assert!(!s.use_at(start.after(MAX_AGE)));
    }

    #[test]
    fn an_ended_session_is_not_revived_by_use() {
        let start = at(Duration::ZERO);
        let mut s = SessionTimes::opened(start);
        let late = start.after(IDLE);
        assert!(!s.use_at(late));
        assert_eq!(s, SessionTimes::opened(start), "unchanged");
        assert!(!s.alive(late.after(SECOND)));
    }

    #[test]
    fn a_reading_before_the_last_use_does_not_move_it_back() {
        let start = at(Duration::from_secs(100));
        let mut s = SessionTimes::opened(start);
        assert!(s.use_at(start.after(10 * SECOND)));
        assert!(s.use_at(start.after(5 * SECOND)), "a racing earlier reading is still alive");
        assert_eq!(s.last_seen, start.after(10 * SECOND));
    }
}

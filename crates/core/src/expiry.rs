//! The certificate expiry watch: which warning is due, once per stage and
//! certificate (at 30, 7 and 1 day(s) before expiry, and once expired).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

/// How close a certificate is to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryStage {
    /// 30 days or less left.
    Days30,
    /// 7 days or less left.
    Days7,
    /// 1 day or less left.
    Days1,
    /// Expired.
    Expired,
}

impl ExpiryStage {
    /// The most urgent stage `not_after` has reached at `now`, if any.
    pub fn at(not_after: OffsetDateTime, now: OffsetDateTime) -> Option<Self> {
        let left = not_after - now;
        if left <= Duration::ZERO {
            Some(Self::Expired)
        } else if left <= Duration::days(1) {
            Some(Self::Days1)
        } else if left <= Duration::days(7) {
            Some(Self::Days7)
        } else if left <= Duration::days(30) {
            Some(Self::Days30)
        } else {
            None
        }
    }

    /// Words for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Days30 => "expires within 30 days",
            Self::Days7 => "expires within 7 days",
            Self::Days1 => "expires within a day",
            Self::Expired => "has expired",
        }
    }
}

/// What has been announced for the certificate in use (persisted, so a
/// restart does not repeat a warning).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryWatch {
    /// Fingerprint of the certificate the stages belong to.
    pub fingerprint: String,
    /// The most urgent stage announced so far.
    pub announced: Option<ExpiryStage>,
}

impl ExpiryWatch {
    /// The stage to announce now for the certificate `fingerprint` ending at
    /// `not_after`, if a new one is due; records it as announced. A new
    /// certificate starts afresh; skipped stages are not announced one by one
    /// (only the most urgent reached is).
    pub fn due(
        &mut self,
        fingerprint: &str,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Option<ExpiryStage> {
        if self.fingerprint != fingerprint {
            *self = Self { fingerprint: fingerprint.to_string(), announced: None };
        }
        let stage = ExpiryStage::at(not_after, now)?;
        if self.announced.is_some_and(|a| a >= stage) {
            return None;
        }
        self.announced = Some(stage);
        Some(stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn each_stage_once_day_by_day() {
        let not_after = datetime!(2027-01-31 12:00 UTC);
        let mut watch = ExpiryWatch::default();
        let mut fired = Vec::new();
        let mut now = datetime!(2026-12-01 00:00 UTC);
        while now < datetime!(2027-02-03 00:00 UTC) {
            if let Some(stage) = watch.due("AB", not_after, now) {
                fired.push((stage, now));
            }
            now += Duration::hours(6);
        }
        let stages: Vec<ExpiryStage> = fired.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            stages,
            vec![ExpiryStage::Days30, ExpiryStage::Days7, ExpiryStage::Days1, ExpiryStage::Expired]
        );
        assert_eq!(fired[0].1, datetime!(2027-01-01 12:00 UTC));
        assert_eq!(fired[1].1, datetime!(2027-01-24 12:00 UTC));
        assert_eq!(fired[2].1, datetime!(2027-01-30 12:00 UTC));
        assert_eq!(fired[3].1, datetime!(2027-01-31 12:00 UTC));
    }

    #[test]
    fn a_new_certificate_starts_afresh_and_a_late_start_announces_the_worst_once() {
        let mut watch = ExpiryWatch::default();
        let now = datetime!(2027-01-30 18:00 UTC);
        assert_eq!(watch.due("AB", datetime!(2027-01-31 12:00 UTC), now), Some(ExpiryStage::Days1));
        assert_eq!(watch.due("AB", datetime!(2027-01-31 12:00 UTC), now), None);
        assert_eq!(watch.due("CD", datetime!(2027-12-31 12:00 UTC), now), None, "renewed: nothing due");
        assert_eq!(watch.announced, None);
    }
}

//! The rotation window: a certificate is due when less than `remaining_fraction` (20%) of
//! its lifetime or less than `remaining_days` (30) remain, and when it expired.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::config::WindowSettings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DueReason {
    #[serde(rename = "expired")]
    Expired,
    /// Less than `remaining_fraction` of the lifetime remains (20% by default).
    #[serde(rename = "under-20-percent")]
    UnderFraction,
    /// Less than `remaining_days` remain (30 by default).
    #[serde(rename = "under-30-days")]
    UnderDays,
}

impl DueReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            DueReason::Expired => "expired",
            DueReason::UnderFraction => "under-20-percent",
            DueReason::UnderDays => "under-30-days",
        }
    }
}

/// Where a certificate stands in its rotation window at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub due: bool,
    pub reason: Option<DueReason>,
    /// The instant it becomes (or became) due.
    pub renew_at: OffsetDateTime,
    /// Time left until not_after; negative when expired.
    pub residual: Duration,
    pub lifetime: Duration,
}

/// Applies the window rule to one certificate's validity.
pub fn assess(
    window: &WindowSettings,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Assessment {
    let lifetime = not_after - not_before;
    let by_fraction = not_after - lifetime * window.remaining_fraction;
    let by_days = not_after - Duration::seconds_f64(window.remaining_days * 86_400.0);
    // A certificate shorter than the days threshold is due from its first second.
    let renew_at = by_fraction.min(by_days).max(not_before);
    let residual = not_after - now;
    let reason = if now >= not_after {
        Some(DueReason::Expired)
    } else if now >= renew_at {
        Some(if by_fraction <= by_days {
            DueReason::UnderFraction
        } else {
            DueReason::UnderDays
        })
    } else {
        None
    };
    Assessment {
        due: reason.is_some(),
        reason,
        renew_at,
        residual,
        lifetime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn w() -> WindowSettings {
        WindowSettings::default()
    }

    /// The seed's schedules fall out of the rule: a 91-day kubelet certificate renews
    /// on day 61 (30 days left), a 365-day control-plane certificate on day 292 (20% left).
    #[test]
    fn ninety_one_day_certificates_become_due_on_day_61() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::days(91);
        let a = assess(&w(), nb, na, nb);
        assert_eq!(a.renew_at, nb + Duration::days(61));
        assert!(!assess(&w(), nb, na, nb + Duration::days(61) - Duration::seconds(1)).due);
        let at = assess(&w(), nb, na, nb + Duration::days(61));
        assert!(at.due);
        assert_eq!(at.reason, Some(DueReason::UnderDays));
    }

    #[test]
    fn three_sixty_five_day_certificates_become_due_on_day_292() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::days(365);
        let a = assess(&w(), nb, na, nb);
        assert_eq!(a.renew_at, nb + Duration::days(292));
        assert!(!assess(&w(), nb, na, nb + Duration::days(291)).due);
        let at = assess(&w(), nb, na, nb + Duration::days(292));
        assert_eq!(at.reason, Some(DueReason::UnderFraction));
    }

    #[test]
    fn expired_is_due_and_says_so() {
        let nb = datetime!(2025-01-01 0:00 UTC);
        let na = nb + Duration::days(365);
        let a = assess(&w(), nb, na, na + Duration::seconds(1));
        assert_eq!(a.reason, Some(DueReason::Expired));
        assert!(a.residual.is_negative());
    }

    #[test]
    fn thresholds_are_configurable() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::days(100);
        let win = WindowSettings {
            remaining_fraction: 0.5,
            remaining_days: 10.0,
        };
        assert_eq!(assess(&win, nb, na, nb).renew_at, nb + Duration::days(50));
        let win = WindowSettings {
            remaining_fraction: 0.0,
            remaining_days: 60.0,
        };
        assert_eq!(assess(&win, nb, na, nb).renew_at, nb + Duration::days(40));
    }

    #[test]
    fn short_certificates_are_due_from_the_start() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let a = assess(&w(), nb, nb + Duration::days(7), nb);
        assert!(a.due);
        assert_eq!(a.renew_at, nb);
    }
}

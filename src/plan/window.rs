//! The rotation window: a certificate is due when less than `remaining_fraction` (20%) of
//! its lifetime or less than `remaining_days` (30) remain, and when it expired.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};
use time::{Duration, OffsetDateTime};

use crate::config::WindowSettings;
use crate::inventory::Handover;

/// Why a certificate is due. The threshold that fired travels with the reason, so the
/// words shown (`status`, `plan`, their JSON) name the configured value, never a default
/// the node does not use.
#[derive(Clone, Copy, Debug)]
pub enum DueReason {
    Expired,
    /// Less than `fraction` of the lifetime remains (`remaining_fraction`, 0.2 by default).
    UnderFraction {
        fraction: f64,
    },
    /// Less than `days` remain (`remaining_days`, 30 by default).
    UnderDays {
        days: f64,
    },
    /// A certificate the kubelet rotates itself that is past `fraction` of its lifetime
    /// (0.9, the latest deadline of client-go's jittered 70-90%) and still not rotated:
    /// the agent's safety net renews it.
    KubeletOverdue {
        fraction: f64,
    },
    /// Not due: the kubelet rotates it itself; `renew_at` is the safety net's instant.
    /// Shown by `status` as the reason it is left alone, never a reason to renew.
    KubeletRotates,
    /// kubelet.crt not issued by the cluster CA while `[kubelet] serving` says it must
    /// be (`cluster-ca`, `csr`): the operator set the mode to get a certificate clients
    /// can verify now, not at the next renewal.
    ServingIssuer,
    /// kubelet.crt issued by the cluster CA (`[kubelet] serving` = `cluster-ca`; not
    /// `csr`, where an approver allows only what the Node lists) that no longer names the node's name, host name or `--node-ip` addresses (an
    /// address change): clients that connect by the new address cannot verify it.
    ServingSans,
}

impl DueReason {
    /// The reason as `status`, `plan` and their JSON show it: `expired`,
    /// `under-<P>-percent`, `under-<D>-days`. With the default window these are exactly
    /// `under-20-percent` and `under-30-days` (the JSON contract); other values are
    /// written with up to two decimals, trailing zeros dropped (`under-12.5-percent`,
    /// `under-0.5-days`).
    pub fn as_str(&self) -> Cow<'static, str> {
        match *self {
            DueReason::Expired => Cow::Borrowed("expired"),
            DueReason::UnderFraction { fraction } => {
                Cow::Owned(format!("under-{}-percent", decimal(fraction * 100.0)))
            }
            DueReason::UnderDays { days } => Cow::Owned(format!("under-{}-days", decimal(days))),
            DueReason::KubeletOverdue { fraction } => Cow::Owned(format!(
                "kubelet-overdue-{}-percent",
                decimal(fraction * 100.0)
            )),
            DueReason::KubeletRotates => Cow::Borrowed("kubelet-rotates"),
            DueReason::ServingIssuer => Cow::Borrowed("serving-issuer"),
            DueReason::ServingSans => Cow::Borrowed("serving-sans"),
        }
    }
}

/// Up to two decimals, no trailing zeros: 20, 12.5, 0.33. Rounding also hides binary
/// noise such as 0.07 * 100 = 7.000000000000001.
fn decimal(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// Equal when the same threshold fired with the same value: bitwise on the value, so
/// the relation is total (settings are validated finite).
impl PartialEq for DueReason {
    fn eq(&self, other: &Self) -> bool {
        match (*self, *other) {
            (DueReason::Expired, DueReason::Expired) => true,
            (
                DueReason::UnderFraction { fraction: a },
                DueReason::UnderFraction { fraction: b },
            ) => a.to_bits() == b.to_bits(),
            (DueReason::UnderDays { days: a }, DueReason::UnderDays { days: b }) => {
                a.to_bits() == b.to_bits()
            }
            (
                DueReason::KubeletOverdue { fraction: a },
                DueReason::KubeletOverdue { fraction: b },
            ) => a.to_bits() == b.to_bits(),
            (DueReason::KubeletRotates, DueReason::KubeletRotates) => true,
            (DueReason::ServingIssuer, DueReason::ServingIssuer) => true,
            (DueReason::ServingSans, DueReason::ServingSans) => true,
            _ => false,
        }
    }
}

impl Eq for DueReason {}

impl fmt::Display for DueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.as_str())
    }
}

/// Serialized as its words, in `status --json` and `plan --json` alike.
impl Serialize for DueReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
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
    /// The kubelet rotates it itself: `renew_at` is the safety net's instant.
    pub kubelet_rotates: bool,
}

impl Assessment {
    /// The reason `status` shows: why it is due, or, for a certificate the kubelet
    /// rotates itself and that is not due, [`DueReason::KubeletRotates`].
    pub fn shown_reason(&self) -> Option<DueReason> {
        self.reason
            .or(self.kubelet_rotates.then_some(DueReason::KubeletRotates))
    }
}

/// Where a target stands: by the window, or, for a certificate the kubelet rotates
/// itself, by the safety net ([`safety_net`]).
pub fn assess_target(
    window: &WindowSettings,
    handover: Option<&Handover>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Assessment {
    match handover {
        None => assess(window, not_before, not_after, now),
        Some(h) => safety_net(h, not_before, not_after, now),
    }
}

/// The safety net for a certificate the kubelet rotates itself: due once
/// `after_fraction` of its lifetime has passed, and when expired; never earlier.
/// client-go's certificate manager rotates at a jittered 70-90% of the lifetime, so past
/// 90% the kubelet failed to (the API down, its CSR not approved) and the agent takes
/// over. No days-based rule: one would fire while the kubelet still looks after the
/// certificate, from its first second for a short-lived one (the controller-manager's
/// `--cluster-signing-duration` of hours), from day 77 of a 91-day one. A 365-day client
/// certificate: day 328.5 (36.5 days left); a 91-day one: day 81.9; a 10-minute one:
/// minute 9.
pub fn safety_net(
    h: &Handover,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Assessment {
    let lifetime = not_after - not_before;
    let renew_at = (not_before + lifetime * h.after_fraction).max(not_before);
    let residual = not_after - now;
    let reason = if now >= not_after {
        Some(DueReason::Expired)
    } else if now >= renew_at {
        Some(DueReason::KubeletOverdue {
            fraction: h.after_fraction,
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
        kubelet_rotates: true,
    }
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
            DueReason::UnderFraction {
                fraction: window.remaining_fraction,
            }
        } else {
            DueReason::UnderDays {
                days: window.remaining_days,
            }
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
        kubelet_rotates: false,
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
        assert_eq!(at.reason, Some(DueReason::UnderDays { days: 30.0 }));
    }

    #[test]
    fn three_sixty_five_day_certificates_become_due_on_day_292() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::days(365);
        let a = assess(&w(), nb, na, nb);
        assert_eq!(a.renew_at, nb + Duration::days(292));
        assert!(!assess(&w(), nb, na, nb + Duration::days(291)).due);
        let at = assess(&w(), nb, na, nb + Duration::days(292));
        assert_eq!(at.reason, Some(DueReason::UnderFraction { fraction: 0.2 }));
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

    fn net() -> Handover {
        Handover {
            after_fraction: 0.9,
        }
    }

    /// kubeadm's 365-day kubelet client certificate: the kubelet rotates it between day
    /// 255.5 and 328.5; the agent steps in only after that, at 36.5 days left.
    #[test]
    fn a_365_day_client_certificate_is_the_kubelet_s_until_day_328_and_a_half() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::days(365);
        let deadline = nb + Duration::seconds_f64(365.0 * 86_400.0 * 0.9);
        let a = safety_net(&net(), nb, na, nb);
        assert_eq!(a.renew_at, deadline);
        assert!(a.kubelet_rotates && !a.due);
        assert_eq!(a.shown_reason(), Some(DueReason::KubeletRotates));
        // Where the window alone renews it (day 292, 20% left), the kubelet still owns it.
        let day292 = nb + Duration::days(292);
        assert!(assess(&w(), nb, na, day292).due);
        assert!(!safety_net(&net(), nb, na, day292).due);
        assert!(!safety_net(&net(), nb, na, deadline - Duration::seconds(1)).due);
        let at = safety_net(&net(), nb, na, deadline);
        assert_eq!(at.reason, Some(DueReason::KubeletOverdue { fraction: 0.9 }));
        assert_eq!(at.reason.unwrap().as_str(), "kubelet-overdue-90-percent");
        assert_eq!(at.shown_reason(), at.reason);
    }

    /// The 91-day certificate: the kubelet's until day 81.9 (90%), though the window
    /// (under 30 days) and urgency (under 14 days) would have renewed it before.
    #[test]
    fn a_91_day_client_certificate_is_the_kubelet_s_until_90_percent() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::days(91);
        let deadline = nb + Duration::seconds_f64(91.0 * 86_400.0 * 0.9);
        assert_eq!(safety_net(&net(), nb, na, nb).renew_at, deadline);
        for left in [25, 14, 10] {
            let t = na - Duration::days(left);
            assert!(assess(&w(), nb, na, t).due);
            assert!(!safety_net(&net(), nb, na, t).due, "{left} days left");
        }
        let at = safety_net(&net(), nb, na, deadline);
        assert_eq!(at.reason, Some(DueReason::KubeletOverdue { fraction: 0.9 }));
        let gone = safety_net(&net(), nb, na, na);
        assert_eq!(gone.reason, Some(DueReason::Expired));
    }

    /// A short-lived client certificate (the controller-manager signing for 10 minutes):
    /// the window finds it due from its first second; the kubelet owns it until minute 9.
    #[test]
    fn a_short_lived_client_certificate_is_the_kubelet_s_until_90_percent() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::minutes(10);
        assert!(assess(&w(), nb, na, nb).due);
        let a = safety_net(&net(), nb, na, nb);
        assert!(!a.due && a.kubelet_rotates);
        assert_eq!(a.renew_at, nb + Duration::minutes(9));
        // Between the kubelet's earliest (70%) and latest (90%) deadline: still its own.
        assert!(!safety_net(&net(), nb, na, nb + Duration::seconds(539)).due);
        let at = safety_net(&net(), nb, na, nb + Duration::minutes(9));
        assert_eq!(at.reason, Some(DueReason::KubeletOverdue { fraction: 0.9 }));
        assert_eq!(
            safety_net(&net(), nb, na, na).reason,
            Some(DueReason::Expired)
        );
    }

    #[test]
    fn the_window_applies_without_a_handover_and_the_net_is_configurable() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::days(365);
        let now = nb + Duration::days(300);
        let plain = assess_target(&w(), None, nb, na, now);
        assert_eq!(plain, assess(&w(), nb, na, now));
        assert!(!plain.kubelet_rotates);
        assert_eq!(plain.shown_reason(), plain.reason);
        let h = Handover {
            after_fraction: 0.8,
        };
        let a = assess_target(&w(), Some(&h), nb, na, now);
        assert_eq!(a.renew_at, nb + Duration::days(292));
        assert_eq!(a.reason.unwrap().as_str(), "kubelet-overdue-80-percent");
        // At 1.0 only expiry hands it to the agent.
        let h = Handover {
            after_fraction: 1.0,
        };
        assert_eq!(assess_target(&w(), Some(&h), nb, na, nb).renew_at, na);
        assert_eq!(
            serde_json::to_value(DueReason::KubeletRotates).unwrap(),
            "kubelet-rotates"
        );
    }

    /// The default window keeps the contract's exact words; any other names its value.
    #[test]
    fn reasons_name_the_configured_threshold() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = nb + Duration::days(91);
        let at = |win: &WindowSettings| assess(win, nb, na, na - Duration::days(1)).reason;
        assert_eq!(at(&w()).unwrap().as_str(), "under-30-days");
        let na365 = nb + Duration::days(365);
        let r = assess(&w(), nb, na365, na365 - Duration::days(40)).reason;
        assert_eq!(r.unwrap().as_str(), "under-20-percent");
        let days400 = WindowSettings {
            remaining_days: 400.0,
            ..w()
        };
        assert_eq!(at(&days400).unwrap().as_str(), "under-400-days");
        let half = WindowSettings {
            remaining_fraction: 0.5,
            remaining_days: 0.0,
        };
        assert_eq!(at(&half).unwrap().as_str(), "under-50-percent");
        let odd = WindowSettings {
            remaining_fraction: 0.125,
            remaining_days: 0.5,
        };
        assert_eq!(at(&odd).unwrap().as_str(), "under-12.5-percent");
        let odd = WindowSettings {
            remaining_fraction: 0.0,
            remaining_days: 0.5,
        };
        assert_eq!(
            assess(&odd, nb, na, na - Duration::hours(1))
                .reason
                .unwrap()
                .as_str(),
            "under-0.5-days"
        );
        assert_eq!(decimal(0.07 * 100.0), "7");
        assert_eq!(decimal(1.0 / 3.0), "0.33");
        assert_eq!(
            serde_json::to_value(DueReason::UnderDays { days: 400.0 }).unwrap(),
            "under-400-days"
        );
        assert_eq!(format!("{:<16}|", DueReason::Expired), "expired         |");
    }
}

//! Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection
//! does it: the holder renews the Lease's renewTime; another candidate takes the Lease
//! over only after it has seen the same holder and renewTime, unchanged, for a whole
//! leaseDurationSeconds by its own monotonic clock (never by comparing its wall clock
//! with the holder's, which may be skewed). The duration waited is the Lease's own
//! `spec.leaseDurationSeconds`, the term its holder promised to renew within (client-go
//! waits that one), or this candidate's when longer. Every write carries the
//! resourceVersion it read, so two candidates never both win one round.

use std::time::{Duration, Instant};

use serde_json::Map;
use time::OffsetDateTime;

use super::types::{Lease, LeaseSpec, ObjectMeta};
use super::{ApiClient, ApiError};

/// What a candidate does with the Lease as it reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It is ours: renew it.
    Renew,
    /// Nobody holds it, or its holder stopped renewing it: take it.
    Take,
    /// Someone else holds it and renewed it within the lease duration.
    Follow { holder: String },
}

/// The pure rule. `unchanged_for`: how long this candidate has seen the same holder and
/// renewTime; `duration`: this candidate's own lease duration. A holder is silent only
/// after the longer of that and the Lease's `leaseDurationSeconds`: a holder configured
/// with a longer term renews less often, and taking over after our shorter one would
/// make two signers.
pub fn decide(spec: &LeaseSpec, me: &str, unchanged_for: Duration, duration: Duration) -> Decision {
    let held_for = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(duration, |s| duration.max(Duration::from_secs(s)));
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::Take,
        Some(_) if unchanged_for >= held_for => Decision::Take,
        Some(h) => Decision::Follow {
            holder: h.to_string(),
        },
    }
}

/// The holder and renewTime of a Lease as read: the record whose change restarts the
/// clock of a candidate waiting for a silent holder.
type Record = (Option<String>, Option<String>);

/// One candidate for one Lease.
pub struct Elector {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    /// The holder and renewTime last seen, and when they were first seen so.
    seen: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Elector {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            seen: None,
        }
    }

    fn path(&self, named: bool) -> String {
        let base = format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.namespace
        );
        if named {
            format!("{base}/{}", self.name)
        } else {
            base
        }
    }

    /// One round: true when this candidate holds the Lease now (created, renewed or
    /// taken over). A lost race (409) is `Ok(false)`; an unreachable API server is an
    /// error, and the caller does not lead while it cannot renew.
    pub fn try_lead(&mut self, api: &ApiClient) -> Result<bool, ApiError> {
        let now = micro_time(OffsetDateTime::now_utc());
        let lease: Lease = match api.get(&self.path(true)) {
            Ok(l) => l,
            Err(e) if e.is_not_found() => {
                let new = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: self.held_spec(&now, &now, 0),
                    rest: Map::new(),
                };
                return match api.post::<_, Lease>(&self.path(false), &new) {
                    Ok(_) => Ok(true),
                    Err(e) if e.is_conflict() => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let key: Record = (
            lease.spec.holder_identity.clone(),
            lease.spec.renew_time.clone(),
        );
        let since = match &self.seen {
            Some((k, at)) if *k == key => *at,
            _ => {
                let at = Instant::now();
                self.seen = Some((key, at));
                at
            }
        };
        let decision = decide(&lease.spec, &self.identity, since.elapsed(), self.duration);
        let spec = match decision {
            Decision::Follow { .. } => return Ok(false),
            Decision::Renew => {
                let acquired = lease.spec.acquire_time.clone().unwrap_or(now.clone());
                let n = lease.spec.lease_transitions.unwrap_or(0);
                self.held_spec(&acquired, &now, n)
            }
            Decision::Take => {
                let n = lease.spec.lease_transitions.unwrap_or(0) + 1;
                self.held_spec(&now, &now, n)
            }
        };
        let mut next = lease;
        next.spec = LeaseSpec {
            rest: std::mem::take(&mut next.spec.rest),
            ..spec
        };
        match api.put::<_, Lease>(&self.path(true), &next) {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn held_spec(&self, acquired: &str, renewed: &str, transitions: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i64),
            acquire_time: Some(acquired.to_string()),
            renew_time: Some(renewed.to_string()),
            lease_transitions: Some(transitions),
            rest: Map::new(),
        }
    }
}

/// metav1.MicroTime's wire form: RFC 3339 in UTC with microseconds.
pub fn micro_time(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: by.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_renewed_by_its_holder_taken_when_stale_or_free_followed_otherwise() {
        let d = Duration::from_secs(15);
        assert_eq!(
            decide(&held(Some("me")), "me", Duration::ZERO, d),
            Decision::Renew
        );
        assert_eq!(decide(&held(None), "me", Duration::ZERO, d), Decision::Take);
        assert_eq!(
            decide(&held(Some("")), "me", Duration::ZERO, d),
            Decision::Take
        );
        assert_eq!(
            decide(&held(Some("them")), "me", Duration::from_secs(14), d),
            Decision::Follow {
                holder: "them".into()
            }
        );
        assert_eq!(
            decide(&held(Some("them")), "me", Duration::from_secs(15), d),
            Decision::Take
        );
    }

    #[test]
    fn a_holder_is_silent_only_after_the_longer_of_its_lease_duration_and_ours() {
        let ours = Duration::from_secs(15);
        let theirs = |secs: Option<i64>| LeaseSpec {
            lease_duration_seconds: secs,
            ..held(Some("them"))
        };
        let follow = Decision::Follow {
            holder: "them".into(),
        };
        // The holder promised to renew within 60 s: 15 s of silence is not a lapse.
        let long = theirs(Some(60));
        assert_eq!(decide(&long, "me", Duration::from_secs(15), ours), follow);
        assert_eq!(decide(&long, "me", Duration::from_secs(59), ours), follow);
        assert_eq!(
            decide(&long, "me", Duration::from_secs(60), ours),
            Decision::Take
        );
        // A shorter term of the holder's does not shorten our wait, nor does a
        // missing or negative one.
        for spec in [theirs(Some(5)), theirs(None), theirs(Some(-1))] {
            assert_eq!(decide(&spec, "me", Duration::from_secs(14), ours), follow);
            assert_eq!(decide(&spec, "me", ours, ours), Decision::Take);
        }
        // Our own Lease is renewed whatever its term.
        let mine = LeaseSpec {
            lease_duration_seconds: Some(3600),
            ..held(Some("me"))
        };
        assert_eq!(decide(&mine, "me", Duration::ZERO, ours), Decision::Renew);
    }

    #[test]
    fn micro_time_is_the_api_servers_form() {
        let t = time::macros::datetime!(2026-12-07 01:02:03.456789 UTC);
        assert_eq!(micro_time(t), "2026-12-07T01:02:03.456789Z");
    }
}

//! The signer service's memory of cfssl servers that did not answer: after a transport
//! failure (nothing answered, or not in time; not a refusal of a request) a signer's
//! server is not asked again for a while, so that a dead server costs one round the
//! time left in its Lease term, not every round (the kubelets' serving CSRs are
//! approved in the same rounds, and wait for nothing else). The rest doubles with each
//! failure in a row, from [`FIRST_REST`] to [`LONGEST_REST`]; an answer ends it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The rest after a first transport failure: a few polls.
pub const FIRST_REST: Duration = Duration::from_secs(5);
/// The longest rest: a server back is used within a minute.
pub const LONGEST_REST: Duration = Duration::from_secs(60);

/// The signers resting, by signerName: the failures in a row and when the rest ends.
#[derive(Debug, Default)]
pub struct Resting {
    signers: BTreeMap<String, (u32, Instant)>,
}

impl Resting {
    /// The rest left for `signer` at `now`, when it rests.
    pub fn left(&self, signer: &str, now: Instant) -> Option<Duration> {
        let (_, until) = self.signers.get(signer)?;
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Records a transport failure of `signer`'s server at `now`: the rest it begins.
    pub fn failed(&mut self, signer: &str, now: Instant) -> Duration {
        let failures = self.signers.get(signer).map_or(0, |(n, _)| *n) + 1;
        let rest = rest_after(failures);
        self.signers
            .insert(signer.to_string(), (failures, now + rest));
        rest
    }

    /// `signer`'s server answered: no more rest. True when it was resting.
    pub fn answered(&mut self, signer: &str) -> bool {
        self.signers.remove(signer).is_some()
    }
}

/// The rest after `failures` transport failures in a row (1 or more).
pub fn rest_after(failures: u32) -> Duration {
    let doubled = FIRST_REST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(LONGEST_REST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rest_doubles_with_each_failure_in_a_row_and_an_answer_ends_it() {
        let t0 = Instant::now();
        let mut r = Resting::default();
        assert_eq!(r.left("a.b/c", t0), None);
        assert_eq!(r.failed("a.b/c", t0), Duration::from_secs(5));
        assert_eq!(r.left("a.b/c", t0), Some(Duration::from_secs(5)));
        assert_eq!(
            r.left("a.b/c", t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(1))
        );
        // Another signer's server is asked meanwhile.
        assert_eq!(r.left("a.b/other", t0), None);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(r.left("a.b/c", t1), None);
        assert_eq!(r.failed("a.b/c", t1), Duration::from_secs(10));
        assert_eq!(r.failed("a.b/c", t1), Duration::from_secs(20));
        assert_eq!(r.failed("a.b/c", t1), Duration::from_secs(40));
        assert_eq!(r.failed("a.b/c", t1), LONGEST_REST);
        assert_eq!(rest_after(40), LONGEST_REST);
        assert!(r.answered("a.b/c"));
        assert!(!r.answered("a.b/c"));
        assert_eq!(r.left("a.b/c", t1), None);
        assert_eq!(r.failed("a.b/c", t1), FIRST_REST);
    }
}

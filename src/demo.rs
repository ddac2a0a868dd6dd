//! `cert-rotator demo`: the agent on a sandbox node it builds itself.

use std::path::Path;

use time::{Duration, OffsetDateTime};

use crate::fixture::{self, FixtureError, NodeSpec, Validity};

/// The sandbox: a control plane (secondary, so no super-admin.conf) with an apiserver
/// certificate in its last 20%, a kubelet client certificate of 91 days with 25 left,
/// and a scheduler.conf that expired three days ago.
pub fn sandbox_spec(now: OffsetDateTime) -> NodeSpec {
    let mut spec = NodeSpec::control_plane(now)
        .with("apiserver", Validity::days(365, Duration::days(20)))
        .with(
            "kubelet-client-current.pem",
            Validity::days(91, Duration::days(25)),
        )
        .with("scheduler.conf", Validity::days(365, -Duration::days(3)));
    spec.super_admin = false;
    spec
}

pub fn build_sandbox(
    dir: &Path,
    now: OffsetDateTime,
    keys: crate::pki::KeyAlgorithm,
) -> Result<(), FixtureError> {
    let mut spec = sandbox_spec(now);
    spec.key_algorithm = keys;
    fixture::build(dir, &spec).map(|_| ())
}

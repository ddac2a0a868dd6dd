//! Verification: is the renewed certificate really what the component now serves?
//!
//! The inventory says, from the node's files alone, where each component listens and
//! what to check there ([`crate::inventory::NodeReader::endpoints`]): the certificate
//! file whose leaf must be served ([`Check::ServedCert`]), or, for components that
//! serve a self-made certificate (controller-manager, scheduler), a health check
//! ([`Check::Healthz`]).
//! [`Prober`] is the network edge, with one real implementation, [`TlsProber`].
//! [`wait_until_served`] polls the endpoints until they serve what is on disk, paced by
//! a [`Clock`] so that a test replays a long wait at once. After a restart,
//! [`wait_until_served_by`] counts only answers from a process that started after the
//! restart was requested ([`listener`]).

pub mod before;
mod http;
pub mod listener;
pub mod probe;
mod resolve;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

pub use listener::{Listener, Listeners, Process, RestartRequested};
pub use probe::TlsProber;
// What the probes are given: the vocabulary of [`crate::model`], as the node's files say it.
pub use crate::model::{Check, Endpoint};

use crate::clock::Clock;
use crate::model::Component;
use crate::node::{NodeError, NodeRoot};
use crate::pki::{self, CertFacts, PkiError};

/// How long one probe may take at most, so a slow endpoint is retried rather than
/// waited on for the whole verification timeout.
const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one probe may take at least, even at the deadline: the last try must still
/// have a chance to connect.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// The pause between two tries: a restarting component is polled, not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: TLS handshake failed: {message}")]
    Tls { endpoint: String, message: String },
    #[error("{endpoint}: the server presented no certificate")]
    NoCertificate { endpoint: String },
    #[error("{endpoint}: the served certificate cannot be read: {source}")]
    BadCertificate {
        endpoint: String,
        #[source]
        source: PkiError,
    },
    #[error("https://{endpoint}/healthz: {message}")]
    Unhealthy { endpoint: String, message: String },
    #[error("https://{endpoint}/readyz: {message}")]
    NotReady { endpoint: String, message: String },
    /// A socket or process of before the restart request still listens.
    #[error("{endpoint} is still answered by {listener}, which was there before the restart was requested")]
    OldListener { endpoint: String, listener: String },
    #[error("{endpoint} still serves serial {served} (want {want})")]
    StaleSerial {
        endpoint: String,
        served: String,
        want: String,
    },
    /// The certificate file to compare with cannot be read: no use waiting.
    #[error("{}: cannot read the certificate the component must serve: {}", source.path.display(), source.problem.to_string())]
    ReadCert {
        #[source]
        source: NodeError,
    },
    #[error("{path}: {source}")]
    BadCertOnDisk {
        path: PathBuf,
        #[source]
        source: PkiError,
    },
    #[error("{path}: no certificate")]
    NoCertOnDisk { path: PathBuf },
    /// The last error of an endpoint that never passed its check in time.
    #[error("not verified within {}s: {last}", timeout.as_secs())]
    NotVerified {
        component: String,
        timeout: Duration,
        #[source]
        last: Box<VerifyError>,
    },
}

/// The certificate a server presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedCert {
    /// Lower-case hex without leading zeros, as [`crate::pki::serial_hex`] prints it.
    pub serial: String,
    pub not_after: OffsetDateTime,
    pub subject: String,
    /// DER of the presented chain, leaf first.
    pub chain: Vec<Vec<u8>>,
}

/// What `GET /readyz` showed of a server that answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// 200 `ok`.
    Ready,
    /// Never shown to a client without credentials (401: `--anonymous-auth=false`; or a
    /// server that requires a client certificate): serving the new certificate is all
    /// a probe that sends no secret can verify.
    NotVisible(String),
    /// 403: an anonymous client is not allowed to ask. kube-apiserver answers so for a
    /// moment after it starts serving (its authorizer's informers not synced yet), and
    /// for ever where the public-info-viewer binding was removed.
    Forbidden(String),
}

/// How long 403s from `/readyz` are taken for "not ready yet" before they are taken for
/// "readiness not visible": on the real kube-apiserver the startup 403s last well under
/// a second (tests/k8s/ca_rotate.sh).
const FORBIDDEN_GRACE: Duration = Duration::from_secs(10);

/// The network edge of verification.
pub trait Prober {
    /// Connects to the endpoint and returns the leaf certificate it serves. `timeout`
    /// bounds the whole probe.
    fn served_leaf(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<ServedCert, VerifyError>;
    /// `GET https://endpoint/healthz` without verifying the server (curl -k) must answer
    /// 200 with the body `ok`.
    fn healthy(&self, endpoint: &Endpoint, timeout: Duration) -> Result<(), VerifyError>;
    /// `GET https://endpoint/readyz` without verifying the server and without
    /// credentials: [`Readiness::Ready`] on 200 `ok`; a server not ready yet (500 with
    /// the failed checks, refused, no answer) is an error.
    fn ready(&self, endpoint: &Endpoint, timeout: Duration) -> Result<Readiness, VerifyError>;
    /// A restart is requested now: the time and what listens on this host then; `None`
    /// where listeners cannot be told apart (verification then does without).
    fn restart_mark(&self) -> Option<RestartRequested>;
    /// The sockets listening on the endpoint's port on this host, and their processes.
    fn listeners(&self, endpoint: &Endpoint) -> Listeners;
}

/// Waits until every endpoint of `component` passes its check, all within `timeout`
/// from now (one deadline for all endpoints, taken from `clock`): the serial served is
/// the serial of the first certificate now in the check's file on the node (`root`),
/// or `/healthz` answers `ok`. Endpoints are checked in order; each is tried until it
/// passes, a probe bounded by the time left (at most 5 s, at least 200 ms), 500 ms
/// apart on `clock`. kube-apiserver must then also answer `/readyz` with `ok` on its
/// last (local) endpoint, within the same deadline ([`Prober::ready`]).
///
/// Returns one line per endpoint (`"{component} serves serial {want} on {ep}"` or
/// `"{component} healthy on {ep}"`), and kube-apiserver's readiness line, for the
/// caller to report and log. Fails with
/// [`VerifyError::NotVerified`] and the endpoint's last error once the deadline passed,
/// or at once when the certificate file cannot be read.
pub fn wait_until_served(
    prober: &dyn Prober,
    clock: &dyn Clock,
    root: &NodeRoot,
    component: &Component,
    endpoints: &[Endpoint],
    timeout: Duration,
) -> Result<Vec<String>, VerifyError> {
    wait_until_served_by(prober, clock, root, component, endpoints, timeout, None)
}

/// [`wait_until_served`], after a restart `requested` then: a try counts only when every
/// socket listening on the endpoint's port was opened after the request, by a process
/// started after it where the process is visible (the old one may still serve, even the
/// new certificate, until it is stopped); each line then names the pid (or socket) that
/// answered. Where the listener cannot be identified (no socket table, nothing of this
/// host listening) verification does as [`wait_until_served`] and says so in the log
/// and the line.
pub fn wait_until_served_by(
    prober: &dyn Prober,
    clock: &dyn Clock,
    root: &NodeRoot,
    component: &Component,
    endpoints: &[Endpoint],
    timeout: Duration,
    requested: Option<&RestartRequested>,
) -> Result<Vec<String>, VerifyError> {
    let name = component.name();
    let who = answered::Who::new(prober, requested, &name);
    let deadline = clock.now() + timeout;
    let mut out = Vec::with_capacity(endpoints.len() + 1);
    for ep in endpoints {
        out.push(until_passes(clock, deadline, timeout, &name, ep, |t| {
            who.answers(ep, || match &ep.check {
                Check::ServedCert { cert } => {
                    let want = serial_on_disk(root, cert).map_err(Fatal)?;
                    match prober.served_leaf(ep, t) {
                        Ok(s) if s.serial == want => {
                            Ok(format!("{name} serves serial {want} on {ep}"))
                        }
                        Ok(s) => Err(VerifyError::StaleSerial {
                            endpoint: ep.to_string(),
                            served: s.serial,
                            want,
                        }
                        .into()),
                        Err(e) => Err(e.into()),
                    }
                }
                Check::Healthz => prober
                    .healthy(ep, t)
                    .map(|()| format!("{name} healthy on {ep}"))
                    .map_err(Into::into),
            })
        })?);
    }
    // kube-apiserver serves TLS, and its new certificate, seconds before it is ready
    // (etcd reached, informers synced, post-start hooks done): a restart is verified
    // once its local endpoint (the last) says ready too.
    if let (Component::KubeApiserver, Some(ep)) = (component, endpoints.last()) {
        let mut forbidden_since = None;
        out.push(until_passes(clock, deadline, timeout, &name, ep, |t| {
            who.answers(ep, || {
                ready_line(prober, clock, ep, t, &name, &mut forbidden_since)
            })
        })?);
    }
    Ok(out)
}

/// One `/readyz` try: the line when ready (or readiness not visible after the grace).
fn ready_line(
    prober: &dyn Prober,
    clock: &dyn Clock,
    ep: &Endpoint,
    t: Duration,
    name: &str,
    forbidden_since: &mut Option<OffsetDateTime>,
) -> Result<String, TryError> {
    let why = match prober.ready(ep, t)? {
        Readiness::Ready => return Ok(format!("{name} ready on {ep} (/readyz)")),
        Readiness::NotVisible(why) => why,
        Readiness::Forbidden(why) => {
            let since = *forbidden_since.get_or_insert(clock.now());
            if clock.now() - since < FORBIDDEN_GRACE {
                return Err(VerifyError::NotReady {
                    endpoint: ep.to_string(),
                    message: why,
                }
                .into());
            }
            why
        }
    };
    Ok(format!(
        "{name} readiness not visible on {ep} ({why}): serving verified only"
    ))
}

mod answered;

/// An error no retry can cure: fail at once.
struct Fatal(VerifyError);

/// Why one try failed: try again, or give up at once (boxed: a try's result stays small).
enum TryError {
    Again(Box<VerifyError>),
    Fatal(Box<VerifyError>),
}

impl From<VerifyError> for TryError {
    fn from(e: VerifyError) -> Self {
        TryError::Again(Box::new(e))
    }
}

impl From<Fatal> for TryError {
    fn from(e: Fatal) -> Self {
        TryError::Fatal(Box::new(e.0))
    }
}

/// Tries `probe` (given the probe's timeout) until it passes or `deadline` passed,
/// [`RETRY_PAUSE`] apart on `clock`; the last error once the deadline passed.
fn until_passes(
    clock: &dyn Clock,
    deadline: OffsetDateTime,
    timeout: Duration,
    name: &str,
    ep: &Endpoint,
    mut probe: impl FnMut(Duration) -> Result<String, TryError>,
) -> Result<String, VerifyError> {
    loop {
        let left = time_left(deadline, clock.now());
        let last = match probe(left.min(MAX_PROBE_TIMEOUT).max(MIN_PROBE_TIMEOUT)) {
            Ok(line) => return Ok(line),
            Err(TryError::Fatal(e)) => return Err(*e),
            Err(TryError::Again(e)) => *e,
        };
        if clock.now() >= deadline {
            return Err(VerifyError::NotVerified {
                component: name.to_string(),
                timeout,
                last: Box::new(last),
            });
        }
        tracing::debug!(component = %name, endpoint = %ep, error = %last, "not yet; trying again");
        clock.sleep(RETRY_PAUSE);
    }
}

fn time_left(deadline: OffsetDateTime, now: OffsetDateTime) -> Duration {
    (deadline - now).try_into().unwrap_or(Duration::ZERO)
}

/// The serial of the first certificate of a node file (the one a server presents), as
/// [`crate::pki::serial_hex`] prints it.
pub fn serial_on_disk(root: &NodeRoot, cert: &Path) -> Result<String, VerifyError> {
    let (resolved, bytes) = root
        .read_file(cert)
        .map_err(|source| VerifyError::ReadCert { source })?;
    let bad = |source: PkiError| VerifyError::BadCertOnDisk {
        path: resolved.clone(),
        source,
    };
    let blocks = pki::parse_pem(&bytes).map_err(bad)?;
    let first = blocks
        .iter()
        .find(|b| b.tag == "CERTIFICATE")
        .ok_or_else(|| VerifyError::NoCertOnDisk {
            path: resolved.clone(),
        })?;
    Ok(CertFacts::from_der(&first.der).map_err(bad)?.serial)
}

#[cfg(test)]
mod tests;

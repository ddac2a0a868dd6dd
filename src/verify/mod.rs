//! Verification: is the renewed certificate really what the component now serves?
//!
//! [`endpoints`] says, from the node's files alone, where each component listens and
//! what to check there: the certificate file whose leaf must be served
//! ([`Check::ServedCert`]), or, for components that serve a self-made certificate
//! (controller-manager, scheduler), a health check ([`Check::Healthz`]).
//! [`Prober`] is the network edge, with one real implementation, [`TlsProber`].
//! [`wait_until_served`] polls the endpoints until they serve what is on disk, paced by
//! a [`Clock`] so that a test replays a long wait at once.

pub mod before;
pub mod endpoints;
mod http;
pub mod probe;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;

pub use endpoints::endpoints;
pub use probe::TlsProber;

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

/// Where a component listens, and what to check there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// An IP address (IPv6 without brackets) or a host name.
    pub host: String,
    pub port: u16,
    pub check: Check,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// The leaf served here must be the first certificate of this file (node path).
    ServedCert { cert: PathBuf },
    /// `GET /healthz` must answer 200 `ok`: the component serves a certificate it made
    /// itself in memory, so there is no file to compare with, but a healthy answer shows
    /// it runs again with its (renewed) kubeconfig.
    Healthz,
}

impl Endpoint {
    /// Where the certificate of the node file `cert` must be served.
    pub fn served(host: &str, port: u16, cert: &str) -> Self {
        Endpoint {
            host: host.into(),
            port,
            check: Check::ServedCert { cert: cert.into() },
        }
    }

    /// A component whose health answers on loopback (`/healthz`).
    pub fn healthz(port: u16) -> Self {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            check: Check::Healthz,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
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
}

/// Waits until every endpoint of `component` passes its check, all within `timeout`
/// from now (one deadline for all endpoints, taken from `clock`): the serial served is
/// the serial of the first certificate now in the check's file on the node (`root`),
/// or `/healthz` answers `ok`. Endpoints are checked in order; each is tried until it
/// passes, a probe bounded by the time left (at most 5 s, at least 200 ms), 500 ms
/// apart on `clock`.
///
/// Returns one line per endpoint (`"{component} serves serial {want} on {ep}"` or
/// `"{component} healthy on {ep}"`) for the caller to report and log. Fails with
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
    let name = component.name();
    let deadline = clock.now() + timeout;
    let mut out = Vec::with_capacity(endpoints.len());
    for ep in endpoints {
        loop {
            let left = time_left(deadline, clock.now());
            let probe_timeout = left.min(MAX_PROBE_TIMEOUT).max(MIN_PROBE_TIMEOUT);
            let result = match &ep.check {
                Check::ServedCert { cert } => {
                    let want = serial_on_disk(root, cert)?;
                    match prober.served_leaf(ep, probe_timeout) {
                        Ok(s) if s.serial == want => {
                            Ok(format!("{name} serves serial {want} on {ep}"))
                        }
                        Ok(s) => Err(VerifyError::StaleSerial {
                            endpoint: ep.to_string(),
                            served: s.serial,
                            want,
                        }),
                        Err(e) => Err(e),
                    }
                }
                Check::Healthz => prober
                    .healthy(ep, probe_timeout)
                    .map(|()| format!("{name} healthy on {ep}")),
            };
            let last = match result {
                Ok(line) => {
                    out.push(line);
                    break;
                }
                Err(e) => e,
            };
            if clock.now() >= deadline {
                return Err(VerifyError::NotVerified {
                    component: name,
                    timeout,
                    last: Box::new(last),
                });
            }
            tracing::debug!(component = %name, endpoint = %ep, error = %last, "not yet; trying again");
            clock.sleep(RETRY_PAUSE);
        }
    }
    Ok(out)
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
mod tests {
    use super::*;
    use crate::fixture;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// A clock that only moves when slept on, recording the sleeps.
    struct StepClock {
        now: Mutex<OffsetDateTime>,
        slept: Mutex<Vec<Duration>>,
    }

    impl StepClock {
        fn new() -> Self {
            StepClock {
                now: Mutex::new(time::macros::datetime!(2026-03-01 12:00 UTC)),
                slept: Mutex::default(),
            }
        }
        fn slept(&self) -> Vec<Duration> {
            self.slept.lock().unwrap().clone()
        }
    }

    impl Clock for StepClock {
        fn now(&self) -> OffsetDateTime {
            *self.now.lock().unwrap()
        }
        fn sleep(&self, d: Duration) {
            *self.now.lock().unwrap() += d;
            self.slept.lock().unwrap().push(d);
        }
    }

    /// What one probe answers.
    enum Answer {
        Serial(String),
        Healthy,
        Refused,
    }

    /// Answers from a script, then `last` for ever; records every probe's endpoint and
    /// timeout.
    struct ScriptedProber {
        script: Mutex<VecDeque<Answer>>,
        last: fn() -> Answer,
        probes: Mutex<Vec<(String, Duration)>>,
    }

    impl ScriptedProber {
        fn new(script: Vec<Answer>, last: fn() -> Answer) -> Self {
            ScriptedProber {
                script: Mutex::new(script.into()),
                last,
                probes: Mutex::default(),
            }
        }
        fn answer(&self, ep: &Endpoint, timeout: Duration) -> Answer {
            self.probes.lock().unwrap().push((ep.to_string(), timeout));
            self.script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(self.last)
        }
        fn timeouts(&self) -> Vec<Duration> {
            self.probes.lock().unwrap().iter().map(|p| p.1).collect()
        }
    }

    fn refused(ep: &Endpoint) -> VerifyError {
        VerifyError::Connect {
            endpoint: ep.to_string(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        }
    }

    impl Prober for ScriptedProber {
        fn served_leaf(&self, ep: &Endpoint, t: Duration) -> Result<ServedCert, VerifyError> {
            match self.answer(ep, t) {
                Answer::Serial(serial) => Ok(ServedCert {
                    serial,
                    not_after: OffsetDateTime::UNIX_EPOCH,
                    subject: "CN=kube-apiserver".into(),
                    chain: vec![],
                }),
                Answer::Healthy => panic!("not a healthz endpoint: {ep}"),
                Answer::Refused => Err(refused(ep)),
            }
        }
        fn healthy(&self, ep: &Endpoint, t: Duration) -> Result<(), VerifyError> {
            match self.answer(ep, t) {
                Answer::Healthy => Ok(()),
                Answer::Serial(_) => panic!("not a served-cert endpoint: {ep}"),
                Answer::Refused => Err(refused(ep)),
            }
        }
    }

    const API_CRT: &str = "/etc/kubernetes/pki/apiserver.crt";

    fn node() -> (tempfile::TempDir, NodeRoot, String) {
        let (d, r) = fixture::temp_control_plane();
        let serial = serial_on_disk(&r, Path::new(API_CRT)).unwrap();
        (d, r, serial)
    }

    fn api(host: &str) -> Endpoint {
        Endpoint {
            host: host.into(),
            port: 6443,
            check: Check::ServedCert {
                cert: API_CRT.into(),
            },
        }
    }

    fn stale() -> Answer {
        Answer::Serial("1234".into())
    }

    #[test]
    fn the_new_serial_after_some_tries_passes() {
        let (_d, r, want) = node();
        let clock = StepClock::new();
        let p = ScriptedProber::new(
            vec![
                Answer::Refused,
                stale(),
                stale(),
                Answer::Serial(want.clone()),
            ],
            || panic!("no fifth probe"),
        );
        let lines = wait_until_served(
            &p,
            &clock,
            &r,
            &Component::KubeApiserver,
            &[api("127.0.0.1")],
            Duration::from_secs(180),
        )
        .unwrap();
        assert_eq!(
            lines,
            [format!(
                "kube-apiserver serves serial {want} on 127.0.0.1:6443"
            )]
        );
        assert_eq!(clock.slept(), [RETRY_PAUSE; 3]);
        assert_eq!(p.timeouts(), [MAX_PROBE_TIMEOUT; 4]);
    }

    #[test]
    fn a_stale_serial_until_the_deadline_fails_with_the_last_error() {
        let (_d, r, want) = node();
        let clock = StepClock::new();
        let start = clock.now();
        let p = ScriptedProber::new(vec![], stale);
        let e = wait_until_served(
            &p,
            &clock,
            &r,
            &Component::KubeApiserver,
            &[api("127.0.0.1")],
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "not verified within 2s: 127.0.0.1:6443 still serves serial 1234 (want {want})"
            )
        );
        assert!(
            matches!(&e, VerifyError::NotVerified { component, .. } if component == "kube-apiserver")
        );
        // Tries at 0, 0.5, 1, 1.5 and 2 s, each bounded by the time left, never under
        // 200 ms; no real time passed.
        let ms = Duration::from_millis;
        assert_eq!(
            p.timeouts(),
            [ms(2000), ms(1500), ms(1000), ms(500), ms(200)]
        );
        assert_eq!(clock.now() - start, time::Duration::seconds(2));
    }

    #[test]
    fn healthz_endpoints_and_one_deadline_for_all() {
        let (_d, r, want) = node();
        let clock = StepClock::new();
        let sched = Endpoint {
            host: "127.0.0.1".into(),
            port: 10259,
            check: Check::Healthz,
        };
        let p = ScriptedProber::new(
            vec![Answer::Refused, Answer::Refused, Answer::Healthy],
            || panic!("no more probes"),
        );
        assert_eq!(
            wait_until_served(
                &p,
                &clock,
                &r,
                &Component::KubeScheduler,
                std::slice::from_ref(&sched),
                Duration::from_secs(10),
            )
            .unwrap(),
            ["kube-scheduler healthy on 127.0.0.1:10259"]
        );
        // Two endpoints, 1 s in all: the first takes 1 s to pass, the second gets one try.
        let p = ScriptedProber::new(vec![stale(), stale(), Answer::Serial(want.clone())], || {
            Answer::Refused
        });
        let e = wait_until_served(
            &p,
            &clock,
            &r,
            &Component::KubeApiserver,
            &[api("10.0.0.10"), api("127.0.0.1")],
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("not verified within 1s: cannot connect to 127.0.0.1:6443: "),
            "{e}"
        );
        let probed: Vec<String> = p
            .probes
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.0.clone())
            .collect();
        assert_eq!(
            probed,
            [
                "10.0.0.10:6443",
                "10.0.0.10:6443",
                "10.0.0.10:6443",
                "127.0.0.1:6443"
            ]
        );
    }

    #[test]
    fn an_unreadable_certificate_on_disk_fails_at_once() {
        let (_d, r, _) = node();
        let clock = StepClock::new();
        let p = ScriptedProber::new(vec![], || panic!("no probe without a serial to want"));
        let mut ep = api("127.0.0.1");
        ep.check = Check::ServedCert {
            cert: "/etc/kubernetes/pki/nope.crt".into(),
        };
        let e = wait_until_served(
            &p,
            &clock,
            &r,
            &Component::KubeApiserver,
            &[ep],
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(matches!(e, VerifyError::ReadCert { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/kubernetes/pki/nope.crt: cannot read"),
            "{e}"
        );
        assert!(clock.slept().is_empty());
        // A key file holds no certificate; a broken PEM is named too.
        let key = Path::new("/etc/kubernetes/pki/apiserver.key");
        assert_eq!(
            serial_on_disk(&r, key).unwrap_err().to_string(),
            "/etc/kubernetes/pki/apiserver.key: no certificate"
        );
        std::fs::write(
            r.host(Path::new("/etc/kubernetes/pki/bad.crt")),
            "-----BEGIN CERTIFICATE-----\n!!\n",
        )
        .unwrap();
        let e = serial_on_disk(&r, Path::new("/etc/kubernetes/pki/bad.crt")).unwrap_err();
        assert!(matches!(e, VerifyError::BadCertOnDisk { .. }), "{e}");
        assert!(
            e.to_string().starts_with("/etc/kubernetes/pki/bad.crt: "),
            "{e}"
        );
    }
}

//! Test doubles of the pass's seams: a service manager that records and restarts
//! nothing, a prober that serves what is on disk (or a stale certificate), a clock that
//! moves only when slept on. The real edges are proven against systemd and openssl.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration as StdDuration;

use cert_rotator::clock::Clock;
use cert_rotator::restart::{RestartError, ServiceManager, UnitRestart};
use cert_rotator::verify::{
    Check, Endpoint, Listener, Listeners, Prober, Process, Readiness, RestartRequested, ServedCert,
    VerifyError,
};
use time::OffsetDateTime;

use super::host;

// ------------------------------------------------------------ service manager ---

/// One restart a [`RecordingServiceManager`] was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRestart {
    pub unit: String,
    pub timeout: StdDuration,
}

/// Records every restart and restarts nothing. Each successful restart hands out a new
/// fake InvocationID; [`fail_unit`](Self::fail_unit) makes a unit's restart job fail.
#[derive(Default)]
pub struct RecordingServiceManager {
    calls: Mutex<Vec<RecordedRestart>>,
    failing: Mutex<HashMap<String, String>>,
    runs: Mutex<HashMap<String, u64>>,
}

impl RecordingServiceManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every restart of `unit` end with the job result `result` (`failed`,
    /// `timeout`, ...).
    pub fn fail_unit(&self, unit: &str, result: &str) {
        self.failing
            .lock()
            .unwrap()
            .insert(unit.to_string(), result.to_string());
    }

    pub fn calls(&self) -> Vec<RecordedRestart> {
        self.calls.lock().unwrap().clone()
    }

    /// The units restarted (successfully or not), in call order.
    pub fn restarted(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.unit).collect()
    }

    fn fake_id(unit: &str, run: u64) -> Option<String> {
        (run > 0).then(|| format!("{:016x}{run:016x}", fnv(unit)))
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

impl ServiceManager for RecordingServiceManager {
    fn restart_unit(&self, unit: &str, timeout: StdDuration) -> Result<UnitRestart, RestartError> {
        self.calls.lock().unwrap().push(RecordedRestart {
            unit: unit.to_string(),
            timeout,
        });
        if let Some(result) = self.failing.lock().unwrap().get(unit) {
            return Err(RestartError::JobFailed {
                unit: unit.to_string(),
                result: result.clone(),
                state: "failed/failed".into(),
            });
        }
        let mut runs = self.runs.lock().unwrap();
        let run = runs.entry(unit.to_string()).or_insert(1);
        let previous = Self::fake_id(unit, *run);
        *run += 1;
        Ok(UnitRestart {
            unit: unit.to_string(),
            job: format!("/org/freedesktop/systemd1/job/{run}"),
            result: "done".into(),
            previous_invocation_id: previous,
            invocation_id: Self::fake_id(unit, *run).unwrap_or_default(),
        })
    }
}

// --------------------------------------------------------------------- prober ---

/// Serves the certificate on disk, except on `stale_ports`, which keep serving the
/// serial they served first (a component that did not reload), and on the ports of
/// [`until_restarted`](Self::until_restarted), which serve the certificate they had
/// until their static pod's manifest changes (the kubelet recreated the pod). Health
/// checks pass. A pod's process (its listener) is a new pid, started at the process
/// clock's now, once its manifest changed; other ports' listeners cannot be told.
pub struct FakeProber {
    root: PathBuf,
    stale_ports: BTreeSet<u16>,
    first: Mutex<BTreeMap<u16, String>>,
    probes: Mutex<Vec<String>>,
    pods: Mutex<BTreeMap<u16, PodState>>,
    /// The process clock: one tick further at each look.
    ticks: Mutex<u64>,
    /// Ports held for ever by the process of before any restart (pid 100).
    old_ports: BTreeSet<u16>,
}

/// A static pod's endpoint of [`FakeProber::until_restarted`] and
/// [`FakeProber::down_until_restarted`].
struct PodState {
    /// Host path of its manifest.
    manifest: PathBuf,
    /// The manifest's bytes when the pod last (re)started.
    seen: Vec<u8>,
    /// The serial it serves; `None`: it does not answer.
    serial: Option<String>,
    /// Its process, once it runs.
    process: Process,
    /// Restarted (seen by a look at its listener) but not yet probed: it serves what
    /// is on disk at its next probe.
    reload: bool,
}

impl PodState {
    fn new(manifest: PathBuf, serial: Option<String>) -> Self {
        let seen = std::fs::read(&manifest).unwrap();
        PodState {
            manifest,
            seen,
            serial,
            process: Process {
                pid: 100,
                started: 1,
            },
            reload: false,
        }
    }

    /// Whether the manifest changed since the pod last started: then it starts again,
    /// a new process at `now`.
    fn restarted(&mut self, now: u64) -> bool {
        let bytes = std::fs::read(&self.manifest).unwrap();
        if bytes == self.seen {
            return false;
        }
        self.seen = bytes;
        self.process = Process {
            pid: self.process.pid + 1,
            started: now,
        };
        true
    }
}

impl FakeProber {
    /// `stale`: ports that keep serving the certificate of a file as it is now.
    pub fn new(root: &Path, stale: &[(u16, &str)]) -> Self {
        let first = stale
            .iter()
            .map(|(port, file)| (*port, serial_of(&host(root, file))))
            .collect();
        FakeProber {
            root: root.to_path_buf(),
            stale_ports: stale.iter().map(|s| s.0).collect(),
            first: Mutex::new(first),
            probes: Default::default(),
            pods: Default::default(),
            ticks: Mutex::new(1000),
            old_ports: BTreeSet::new(),
        }
    }

    /// The process of before any restart keeps `port` for ever (a kubelet that never
    /// restarts the pod), serving what is on disk (it reloads its files by itself).
    pub fn old_process_on(mut self, port: u16) -> Self {
        self.old_ports.insert(port);
        self
    }

    fn tick(&self) -> u64 {
        let mut t = self.ticks.lock().unwrap();
        *t += 1;
        *t
    }

    /// A component that loads its certificate only when it starts: each `(port,
    /// certificate file, manifest)` serves the certificate the file holds now until the
    /// manifest changes, then what is on disk at that restart.
    pub fn until_restarted(root: &Path, pods: &[(u16, &str, &str)]) -> Self {
        let p = Self::new(root, &[]);
        *p.pods.lock().unwrap() = pods
            .iter()
            .map(|(port, cert, manifest)| {
                let serial = Some(serial_of(&host(root, cert)));
                (*port, PodState::new(host(root, manifest), serial))
            })
            .collect();
        p
    }

    /// A component that is down (connection refused) until its static pod's manifest
    /// changes, then serves what is on disk: `(port, manifest)`.
    pub fn down_until_restarted(root: &Path, pods: &[(u16, &str)]) -> Self {
        let p = Self::new(root, &[]);
        *p.pods.lock().unwrap() = pods
            .iter()
            .map(|(port, manifest)| (*port, PodState::new(host(root, manifest), None)))
            .collect();
        p
    }

    /// Every probe, in order: `HOST:PORT`, or `healthz HOST:PORT`.
    pub fn probes(&self) -> Vec<String> {
        self.probes.lock().unwrap().clone()
    }
}

/// The serial of the first certificate of a host file.
pub fn serial_of(f: &Path) -> String {
    let text = std::fs::read(f).unwrap();
    let blocks = cert_rotator::pki::parse_pem(&text).unwrap();
    cert_rotator::pki::certificates(&blocks)
        .unwrap()
        .remove(0)
        .serial
}

impl Prober for FakeProber {
    fn served_leaf(&self, ep: &Endpoint, _t: StdDuration) -> Result<ServedCert, VerifyError> {
        self.probes.lock().unwrap().push(ep.to_string());
        let Check::ServedCert { cert } = &ep.check else {
            unreachable!()
        };
        let text = std::fs::read(host(&self.root, cert.to_str().unwrap())).unwrap();
        let blocks = cert_rotator::pki::parse_pem(&text).unwrap();
        let c = cert_rotator::pki::certificates(&blocks).unwrap().remove(0);
        let mut first = self.first.lock().unwrap();
        let mut pods = self.pods.lock().unwrap();
        let served = if let Some(pod) = pods.get_mut(&ep.port) {
            if pod.restarted(self.tick()) || std::mem::take(&mut pod.reload) {
                pod.serial = Some(c.serial.clone());
            }
            pod.serial.clone().ok_or_else(|| VerifyError::Connect {
                endpoint: ep.to_string(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            })?
        } else if self.stale_ports.contains(&ep.port) {
            first.entry(ep.port).or_insert(c.serial.clone()).clone()
        } else {
            c.serial.clone()
        };
        Ok(ServedCert {
            serial: served,
            not_after: c.not_after,
            subject: c.subject,
            chain: vec![],
        })
    }
    fn healthy(&self, ep: &Endpoint, _t: StdDuration) -> Result<(), VerifyError> {
        self.probes.lock().unwrap().push(format!("healthz {ep}"));
        Ok(())
    }
    fn ready(&self, ep: &Endpoint, _t: StdDuration) -> Result<Readiness, VerifyError> {
        self.probes.lock().unwrap().push(format!("readyz {ep}"));
        Ok(Readiness::Ready)
    }
    fn restart_mark(&self) -> Option<RestartRequested> {
        // A process's socket inode is its pid: the pods' processes, the old ones.
        let mut listening: std::collections::BTreeSet<u64> = self
            .pods
            .lock()
            .unwrap()
            .values()
            .map(|p| u64::from(p.process.pid))
            .collect();
        listening.extend(self.old_ports.iter().map(|_| 100));
        Some(RestartRequested {
            at: self.tick(),
            listening,
        })
    }
    fn listeners(&self, ep: &Endpoint) -> Listeners {
        let now = self.tick();
        if self.old_ports.contains(&ep.port) {
            return Listeners::Found(vec![Listener {
                inode: 100,
                process: Some(Process {
                    pid: 100,
                    started: 1,
                }),
            }]);
        }
        let mut pods = self.pods.lock().unwrap();
        let Some(pod) = pods.get_mut(&ep.port) else {
            return Listeners::Unknown("not a static pod of the fake".into());
        };
        if pod.restarted(now) {
            pod.reload = true;
        }
        if pod.serial.is_none() && !pod.reload {
            return Listeners::None;
        }
        Listeners::Found(vec![Listener {
            inode: u64::from(pod.process.pid),
            process: Some(pod.process),
        }])
    }
}

// ---------------------------------------------------------------------- clock ---

/// A clock that stands still until told: [`now`](Clock::now) is the instant set,
/// [`sleep`](Clock::sleep) advances it at once (and records how long), so a pass that
/// waits minutes runs in no time.
pub struct FakeClock {
    now: Mutex<OffsetDateTime>,
    slept: Mutex<Vec<StdDuration>>,
}

impl FakeClock {
    pub fn at(now: OffsetDateTime) -> Self {
        FakeClock {
            now: Mutex::new(now),
            slept: Mutex::default(),
        }
    }

    pub fn set(&self, now: OffsetDateTime) {
        *self.now.lock().unwrap() = now;
    }

    pub fn advance(&self, d: time::Duration) {
        *self.now.lock().unwrap() += d;
    }

    /// Every sleep, in order.
    pub fn slept(&self) -> Vec<StdDuration> {
        self.slept.lock().unwrap().clone()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap()
    }

    fn sleep(&self, d: StdDuration) {
        *self.now.lock().unwrap() += d;
        self.slept.lock().unwrap().push(d);
    }
}

// ------------------------------------------------------------- timed prober ---

/// One component's restart as a [`TimedProber`] saw it: from its first probe (the
/// restart was just done) to its last answer (verified).
#[derive(Clone, Debug)]
pub struct Interval {
    pub label: String,
    pub start: std::time::Instant,
    pub end: std::time::Instant,
}

/// An apiserver that loads its certificate when its static pod starts
/// ([`FakeProber::until_restarted`]), whose restart takes `delay`: the first probe
/// after its manifest changed (the restart was just done) takes `delay`, and every
/// answer from then on is logged under `label` into a log shared by several agents:
/// whether their restarts overlapped is read from it ([`TimedProber::intervals`]).
/// Probes before the restart (the pass's probe first) are neither delayed nor logged.
pub struct TimedProber {
    inner: FakeProber,
    label: String,
    delay: StdDuration,
    manifest: PathBuf,
    before: Vec<u8>,
    first: Mutex<bool>,
    log: std::sync::Arc<Mutex<Vec<Interval>>>,
}

impl TimedProber {
    pub fn new(
        root: &Path,
        label: &str,
        delay: StdDuration,
        log: std::sync::Arc<Mutex<Vec<Interval>>>,
    ) -> Self {
        const CERT: &str = "/etc/kubernetes/pki/apiserver.crt";
        const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
        let manifest = host(root, MANIFEST);
        TimedProber {
            inner: FakeProber::until_restarted(root, &[(6443, CERT, MANIFEST)]),
            label: label.to_string(),
            delay,
            before: std::fs::read(&manifest).unwrap(),
            manifest,
            first: Mutex::new(true),
            log,
        }
    }

    /// Per label, from its first probe's start to its last answer, sorted by start.
    pub fn intervals(log: &Mutex<Vec<Interval>>) -> Vec<Interval> {
        let mut by: BTreeMap<String, Interval> = BTreeMap::new();
        for i in log.lock().unwrap().iter() {
            by.entry(i.label.clone())
                .and_modify(|e| {
                    e.start = e.start.min(i.start);
                    e.end = e.end.max(i.end);
                })
                .or_insert_with(|| i.clone());
        }
        let mut v: Vec<Interval> = by.into_values().collect();
        v.sort_by_key(|i| i.start);
        v
    }
}

impl Prober for TimedProber {
    fn served_leaf(&self, ep: &Endpoint, t: StdDuration) -> Result<ServedCert, VerifyError> {
        if std::fs::read(&self.manifest).ok().as_deref() == Some(self.before.as_slice()) {
            return self.inner.served_leaf(ep, t);
        }
        let start = std::time::Instant::now();
        if std::mem::replace(&mut *self.first.lock().unwrap(), false) {
            std::thread::sleep(self.delay);
        }
        let r = self.inner.served_leaf(ep, t);
        self.log.lock().unwrap().push(Interval {
            label: self.label.clone(),
            start,
            end: std::time::Instant::now(),
        });
        r
    }
    fn healthy(&self, ep: &Endpoint, t: StdDuration) -> Result<(), VerifyError> {
        self.inner.healthy(ep, t)
    }
    fn ready(&self, ep: &Endpoint, t: StdDuration) -> Result<Readiness, VerifyError> {
        self.inner.ready(ep, t)
    }
    fn restart_mark(&self) -> Option<RestartRequested> {
        self.inner.restart_mark()
    }
    fn listeners(&self, ep: &Endpoint) -> Listeners {
        self.inner.listeners(ep)
    }
}

// ---------------------------------------------------------------- restart lock ---

/// A restart lock that answers from a script: each `acquire` takes the next answer
/// (`Ok` once the script is empty). Records every call: `acquire GROUP`, `release
/// GROUP`, `keep_failed GROUP: WHY`, `release_stale GROUP`.
pub struct FakeLock {
    pub id: String,
    script: Mutex<std::collections::VecDeque<Option<cert_rotator::coordination::LockError>>>,
    calls: Mutex<Vec<String>>,
}

impl FakeLock {
    /// `script`: `None` grants, `Some(e)` refuses with `e`.
    pub fn new(id: &str, script: Vec<Option<cert_rotator::coordination::LockError>>) -> Self {
        FakeLock {
            id: id.to_string(),
            script: Mutex::new(script.into()),
            calls: Mutex::default(),
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// A busy answer, as a backend gives it.
    pub fn busy(group: &str) -> cert_rotator::coordination::LockError {
        cert_rotator::coordination::LockError::Busy {
            backend: "fake".into(),
            group: group.into(),
            slots: 1,
            holders: vec!["cp-other".into()],
        }
    }

    pub fn unreachable() -> cert_rotator::coordination::LockError {
        cert_rotator::coordination::LockError::Unreachable {
            backend: "fake".into(),
            detail: "connection refused".into(),
        }
    }
}

struct FakeSlot<'l> {
    lock: &'l FakeLock,
    group: String,
}

impl cert_rotator::coordination::HeldSlot for FakeSlot<'_> {
    fn release(self: Box<Self>) -> Result<(), cert_rotator::coordination::LockError> {
        self.lock
            .calls
            .lock()
            .unwrap()
            .push(format!("release {}", self.group));
        Ok(())
    }
    fn keep_failed(
        self: Box<Self>,
        why: &str,
    ) -> Result<(), cert_rotator::coordination::LockError> {
        self.lock
            .calls
            .lock()
            .unwrap()
            .push(format!("keep_failed {}: {why}", self.group));
        Ok(())
    }
}

impl cert_rotator::coordination::RestartLock for FakeLock {
    fn backend(&self) -> String {
        "fake".into()
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn release_stale(
        &self,
        g: &cert_rotator::coordination::LockGroup,
    ) -> Result<(), cert_rotator::coordination::LockError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("release_stale {}", g.name));
        Ok(())
    }
    fn acquire(
        &self,
        g: &cert_rotator::coordination::LockGroup,
        _purpose: &str,
    ) -> Result<
        Box<dyn cert_rotator::coordination::HeldSlot + '_>,
        cert_rotator::coordination::LockError,
    > {
        self.calls
            .lock()
            .unwrap()
            .push(format!("acquire {}", g.name));
        match self.script.lock().unwrap().pop_front().flatten() {
            Some(e) => Err(e),
            None => Ok(Box::new(FakeSlot {
                lock: self,
                group: g.name.clone(),
            })),
        }
    }
}

//! wait_until_served on a clock that only moves when slept on, against scripted probes.

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
    /// `/readyz`: 200 ok, 500 with a failed check, 403, 401.
    Ready,
    NotReady,
    Forbidden,
    Unauthorized,
}

/// Answers from a script, then `last` for ever; records every probe's endpoint and
/// timeout.
struct ScriptedProber {
    script: Mutex<VecDeque<Answer>>,
    last: fn() -> Answer,
    probes: Mutex<Vec<(String, Duration)>>,
    /// What each look at the listeners finds, then `listening_last` for ever.
    listening: Mutex<VecDeque<Listeners>>,
    listening_last: Listeners,
}

impl ScriptedProber {
    fn new(script: Vec<Answer>, last: fn() -> Answer) -> Self {
        ScriptedProber {
            script: Mutex::new(script.into()),
            last,
            probes: Mutex::default(),
            listening: Mutex::default(),
            listening_last: Listeners::Unknown("not scripted".into()),
        }
    }
    fn listening(mut self, script: Vec<Listeners>, last: Listeners) -> Self {
        self.listening = Mutex::new(script.into());
        self.listening_last = last;
        self
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
            Answer::Refused => Err(refused(ep)),
            _ => panic!("not a served-cert probe: {ep}"),
        }
    }
    fn healthy(&self, ep: &Endpoint, t: Duration) -> Result<(), VerifyError> {
        match self.answer(ep, t) {
            Answer::Healthy => Ok(()),
            Answer::Refused => Err(refused(ep)),
            _ => panic!("not a healthz probe: {ep}"),
        }
    }
    fn ready(&self, ep: &Endpoint, t: Duration) -> Result<Readiness, VerifyError> {
        match self.answer(ep, t) {
            Answer::Ready => Ok(Readiness::Ready),
            Answer::NotReady => Err(VerifyError::NotReady {
                endpoint: ep.to_string(),
                message: "answered 500: [-]etcd failed".into(),
            }),
            Answer::Forbidden => Ok(Readiness::Forbidden("answered 403".into())),
            Answer::Unauthorized => Ok(Readiness::NotVisible("answered 401".into())),
            Answer::Refused => Err(refused(ep)),
            _ => panic!("not a readyz probe: {ep}"),
        }
    }
    fn restart_mark(&self) -> Option<RestartRequested> {
        Some(requested())
    }
    fn listeners(&self, ep: &Endpoint) -> Listeners {
        self.probes
            .lock()
            .unwrap()
            .push((format!("listeners {ep}"), Duration::ZERO));
        let next = self.listening.lock().unwrap().pop_front();
        next.unwrap_or_else(|| self.listening_last.clone())
    }
}

/// The restart request of the tests: at 1000 s after boot, the old kube-apiserver's
/// socket (inode 7000) listening.
fn requested() -> RestartRequested {
    RestartRequested {
        at: 100_000,
        listening: [7000].into(),
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
            Answer::Ready,
        ],
        || panic!("no sixth probe"),
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
        [
            format!("kube-apiserver serves serial {want} on 127.0.0.1:6443"),
            "kube-apiserver ready on 127.0.0.1:6443 (/readyz)".into()
        ]
    );
    assert_eq!(clock.slept(), [RETRY_PAUSE; 3]);
    assert_eq!(p.timeouts(), [MAX_PROBE_TIMEOUT; 5]);
}

/// kube-apiserver serves its new certificate before it is ready: verified once its
/// local endpoint's /readyz says ok, within the same deadline.
#[test]
fn the_apiserver_is_verified_once_ready() {
    let (_d, r, want) = node();
    let clock = StepClock::new();
    let script = |ready: Vec<Answer>| {
        let mut v = vec![Answer::Serial(want.clone()), Answer::Serial(want.clone())];
        v.extend(ready);
        v
    };
    let eps = [api("10.0.0.10"), api("127.0.0.1")];
    let verify = |p: &ScriptedProber, secs| {
        wait_until_served(
            p,
            &clock,
            &r,
            &Component::KubeApiserver,
            &eps,
            Duration::from_secs(secs),
        )
    };
    // Refused, then 500 (a readyz check failed), a startup 403, then ok: ready.
    let p = ScriptedProber::new(
        script(vec![
            Answer::Refused,
            Answer::NotReady,
            Answer::Forbidden,
            Answer::Ready,
        ]),
        || panic!("no more probes"),
    );
    let lines = verify(&p, 60).unwrap();
    assert_eq!(lines[2], "kube-apiserver ready on 127.0.0.1:6443 (/readyz)");
    let probed: Vec<String> = p
        .probes
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.0.clone())
        .collect();
    assert_eq!(probed[2..], ["127.0.0.1:6443"; 4]);
    // Never ready: not verified, with the last answer.
    let p = ScriptedProber::new(script(vec![]), || Answer::NotReady);
    let e = verify(&p, 5).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not verified within 5s: https://127.0.0.1:6443/readyz: answered 500: [-]etcd failed"
    );
    // 401 (anonymous auth off): serving is all that can be verified, at once.
    let p = ScriptedProber::new(script(vec![Answer::Unauthorized]), || {
        panic!("no more probes")
    });
    assert_eq!(
        verify(&p, 60).unwrap()[2],
        "kube-apiserver readiness not visible on 127.0.0.1:6443 (answered 401): serving verified only"
    );
    // 403 for longer than the grace: taken for "not visible" after 10 s, not the
    // whole timeout.
    let start = clock.now();
    let p = ScriptedProber::new(script(vec![]), || Answer::Forbidden);
    assert_eq!(
        verify(&p, 60).unwrap()[2],
        "kube-apiserver readiness not visible on 127.0.0.1:6443 (answered 403): serving verified only"
    );
    assert_eq!(clock.now() - start, time::Duration::seconds(10));
    // Other components have no /readyz probe.
    let p = ScriptedProber::new(vec![Answer::Healthy], || panic!("no readyz probe"));
    assert_eq!(
        wait_until_served(
            &p,
            &clock,
            &r,
            &Component::KubeScheduler,
            &[Endpoint::healthz(10259)],
            Duration::from_secs(10),
        )
        .unwrap()
        .len(),
        1
    );
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
        format!("not verified within 2s: 127.0.0.1:6443 still serves serial 1234 (want {want})")
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

// ------------------------------------------- which process answers after a restart ---

fn pid(pid: u32, started: u64) -> Listeners {
    Listeners::Found(vec![Listener {
        inode: u64::from(pid) * 100,
        process: Some(Process { pid, started }),
    }])
}

/// The kube-apiserver of before the restart: started long before the request.
fn old_apiserver() -> Listeners {
    pid(70, 5_000)
}

fn verify_restart(p: &ScriptedProber, r: &NodeRoot, secs: u64) -> Result<Vec<String>, VerifyError> {
    wait_until_served_by(
        p,
        &StepClock::new(),
        r,
        &Component::KubeApiserver,
        &[api("127.0.0.1")],
        Duration::from_secs(secs),
        Some(&requested()),
    )
}

/// The old kube-apiserver keeps serving, with the renewed certificate (it reloads it by
/// itself) and ready, until it is stopped: its answers do not count; the new process's do.
#[test]
fn answers_of_the_process_of_before_the_restart_do_not_count() {
    let (_d, r, want) = node();
    let p = ScriptedProber::new(vec![], || Answer::Ready)
        .listening(vec![old_apiserver(), old_apiserver()], pid(91, 100_125));
    // Every probe would pass; the old process must not be asked.
    let mut p = p;
    p.script = Mutex::new(vec![Answer::Serial(want.clone())].into());
    let lines = verify_restart(&p, &r, 60).unwrap();
    assert_eq!(
        lines,
        [
            format!("kube-apiserver serves serial {want} on 127.0.0.1:6443, answered by pid 91 (started 1.25s after the restart request)"),
            "kube-apiserver ready on 127.0.0.1:6443 (/readyz), answered by pid 91 (started 1.25s after the restart request)".into()
        ]
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
            "listeners 127.0.0.1:6443",
            "listeners 127.0.0.1:6443",
            "listeners 127.0.0.1:6443",
            "127.0.0.1:6443",
            "listeners 127.0.0.1:6443",
            "127.0.0.1:6443"
        ]
    );
}

/// The case the process check exists for: the new kube-apiserver never comes up (a bad
/// etcd client certificate, say) while the old one served the new certificate and was
/// ready until it was stopped. Before, the old one passed the verification; now it fails.
#[test]
fn a_new_process_that_never_comes_up_fails_the_verification() {
    let (_d, r, want) = node();
    let p = ScriptedProber::new(vec![], || Answer::Refused)
        .listening(vec![old_apiserver(), old_apiserver()], Listeners::None);
    let mut p = p;
    p.last = || Answer::Refused;
    let e = verify_restart(&p, &r, 5).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("not verified within 5s: cannot connect to 127.0.0.1:6443"),
        "{e}"
    );
    // The old process for ever (the kubelet never restarted the pod): named in the error.
    let p = ScriptedProber::new(vec![Answer::Serial(want.clone())], || Answer::Ready)
        .listening(vec![], old_apiserver());
    assert_eq!(
        verify_restart(&p, &r, 5).unwrap_err().to_string(),
        "not verified within 5s: 127.0.0.1:6443 is still answered by pid 70, which was there before the restart was requested"
    );
    // Where processes are not visible (the packaged unit's ProtectProc): the socket of
    // before the request does not count, a socket opened since does.
    let socket = |inode| {
        Listeners::Found(vec![Listener {
            inode,
            process: None,
        }])
    };
    let p = ScriptedProber::new(vec![Answer::Serial(want.clone()), Answer::Ready], || {
        panic!("no more probes")
    })
    .listening(vec![socket(7000), socket(7000)], socket(7001));
    assert_eq!(
        verify_restart(&p, &r, 60).unwrap()[1],
        "kube-apiserver ready on 127.0.0.1:6443 (/readyz), answered by a socket opened after the restart request (inode 7001; its process not visible here)"
    );
    let p = ScriptedProber::new(vec![], || Answer::Ready).listening(vec![], socket(7000));
    assert_eq!(
        verify_restart(&p, &r, 5).unwrap_err().to_string(),
        "not verified within 5s: 127.0.0.1:6443 is still answered by the socket inode 7000 (its process not visible here), which was there before the restart was requested"
    );
}

/// Where the listener cannot be told, verification does as before the process check and
/// says so; a listener that appears during the probe is looked at again.
#[test]
fn an_unidentified_listener_falls_back_to_serving_and_ready() {
    let (_d, r, want) = node();
    let serving = || vec![Answer::Serial(want.clone()), Answer::Ready];
    let p = ScriptedProber::new(serving(), || panic!("no more probes"))
        .listening(vec![], Listeners::Unknown("no proc".into()));
    assert_eq!(
        verify_restart(&p, &r, 60).unwrap()[1],
        "kube-apiserver ready on 127.0.0.1:6443 (/readyz) (answering process not identified: no proc)"
    );
    // Nothing of this host listens, before and after a passing probe: served elsewhere.
    let p = ScriptedProber::new(serving(), || panic!("no more probes"))
        .listening(vec![], Listeners::None);
    assert_eq!(
        verify_restart(&p, &r, 60).unwrap()[0],
        format!("kube-apiserver serves serial {want} on 127.0.0.1:6443 (answering process not identified: nothing on this host listens on port 6443)")
    );
    // Nothing listened before the probe, a new process after it: tried again.
    let mut script = serving();
    script.insert(0, Answer::Serial(want.clone()));
    let p = ScriptedProber::new(script, || panic!("no more probes"))
        .listening(vec![Listeners::None], pid(92, 100_001));
    let lines = verify_restart(&p, &r, 60).unwrap();
    assert!(
        lines[0].ends_with("answered by pid 92 (started 0.01s after the restart request)"),
        "{lines:?}"
    );
    // Without a restart request, no listener is looked at.
    let p = ScriptedProber::new(serving(), || panic!("no more probes"));
    wait_until_served(
        &p,
        &StepClock::new(),
        &r,
        &Component::KubeApiserver,
        &[api("127.0.0.1")],
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(p
        .probes
        .lock()
        .unwrap()
        .iter()
        .all(|p| !p.0.starts_with("listeners")));
}

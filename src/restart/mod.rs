//! Restarting what must reload a renewed certificate: the edges of the `run` pass that
//! touch the running system.
//!
//! Two ways a component reloads:
//!
//! - **systemd units** (the kubelet, configured units): [`ServiceManager::restart_unit`],
//!   whose one real implementation [`SystemdManager`] talks to systemd over the system
//!   D-Bus and waits for the restart job's result, then for the unit to be active again,
//!   and returns the unit's new InvocationID as proof of a new run;
//! - **static pods** (kube-apiserver, etcd, controller-manager, scheduler): the kubelet
//!   recreates a static pod only when its manifest's *content* changes, so
//!   [`static_pod_change`] computes the manifest with a `cert-rotator.k8s.io/certs-hash`
//!   annotation set, as a [`FileChange`] for the crash-safe writer.
//!
//! [`RecordingServiceManager`] is a test double of the [`ServiceManager`] seam for the
//! unit tests of the orchestration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zbus::proxy;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::node::NodeRoot;
use crate::write::{FileChange, NewContent};

/// The annotation whose value changes when a static pod's certificates changed.
pub const CERTS_HASH_ANNOTATION: &str = "cert-rotator.k8s.io/certs-hash";

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("cannot reach systemd on the system D-Bus: {0}")]
    Connect(#[source] Box<zbus::Error>),
    #[error("{unit}: no such unit")]
    NoSuchUnit { unit: String },
    #[error("{unit}: systemd call {call} failed: {source}")]
    Bus {
        unit: String,
        call: &'static str,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("{unit}: restart job ended with result \"{result}\" (unit is now {state})")]
    JobFailed {
        unit: String,
        result: String,
        /// `ActiveState/SubState` after the job, for the operator.
        state: String,
    },
    #[error("{unit}: restart job {job} did not finish within {timeout:?} (systemd may still be running it)")]
    Timeout {
        unit: String,
        job: String,
        timeout: Duration,
    },
    #[error("{unit}: lost the D-Bus connection while waiting for restart job {job}")]
    Disconnected { unit: String, job: String },
    #[error("{unit}: restart job done but the unit is {state}, not active, after {waited:?}")]
    NotActive {
        unit: String,
        state: String,
        waited: Duration,
    },
    #[error("{unit}: restart job done but the InvocationID is still {invocation_id}: no new run")]
    SameInvocation { unit: String, invocation_id: String },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot set the {CERTS_HASH_ANNOTATION} annotation: {message}")]
    Manifest { path: PathBuf, message: String },
}

/// What a unit is doing, as systemd says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitState {
    pub unit: String,
    /// `loaded`, `not-found`, `masked`, ...
    pub load_state: String,
    /// `active`, `activating`, `failed`, `inactive`, ...
    pub active_state: String,
    pub sub_state: String,
    /// Lower-case hex of the 128-bit InvocationID; `None` when the unit never ran since
    /// systemd loaded it (systemd reports an empty ID then).
    pub invocation_id: Option<String>,
}

impl UnitState {
    fn describe(&self) -> String {
        format!("{}/{}", self.active_state, self.sub_state)
    }
}

/// A finished, successful restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitRestart {
    pub unit: String,
    /// The job's object path, as systemd named it.
    pub job: String,
    /// Always `done` here: any other result is a [`RestartError::JobFailed`].
    pub result: String,
    pub previous_invocation_id: Option<String>,
    /// The new run's InvocationID (lower-case hex): differs from the previous one.
    pub invocation_id: String,
}

/// The service manager seam: restart a unit and wait until it runs again.
pub trait ServiceManager {
    /// Restarts `unit` (`kubelet.service`) and waits, at most `timeout` in all, for the
    /// restart job to succeed and the unit to be active in a new run.
    fn restart_unit(&self, unit: &str, timeout: Duration) -> Result<UnitRestart, RestartError>;
    /// The unit's current state and InvocationID; [`RestartError::NoSuchUnit`] when
    /// systemd has no such unit.
    fn unit_state(&self, unit: &str) -> Result<UnitState, RestartError>;
}

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_async = false,
    blocking_name = "ManagerProxyBlocking"
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Unlike GetUnit, also answers for a unit that is not loaded (inactive units are
    /// unloaded by systemd's garbage collection), with LoadState `not-found` for one
    /// that does not exist.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_async = false,
    blocking_name = "UnitProxyBlocking"
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property, name = "InvocationID")]
    fn invocation_id(&self) -> zbus::Result<Vec<u8>>;
}

/// One JobRemoved signal, owned, as the listener thread forwards it.
struct JobEnded {
    job: String,
    result: String,
}

/// systemd over the system D-Bus (zbus's blocking API).
pub struct SystemdManager {
    conn: zbus::blocking::Connection,
    manager: ManagerProxyBlocking<'static>,
    /// JobRemoved signals, forwarded by a listener thread. The blocking signal iterator
    /// has no timeout, so it lives on its own thread and the waiting side uses
    /// `recv_timeout`. The thread ends at the first signal after this manager is dropped.
    jobs: Mutex<Receiver<JobEnded>>,
}

impl SystemdManager {
    /// Connects to the system bus and subscribes to systemd's job signals.
    pub fn connect() -> Result<Self, RestartError> {
        let conn = zbus::blocking::connection::Builder::system()
            .map_err(connect_err)?
            // A systemd busy with a job storm still answers within this; a hung one
            // must not hang the pass.
            .method_timeout(Duration::from_secs(30))
            .build()
            .map_err(connect_err)?;
        let manager = ManagerProxyBlocking::new(&conn).map_err(connect_err)?;
        // The match rule is in place once this returns: every JobRemoved from now on is
        // queued, so a job finishing right after RestartUnit replies cannot be missed.
        let signals = manager.receive_job_removed().map_err(connect_err)?;
        // systemd emits job signals only to clients that subscribed.
        manager.subscribe().map_err(connect_err)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("systemd-job-signals".into())
            .spawn(move || {
                for signal in signals {
                    let Ok(args) = signal.args() else { continue };
                    let job = JobEnded {
                        job: args.job.to_string(),
                        result: args.result.to_string(),
                    };
                    if tx.send(job).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| connect_err(zbus::Error::InputOutput(e.into())))?;
        Ok(SystemdManager {
            conn,
            manager,
            jobs: Mutex::new(rx),
        })
    }

    fn unit_proxy(
        &self,
        unit: &str,
        path: OwnedObjectPath,
    ) -> Result<UnitProxyBlocking<'static>, RestartError> {
        UnitProxyBlocking::builder(&self.conn)
            .path(path)
            .and_then(|b| {
                // Always read fresh values: a cached ActiveState would hide the restart.
                b.cache_properties(zbus::proxy::CacheProperties::No).build()
            })
            .map_err(|source| RestartError::Bus {
                unit: unit.to_string(),
                call: "Unit proxy",
                source: Box::new(source),
            })
    }

    fn wait_for_job(
        &self,
        unit: &str,
        job: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<String, RestartError> {
        let rx = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) if j.job == job => return Ok(j.result),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(RestartError::Timeout {
                        unit: unit.to_string(),
                        job: job.to_string(),
                        timeout,
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(RestartError::Disconnected {
                        unit: unit.to_string(),
                        job: job.to_string(),
                    })
                }
            }
        }
    }
}

fn connect_err(e: zbus::Error) -> RestartError {
    RestartError::Connect(Box::new(e))
}

fn bus_err<'a>(unit: &'a str, call: &'static str) -> impl FnOnce(zbus::Error) -> RestartError + 'a {
    move |source| {
        if let zbus::Error::MethodError(name, _, _) = &source {
            if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" {
                return RestartError::NoSuchUnit {
                    unit: unit.to_string(),
                };
            }
        }
        RestartError::Bus {
            unit: unit.to_string(),
            call,
            source: Box::new(source),
        }
    }
}

impl ServiceManager for SystemdManager {
    fn restart_unit(&self, unit: &str, timeout: Duration) -> Result<UnitRestart, RestartError> {
        let deadline = Instant::now() + timeout;
        let before = self.unit_state(unit)?;
        {
            // Signals of earlier jobs are of no interest; dropping them keeps the queue
            // short. Our job's signal can only come after the call below.
            let rx = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            while rx.try_recv().is_ok() {}
        }
        let job = self
            .manager
            .restart_unit(unit, "replace")
            .map_err(bus_err(unit, "RestartUnit"))?
            .to_string();
        tracing::debug!(unit, job, "restart job queued");
        let result = self.wait_for_job(unit, &job, deadline, timeout)?;
        if result != "done" {
            let state = self
                .unit_state(unit)
                .map(|s| s.describe())
                .unwrap_or_else(|e| format!("unknown ({e})"));
            return Err(RestartError::JobFailed {
                unit: unit.to_string(),
                result,
                state,
            });
        }
        // The job is done when the unit reached its started state for its Type (at once
        // for Type=simple), so this loop rarely waits; it guards against a unit that
        // went away again before we looked.
        let started = Instant::now();
        let after = loop {
            let s = self.unit_state(unit)?;
            if s.active_state == "active" {
                break s;
            }
            if Instant::now() >= deadline {
                return Err(RestartError::NotActive {
                    unit: unit.to_string(),
                    state: s.describe(),
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(
                Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())),
            );
        };
        let invocation_id = after.invocation_id.unwrap_or_default();
        if invocation_id.is_empty() || Some(&invocation_id) == before.invocation_id.as_ref() {
            return Err(RestartError::SameInvocation {
                unit: unit.to_string(),
                invocation_id,
            });
        }
        Ok(UnitRestart {
            unit: unit.to_string(),
            job,
            result,
            previous_invocation_id: before.invocation_id,
            invocation_id,
        })
    }

    fn unit_state(&self, unit: &str) -> Result<UnitState, RestartError> {
        let path = self
            .manager
            .load_unit(unit)
            .map_err(bus_err(unit, "LoadUnit"))?;
        let p = self.unit_proxy(unit, path)?;
        let load_state = p.load_state().map_err(bus_err(unit, "LoadState"))?;
        if load_state == "not-found" {
            return Err(RestartError::NoSuchUnit {
                unit: unit.to_string(),
            });
        }
        let id = p.invocation_id().map_err(bus_err(unit, "InvocationID"))?;
        Ok(UnitState {
            unit: unit.to_string(),
            load_state,
            active_state: p.active_state().map_err(bus_err(unit, "ActiveState"))?,
            sub_state: p.sub_state().map_err(bus_err(unit, "SubState"))?,
            invocation_id: invocation_hex(&id),
        })
    }
}

/// systemd's InvocationID as `systemctl show` prints it; all zeros or empty means none.
fn invocation_hex(id: &[u8]) -> Option<String> {
    if id.iter().all(|b| *b == 0) {
        return None;
    }
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

// ------------------------------------------------------------------ test double ---

/// One call a [`RecordingServiceManager`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordedCall {
    Restart { unit: String, timeout: Duration },
    State { unit: String },
}

/// TEST DOUBLE of the [`ServiceManager`] seam, for the orchestration's unit tests: it
/// records every call and restarts nothing. Each successful restart hands out a new
/// fake InvocationID; [`fail_unit`](Self::fail_unit) makes a unit's restart job fail.
/// Never use it outside tests.
#[derive(Default)]
pub struct RecordingServiceManager {
    calls: Mutex<Vec<RecordedCall>>,
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
            .unwrap_or_else(|p| p.into_inner())
            .insert(unit.to_string(), result.to_string());
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The units restarted (successfully or not), in call order.
    pub fn restarted(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                RecordedCall::Restart { unit, .. } => Some(unit),
                RecordedCall::State { .. } => None,
            })
            .collect()
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
    fn restart_unit(&self, unit: &str, timeout: Duration) -> Result<UnitRestart, RestartError> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedCall::Restart {
                unit: unit.to_string(),
                timeout,
            });
        if let Some(result) = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(unit)
        {
            return Err(RestartError::JobFailed {
                unit: unit.to_string(),
                result: result.clone(),
                state: "failed/failed".into(),
            });
        }
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
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

    fn unit_state(&self, unit: &str) -> Result<UnitState, RestartError> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedCall::State {
                unit: unit.to_string(),
            });
        let run = *self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(unit)
            .unwrap_or(&1);
        Ok(UnitState {
            unit: unit.to_string(),
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            invocation_id: Self::fake_id(unit, run),
        })
    }
}

// -------------------------------------------------------------------- static pods ---

/// A short stable digest of the serials a static pod serves and uses: the first 16 hex
/// digits of the SHA-256 of the sorted, de-duplicated serials. Order-independent, so
/// the same set of certificates always gives the same annotation.
pub fn certs_hash(serials: &[String]) -> String {
    let mut s: Vec<&str> = serials.iter().map(|s| s.as_str()).collect();
    s.sort_unstable();
    s.dedup();
    let d = ring::digest::digest(&ring::digest::SHA256, s.join("\n").as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The new content of a static pod's manifest (a node path) with
/// `metadata.annotations["cert-rotator.k8s.io/certs-hash"]` set to `annotation_value`,
/// every other byte unchanged. The kubelet recreates a static pod only when its
/// manifest's content changes (a touch does nothing), and an annotation is the one
/// change that alters nothing else about the pod.
///
/// The change is staged outside the manifests directory (`stage_outside`): the kubelet
/// would run a temp file there as a pod. When the manifest already carries this value
/// the content is unchanged and the kubelet will not restart the pod.
pub fn static_pod_change(
    root: &NodeRoot,
    manifest: &Path,
    annotation_value: &str,
) -> Result<FileChange, RestartError> {
    let bytes = root.read(manifest).map_err(|source| RestartError::Io {
        path: manifest.to_path_buf(),
        action: "reading the static pod manifest",
        source,
    })?;
    let merr = |message: String| RestartError::Manifest {
        path: manifest.to_path_buf(),
        message,
    };
    let text = String::from_utf8(bytes).map_err(|_| merr("not UTF-8 text".into()))?;
    let new = set_annotation(&text, CERTS_HASH_ANNOTATION, annotation_value).map_err(merr)?;
    check_only_annotation_changed(&text, &new, CERTS_HASH_ANNOTATION, annotation_value)
        .map_err(merr)?;
    Ok(FileChange {
        path: manifest.to_path_buf(),
        content: NewContent::File(new.into_bytes()),
        mode: 0o600,
        secret: false,
        stage_outside: true,
        staged_name: None,
    })
}

/// The manifest's current `cert-rotator.k8s.io/certs-hash` annotation, if any.
pub fn current_certs_hash(
    root: &NodeRoot,
    manifest: &Path,
) -> Result<Option<String>, RestartError> {
    let bytes = root.read(manifest).map_err(|source| RestartError::Io {
        path: manifest.to_path_buf(),
        action: "reading the static pod manifest",
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let v = parse_yaml(&text).map_err(|message| RestartError::Manifest {
        path: manifest.to_path_buf(),
        message,
    })?;
    Ok(v.pointer(&annotation_pointer(CERTS_HASH_ANNOTATION))
        .and_then(|v| v.as_str())
        .map(str::to_string))
}

fn annotation_pointer(key: &str) -> String {
    // JSON pointer escaping: `/` in the key is `~1`.
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

fn parse_yaml(text: &str) -> Result<serde_json::Value, String> {
    serde_saphyr::from_str::<serde_json::Value>(text).map_err(|e| format!("not valid YAML: {e}"))
}

/// Re-parses both versions: the new one must be the old one plus our annotation, nothing
/// else. This is what makes the line-based edit below safe: whatever YAML it did not
/// foresee ends here as an error instead of a changed pod.
fn check_only_annotation_changed(
    old: &str,
    new: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let mut want = parse_yaml(old)?;
    let got = parse_yaml(new).map_err(|e| format!("the edited manifest is {e}"))?;
    let meta = want
        .get_mut("metadata")
        .and_then(|m| m.as_object_mut())
        .ok_or("no metadata mapping")?;
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    if ann.is_null() {
        *ann = serde_json::Value::Object(Default::default());
    }
    ann.as_object_mut()
        .ok_or("metadata.annotations is not a mapping")?
        .insert(
            key.to_string(),
            serde_json::Value::String(value.to_string()),
        );
    if got != want {
        return Err("the edit would change more than the annotation (unusual YAML layout); edit the manifest by hand".into());
    }
    Ok(())
}

/// A YAML double-quoted scalar.
fn quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// One line of the manifest, with its line ending kept apart.
struct Line<'a> {
    text: &'a str,
    eol: &'a str,
}

impl Line<'_> {
    fn indent(&self) -> usize {
        self.text.len() - self.text.trim_start_matches(' ').len()
    }
    /// Blank and comment-only lines do not end or start a block.
    fn is_content(&self) -> bool {
        let t = self.text.trim();
        !t.is_empty() && !t.starts_with('#')
    }
    /// The mapping key of a `key: value` line and the text after its colon.
    fn key_value(&self) -> Option<(String, &str)> {
        let t = self.text.trim_start_matches(' ');
        let (key, rest) = if let Some(q @ ('"' | '\'')) = t.chars().next() {
            let end = t[1..].find(q)? + 1;
            (t[1..end].to_string(), &t[end + 1..])
        } else {
            let colon = t
                .find(": ")
                .or_else(|| t.strip_suffix(':').map(|s| s.len()))?;
            (t[..colon].trim_end().to_string(), &t[colon..])
        };
        let rest = rest.trim_start_matches(' ').strip_prefix(':')?;
        Some((key, rest))
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .map(|l| {
            let body = l.strip_suffix('\n').unwrap_or(l);
            let body = body.strip_suffix('\r').unwrap_or(body);
            Line {
                text: body,
                eol: &l[body.len()..],
            }
        })
        .collect()
}

/// Does the text after a key's colon open a block (nothing but maybe a comment)?
fn block_start(rest: &str) -> bool {
    let t = rest.trim();
    t.is_empty() || t.starts_with('#')
}

/// Is the text after a key's colon an empty value (`annotations:` with nothing under
/// it, `{}`, `null`, `~`), possibly followed by a comment?
fn empty_value(rest: &str) -> Option<&str> {
    let t = rest.trim();
    for empty in ["{}", "null", "~", ""] {
        if let Some(after) = t.strip_prefix(empty) {
            let after = after.trim();
            if after.is_empty() || after.starts_with('#') {
                return Some(after);
            }
        }
    }
    None
}

/// Sets `metadata.annotations[key]` in a pod manifest's text, touching only the lines
/// it must: the kubeadm layout (block mappings, two-space steps) and the obvious
/// variants; [`check_only_annotation_changed`] rejects anything it got wrong.
fn set_annotation(text: &str, key: &str, value: &str) -> Result<String, String> {
    let ls = lines(text);
    let entry =
        |indent: usize, eol: &str| format!("{}{key}: {}{eol}", " ".repeat(indent), quote(value));
    let meta = ls
        .iter()
        .position(|l| {
            l.indent() == 0
                && l.key_value()
                    .is_some_and(|(k, r)| k == "metadata" && block_start(r))
        })
        .ok_or("no top-level `metadata:` block mapping")?;
    let eol = if ls[meta].eol.is_empty() {
        "\n"
    } else {
        ls[meta].eol
    };
    // metadata's children: the lines up to the next top-level content line.
    let end = (meta + 1..ls.len())
        .find(|&i| ls[i].is_content() && ls[i].indent() == 0)
        .unwrap_or(ls.len());
    let child_indent = (meta + 1..end)
        .find(|&i| ls[i].is_content())
        .map(|i| ls[i].indent())
        .ok_or("metadata is empty")?;
    let ann = (meta + 1..end).find(|&i| {
        ls[i].indent() == child_indent && ls[i].key_value().is_some_and(|(k, _)| k == "annotations")
    });
    let mut out: Vec<String> = ls.iter().map(|l| format!("{}{}", l.text, l.eol)).collect();
    let Some(ann) = ann else {
        // kube-controller-manager.yaml and kube-scheduler.yaml from kubeadm.
        out.insert(
            meta + 1,
            format!(
                "{}annotations:{eol}{}",
                " ".repeat(child_indent),
                entry(2 * child_indent, eol)
            ),
        );
        return Ok(out.concat());
    };
    let (_, rest) = ls[ann].key_value().ok_or("unreadable annotations line")?;
    let ann_eol = if ls[ann].eol.is_empty() {
        eol
    } else {
        ls[ann].eol
    };
    let block_end = (ann + 1..end)
        .find(|&i| ls[i].is_content() && ls[i].indent() <= child_indent)
        .unwrap_or(end);
    let entries: Vec<usize> = (ann + 1..block_end)
        .filter(|&i| ls[i].is_content())
        .collect();
    if entries.is_empty() {
        let Some(comment) = empty_value(rest) else {
            let t = rest.trim();
            if let Some(inner) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                // A one-line flow mapping: append our entry inside the braces.
                if inner.contains(key) {
                    return Err("our key is already in a flow-style annotations mapping; rewrite it as a block mapping".into());
                }
                let pos = ls[ann].text.rfind('}').ok_or("unreadable flow mapping")?;
                let line = ls[ann].text;
                out[ann] = format!(
                    "{}, {key}: {}{}{ann_eol}",
                    line[..pos].trim_end(),
                    quote(value),
                    &line[pos..]
                );
                return Ok(out.concat());
            }
            return Err(format!(
                "metadata.annotations is neither a mapping nor empty: {t}"
            ));
        };
        let comment = if comment.is_empty() {
            String::new()
        } else {
            format!(" {comment}")
        };
        out[ann] = format!(
            "{}annotations:{comment}{ann_eol}{}",
            " ".repeat(child_indent),
            entry(2 * child_indent, ann_eol)
        );
        return Ok(out.concat());
    }
    if !block_start(rest) {
        return Err("metadata.annotations has both an inline value and entries".into());
    }
    let entry_indent = ls[entries[0]].indent();
    let ours = entries.iter().copied().find(|&i| {
        ls[i].indent() == entry_indent && ls[i].key_value().is_some_and(|(k, _)| k == key)
    });
    match ours {
        Some(i) => {
            // Replace our entry and any continuation lines of a multi-line value.
            let next = entries
                .iter()
                .copied()
                .find(|&j| j > i && ls[j].indent() <= entry_indent)
                .unwrap_or(block_end);
            let last = (i..next).rev().find(|&j| ls[j].is_content()).unwrap_or(i);
            let line_eol = if ls[i].eol.is_empty() { eol } else { ls[i].eol };
            let mut replaced = entry(entry_indent, line_eol);
            if ls[last].eol.is_empty() {
                // The file ended without a newline: keep it that way.
                replaced.truncate(replaced.len() - line_eol.len());
            }
            out.splice(i..=last, [replaced]);
        }
        None => {
            let last = *entries.last().ok_or("no annotation entries")?;
            let line_eol = if ls[last].eol.is_empty() {
                eol
            } else {
                ls[last].eol
            };
            if ls[last].eol.is_empty() {
                out[last].push_str(line_eol);
            }
            out.insert(last + 1, entry(entry_indent, line_eol));
        }
    }
    Ok(out.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, NodeSpec};

    fn node() -> (tempfile::TempDir, NodeRoot) {
        let d = tempfile::tempdir().unwrap();
        fixture::build(
            d.path(),
            &NodeSpec::control_plane(time::OffsetDateTime::now_utc()),
        )
        .unwrap();
        let r = NodeRoot::new(d.path());
        (d, r)
    }

    fn manifest(name: &str) -> PathBuf {
        PathBuf::from(format!("/etc/kubernetes/manifests/{name}.yaml"))
    }

    fn content(c: &FileChange) -> String {
        match &c.content {
            NewContent::File(b) => String::from_utf8(b.clone()).unwrap(),
            NewContent::Symlink(_) => panic!("not a file"),
        }
    }

    /// The lines of `new` that are not in `old`, and the other way round (a line diff
    /// good enough for insertions and one-line replacements).
    fn diff(old: &str, new: &str) -> (Vec<String>, Vec<String>) {
        let o: Vec<&str> = old.split_inclusive('\n').collect();
        let n: Vec<&str> = new.split_inclusive('\n').collect();
        let mut p = 0;
        while p < o.len() && p < n.len() && o[p] == n[p] {
            p += 1;
        }
        let mut s = 0;
        while s < o.len() - p && s < n.len() - p && o[o.len() - 1 - s] == n[n.len() - 1 - s] {
            s += 1;
        }
        (
            n[p..n.len() - s].iter().map(|l| l.to_string()).collect(),
            o[p..o.len() - s].iter().map(|l| l.to_string()).collect(),
        )
    }

    #[test]
    fn apiserver_and_etcd_get_our_key_last_in_their_annotations() {
        let (_d, r) = node();
        for (name, before) in [
            ("kube-apiserver", "    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.10:6443\n"),
            ("etcd", "    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.10:2379\n"),
        ] {
            let old = String::from_utf8(r.read(&manifest(name)).unwrap()).unwrap();
            let c = static_pod_change(&r, &manifest(name), "0123456789abcdef").unwrap();
            assert!(c.stage_outside);
            assert_eq!(c.path, manifest(name));
            let new = content(&c);
            let (added, removed) = diff(&old, &new);
            assert!(removed.is_empty(), "{name}: {removed:?}");
            assert_eq!(added, ["    cert-rotator.k8s.io/certs-hash: \"0123456789abcdef\"\n"], "{name}");
            assert!(new.contains(&format!("{before}    cert-rotator.k8s.io/certs-hash")), "{new}");
        }
    }

    #[test]
    fn controller_manager_and_scheduler_get_an_annotations_block() {
        let (_d, r) = node();
        for name in ["kube-controller-manager", "kube-scheduler"] {
            let old = String::from_utf8(r.read(&manifest(name)).unwrap()).unwrap();
            let new = content(&static_pod_change(&r, &manifest(name), "aa").unwrap());
            let (added, removed) = diff(&old, &new);
            assert!(removed.is_empty());
            assert_eq!(
                added,
                [
                    "  annotations:\n",
                    "    cert-rotator.k8s.io/certs-hash: \"aa\"\n"
                ]
            );
            assert!(new.contains("metadata:\n  annotations:\n    cert-rotator"));
        }
    }

    #[test]
    fn an_existing_value_is_replaced_in_place_and_read_back() {
        let (_d, r) = node();
        let m = manifest("kube-apiserver");
        let first = content(&static_pod_change(&r, &m, "1111").unwrap());
        std::fs::write(r.host(&m), &first).unwrap();
        assert_eq!(current_certs_hash(&r, &m).unwrap().as_deref(), Some("1111"));
        let second = content(&static_pod_change(&r, &m, "2222").unwrap());
        let (added, removed) = diff(&first, &second);
        assert_eq!(added, ["    cert-rotator.k8s.io/certs-hash: \"2222\"\n"]);
        assert_eq!(removed, ["    cert-rotator.k8s.io/certs-hash: \"1111\"\n"]);
        assert_eq!(second.len(), first.len());
        // Same value again: nothing changes.
        std::fs::write(r.host(&m), &second).unwrap();
        assert_eq!(content(&static_pod_change(&r, &m, "2222").unwrap()), second);
        assert_eq!(
            current_certs_hash(&r, &manifest("kube-scheduler")).unwrap(),
            None
        );
    }

    #[test]
    fn flow_style_and_odd_layouts() {
        let base = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  annotations: {}\nspec:\n  containers: []\n";
        let got = set_annotation(base, CERTS_HASH_ANNOTATION, "v").unwrap();
        assert_eq!(
            got,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  annotations:\n    cert-rotator.k8s.io/certs-hash: \"v\"\nspec:\n  containers: []\n"
        );
        check_only_annotation_changed(base, &got, CERTS_HASH_ANNOTATION, "v").unwrap();

        let flow = "metadata:\n  annotations: {a: b}\n  name: x\n";
        let got = set_annotation(flow, CERTS_HASH_ANNOTATION, "v").unwrap();
        assert_eq!(
            got,
            "metadata:\n  annotations: {a: b, cert-rotator.k8s.io/certs-hash: \"v\"}\n  name: x\n"
        );
        check_only_annotation_changed(flow, &got, CERTS_HASH_ANNOTATION, "v").unwrap();

        // Four-space indentation, CRLF line endings, a comment, no final newline.
        let crlf =
            "metadata:\r\n    # the pod\r\n    annotations:\r\n        a: \"b\"\r\n    name: x";
        let got = set_annotation(crlf, CERTS_HASH_ANNOTATION, "v").unwrap();
        assert_eq!(
            got,
            "metadata:\r\n    # the pod\r\n    annotations:\r\n        a: \"b\"\r\n        cert-rotator.k8s.io/certs-hash: \"v\"\r\n    name: x"
        );
        check_only_annotation_changed(crlf, &got, CERTS_HASH_ANNOTATION, "v").unwrap();

        let last = "metadata:\n  annotations:\n    cert-rotator.k8s.io/certs-hash: old";
        let got = set_annotation(last, CERTS_HASH_ANNOTATION, "new").unwrap();
        assert_eq!(
            got,
            "metadata:\n  annotations:\n    cert-rotator.k8s.io/certs-hash: \"new\""
        );

        // Quoting keeps odd values a string.
        let got = set_annotation(base, CERTS_HASH_ANNOTATION, "a\"b\\c").unwrap();
        check_only_annotation_changed(base, &got, CERTS_HASH_ANNOTATION, "a\"b\\c").unwrap();

        assert!(set_annotation("kind: Pod\n", CERTS_HASH_ANNOTATION, "v").is_err());
    }

    #[test]
    fn a_misread_layout_is_refused_not_written() {
        // A block scalar line that looks like a comment: the line edit takes it for one
        // and puts our key above it, cutting it off the scalar; the re-parse notices.
        let tricky = "apiVersion: v1\nmetadata:\n  annotations:\n    a: |\n      x\n      # not a comment\n  name: x\n";
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        let m = Path::new("/etc/kubernetes/manifests/tricky.yaml");
        std::fs::create_dir_all(r.host(Path::new("/etc/kubernetes/manifests"))).unwrap();
        std::fs::write(r.host(m), tricky).unwrap();
        let e = static_pod_change(&r, m, "v").unwrap_err();
        assert!(
            e.to_string()
                .contains("/etc/kubernetes/manifests/tricky.yaml: cannot set"),
            "{e}"
        );
        assert!(e.to_string().contains("more than the annotation"), "{e}");
        let e = static_pod_change(&r, Path::new("/etc/kubernetes/manifests/nope.yaml"), "v")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("/etc/kubernetes/manifests/nope.yaml"),
            "{e}"
        );
    }

    #[test]
    fn certs_hash_is_short_stable_and_order_free() {
        let a = certs_hash(&["1f".into(), "a0".into()]);
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(a, certs_hash(&["a0".into(), "1f".into(), "a0".into()]));
        assert_ne!(a, certs_hash(&["1f".into()]));
    }

    #[test]
    fn invocation_ids_print_like_systemctl() {
        assert_eq!(invocation_hex(&[]), None);
        assert_eq!(invocation_hex(&[0; 16]), None);
        assert_eq!(invocation_hex(&[0x0a, 0xff]).as_deref(), Some("0aff"));
    }

    #[test]
    fn the_recording_fake_records_and_fails_on_demand() {
        let m = RecordingServiceManager::new();
        m.fail_unit("bad.service", "failed");
        let t = Duration::from_secs(5);
        let before = m.unit_state("kubelet.service").unwrap().invocation_id;
        let r = m.restart_unit("kubelet.service", t).unwrap();
        assert_eq!(r.previous_invocation_id, before);
        assert_ne!(Some(&r.invocation_id), before.as_ref());
        let again = m.restart_unit("kubelet.service", t).unwrap();
        assert_eq!(
            again.previous_invocation_id.as_ref(),
            Some(&r.invocation_id)
        );
        let e = m.restart_unit("bad.service", t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad.service: restart job ended with result \"failed\" (unit is now failed/failed)"
        );
        assert_eq!(
            m.restarted(),
            ["kubelet.service", "kubelet.service", "bad.service"]
        );
        assert_eq!(
            m.calls()[0],
            RecordedCall::State {
                unit: "kubelet.service".into()
            }
        );
    }
}

//! systemd over the system D-Bus (zbus's blocking API): the one real
//! [`ServiceManager`].

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::proxy;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use super::{RestartError, ServiceManager, UnitRestart};

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

/// systemd's [`ServiceManager`]. Constructing one touches nothing: the system bus is
/// reached on the first call, so a pass that restarts no unit never needs systemd (a
/// node that is files only, a container without D-Bus). A failed connection is not kept:
/// the next call tries again.
#[derive(Default)]
pub struct SystemdManager {
    bus: Mutex<Option<Arc<Bus>>>,
}

/// The connection, once made.
struct Bus {
    conn: zbus::blocking::Connection,
    manager: ManagerProxyBlocking<'static>,
    /// JobRemoved signals, forwarded by a listener thread. The blocking signal iterator
    /// has no timeout, so it lives on its own thread and the waiting side uses
    /// `recv_timeout`. The thread ends at the first signal after this is dropped.
    jobs: Mutex<Receiver<JobEnded>>,
}

impl SystemdManager {
    /// A manager that connects on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// A manager already connected, for a caller that wants to fail before doing
    /// anything when systemd is out of reach.
    pub fn connect() -> Result<Self, RestartError> {
        let m = Self::new();
        m.bus().map_err(|source| RestartError::Connect { source })?;
        Ok(m)
    }

    fn bus(&self) -> Result<Arc<Bus>, Box<zbus::Error>> {
        let mut slot = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = Arc::new(Bus::connect().map_err(Box::new)?);
        *slot = Some(b.clone());
        Ok(b)
    }

    fn bus_for(&self, unit: &str) -> Result<Arc<Bus>, RestartError> {
        self.bus().map_err(|source| RestartError::Unreachable {
            unit: unit.to_string(),
            source,
        })
    }

    /// The unit's current state and InvocationID; [`RestartError::NoSuchUnit`] when
    /// systemd has no such unit.
    pub fn unit_state(&self, unit: &str) -> Result<UnitState, RestartError> {
        self.bus_for(unit)?.unit_state(unit)
    }
}

impl ServiceManager for SystemdManager {
    fn restart_unit(&self, unit: &str, timeout: Duration) -> Result<UnitRestart, RestartError> {
        let deadline = Instant::now() + timeout;
        self.bus_for(unit)?.restart_unit(unit, deadline, timeout)
    }
}

impl Bus {
    /// Connects to the system bus and subscribes to systemd's job signals.
    fn connect() -> zbus::Result<Bus> {
        let conn = zbus::blocking::connection::Builder::system()?
            // A systemd busy with a job storm still answers within this; a hung one
            // must not hang the pass.
            .method_timeout(Duration::from_secs(30))
            .build()?;
        let manager = ManagerProxyBlocking::new(&conn)?;
        // The match rule is in place once this returns: every JobRemoved from now on is
        // queued, so a job finishing right after RestartUnit replies cannot be missed.
        let signals = manager.receive_job_removed()?;
        // systemd emits job signals only to clients that subscribed.
        manager.subscribe()?;
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
            .map_err(|e| zbus::Error::InputOutput(e.into()))?;
        Ok(Bus {
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

    fn restart_unit(
        &self,
        unit: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<UnitRestart, RestartError> {
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

/// systemd's InvocationID as `systemctl show` prints it; all zeros or empty means none.
fn invocation_hex(id: &[u8]) -> Option<String> {
    if id.iter().all(|b| *b == 0) {
        return None;
    }
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_ids_print_like_systemctl() {
        assert_eq!(invocation_hex(&[]), None);
        assert_eq!(invocation_hex(&[0; 16]), None);
        assert_eq!(invocation_hex(&[0x0a, 0xff]).as_deref(), Some("0aff"));
    }

    #[test]
    fn constructing_needs_no_bus() {
        // Lazy: nothing is reached until the first call, whatever the host has.
        let m = SystemdManager::new();
        assert!(m.bus.lock().unwrap().is_none());
        // Where there is no system bus (a build container), the first call says so,
        // naming the unit, and the failure is not kept.
        let no_bus = std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_none()
            && !std::path::Path::new("/run/dbus/system_bus_socket").exists()
            && !std::path::Path::new("/var/run/dbus/system_bus_socket").exists();
        if no_bus {
            let e = m
                .restart_unit("kubelet.service", Duration::from_secs(1))
                .unwrap_err();
            assert!(matches!(e, RestartError::Unreachable { .. }), "{e}");
            assert!(
                e.to_string()
                    .starts_with("kubelet.service: cannot reach systemd"),
                "{e}"
            );
            assert!(m.bus.lock().unwrap().is_none());
            assert!(matches!(
                SystemdManager::connect(),
                Err(RestartError::Connect { .. })
            ));
        }
    }
}

//! Which process answers on a component's port: after a restart, verification counts
//! only answers from a process that started after the restart was requested.
//!
//! A static pod restarted through its manifest keeps running, serving and ready until
//! the kubelet notices the change and stops it; kube-apiserver even serves the renewed
//! certificate by itself (docs/reloads.md). Without telling the processes apart, the
//! old one could pass the verification a second before it stops, and a new one that
//! fails to start would never be caught. The control-plane static pods use the host's
//! network, so the listening socket is in this host's `/proc/self/net/tcp{,6}`; its
//! inode leads to the process (`/proc/PID/fd/*` -> `socket:[INODE]`), whose start time
//! is field 22 of `/proc/PID/stat`, in clock ticks on `CLOCK_BOOTTIME`. Only per-process
//! entries are read: the packaged unit's `ProcSubset=pid` hides `/proc/net` and
//! `/proc/uptime`, and its `ProtectProc=invisible` shows the root agent the processes
//! of root (the control plane's) but not those of other users (then: not identified).
//!
//! The decision ([`judge`]) is pure; [`ProcListeners`] reads a proc file system (the
//! live system's `/proc`; a test hands a directory of its own).

use std::fs;
use std::path::{Path, PathBuf};

use crate::procfs::{self, read_bounded, USER_HZ};

/// A process listening on a port of this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub pid: u32,
    /// When it started, in clock ticks ([`USER_HZ`]) since boot.
    pub started: u64,
}

/// What listens on a port of this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listeners {
    /// The processes holding the port's listening sockets (at least one).
    Found(Vec<Listener>),
    /// No socket listens on the port here: the component is not (yet) up, or the
    /// endpoint is served from elsewhere (another host or network namespace).
    None,
    /// The listener cannot be told: why (no permission, a socket whose process is not
    /// visible here, no proc file system).
    Unknown(String),
}

/// When a restart was requested, on the clock of process start times (clock ticks
/// since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartRequested(pub u64);

/// Who answers on a port, against a restart request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answerer {
    /// Every listener started after the request: this one (the first) answers.
    New(Listener),
    /// A listener started before the request: the process the restart must replace.
    Old(Listener),
    NotListening,
    Unknown(String),
}

/// Who answers on a port whose listeners are `found`, for a restart `requested`: new
/// only when every listener started at or after the request (the clock ticks at 10 ms;
/// an old process started well before).
pub fn judge(found: &Listeners, requested: RestartRequested) -> Answerer {
    match found {
        Listeners::Found(ls) => match ls.iter().find(|l| l.started < requested.0) {
            Some(old) => Answerer::Old(*old),
            None => ls
                .first()
                .map_or(Answerer::NotListening, |l| Answerer::New(*l)),
        },
        Listeners::None => Answerer::NotListening,
        Listeners::Unknown(why) => Answerer::Unknown(why.clone()),
    }
}

/// Seconds between two tick counts, for the log (`1.25`).
pub fn ticks_between(from: u64, to: u64) -> String {
    let d = to.saturating_sub(from);
    format!("{}.{:02}", d / USER_HZ, d % USER_HZ)
}

/// The most processes one scan looks at, and the most descriptors of one process: the
/// scan stays bounded on any node.
const MAX_PROCESSES: usize = 1 << 16;
const MAX_FDS: usize = 1 << 16;
/// The most of `/proc/net/tcp{,6}` read: the kernel lists listening sockets first, so a
/// node with more connections than fit still shows its listeners.
const MAX_SOCKET_TABLE: u64 = 16 << 20;
/// `st` of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// The listeners of the proc file system at `dir`.
#[derive(Clone, Debug)]
pub struct ProcListeners {
    dir: PathBuf,
}

impl Default for ProcListeners {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcListeners {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ProcListeners { dir: dir.into() }
    }

    /// Now, in clock ticks since boot: `CLOCK_BOOTTIME`, the clock of the start times
    /// in `stat` (the running system's, whatever the directory).
    pub fn now(&self) -> Option<u64> {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
        let ticks = u64::try_from(t.tv_sec()).ok()? * USER_HZ
            + u64::try_from(t.tv_nsec()).ok()? / (1_000_000_000 / USER_HZ);
        Some(ticks)
    }

    /// The processes listening on TCP `port` (any address, IPv4 or IPv6).
    pub fn on_port(&self, port: u16) -> Listeners {
        let mut inodes = Vec::new();
        let mut tables = 0;
        for table in ["self/net/tcp", "self/net/tcp6"] {
            if let Some(bytes) = read_bounded(&self.dir.join(table), MAX_SOCKET_TABLE) {
                tables += 1;
                inodes.extend(listening_inodes(&String::from_utf8_lossy(&bytes), port));
            }
        }
        if tables == 0 {
            return Listeners::Unknown(format!(
                "{} cannot be read",
                self.dir.join("self/net/tcp").display()
            ));
        }
        if inodes.is_empty() {
            return Listeners::None;
        }
        let owners = self.owners(&inodes);
        if owners.is_empty() {
            return Listeners::Unknown(format!(
                "no process visible here holds the socket listening on port {port}"
            ));
        }
        let mut found = Vec::with_capacity(owners.len());
        for pid in owners {
            match procfs::process_start_ticks(&self.dir, pid) {
                Some(started) => found.push(Listener { pid, started }),
                None => {
                    return Listeners::Unknown(format!(
                        "the start time of pid {pid} cannot be read"
                    ))
                }
            }
        }
        Listeners::Found(found)
    }

    /// The pids whose descriptors include one of the sockets `inodes`, each once, in
    /// pid order. Processes that vanish or whose descriptors cannot be read are skipped.
    fn owners(&self, inodes: &[u64]) -> Vec<u32> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let links: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
        let mut pids = Vec::new();
        for entry in rd.take(MAX_PROCESSES).flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if holds_any(&entry.path().join("fd"), &links) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids
    }
}

/// Whether a process's `fd` directory links to one of `links`.
fn holds_any(fd_dir: &Path, links: &[String]) -> bool {
    let Ok(fds) = fs::read_dir(fd_dir) else {
        return false;
    };
    fds.take(MAX_FDS).flatten().any(|fd| {
        fs::read_link(fd.path())
            .ok()
            .and_then(|t| t.to_str().map(|t| links.iter().any(|l| l == t)))
            .unwrap_or(false)
    })
}

/// The inodes of the sockets listening on `port` in a `/proc/net/tcp` or `tcp6` table:
/// `sl local_address rem_address st ... inode` with the address `HEX:PORT`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let listening = *f.get(3)? == TCP_LISTEN;
            let inode: u64 = f.get(9)?.parse().ok()?;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port && inode != 0)
                .then_some(inode)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0A00000A:0993 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3003 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4004 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn listening_sockets_by_port() {
        // 0x1F90 = 8080, 0x0993 = 2451; the established connection on 8080 is not one.
        assert_eq!(listening_inodes(TCP, 8080), [1001]);
        assert_eq!(listening_inodes(TCP, 2451), [2002]);
        assert_eq!(listening_inodes(TCP, 6443), Vec::<u64>::new());
        assert_eq!(listening_inodes(TCP6, 6443), [4004]);
        assert_eq!(
            listening_inodes("garbage\nmore garbage", 6443),
            Vec::<u64>::new()
        );
    }

    /// A proc file system in a directory: `uptime`, the socket tables, and processes
    /// with their start time and socket descriptors.
    fn fake_proc(procs: &[(u32, u64, &[u64])]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("self/net")).unwrap();
        fs::write(d.path().join("self/net/tcp"), TCP).unwrap();
        fs::write(d.path().join("self/net/tcp6"), TCP6).unwrap();
        for (pid, started, sockets) in procs {
            let p = d.path().join(pid.to_string());
            fs::create_dir_all(p.join("fd")).unwrap();
            fs::write(
                p.join("stat"),
                format!("{pid} (kube-apiserver) S 1 {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 9 0 {started} 1 1\n"),
            )
            .unwrap();
            symlink("/dev/null", p.join("fd/0")).unwrap();
            for (n, s) in sockets.iter().enumerate() {
                symlink(format!("socket:[{s}]"), p.join(format!("fd/{}", n + 3))).unwrap();
            }
        }
        d
    }

    #[test]
    fn the_process_holding_the_listening_socket() {
        let d = fake_proc(&[
            (10, 500, &[3003]),
            (42, 4000, &[1001, 9]),
            (43, 4100, &[4004]),
        ]);
        let p = ProcListeners::new(d.path());
        // Now: since boot, after this test process started.
        let me = procfs::process_start_ticks(Path::new("/proc"), std::process::id()).unwrap();
        assert!(p.now().unwrap() >= me);
        assert_eq!(
            p.on_port(8080),
            Listeners::Found(vec![Listener {
                pid: 42,
                started: 4000
            }])
        );
        assert_eq!(
            p.on_port(6443),
            Listeners::Found(vec![Listener {
                pid: 43,
                started: 4100
            }])
        );
        assert_eq!(p.on_port(10250), Listeners::None);
        // A socket whose process is not visible here (another pid namespace).
        assert_eq!(
            p.on_port(2451),
            Listeners::Unknown(
                "no process visible here holds the socket listening on port 2451".into()
            )
        );
        let none = ProcListeners::new(d.path().join("nope"));
        assert!(
            matches!(none.on_port(8080), Listeners::Unknown(why) if why.contains("self/net/tcp cannot be read"))
        );
    }

    #[test]
    fn the_live_proc_shows_our_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let p = ProcListeners::default();
        match p.on_port(port) {
            Listeners::Found(ls) => {
                assert_eq!(ls.len(), 1);
                assert_eq!(ls[0].pid, std::process::id());
                assert!(ls[0].started <= p.now().unwrap());
            }
            // A sandbox without /proc/net or other processes' fds: nothing to prove here.
            other => eprintln!("live /proc not usable here: {other:?}"),
        }
    }

    #[test]
    fn only_listeners_started_after_the_request_are_new() {
        let l = |pid, started| Listener { pid, started };
        let req = RestartRequested(1000);
        assert_eq!(
            judge(&Listeners::Found(vec![l(7, 1000)]), req),
            Answerer::New(l(7, 1000))
        );
        assert_eq!(
            judge(&Listeners::Found(vec![l(7, 1200)]), req),
            Answerer::New(l(7, 1200))
        );
        assert_eq!(
            judge(&Listeners::Found(vec![l(6, 999)]), req),
            Answerer::Old(l(6, 999))
        );
        // Old and new both on the port (SO_REUSEPORT): the old one may still answer.
        assert_eq!(
            judge(&Listeners::Found(vec![l(8, 1200), l(6, 10)]), req),
            Answerer::Old(l(6, 10))
        );
        assert_eq!(judge(&Listeners::None, req), Answerer::NotListening);
        assert_eq!(
            judge(&Listeners::Found(vec![]), req),
            Answerer::NotListening
        );
        assert_eq!(
            judge(&Listeners::Unknown("why".into()), req),
            Answerer::Unknown("why".into())
        );
        assert_eq!(ticks_between(1000, 1234), "2.34");
        assert_eq!(ticks_between(1000, 1005), "0.05");
        assert_eq!(ticks_between(1000, 900), "0.00");
    }
}

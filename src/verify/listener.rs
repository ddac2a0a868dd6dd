//! Which process answers on a component's port: after a restart, verification counts
//! only answers from a process that started after the restart was requested.
//!
//! A static pod restarted through its manifest keeps running, serving and ready until
//! the kubelet notices the change and stops it; kube-apiserver even serves the renewed
//! certificate by itself (docs/reloads.md). Without telling the processes apart, the
//! old one could pass the verification a second before it stops, and a new one that
//! fails to start would never be caught. The control-plane static pods use the host's
//! network, so the listening socket is in this host's `/proc/self/net/tcp{,6}`:
//! a listening socket that was not there when the restart was requested was opened
//! since, by a new process (socket inode numbers are not reused). Where the process is
//! visible (`/proc/PID/fd/*` -> `socket:[INODE]`), its pid and start time (field 22 of
//! `/proc/PID/stat`, clock ticks on `CLOCK_BOOTTIME`) are named too. Only per-process
//! entries are read: the packaged unit's `ProcSubset=pid` hides `/proc/net` and
//! `/proc/uptime`; its `ProtectProc=invisible` without `CAP_SYS_PTRACE` hides the
//! control plane's processes, so there the socket alone tells old from new.
//!
//! The decision ([`judge`]) is pure; [`ProcListeners`] reads a proc file system (the
//! live system's `/proc`; a test hands a directory of its own).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::procfs::{self, read_bounded, USER_HZ};

/// A socket listening on a port of this host, and its process where visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub inode: u64,
    pub process: Option<Process>,
}

/// A process of this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// When it started, in clock ticks ([`USER_HZ`]) since boot.
    pub started: u64,
}

/// What listens on a port of this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listeners {
    /// The port's listening sockets (at least one).
    Found(Vec<Listener>),
    /// No socket listens on the port here: the component is not (yet) up, or the
    /// endpoint is served from elsewhere (another host or network namespace).
    None,
    /// The listeners cannot be told: why (no socket table readable here).
    Unknown(String),
}

/// When a restart was requested: the time, in clock ticks since boot, and the inodes of
/// every TCP socket listening on this host then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartRequested {
    pub at: u64,
    pub listening: BTreeSet<u64>,
}

/// Who answers on a port, against a restart request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answerer {
    /// Every listener is new: this one (the first) answers.
    New(Listener),
    /// A listener of before the request: the process the restart must replace.
    Old(Listener),
    NotListening,
    Unknown(String),
}

/// Who answers on a port whose listeners are `found`, for a restart `requested`: new
/// only when no listening socket was there at the request and every visible process
/// started at or after it (the clock ticks at 10 ms; an old process started well before).
pub fn judge(found: &Listeners, requested: &RestartRequested) -> Answerer {
    match found {
        Listeners::Found(ls) => {
            let old = |l: &&Listener| {
                requested.listening.contains(&l.inode)
                    || l.process.is_some_and(|p| p.started < requested.at)
            };
            match ls.iter().find(old) {
                Some(l) => Answerer::Old(*l),
                None => ls
                    .first()
                    .map_or(Answerer::NotListening, |l| Answerer::New(*l)),
            }
        }
        Listeners::None => Answerer::NotListening,
        Listeners::Unknown(why) => Answerer::Unknown(why.clone()),
    }
}

/// Seconds between two tick counts, for the log (`1.25`).
pub fn ticks_between(from: u64, to: u64) -> String {
    let d = to.saturating_sub(from);
    format!("{}.{:02}", d / USER_HZ, d % USER_HZ)
}

/// The longest one search for the processes holding sockets may take.
const OWNERS_SCAN_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);
/// The most descriptors of one process looked at: the scan stays bounded on any node.
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
        procfs::boot_clock_ticks()
    }

    /// The restart request now: the time and every listening socket; `None` without a
    /// readable socket table (verification then does without).
    pub fn mark(&self) -> Option<RestartRequested> {
        Some(RestartRequested {
            at: self.now()?,
            listening: self.listening(None).ok()?.into_iter().collect(),
        })
    }

    /// The inodes of the sockets listening on `port` (every port: `None`), IPv4 and IPv6.
    fn listening(&self, port: Option<u16>) -> Result<Vec<u64>, String> {
        let mut inodes = Vec::new();
        let mut tables = 0;
        for table in ["self/net/tcp", "self/net/tcp6"] {
            if let Some(bytes) = read_bounded(&self.dir.join(table), MAX_SOCKET_TABLE) {
                tables += 1;
                inodes.extend(listening_inodes(&String::from_utf8_lossy(&bytes), port));
            }
        }
        if tables == 0 {
            return Err(format!(
                "{} cannot be read",
                self.dir.join("self/net/tcp").display()
            ));
        }
        Ok(inodes)
    }

    /// The sockets listening on TCP `port` (any address, IPv4 or IPv6), with their
    /// processes where visible.
    pub fn on_port(&self, port: u16) -> Listeners {
        let inodes = match self.listening(Some(port)) {
            Ok(i) if i.is_empty() => return Listeners::None,
            Ok(i) => i,
            Err(why) => return Listeners::Unknown(why),
        };
        let owners = self.owners(&inodes);
        Listeners::Found(
            inodes
                .iter()
                .map(|&inode| Listener {
                    inode,
                    process: owners.get(&inode).and_then(|&pid| {
                        procfs::process_start_ticks(&self.dir, pid)
                            .map(|started| Process { pid, started })
                    }),
                })
                .collect(),
        )
    }

    /// The process holding each of the sockets `inodes`, where visible. Processes that
    /// vanish or whose descriptors cannot be read are skipped.
    fn owners(&self, inodes: &[u64]) -> BTreeMap<u64, u32> {
        let mut found = BTreeMap::new();
        let links: Vec<(String, u64)> = inodes
            .iter()
            .map(|&i| (format!("socket:[{i}]"), i))
            .collect();
        let started = std::time::Instant::now();
        for (pid, dir) in procfs::processes(&self.dir) {
            // Bounded in time as well as in count: a try of verification runs every
            // 500 ms; a socket whose process was not found is judged by its inode alone.
            if started.elapsed() > OWNERS_SCAN_BUDGET {
                break;
            }
            for inode in held(&dir.join("fd"), &links) {
                found.entry(inode).or_insert(pid);
            }
            if found.len() == inodes.len() {
                break;
            }
        }
        found
    }
}

/// Which of the sockets `links` (`socket:[INODE]`, inode) a process's `fd` directory
/// links to.
fn held(fd_dir: &Path, links: &[(String, u64)]) -> Vec<u64> {
    let Ok(fds) = fs::read_dir(fd_dir) else {
        return Vec::new();
    };
    fds.take(MAX_FDS)
        .flatten()
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            let target = target.to_str()?;
            links.iter().find(|l| l.0 == target).map(|l| l.1)
        })
        .collect()
}

/// The inodes of the sockets listening on `port` (any: `None`) in a `/proc/net/tcp` or
/// `tcp6` table: `sl local_address rem_address st ... inode`, the address `HEX:PORT`.
fn listening_inodes(table: &str, port: Option<u16>) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let listening = *f.get(3)? == TCP_LISTEN;
            let inode: u64 = f.get(9)?.parse().ok()?;
            let local_port = u16::from_str_radix(local_port, 16).ok()?;
            (listening && port.is_none_or(|p| p == local_port) && inode != 0).then_some(inode)
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
        assert_eq!(listening_inodes(TCP, Some(8080)), [1001]);
        assert_eq!(listening_inodes(TCP, Some(2451)), [2002]);
        assert_eq!(listening_inodes(TCP, None), [1001, 2002]);
        assert_eq!(listening_inodes(TCP, Some(6443)), Vec::<u64>::new());
        assert_eq!(listening_inodes(TCP6, Some(6443)), [4004]);
        assert_eq!(
            listening_inodes("garbage\nmore garbage", None),
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

    fn found(inode: u64, process: Option<(u32, u64)>) -> Listeners {
        Listeners::Found(vec![Listener {
            inode,
            process: process.map(|(pid, started)| Process { pid, started }),
        }])
    }

    #[test]
    fn the_process_holding_the_listening_socket() {
        let d = fake_proc(&[
            (10, 500, &[3003]),
            (42, 4000, &[1001, 9]),
            (43, 4100, &[4004]),
        ]);
        let p = ProcListeners::new(d.path());
        assert_eq!(p.on_port(8080), found(1001, Some((42, 4000))));
        assert_eq!(p.on_port(6443), found(4004, Some((43, 4100))));
        assert_eq!(p.on_port(10250), Listeners::None);
        // A socket whose process is not visible here (ProtectProc, a pid namespace).
        assert_eq!(p.on_port(2451), found(2002, None));
        let mark = p.mark().unwrap();
        assert_eq!(mark.listening, BTreeSet::from([1001, 2002, 4004]));
        // Now: since boot, after this test process started.
        let me = procfs::process_start_ticks(Path::new("/proc"), std::process::id()).unwrap();
        assert!(mark.at >= me);
        let none = ProcListeners::new(d.path().join("nope"));
        assert!(
            matches!(none.on_port(8080), Listeners::Unknown(why) if why.contains("self/net/tcp cannot be read"))
        );
        assert_eq!(none.mark(), None);
    }

    #[test]
    fn the_live_proc_shows_our_own_listener() {
        let p = ProcListeners::default();
        let before = p.mark();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        match (p.on_port(port), before) {
            (Listeners::Found(ls), Some(before)) => {
                assert_eq!(ls.len(), 1);
                assert!(!before.listening.contains(&ls[0].inode));
                let me = ls[0].process.unwrap();
                assert_eq!(me.pid, std::process::id());
                assert!(matches!(
                    judge(&Listeners::Found(ls.clone()), &before),
                    Answerer::Old(_)
                ));
                let after = p.mark().unwrap();
                assert!(after.listening.contains(&ls[0].inode));
            }
            // A sandbox without /proc/self/net: nothing to prove here.
            other => eprintln!("live /proc not usable here: {other:?}"),
        }
    }

    #[test]
    fn only_sockets_and_processes_of_after_the_request_are_new() {
        let req = RestartRequested {
            at: 1000,
            listening: BTreeSet::from([55, 66]),
        };
        let l = |inode, process: Option<(u32, u64)>| Listener {
            inode,
            process: process.map(|(pid, started)| Process { pid, started }),
        };
        let judge = |f: Listeners| judge(&f, &req);
        assert_eq!(
            judge(found(77, Some((7, 1000)))),
            Answerer::New(l(77, Some((7, 1000))))
        );
        assert_eq!(judge(found(77, None)), Answerer::New(l(77, None)));
        // A socket of before the request, whatever its process.
        assert_eq!(judge(found(55, None)), Answerer::Old(l(55, None)));
        assert_eq!(
            judge(found(66, Some((7, 1200)))),
            Answerer::Old(l(66, Some((7, 1200))))
        );
        // A new socket of a process of before (it opened another one).
        assert_eq!(
            judge(found(77, Some((6, 999)))),
            Answerer::Old(l(77, Some((6, 999))))
        );
        // Old and new both on the port (SO_REUSEPORT): the old one may still answer.
        assert_eq!(
            judge(Listeners::Found(vec![l(78, Some((8, 1200))), l(55, None)])),
            Answerer::Old(l(55, None))
        );
        assert_eq!(judge(Listeners::None), Answerer::NotListening);
        assert_eq!(judge(Listeners::Found(vec![])), Answerer::NotListening);
        assert_eq!(
            judge(Listeners::Unknown("why".into())),
            Answerer::Unknown("why".into())
        );
        assert_eq!(ticks_between(1000, 1234), "2.34");
        assert_eq!(ticks_between(1000, 1005), "0.05");
        assert_eq!(ticks_between(1000, 900), "0.00");
    }
}

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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

    /// The inodes of the sockets listening for `wanted` (every socket: `None`), IPv4 and
    /// IPv6.
    fn listening(&self, wanted: Option<&Wanted>) -> Result<Vec<u64>, String> {
        let mut inodes = Vec::new();
        let mut tables = 0;
        for table in ["self/net/tcp", "self/net/tcp6"] {
            if let Some(bytes) = read_bounded(&self.dir.join(table), MAX_SOCKET_TABLE) {
                tables += 1;
                inodes.extend(listening_inodes(&String::from_utf8_lossy(&bytes), wanted));
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

    /// The sockets that serve TCP `host`:`port` (IPv4 or IPv6: bound to that address or
    /// to every address of its family; see [`Wanted`]), with their processes where
    /// visible.
    pub fn on_endpoint(&self, host: &str, port: u16) -> Listeners {
        let wanted = Wanted::new(host, port);
        let inodes = match self.listening(Some(&wanted)) {
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

/// The listening sockets that serve an endpoint: its port, and the addresses it may be
/// reached at. Another process on the same port but another address (127.0.0.2:6443
/// beside an apiserver on 0.0.0.0:6443) serves a different endpoint, and must not be
/// taken for the component.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wanted {
    port: u16,
    /// Empty for a host name other than `localhost`: resolving it here could wait on
    /// DNS, so such an endpoint is matched by its port alone.
    addrs: Vec<IpAddr>,
}

impl Wanted {
    fn new(host: &str, port: u16) -> Wanted {
        let addrs = match host.trim_start_matches('[').trim_end_matches(']') {
            "localhost" => vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()],
            h => h.parse::<IpAddr>().map(|a| vec![a]).unwrap_or_default(),
        };
        Wanted { port, addrs }
    }

    /// Whether a socket listening on `local`:`port` serves this endpoint.
    fn served_by(&self, local: IpAddr, port: u16) -> bool {
        port == self.port && (self.addrs.is_empty() || self.addrs.iter().any(|&a| serves(local, a)))
    }
}

/// Whether a socket bound to `local` accepts connections to `endpoint`: the same
/// address, the unspecified address of its family, or for an IPv4 endpoint an IPv6
/// socket on `::` (dual-stack: Go's listeners, the control plane's, clear IPV6_V6ONLY
/// for a wildcard address, and /proc/net/tcp6 does not show the flag) or on the
/// endpoint's v4-mapped address.
fn serves(local: IpAddr, endpoint: IpAddr) -> bool {
    // An IPv6 socket connecting to ::ffff:a.b.c.d reaches the IPv4 address.
    let endpoint = endpoint.to_canonical();
    match (local, endpoint) {
        (l, e) if l == e => true,
        (IpAddr::V4(l), IpAddr::V4(_)) => l.is_unspecified(),
        (IpAddr::V6(l), IpAddr::V6(_)) => l.is_unspecified(),
        (IpAddr::V6(l), IpAddr::V4(e)) => l.is_unspecified() || l.to_ipv4_mapped() == Some(e),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// An address of a `/proc/net/tcp{,6}` table: the bytes of the address in network
/// order, printed as 32-bit words in the host's order (`%08X` each), then `:PORT`.
fn table_address(field: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if !addr.is_ascii() || addr.is_empty() || addr.len() % 8 != 0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(&addr[i..i + 8], 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?),
        _ => return None,
    };
    Some((ip, port))
}

/// The inodes of the sockets listening for `wanted` (any: `None`) in a `/proc/net/tcp`
/// or `tcp6` table: `sl local_address rem_address st ... inode`.
fn listening_inodes(table: &str, wanted: Option<&Wanted>) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, port) = table_address(f.get(1)?)?;
            let listening = *f.get(3)? == TCP_LISTEN;
            let inode: u64 = f.get(9)?.parse().ok()?;
            let wanted = wanted.is_none_or(|w| w.served_by(local, port));
            (listening && wanted && inode != 0).then_some(inode)
        })
        .collect()
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;

//! Reading the running system's proc file system: bounded reads of its files and the
//! fields the agent needs (a process's start time, the time since boot).
//!
//! `/proc` is not a node file under `--root`: it is the system the agent runs on, read
//! only where the node's components run here (a live pass). Every read is bounded, and
//! a file that is gone (the process exited) or unreadable is `None`, never an error:
//! processes come and go while they are read.

use std::fs;
use std::io::Read;
use std::path::Path;

/// Clock ticks per second of `stat`'s start time: USER_HZ, which Linux fixes at 100 in
/// its ABI on every architecture Kubernetes runs on (sysconf would need unsafe code for
/// the same number).
pub const USER_HZ: u64 = 100;

/// The most processes one scan of `/proc` looks at: the scan stays bounded on any node.
const MAX_PROCESSES: usize = 1 << 16;

/// The processes listed in `proc_dir` (pid and directory), at most [`MAX_PROCESSES`];
/// none when it cannot be listed. Entries that are not processes are skipped.
pub fn processes(proc_dir: &Path) -> impl Iterator<Item = (u32, std::path::PathBuf)> {
    fs::read_dir(proc_dir)
        .into_iter()
        .flatten()
        .take(MAX_PROCESSES)
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, entry.path()))
        })
}

/// At most `limit` bytes of a /proc file; `None` when it is gone or unreadable.
pub fn read_bounded(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let f = fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The start time (field 22 of `stat`, clock ticks after boot). The name in field 2 may
/// hold spaces and parentheses: fields are counted after its last `)`.
pub fn start_ticks(stat: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(stat);
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Seconds since boot from `uptime`, in clock ticks: the clock `stat`'s start times are
/// on (both count the time since boot, suspend included).
pub fn uptime_ticks(uptime: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(uptime);
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some((secs * USER_HZ as f64) as u64)
}

/// Now, in clock ticks since boot, from `proc_dir/uptime`, else from the kernel's boot
/// clock: the packaged unit's `ProcSubset=pid` hides `/proc/uptime`.
pub fn now_ticks(proc_dir: &Path) -> Option<u64> {
    read_bounded(&proc_dir.join("uptime"), 128)
        .and_then(|b| uptime_ticks(&b))
        .or_else(boot_clock_ticks)
}

/// Now, in clock ticks since boot, from `CLOCK_BOOTTIME` (the clock `stat`'s start
/// times are on; suspend included), which no sandbox hides.
pub fn boot_clock_ticks() -> Option<u64> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(
        u64::try_from(t.tv_sec()).ok()? * USER_HZ
            + u64::try_from(t.tv_nsec()).ok()? / (1_000_000_000 / USER_HZ),
    )
}

/// When process `pid` started, in clock ticks since boot.
pub fn process_start_ticks(proc_dir: &Path, pid: u32) -> Option<u64> {
    read_bounded(&proc_dir.join(pid.to_string()).join("stat"), 4096).and_then(|b| start_ticks(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_uptime_are_parsed() {
        let stat = b"4242 (kube adm) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10 18446744073709551615\n";
        assert_eq!(start_ticks(stat), Some(12345));
        assert_eq!(start_ticks(b"4242 (x"), None);
        assert_eq!(uptime_ticks(b"350735.47 234388.90\n"), Some(35073547));
        assert_eq!(uptime_ticks(b"garbage"), None);
    }

    #[test]
    fn this_process_started_before_now() {
        let proc_dir = Path::new("/proc");
        let now = now_ticks(proc_dir).unwrap();
        let me = process_start_ticks(proc_dir, std::process::id()).unwrap();
        assert!(me <= now, "{me} > {now}");
    }
}

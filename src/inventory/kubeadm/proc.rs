//! The kubeadm processes of the live node, read from a proc file system without
//! trusting what any local user can set. A process's name (`comm`) is whatever its
//! owner chose: a copy of `sleep` named `kubeadm`, run by `nobody`, must not stop the
//! root agent's renewals. So a process counts only when
//! - it runs as root or as the owner of the Kubernetes directory (the only users that
//!   can write what kubeadm writes), by its effective uid in `status`, and
//! - its executable (the `exe` link, which the kernel sets and no process can change)
//!   is named `kubeadm` (`kubeadm (deleted)` too: a package upgrade replaces the binary
//!   under a running `kubeadm upgrade`).
//!
//! Each process also carries its age (start time in `stat` against `uptime`), so that
//! one running for longer than an upgrade takes stops being a reason to wait.

use std::fs;
use std::path::Path;

use super::KubeadmProcess;
use crate::procfs::{now_ticks, process_start_ticks, processes, read_bounded, USER_HZ};

/// The most of a command line kept for display.
pub(super) const MAX_CMDLINE: u64 = 4096;

/// The kubeadm processes under a proc file system (`/proc` on the live node; a test
/// hands a directory of its own) run by one of `owners` (uids). `own_pid` is skipped.
/// Bounded and race-tolerant: entries that are not numbers, vanish or cannot be read
/// are skipped.
pub fn processes_run_by(proc_dir: &Path, own_pid: u32, owners: &[u32]) -> Vec<KubeadmProcess> {
    let uptime = now_ticks(proc_dir);
    let mut out = Vec::new();
    for (pid, dir) in processes(proc_dir) {
        if pid == own_pid {
            continue;
        }
        // comm first: the kernel's task name never blocks, while reading a command
        // line takes the process's memory lock; read the rest only for a match.
        let Some(comm) = read_bounded(&dir.join("comm"), 64) else {
            continue;
        };
        if String::from_utf8_lossy(&comm).trim_end() != "kubeadm" {
            continue;
        }
        let Some(uid) = read_bounded(&dir.join("status"), 8192).and_then(|b| effective_uid(&b))
        else {
            continue;
        };
        if !owners.contains(&uid) || !is_kubeadm_executable(&dir.join("exe")) {
            continue;
        }
        let age_seconds = match (uptime, process_start_ticks(proc_dir, pid)) {
            (Some(up), Some(start)) => Some(up.saturating_sub(start) / USER_HZ),
            _ => None,
        };
        let cmdline = read_bounded(&dir.join("cmdline"), MAX_CMDLINE)
            .map(|b| render_cmdline(&b))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "kubeadm".into());
        out.push(KubeadmProcess {
            pid,
            cmdline,
            uid,
            age_seconds,
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Whether the `exe` link names a file called `kubeadm`.
fn is_kubeadm_executable(exe: &Path) -> bool {
    let Ok(target) = fs::read_link(exe) else {
        return false;
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(" (deleted)").unwrap_or(&name) == "kubeadm"
}

/// The effective uid from a `status` file (`Uid:\treal\teffective\tsaved\tfs`).
fn effective_uid(status: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(status);
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A NUL-separated command line as one line of text, control characters dropped.
fn render_cmdline(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split('\0')
        .filter(|a| !a.is_empty())
        .map(|a| a.chars().filter(|c| !c.is_control()).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_parsed() {
        assert_eq!(
            effective_uid(b"Name:\tkubeadm\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n"),
            Some(0)
        );
        assert_eq!(effective_uid(b"Name:\tkubeadm\n"), None);
    }
}

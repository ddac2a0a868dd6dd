//! Is kubeadm at work on this node? `kubeadm upgrade` and `kubeadm certs renew` rewrite
//! the same certificates, kubeconfigs and manifests the agent renews; a pass that ran
//! beside them would interleave two writers (kubeadm also collapses kubeconfig CA
//! bundles, research 3.8). So a pass first looks for kubeadm and, when it sees it,
//! changes nothing: the next pass re-reads everything.
//!
//! Two signs, each read without blocking and without trusting what is found:
//! - a running `kubeadm` process, from `/proc/<pid>/comm` (the kernel's 15-byte name,
//!   which never blocks) and then, for a match only, its bounded command line. Only
//!   where the node's components run here (`--root /`, or `--live`): under another
//!   root the host's processes are not the node's. Processes that exit while the scan reads them are skipped.
//! - kubeadm's working directories under `<kubernetes dir>/tmp` (kubeadm's
//!   `constants.CreateTempDirForKubeadm` / `CreateTimestampDirForKubeadm`:
//!   `kubeadm-upgraded-manifests<random>`, `kubeadm-backup-manifests-<timestamp>`,
//!   `kubeadm-backup-etcd-<timestamp>`, `kubeadm-kubelet-config<...>`, the dry-run
//!   directories). kubeadm removes them when it finishes (`CleanupDirs`) but keeps a
//!   backup the user asked for or one of a failed upgrade, so only a directory changed
//!   within [`ACTIVE_WINDOW`] counts as work in progress; an older one is a leftover,
//!   reported by [`leftovers`] and never a reason to stop renewing.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::KubeadmPaths;
use crate::node::NodeRoot;

/// How recently a kubeadm temporary directory must have changed to count as a run in
/// progress. kubeadm waits up to 5 minutes per upgraded component
/// (`UpgradeManifestTimeout`) and copies etcd's data directory first; an hour covers a
/// slow full upgrade of every component and leaves a crashed run's leftovers behind.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(3600);

/// The prefixes kubeadm gives its directories under `/etc/kubernetes/tmp`.
pub const TEMP_DIR_PREFIXES: [&str; 4] = [
    "kubeadm-upgraded-manifests",
    "kubeadm-backup-manifests",
    "kubeadm-backup-etcd",
    "kubeadm-kubelet-config",
];

/// Anything else kubeadm names `kubeadm-*` there (its dry-run directories) is kubeadm's too.
const KUBEADM_PREFIX: &str = "kubeadm-";

/// The most processes one scan looks at: a node with more is not one this check must
/// read in full, and the scan stays bounded.
const MAX_PROCESSES: usize = 1 << 16;
/// The most of a command line kept for display.
const MAX_CMDLINE: u64 = 4096;
/// The most directory entries of the tmp directory looked at.
const MAX_TEMP_ENTRIES: usize = 4096;

/// A running kubeadm process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeadmProcess {
    pub pid: u32,
    /// Its arguments joined by spaces (`kubeadm upgrade apply v1.31.2`), bounded.
    pub cmdline: String,
}

/// One of kubeadm's temporary directories.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeadmTempDir {
    /// Node path.
    pub path: PathBuf,
    /// Seconds since it last changed (0 when its time is in the future).
    pub age_seconds: u64,
}

/// What showed that kubeadm is at work: at least one process or directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeadmActivity {
    pub processes: Vec<KubeadmProcess>,
    pub temp_dirs: Vec<KubeadmTempDir>,
}

impl fmt::Display for KubeadmActivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kubeadm is at work on this node:")?;
        let mut first = true;
        for p in &self.processes {
            let sep = if first { " " } else { ", " };
            first = false;
            write!(f, "{sep}process {} ({})", p.pid, p.cmdline)?;
        }
        for d in &self.temp_dirs {
            let sep = if first { " " } else { ", " };
            first = false;
            write!(
                f,
                "{sep}{} (changed {}s ago)",
                d.path.display(),
                d.age_seconds
            )?;
        }
        Ok(())
    }
}

/// kubeadm's temporary directory: `tmp` in the Kubernetes directory (kubeadm's
/// `KubernetesDir`, which holds the kubeconfigs).
pub fn temp_dir(kubeadm: &KubeadmPaths) -> PathBuf {
    kubeadm.kubeconfig_dir.join("tmp")
}

/// Whether kubeadm is at work on the node, and what showed it; `None` when nothing did.
/// Never fails: what cannot be read (no tmp directory, a process gone mid-scan, a
/// /proc that refuses) is no sign of kubeadm.
pub fn activity(
    root: &NodeRoot,
    kubeadm: &KubeadmPaths,
    now: OffsetDateTime,
) -> Option<KubeadmActivity> {
    let processes = if root.liveness().runs_here() {
        processes(Path::new("/proc"), std::process::id())
    } else {
        Vec::new()
    };
    let temp_dirs: Vec<KubeadmTempDir> = temp_dirs(root, kubeadm, now)
        .into_iter()
        .filter(|d| d.age_seconds <= ACTIVE_WINDOW.as_secs())
        .collect();
    if processes.is_empty() && temp_dirs.is_empty() {
        None
    } else {
        Some(KubeadmActivity {
            processes,
            temp_dirs,
        })
    }
}

/// kubeadm's directories older than [`ACTIVE_WINDOW`]: kept backups or a crashed run's
/// remains, for the operator to look at; they do not stop a pass.
pub fn leftovers(
    root: &NodeRoot,
    kubeadm: &KubeadmPaths,
    now: OffsetDateTime,
) -> Vec<KubeadmTempDir> {
    temp_dirs(root, kubeadm, now)
        .into_iter()
        .filter(|d| d.age_seconds > ACTIVE_WINDOW.as_secs())
        .collect()
}

/// Every kubeadm directory under the tmp directory, with its age.
fn temp_dirs(root: &NodeRoot, kubeadm: &KubeadmPaths, now: OffsetDateTime) -> Vec<KubeadmTempDir> {
    let dir = temp_dir(kubeadm);
    let Ok(entries) = root.read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, ftype) in entries.into_iter().take(MAX_TEMP_ENTRIES) {
        let Some(name) = name.to_str() else { continue };
        if !ftype.is_dir() || !is_kubeadm_temp_name(name) {
            continue;
        }
        let path = dir.join(name);
        // Removed between the listing and now: kubeadm just finished with it.
        let Ok(Some(meta)) = root.symlink_metadata(&path) else {
            continue;
        };
        let Ok(modified) = meta.modified() else {
            continue;
        };
        let age = now - OffsetDateTime::from(modified);
        out.push(KubeadmTempDir {
            path,
            age_seconds: age.whole_seconds().max(0) as u64,
        });
    }
    out
}

/// A name kubeadm gives its temporary directories.
pub fn is_kubeadm_temp_name(name: &str) -> bool {
    TEMP_DIR_PREFIXES.iter().any(|p| name.starts_with(p)) || name.starts_with(KUBEADM_PREFIX)
}

/// The kubeadm processes under a proc file system (`/proc` on the live node; a test
/// hands a directory of its own). `own_pid` is skipped. Bounded and race-tolerant:
/// entries that are not numbers, vanish or cannot be read are skipped.
pub fn processes(proc_dir: &Path, own_pid: u32) -> Vec<KubeadmProcess> {
    let Ok(rd) = fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in rd.take(MAX_PROCESSES) {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        let dir = entry.path();
        // comm first: the kernel's task name never blocks, while reading a command
        // line takes the process's memory lock; read that only for a match.
        let Some(comm) = read_bounded(&dir.join("comm"), 64) else {
            continue;
        };
        if String::from_utf8_lossy(&comm).trim_end() != "kubeadm" {
            continue;
        }
        let cmdline = read_bounded(&dir.join("cmdline"), MAX_CMDLINE)
            .map(|b| render_cmdline(&b))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "kubeadm".into());
        out.push(KubeadmProcess { pid, cmdline });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// At most `limit` bytes of a /proc file; `None` when it is gone or unreadable.
fn read_bounded(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let f = fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf).ok()?;
    Some(buf)
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
    use std::time::SystemTime;

    fn paths() -> KubeadmPaths {
        KubeadmPaths::default()
    }

    fn node() -> (tempfile::TempDir, NodeRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(dir.path());
        (dir, root)
    }

    fn mkdir(root: &NodeRoot, node_path: &str) -> PathBuf {
        let host = root.host(Path::new(node_path));
        fs::create_dir_all(&host).unwrap();
        host
    }

    fn set_age(host: &Path, age: Duration) {
        let t = SystemTime::now() - age;
        fs::File::open(host).unwrap().set_modified(t).unwrap();
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn nothing_on_a_quiet_node() {
        let (_d, root) = node();
        assert_eq!(activity(&root, &paths(), now()), None);
        mkdir(&root, "/etc/kubernetes/tmp");
        assert_eq!(activity(&root, &paths(), now()), None);
    }

    #[test]
    fn a_fresh_upgrade_directory_is_kubeadm_at_work() {
        let (_d, root) = node();
        mkdir(
            &root,
            "/etc/kubernetes/tmp/kubeadm-upgraded-manifests1284917823",
        );
        let seen = activity(&root, &paths(), now()).expect("kubeadm seen");
        assert!(seen.processes.is_empty());
        assert_eq!(
            seen.temp_dirs[0].path,
            Path::new("/etc/kubernetes/tmp/kubeadm-upgraded-manifests1284917823")
        );
        let text = seen.to_string();
        assert!(
            text.starts_with("kubeadm is at work on this node: "),
            "{text}"
        );
        assert!(
            text.contains("kubeadm-upgraded-manifests1284917823"),
            "{text}"
        );
    }

    #[test]
    fn every_kubeadm_directory_name_counts() {
        for name in [
            "kubeadm-backup-manifests-2026-12-01-11-02-03",
            "kubeadm-backup-etcd-2026-12-01-11-02-03",
            "kubeadm-kubelet-config1234",
            "kubeadm-upgrade-apply-dryrun99",
        ] {
            let (_d, root) = node();
            mkdir(&root, &format!("/etc/kubernetes/tmp/{name}"));
            assert!(activity(&root, &paths(), now()).is_some(), "{name}");
        }
    }

    #[test]
    fn other_entries_are_not_kubeadm() {
        let (_d, root) = node();
        mkdir(&root, "/etc/kubernetes/tmp/my-backup");
        // A file named like kubeadm's directories is not one of them.
        fs::write(
            root.host(Path::new("/etc/kubernetes/tmp/kubeadm-upgraded-manifests1")),
            b"",
        )
        .unwrap();
        assert_eq!(activity(&root, &paths(), now()), None);
    }

    #[test]
    fn an_old_backup_is_a_leftover_not_a_run() {
        let (_d, root) = node();
        let host = mkdir(
            &root,
            "/etc/kubernetes/tmp/kubeadm-backup-etcd-2025-01-01-00-00-00",
        );
        set_age(&host, ACTIVE_WINDOW + Duration::from_secs(60));
        assert_eq!(activity(&root, &paths(), now()), None);
        let left = leftovers(&root, &paths(), now());
        assert_eq!(left.len(), 1);
        assert!(left[0].age_seconds > ACTIVE_WINDOW.as_secs());
        // Just inside the window it is a run again.
        set_age(&host, ACTIVE_WINDOW - Duration::from_secs(60));
        assert!(activity(&root, &paths(), now()).is_some());
        assert!(leftovers(&root, &paths(), now()).is_empty());
    }

    #[test]
    fn the_tmp_directory_follows_the_kubeconfig_dir() {
        let (_d, root) = node();
        mkdir(&root, "/srv/k8s/tmp/kubeadm-upgraded-manifests1");
        let p = KubeadmPaths {
            kubeconfig_dir: "/srv/k8s".into(),
            ..paths()
        };
        assert!(activity(&root, &p, now()).is_some());
        assert_eq!(activity(&root, &paths(), now()), None);
    }

    /// A proc directory of our own: pid directories with comm and cmdline files.
    fn fake_proc(entries: &[(&str, &str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm, cmdline) in entries {
            let p = dir.path().join(pid);
            fs::create_dir(&p).unwrap();
            fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(p.join("cmdline"), cmdline).unwrap();
        }
        dir
    }

    #[test]
    fn a_kubeadm_process_is_found_by_its_name() {
        let proc = fake_proc(&[
            ("1", "systemd", b"/sbin/init\0"),
            ("4242", "kubeadm", b"kubeadm\0upgrade\0apply\0v1.31.2\0"),
            (
                "77",
                "kubelet",
                b"/usr/bin/kubelet\0--config=/var/lib/kubelet/config.yaml\0",
            ),
            ("self", "kubeadm", b"not a pid\0"),
        ]);
        // A pid that vanished mid-scan: a directory without files.
        fs::create_dir(proc.path().join("999")).unwrap();
        let found = processes(proc.path(), 1);
        assert_eq!(
            found,
            vec![KubeadmProcess {
                pid: 4242,
                cmdline: "kubeadm upgrade apply v1.31.2".into()
            }]
        );
        // Our own pid is never kubeadm at work.
        assert!(processes(proc.path(), 4242).is_empty());
    }

    #[test]
    fn a_process_without_a_readable_cmdline_is_still_kubeadm() {
        let proc = fake_proc(&[("10", "kubeadm", b"")]);
        let found = processes(proc.path(), 1);
        assert_eq!(found[0].cmdline, "kubeadm");
        // A long command line is cut, control characters dropped.
        let mut long = b"kubeadm\0certs\0renew\0all\x1b[2J\0".to_vec();
        long.extend(std::iter::repeat_n(b'x', 10_000));
        let proc = fake_proc(&[("11", "kubeadm", &long)]);
        let found = processes(proc.path(), 1);
        assert!(found[0].cmdline.starts_with("kubeadm certs renew all[2J "));
        assert!(found[0].cmdline.len() <= MAX_CMDLINE as usize);
    }

    #[test]
    fn processes_are_not_scanned_under_another_root() {
        // The test's temp root is not the live node: only the directories count there.
        let (_d, root) = node();
        assert!(!root.liveness().runs_here());
        assert_eq!(activity(&root, &paths(), now()), None);
    }

    #[test]
    fn the_live_proc_is_read_without_error() {
        // The real /proc of this machine: the scan completes and finds no kubeadm
        // (none runs here), nor this test process.
        let found = processes(Path::new("/proc"), std::process::id());
        assert!(found.iter().all(|p| p.pid != std::process::id()));
    }

    #[test]
    fn a_process_and_a_directory_are_both_shown() {
        let a = KubeadmActivity {
            processes: vec![KubeadmProcess {
                pid: 7,
                cmdline: "kubeadm certs renew all".into(),
            }],
            temp_dirs: vec![KubeadmTempDir {
                path: "/etc/kubernetes/tmp/kubeadm-backup-etcd-x".into(),
                age_seconds: 12,
            }],
        };
        assert_eq!(
            a.to_string(),
            "kubeadm is at work on this node: process 7 (kubeadm certs renew all), \
             /etc/kubernetes/tmp/kubeadm-backup-etcd-x (changed 12s ago)"
        );
    }
}

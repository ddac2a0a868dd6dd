//! Is kubeadm at work on this node? `kubeadm upgrade` and `kubeadm certs renew` rewrite
//! the same certificates, kubeconfigs and manifests the agent renews; a pass that ran
//! beside them would interleave two writers (kubeadm also collapses kubeconfig CA
//! bundles, research 3.8). So a pass first looks for kubeadm and, when it sees it,
//! changes nothing: the next pass re-reads everything.
//!
//! Two signs, each read without blocking and without trusting what is found:
//! - a running kubeadm process ([`proc`]): only where the node's components run here
//!   (`--root /`, or `--live`; under another root the host's processes are not the
//!   node's), and only one run by root or by the owner of the Kubernetes directory whose
//!   executable is a `kubeadm` binary:
//!   any other user can name a process `kubeadm`, and must not stop renewals.
//! - kubeadm's working directories under `<kubernetes dir>/tmp` (kubeadm's
//!   `constants.CreateTempDirForKubeadm` / `CreateTimestampDirForKubeadm`:
//!   `kubeadm-upgraded-manifests<random>`, `kubeadm-backup-manifests-<timestamp>`,
//!   `kubeadm-backup-etcd-<timestamp>`, `kubeadm-kubelet-config<...>`, the dry-run
//!   directories). kubeadm removes them when it finishes (`CleanupDirs`) but keeps a
//!   backup the user asked for or one of a failed upgrade, so only a directory changed
//!   within [`ACTIVE_WINDOW`] counts as work in progress; an older one is a leftover,
//!   reported by [`leftovers`] and never a reason to stop renewing.
//!
//! Nothing counts for longer than an upgrade takes ([`ACTIVE_WINDOW`]): a kubeadm
//! process running for longer is reported as overdue and the pass renews anyway (an
//! expired control plane is worse than a stuck kubeadm), and a directory dated more
//! than [`CLOCK_SKEW`] in the future is a leftover (a clock stepped back, or a time set
//! by hand), not a run that would stop renewals until that date.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::KubeadmPaths;
use crate::node::NodeRoot;

mod proc;

pub use proc::processes_run_by;

/// How recently a kubeadm temporary directory must have changed to count as a run in
/// progress, and how long a kubeadm process may run before it no longer does. kubeadm
/// waits up to 5 minutes per upgraded component (`UpgradeManifestTimeout`) and copies
/// etcd's data directory first; an hour covers a slow full upgrade of every component
/// and leaves a crashed (or hung) run behind.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(3600);

/// How far in the future a kubeadm directory's time may lie and still count as fresh:
/// the clock skew tolerated elsewhere (a remote CA's notBefore). Further ahead it was
/// not written by a run on this clock.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// How long the look at the tmp directory may take. kubeadm keeps a backup directory
/// per upgrade, so the directory can hold thousands of entries; it is read in full (a
/// cut listing can drop the newest), and what could not be looked at within this time
/// counts as kubeadm at work: failing closed, said with how much was left.
pub const TEMP_SCAN_BUDGET: Duration = Duration::from_secs(5);

/// The prefixes kubeadm gives its directories under `/etc/kubernetes/tmp`.
pub const TEMP_DIR_PREFIXES: [&str; 4] = [
    "kubeadm-upgraded-manifests",
    "kubeadm-backup-manifests",
    "kubeadm-backup-etcd",
    "kubeadm-kubelet-config",
];

/// Anything else kubeadm names `kubeadm-*` there (its dry-run directories) is kubeadm's too.
const KUBEADM_PREFIX: &str = "kubeadm-";

/// A running kubeadm process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeadmProcess {
    pub pid: u32,
    /// Its arguments joined by spaces (`kubeadm upgrade apply v1.31.2`), bounded.
    pub cmdline: String,
    /// Its effective uid: root or the owner of the Kubernetes directory.
    pub uid: u32,
    /// Seconds since it started, when /proc says.
    pub age_seconds: Option<u64>,
}

/// One of kubeadm's temporary directories.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeadmTempDir {
    /// Node path.
    pub path: PathBuf,
    /// Seconds since it last changed (0 when its time is in the future).
    pub age_seconds: u64,
    /// Seconds its time lies in the future (0 when it does not).
    #[serde(skip_serializing_if = "is_zero")]
    pub ahead_seconds: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What showed that kubeadm is at work: at least one process or directory, or a tmp
/// directory too large to read within [`TEMP_SCAN_BUDGET`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeadmActivity {
    pub processes: Vec<KubeadmProcess>,
    pub temp_dirs: Vec<KubeadmTempDir>,
    /// Entries of the tmp directory not looked at within the budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unexamined: Option<Unexamined>,
}

/// The part of the tmp directory a scan could not look at in time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unexamined {
    /// Node path of the tmp directory.
    pub dir: PathBuf,
    /// kubeadm directories listed but not looked at (0 when the listing itself ran out
    /// of time or could not be made).
    pub left: usize,
    /// Why the directory could not be listed at all (a symlink out of `--root`, a FIFO
    /// where the directory should be, no permission): `None` when time ran out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
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
        if let Some(u) = &self.unexamined {
            let sep = if first { " " } else { ", " };
            if let Some(why) = &u.unreadable {
                return write!(
                    f,
                    "{sep}{}: cannot be read ({why}), counted as kubeadm at work",
                    u.dir.display()
                );
            }
            write!(
                f,
                "{sep}{}: not read in full within {}s ({}), counted as kubeadm at work",
                u.dir.display(),
                TEMP_SCAN_BUDGET.as_secs(),
                if u.left == 0 {
                    "the listing ran out of time".to_string()
                } else {
                    format!("{} kubeadm directories not looked at", u.left)
                }
            )?;
        }
        Ok(())
    }
}

/// Everything one look for kubeadm found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// kubeadm at work: the pass must change nothing.
    pub activity: Option<KubeadmActivity>,
    /// kubeadm's directories that stop nothing: older than [`ACTIVE_WINDOW`], or dated
    /// more than [`CLOCK_SKEW`] ahead.
    pub leftovers: Vec<KubeadmTempDir>,
    /// kubeadm processes running for longer than [`ACTIVE_WINDOW`]: no upgrade takes
    /// that long; the pass goes ahead and says so loudly.
    pub overdue: Vec<KubeadmProcess>,
}

/// kubeadm's temporary directory: `tmp` in the Kubernetes directory (kubeadm's
/// `KubernetesDir`, which holds the kubeconfigs).
pub fn temp_dir(kubeadm: &KubeadmPaths) -> PathBuf {
    kubeadm.kubeconfig_dir.join("tmp")
}

/// Looks for kubeadm on the node. Never fails: what is absent (no tmp directory, a
/// process gone mid-scan, a /proc that refuses) is no sign of kubeadm; a tmp directory
/// that is there but cannot be listed counts as kubeadm at work (fail closed).
pub fn scan(root: &NodeRoot, kubeadm: &KubeadmPaths, now: OffsetDateTime) -> Scan {
    let (processes, overdue): (Vec<_>, Vec<_>) = if root.liveness().runs_here() {
        processes_run_by(
            Path::new("/proc"),
            std::process::id(),
            &owners(root, kubeadm),
        )
    } else {
        Vec::new()
    }
    .into_iter()
    .partition(|p| !is_overdue(p));
    let (dirs, unexamined) = temp_dirs(root, kubeadm, now, TEMP_SCAN_BUDGET);
    let (temp_dirs, leftovers): (Vec<_>, Vec<_>) = dirs.into_iter().partition(is_fresh);
    let activity = (!processes.is_empty() || !temp_dirs.is_empty() || unexamined.is_some())
        .then_some(KubeadmActivity {
            processes,
            temp_dirs,
            unexamined,
        });
    Scan {
        activity,
        leftovers,
        overdue,
    }
}

/// Whether kubeadm is at work on the node, and what showed it; `None` when nothing did.
pub fn activity(
    root: &NodeRoot,
    kubeadm: &KubeadmPaths,
    now: OffsetDateTime,
) -> Option<KubeadmActivity> {
    scan(root, kubeadm, now).activity
}

/// kubeadm's directories that stop nothing: kept backups or a crashed run's remains
/// (older than [`ACTIVE_WINDOW`]), or dated too far ahead; for the operator to look at.
pub fn leftovers(
    root: &NodeRoot,
    kubeadm: &KubeadmPaths,
    now: OffsetDateTime,
) -> Vec<KubeadmTempDir> {
    scan(root, kubeadm, now).leftovers
}

/// A kubeadm process running for longer than an upgrade takes: hung, or no upgrade.
/// One whose age /proc does not give is taken at its word.
pub fn is_overdue(p: &KubeadmProcess) -> bool {
    p.age_seconds.is_some_and(|a| a > ACTIVE_WINDOW.as_secs())
}

fn is_fresh(d: &KubeadmTempDir) -> bool {
    d.age_seconds <= ACTIVE_WINDOW.as_secs() && d.ahead_seconds <= CLOCK_SKEW.as_secs()
}

/// The users whose kubeadm counts: root, and the owner of the Kubernetes directory
/// (a node run by a non-root administrator account).
fn owners(root: &NodeRoot, kubeadm: &KubeadmPaths) -> Vec<u32> {
    let mut v = vec![0];
    if let Ok(Some(m)) = root.symlink_metadata(&kubeadm.kubeconfig_dir) {
        if m.uid() != 0 {
            v.push(m.uid());
        }
    }
    v
}

/// Every kubeadm directory under the tmp directory, with its age, read in full within
/// `budget`; what was left when the budget ran out, if anything.
fn temp_dirs(
    root: &NodeRoot,
    kubeadm: &KubeadmPaths,
    now: OffsetDateTime,
    budget: Duration,
) -> (Vec<KubeadmTempDir>, Option<Unexamined>) {
    let started = Instant::now();
    let dir = temp_dir(kubeadm);
    let out_of_time = |left| {
        Some(Unexamined {
            dir: dir.clone(),
            left,
            unreadable: None,
        })
    };
    // Names are filtered while listing (the node gate's listing): only kubeadm's are
    // kept, however many others there are, and none is dropped for a count.
    let mut names = match root.subdirs_matching(&dir, is_kubeadm_temp_name, started + budget) {
        Ok(Some(names)) => names,
        Ok(None) => return (Vec::new(), out_of_time(0)),
        // No tmp directory: kubeadm has nothing there.
        Err(e) if e.is_not_found() => return (Vec::new(), None),
        // What cannot be looked at may hold kubeadm's work: failing closed, as when the
        // budget runs out, and said naming the path.
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "kubeadm's tmp directory cannot be read: counted as kubeadm at work");
            return (
                Vec::new(),
                Some(Unexamined {
                    dir: dir.clone(),
                    left: 0,
                    // The path is named once, by the Display.
                    unreadable: Some(if e.path == dir {
                        e.problem.to_string()
                    } else {
                        e.to_string()
                    }),
                }),
            );
        }
    };
    // The likeliest runs first: the working directories, then the timestamped backups
    // newest first (their names sort by time).
    names.sort_by(|a, b| {
        let backup = |n: &str| n.starts_with("kubeadm-backup-");
        backup(a).cmp(&backup(b)).then(b.cmp(a))
    });
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if started.elapsed() > budget {
            return (out, out_of_time(names.len() - i));
        }
        let path = dir.join(name);
        // Removed between the listing and now: kubeadm just finished with it.
        let Ok(Some(meta)) = root.symlink_metadata(&path) else {
            continue;
        };
        let Ok(modified) = meta.modified() else {
            continue;
        };
        let age = (now - OffsetDateTime::from(modified)).whole_seconds();
        out.push(KubeadmTempDir {
            path,
            age_seconds: age.max(0) as u64,
            ahead_seconds: (-age).max(0) as u64,
        });
    }
    (out, None)
}

/// A name kubeadm gives its temporary directories.
pub fn is_kubeadm_temp_name(name: &str) -> bool {
    TEMP_DIR_PREFIXES.iter().any(|p| name.starts_with(p)) || name.starts_with(KUBEADM_PREFIX)
}

/// The kubeadm processes under a proc file system run by root (`/proc` on the live
/// node; a test hands a directory of its own). `own_pid` is skipped.
pub fn processes(proc_dir: &Path, own_pid: u32) -> Vec<KubeadmProcess> {
    processes_run_by(proc_dir, own_pid, &[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
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

    /// A proc directory of our own: pid directories with comm, cmdline, status (uid 0),
    /// stat (started 10 s after boot) and an exe link to /usr/bin/kubeadm; uptime 100 s.
    fn fake_proc(entries: &[(&str, &str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("uptime"), "100.00 50.00\n").unwrap();
        for (pid, comm, cmdline) in entries {
            let p = dir.path().join(pid);
            fs::create_dir(&p).unwrap();
            fs::write(p.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(p.join("cmdline"), cmdline).unwrap();
            fake_owner(&p, 0, "/usr/bin/kubeadm", 1000);
        }
        dir
    }

    /// Sets a fake process's uid, executable and start (in ticks after boot).
    fn fake_owner(p: &Path, uid: u32, exe: &str, start_ticks: u64) {
        fs::write(
            p.join("status"),
            format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
        )
        .unwrap();
        let _ = fs::remove_file(p.join("exe"));
        std::os::unix::fs::symlink(exe, p.join("exe")).unwrap();
        fs::write(
            p.join("stat"),
            format!("1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start_ticks} 0 0\n"),
        )
        .unwrap();
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
                cmdline: "kubeadm upgrade apply v1.31.2".into(),
                uid: 0,
                age_seconds: Some(90),
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
        assert!(found[0].cmdline.len() <= proc::MAX_CMDLINE as usize);
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
                uid: 0,
                age_seconds: Some(3),
            }],
            temp_dirs: vec![KubeadmTempDir {
                path: "/etc/kubernetes/tmp/kubeadm-backup-etcd-x".into(),
                age_seconds: 12,
                ahead_seconds: 0,
            }],
            unexamined: None,
        };
        assert_eq!(
            a.to_string(),
            "kubeadm is at work on this node: process 7 (kubeadm certs renew all), \
             /etc/kubernetes/tmp/kubeadm-backup-etcd-x (changed 12s ago)"
        );
    }

    #[test]
    fn only_a_kubeadm_binary_run_by_root_or_the_owner_counts() {
        let proc = fake_proc(&[
            ("20", "kubeadm", b"kubeadm\0upgrade\0apply\0"),
            ("21", "kubeadm", b"kubeadm\0"),
            ("22", "kubeadm", b"kubeadm\0"),
            ("23", "kubeadm", b"kubeadm\0"),
            ("24", "kubeadm", b"kubeadm\0"),
        ]);
        // nobody's copy of sleep, named kubeadm.
        fake_owner(&proc.path().join("21"), 65534, "/tmp/x/kubeadm", 1000);
        // root's process renamed kubeadm (prctl), whose executable is sleep.
        fake_owner(&proc.path().join("22"), 0, "/usr/bin/sleep", 1000);
        // The owner of the Kubernetes directory, a binary replaced by an upgrade.
        fake_owner(
            &proc.path().join("23"),
            1001,
            "/usr/bin/kubeadm (deleted)",
            1000,
        );
        // Started at boot: its age is the uptime.
        fake_owner(&proc.path().join("24"), 0, "/usr/bin/kubeadm", 0);
        let pids = |v: Vec<KubeadmProcess>| v.into_iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(processes(proc.path(), 1)), [20, 24]);
        let p24 = processes(proc.path(), 1).pop().unwrap();
        assert_eq!(p24.age_seconds, Some(100));
        assert!(!is_overdue(&p24));
        let hung = KubeadmProcess {
            age_seconds: Some(ACTIVE_WINDOW.as_secs() + 1),
            ..p24
        };
        assert!(is_overdue(&hung));
        assert_eq!(
            pids(processes_run_by(proc.path(), 1, &[0, 1001])),
            [20, 23, 24]
        );
    }

    #[test]
    fn a_directory_dated_in_the_future_is_fresh_only_within_the_skew() {
        let (_d, root) = node();
        let host = mkdir(&root, "/etc/kubernetes/tmp/kubeadm-upgraded-manifests9");
        let t = SystemTime::now() + Duration::from_secs(120);
        fs::File::open(&host).unwrap().set_modified(t).unwrap();
        assert!(activity(&root, &paths(), now()).is_some());
        let t = SystemTime::now() + CLOCK_SKEW + Duration::from_secs(3600);
        fs::File::open(&host).unwrap().set_modified(t).unwrap();
        assert_eq!(activity(&root, &paths(), now()), None);
        let left = leftovers(&root, &paths(), now());
        assert!(left[0].ahead_seconds > CLOCK_SKEW.as_secs(), "{left:?}");
    }

    #[test]
    fn a_scan_out_of_time_counts_as_kubeadm_at_work() {
        let (_d, root) = node();
        for i in 0..3 {
            mkdir(
                &root,
                &format!("/etc/kubernetes/tmp/kubeadm-backup-etcd-{i}"),
            );
        }
        let (dirs, left) = temp_dirs(&root, &paths(), now(), Duration::ZERO);
        assert!(dirs.is_empty());
        let left = left.expect("out of time");
        let a = KubeadmActivity {
            processes: vec![],
            temp_dirs: dirs,
            unexamined: Some(left),
        };
        assert!(a.to_string().contains("counted as kubeadm at work"), "{a}");
    }

    /// A tmp directory that is there but cannot be listed (a symlink out of the root, a
    /// FIFO in its place) is not "kubeadm not at work": counted as at work, naming it.
    #[test]
    fn an_unreadable_tmp_directory_counts_as_kubeadm_at_work() {
        let outside = tempfile::tempdir().unwrap();
        for make in ["symlink out of the root", "FIFO"] {
            let (_d, root) = node();
            mkdir(&root, "/etc/kubernetes");
            let tmp = root.host(Path::new("/etc/kubernetes/tmp"));
            if make == "FIFO" {
                nix::unistd::mkfifo(&tmp, nix::sys::stat::Mode::S_IRWXU).unwrap();
            } else {
                // Relative, so it leaves the root rather than being taken inside it.
                let up = "../".repeat(root.dir().components().count() + 1);
                let target = format!("{up}{}", outside.path().display());
                std::os::unix::fs::symlink(target, &tmp).unwrap();
            }
            let seen = activity(&root, &paths(), now()).unwrap_or_else(|| panic!("{make}"));
            let text = seen.to_string();
            assert!(
                text.contains("/etc/kubernetes/tmp: cannot be read (")
                    && text.ends_with("counted as kubeadm at work"),
                "{make}: {text}"
            );
        }
    }
}

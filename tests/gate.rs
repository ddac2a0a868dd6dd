//! The node gate, end to end: whatever the node's files are (links out of `--root`, a
//! FIFO, a device, a huge file, a missing root, a dangling state directory, agent paths
//! naming kubeadm's files), the real binary finishes promptly, in little memory, says
//! which path is wrong, and writes nothing outside the root nor over what it manages.

mod common;

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use common::*;
use nix::libc;

/// How a bounded run of the binary ended.
struct Bounded {
    /// Exit code; `None` when a signal ended it (an abort, a stack overflow).
    code: Option<i32>,
    stdout: String,
    /// stdout and stderr.
    output: String,
    max_rss_kib: i64,
}

/// Runs cert-rotator with `args`, at most 20 s (then it is killed and the test fails)
/// and with a 2 GiB address space, so that code reading a device or a huge file fails
/// fast instead of taking the machine's memory. Returns its exit, output and peak RSS.
// The child is reaped with wait4, which also gives its rusage; Child::wait would not.
#[allow(clippy::zombie_processes)]
fn run_bounded(cwd: Option<&Path>, args: &[&OsStr]) -> Bounded {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 2 << 30,
                rlim_max: 2 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn cert-rotator");
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let deadline = Instant::now() + StdDuration::from_secs(20);
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        // SAFETY: waits for our own child only; its pid stays ours until reaped here.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            timed_out = true;
            // SAFETY: not reaped yet, so the pid is still this child's.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            break;
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    let stdout = t_out.join().unwrap();
    let output = format!("{stdout}{}", t_err.join().unwrap());
    assert!(
        !timed_out,
        "cert-rotator {args:?} did not finish within 20 s (killed): {output}"
    );
    Bounded {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout,
        output,
        max_rss_kib: usage.ru_maxrss,
    }
}

fn with_root<'a>(root: &'a Path, args: &'a [&'a str]) -> Vec<&'a OsStr> {
    let mut v: Vec<&OsStr> = vec![OsStr::new("--root"), root.as_os_str()];
    v.extend(args.iter().map(OsStr::new));
    v
}

/// A relative symlink target from the directory `from` (a host path) to `to`.
fn climb_to(from: &Path, to: &Path) -> PathBuf {
    let up = from.components().count() - 1;
    let mut p = PathBuf::from("../".repeat(up));
    p.push(to.strip_prefix("/").unwrap());
    p
}

#[test]
fn a_relative_link_out_of_the_root_is_refused_and_nothing_is_written_outside() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let outside = tempfile::tempdir().unwrap();
    // The whole PKI lives outside the root, reached by a relative link whose `..`
    // climb past the root: the kernel would follow it there.
    let pki = host(r, "/etc/kubernetes/pki");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&pki)
        .arg(outside.path().join("pki"))
        .status()
        .unwrap()
        .success());
    std::fs::remove_dir_all(&pki).unwrap();
    let kube = host(r, "/etc/kubernetes");
    std::os::unix::fs::symlink(climb_to(&kube, &outside.path().join("pki")), &pki).unwrap();
    assert!(pki.join("ca.crt").is_file(), "the kernel follows the link");
    let before = snapshot(outside.path());
    let run = run_bounded(None, &with_root(r, &["renew-all"]));
    assert!(
        run.code.is_some_and(|c| c != 0),
        "renew-all must fail: {:?} {}",
        run.code,
        run.output
    );
    assert!(
        run.output.contains("/etc/kubernetes/pki") && run.output.contains("outside the root"),
        "{}",
        run.output
    );
    assert_eq!(
        before,
        snapshot(outside.path()),
        "renew-all wrote outside --root"
    );
    let (v, code) = status_json(r);
    assert_eq!(code, 1);
    let e = cert(&v, "apiserver")["error"].as_str().unwrap().to_string();
    assert!(
        e.starts_with("/etc/kubernetes/pki/apiserver.crt: the symlink /etc/kubernetes/pki ->"),
        "{e}"
    );

    // A leaf link with enough `..` is refused the same way.
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let leaf = host(r, "/etc/kubernetes/pki/apiserver.crt");
    std::fs::copy(&leaf, outside.path().join("apiserver.crt")).unwrap();
    std::fs::remove_file(&leaf).unwrap();
    std::os::unix::fs::symlink(
        climb_to(
            leaf.parent().unwrap(),
            &outside.path().join("apiserver.crt"),
        ),
        &leaf,
    )
    .unwrap();
    let before = snapshot(outside.path());
    let run = run_bounded(
        None,
        &with_root(r, &["renew", "/etc/kubernetes/pki/apiserver.crt"]),
    );
    assert!(run.code.is_some_and(|c| c != 0), "{}", run.output);
    assert!(
        run.output.contains("/etc/kubernetes/pki/apiserver.crt")
            && run.output.contains("outside the root"),
        "{}",
        run.output
    );
    assert_eq!(before, snapshot(outside.path()));
}

#[test]
fn a_fifo_in_place_of_kubelet_conf_is_an_error_not_a_hang() {
    let d = node(&NodeSpec::worker(now()));
    let r = d.path();
    let conf = host(r, "/etc/kubernetes/kubelet.conf");
    std::fs::remove_file(&conf).unwrap();
    nix::unistd::mkfifo(
        &conf,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["run", "--dry-run"],
    ] {
        let run = run_bounded(None, &with_root(r, args));
        assert!(
            run.output.contains("/etc/kubernetes/kubelet.conf") && run.output.contains("FIFO"),
            "{args:?}: {}",
            run.output
        );
        assert!(run.code.is_some(), "{args:?}: {}", run.output);
    }
    let run = run_bounded(None, &with_root(r, &["status", "--json"]));
    assert_eq!(run.code, Some(1), "{}", run.output);
}

#[test]
fn devices_and_huge_files_are_errors_read_in_little_memory() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    // kubelet.conf -> /dev/zero: an absolute link resolves under the root, where there
    // is no /dev/zero; the kernel alone would have read the host's forever.
    let conf = host(r, "/etc/kubernetes/kubelet.conf");
    std::fs::remove_file(&conf).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &conf).unwrap();
    // admin.conf -> a character device inside the root.
    std::fs::create_dir_all(host(r, "/dev")).unwrap();
    nix::sys::stat::mknod(
        &host(r, "/dev/zero"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 5),
    )
    .expect("mknod (tests run as root)");
    let admin = host(r, "/etc/kubernetes/admin.conf");
    std::fs::remove_file(&admin).unwrap();
    std::os::unix::fs::symlink("../../dev/zero", &admin).unwrap();
    // apiserver.crt: a 1 GiB sparse file.
    let big = host(r, "/etc/kubernetes/pki/apiserver.crt");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let run = run_bounded(None, &with_root(r, &["status", "--json"]));
    assert_eq!(run.code, Some(1), "{}", run.output);
    assert!(
        run.max_rss_kib < 100 * 1024,
        "status used {} MiB",
        run.max_rss_kib / 1024
    );
    let v: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.output));
    for (name, path, problem) in [
        (
            "apiserver",
            "/etc/kubernetes/pki/apiserver.crt",
            "is larger than",
        ),
        (
            "admin.conf",
            "/etc/kubernetes/admin.conf: is a character device",
            "(at /dev/zero,",
        ),
        (
            "kubelet.conf",
            "/etc/kubernetes/kubelet.conf: is a character device",
            "(at /dev/zero,",
        ),
    ] {
        let e = cert(&v, name)["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error in {v:#}"))
            .to_string();
        assert!(e.contains(path) && e.contains(problem), "{name}: {e}");
    }
}

#[test]
fn a_missing_root_exits_2_creating_nothing_and_a_relative_root_works() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no-such-node");
    for args in [&["run"][..], &["status"], &["renew-all"], &["recover"]] {
        let run = run_bounded(None, &with_root(&missing, args));
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.output);
        assert!(
            run.output.contains("no-such-node"),
            "{args:?}: {}",
            run.output
        );
        assert!(!missing.exists(), "{args:?} created the root");
    }
    std::fs::write(&missing, b"").unwrap();
    let run = run_bounded(None, &with_root(&missing, &["status"]));
    assert_eq!(run.code, Some(2), "{}", run.output);
    assert!(run.output.contains("not a directory"), "{}", run.output);

    let n = node(&NodeSpec::worker(now()));
    let parent = n.path().parent().unwrap();
    let name = Path::new(n.path().file_name().unwrap());
    let run = run_bounded(Some(parent), &with_root(name, &["status", "--json"]));
    assert_eq!(run.code, Some(0), "{}", run.output);
    assert!(run.output.contains("/var/lib/kubelet/pki/kubelet.crt"));
    let run = run_bounded(Some(parent), &with_root(name, &["renew-all"]));
    assert_eq!(run.code, Some(0), "{}", run.output);
    assert!(host(n.path(), "/var/lib/cert-rotator/backup").is_dir());
}

#[test]
fn a_dangling_link_above_the_state_dir_is_an_error_not_a_crash() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let cfg = host(r, "/etc/cert-rotator/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "state_dir = \"/srv/agent/state\"\n").unwrap();
    std::os::unix::fs::symlink("/nowhere", host(r, "/srv")).unwrap();
    for args in [&["renew-all"][..], &["run"], &["recover"]] {
        let run = run_bounded(None, &with_root(r, args));
        assert!(
            run.code.is_some_and(|c| c != 0),
            "{args:?} must fail cleanly, not abort: {:?} {}",
            run.code,
            run.output
        );
        assert!(
            run.output.contains("/srv: dangling symlink to /nowhere"),
            "{args:?}: {}",
            run.output
        );
    }
    assert!(!host(r, "/nowhere").exists());
}

#[test]
fn agent_paths_naming_kubeadm_files_are_configuration_errors() {
    let d = node(&NodeSpec::control_plane(now()));
    let r = d.path();
    let cfg = host(r, "/etc/cert-rotator/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    let ca = std::fs::read(host(r, "/etc/kubernetes/pki/ca.crt")).unwrap();
    for (toml, key) in [
        (
            "metrics_file = \"/etc/kubernetes/pki/ca.crt\"\n",
            "metrics_file",
        ),
        ("state_dir = \"/etc/kubernetes/manifests\"\n", "state_dir"),
    ] {
        std::fs::write(&cfg, toml).unwrap();
        let before = snapshot(r);
        for args in [&["config", "check"][..], &["status"], &["run"]] {
            let run = run_bounded(None, &with_root(r, args));
            assert_eq!(run.code, Some(2), "{toml} {args:?}: {}", run.output);
            assert!(
                run.output.contains("/etc/cert-rotator/config.toml")
                    && run.output.contains(&format!("{key} = ")),
                "{args:?}: {}",
                run.output
            );
        }
        assert_eq!(before, snapshot(r), "{toml}: something was written");
        assert_eq!(
            std::fs::read(host(r, "/etc/kubernetes/pki/ca.crt")).unwrap(),
            ca
        );
    }
}

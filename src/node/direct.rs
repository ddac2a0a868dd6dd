//! The common case in one system call: a node path with no symlink at any depth, opened
//! by the kernel with `openat2(..., RESOLVE_NO_SYMLINKS)` (Linux 5.6).
//!
//! When that open succeeds no component was a symlink, so the gate's walk ([`resolve`])
//! would have found the path as it is written: the kernel made the check and the open
//! one step, and nothing can change between them. When it fails with ENOENT, every
//! component up to the missing one was a real directory (a symlink stops the kernel
//! with ELOOP first), so the walk would find nothing there either. Any other failure (a
//! symlink on the way, such as the kubelet's `kubelet-client-current.pem`, a permission,
//! a file used as a directory) leaves it to the walk, which follows links inside the
//! root and says what is wrong.
//!
//! Where `openat2` itself is unavailable (an older kernel, a seccomp filter that refuses
//! it) every open would pay for a failed call first; the first such answer turns the
//! fast path off for the rest of the process ([`unavailable`]).
//!
//! [`resolve`]: super::resolve

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

use super::NodeRoot;

/// Whether `openat2` is worth trying in this process: cleared for good by the first
/// answer that says the call itself is unavailable. The kernel and a seccomp filter are
/// the process's, so one answer holds for every root and path.
static USABLE: AtomicBool = AtomicBool::new(true);

/// What the kernel said about a normal node path, opened without following symlinks.
pub(super) enum Direct {
    /// Opened: no symlink at any depth.
    Opened(OwnedFd),
    /// Nothing there, and no symlink on the way to where it is missing.
    Absent(io::Error),
    /// Anything else: the walk decides.
    Walk,
}

/// Whether a failure of `openat2` says the call is unavailable here, rather than
/// something about one path: ENOSYS (a kernel before 5.6, or a seccomp filter's default
/// answer), EPERM (what older seccomp profiles answer for a call they do not know), E2BIG
/// and EINVAL (a kernel that does not know this `struct open_how` or a resolve flag).
/// ELOOP (a symlink on the way), ENOENT, EACCES, ENOTDIR, ENXIO ... concern one path
/// and must not turn it off. EPERM and EINVAL can also, rarely, concern one file (a
/// fanotify denial, a name the file system refuses); turning the fast path off then
/// costs only speed: the walk gives the same answers.
pub(super) fn unavailable(e: Errno) -> bool {
    matches!(
        e,
        Errno::ENOSYS | Errno::EPERM | Errno::E2BIG | Errno::EINVAL
    )
}

/// Opens for reading: the gate's flags, never following a symlink.
pub(super) fn read_how(flags: i32) -> OpenHow {
    OpenHow::new()
        .flags(OFlag::from_bits_retain(flags) | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS)
}

/// Opens the entry itself, to learn what is there (`O_PATH | O_NOFOLLOW`: a symlink at
/// the end is opened as the link, not followed nor refused).
pub(super) fn entry_how() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS)
}

/// Opens what the path leads to, only to learn where that is (`O_PATH`: a symlink at the
/// end is refused like any other, so the walk follows it).
pub(super) fn follow_how() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS)
}

impl NodeRoot {
    /// `normal` (a node path in [`super::normalize`]'s form) opened by the kernel alone.
    pub(super) fn open_direct(&self, normal: &Path, how: OpenHow) -> Direct {
        self.open_direct_with(normal, how, &USABLE)
    }

    /// [`Self::open_direct`], with whether `openat2` is worth trying kept in `usable`
    /// (the process's flag; a test's own).
    fn open_direct_with(&self, normal: &Path, how: OpenHow, usable: &AtomicBool) -> Direct {
        if !usable.load(Ordering::Relaxed) {
            return Direct::Walk;
        }
        let host = self.host(normal);
        // A NUL byte cannot be passed to the kernel: nix answers EINVAL without a call,
        // which would read as "openat2 unavailable". Such a path (from a kubeconfig or
        // the configuration) is about itself only: the walk says what is wrong with it.
        if host.as_os_str().as_bytes().contains(&0) {
            return Direct::Walk;
        }
        #[cfg(test)]
        tests::CALLS.with(|c| c.set(c.get() + 1));
        match openat2(nix::fcntl::AT_FDCWD, &host, how) {
            Ok(fd) => Direct::Opened(fd),
            Err(Errno::ENOENT) => Direct::Absent(io::Error::from(Errno::ENOENT)),
            Err(e) => {
                if unavailable(e) {
                    usable.store(false, Ordering::Relaxed);
                }
                Direct::Walk
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// `openat2` calls made on this thread (each test runs on its own).
        pub(super) static CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn only_an_unavailable_call_turns_the_fast_path_off() {
        for e in [Errno::ENOSYS, Errno::EPERM, Errno::E2BIG, Errno::EINVAL] {
            assert!(unavailable(e), "{e}");
        }
        for e in [
            Errno::ELOOP,
            Errno::ENOENT,
            Errno::EACCES,
            Errno::ENOTDIR,
            Errno::ENXIO,
            Errno::EISDIR,
            Errno::EMFILE,
            Errno::ENAMETOOLONG,
            Errno::EXDEV,
            Errno::EAGAIN,
        ] {
            assert!(!unavailable(e), "{e}");
        }
    }

    /// Whether `openat2` answers in `dir` here; if not (a kernel before 5.6, a seccomp
    /// profile refusing it) says why the test that needs it is skipped.
    fn openat2_here(dir: &Path) -> bool {
        match openat2(nix::fcntl::AT_FDCWD, dir, follow_how()) {
            Ok(_) => true,
            Err(e) => {
                eprintln!("skipped: openat2 unavailable here ({e}): only the walk is used");
                false
            }
        }
    }

    /// A path with a NUL byte goes to the walk and leaves the fast path on: nix's
    /// EINVAL for it says nothing about the kernel. The flag is the test's own, so tests
    /// running at the same time neither see nor change the process's.
    #[test]
    fn a_path_with_a_nul_byte_leaves_the_fast_path_on() {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path().canonicalize().unwrap());
        let usable = AtomicBool::new(true);
        for p in ["/etc/kubernetes/admin\0.conf", "/etc/\0/x"] {
            for how in [read_how(0), entry_how(), follow_how()] {
                let answer = root.open_direct_with(Path::new(p), how, &usable);
                assert!(matches!(answer, Direct::Walk), "{p:?}");
            }
        }
        assert!(usable.load(Ordering::Relaxed));
        // What the check stands in front of: nix's answer for such a path.
        let nul = d.path().join("admin\0.conf");
        assert_eq!(
            openat2(nix::fcntl::AT_FDCWD, &nul, read_how(0)).unwrap_err(),
            Errno::EINVAL
        );
    }

    /// What each answer of the kernel leads to, on a kernel that has openat2.
    #[test]
    fn a_path_without_links_is_opened_and_any_link_goes_to_the_walk() {
        let d = tempfile::tempdir().unwrap();
        if !openat2_here(d.path()) {
            return;
        }
        let root = NodeRoot::new(d.path().canonicalize().unwrap());
        let usable = AtomicBool::new(true);
        std::fs::create_dir_all(d.path().join("etc/kubernetes")).unwrap();
        std::fs::write(d.path().join("etc/kubernetes/admin.conf"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/kubernetes", d.path().join("etc/k")).unwrap();
        std::os::unix::fs::symlink("admin.conf", d.path().join("etc/kubernetes/a")).unwrap();
        let open = |p: &str, how| root.open_direct_with(Path::new(p), how, &usable);
        let how = || read_how(0);
        assert!(matches!(
            open("/etc/kubernetes/admin.conf", how()),
            Direct::Opened(_)
        ));
        // Missing at the end or on the way, with no link before it.
        for p in ["/etc/kubernetes/none.conf", "/none/x/y"] {
            let Direct::Absent(e) = open(p, how()) else {
                panic!("{p}")
            };
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
        }
        // A link anywhere, even before a missing name, is the walk's.
        for p in ["/etc/k/admin.conf", "/etc/kubernetes/a", "/etc/k/none.conf"] {
            assert!(matches!(open(p, how()), Direct::Walk), "{p}");
        }
        // The entry itself: a link at the end is there, not followed.
        assert!(matches!(
            open("/etc/kubernetes/a", entry_how()),
            Direct::Opened(_)
        ));
        assert!(matches!(open("/etc/k/a", entry_how()), Direct::Walk));
        // What it leads to: a link at the end is the walk's.
        assert!(matches!(
            open("/etc/kubernetes/a", follow_how()),
            Direct::Walk
        ));
        assert!(matches!(
            open("/etc/kubernetes", follow_how()),
            Direct::Opened(_)
        ));
        // A file used as a directory concerns the path: the walk says what is wrong,
        // and the fast path stays on.
        assert!(matches!(
            open("/etc/kubernetes/admin.conf/x", how()),
            Direct::Walk
        ));
        assert!(usable.load(Ordering::Relaxed));
    }

    /// Once an answer said the call is unavailable (see [`unavailable`]), every open goes
    /// to the walk without asking the kernel; the flag is the test's own.
    #[test]
    fn once_off_every_open_goes_to_the_walk() {
        let d = tempfile::tempdir().unwrap();
        if !openat2_here(d.path()) {
            return;
        }
        std::fs::write(d.path().join("ca.crt"), b"x").unwrap();
        let root = NodeRoot::new(d.path().canonicalize().unwrap());
        let usable = AtomicBool::new(false);
        let answer = root.open_direct_with(Path::new("/ca.crt"), read_how(0), &usable);
        assert!(matches!(answer, Direct::Walk));
        usable.store(true, Ordering::Relaxed);
        let answer = root.open_direct_with(Path::new("/ca.crt"), read_how(0), &usable);
        assert!(matches!(answer, Direct::Opened(_)));
    }

    /// A path the kernel left to the walk (a symlink at the end, as the kubelet's
    /// `kubelet-client-current.pem`) costs one `openat2`, not a second failing one.
    #[test]
    fn a_path_with_a_link_asks_the_kernel_once() {
        let d = tempfile::tempdir().unwrap();
        if !openat2_here(d.path()) {
            return;
        }
        std::fs::create_dir_all(d.path().join("pki")).unwrap();
        std::fs::write(d.path().join("pki/kubelet-client-1.pem"), b"x").unwrap();
        std::os::unix::fs::symlink(
            "/pki/kubelet-client-1.pem",
            d.path().join("pki/kubelet-client-current.pem"),
        )
        .unwrap();
        let root = NodeRoot::new(d.path().canonicalize().unwrap());
        let current = Path::new("/pki/kubelet-client-current.pem");
        std::os::unix::fs::symlink("/pki", d.path().join("k")).unwrap();
        let calls = |f: &dyn Fn()| {
            let before = CALLS.with(|c| c.get());
            f();
            CALLS.with(|c| c.get()) - before
        };
        let usable = || USABLE.load(Ordering::Relaxed);
        // Where another test turned the process's fast path off, nothing is asked.
        let once = |n: usize| n == usize::from(usable());
        assert!(once(calls(&|| assert!(root.open_file(current).is_ok()))));
        assert!(once(calls(&|| assert!(root.exists(current)))));
        let missing = Path::new("/k/none.pem");
        assert!(once(calls(&|| assert!(!root.exists(missing)))));
        assert!(once(calls(&|| assert!(root.read_file(missing).is_err()))));
    }

    #[test]
    fn an_absent_path_is_the_os_error_the_walk_reports() {
        let e = io::Error::from(Errno::ENOENT);
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let std = std::fs::File::open("/nonexistent/cert-rotator/x").unwrap_err();
        assert_eq!(e.to_string(), std.to_string());
    }
}

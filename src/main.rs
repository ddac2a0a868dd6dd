//! One executable for both tools: `cert-rotator` (the agent and its subcommands) and
//! `cert-renew` (the manual renewal tool), chosen by the name it is run as. The packages
//! install `/usr/bin/cert-renew` as a symlink to `/usr/bin/cert-rotator`, so the two share
//! one copy of the code on disk (docs/packaging.md).

use std::ffi::OsStr;
use std::path::Path;
use std::process::ExitCode;

/// The name `cert-renew` dispatches to the manual tool.
const CERT_RENEW: &str = "cert-renew";

fn main() -> ExitCode {
    // argv[0] as given by the caller (the symlink's name, not its target's): a missing or
    // odd argv[0] (execve with an empty argv, a non-UTF-8 name) is the agent, whose
    // behaviour is the default.
    let argv0 = std::env::args_os().next();
    if runs_as_cert_renew(argv0.as_deref()) {
        cert_rotator::cli::cert_renew_main()
    } else {
        cert_rotator::cli::main()
    }
}

/// True when the file name of `argv0` is exactly `cert-renew` (`/usr/bin/cert-renew`,
/// `./cert-renew`, `cert-renew` from $PATH).
fn runs_as_cert_renew(argv0: Option<&OsStr>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == CERT_RENEW)
}

#[cfg(test)]
mod tests {
    use super::runs_as_cert_renew;
    use std::ffi::OsStr;

    #[test]
    fn dispatches_on_the_file_name_of_argv0() {
        for a in [
            "cert-renew",
            "/usr/bin/cert-renew",
            "./cert-renew",
            "../x/cert-renew",
        ] {
            assert!(runs_as_cert_renew(Some(OsStr::new(a))), "{a}");
        }
        for a in [
            "cert-rotator",
            "/usr/bin/cert-rotator",
            "cert-renew.old",
            "xcert-renew",
            "",
        ] {
            assert!(!runs_as_cert_renew(Some(OsStr::new(a))), "{a}");
        }
        assert!(!runs_as_cert_renew(None));
    }
}

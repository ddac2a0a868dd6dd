//! Restarts one systemd unit through [`cert_rotator::restart::SystemdManager`] and
//! prints the result with the old and new InvocationID: the check of that edge on a
//! booted systemd (tests/e2e/restart_selftest.sh). The manager connects on its first
//! call, as in a pass.
//!
//! ```sh
//! restart_unit UNIT [TIMEOUT_SECONDS]
//! ```
//!
//! Prints `key=value` lines on stdout (`unit`, `state-before`, `old-invocation-id`,
//! `job`, `result`, `new-invocation-id`); on failure `error: ...` on stderr and exit 1.

use std::process::ExitCode;
use std::time::Duration;

use cert_rotator::restart::{ServiceManager, SystemdManager};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (unit, secs) = match args.as_slice() {
        [u] => (u.as_str(), 30),
        [u, t] => match t.parse::<u64>() {
            Ok(s) => (u.as_str(), s),
            Err(_) => return usage(),
        },
        _ => return usage(),
    };
    let m = SystemdManager::new();
    println!("unit={unit}");
    // Only informative: restart_unit reads the state itself and reports a missing unit
    // (or an unreachable systemd).
    if let Ok(s) = m.unit_state(unit) {
        println!("state-before={}/{}", s.active_state, s.sub_state);
    }
    match m.restart_unit(unit, Duration::from_secs(secs)) {
        Ok(r) => {
            println!(
                "old-invocation-id={}",
                r.previous_invocation_id.as_deref().unwrap_or("-")
            );
            println!("job={}", r.job);
            println!("result={}", r.result);
            println!("new-invocation-id={}", r.invocation_id);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &cert_rotator::restart::RestartError) -> ExitCode {
    // The error's message already includes its cause.
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn usage() -> ExitCode {
    eprintln!("usage: restart_unit UNIT [TIMEOUT_SECONDS]");
    ExitCode::from(2)
}

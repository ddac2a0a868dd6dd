//! The thread that keeps a held slot's lease alive while the component restarts and
//! verifies.
//!
//! A keep-alive that fails (a member that does not answer, an unreadable or error
//! answer, etcd without a leader while this very pass restarts it) is retried, from the
//! next member, until the lease's TTL has really passed since the last renewal: up to
//! then etcd still keeps the lease, and one more renewal saves the slot. The lease is
//! lost only when etcd says it no longer knows it, or when the TTL passed without a
//! renewal (etcd has let it expire by then). Either way the thread stops, says so in
//! the journal, and leaves the reason for the slot's release to report
//! ([`Keeper::stop`]).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gateway::{Gateway, Renewal};

/// How soon a failed keep-alive is tried again (each try is bounded by the time left
/// of the lease, so this only spaces out members that fail at once).
pub(super) const RETRY: Duration = Duration::from_millis(250);

/// A running keep-alive thread.
pub(super) struct Keeper {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    lost: Arc<Mutex<Option<String>>>,
}

/// The lease's timing: its TTL, and how often it is renewed while all is well.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    pub(super) ttl: Duration,
    pub(super) every: Duration,
}

impl Timing {
    /// A third of the TTL between renewals (at least half a second): two renewals can
    /// fail before the lease is in danger.
    pub(super) fn for_ttl(ttl_seconds: u64) -> Timing {
        Timing {
            ttl: Duration::from_secs(ttl_seconds),
            every: Duration::from_millis((ttl_seconds * 1000 / 3).max(500)),
        }
    }
}

impl Keeper {
    /// Starts renewing `lease`, granted (or last renewed) at `granted`.
    pub(super) fn start(gw: Arc<Gateway>, lease: String, t: Timing, granted: Instant) -> Keeper {
        let (stop, rx) = mpsc::channel::<()>();
        let lost = Arc::new(Mutex::new(None));
        let said = Arc::clone(&lost);
        let thread = std::thread::spawn(move || {
            if let Some(why) = keep(&gw, &lease, t, granted, &rx) {
                tracing::error!(
                    "coordination: {why}: the restart slot is lost, another node may take it"
                );
                *said.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            }
        });
        Keeper { stop, thread, lost }
    }

    /// Stops the renewals; why the lease was lost before, if it was.
    pub(super) fn stop(self) -> Option<String> {
        let _ = self.stop.send(());
        let _ = self.thread.join();
        let lost = self.lost.lock().unwrap_or_else(|p| p.into_inner()).take();
        lost
    }
}

/// Renews until told to stop (`None`) or the lease is lost (`Some(why)`).
fn keep(
    gw: &Gateway,
    lease: &str,
    t: Timing,
    granted: Instant,
    stop: &mpsc::Receiver<()>,
) -> Option<String> {
    // Until when etcd keeps the lease without another renewal.
    let mut expires = granted + t.ttl;
    let mut last_error: Option<String> = None;
    loop {
        let wait = if last_error.is_some() { RETRY } else { t.every };
        let wait = wait.min(expires.saturating_duration_since(Instant::now()));
        match stop.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return None,
        }
        let sent = Instant::now();
        if sent >= expires {
            return Some(format!(
                "lease {lease} expired: no keep-alive succeeded within its {}s TTL (last error: {})",
                t.ttl.as_secs(),
                last_error.as_deref().unwrap_or("none")
            ));
        }
        // No answer is worth waiting for past the lease's end.
        match gw.keepalive(lease, (sent + gw.timeout).min(expires)) {
            Ok(Renewal::Renewed(ttl)) => {
                if let Some(e) = last_error.take() {
                    tracing::info!(
                        "coordination: keep-alive of lease {lease} succeeded again after: {e}"
                    );
                }
                // The renewal took effect at the latest when it was sent: counting from
                // then never overestimates the lease.
                expires = sent + ttl;
            }
            Ok(Renewal::Gone) => {
                return Some(format!(
                    "etcd no longer knows lease {lease} (it expired or was revoked)"
                ))
            }
            Err(e) => {
                tracing::warn!("coordination: keep-alive of lease {lease} failed, trying again until it expires: {e}");
                last_error = Some(e.to_string());
            }
        }
    }
}

//! The clock behind a seam, so a pass can be replayed at a chosen instant: the plan's
//! `now` stamps what a pass writes, a [`Clock`] paces restarts and bounds waits.

use std::time::Duration;

use time::OffsetDateTime;

/// Wall-clock time and sleeping. One real implementation, [`SystemClock`]; tests use
/// a fake that advances when asked to sleep.
pub trait Clock {
    fn now(&self) -> OffsetDateTime;
    fn sleep(&self, d: Duration);
}

/// The host's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

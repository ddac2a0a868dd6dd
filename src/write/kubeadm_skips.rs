//! How long passes have been skipped for kubeadm: `<state>/kubeadm-skipped.json`,
//! written by `run` when it skips, removed by the first pass that goes ahead, shown by
//! `status`. A kubeadm that never finishes must be visible before the no-recent-success
//! alert fires, and an operator must see since when nothing was renewed. One of the
//! agent's records in the state directory (beside journal.json), so it lives with them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{StateDir, WriteError};

/// The record's name in the state directory.
pub const FILE: &str = "kubeadm-skipped.json";

/// Passes skipped in a row because kubeadm was at work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skips {
    /// The first skipped pass of the row.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// The latest one.
    #[serde(with = "time::serde::rfc3339")]
    pub last: OffsetDateTime,
    pub passes: u64,
    /// What the latest one saw (the activity, in words).
    pub why: String,
}

impl Skips {
    /// One line for `status`.
    pub fn describe(&self, now: OffsetDateTime) -> String {
        let secs = (now - self.since).whole_seconds().max(0);
        format!(
            "{} pass(es) skipped since {} ({} ago) because kubeadm was at work; the latest at {}: {}",
            self.passes,
            crate::timefmt::rfc3339(self.since),
            human(secs),
            crate::timefmt::rfc3339(self.last),
            self.why
        )
    }
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The record, if passes are being skipped. An unreadable one is an error naming it.
pub fn read(state: &StateDir) -> Result<Option<Skips>, WriteError> {
    state.read_json(FILE)
}

/// Records one more skipped pass (the row starts now when there was none).
pub fn record(state: &StateDir, at: OffsetDateTime, why: &str) -> Result<Skips, WriteError> {
    // An unreadable record starts a new row: it is ours to rewrite, and it only ever
    // makes the skipped time look shorter.
    let previous = read(state).ok().flatten();
    let skips = Skips {
        since: previous.as_ref().map_or(at, |p| p.since.min(at)),
        last: at,
        passes: previous.as_ref().map_or(0, |p| p.passes).saturating_add(1),
        why: why.to_string(),
    };
    state.write_json(FILE, &skips)?;
    Ok(skips)
}

/// Ends the row: a pass went ahead.
pub fn clear(state: &StateDir) -> Result<(), WriteError> {
    state.remove_record(FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeRoot;

    #[test]
    fn a_row_of_skips_is_counted_from_its_first_and_cleared() {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path());
        let s = StateDir::new(&root, std::path::Path::new("/var/lib/cr"), 3);
        let t0 = time::macros::datetime!(2026-12-01 10:00 UTC);
        assert_eq!(read(&s).unwrap(), None);
        record(&s, t0, "kubeadm is at work").unwrap();
        let r = record(&s, t0 + time::Duration::hours(25), "again").unwrap();
        assert_eq!((r.since, r.passes), (t0, 2));
        let text = r.describe(t0 + time::Duration::hours(26));
        assert!(
            text.starts_with("2 pass(es) skipped since 2026-12-01T10:00:00Z (26h ago)"),
            "{text}"
        );
        clear(&s).unwrap();
        assert_eq!(read(&s).unwrap(), None);
        clear(&s).unwrap();
    }
}

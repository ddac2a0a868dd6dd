//! Probe first: before restarting a group's component, does it already serve what was
//! just written (it reloaded the files by itself), or is it down?

use std::time::Duration as StdDuration;

use time::Duration;

use super::{status, Live};
use crate::report::event::PassEvent;
use crate::verify::before::{self, BeforeRestart};

/// How long a component that reloads every renewed file by itself is given to serve
/// the new certificate before it is restarted after all (docs/reloads.md: the
/// apiserver's and the kubelet's file watches take about a second).
const RELOAD_GRACE_SECONDS: i64 = 5;

impl Live<'_, '_> {
    /// Before a restart, one probe of the component: does it serve what was just
    /// written already, or does it not answer at all? Groups that restart nothing are
    /// not probed here (verification follows).
    pub(super) fn probe_first(&self) -> BeforeRestart {
        let Some(component) = self.group.component.as_ref() else {
            return BeforeRestart::Restart;
        };
        if !self.group.reload.is_restart() {
            return BeforeRestart::Restart;
        }
        let root = self.pass.root;
        let eps = self.pass.node.endpoints(component);
        status(&format!("probing {} before restarting it", self.comp));
        let renewed: Vec<before::Renewed> = self
            .group
            .targets
            .iter()
            .map(|t| before::Renewed {
                names: vec![t.target.path.clone(), t.reading.cert_file.clone()],
                reloaded_by_itself: before::reloads_by_itself(component, &t.name),
            })
            .collect();
        // A component that reloads every renewed file by itself gets a moment to do so
        // (a file watch): a restart it would not have needed costs availability.
        let clock = self.edges.clock;
        let grace = if self.reload_grace_spent.replace(true) {
            0
        } else {
            RELOAD_GRACE_SECONDS
        };
        let until = clock.now() + Duration::seconds(grace);
        loop {
            let seen = before::probe_once(self.edges.prober, root, &eps);
            let decision = before::decide(&renewed, &seen);
            if decision != BeforeRestart::Restart
                || !before::worth_waiting_for(&renewed, &seen)
                || clock.now() >= until
            {
                return decision;
            }
            clock.sleep(StdDuration::from_millis(500));
        }
    }

    /// The restart not made, said in the journal.
    pub(super) fn restart_avoided(&self) -> PassEvent {
        let avoided = PassEvent::RestartAvoided {
            component: self.comp.to_string(),
            reload: self.group.reload.clone(),
        };
        crate::report::journal::log(&avoided);
        avoided
    }
}

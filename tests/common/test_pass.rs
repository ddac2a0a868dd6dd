//! One way for the tests to make a [`Pass`]: over a node's root, settings and state,
//! files only until told otherwise, or live on edges the test hands in (the fakes of
//! [`super::fakes`], or the real clock). What a test makes unusual (a restart lock,
//! restarts other than these) stays at its call site: `.lock(..)`, `.restarts(..)`.

use cert_rotator::clock::Clock;
use cert_rotator::config::Settings;
use cert_rotator::coordination::RestartLock;
use cert_rotator::inventory::NodeReader;
use cert_rotator::node::NodeRoot;
use cert_rotator::pass::{self, Edges, Overrides, Pass, Restarts};
use cert_rotator::plan::Plan;
use cert_rotator::report::pass::PassReport;
use cert_rotator::restart::ServiceManager;
use cert_rotator::verify::Prober;
use cert_rotator::write::StateDir;

/// What a test's pass is made of; [`with`](Self::with) makes it, with the node model
/// the CLI makes once per command.
pub struct TestPass<'a> {
    root: &'a NodeRoot,
    settings: &'a Settings,
    state: &'a StateDir,
    restarts: Restarts<'a>,
}

impl<'a> TestPass<'a> {
    /// Files only ([`Restarts::NotLive`]: a tree under `--root` without `--live`), with
    /// the default overrides.
    pub fn new(root: &'a NodeRoot, settings: &'a Settings, state: &'a StateDir) -> Self {
        TestPass {
            root,
            settings,
            state,
            restarts: Restarts::NotLive,
        }
    }

    /// Restarts through these edges, uncoordinated (no lock).
    pub fn live(
        self,
        services: &'a dyn ServiceManager,
        prober: &'a dyn Prober,
        clock: &'a dyn Clock,
    ) -> Self {
        self.restarts(Restarts::Live(Edges {
            services,
            prober,
            clock,
            lock: None,
        }))
    }

    /// The cross-node restart lock of a live pass (`None`: uncoordinated).
    pub fn lock(mut self, lock: Option<&'a dyn RestartLock>) -> Self {
        match &mut self.restarts {
            Restarts::Live(edges) => edges.lock = lock,
            _ => panic!("a restart lock needs a live pass: call .live(..) first"),
        }
        self
    }

    pub fn restarts(mut self, restarts: Restarts<'a>) -> Self {
        self.restarts = restarts;
        self
    }

    /// Makes the pass and hands it to `f`.
    pub fn with<R>(&self, f: impl FnOnce(&Pass<'_>) -> R) -> R {
        let node = NodeReader::new(self.root, self.settings);
        f(&Pass {
            root: self.root,
            settings: self.settings,
            node: &node,
            state: self.state,
            overrides: Overrides::default(),
            restarts: self.restarts,
        })
    }

    /// Executes `plan`, reporting each result to no one.
    pub fn execute(&self, plan: &Plan) -> PassReport {
        self.with(|p| pass::execute(p, plan, &mut |_| {}))
    }
}

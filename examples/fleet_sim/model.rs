//! The fleet simulation's model: pure functions of the parameters and the seed, no I/O.
//! `main.rs` parses the command line and prints; `tests/fleet_sim.rs` includes this file
//! and checks the model's invariants.
//!
//! Time is `f64` seconds since [`epoch`] (a midnight UTC). Every certificate's due instant
//! and every "is it due now" come from the crate's own rule, [`cert_rotator::plan::assess`],
//! with the shipped [`WindowSettings`]; the queue (urgency order, one restart per
//! component, `max_restarts_per_pass`, `urgent_days`, `min_restart_gap_seconds`) mirrors
//! `plan::make_plan` and the sequencer, which need real certificate files and cannot be
//! called 50,000 times a day.
//!
//! Randomness is a counter-based SplitMix64 hash of (seed, stream, a, b): every node-day
//! has its own timer delay, the same in every scenario (common random numbers, so lock
//! and no-lock are compared on the same fleet), and no draw depends on the order in which
//! the simulation visits nodes. SplitMix64 passes BigCrush; for a Monte Carlo of this size
//! (millions of draws) that is ample, and it needs no crate.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use cert_rotator::config::WindowSettings;
use cert_rotator::plan::{assess, DueReason};
use time::{Duration, OffsetDateTime};

pub const MINUTE: f64 = 60.0;
pub const HOUR: f64 = 3_600.0;
pub const DAY: f64 = 86_400.0;
/// kubeadm's year (its certificates last `365 * 24h`): a cluster-year is 365 days.
pub const YEAR: f64 = 365.0 * DAY;
/// kubeadm backdates its CAs (CertificateBackdate) and the CSR signer its leaves by 5 min;
/// the agent backdates renewals by the same (issue::BACKDATE).
pub const BACKDATE: f64 = 5.0 * MINUTE;
/// client-go's self-signed kubelet.crt starts an hour before its creation and lasts 365 days.
pub const KUBELET_CRT_BACKDATE: f64 = HOUR;
/// How soon the kubelet tries again when it cannot rotate (the model's step; client-go
/// backs off to 32 s).
pub const KUBELET_RETRY: f64 = 10.0 * MINUTE;

pub fn epoch() -> OffsetDateTime {
    time::macros::datetime!(2026-01-01 0:00 UTC)
}

fn at(t: f64) -> OffsetDateTime {
    epoch() + Duration::seconds_f64(t)
}

// ---------------------------------------------------------------- randomness

pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a draw is for: each stream is independent of the others.
#[derive(Clone, Copy)]
pub enum Stream {
    TimerDelay = 1,
    ClusterInit,
    Join,
    Outage,
    Boot,
    BootPass,
    KubeletJitter,
    ProbeFail,
    ExemptDelay,
}

/// A uniform draw in [0, 1) for (seed, stream, a, b).
pub fn uniform(seed: u64, stream: Stream, a: u64, b: u64) -> f64 {
    let h = splitmix64(splitmix64(splitmix64(seed ^ ((stream as u64) << 56)) ^ a) ^ b);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

// ---------------------------------------------------------------- parameters

/// Who renews the kubelet's client certificate, besides the kubelet itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeletRule {
    /// As shipped: the agent's window (20% / 30 days: day 292 of 365).
    Window,
    /// The safety net: due once 90% of the lifetime passed (the kubelet's latest own
    /// deadline) or within `urgent_days`, i.e. the same rule with the per-target window
    /// `remaining_fraction = 0.1`, `remaining_days = urgent_days`.
    SafetyNet,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub clusters: u64,
    pub control_planes: usize,
    pub workers: usize,
    pub years: f64,
    pub seed: u64,
    /// The timer: OnCalendar=daily, RandomizedDelaySec (s), OnBootSec (s).
    pub randomized_delay: f64,
    pub on_boot: f64,
    /// `[window]` and `[run]` as shipped.
    pub window: WindowSettings,
    pub max_restarts_per_pass: usize,
    pub min_restart_gap: f64,
    pub urgent_days: f64,
    /// kubeadm leaves and the kubelet's client certificate (days), CAs (years).
    pub leaf_days: f64,
    pub kubelet_client_days: f64,
    pub ca_years: f64,
    /// Control-plane node k+1 joins U(1 min, join_gap_max) after node k; workers join
    /// U(0, worker_join_spread) after the last control-plane node.
    pub join_gap_max: f64,
    pub worker_join_spread: f64,
    /// Seconds a restarted kube-apiserver serves nothing (old container stopped until the
    /// new one is ready); controller-manager/scheduler until healthy; kubelet restart.
    pub apiserver_down: f64,
    pub cp_restart: f64,
    pub kubelet_restart: f64,
    /// A pass's work before its first group (inventory, plan) and per group (renewal).
    pub pass_overhead: f64,
    pub renew_time: f64,
    /// Probe interval of the verification after a restart.
    pub verify_slack: f64,
    /// The cross-node lock: one control-plane slot, taken before a kube-apiserver restart,
    /// released after verification; a pass waits at most lock_wait, else defers.
    pub lock: bool,
    pub lock_wait: f64,
    /// Already-broken components restart without the lock after a per-node
    /// deterministic delay in [0, exempt_spread).
    pub exempt_spread: f64,
    pub kubelet_rule: KubeletRule,
    /// Workers can renew the kubelet's client certificate ([ca.remote] configured);
    /// without it the agent leaves it (no CA key on a worker).
    pub worker_remote_ca: bool,
    /// Whole-cluster power-offs: probability per cluster-year, duration U(min, max) days;
    /// nodes boot within boot_spread of each other.
    pub outage_rate: f64,
    pub outage_days_min: f64,
    pub outage_days_max: f64,
    pub boot_spread: f64,
    /// Probability that a kube-apiserver is failing its probe when its pass restarts it
    /// (already broken: the exemption path).
    pub probe_fail: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            clusters: 1_000,
            control_planes: 3,
            workers: 50,
            years: 10.0,
            seed: 1,
            randomized_delay: HOUR,
            on_boot: 5.0 * MINUTE,
            window: WindowSettings::default(),
            max_restarts_per_pass: 2,
            min_restart_gap: 30.0,
            urgent_days: 14.0,
            leaf_days: 365.0,
            kubelet_client_days: 365.0,
            ca_years: 10.0,
            join_gap_max: 2.0 * HOUR,
            worker_join_spread: DAY,
            apiserver_down: 30.0,
            cp_restart: 10.0,
            kubelet_restart: 5.0,
            pass_overhead: 1.0,
            renew_time: 0.2,
            verify_slack: 1.0,
            lock: false,
            lock_wait: 600.0,
            exempt_spread: 600.0,
            kubelet_rule: KubeletRule::Window,
            worker_remote_ca: true,
            outage_rate: 0.01,
            outage_days_min: 30.0,
            outage_days_max: 365.0,
            boot_spread: 10.0 * MINUTE,
            probe_fail: 0.0,
        }
    }
}

// ---------------------------------------------------------------- the fleet's parts

/// What reloads a certificate, in the order kubeadm and the kubelet create them (the
/// plan's tie-break after urgency and renew_at).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Comp {
    Apiserver,
    Etcd,
    NoReload,
    ControllerManager,
    Scheduler,
    Kubelet,
}

impl Comp {
    fn restarts(self) -> bool {
        matches!(
            self,
            Comp::Apiserver | Comp::ControllerManager | Comp::Scheduler | Comp::Kubelet
        )
    }
}

/// One certificate, or several renewed together (the apiserver's four leaves share their
/// dates from kubeadm on and are due in the same pass).
#[derive(Clone, Debug)]
pub struct Cert {
    pub comp: Comp,
    pub rank: u8,
    pub client: bool,
    pub nb: f64,
    pub na: f64,
    pub renew_at: f64,
    pub window: WindowSettings,
    pub renewable: bool,
}

impl Cert {
    fn new(
        comp: Comp,
        rank: u8,
        nb: f64,
        na: f64,
        window: WindowSettings,
        renewable: bool,
    ) -> Cert {
        let mut c = Cert {
            comp,
            rank,
            client: false,
            nb,
            na,
            renew_at: 0.0,
            window,
            renewable,
        };
        c.set(nb, na);
        c
    }

    fn set(&mut self, nb: f64, na: f64) {
        self.nb = nb;
        self.na = na;
        self.renew_at = renew_at(&self.window, nb, na);
    }
}

/// The crate's rule: the instant a certificate valid [nb, na) becomes due.
pub fn renew_at(window: &WindowSettings, nb: f64, na: f64) -> f64 {
    let a = assess(window, at(nb), at(na), at(nb));
    (a.renew_at - epoch()).as_seconds_f64()
}

/// The crate's rule at `now`: `None` (not due), `Some(true)` expired, `Some(false)` due.
pub fn due(window: &WindowSettings, nb: f64, na: f64, now: f64) -> Option<bool> {
    assess(window, at(nb), at(na), at(now))
        .reason
        .map(|r| r == DueReason::Expired)
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: u64,
    pub control_plane: bool,
    pub certs: Vec<Cert>,
    /// The kubelet's own rotation deadline for its client certificate.
    pub kubelet_deadline: f64,
    pub kubelet_draws: u64,
    pub last_cp_restart: f64,
    /// Its client certificate expired and nobody on the node can renew it (counted once).
    pub client_lost: bool,
    pub version: u64,
    pub boots: Vec<f64>,
}

impl Node {
    fn client(&mut self) -> &mut Cert {
        self.certs
            .iter_mut()
            .find(|c| c.client)
            .expect("a kubelet client certificate")
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Outage {
    pub start: f64,
    pub end: f64,
}

/// One kube-apiserver restart: serving nothing during [start, end).
#[derive(Clone, Copy, Debug)]
pub struct Down {
    pub node: usize,
    pub start: f64,
    pub end: f64,
    /// Already broken (expired or failing its probe) when restarted: no lock taken.
    pub broken: bool,
}

/// Overlap categories of two kube-apiserver restarts of one cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pair {
    /// Both healthy before: what the lock must prevent.
    Healthy,
    /// A healthy one taken down while another, already broken, restarts.
    HealthyBroken,
    /// Both already broken: restarting them loses nothing.
    Broken,
}

/// Overlapping pairs among restarts of one cluster: (category, instant they overlap).
pub fn overlaps(downs: &mut [Down]) -> Vec<(Pair, f64)> {
    downs.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut out = Vec::new();
    for i in 0..downs.len() {
        for j in i + 1..downs.len() {
            if downs[j].start >= downs[i].end {
                break;
            }
            if downs[j].node == downs[i].node {
                continue;
            }
            let cat = match (downs[i].broken, downs[j].broken) {
                (false, false) => Pair::Healthy,
                (true, true) => Pair::Broken,
                _ => Pair::HealthyBroken,
            };
            out.push((cat, downs[j].start));
        }
    }
    out
}

/// The earliest instant >= t at which a hold of `dur` fits between `holds` (sorted by
/// start, disjoint). The lock grants in the order the passes reach it.
pub fn lock_slot(holds: &[(f64, f64)], t: f64, dur: f64) -> f64 {
    let mut c = t;
    for &(s, e) in holds {
        if c < e && c + dur > s {
            c = e;
        }
    }
    c
}

// ---------------------------------------------------------------- results

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub cluster_years: f64,
    pub cp_node_years: f64,
    pub worker_node_years: f64,
    /// Cluster-years with at least one overlap: any, and per category.
    pub cy_any: u64,
    pub cy_healthy: u64,
    pub cy_healthy_broken: u64,
    pub cy_broken: u64,
    pub pairs: [u64; 3],
    /// Per year of the cluster's life: clusters with an overlap that year [any, both
    /// healthy, healthy + broken, both broken].
    pub cy_by_year: Vec<[u64; 4]>,
    /// The same flags per cluster (clusters are the independent unit: confidence
    /// intervals are taken over them).
    pub cluster_flags: Vec<Vec<[u8; 4]>>,
    /// Restarts: [apiserver, controller-manager, scheduler, kubelet on control planes,
    /// kubelet on workers].
    pub restarts: [u64; 5],
    /// Kubelet restarts whose group renewed the client certificate (control planes, workers).
    pub kubelet_client_restarts: [u64; 2],
    /// The kubelet's own rotations through the API (control planes, workers).
    pub kubelet_self_rotations: [u64; 2],
    /// The same three, per year of the cluster's life (the CA's last year differs).
    pub restarts_by_year: Vec<[u64; 5]>,
    pub kubelet_client_by_year: Vec<[u64; 2]>,
    pub kubelet_self_by_year: Vec<[u64; 2]>,
    pub lock_acquired: u64,
    pub lock_waited: u64,
    pub lock_wait_total: f64,
    pub lock_wait_max: f64,
    pub lock_timeouts: u64,
    pub lock_unreachable: u64,
    pub broken_restarts: u64,
    pub expired_restarts: u64,
    pub outages: u64,
    pub unrenewable_expired_clients: u64,
    pub passes: u64,
}

impl Stats {
    pub fn merge(&mut self, o: &Stats) {
        self.cluster_years += o.cluster_years;
        self.cp_node_years += o.cp_node_years;
        self.worker_node_years += o.worker_node_years;
        self.cy_any += o.cy_any;
        self.cy_healthy += o.cy_healthy;
        self.cy_healthy_broken += o.cy_healthy_broken;
        self.cy_broken += o.cy_broken;
        for i in 0..3 {
            self.pairs[i] += o.pairs[i];
        }
        add_rows(&mut self.cy_by_year, &o.cy_by_year);
        self.cluster_flags.extend(o.cluster_flags.iter().cloned());
        for i in 0..5 {
            self.restarts[i] += o.restarts[i];
        }
        for i in 0..2 {
            self.kubelet_client_restarts[i] += o.kubelet_client_restarts[i];
            self.kubelet_self_rotations[i] += o.kubelet_self_rotations[i];
        }
        add_rows(&mut self.restarts_by_year, &o.restarts_by_year);
        add_rows(&mut self.kubelet_client_by_year, &o.kubelet_client_by_year);
        add_rows(&mut self.kubelet_self_by_year, &o.kubelet_self_by_year);
        self.lock_acquired += o.lock_acquired;
        self.lock_waited += o.lock_waited;
        self.lock_wait_total += o.lock_wait_total;
        self.lock_wait_max = self.lock_wait_max.max(o.lock_wait_max);
        self.lock_timeouts += o.lock_timeouts;
        self.lock_unreachable += o.lock_unreachable;
        self.broken_restarts += o.broken_restarts;
        self.expired_restarts += o.expired_restarts;
        self.outages += o.outages;
        self.unrenewable_expired_clients += o.unrenewable_expired_clients;
        self.passes += o.passes;
    }
}

fn add_rows<const N: usize>(a: &mut Vec<[u64; N]>, b: &[[u64; N]]) {
    if a.len() < b.len() {
        a.resize(b.len(), [0; N]);
    }
    for (x, y) in a.iter_mut().zip(b) {
        for i in 0..N {
            x[i] += y[i];
        }
    }
}

fn row<const N: usize>(v: &mut Vec<[u64; N]>, year: usize) -> &mut [u64; N] {
    if v.len() <= year {
        v.resize(year + 1, [0; N]);
    }
    &mut v[year]
}

impl Stats {
    /// Cluster-years in [from, to) with an overlap: [any, both healthy, healthy +
    /// broken, both broken].
    pub fn overlap_years(&self, from: usize, to: usize) -> [u64; 4] {
        let mut o = [0; 4];
        for row in self.cy_by_year.iter().take(to).skip(from) {
            for (acc, x) in o.iter_mut().zip(row) {
                *acc += x;
            }
        }
        o
    }

    /// Share of cluster-years in [from, to) with an overlap of category `k` (0 any, 1 both
    /// healthy, 2 healthy + broken, 3 both broken) and its 95% confidence interval over
    /// clusters (normal approximation of the per-cluster counts; with no event at all,
    /// the Wilson bound over cluster-years).
    pub fn overlap_share(&self, from: usize, to: usize, k: usize) -> (f64, f64, f64) {
        let n = self.cluster_flags.len() as f64;
        let years = (to - from) as f64;
        let per: Vec<f64> = self
            .cluster_flags
            .iter()
            .map(|f| {
                (from..to.min(f.len()))
                    .map(|y| f64::from(f[y][k]))
                    .sum::<f64>()
                    / years
            })
            .collect();
        let mean = per.iter().sum::<f64>() / n;
        if mean == 0.0 {
            let (lo, hi) = wilson(0.0, n * years);
            return (0.0, lo, hi);
        }
        let var = per.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let half = 1.96 * (var / n).sqrt();
        (mean, (mean - half).max(0.0), (mean + half).min(1.0))
    }

    /// Restarts [apiserver, controller-manager, scheduler, kubelet cp, kubelet worker],
    /// agent client renewals and kubelet rotations [cp, worker] in years [from, to).
    pub fn years(&self, from: usize, to: usize) -> ([u64; 5], [u64; 2], [u64; 2]) {
        let mut r = [0; 5];
        let mut c = [0; 2];
        let mut k = [0; 2];
        for y in from..to {
            if let Some(x) = self.restarts_by_year.get(y) {
                for i in 0..5 {
                    r[i] += x[i];
                }
            }
            if let Some(x) = self.kubelet_client_by_year.get(y) {
                c[0] += x[0];
                c[1] += x[1];
            }
            if let Some(x) = self.kubelet_self_by_year.get(y) {
                k[0] += x[0];
                k[1] += x[1];
            }
        }
        (r, c, k)
    }
}

// ---------------------------------------------------------------- one cluster

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pass,
    KubeletRotate,
    Boot,
}

#[derive(Clone, Copy, Debug)]
struct Event {
    t: f64,
    seq: u64,
    kind: Kind,
    node: usize,
    version: u64,
}

impl PartialEq for Event {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
/// A min-heap on (t, seq) through BinaryHeap's max-heap.
impl Ord for Event {
    fn cmp(&self, o: &Self) -> Ordering {
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}

struct Cluster<'p> {
    p: &'p Params,
    t_init: f64,
    horizon: f64,
    ca_end: f64,
    nodes: Vec<Node>,
    outages: Vec<Outage>,
    heap: BinaryHeap<Event>,
    seq: u64,
    holds: Vec<(f64, f64)>,
    downs: Vec<Down>,
    stats: Stats,
}

/// Simulates cluster `index` of the fleet and returns its statistics.
pub fn simulate_cluster(p: &Params, index: u64) -> Stats {
    let mut c = Cluster::build(p, index);
    c.run();
    c.finish()
}

/// The whole fleet.
pub fn simulate(p: &Params) -> Stats {
    let mut s = Stats::default();
    for i in 0..p.clusters {
        s.merge(&simulate_cluster(p, i));
    }
    s
}

impl<'p> Cluster<'p> {
    fn build(p: &'p Params, index: u64) -> Cluster<'p> {
        let seed = p.seed;
        let t_init = uniform(seed, Stream::ClusterInit, index, 0) * DAY;
        let ca_nb = t_init - BACKDATE;
        let ca_end = ca_nb + p.ca_years * YEAR;
        let horizon = (t_init + p.years * YEAR).min(ca_end);
        // Node ids do not depend on the number of workers: a sweep without workers
        // simulates the same control planes.
        let cp_id = |k: usize| (index << 20) | k as u64;
        let worker_id = |w: usize| (index << 20) | (1 << 16) | w as u64;
        let kubelet_window = match p.kubelet_rule {
            KubeletRule::Window => p.window,
            KubeletRule::SafetyNet => WindowSettings {
                remaining_fraction: 0.1,
                remaining_days: p.urgent_days,
            },
        };
        let leaf = p.leaf_days * DAY;
        let mut nodes = Vec::new();
        let mut join = t_init;
        for k in 0..p.control_planes {
            let id = cp_id(k);
            if k > 0 {
                join += MINUTE
                    + uniform(seed, Stream::Join, id, 0) * (p.join_gap_max - MINUTE).max(0.0);
            }
            // kubeadm: every leaf starts at its CA's notBefore and ends 365 days after it
            // is made (certs phase, then kubeconfigs); then the kubelet starts, makes
            // kubelet.crt and gets its client certificate.
            let mut certs = vec![
                Cert::new(Comp::Apiserver, 0, ca_nb, join + leaf, p.window, true),
                Cert::new(Comp::Etcd, 1, ca_nb, join + 1.0 + leaf, p.window, true),
                Cert::new(Comp::NoReload, 2, ca_nb, join + 2.0 + leaf, p.window, true),
                Cert::new(
                    Comp::ControllerManager,
                    3,
                    ca_nb,
                    join + 3.0 + leaf,
                    p.window,
                    true,
                ),
                Cert::new(Comp::Scheduler, 4, ca_nb, join + 4.0 + leaf, p.window, true),
            ];
            certs.extend(kubelet_certs(p, join + 20.0, &kubelet_window, true, ca_end));
            nodes.push(Node::new(id, true, certs));
        }
        let last_cp = join;
        for w in 0..p.workers {
            let id = worker_id(w);
            let j = last_cp + uniform(seed, Stream::Join, id, 0) * p.worker_join_spread;
            let certs = kubelet_certs(p, j, &kubelet_window, p.worker_remote_ca, ca_end);
            nodes.push(Node::new(id, false, certs));
        }
        // Whole-cluster power-offs.
        let mut outages: Vec<Outage> = Vec::new();
        let mut y = 0u64;
        while (y as f64) < p.years {
            if uniform(seed, Stream::Outage, index, 3 * y) < p.outage_rate {
                let start =
                    t_init + (y as f64 + uniform(seed, Stream::Outage, index, 3 * y + 1)) * YEAR;
                let days = p.outage_days_min
                    + uniform(seed, Stream::Outage, index, 3 * y + 2)
                        * (p.outage_days_max - p.outage_days_min);
                let end = start + days * DAY;
                match outages.last_mut() {
                    Some(o) if start <= o.end + DAY => o.end = o.end.max(end),
                    _ => outages.push(Outage { start, end }),
                }
            }
            y += 1;
        }
        let mut c = Cluster {
            p,
            t_init,
            horizon,
            ca_end,
            nodes,
            outages,
            heap: BinaryHeap::new(),
            seq: 0,
            holds: Vec::new(),
            downs: Vec::new(),
            stats: Stats::default(),
        };
        c.stats.outages = c.outages.iter().filter(|o| o.start < horizon).count() as u64;
        for n in 0..c.nodes.len() {
            let id = c.nodes[n].id;
            let boots: Vec<f64> = c
                .outages
                .iter()
                .enumerate()
                .map(|(i, o)| o.end + uniform(seed, Stream::Boot, id, i as u64) * p.boot_spread)
                .collect();
            for &b in &boots {
                c.push(b, Kind::Boot, n, 0);
            }
            c.nodes[n].boots = boots;
            // The kubelet's first deadline, drawn when it starts at join.
            let start = c.nodes[n].client_cert_nb();
            c.draw_deadline(n);
            c.reschedule(n, start);
        }
        c
    }

    fn push(&mut self, t: f64, kind: Kind, node: usize, version: u64) {
        if t < self.horizon {
            self.seq += 1;
            self.heap.push(Event {
                t,
                seq: self.seq,
                kind,
                node,
                version,
            });
        }
    }

    /// The outage node `n` is off in at `t`: [outage start, its boot).
    fn off(&self, n: usize, t: f64) -> Option<usize> {
        self.outages
            .iter()
            .enumerate()
            .position(|(i, o)| o.start <= t && t < self.nodes[n].boots[i])
    }

    /// The timer's daily run on `day` for node `n`.
    fn daily(&self, n: usize, day: f64) -> f64 {
        day * DAY
            + uniform(
                self.p.seed,
                Stream::TimerDelay,
                self.nodes[n].id,
                day as u64,
            ) * self.p.randomized_delay
    }

    /// The first run of node `n`'s timer at or after `t`: daily runs while the node is
    /// up, plus one run OnBootSec + RandomizedDelaySec after each boot.
    fn next_pass(&self, n: usize, t: f64) -> f64 {
        let mut t = t;
        loop {
            if let Some(i) = self.off(n, t) {
                t = self.nodes[n].boots[i];
                continue;
            }
            let mut day = (t / DAY).floor();
            let mut d = self.daily(n, day);
            if d < t {
                day += 1.0;
                d = self.daily(n, day);
            }
            let boot_pass = self.nodes[n]
                .boots
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    b + self.p.on_boot
                        + uniform(self.p.seed, Stream::BootPass, self.nodes[n].id, i as u64)
                            * self.p.randomized_delay
                })
                .filter(|&bp| bp >= t && bp <= d)
                .fold(f64::INFINITY, f64::min);
            if boot_pass.is_finite() {
                return boot_pass;
            }
            if self.off(n, d).is_some() {
                t = d;
                continue;
            }
            return d;
        }
    }

    /// After any change on node `n` at `now`: its next pass with due work and the
    /// kubelet's next own rotation.
    fn reschedule(&mut self, n: usize, now: f64) {
        self.nodes[n].version += 1;
        let v = self.nodes[n].version;
        let first_due = self.nodes[n]
            .certs
            .iter()
            .filter(|c| c.renewable)
            .map(|c| c.renew_at)
            .fold(f64::INFINITY, f64::min);
        if first_due.is_finite() {
            let t = self.next_pass(n, first_due.max(now));
            self.push(t, Kind::Pass, n, v);
        }
        let d = self.nodes[n].kubelet_deadline.max(now);
        self.push(d, Kind::KubeletRotate, n, v);
    }

    /// The kubelet (re)started at `t`: it draws its rotation deadline for the client
    /// certificate it holds, at a uniform 70-90% of that certificate's life (client-go).
    fn draw_deadline(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.kubelet_draws += 1;
        let u = uniform(
            self.p.seed,
            Stream::KubeletJitter,
            node.id,
            node.kubelet_draws,
        );
        let c = node.client();
        node.kubelet_deadline = c.nb + (c.na - c.nb) * (0.7 + 0.2 * u);
    }

    /// After its own rotation the kubelet waits for the next deadline, but at least its
    /// retry period: near the CA's end a capped certificate's deadline can already be past.
    fn settle_deadline(&mut self, n: usize, t: f64) {
        let d = &mut self.nodes[n].kubelet_deadline;
        *d = d.max(t + KUBELET_RETRY);
    }

    /// Some kube-apiserver of the cluster serves a valid certificate at `t`.
    fn api_available(&self, t: f64) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .any(|(k, nd)| nd.control_plane && self.off(k, t).is_none() && nd.certs[0].na > t)
    }

    /// etcd has quorum (members up with valid certificates) and node `n` can authenticate.
    fn lock_reachable(&self, n: usize, t: f64) -> bool {
        let cps: Vec<usize> = (0..self.nodes.len())
            .filter(|&k| self.nodes[k].control_plane)
            .collect();
        let good = cps
            .iter()
            .filter(|&&k| self.off(k, t).is_none() && self.nodes[k].certs[1].na > t)
            .count();
        good > cps.len() / 2 && self.nodes[n].certs[1].na > t
    }

    fn run(&mut self) {
        while let Some(e) = self.heap.pop() {
            match e.kind {
                Kind::Boot => {
                    let n = e.node;
                    // A new kubelet process: a new deadline.
                    self.draw_deadline(n);
                    self.reschedule(n, e.t);
                }
                Kind::Pass if e.version == self.nodes[e.node].version => self.pass(e.node, e.t),
                Kind::KubeletRotate if e.version == self.nodes[e.node].version => {
                    self.kubelet_rotate(e.node, e.t)
                }
                _ => {}
            }
        }
    }

    /// The year of the cluster's life `t` falls in, from 0.
    fn year(&self, t: f64) -> usize {
        ((t - self.t_init) / YEAR).floor().max(0.0) as usize
    }

    fn kubelet_rotate(&mut self, n: usize, t: f64) {
        if self.off(n, t).is_some() {
            return; // the boot redraws
        }
        let na = self.nodes[n].client().na;
        if t >= na {
            // Expired: the kubelet cannot authenticate any more; only the agent can help.
            if !self.nodes[n].client().renewable && !self.nodes[n].client_lost {
                self.nodes[n].client_lost = true;
                self.stats.unrenewable_expired_clients += 1;
            }
            return;
        }
        if !self.api_available(t) {
            // client-go retries (backoff, then every 32 s); the model every KUBELET_RETRY.
            let v = self.nodes[n].version;
            self.push(t + KUBELET_RETRY, Kind::KubeletRotate, n, v);
            return;
        }
        let life = self.p.kubelet_client_days * DAY;
        let new_na = (t + life).min(self.ca_end);
        self.nodes[n].client().set(t - BACKDATE, new_na);
        let role = usize::from(!self.nodes[n].control_plane);
        self.stats.kubelet_self_rotations[role] += 1;
        let year = self.year(t);
        row(&mut self.stats.kubelet_self_by_year, year)[role] += 1;
        self.draw_deadline(n);
        self.settle_deadline(n, t);
        self.reschedule(n, t);
    }

    /// One run of the agent on node `n` that has due work.
    fn pass(&mut self, n: usize, p0: f64) {
        let p = self.p;
        self.stats.passes += 1;
        let mut queue: Vec<(bool, f64, u8, usize)> = Vec::new();
        for (i, c) in self.nodes[n].certs.iter().enumerate() {
            if !c.renewable {
                continue;
            }
            if let Some(expired) = due(&c.window, c.nb, c.na, p0) {
                queue.push((!expired, c.renew_at, c.rank, i));
            }
        }
        if queue.is_empty() {
            self.reschedule(n, p0 + 1.0);
            return;
        }
        // plan::make_plan: expired first, then the earliest renew_at; grouped by component
        // in that order; at most max_restarts_per_pass restarts unless a group is urgent.
        queue.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut groups: Vec<(Comp, Vec<usize>)> = Vec::new();
        for &(_, _, _, i) in &queue {
            let comp = self.nodes[n].certs[i].comp;
            match groups.iter_mut().find(|g| g.0 == comp) {
                Some(g) => g.1.push(i),
                None => groups.push((comp, vec![i])),
            }
        }
        let urgent_within = p.urgent_days * DAY;
        let mut restarts = 0;
        let mut t = p0 + p.pass_overhead;
        let year = self.year(p0);
        for (comp, members) in groups {
            let node = &self.nodes[n];
            let urgent = members
                .iter()
                .any(|&i| node.certs[i].na - p0 < urgent_within);
            let expired = members.iter().all(|&i| node.certs[i].na <= p0);
            if comp.restarts() {
                if restarts >= p.max_restarts_per_pass && !urgent {
                    continue; // deferred to the next pass
                }
                restarts += 1;
            }
            match comp {
                Comp::Apiserver => {
                    let failing = p.probe_fail > 0.0
                        && uniform(p.seed, Stream::ProbeFail, node.id, (p0 / DAY) as u64)
                            < p.probe_fail;
                    let broken = expired || failing;
                    let start;
                    if broken {
                        // The exemption: no lock; with the lock design, after a per-node
                        // deterministic delay (no herd when a whole cluster comes back).
                        start = if p.lock {
                            t.max(
                                p0 + uniform(p.seed, Stream::ExemptDelay, node.id, 0)
                                    * p.exempt_spread,
                            )
                        } else {
                            t.max(node.last_cp_restart + p.min_restart_gap)
                        };
                        self.stats.broken_restarts += 1;
                        if expired {
                            self.stats.expired_restarts += 1;
                        }
                    } else {
                        let want = t.max(node.last_cp_restart + p.min_restart_gap);
                        if p.lock {
                            if !self.lock_reachable(n, want) {
                                self.stats.lock_unreachable += 1;
                                continue; // fail closed: waits for the next pass
                            }
                            let hold = p.renew_time + p.apiserver_down + p.verify_slack;
                            let got = lock_slot(&self.holds, want, hold);
                            if got - want > p.lock_wait {
                                self.stats.lock_timeouts += 1;
                                t = want + p.lock_wait;
                                continue;
                            }
                            self.stats.lock_acquired += 1;
                            if got > want {
                                self.stats.lock_waited += 1;
                                self.stats.lock_wait_total += got - want;
                                self.stats.lock_wait_max = self.stats.lock_wait_max.max(got - want);
                            }
                            let pos = self.holds.partition_point(|h| h.0 < got);
                            self.holds.insert(pos, (got, got + hold));
                            start = got;
                        } else {
                            start = want;
                        }
                    }
                    let restart = start + p.renew_time;
                    self.renew(n, &members, start);
                    self.downs.push(Down {
                        node: n,
                        start: restart,
                        end: restart + p.apiserver_down,
                        broken,
                    });
                    self.nodes[n].last_cp_restart = restart;
                    t = restart + p.apiserver_down + p.verify_slack;
                    self.stats.restarts[0] += 1;
                    row(&mut self.stats.restarts_by_year, year)[0] += 1;
                }
                Comp::ControllerManager | Comp::Scheduler => {
                    let start = t.max(node.last_cp_restart + p.min_restart_gap);
                    self.renew(n, &members, start);
                    let restart = start + p.renew_time;
                    self.nodes[n].last_cp_restart = restart;
                    t = restart + p.cp_restart + p.verify_slack;
                    let k = if comp == Comp::ControllerManager {
                        1
                    } else {
                        2
                    };
                    self.stats.restarts[k] += 1;
                    row(&mut self.stats.restarts_by_year, year)[k] += 1;
                }
                Comp::Kubelet => {
                    let client = members.iter().any(|&i| self.nodes[n].certs[i].client);
                    self.renew(n, &members, t);
                    t += p.renew_time + p.kubelet_restart + p.verify_slack;
                    let role = usize::from(!self.nodes[n].control_plane);
                    self.stats.restarts[3 + role] += 1;
                    row(&mut self.stats.restarts_by_year, year)[3 + role] += 1;
                    if client {
                        self.stats.kubelet_client_restarts[role] += 1;
                        row(&mut self.stats.kubelet_client_by_year, year)[role] += 1;
                    }
                    // A new kubelet process draws a new deadline.
                    self.draw_deadline(n);
                }
                Comp::Etcd | Comp::NoReload => {
                    self.renew(n, &members, t);
                    t += p.renew_time;
                }
            }
        }
        self.reschedule(n, p0.max(t) + 1.0);
    }

    /// issue::prepare: a new certificate from now - BACKDATE with the old lifetime, capped
    /// at the CA's end (kubelet.crt has its own throwaway CA: never capped).
    fn renew(&mut self, n: usize, members: &[usize], now: f64) {
        let ca_end = self.ca_end;
        for &i in members {
            let c = &mut self.nodes[n].certs[i];
            let life = c.na - c.nb;
            let nb = now - BACKDATE;
            let mut na = nb + life;
            if c.comp != Comp::Kubelet || c.client {
                na = na.min(ca_end);
            }
            if na <= now {
                // Past the CA's end the renewal fails (born expired): nothing written.
                continue;
            }
            c.set(nb, na);
        }
    }

    fn finish(mut self) -> Stats {
        let p = self.p;
        let years_f = (self.horizon - self.t_init) / YEAR;
        self.stats.cluster_years = years_f;
        self.stats.cp_node_years = years_f * p.control_planes as f64;
        self.stats.worker_node_years = years_f * p.workers as f64;
        let pairs = overlaps(&mut self.downs);
        let ny = years_f.ceil() as usize;
        let mut flags = vec![[false; 4]; ny.max(1)];
        for (cat, when) in pairs {
            let y = (((when - self.t_init) / YEAR).floor() as usize).min(flags.len() - 1);
            flags[y][0] = true;
            let k = match cat {
                Pair::Healthy => 0,
                Pair::HealthyBroken => 1,
                Pair::Broken => 2,
            };
            flags[y][k + 1] = true;
            self.stats.pairs[k] += 1;
        }
        self.stats.cy_by_year = vec![[0; 4]; flags.len()];
        for (y, f) in flags.iter().enumerate() {
            self.stats.cy_any += u64::from(f[0]);
            self.stats.cy_healthy += u64::from(f[1]);
            self.stats.cy_healthy_broken += u64::from(f[2]);
            self.stats.cy_broken += u64::from(f[3]);
            for (acc, x) in self.stats.cy_by_year[y].iter_mut().zip(f) {
                *acc += u64::from(*x);
            }
        }
        self.stats.cluster_flags = vec![flags.iter().map(|f| f.map(u8::from)).collect()];
        self.stats
    }
}

/// The kubelet's two certificates when it first starts at `start`: kubelet.crt
/// (self-signed by client-go, from start - 1 h, 365 days: always the agent's) and its
/// client certificate from the CSR (the signer's 5 min backdate, kubelet_client_days,
/// capped at the CA's end).
fn kubelet_certs(
    p: &Params,
    start: f64,
    window: &WindowSettings,
    client_renewable: bool,
    ca_end: f64,
) -> Vec<Cert> {
    let serving_nb = start - KUBELET_CRT_BACKDATE;
    let serving = Cert::new(
        Comp::Kubelet,
        6,
        serving_nb,
        serving_nb + 365.0 * DAY,
        p.window,
        true,
    );
    let issued = start + 10.0;
    let mut client = Cert::new(
        Comp::Kubelet,
        5,
        issued - BACKDATE,
        (issued + p.kubelet_client_days * DAY).min(ca_end),
        *window,
        client_renewable,
    );
    client.client = true;
    vec![client, serving]
}

impl Node {
    fn new(id: u64, control_plane: bool, certs: Vec<Cert>) -> Node {
        Node {
            id,
            control_plane,
            certs,
            kubelet_deadline: f64::INFINITY,
            kubelet_draws: 0,
            last_cp_restart: f64::NEG_INFINITY,
            client_lost: false,
            version: 0,
            boots: Vec::new(),
        }
    }

    fn client_cert_nb(&self) -> f64 {
        self.certs
            .iter()
            .find(|c| c.client)
            .map(|c| c.nb + BACKDATE)
            .unwrap_or(0.0)
    }
}

/// Wilson score interval (95%) of k successes in n trials.
pub fn wilson(k: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 0.0);
    }
    let z = 1.96;
    let ph = k / n;
    let den = 1.0 + z * z / n;
    let centre = (ph + z * z / (2.0 * n)) / den;
    let half = z * (ph * (1.0 - ph) / n + z * z / (4.0 * n * n)).sqrt() / den;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

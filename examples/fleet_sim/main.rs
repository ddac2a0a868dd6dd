//! Fleet simulation: how often two kube-apiservers of one cluster are down at once, how
//! many restarts a node sees per year, and how many kubelet restarts leaving the client
//! certificate to the kubelet avoids. The model (model.rs) uses the crate's own due rule
//! (`plan::assess`) and the shipped timer, window and `[run]` limits; results and the
//! model's assumptions are in docs/performance.md, "Fleet simulation".
//!
//! ```sh
//! cargo run --release --example fleet_sim -- [--clusters 1000] [--apiserver-down-s 30] ...
//! benches/fleet-sim.sh        # the default run, a sensitivity sweep and the checks
//! ```
//!
//! Prints tables, then one `RESULT scenario=NAME key=value...` line per scenario for
//! scripts. With `--check`, exits 1 when an invariant fails: with the lock, no two healthy
//! kube-apiservers of a cluster are ever down at once; with the kubelet safety net and no
//! outage, the agent never renews a kubelet client certificate.

mod model;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use model::{simulate, wilson, KubeletRule, Params, Stats, HOUR, MINUTE};

#[derive(Parser, Debug)]
#[command(about = "Simulates cert-rotator on a fleet of kubeadm clusters")]
struct Args {
    /// Clusters in the fleet.
    #[arg(long, default_value_t = 1000)]
    clusters: u64,
    /// Control-plane nodes per cluster.
    #[arg(long, default_value_t = 3)]
    control_planes: usize,
    /// Worker nodes per cluster.
    #[arg(long, default_value_t = 50)]
    workers: usize,
    /// Years simulated (365-day years from `kubeadm init`).
    #[arg(long, default_value_t = 10.0)]
    years: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The timer's RandomizedDelaySec.
    #[arg(long, default_value_t = 3600.0)]
    randomized_delay_s: f64,
    /// Seconds a restarted kube-apiserver serves nothing.
    #[arg(long, default_value_t = 30.0)]
    apiserver_down_s: f64,
    /// Seconds until a restarted controller-manager or scheduler is healthy.
    #[arg(long, default_value_t = 10.0)]
    cp_restart_s: f64,
    /// Seconds for a kubelet restart and its verification.
    #[arg(long, default_value_t = 5.0)]
    kubelet_restart_s: f64,
    /// Maximum minutes between two control-plane joins (uniform from 1 minute).
    #[arg(long, default_value_t = 120.0)]
    join_gap_max_min: f64,
    /// Workers join within this many hours after the last control-plane node.
    #[arg(long, default_value_t = 24.0)]
    worker_join_spread_h: f64,
    /// Lifetime of kubeadm's leaves (certificateValidityPeriod), days.
    #[arg(long, default_value_t = 365.0)]
    leaf_days: f64,
    /// Lifetime of the kubelet's client certificates (the CSR signer's duration), days.
    #[arg(long, default_value_t = 365.0)]
    kubelet_client_days: f64,
    /// Lifetime of the CAs, years.
    #[arg(long, default_value_t = 10.0)]
    ca_years: f64,
    /// Whole-cluster power-offs per cluster-year.
    #[arg(long, default_value_t = 0.01)]
    outage_rate: f64,
    #[arg(long, default_value_t = 30.0)]
    outage_days_min: f64,
    #[arg(long, default_value_t = 365.0)]
    outage_days_max: f64,
    /// Probability that a kube-apiserver is failing its probe when its pass restarts it.
    #[arg(long, default_value_t = 0.0)]
    probe_fail: f64,
    /// Longest wait for the lock before the restart is deferred to the next pass.
    #[arg(long, default_value_t = 600.0)]
    lock_wait_s: f64,
    /// Already-broken components restart after a per-node delay below this (lock design).
    #[arg(long, default_value_t = 600.0)]
    exempt_spread_s: f64,
    /// Workers have [ca.remote], so the agent can renew their kubelet client certificate.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    worker_remote_ca: bool,
    /// Scenarios: any of nolock-window, lock-window, nolock-safety, lock-safety.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "nolock-window,lock-window,nolock-safety,lock-safety"
    )]
    scenarios: Vec<String>,
    /// One summary line per scenario instead of the tables.
    #[arg(long)]
    brief: bool,
    /// Exit 1 when an invariant fails.
    #[arg(long)]
    check: bool,
}

fn params(a: &Args) -> Params {
    Params {
        clusters: a.clusters,
        control_planes: a.control_planes,
        workers: a.workers,
        years: a.years,
        seed: a.seed,
        randomized_delay: a.randomized_delay_s,
        apiserver_down: a.apiserver_down_s,
        cp_restart: a.cp_restart_s,
        kubelet_restart: a.kubelet_restart_s,
        join_gap_max: a.join_gap_max_min * MINUTE,
        worker_join_spread: a.worker_join_spread_h * HOUR,
        leaf_days: a.leaf_days,
        kubelet_client_days: a.kubelet_client_days,
        ca_years: a.ca_years,
        outage_rate: a.outage_rate,
        outage_days_min: a.outage_days_min,
        outage_days_max: a.outage_days_max,
        probe_fail: a.probe_fail,
        lock_wait: a.lock_wait_s,
        exempt_spread: a.exempt_spread_s,
        worker_remote_ca: a.worker_remote_ca,
        ..Params::default()
    }
}

fn scenario(base: &Params, name: &str) -> Option<Params> {
    let (lock, rule) = match name {
        "nolock-window" => (false, KubeletRule::Window),
        "lock-window" => (true, KubeletRule::Window),
        "nolock-safety" => (false, KubeletRule::SafetyNet),
        "lock-safety" => (true, KubeletRule::SafetyNet),
        _ => return None,
    };
    Some(Params {
        lock,
        kubelet_rule: rule,
        ..base.clone()
    })
}

fn label(name: &str) -> &'static str {
    match name {
        "nolock-window" => "no lock, kubelet client at 80% (shipped)",
        "lock-window" => "lock, kubelet client at 80%",
        "nolock-safety" => "no lock, kubelet safety net at 90%",
        _ => "lock, kubelet safety net at 90%",
    }
}

fn pct(k: u64, n: f64) -> String {
    let (lo, hi) = wilson(k as f64, n);
    format!(
        "{:.3}% [{:.3}-{:.3}]",
        100.0 * k as f64 / n,
        100.0 * lo,
        100.0 * hi
    )
}

/// An overlap share with its confidence interval over clusters.
fn share(s: &Stats, from: usize, to: usize, k: usize) -> String {
    let (m, lo, hi) = s.overlap_share(from, to, k);
    format!("{:.3}% [{:.3}-{:.3}]", 100.0 * m, 100.0 * lo, 100.0 * hi)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let base = params(&args);
    if base.clusters == 0 || base.years <= 0.0 || base.control_planes == 0 {
        eprintln!("error: --clusters, --years and --control-planes must be positive");
        return ExitCode::from(2);
    }
    let mut runs: Vec<(String, Stats, f64)> = Vec::new();
    for name in &args.scenarios {
        let Some(p) = scenario(&base, name) else {
            eprintln!("error: unknown scenario {name:?} (nolock-window, lock-window, nolock-safety, lock-safety)");
            return ExitCode::from(2);
        };
        let t0 = Instant::now();
        let s = simulate(&p);
        runs.push((name.clone(), s, t0.elapsed().as_secs_f64()));
    }
    if args.brief {
        let (from, to, what) = ranges(&base).remove(0);
        for (name, s, secs) in &runs {
            let ny = (to - from) as f64 * base.clusters as f64;
            let (r, _, _) = s.years(from, to);
            println!(
                "{name:14} down {:>4.0} s, CP joins <= {:>4.0} min apart, {what}: P(2 down) per cluster-year {:>26}, both healthy {:>26}; apiserver restarts per CP node-year {:.3} ({secs:.1} s)",
                base.apiserver_down,
                base.join_gap_max / MINUTE,
                share(s, from, to, 0),
                share(s, from, to, 1),
                r[0] as f64 / (ny * base.control_planes as f64),
            );
        }
    } else {
        print_tables(&base, &runs);
    }
    let mut ok = true;
    for (name, s, secs) in &runs {
        let rs = ranges(&base);
        let mut line = format!("RESULT scenario={name}");
        for (i, (from, to, _)) in rs.iter().enumerate() {
            let suffix = if i == 0 { "" } else { "_ca_year" };
            line.push(' ');
            line.push_str(&result_fields(&base, s, *from, *to, suffix));
        }
        println!(
            "{line} pairs_healthy={} lock_waited={} lock_timeouts={} lock_unreachable={} broken_restarts={} outages={} seconds={secs:.2}",
            s.pairs[0], s.lock_waited, s.lock_timeouts, s.lock_unreachable, s.broken_restarts, s.outages
        );
        if name.starts_with("lock") && s.pairs[0] > 0 {
            eprintln!(
                "CHECK FAILED: {name}: {} overlaps of two healthy kube-apiservers under the lock",
                s.pairs[0]
            );
            ok = false;
        }
        if name.ends_with("safety") && base.outage_rate == 0.0 {
            // The steady years: in the CA's last days capped certificates are urgent.
            let (from, to, _) = ranges(&base).remove(0);
            let (_, c, _) = s.years(from, to);
            let agent = c[0] + c[1];
            if agent > 0 {
                eprintln!("CHECK FAILED: {name}: the agent renewed {agent} kubelet client certificates although every kubelet could rotate its own");
                ok = false;
            }
        }
    }
    if args.check && !ok {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The steady years, and the CA's last year on its own when it falls in the run: leaves
/// capped at the CA's end renew daily in its last 30 days.
fn ranges(p: &Params) -> Vec<(usize, usize, String)> {
    let years = p.years.ceil() as usize;
    let ca_last = (p.ca_years <= p.years).then(|| (p.ca_years.ceil() as usize).saturating_sub(1));
    let steady = ca_last.unwrap_or(years).max(1);
    let mut r = vec![(0, steady, format!("years 1-{steady}"))];
    if let Some(y) = ca_last {
        r.push((y, y + 1, format!("year {} (the CA's last)", y + 1)));
    }
    r
}

/// key=value pairs of one scenario over years [from, to).
fn result_fields(p: &Params, s: &Stats, from: usize, to: usize, suffix: &str) -> String {
    let ny = (to - from) as f64 * p.clusters as f64;
    let cp = ny * p.control_planes as f64;
    let wk = (ny * p.workers as f64).max(1.0);
    let o = s.overlap_years(from, to);
    let (r, c, k) = s.years(from, to);
    format!(
        "p_any{suffix}={:.6} p_healthy{suffix}={:.6} p_healthy_broken{suffix}={:.6} p_broken{suffix}={:.6} apiserver{suffix}={:.4} controller_manager{suffix}={:.4} scheduler{suffix}={:.4} kubelet_cp{suffix}={:.4} kubelet_worker{suffix}={:.4} agent_client_cp{suffix}={:.4} agent_client_worker{suffix}={:.4} kubelet_rotations_cp{suffix}={:.4}",
        o[0] as f64 / ny,
        o[1] as f64 / ny,
        o[2] as f64 / ny,
        o[3] as f64 / ny,
        r[0] as f64 / cp,
        r[1] as f64 / cp,
        r[2] as f64 / cp,
        r[3] as f64 / cp,
        r[4] as f64 / wk,
        c[0] as f64 / cp,
        c[1] as f64 / wk,
        k[0] as f64 / cp,
    )
}

fn print_tables(p: &Params, runs: &[(String, Stats, f64)]) {
    println!(
        "fleet: {} clusters x ({} control-plane nodes + {} workers), {} years, seed {}",
        p.clusters, p.control_planes, p.workers, p.years, p.seed
    );
    println!(
        "timer: OnCalendar=daily, RandomizedDelaySec={} s, OnBootSec={} s; window {}% / {} days; at most {} restarts per pass, {} s gap, urgent {} days",
        p.randomized_delay,
        p.on_boot,
        p.window.remaining_fraction * 100.0,
        p.window.remaining_days,
        p.max_restarts_per_pass,
        p.min_restart_gap,
        p.urgent_days
    );
    println!(
        "certificates: kubeadm leaves {} d from init/join (notBefore = the CA's), kubelet client {} d from its CSR, kubelet.crt 365 d, CAs {} years",
        p.leaf_days, p.kubelet_client_days, p.ca_years
    );
    println!(
        "joins: control planes U(1, {:.0}) min apart, workers within {:.0} h; restarts: kube-apiserver down {} s, controller-manager/scheduler {} s, kubelet {} s",
        p.join_gap_max / MINUTE,
        p.worker_join_spread / HOUR,
        p.apiserver_down,
        p.cp_restart,
        p.kubelet_restart
    );
    println!(
        "outages: {} per cluster-year, {}-{} days; kube-apiserver failing its probe at a restart: {}; lock wait <= {} s, exemption delay < {} s; workers renew kubelet client: {}",
        p.outage_rate,
        p.outage_days_min,
        p.outage_days_max,
        p.probe_fail,
        p.lock_wait,
        p.exempt_spread,
        if p.worker_remote_ca { "yes ([ca.remote])" } else { "no" }
    );
    println!();
    let ranges = ranges(p);
    for (from, to, what) in &ranges {
        let ny = (to - from) as f64 * p.clusters as f64;
        let cp = ny * p.control_planes as f64;
        let wk = (ny * p.workers as f64).max(1.0);
        println!("1. Two kube-apiservers of one cluster down at once, {what}: share of cluster-years with at least one such moment (95% CI)");
        println!(
            "{:44} {:>28} {:>28} {:>28} {:>28}",
            "scenario", "any", "both healthy", "healthy + already broken", "both already broken"
        );
        for (name, s, _) in runs {
            println!(
                "{:44} {:>28} {:>28} {:>28} {:>28}",
                label(name),
                share(s, *from, *to, 0),
                share(s, *from, *to, 1),
                share(s, *from, *to, 2),
                share(s, *from, *to, 3)
            );
        }
        println!();
        println!("2. Restarts per node-year, {what}");
        println!(
            "{:44} {:>10} {:>11} {:>10} {:>12} {:>16}",
            "scenario", "apiserver", "ctrl-mgr", "scheduler", "kubelet (cp)", "kubelet (worker)"
        );
        for (name, s, _) in runs {
            let (r, _, _) = s.years(*from, *to);
            println!(
                "{:44} {:>10.3} {:>11.3} {:>10.3} {:>12.3} {:>16.3}",
                label(name),
                r[0] as f64 / cp,
                r[1] as f64 / cp,
                r[2] as f64 / cp,
                r[3] as f64 / cp,
                r[4] as f64 / wk,
            );
        }
        println!();
        println!(
            "3. The kubelet's client certificate, per node-year (control plane / worker), {what}"
        );
        println!(
            "{:44} {:>26} {:>24} {:>22}",
            "scenario",
            "agent renewals (restarts)",
            "kubelet's own rotations",
            "all kubelet restarts"
        );
        for (name, s, _) in runs {
            let (r, c, k) = s.years(*from, *to);
            println!(
                "{:44} {:>26} {:>24} {:>22}",
                label(name),
                format!("{:.3} / {:.3}", c[0] as f64 / cp, c[1] as f64 / wk),
                format!("{:.3} / {:.3}", k[0] as f64 / cp, k[1] as f64 / wk),
                format!("{:.3} / {:.3}", r[3] as f64 / cp, r[4] as f64 / wk),
            );
        }
        let find = |n: &str| runs.iter().find(|r| r.0 == n).map(|r| &r.1);
        for (a, b) in [
            ("nolock-window", "nolock-safety"),
            ("lock-window", "lock-safety"),
        ] {
            if let (Some(sa), Some(sb)) = (find(a), find(b)) {
                let (ra, _, _) = sa.years(*from, *to);
                let (rb, _, _) = sb.years(*from, *to);
                let d_cp = ra[3] as f64 - rb[3] as f64;
                let d_wk = ra[4] as f64 - rb[4] as f64;
                let share = 100.0 * (d_cp + d_wk) / (ra[3] + ra[4]).max(1) as f64;
                println!(
                    "kubelet restarts avoided by the safety net ({}): {:.3} per control-plane node-year, {:.3} per worker node-year; {:.0} in the fleet ({share:.0}% of its kubelet restarts)",
                    if a.starts_with("lock") { "with the lock" } else { "without the lock" },
                    d_cp / cp,
                    d_wk / wk,
                    d_cp + d_wk,
                );
            }
        }
        println!();
    }
    println!("Lock and exemption, whole fleet");
    println!(
        "{:44} {:>9} {:>8} {:>10} {:>9} {:>9} {:>12} {:>16} {:>8}",
        "scenario",
        "acquired",
        "waited",
        "mean wait",
        "max wait",
        "timeouts",
        "fail closed",
        "broken restarts",
        "outages"
    );
    for (name, s, _) in runs {
        println!(
            "{:44} {:>9} {:>8} {:>8.1} s {:>7.1} s {:>9} {:>12} {:>16} {:>8}",
            label(name),
            s.lock_acquired,
            s.lock_waited,
            if s.lock_waited > 0 {
                s.lock_wait_total / s.lock_waited as f64
            } else {
                0.0
            },
            s.lock_wait_max,
            s.lock_timeouts,
            s.lock_unreachable,
            format!("{} ({} expired)", s.broken_restarts, s.expired_restarts),
            s.outages,
        );
    }
    if let Some((name, s, _)) = runs.first() {
        println!();
        println!("By year of the cluster's life ({}):", label(name));
        println!(
            "{:>5} {:>30} {:>32}",
            "year", "P(2 down) per cluster-year", "apiserver restarts per cp node"
        );
        let clusters = p.clusters as f64;
        for (y, k) in s.cy_by_year.iter().enumerate() {
            let r = s.restarts_by_year.get(y).map(|x| x[0]).unwrap_or(0);
            println!(
                "{:>5} {:>30} {:>32.3}",
                y + 1,
                pct(k[0], clusters),
                r as f64 / (clusters * p.control_planes as f64)
            );
        }
    }
    println!();
    for (name, s, secs) in runs {
        println!(
            "{}: {} passes with work simulated in {secs:.2} s; kubelet client certificates expired with nobody to renew them: {}",
            name, s.passes, s.unrenewable_expired_clients
        );
    }
}

//! The fleet simulation's model (examples/fleet_sim/model.rs): its parts and the
//! invariants benches/fleet-sim.sh relies on, on small fleets.

#[allow(dead_code)]
#[path = "../examples/fleet_sim/model.rs"]
mod model;

use model::{
    lock_slot, overlaps, renew_at, simulate, uniform, Down, KubeletRule, Pair, Params, Stream, DAY,
    MINUTE,
};

fn small() -> Params {
    Params {
        clusters: 40,
        workers: 4,
        ..Params::default()
    }
}

/// The simulation asks the crate's rule: a 365-day certificate is due at day 292, a
/// 91-day one at day 61, and the safety-net window at 90% of the life.
#[test]
fn due_instants_come_from_the_crates_rule() {
    let w = Params::default().window;
    assert_eq!(renew_at(&w, 0.0, 365.0 * DAY), 292.0 * DAY);
    assert_eq!(renew_at(&w, 0.0, 91.0 * DAY), 61.0 * DAY);
    let net = cert_rotator::config::WindowSettings {
        remaining_fraction: 0.1,
        remaining_days: 14.0,
    };
    assert!((renew_at(&net, 0.0, 365.0 * DAY) - 328.5 * DAY).abs() < 1e-3);
}

#[test]
fn overlaps_are_counted_between_nodes_only_and_by_category() {
    let d = |node, start: f64, broken| Down {
        node,
        start,
        end: start + 30.0,
        broken,
    };
    let mut downs = vec![
        d(0, 100.0, false),
        d(1, 120.0, false), // overlaps node 0
        d(1, 125.0, true),  // same node as the one before: not a pair with it
        d(2, 500.0, true),
        d(0, 529.0, true), // overlaps node 2, both broken
        d(2, 1000.0, false),
        d(1, 1030.0, false), // touches, does not overlap
    ];
    let mut pairs = overlaps(&mut downs);
    pairs.sort_by(|a, b| a.1.total_cmp(&b.1));
    let cats: Vec<Pair> = pairs.iter().map(|p| p.0).collect();
    assert_eq!(
        cats,
        vec![Pair::Healthy, Pair::HealthyBroken, Pair::Broken],
        "{pairs:?}"
    );
}

#[test]
fn lock_slots_never_overlap() {
    let mut holds: Vec<(f64, f64)> = Vec::new();
    for i in 0..500u64 {
        let want = uniform(7, Stream::TimerDelay, i, 0) * 3600.0;
        let dur = 10.0 + uniform(7, Stream::Join, i, 0) * 60.0;
        let got = lock_slot(&holds, want, dur);
        assert!(got >= want);
        let pos = holds.partition_point(|h| h.0 < got);
        holds.insert(pos, (got, got + dur));
    }
    for w in holds.windows(2) {
        assert!(w[0].1 <= w[1].0, "{w:?}");
    }
}

#[test]
fn draws_are_uniform_and_reproducible() {
    let n = 20_000;
    let xs: Vec<f64> = (0..n)
        .map(|d| uniform(1, Stream::TimerDelay, 42, d))
        .collect();
    assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    let mean = xs.iter().sum::<f64>() / n as f64;
    assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    let low = xs.iter().filter(|&&x| x < 0.1).count() as f64 / n as f64;
    assert!((low - 0.1).abs() < 0.01, "share below 0.1: {low}");
    assert_eq!(
        uniform(1, Stream::TimerDelay, 42, 7),
        uniform(1, Stream::TimerDelay, 42, 7)
    );
    assert_ne!(
        uniform(1, Stream::TimerDelay, 42, 7),
        uniform(2, Stream::TimerDelay, 42, 7)
    );
}

/// Long restarts and close joins make overlaps frequent without the lock; with it, no two
/// healthy kube-apiservers are ever down together, on the same fleet.
#[test]
fn the_lock_serialises_healthy_apiserver_restarts() {
    let base = Params {
        apiserver_down: 600.0,
        join_gap_max: 5.0 * MINUTE,
        outage_rate: 0.0,
        ..small()
    };
    let free = simulate(&Params {
        lock: false,
        ..base.clone()
    });
    let locked = simulate(&Params {
        lock: true,
        ..base.clone()
    });
    assert!(free.pairs[0] > 0, "no overlap without the lock: {free:?}");
    assert_eq!(locked.pairs, [0, 0, 0], "{locked:?}");
    assert!(locked.lock_waited > 0);
    // The lock delays restarts (a wait over lock_wait defers to the next day), it does not
    // drop them: about as many restarts in the steady years.
    let (a, _, _) = free.years(0, 9);
    let (b, _, _) = locked.years(0, 9);
    let ratio = b[0] as f64 / a[0] as f64;
    assert!((0.95..1.05).contains(&ratio), "{a:?} vs {b:?}");
}

/// With the safety net at 90% the kubelet (deadline 70-90%) always rotates first while
/// the API is up: the agent renews no client certificate and restarts no kubelet for it.
#[test]
fn the_safety_net_leaves_the_client_certificate_to_the_kubelet() {
    let base = Params {
        outage_rate: 0.0,
        ..small()
    };
    let shipped = simulate(&Params {
        kubelet_rule: KubeletRule::Window,
        ..base.clone()
    });
    let net = simulate(&Params {
        kubelet_rule: KubeletRule::SafetyNet,
        ..base.clone()
    });
    let (_, c_shipped, _) = shipped.years(0, 9);
    let (_, c_net, rot_net) = net.years(0, 9);
    assert!(c_shipped[0] > 0 && c_shipped[1] > 0, "{c_shipped:?}");
    assert_eq!(c_net, [0, 0]);
    assert!(rot_net[0] > 0 && rot_net[1] > 0);
    assert!(net.restarts[3] < shipped.restarts[3]);
}

/// Clusters off for a year come back with expired certificates: those kube-apiservers
/// restart through the exemption, and the lock still never lets two healthy ones overlap.
#[test]
fn expired_clusters_restart_through_the_exemption() {
    let base = Params {
        outage_rate: 0.5,
        outage_days_min: 300.0,
        outage_days_max: 400.0,
        ..small()
    };
    let locked = simulate(&Params {
        lock: true,
        ..base.clone()
    });
    assert!(locked.outages > 0);
    assert!(locked.expired_restarts > 0, "{locked:?}");
    assert_eq!(locked.pairs[0], 0);
    // Every expired kubelet client certificate was renewed by the agent (control planes
    // hold the CA key, workers have [ca.remote] by default).
    assert_eq!(locked.unrenewable_expired_clients, 0);
}

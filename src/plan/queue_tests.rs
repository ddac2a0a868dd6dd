//! The rotation queue against fixture nodes.

use time::{Duration, OffsetDateTime};

use super::*;
use crate::config::Settings;
use crate::fixture::{self, NodeSpec, Validity};
use crate::inventory;
use crate::node::NodeRoot;

fn plan_for(spec: &NodeSpec, settings: &Settings, history: &History) -> Plan {
    let d = tempfile::tempdir().unwrap();
    fixture::build(d.path(), spec).unwrap();
    if spec.role == fixture::Role::Worker {
        let _ = std::fs::remove_file(d.path().join("etc/kubernetes/pki/ca.key"));
    }
    let root = NodeRoot::new(d.path());
    let inv = inventory::read(&inventory::layout(settings, &root), &root);
    make_plan(settings, &inv, history, spec.now)
}

fn names(g: &Group) -> Vec<&str> {
    g.targets.iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn expired_first_then_by_renew_at_grouped_by_component() {
    let now = OffsetDateTime::now_utc();
    let spec = NodeSpec::control_plane(now)
        .with("apiserver", Validity::days(365, Duration::days(50)))
        .with(
            "front-proxy-client",
            Validity::days(365, Duration::days(60)),
        )
        .with("scheduler.conf", Validity::days(365, -Duration::days(2)))
        .with("admin.conf", Validity::days(365, Duration::days(40)))
        .with("etcd/peer", Validity::days(365, Duration::days(70)));
    let plan = plan_for(
        &spec,
        &Settings {
            run: crate::config::RunSettings {
                max_restarts_per_pass: 10,
                ..Default::default()
            },
            ..Default::default()
        },
        &History::default(),
    );
    let order: Vec<_> = plan
        .groups
        .iter()
        .map(|g| g.component.as_ref().map(|c| c.name()))
        .collect();
    assert_eq!(
        order,
        [
            Some("kube-scheduler".to_string()),
            None,
            Some("kube-apiserver".into()),
            Some("etcd".into())
        ]
    );
    assert_eq!(
        names(&plan.groups[2]),
        ["apiserver", "front-proxy-client"],
        "one restart for both"
    );
    assert_eq!(plan.groups[0].targets[0].reason, Some(DueReason::Expired));
    assert_eq!(
        plan.groups[0].reload,
        Reload::StaticPod("kube-scheduler".into())
    );
    assert_eq!(plan.groups[1].reload, Reload::None);
    assert_eq!(plan.groups[3].reload, Reload::Itself);
    assert!(plan.deferred.is_empty() && plan.not_renewable.is_empty());
}

/// A node whose leaves all expired (off for longer than their life): etcd first, then
/// the API server, then its clients, then the kubelet, whatever the names' order, so each
/// restarted component finds what it needs serving.
#[test]
fn expired_groups_come_in_the_control_planes_start_up_order() {
    let now = OffsetDateTime::now_utc();
    let expired = Validity::days(365, -Duration::days(35));
    let mut spec = NodeSpec::control_plane(now);
    spec.leaf_validity = expired;
    spec.kubelet_client_validity = expired;
    let plan = plan_for(&spec, &Settings::default(), &History::default());
    let order: Vec<_> = plan
        .groups
        .iter()
        .map(|g| g.component.as_ref().map(|c| c.name()))
        .collect();
    let pos = |name: &str| {
        order
            .iter()
            .position(|c| c.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} not planned: {order:?}"))
    };
    assert!(pos("etcd") < pos("kube-apiserver"), "{order:?}");
    assert!(
        pos("kube-apiserver") < pos("kube-controller-manager"),
        "{order:?}"
    );
    assert!(pos("kube-apiserver") < pos("kube-scheduler"), "{order:?}");
    assert!(pos("kube-scheduler") < pos("kubelet"), "{order:?}");
    assert_eq!(
        order[0], None,
        "admin.conf and friends restart nothing: {order:?}"
    );
}

#[test]
fn the_restart_cap_defers_what_is_not_urgent() {
    let now = OffsetDateTime::now_utc();
    let spec = NodeSpec::control_plane(now)
        .with("apiserver", Validity::days(365, Duration::days(50)))
        .with(
            "controller-manager.conf",
            Validity::days(365, Duration::days(55)),
        )
        .with("scheduler.conf", Validity::days(365, Duration::days(60)))
        .with(
            "kubelet-client-current.pem",
            Validity::days(91, Duration::days(3)),
        )
        .with("admin.conf", Validity::days(365, Duration::days(61)));
    let plan = plan_for(&spec, &Settings::default(), &History::default());
    // Cap 2: the urgent kubelet (3 days left) and the apiserver; the rest next pass.
    let planned: Vec<_> = plan
        .groups
        .iter()
        .map(|g| g.component.as_ref().map(|c| c.name()))
        .collect();
    assert_eq!(
        planned,
        [
            Some("kubelet".to_string()),
            Some("kube-apiserver".into()),
            None
        ]
    );
    let deferred: Vec<_> = plan
        .deferred
        .iter()
        .map(|d| d.group.component.as_ref().unwrap().name())
        .collect();
    assert_eq!(deferred, ["kube-controller-manager", "kube-scheduler"]);
    assert!(plan.deferred[0].why.contains("at most 2 restarts per pass"));
    // Urgent groups pass the cap.
    let spec = spec
        .with(
            "controller-manager.conf",
            Validity::days(365, Duration::days(5)),
        )
        .with("scheduler.conf", Validity::days(365, -Duration::days(1)));
    let plan = plan_for(&spec, &Settings::default(), &History::default());
    assert_eq!(
        plan.groups.iter().filter(|g| g.reload.is_restart()).count(),
        3
    );
    let deferred: Vec<_> = plan
        .deferred
        .iter()
        .map(|d| d.group.component.as_ref().unwrap().name())
        .collect();
    assert_eq!(
        deferred,
        ["kube-apiserver"],
        "only the one with 50 days left waits"
    );
}

#[test]
fn a_worker_plans_its_self_signed_serving_cert_and_blocks_the_client_cert() {
    let now = OffsetDateTime::now_utc();
    let spec = NodeSpec::worker(now)
        .with(
            "kubelet-client-current.pem",
            Validity::days(91, Duration::days(20)),
        )
        .with("kubelet.crt", Validity::days(365, Duration::days(20)));
    let plan = plan_for(&spec, &Settings::default(), &History::default());
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(names(&plan.groups[0]), ["kubelet.crt"]);
    assert_eq!(plan.not_renewable.len(), 1);
    assert!(
        plan.not_renewable[0].why.contains("external CA"),
        "{:?}",
        plan.not_renewable
    );
}

#[test]
fn a_recent_control_plane_restart_delays_the_next_by_the_gap() {
    let now = OffsetDateTime::now_utc();
    let spec =
        NodeSpec::control_plane(now).with("apiserver", Validity::days(365, Duration::days(50)));
    let history = History {
        restarts: vec![RestartRecord {
            component: "kube-scheduler".into(),
            control_plane: true,
            at: now - Duration::seconds(10),
        }],
    };
    let plan = plan_for(&spec, &Settings::default(), &history);
    assert_eq!(
        plan.control_plane_not_before,
        Some(now + Duration::seconds(20))
    );
    let plan = plan_for(&spec, &Settings::default(), &History::default());
    assert_eq!(plan.control_plane_not_before, None);
}

#[test]
fn nothing_due_is_an_empty_plan() {
    let plan = plan_for(
        &NodeSpec::control_plane(OffsetDateTime::now_utc()),
        &Settings::default(),
        &History::default(),
    );
    assert!(plan.is_empty() && plan.deferred.is_empty());
}

#[test]
fn a_due_leaf_whose_ca_ends_first_is_not_renewed_for_nothing() {
    // The CA ends in 20 days; apiserver.crt (capped at the CA's end by its last
    // renewal) ends with it and is due. Renewing could not outlive the CA: the daily
    // pass would renew and restart again every day.
    let now = OffsetDateTime::now_utc();
    let mut spec = NodeSpec::control_plane(now)
        .with("apiserver", Validity::days(365, Duration::days(20)))
        .with("admin.conf", Validity::days(365, Duration::days(10)));
    spec.ca_validity = Validity::days(3650, Duration::days(20));
    let plan = plan_for(&spec, &Settings::default(), &History::default());
    let blocked: Vec<_> = plan.not_renewable.iter().map(|b| b.name.as_str()).collect();
    assert!(blocked.contains(&"apiserver"), "{blocked:?}");
    let why = &plan
        .not_renewable
        .iter()
        .find(|b| b.name == "apiserver")
        .unwrap()
        .why;
    assert!(why.contains("cert-rotator ca renew ca"), "{why}");
    // admin.conf ends before the CA: renewing it still gains 10 days, so it is planned.
    let planned: Vec<_> = plan.groups.iter().flat_map(names).collect();
    assert!(planned.contains(&"admin.conf"), "{planned:?}");
    assert!(!planned.contains(&"apiserver"), "{planned:?}");
}

#[test]
fn a_kubelet_crt_reissued_for_its_issuer_or_names_is_not_blocked_by_its_cas_end() {
    // The CA ends in 20 days, before kubelet.crt (300 days left, not due by its dates).
    // Re-issued by the cluster CA or for its names it changes, capped or not: planned.
    let now = OffsetDateTime::now_utc();
    let mut spec =
        NodeSpec::control_plane(now).with("kubelet.crt", Validity::days(365, Duration::days(300)));
    spec.ca_validity = Validity::days(3650, Duration::days(20));
    let mut settings = Settings::default();
    settings.kubelet.serving = crate::config::serving::ServingMode::ClusterCa;
    let d = tempfile::tempdir().unwrap();
    fixture::build(d.path(), &spec).unwrap();
    let root = NodeRoot::new(d.path());
    let mut inv = inventory::read(&inventory::layout(&settings, &root), &root);
    let reason_of = |plan: &Plan| {
        let mut planned = plan.groups.iter().flat_map(|g| &g.targets);
        planned.find(|t| t.name == "kubelet.crt").map(|t| t.reason)
    };
    let plan = make_plan(&settings, &inv, &History::default(), now);
    assert_eq!(
        reason_of(&plan),
        Some(Some(DueReason::ServingIssuer)),
        "{:?}",
        plan.not_renewable
    );
    // Signed by the cluster CA already, but lacking a name the node's files want.
    let o = inv
        .certificates
        .iter_mut()
        .find(|o| o.target.name == "kubelet.crt")
        .unwrap();
    let inventory::TargetState::Read(r) = &mut o.state else {
        panic!("kubelet.crt is read");
    };
    r.signer = inventory::Signer::Authority("ca".into());
    let mut s = (**o.target.serving.as_ref().unwrap()).clone();
    s.wanted.add_dns("cp-1.new.example");
    o.target.serving = Some(std::sync::Arc::new(s));
    let plan = make_plan(&settings, &inv, &History::default(), now);
    assert_eq!(
        reason_of(&plan),
        Some(Some(DueReason::ServingSans)),
        "{:?}",
        plan.not_renewable
    );
}

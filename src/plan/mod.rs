//! The plan: a pure function of (settings, inventory, history, now), and the hand-off
//! to execution. A planned target carries everything the sequencer needs: the
//! [`Target`], what the inventory read of it, who signs it ([`CaRoute`]) and what
//! reloads it ([`Reload`]). `run` plans by the window ([`make_plan`]); `renew`,
//! `renew-all` and `cert-renew` plan every selected target ([`forced`]).
//!
//! The rule: a certificate is due when less than `remaining_fraction` (20%) of its
//! lifetime or less than `remaining_days` (30) remain, and when it expired. The instant
//! it becomes due is the earlier of the two thresholds, which gives the two schedules
//! kubeadm users know: a 91-day certificate at day 61 (the 30-day rule comes first), a
//! 365-day one at day 292 (the 20% rule comes first).

pub mod authorities;
pub mod route;
pub mod window;

#[cfg(test)]
mod queue_tests;

pub use authorities::{ca_restarts, due_authorities, DueAuthority};
pub use route::{ca_route, CaRoute};
pub use window::{assess, assess_target, safety_net, Assessment, DueReason};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::config::Settings;
use crate::inventory::{AuthorityDef, Inventory, Reading, Target, TargetState};
use crate::model::Component;

use route::CaOverride;

/// How a component picks up new certificates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum Reload {
    /// Nothing reads it continuously (admin.conf): no restart.
    None,
    /// A systemd unit, restarted through D-Bus.
    Unit(String),
    /// A static pod, recreated by the kubelet when its manifest's content changes.
    StaticPod(String),
    /// etcd reloads its certificates on new connections: verified, not restarted.
    Itself,
}

impl Reload {
    pub fn of(component: Option<&Component>) -> Reload {
        match component {
            None => Reload::None,
            Some(Component::KubeApiserver) => Reload::StaticPod("kube-apiserver".into()),
            Some(Component::KubeControllerManager) => {
                Reload::StaticPod("kube-controller-manager".into())
            }
            Some(Component::KubeScheduler) => Reload::StaticPod("kube-scheduler".into()),
            Some(Component::StaticPod(p)) => Reload::StaticPod(p.clone()),
            Some(Component::Kubelet) => Reload::Unit("kubelet.service".into()),
            Some(Component::Unit(u)) => Reload::Unit(u.clone()),
            Some(Component::Etcd) => Reload::Itself,
        }
    }

    /// Counts against the per-pass restart cap.
    pub fn is_restart(&self) -> bool {
        matches!(self, Reload::Unit(_) | Reload::StaticPod(_))
    }

    /// A control-plane restart: one at a time, with a gap between them.
    pub fn is_control_plane(&self) -> bool {
        matches!(self, Reload::StaticPod(_))
    }
}

/// One certificate to renew, with what execution needs: nothing is looked up again.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedTarget {
    pub name: String,
    pub path: String,
    /// Why it is due; `None` for a renewal on request of a certificate that is not.
    pub reason: Option<DueReason>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub renew_at: OffsetDateTime,
    /// Expired or within `urgent_days`: never deferred.
    pub urgent: bool,
    #[serde(skip)]
    pub target: Target,
    /// What the inventory read: the certificate, its key, the file's bytes.
    #[serde(skip)]
    pub reading: Box<Reading>,
    #[serde(skip)]
    pub route: CaRoute,
}

/// The certificates one component reloads, renewed together so it restarts once.
#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub component: Option<Component>,
    pub reload: Reload,
    pub targets: Vec<PlannedTarget>,
    pub urgent: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Deferral {
    pub group: Group,
    pub why: String,
}

/// A due or unreadable target the pass cannot act on.
#[derive(Clone, Debug, Serialize)]
pub struct Blocked {
    pub name: String,
    pub path: String,
    pub why: String,
}

/// Restarts done by earlier passes (state directory), so the limits hold across passes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct History {
    pub restarts: Vec<RestartRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestartRecord {
    pub component: String,
    pub control_plane: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl History {
    pub fn last_control_plane_restart(&self) -> Option<OffsetDateTime> {
        self.restarts
            .iter()
            .filter(|r| r.control_plane)
            .map(|r| r.at)
            .max()
    }
}

/// What a pass will do, in order, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    pub groups: Vec<Group>,
    pub deferred: Vec<Deferral>,
    /// Due, but no CA on this node can renew them.
    pub not_renewable: Vec<Blocked>,
    /// Due (or asked for), but the key of the CA that signs them is there and cannot
    /// sign (unreadable, not a key, another CA's): failed by the pass, naming the key,
    /// never promised as renewals.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cannot_sign: Vec<Blocked>,
    /// Could not be read: reported, never touched.
    pub unreadable: Vec<Blocked>,
    /// Selected for a renewal on request but absent, and optional: skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<Blocked>,
    /// The node's CAs, for the routes to a local CA.
    #[serde(skip)]
    pub authorities: Vec<AuthorityDef>,
    /// The first control-plane restart waits until then (gap after an earlier pass).
    #[serde(with = "time::serde::rfc3339::option")]
    pub control_plane_not_before: Option<OffsetDateTime>,
    /// CAs due by `[authorities]`: `run` renews those it may with their own key before
    /// any leaf (so no leaf is capped by a dying CA), and reports the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorities_due: Vec<DueAuthority>,
    /// Private key files open to group or others, each naming the file and its mode:
    /// said, never changed by reading (a renewal writes its new key 0600).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_warnings: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

impl Group {
    /// The component's Kubernetes name, or `no component` (admin.conf).
    pub fn component_name(&self) -> String {
        self.component
            .as_ref()
            .map(|c| c.name())
            .unwrap_or_else(|| "no component".into())
    }
}

/// Routes a target read by the inventory: the local CA when its key is on the node,
/// else as the configuration says (see [`ca_route`]).
/// A certificate no readable CA signed, on a node whose CA file is unreadable (cut
/// short, not a CA): the broken CA file is the cause, and is named first.
fn route_of(settings: &Settings, inv: &Inventory, target: &Target, reading: &Reading) -> CaRoute {
    let key_of = |name: &str| inv.authority(name).map(|a| (a.def.key.clone(), a.has_key));
    let serving = target
        .serving
        .as_ref()
        .and_then(|s| route::serving_route(settings, s.mode, &key_of));
    let route =
        serving.unwrap_or_else(|| ca_route(settings, &target.name, &reading.signer, &key_of));
    let broken: Vec<String> = inv
        .authorities
        .iter()
        .filter_map(|a| a.cert.as_ref().err().map(|e| e.to_string()))
        .collect();
    match route {
        CaRoute::NotRenewable(why)
            if reading.signer == crate::inventory::Signer::Unknown && !broken.is_empty() =>
        {
            CaRoute::NotRenewable(format!(
                "{}: no usable CA file to recognise its signer by ({why})",
                broken.join("; ")
            ))
        }
        route => route,
    }
}

/// A CA key that is there but cannot sign (unreadable, not a key, another CA's), as a
/// failure of the pass naming the file, as an unreadable leaf key is one.
fn broken_key(a: &crate::inventory::ObservedAuthority) -> Option<Blocked> {
    a.key_error.as_ref().map(|e| Blocked {
        name: a.def.name.clone(),
        path: a.def.key.display().to_string(),
        why: e.to_string(),
    })
}

/// Why the local CA `route` names cannot sign: its key is there but unusable. Its
/// certificates are not promised as renewals; the pass fails them, naming the key.
fn key_cannot_sign(inv: &Inventory, route: &CaRoute) -> Option<String> {
    let CaRoute::Local(name) = route else {
        return None;
    };
    let e = inv.authority(name)?.key_error.as_ref()?;
    Some(format!("its CA {name}'s key cannot be used: {e}"))
}

fn blocked(t: &Target, why: String) -> Blocked {
    Blocked {
        name: t.name.clone(),
        path: t.path.display().to_string(),
        why,
    }
}

/// Where a component comes in a control plane's start-up: what the later ones need must
/// serve first. Kubeconfigs no component reads (admin.conf) restart nothing: first.
fn startup_rank(component: Option<&Component>) -> u8 {
    match component {
        None => 0,
        Some(Component::Etcd) => 1,
        Some(Component::KubeApiserver) => 2,
        Some(Component::KubeControllerManager | Component::KubeScheduler) => 3,
        Some(Component::Kubelet) => 4,
        Some(Component::Unit(_) | Component::StaticPod(_)) => 5,
    }
}

fn group_by_component(targets: Vec<PlannedTarget>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for t in targets {
        let component = t.target.component.clone();
        match groups.iter_mut().find(|g| g.component == component) {
            Some(g) => {
                g.urgent |= t.urgent;
                g.targets.push(t);
            }
            None => groups.push(Group {
                reload: Reload::of(component.as_ref()),
                component,
                urgent: t.urgent,
                targets: vec![t],
            }),
        }
    }
    groups
}

/// A renewal on request (`renew`, `renew-all`, `cert-renew`): every target of `inv`,
/// due or not, grouped by component in the order given, no restart cap. Absent optional
/// targets are listed in `absent`; `ca` (the command line's CA) signs every target.
/// Pure.
pub fn forced(
    settings: &Settings,
    inv: &Inventory,
    ca: Option<&CaOverride>,
    now: OffsetDateTime,
) -> Plan {
    let urgent_within = Duration::seconds_f64(settings.run.urgent_days * 86_400.0);
    let mut planned = Vec::new();
    let mut plan = Plan {
        now,
        groups: Vec::new(),
        deferred: Vec::new(),
        not_renewable: Vec::new(),
        cannot_sign: Vec::new(),
        unreadable: Vec::new(),
        absent: Vec::new(),
        authorities: authority_defs(inv),
        control_plane_not_before: None,
        authorities_due: Vec::new(),
        key_warnings: key_warnings(inv),
    };
    for o in &inv.certificates {
        let t = &o.target;
        let r = match &o.state {
            TargetState::Read(r) => r,
            TargetState::Missing => {
                plan.absent.push(blocked(t, "absent (optional)".into()));
                continue;
            }
            TargetState::NotManaged(why) => {
                plan.absent.push(blocked(t, why.clone()));
                continue;
            }
            TargetState::Error(e) => {
                plan.unreadable.push(blocked(t, e.clone()));
                continue;
            }
        };
        let route = match ca {
            Some(given) => CaRoute::Given(given.clone()),
            None => route_of(settings, inv, t, r),
        };
        if let CaRoute::NotRenewable(why) = route {
            plan.not_renewable.push(blocked(t, why));
            continue;
        }
        if let Some(why) = key_cannot_sign(inv, &route) {
            plan.cannot_sign.push(blocked(t, why));
            continue;
        }
        let a = assess_target(
            &t.window,
            t.handover.as_ref(),
            r.cert.not_before,
            r.cert.not_after,
            now,
        );
        planned.push(PlannedTarget {
            name: t.name.clone(),
            path: t.path.display().to_string(),
            reason: a.reason,
            not_after: r.cert.not_after,
            renew_at: a.renew_at,
            urgent: a.residual < urgent_within,
            target: t.clone(),
            reading: r.clone(),
            route,
        });
    }
    plan.groups = group_by_component(planned);
    plan
}

/// What the pass that runs a plan can do, beyond the settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Nothing will restart (`--root` is a sandbox or a mounted disk): the restart cap
    /// paces restarts, so it defers nothing here.
    pub no_restarts: bool,
}

/// Builds the queue: due targets by urgency (expired first, then by renew_at), grouped
/// by the component that reloads them so each restarts at most once, at most
/// `max_restarts_per_pass` restarts unless urgent. Pure.
pub fn make_plan(
    settings: &Settings,
    inv: &Inventory,
    history: &History,
    now: OffsetDateTime,
) -> Plan {
    make_plan_with(settings, inv, history, now, &PlanOptions::default())
}

/// Moves the deferred groups of components that are down (`down`: component and the
/// probe's error) into the plan: restarting a broken component cannot lower
/// availability, and a revived node must come back in one pass. Pure.
pub fn lift_cap_for_broken(plan: &mut Plan, down: &[(Component, String)]) {
    let (broken, kept): (Vec<Deferral>, Vec<Deferral>) = std::mem::take(&mut plan.deferred)
        .into_iter()
        .partition(|d| {
            d.group
                .component
                .as_ref()
                .is_some_and(|c| down.iter().any(|(x, _)| x == c))
        });
    plan.deferred = kept;
    plan.groups.extend(broken.into_iter().map(|d| d.group));
}

/// [`make_plan`] for a pass that can do what `opts` says.
/// Why renewing a certificate that ends at `not_after` from `route`'s local CA gains
/// nothing: the CA ends no later than the certificate does.
fn no_gain(inv: &Inventory, route: &CaRoute, not_after: OffsetDateTime) -> Option<String> {
    let CaRoute::Local(name) = route else {
        return None;
    };
    let a = inv.authorities.iter().find(|a| &a.def.name == name)?;
    let ca = a.cert.as_ref().ok()?;
    (ca.not_after <= not_after).then(|| {
        format!(
            "its CA {name} ends {}, no later than this certificate: a renewal would gain nothing; renew the CA (`cert-rotator ca renew {name}`)",
            crate::timefmt::rfc3339(ca.not_after)
        )
    })
}

pub fn make_plan_with(
    settings: &Settings,
    inv: &Inventory,
    history: &History,
    now: OffsetDateTime,
    opts: &PlanOptions,
) -> Plan {
    let urgent_within = Duration::seconds_f64(settings.run.urgent_days * 86_400.0);
    let mut due: Vec<PlannedTarget> = Vec::new();
    let mut not_renewable = Vec::new();
    let mut cannot_sign = Vec::new();
    let mut unreadable = Vec::new();
    // A CA that cannot be read hides which of its leaves are due: the pass must fail
    // naming it, not report its leaves as signed by nobody.
    // So does a CA key that cannot sign: the pass fails naming it (as it does for an
    // unreadable leaf key), and the leaves that need it are not promised.
    for a in &inv.authorities {
        if let Err(e) = &a.cert {
            unreadable.push(Blocked {
                name: a.def.name.clone(),
                path: a.def.cert.display().to_string(),
                why: e.to_string(),
            });
        }
        unreadable.extend(broken_key(a));
    }
    for o in &inv.certificates {
        let t = &o.target;
        let r = match &o.state {
            TargetState::Read(r) => r,
            TargetState::Missing | TargetState::NotManaged(_) => continue,
            TargetState::Error(e) => {
                unreadable.push(blocked(t, e.clone()));
                continue;
            }
        };
        let a = assess_target(
            &t.window,
            t.handover.as_ref(),
            r.cert.not_before,
            r.cert.not_after,
            now,
        );
        let serving = t.serving.as_deref();
        let issuer_due = serving.is_some_and(|s| route::serving_issuer_due(s.mode, &r.signer));
        let sans_due = serving.is_some_and(|s| route::serving_sans_due(s, r));
        let Some(reason) = a
            .reason
            .or(issuer_due.then_some(DueReason::ServingIssuer))
            .or(sans_due.then_some(DueReason::ServingSans))
        else {
            continue;
        };
        let route = route_of(settings, inv, t, r);
        if let CaRoute::NotRenewable(why) = route {
            not_renewable.push(blocked(t, why));
            continue;
        }
        if let Some(why) = key_cannot_sign(inv, &route) {
            cannot_sign.push(blocked(t, why));
            continue;
        }
        // Re-issued for its issuer or its names (serving-issuer, serving-sans, whatever
        // reason comes first), kubelet.crt changes even when its dates cannot, and is not
        // due for them again: no "nothing to gain" there.
        let reissue = issuer_due || sans_due;
        if let Some(why) = no_gain(inv, &route, r.cert.not_after).filter(|_| !reissue) {
            // Every daily pass would renew (and restart) again for nothing: a renewal
            // is capped at the CA's end, so it cannot outlive what is there.
            not_renewable.push(blocked(t, why));
            continue;
        }
        due.push(PlannedTarget {
            name: t.name.clone(),
            path: t.path.display().to_string(),
            reason: Some(reason),
            not_after: r.cert.not_after,
            renew_at: a.renew_at,
            urgent: a.residual < urgent_within,
            target: t.clone(),
            reading: r.clone(),
            route,
        });
    }
    // Expired first, in the order the control plane comes up (etcd, then the API
    // server, then its clients: a revived apiserver cannot become ready while etcd still
    // serves an expired certificate); then the earliest renew_at.
    let key = |t: &PlannedTarget| {
        let expired = t.reason == Some(DueReason::Expired);
        (
            !expired,
            if expired {
                startup_rank(t.target.component.as_ref())
            } else {
                0
            },
            t.renew_at,
            t.name.clone(),
        )
    };
    due.sort_by_key(key);
    let groups = group_by_component(due);
    let cap = settings.run.max_restarts_per_pass;
    let mut restarts = 0;
    let mut planned = Vec::new();
    let mut deferred = Vec::new();
    for g in groups {
        if g.reload.is_restart() && !opts.no_restarts {
            if restarts >= cap && !g.urgent {
                deferred.push(Deferral {
                    why: format!("at most {cap} restarts per pass; it waits for the next pass (not urgent: more than {} days left)", settings.run.urgent_days),
                    group: g,
                });
                continue;
            }
            restarts += 1;
        }
        planned.push(g);
    }
    let gap = Duration::seconds(settings.run.min_restart_gap_seconds as i64);
    let control_plane_not_before = history
        .last_control_plane_restart()
        .map(|t| t + gap)
        .filter(|t| *t > now && planned.iter().any(|g| g.reload.is_control_plane()));
    Plan {
        now,
        groups: planned,
        deferred,
        not_renewable,
        cannot_sign,
        unreadable,
        absent: Vec::new(),
        authorities: authority_defs(inv),
        control_plane_not_before,
        authorities_due: due_authorities(&settings.authorities, inv, now),
        key_warnings: key_warnings(inv),
    }
}

fn key_warnings(inv: &Inventory) -> Vec<String> {
    inv.open_keys().iter().map(|o| o.to_string()).collect()
}

fn authority_defs(inv: &Inventory) -> Vec<AuthorityDef> {
    inv.authorities.iter().map(|a| a.def.clone()).collect()
}

//! The plan for people (`plan`, `run --dry-run`, the head of `run`): groups in order,
//! the restart each causes, and what waits or cannot be done.

use crate::node::Liveness;
use crate::plan::{Plan, Reload};
use crate::timefmt::rfc3339;

/// How a component picks up its new certificates, in the words of the plan and the pass
/// summary: one rendering of [`Reload`] for every output.
pub fn reload_words(reload: &Reload) -> String {
    match reload {
        Reload::None => "no restart (nothing reloads it)".to_string(),
        Reload::Unit(u) => format!("restart {u} through systemd"),
        Reload::StaticPod(p) => format!("restart static pod {p} (manifest annotation)"),
        Reload::Itself => "no restart (reloads by itself), verify".to_string(),
    }
}

/// Why a plan's restarts will not be performed, in its words; `None` where they are.
fn not_performed(liveness: Liveness) -> Option<&'static str> {
    match liveness {
        Liveness::Live => None,
        Liveness::NoRestart => Some(" [not performed: --no-restart]"),
        Liveness::Offline => Some(" [not performed under --root]"),
    }
}

/// The plan for people. Where the node's restarts and verification are not performed
/// (`liveness`), each group says so.
pub fn plan_text(plan: &Plan, liveness: Liveness) -> String {
    let skipped = not_performed(liveness);
    let mut out = String::new();
    for a in &plan.authorities_due {
        let restarts: Vec<String> = a.restarts.iter().map(|c| c.name()).collect();
        if let Some(h) = &a.held {
            out.push_str(&format!(
                "CA {} is due ({}, expires {}) and is not renewed: {h}\n",
                a.name,
                a.reason,
                rfc3339(a.not_after)
            ));
        } else if a.automatic {
            out.push_str(&format!(
                "CA {}: renew with its own key first ({}, expires {}); every copy on the node, then restart {}{}\n",
                a.name,
                a.reason,
                rfc3339(a.not_after),
                restarts.join(", "),
                skipped.unwrap_or("")
            ));
        } else {
            out.push_str(&format!(
                "CA {} is due ({}, expires {}) and is not renewed automatically ({}): cert-rotator ca renew {}\n",
                a.name,
                a.reason,
                rfc3339(a.not_after),
                if a.has_key {
                    "[authorities] renew = false"
                } else {
                    "its key is not on this node"
                },
                a.name
            ));
        }
    }
    if plan.groups.is_empty() {
        out.push_str(if plan.authorities_due.is_empty() {
            "Nothing is due.\n"
        } else {
            "No other certificate is due.\n"
        });
    }
    for (i, g) in plan.groups.iter().enumerate() {
        let comp = match &g.component {
            Some(c) => c.name(),
            None => "-".into(),
        };
        let reload = reload_words(&g.reload);
        let reload = match skipped {
            Some(why) if !matches!(g.reload, Reload::None) => format!("{reload}{why}"),
            _ => reload,
        };
        out.push_str(&format!("{}. {comp}: {reload}\n", i + 1));
        for t in &g.targets {
            out.push_str(&format!(
                "     renew {:<28} {:<16} expires {}{}\n",
                t.name,
                t.reason.as_ref().map_or("requested".into(), |r| r.as_str()),
                rfc3339(t.not_after),
                if t.urgent { " (urgent)" } else { "" }
            ));
        }
    }
    if let Some(t) = plan.control_plane_not_before {
        out.push_str(&format!(
            "Control-plane restarts wait until {} (gap after the last one).\n",
            rfc3339(t)
        ));
    }
    for d in &plan.deferred {
        for t in &d.group.targets {
            out.push_str(&format!("Deferred: {} ({})\n", t.name, d.why));
        }
    }
    for b in &plan.not_renewable {
        out.push_str(&format!("Not renewable here: {} ({})\n", b.name, b.why));
    }
    for b in &plan.cannot_sign {
        out.push_str(&format!("Cannot be renewed: {} ({})\n", b.name, b.why));
    }
    for b in &plan.unreadable {
        out.push_str(&format!("Unreadable: {}\n", b.why));
    }
    for w in &plan.key_warnings {
        out.push_str(&format!("WARNING: {w}\n"));
    }
    crate::shown::printable_text(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reload_has_its_words() {
        assert_eq!(
            reload_words(&Reload::Unit("kubelet.service".into())),
            "restart kubelet.service through systemd"
        );
        assert_eq!(
            reload_words(&Reload::StaticPod("kube-apiserver".into())),
            "restart static pod kube-apiserver (manifest annotation)"
        );
        assert_eq!(
            reload_words(&Reload::Itself),
            "no restart (reloads by itself), verify"
        );
        assert_eq!(
            reload_words(&Reload::None),
            "no restart (nothing reloads it)"
        );
    }
}

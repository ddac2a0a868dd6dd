//! What `status` prints: a table for people and JSON for programs (the contract), and
//! the plain statement that a host is no Kubernetes node at all.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::AuthoritySettings;
use crate::inventory::{
    AuthorityDef, Inventory, Layout, NodeRole, ObservedAuthority, Target, TargetState,
};
use crate::model::{Component, TargetKind};
use crate::node::NodeRoot;
use crate::plan::{assess_target, DueReason};
use crate::timefmt::{human_date, human_residual, rfc3339};

/// One certificate as `status --json` shows it. The field set is a contract.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateStatus {
    pub name: String,
    pub path: String,
    pub kind: TargetKind,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub not_before: Option<OffsetDateTime>,
    #[serde(with = "rfc3339_opt")]
    pub not_after: Option<OffsetDateTime>,
    pub residual_seconds: Option<i64>,
    pub lifetime_seconds: Option<i64>,
    pub due: bool,
    pub due_reason: Option<DueReason>,
    #[serde(with = "rfc3339_opt")]
    pub renew_at: Option<OffsetDateTime>,
    pub component: Option<Component>,
    pub missing: bool,
    /// Present but not a client certificate (a token, exec or OIDC kubeconfig): why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_managed: Option<String>,
    pub error: Option<String>,
    /// The CA that signed it: `ca`, `front-proxy-ca`, `etcd/ca`, a self-signed form, or
    /// `unknown`.
    pub signer: Option<String>,
    /// The file the certificate was read from, when not `path` itself (the target of
    /// kubelet-client-current.pem, a kubeconfig's referenced file).
    pub cert_file: Option<String>,
    pub key_algorithm: Option<String>,
    /// Its private key's file is open to group or others: the file and its mode.
    pub key_warning: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuthorityStatus {
    pub name: String,
    pub path: String,
    pub subject: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub not_after: Option<OffsetDateTime>,
    pub residual_seconds: Option<i64>,
    pub has_key: bool,
    /// The key is there but cannot sign for the CA (unreadable, not a key, another
    /// CA's), naming the file: an error, as an unreadable leaf key is.
    pub key_error: Option<String>,
    /// The key's file is open to group or others: the file and its mode.
    pub key_warning: Option<String>,
    /// Under `[authorities] remaining_fraction` of its lifetime left: `ca renew` it.
    pub due: bool,
    /// `expired` or `under-P-percent`; `null` when not due.
    pub due_reason: Option<String>,
    pub error: Option<String>,
    /// Set when the CA ends within a year: every leaf it signs ends by then.
    pub warning: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub role: NodeRole,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub certificates: Vec<CertificateStatus>,
    pub authorities: Vec<AuthorityStatus>,
    /// A renewal interrupted by a crash, not yet finished or undone.
    pub unfinished_write: Option<String>,
    /// Passes `run` skipped in a row because kubeadm was at work, since when.
    pub kubeadm_skipped: Option<String>,
}

/// `status` shows times to the second.
pub fn whole_second(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_nanosecond(0).unwrap_or(now)
}

impl AuthorityStatus {
    /// Its certificate or its key cannot be used: `status` exits 1.
    pub fn has_error(&self) -> bool {
        self.error.is_some() || self.key_error.is_some()
    }
}

impl CertificateStatus {
    /// One target's entry, from what was read of it, at `now` (see [`whole_second`]).
    pub fn of(t: &Target, state: &TargetState, now: OffsetDateTime) -> CertificateStatus {
        let mut s = CertificateStatus {
            name: t.name.clone(),
            path: t.path.display().to_string(),
            kind: t.kind,
            subject: None,
            issuer: None,
            serial: None,
            not_before: None,
            not_after: None,
            residual_seconds: None,
            lifetime_seconds: None,
            due: false,
            due_reason: None,
            renew_at: None,
            component: t.component.clone(),
            missing: false,
            not_managed: None,
            error: None,
            signer: None,
            cert_file: None,
            key_algorithm: None,
            key_warning: None,
        };
        match state {
            TargetState::Missing => s.missing = true,
            TargetState::NotManaged(why) => s.not_managed = Some(why.clone()),
            TargetState::Error(e) => s.error = Some(e.clone()),
            TargetState::Read(r) => {
                let a = assess_target(
                    &t.window,
                    t.handover.as_ref(),
                    r.cert.not_before,
                    r.cert.not_after,
                    now,
                );
                s.subject = Some(r.cert.subject.clone());
                s.issuer = Some(r.cert.issuer.clone());
                s.serial = Some(r.cert.serial.clone());
                s.not_before = Some(r.cert.not_before);
                s.not_after = Some(r.cert.not_after);
                s.residual_seconds = Some(a.residual.whole_seconds());
                s.lifetime_seconds = Some(a.lifetime.whole_seconds());
                s.due = a.due;
                s.due_reason = a.shown_reason();
                s.renew_at = Some(a.renew_at);
                s.signer = Some(r.signer.label());
                if r.cert_file != t.path {
                    s.cert_file = Some(r.cert_file.display().to_string());
                }
                s.key_algorithm = Some(r.key_algorithm.to_string());
                s.key_warning = r.open_key.as_ref().map(|o| o.to_string());
                // No client accepts it, and it has no lifetime to renew with: an
                // error, with the way out.
                if r.cert.not_after <= r.cert.not_before {
                    s.error = Some(format!(
                        "{}: notAfter {} is not after notBefore {}: an invalid certificate; renew it with `cert-rotator renew {} --days N`",
                        r.cert_file.display(),
                        crate::timefmt::rfc3339(r.cert.not_after),
                        crate::timefmt::rfc3339(r.cert.not_before),
                        t.name
                    ));
                }
            }
        }
        s
    }
}

/// The authorities' entries at `now` (see [`whole_second`]), due by `settings`.
pub fn authority_statuses(
    observed: &[ObservedAuthority],
    settings: &AuthoritySettings,
    now: OffsetDateTime,
) -> Vec<AuthorityStatus> {
    let ca_due = |a: &ObservedAuthority| {
        let c = a.cert.as_ref().ok()?;
        crate::plan::authorities::assess_ca(settings, c, now)
            .reason
            .map(|r| r.as_str().into_owned())
    };
    observed
        .iter()
        .map(|a| AuthorityStatus {
            name: a.def.name.clone(),
            path: a.def.cert.display().to_string(),
            subject: a.cert.as_ref().ok().map(|c| c.subject.clone()),
            not_after: a.cert.as_ref().ok().map(|c| c.not_after),
            residual_seconds: a
                .cert
                .as_ref()
                .ok()
                .map(|c| (c.not_after - now).whole_seconds()),
            has_key: a.has_key,
            key_error: a.key_error.as_ref().map(|e| e.to_string()),
            key_warning: a.open_key.as_ref().map(|o| o.to_string()),
            due: ca_due(a).is_some(),
            due_reason: ca_due(a),
            error: a.cert.as_ref().err().map(|e| e.to_string()),
            warning: a
                .cert
                .as_ref()
                .ok()
                .and_then(|c| ca_warning(&a.def.name, c.not_after, now)),
        })
        .collect()
}

/// The JSON document's shape, for [`Status::to_json`] and for the stream of
/// `status --json` (super::status_stream), so the two cannot drift apart: the field
/// order and names are the contract. `C` is the certificates' list, or their stream.
#[derive(Serialize)]
pub(super) struct Document<'a, C> {
    pub role: NodeRole,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub certificates: C,
    pub authorities: &'a [AuthorityStatus],
    pub unfinished_write: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeadm_skipped: &'a Option<String>,
}

impl Status {
    /// Builds the status of an inventory at `now`, CAs due by the default
    /// `[authorities]` window; pure.
    pub fn new(inv: &Inventory, now: OffsetDateTime) -> Status {
        Status::with_authorities(inv, &AuthoritySettings::default(), now)
    }

    /// Builds the status of an inventory at `now`, CAs due by `authorities`; pure.
    pub fn with_authorities(
        inv: &Inventory,
        authorities: &AuthoritySettings,
        now: OffsetDateTime,
    ) -> Status {
        let now = whole_second(now);
        Status {
            role: inv.role,
            generated_at: now,
            certificates: inv
                .certificates
                .iter()
                .map(|o| CertificateStatus::of(&o.target, &o.state, now))
                .collect(),
            authorities: authority_statuses(&inv.authorities, authorities, now),
            unfinished_write: None,
            kubeadm_skipped: None,
        }
    }

    pub fn has_errors(&self) -> bool {
        self.certificates.iter().any(|c| c.error.is_some())
            || self.authorities.iter().any(AuthorityStatus::has_error)
    }

    pub fn to_json(&self) -> String {
        let doc = Document {
            role: self.role,
            generated_at: self.generated_at,
            certificates: &self.certificates,
            authorities: &self.authorities,
            unfinished_write: &self.unfinished_write,
            kubeadm_skipped: &self.kubeadm_skipped,
        };
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// A table in the manner of `kubeadm certs check-expiration`.
    pub fn to_table(&self) -> String {
        let mut rows = vec![[
            "CERTIFICATE".to_string(),
            "PATH".into(),
            "EXPIRES".into(),
            "RESIDUAL TIME".into(),
            "CERTIFICATE AUTHORITY".into(),
            "DUE".into(),
        ]];
        let mut errors = Vec::new();
        for c in &self.certificates {
            let (expires, residual, ca, due) = if c.missing {
                (
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "missing (optional)".into(),
                )
            } else if c.not_managed.is_some() {
                (
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "not managed (no client certificate)".into(),
                )
            } else if let Some(e) = &c.error {
                errors.push(format!("{}: {e}", c.name));
                ("-".into(), "-".into(), "-".into(), "ERROR".into())
            } else {
                (
                    c.not_after.map(human_date).unwrap_or_default(),
                    c.residual_seconds.map(human_residual).unwrap_or_default(),
                    c.signer.clone().unwrap_or_default(),
                    match (c.due, c.due_reason) {
                        (true, Some(r)) => format!("yes ({})", r.as_str()),
                        (false, Some(DueReason::KubeletRotates)) => format!(
                            "no (the kubelet rotates it; safety net {})",
                            c.renew_at.map(human_date).unwrap_or_default()
                        ),
                        _ => format!(
                            "no (renew {})",
                            c.renew_at.map(human_date).unwrap_or_default()
                        ),
                    },
                )
            };
            rows.push([c.name.clone(), c.path.clone(), expires, residual, ca, due]);
        }
        let mut out = render(&rows);
        out.push('\n');
        let mut ca_rows = vec![[
            "CERTIFICATE AUTHORITY".to_string(),
            "PATH".into(),
            "EXPIRES".into(),
            "RESIDUAL TIME".into(),
            "KEY".into(),
            "DUE".into(),
        ]];
        for a in &self.authorities {
            if let Some(e) = &a.error {
                errors.push(format!("{}: {e}", a.name));
            }
            if let Some(e) = &a.key_error {
                errors.push(format!("{}: {e}", a.name));
            }
            ca_rows.push([
                a.name.clone(),
                a.path.clone(),
                a.not_after
                    .map(human_date)
                    .unwrap_or_else(|| "ERROR".into()),
                a.residual_seconds.map(human_residual).unwrap_or_default(),
                key_words(a.has_key, a.key_error.is_some()).into(),
                match (&a.error, &a.due_reason) {
                    (Some(_), _) => "-".into(),
                    (None, Some(r)) => format!("yes ({r}): cert-rotator ca renew {}", a.name),
                    (None, None) => "no".into(),
                },
            ]);
        }
        out.push_str(&render(&ca_rows));
        for a in &self.authorities {
            if let Some(w) = &a.warning {
                out.push_str(&format!("\nWARNING: {w}\n"));
            }
        }
        let open_keys = self.authorities.iter().map(|a| &a.key_warning);
        let open_keys = open_keys.chain(self.certificates.iter().map(|c| &c.key_warning));
        for w in open_keys.flatten() {
            out.push_str(&format!("\nWARNING: {w}\n"));
        }
        if let Some(w) = &self.unfinished_write {
            out.push_str(&format!("\nUnfinished write: {w}\n"));
        }
        if let Some(k) = &self.kubeadm_skipped {
            out.push_str(&format!("\nkubeadm: {k}\n"));
        }
        if !errors.is_empty() {
            out.push_str("\nErrors:\n");
            for e in errors {
                out.push_str(&format!("  {e}\n"));
            }
        }
        crate::shown::printable_text(&out).into_owned()
    }
}

/// A host where `status` found nothing of a Kubernetes node: every file it looked for is
/// absent. Said plainly rather than as a table of missing rows and one unreadable CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotANode {
    /// Node paths looked for: the CA certificates and every target of the layout.
    pub looked_for: Vec<PathBuf>,
    /// The `--root` they were looked for under (`/` on the live host).
    pub root: PathBuf,
}

impl NotANode {
    /// Some when nothing of a node exists: every target is absent (none unreadable, which
    /// is damage, not absence) and no CA certificate file exists. The role was decided by
    /// the layout from the same files, so a node with any of them is reported as usual.
    pub fn detect(inv: &Inventory, root: &NodeRoot) -> Option<NotANode> {
        let targets_absent = inv
            .certificates
            .iter()
            .all(|o| matches!(o.state, TargetState::Missing));
        Self::judge(
            targets_absent,
            inv.authorities.iter().map(|a| &a.def),
            inv.certificates.iter().map(|o| &o.target),
            root,
        )
    }

    /// [`Self::detect`] for a reader that kept no inventory (`status` reads a target at a
    /// time): `targets_absent` tells whether every target of `layout` was missing.
    pub fn detect_in(layout: &Layout, targets_absent: bool, root: &NodeRoot) -> Option<NotANode> {
        Self::judge(
            targets_absent,
            layout.authorities.iter(),
            layout.targets.iter(),
            root,
        )
    }

    fn judge<'a>(
        targets_absent: bool,
        authorities: impl Iterator<Item = &'a AuthorityDef> + Clone,
        targets: impl Iterator<Item = &'a Target>,
        root: &NodeRoot,
    ) -> Option<NotANode> {
        let cas_absent = authorities.clone().all(|a| !root.exists(&a.cert));
        if !(targets_absent && cas_absent) {
            return None;
        }
        let mut looked_for: Vec<PathBuf> = authorities
            .map(|a| a.cert.clone())
            .chain(targets.map(|t| t.path.clone()))
            .collect();
        looked_for.dedup();
        Some(NotANode {
            looked_for,
            root: root.dir().to_path_buf(),
        })
    }
}

impl fmt::Display for NotANode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self
            .looked_for
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        write!(
            f,
            "not a Kubernetes node: none of {} exists under {} \
             (set the [kubeadm] paths in the configuration if this node keeps them elsewhere)",
            list.join(", "),
            self.root.display()
        )
    }
}

/// The KEY column of the CA tables (`status`, `ca status`): the key is on the node, not
/// (an external CA), or there but unusable (the reason is under the errors).
pub fn key_words(has_key: bool, key_error: bool) -> &'static str {
    match (has_key, key_error) {
        (true, true) => "ERROR",
        (true, false) => "present",
        (false, _) => "external",
    }
}

/// Columns aligned, as kubeadm prints its tables; each cell shown safely
/// ([`crate::shown::printable`]): a subject or a path is the node's text.
pub fn render<const N: usize>(rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|r| r.clone().map(|c| crate::shown::printable(&c).into_owned()))
        .collect();
    let rows = rows.as_slice();
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A CA within a year of its end is an operator's emergency: renewals get capped at
/// its end, and kubeadm cannot renew CAs (`kubeadm certs renew` skips them).
fn ca_warning(name: &str, not_after: OffsetDateTime, now: OffsetDateTime) -> Option<String> {
    let left = not_after - now;
    if left > time::Duration::days(365) {
        return None;
    }
    Some(if left.is_negative() {
        format!(
            "CA {name} EXPIRED on {}: nothing it signed can be trusted; replace the CA",
            rfc3339(not_after)
        )
    } else {
        format!(
            "CA {name} ends on {} ({} left): certificates renewed now end then too; renew it with its own key (cert-rotator ca renew {name}, docs/ca.md) or plan the CA's rotation",
            rfc3339(not_after),
            human_residual(left.whole_seconds())
        )
    })
}

mod rfc3339_opt {
    use serde::Serializer;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => {
                let t = t.to_offset(time::UtcOffset::UTC);
                let t = t.replace_nanosecond(0).unwrap_or(t);
                s.serialize_str(&crate::timefmt::rfc3339(t))
            }
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_reads_like_kubeadm() {
        assert_eq!(human_residual(-5), "expired");
        assert_eq!(human_residual(59), "59s");
        assert_eq!(human_residual(3600 * 47), "47h");
        assert_eq!(human_residual(86_400 * 364), "364d");
        assert_eq!(human_residual(86_400 * 3650), "10y");
    }

    #[test]
    fn dates_are_rfc3339_utc_with_z() {
        let t = time::macros::datetime!(2027-11-23 09:00:01.5 UTC);
        assert_eq!(
            rfc3339(t.replace_nanosecond(0).unwrap()),
            "2027-11-23T09:00:01Z"
        );
        assert_eq!(human_date(t), "Nov 23, 2027 09:00 UTC");
    }
}

//! `ca status`: each CA of the node, its bundle, its due date, its rotation phase and
//! every copy of it, as a table for people and JSON for programs. Pure.

use serde::Serialize;
use time::OffsetDateTime;

use super::phase::RotationPhase;
use super::renew::sha256_hex;
use crate::config::AuthoritySettings;
use crate::inventory::anchors::{AnchorKind, AuthorityCopies, NodeCopies};
use crate::inventory::NodeRole;
use crate::pki::CertFacts;
use crate::plan::authorities::assess_ca;
use crate::report::status::{key_words, render};
use crate::timefmt::{human_date, human_residual};

/// One certificate of a CA file or a copy.
#[derive(Clone, Debug, Serialize)]
pub struct BundleCert {
    pub subject: String,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Hex SHA-256 of the DER: equal on every node that has the same certificate.
    pub sha256: String,
}

impl BundleCert {
    pub fn of(c: &CertFacts) -> Self {
        BundleCert {
            subject: c.subject.clone(),
            serial: c.serial.clone(),
            not_after: c.not_after,
            sha256: sha256_hex(c),
        }
    }
}

/// One copy of a CA: where, and whether it holds the CA file's issuing certificate.
#[derive(Clone, Debug, Serialize)]
pub struct CopyStatus {
    pub path: String,
    /// The kubeconfig cluster entry, for a kubeconfig's certificate-authority-data.
    pub cluster: Option<String>,
    /// The SHA-256 of each certificate it holds, in order.
    pub sha256: Vec<String>,
    /// Holds the CA file's first certificate (false: a stale copy, e.g. an old
    /// kubeconfig after a renewal elsewhere).
    pub current: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaStatus {
    pub name: String,
    pub path: String,
    pub subject: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub residual_seconds: Option<i64>,
    pub has_key: bool,
    /// The key is there but cannot sign for the CA (unreadable, not a key, another
    /// CA's), naming the file: `ca status` exits 1.
    pub key_error: Option<String>,
    /// The key's file is open to group or others: the file and its mode.
    pub key_warning: Option<String>,
    pub due: bool,
    pub due_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub renew_at: Option<OffsetDateTime>,
    pub phase: RotationPhase,
    /// Why `run` and `ca renew` leave this CA alone: a rotation in progress (or a
    /// broken rotation journal) holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// The certificates of the CA file, in order (the issuing one first).
    pub bundle: Vec<BundleCert>,
    pub copies: Vec<CopyStatus>,
    pub error: Option<String>,
}

/// `ca status --json`'s document.
#[derive(Clone, Debug, Serialize)]
pub struct CaStatusReport {
    pub role: NodeRole,
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    pub authorities: Vec<CaStatus>,
    /// Kubeconfigs that could not be read: a CA copy in them is not known.
    pub errors: Vec<String>,
}

impl CaStatusReport {
    pub fn new(
        node: &NodeCopies,
        settings: &AuthoritySettings,
        phase_of: &dyn Fn(&str) -> RotationPhase,
        now: OffsetDateTime,
    ) -> Self {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        CaStatusReport {
            role: node.role,
            generated_at: now,
            authorities: node
                .authorities
                .iter()
                .map(|a| ca_status(a, settings, phase_of(&a.name), now))
                .collect(),
            errors: node.unreadable.iter().map(|e| e.to_string()).collect(),
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
            || self
                .authorities
                .iter()
                .any(|a| a.error.is_some() || a.key_error.is_some())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn to_table(&self) -> String {
        let mut rows = vec![[
            "CERTIFICATE AUTHORITY".to_string(),
            "EXPIRES".into(),
            "RESIDUAL TIME".into(),
            "KEY".into(),
            "DUE".into(),
            "PHASE".into(),
            "SHA-256".into(),
        ]];
        for a in &self.authorities {
            let due = match (&a.error, a.due, &a.due_reason, a.renew_at) {
                (Some(_), ..) => "ERROR".to_string(),
                (None, true, Some(r), _) if a.held.is_some() => {
                    format!("yes ({r}), held by the rotation")
                }
                (None, true, Some(r), _) => format!("yes ({r})"),
                (None, _, _, Some(at)) => format!("no (renew {})", human_date(at)),
                _ => "-".into(),
            };
            rows.push([
                a.name.clone(),
                a.not_after.map(human_date).unwrap_or_else(|| "-".into()),
                a.residual_seconds.map(human_residual).unwrap_or_default(),
                key_words(a.has_key, a.key_error.is_some()).into(),
                due,
                a.phase.as_str().into(),
                a.bundle
                    .first()
                    .map(|b| b.sha256.clone())
                    .unwrap_or_default(),
            ]);
        }
        let mut out = render(&rows);
        for a in &self.authorities {
            out.push_str(&format!("\n{} ({}):\n", a.name, a.path));
            if let Some(h) = &a.held {
                out.push_str(&format!("  held: {h}\n"));
            }
            if let Some(e) = &a.key_error {
                out.push_str(&format!("  KEY ERROR: {e}\n"));
            }
            if let Some(w) = &a.key_warning {
                out.push_str(&format!("  WARNING: {w}\n"));
            }
            if let Some(e) = &a.error {
                out.push_str(&format!("  ERROR: {e}\n"));
                continue;
            }
            for (i, b) in a.bundle.iter().enumerate() {
                out.push_str(&format!(
                    "  certificate {}: {} serial {} expires {}\n",
                    i + 1,
                    crate::shown::printable(&b.subject),
                    b.serial,
                    human_date(b.not_after)
                ));
            }
            for c in &a.copies {
                let place = match &c.cluster {
                    Some(cl) => format!("{} (cluster {cl})", c.path),
                    None => c.path.clone(),
                };
                let state = if c.current { "current" } else { "STALE" };
                out.push_str(&format!("  copy {place}: {state}\n"));
            }
        }
        if !self.errors.is_empty() {
            out.push_str("\nErrors:\n");
            for e in &self.errors {
                out.push_str(&format!("  {e}\n"));
            }
        }
        crate::shown::printable_text(&out).into_owned()
    }
}

/// Why a CA in `phase` is left to its rotation, in words.
fn held_by(name: &str, phase: RotationPhase) -> Option<String> {
    match phase {
        RotationPhase::Started | RotationPhase::Trusting | RotationPhase::Issuing => Some(format!(
            "being rotated (phase {}): `run` and `ca renew` leave it to `ca rotate {name}` until the rotation is finished or aborted",
            phase.as_str()
        )),
        RotationPhase::Broken => Some(format!(
            "its rotation journal is broken (see the errors): nothing renews it until `ca rotate {name} abort --force-from-backups`"
        )),
        RotationPhase::None | RotationPhase::Finished => None,
    }
}

fn ca_status(
    a: &AuthorityCopies,
    settings: &AuthoritySettings,
    phase: RotationPhase,
    now: OffsetDateTime,
) -> CaStatus {
    let mut s = CaStatus {
        name: a.name.clone(),
        path: a.cert_path.display().to_string(),
        subject: None,
        not_before: None,
        not_after: None,
        residual_seconds: None,
        has_key: a.has_key,
        key_error: a.key_error.as_ref().map(|e| e.to_string()),
        key_warning: a.open_key.as_ref().map(|o| o.to_string()),
        due: false,
        due_reason: None,
        renew_at: None,
        phase,
        held: held_by(&a.name, phase),
        bundle: Vec::new(),
        copies: Vec::new(),
        error: None,
    };
    let issuer = match a.issuer() {
        Ok(c) => c,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    let assessed = assess_ca(settings, issuer, now);
    s.subject = Some(issuer.subject.clone());
    s.not_before = Some(issuer.not_before);
    s.not_after = Some(issuer.not_after);
    s.residual_seconds = Some((issuer.not_after - now).whole_seconds());
    s.due = assessed.due;
    s.due_reason = assessed.reason.map(|r| r.as_str().into_owned());
    s.renew_at = Some(assessed.renew_at);
    if let Ok(b) = &a.bundle {
        s.bundle = b.iter().map(BundleCert::of).collect();
    }
    s.copies = a
        .anchors
        .iter()
        .map(|c| CopyStatus {
            path: c.path.display().to_string(),
            cluster: match &c.kind {
                AnchorKind::CaFile => None,
                AnchorKind::Kubeconfig { cluster } => Some(cluster.clone()),
            },
            sha256: c.certs.iter().map(sha256_hex).collect(),
            current: c.certs.iter().any(|x| x.der == issuer.der),
        })
        .collect();
    s
}

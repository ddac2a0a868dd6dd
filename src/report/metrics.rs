//! The Prometheus textfile for node_exporter's textfile collector, and the last-pass
//! record it reads its pass families from. Rendering only: `run` writes both files.
//!
//! Every family is listed once, in [`families`]. To add one: give [`MetricsInput`] (or
//! [`PassResult`], with `#[serde(default)]`, for a fact of the pass) the field it needs,
//! add one `gauge(...)` entry to the list, and a row to docs/metrics.md.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::status::{CertificateStatus, Status};
use crate::config::AuthoritySettings;
use crate::inventory::{AuthorityDef, Inventory, TargetState};
use crate::model::TargetKind;
use crate::node::kubeconfig;
use crate::pki::CertFacts;
use crate::plan::authorities::assess_ca;

/// The last pass, as `last-pass.json` in the state directory records it and the metrics
/// file shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassResult {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub success: bool,
    pub renewed: usize,
    pub failed: usize,
    /// Loud conditions of the pass (a validity capped by its CA, a remote CA that gave
    /// a shorter lifetime than asked): renewed, but an operator must look.
    #[serde(default)]
    pub warnings: usize,
    /// When the last successful pass ended: this pass if it succeeded, else carried over
    /// from the previous record ([`PassResult::after`]). Records written before the
    /// field existed have none; [`PassResult::last_success`] reads them.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success: Option<OffsetDateTime>,
    /// Restarts not made: the component served its new certificate already.
    #[serde(default)]
    pub restarts_avoided: usize,
    /// Why the pass changed nothing (`kubeadm`: kubeadm was at work on the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Restarts the last pass left to the next one: no restart slot could be had.
    #[serde(default)]
    pub restarts_awaiting_lock: usize,
    /// Groups whose rollout the last pass stopped (a failed verification kept the lock).
    #[serde(default)]
    pub rollouts_stopped: usize,
}

impl PassResult {
    /// A pass that changed nothing, and why (`kubeadm`).
    pub fn skipped(at: OffsetDateTime, why: &str) -> PassResult {
        PassResult {
            at,
            success: true,
            renewed: 0,
            failed: 0,
            warnings: 0,
            last_success: None,
            restarts_avoided: 0,
            skipped: Some(why.to_string()),
            restarts_awaiting_lock: 0,
            rollouts_stopped: 0,
        }
    }

    /// The record's bytes (pretty JSON, the file's format since its first release).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain fields to a Vec cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// This pass's record, carrying the last success over from the previous record when
    /// this pass failed (a failed pass does not make the last success older).
    pub fn after(mut self, previous: Option<&PassResult>) -> PassResult {
        // A pass skipped while kubeadm works is no success: a kubeadm that never ends
        // must reach the no-recent-success alert.
        self.last_success = if self.success && self.skipped.is_none() {
            Some(self.at)
        } else {
            previous.and_then(PassResult::last_success)
        };
        self
    }

    /// When the last successful pass ended, as far as this record knows.
    pub fn last_success(&self) -> Option<OffsetDateTime> {
        self.last_success
            .or((self.success && self.skipped.is_none()).then_some(self.at))
    }

    /// Reads a record written by [`PassResult::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<PassResult, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// What the metrics file is made of. A new family that needs new facts gets a field here
/// (or in [`PassResult`], for facts of the pass) and one entry in [`families`].
pub struct MetricsInput<'a> {
    /// The node as read after the pass.
    pub inventory: &'a Inventory,
    pub now: OffsetDateTime,
    /// `None` until a pass has been recorded: the pass families are left out, not invented.
    pub last_pass: Option<&'a PassResult>,
    /// The CAs' own window (`[authorities]`), for `cert_rotator_authority_due`.
    pub authorities: &'a AuthoritySettings,
}

/// Metrics in the Prometheus text format (one `# HELP` and `# TYPE` per family, families
/// without samples left out): the agent's own `cert_rotator_*` families and, per
/// certificate of every target and CA file, x509-certificate-exporter's `x509_cert_*`
/// families with that exporter's names and labels (docs/metrics.md).
pub fn metrics_text(input: &MetricsInput<'_>) -> String {
    render(&families(input))
}

/// One metric family: its name, help text, type and samples.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<Sample>,
}

struct Sample {
    labels: Vec<(&'static str, String)>,
    value: f64,
}

fn gauge(name: &'static str, help: &'static str, samples: Vec<Sample>) -> Family {
    Family {
        name,
        help,
        kind: "gauge",
        samples,
    }
}

fn sample(labels: Vec<(&'static str, String)>, value: f64) -> Sample {
    Sample { labels, value }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Every family of the file, in the order written: the one list to extend.
fn families(m: &MetricsInput<'_>) -> Vec<Family> {
    let status = Status::new(m.inventory, m.now);
    let certs: Vec<&CertificateStatus> = status
        .certificates
        .iter()
        .filter(|c| c.not_after.is_some())
        .collect();
    let per_cert = |f: &dyn Fn(&CertificateStatus) -> f64| -> Vec<Sample> {
        certs.iter().map(|c| sample(cert_labels(c), f(c))).collect()
    };
    let authorities: Vec<(&AuthorityDef, &CertFacts)> = m
        .inventory
        .authorities
        .iter()
        .filter_map(|a| a.cert.as_ref().ok().map(|c| (&a.def, c)))
        .collect();
    let per_authority = |f: &dyn Fn(&CertFacts) -> f64| -> Vec<Sample> {
        authorities
            .iter()
            .map(|(def, c)| sample(authority_labels(def), f(c)))
            .collect()
    };
    // Unlabelled samples of the last pass; none before the first pass.
    let pass = |f: &dyn Fn(&PassResult) -> Option<f64>| -> Vec<Sample> {
        m.last_pass
            .and_then(f)
            .map(|v| sample(Vec::new(), v))
            .into_iter()
            .collect()
    };
    let x509 = x509_rows(m.inventory);
    let per_x509 = |f: &dyn Fn(&CertFacts) -> f64| -> Vec<Sample> {
        x509.iter()
            .filter_map(|r| r.cert.map(|c| sample(x509_labels(r), f(c))))
            .collect()
    };
    vec![
        gauge(
            "cert_rotator_certificate_not_after_seconds",
            "Unix time at which the certificate expires.",
            per_cert(&|c| c.not_after.map(|t| t.unix_timestamp()).unwrap_or(0) as f64),
        ),
        gauge(
            "cert_rotator_certificate_residual_seconds",
            "Seconds until the certificate expires (negative when expired), as of the pass.",
            per_cert(&|c| c.residual_seconds.unwrap_or(0) as f64),
        ),
        gauge(
            "cert_rotator_certificate_due",
            "1 when the certificate is in its renewal window or expired.",
            per_cert(&|c| flag(c.due)),
        ),
        gauge(
            "cert_rotator_certificate_error",
            "1 when the target could not be read.",
            status
                .certificates
                .iter()
                .filter(|c| !c.missing && c.not_managed.is_none())
                .map(|c| {
                    sample(
                        vec![("name", c.name.clone()), ("path", c.path.clone())],
                        flag(c.error.is_some()),
                    )
                })
                .collect(),
        ),
        gauge(
            "cert_rotator_authority_not_after_seconds",
            "Unix time at which the CA certificate expires.",
            per_authority(&|c| c.not_after.unix_timestamp() as f64),
        ),
        gauge(
            "cert_rotator_authority_due",
            "1 when the CA is in its own renewal window ([authorities]: under 20% of its \
             lifetime left by default) or expired.",
            per_authority(&|c| flag(assess_ca(m.authorities, c, m.now).due)),
        ),
        gauge(
            "cert_rotator_pass_timestamp_seconds",
            "Unix time the last rotation pass ended.",
            pass(&|p| Some(p.at.unix_timestamp() as f64)),
        ),
        gauge(
            "cert_rotator_pass_success",
            "1 when the last rotation pass succeeded.",
            pass(&|p| Some(flag(p.success))),
        ),
        gauge(
            "cert_rotator_last_success_timestamp_seconds",
            "Unix time the last successful rotation pass ended.",
            pass(&|p| p.last_success().map(|t| t.unix_timestamp() as f64)),
        ),
        gauge(
            "cert_rotator_pass_renewed",
            "Certificates renewed by the last pass.",
            pass(&|p| Some(p.renewed as f64)),
        ),
        gauge(
            "cert_rotator_pass_failed",
            "Failures in the last pass.",
            pass(&|p| Some(p.failed as f64)),
        ),
        gauge(
            "cert_rotator_pass_warnings",
            "Warnings of the last pass (see the journal): renewed, but look.",
            pass(&|p| Some(p.warnings as f64)),
        ),
        gauge(
            "cert_rotator_restarts_avoided",
            "Restarts the last pass did not make: the component already served its new certificate.",
            pass(&|p| Some(p.restarts_avoided as f64)),
        ),
        gauge(
            "cert_rotator_pass_restarts_awaiting_lock",
            "Restarts the last pass left to the next one: no cross-node restart slot.",
            pass(&|p| Some(p.restarts_awaiting_lock as f64)),
        ),
        gauge(
            "cert_rotator_pass_rollouts_stopped",
            "Restart groups the last pass stopped across the cluster (failed verification).",
            pass(&|p| Some(p.rollouts_stopped as f64)),
        ),
        gauge(
            "cert_rotator_pass_skipped",
            "1 when the last pass changed nothing, and why (kubeadm: kubeadm was at work).",
            m.last_pass
                .and_then(|p| p.skipped.as_ref())
                .map(|why| sample(vec![("reason", why.clone())], 1.0))
                .into_iter()
                .collect(),
        ),
        // x509-certificate-exporter's families, names, labels and help texts' meaning.
        // Not its relative x509_cert_expires_in_seconds / x509_cert_valid_since_seconds:
        // a textfile is written once a pass, so "seconds from now" would be a day stale
        // (docs/metrics.md); `x509_cert_not_after - time()` is always current.
        gauge(
            "x509_cert_not_before",
            "Unix timestamp of the certificate's NotBefore.",
            per_x509(&|c| c.not_before.unix_timestamp() as f64),
        ),
        gauge(
            "x509_cert_not_after",
            "Unix timestamp of the certificate's NotAfter.",
            per_x509(&|c| c.not_after.unix_timestamp() as f64),
        ),
        gauge(
            "x509_cert_expired",
            "1 if the certificate was expired at the pass, 0 otherwise.",
            per_x509(&|c| flag(m.now > c.not_after)),
        ),
        gauge(
            "x509_cert_error",
            "1 if the file could not be read or parsed, 0 otherwise.",
            x509.iter()
                .map(|r| sample(x509_labels(r), flag(r.cert.is_none())))
                .collect(),
        ),
    ]
}

/// The text format: families with samples only, each label set once per family (a
/// duplicate, such as a CA listed twice in its bundle, would make node_exporter refuse
/// the whole file).
fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} {}\n",
            f.name, f.help, f.name, f.kind
        ));
        let mut seen = HashSet::new();
        for s in &f.samples {
            let labels = label_set(&s.labels);
            if seen.insert(labels.clone()) {
                out.push_str(&format!("{}{labels} {}\n", f.name, s.value));
            }
        }
    }
    out
}

fn label_set(labels: &[(&'static str, String)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// A Prometheus label value, escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn cert_labels(c: &CertificateStatus) -> Vec<(&'static str, String)> {
    vec![
        ("name", c.name.clone()),
        ("path", c.path.clone()),
        (
            "component",
            c.component.as_ref().map(|x| x.name()).unwrap_or_default(),
        ),
    ]
}

fn authority_labels(a: &AuthorityDef) -> Vec<(&'static str, String)> {
    vec![
        ("name", a.name.clone()),
        ("path", a.cert.display().to_string()),
    ]
}

/// One certificate of a file as x509-certificate-exporter reports it, or (no `cert`) a
/// file that could not be read or parsed.
struct X509Row<'a> {
    /// The node path of the file watched: the target's path (a kubeconfig, not the file
    /// it references), the CA file.
    filepath: String,
    /// `user` for a kubeconfig's client certificate, else empty.
    embedded_kind: &'static str,
    /// The kubeconfig's user name, else empty.
    embedded_key: String,
    cert: Option<&'a CertFacts>,
}

/// Every certificate of every target file and CA file (a chain or a CA bundle gives one
/// row per certificate, as the exporter reads every block), and the unreadable ones.
fn x509_rows(inv: &Inventory) -> Vec<X509Row<'_>> {
    let mut rows = Vec::new();
    let file = |path: &std::path::Path, cert| X509Row {
        filepath: path.display().to_string(),
        embedded_kind: "",
        embedded_key: String::new(),
        cert,
    };
    for o in &inv.certificates {
        let t = &o.target;
        match &o.state {
            TargetState::Read(r) => {
                // The exporter's kubeconfig source: the user block's certificate, named
                // by the user, whether embedded or referenced.
                let user = match t.kind {
                    TargetKind::Kubeconfig => {
                        Some(kubeconfig::parse(&r.source, &t.path).map(|k| k.user))
                    }
                    _ => None,
                };
                for c in std::iter::once(&r.cert).chain(&r.chain) {
                    let mut row = file(&t.path, Some(c));
                    if let Some(user) = &user {
                        row.embedded_kind = "user";
                        row.embedded_key = user.as_ref().cloned().unwrap_or_default();
                    }
                    rows.push(row);
                }
            }
            TargetState::Error(_) => rows.push(file(&t.path, None)),
            TargetState::Missing | TargetState::NotManaged(_) => {}
        }
    }
    for a in &inv.authorities {
        if a.cert.is_err() {
            rows.push(file(&a.def.cert, None));
        }
        for c in &a.bundle {
            rows.push(file(&a.def.cert, Some(c)));
        }
    }
    rows
}

/// The exporter's per-certificate label set, in its order: the file, the kubeconfig
/// block, the serial in decimal, and the issuer's and subject's C, ST, L, O, OU, CN.
/// Fields a certificate lacks are empty strings, as the exporter writes them (and
/// Prometheus treats an empty label as absent). The exporter's Kubernetes-object labels
/// (`secret_*`, `configmap_*`, ...) would always be empty here and are left out.
fn x509_labels(r: &X509Row<'_>) -> Vec<(&'static str, String)> {
    let filename = std::path::Path::new(&r.filepath)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (serial, issuer, subject) = match r.cert {
        Some(c) => (
            hex_to_decimal(&c.serial),
            dn_fields(&c.raw_issuer),
            dn_fields(&c.raw_subject),
        ),
        None => (String::new(), Default::default(), Default::default()),
    };
    let mut labels = vec![
        ("filename", filename),
        ("filepath", r.filepath.clone()),
        ("embedded_kind", r.embedded_kind.to_string()),
        ("embedded_key", r.embedded_key.clone()),
        ("serial_number", serial),
    ];
    const ISSUER: [&str; 6] = [
        "issuer_C",
        "issuer_ST",
        "issuer_L",
        "issuer_O",
        "issuer_OU",
        "issuer_CN",
    ];
    const SUBJECT: [&str; 6] = [
        "subject_C",
        "subject_ST",
        "subject_L",
        "subject_O",
        "subject_OU",
        "subject_CN",
    ];
    labels.extend(ISSUER.into_iter().zip(issuer));
    labels.extend(SUBJECT.into_iter().zip(subject));
    labels
}

/// A name's C, ST, L, O, OU and CN as Go's `pkix.Name` gives them to the exporter: the
/// first value of each of the first five, the last CN (Go keeps overwriting it).
fn dn_fields(raw: &[u8]) -> [String; 6] {
    let mut out: [String; 6] = Default::default();
    let Ok(attrs) = crate::pki::name_attributes(raw) else {
        return out;
    };
    for (t, v) in attrs {
        let i = match t.as_str() {
            "C" => 0,
            "ST" => 1,
            "L" => 2,
            "O" => 3,
            "OU" => 4,
            "CN" => {
                out[5] = v;
                continue;
            }
            _ => continue,
        };
        if out[i].is_empty() {
            out[i] = v;
        }
    }
    out
}

/// The exporter labels serials in decimal (Go's `big.Int.String()`); ours are hex of up to
/// 20 (or, as read, more) octets, past any machine integer. Schoolbook base conversion in
/// base 10^9 limbs: too small a job for a big-number crate.
fn hex_to_decimal(hex: &str) -> String {
    const BASE: u64 = 1_000_000_000;
    // Little-endian limbs of the value, base 10^9.
    let mut limbs: Vec<u64> = vec![0];
    for d in hex.chars().filter_map(|c| c.to_digit(16)) {
        let mut carry = u64::from(d);
        for l in limbs.iter_mut() {
            let v = *l * 16 + carry;
            *l = v % BASE;
            carry = v / BASE;
        }
        if carry > 0 {
            limbs.push(carry);
        }
    }
    let mut out = limbs.last().map(|l| l.to_string()).unwrap_or_default();
    for l in limbs.iter().rev().skip(1) {
        out.push_str(&format!("{l:09}"));
    }
    out
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;

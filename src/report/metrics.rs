//! The Prometheus textfile for node_exporter's textfile collector, and the last-pass
//! record it reads its pass families from. Rendering only: `run` writes both files.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::status::{CertificateStatus, Status};

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
    /// Restarts the last pass left to the next one: no restart slot could be had.
    #[serde(default)]
    pub restarts_awaiting_lock: usize,
    /// Groups whose rollout the last pass stopped (a failed verification kept the lock).
    #[serde(default)]
    pub rollouts_stopped: usize,
}

impl PassResult {
    /// The record's bytes (pretty JSON, the file's format since its first release).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain fields to a Vec cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads a record written by [`PassResult::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<PassResult, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A Prometheus label value, escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Metrics in the Prometheus text format: per certificate its expiry, seconds left and
/// whether it is due; per pass its result and time.
pub fn metrics_text(status: &Status, last_pass: Option<&PassResult>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in rows {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let certs: Vec<_> = status
        .certificates
        .iter()
        .filter(|c| c.not_after.is_some())
        .collect();
    let l = |c: &CertificateStatus| {
        format!(
            "{{name=\"{}\",path=\"{}\",component=\"{}\"}}",
            label(&c.name),
            label(&c.path),
            label(&c.component.as_ref().map(|x| x.name()).unwrap_or_default())
        )
    };
    family(
        "cert_rotator_certificate_not_after_seconds",
        "Unix time at which the certificate expires.",
        certs
            .iter()
            .map(|c| {
                (
                    l(c),
                    c.not_after.map(|t| t.unix_timestamp()).unwrap_or(0) as f64,
                )
            })
            .collect(),
    );
    family(
        "cert_rotator_certificate_residual_seconds",
        "Seconds until the certificate expires (negative when expired).",
        certs
            .iter()
            .map(|c| (l(c), c.residual_seconds.unwrap_or(0) as f64))
            .collect(),
    );
    family(
        "cert_rotator_certificate_due",
        "1 when the certificate is in its renewal window or expired.",
        certs
            .iter()
            .map(|c| (l(c), if c.due { 1.0 } else { 0.0 }))
            .collect(),
    );
    family(
        "cert_rotator_certificate_error",
        "1 when the target could not be read.",
        status
            .certificates
            .iter()
            .filter(|c| !c.missing && c.not_managed.is_none())
            .map(|c| {
                (
                    format!(
                        "{{name=\"{}\",path=\"{}\"}}",
                        label(&c.name),
                        label(&c.path)
                    ),
                    if c.error.is_some() { 1.0 } else { 0.0 },
                )
            })
            .collect(),
    );
    family(
        "cert_rotator_authority_not_after_seconds",
        "Unix time at which the CA certificate expires.",
        status
            .authorities
            .iter()
            .filter_map(|a| {
                a.not_after.map(|t| {
                    (
                        format!(
                            "{{name=\"{}\",path=\"{}\"}}",
                            label(&a.name),
                            label(&a.path)
                        ),
                        t.unix_timestamp() as f64,
                    )
                })
            })
            .collect(),
    );
    if let Some(p) = last_pass {
        family(
            "cert_rotator_pass_timestamp_seconds",
            "Unix time the last rotation pass ended.",
            vec![(String::new(), p.at.unix_timestamp() as f64)],
        );
        family(
            "cert_rotator_pass_success",
            "1 when the last rotation pass succeeded.",
            vec![(String::new(), if p.success { 1.0 } else { 0.0 })],
        );
        family(
            "cert_rotator_pass_renewed",
            "Certificates renewed by the last pass.",
            vec![(String::new(), p.renewed as f64)],
        );
        family(
            "cert_rotator_pass_failed",
            "Failures in the last pass.",
            vec![(String::new(), p.failed as f64)],
        );
        family(
            "cert_rotator_pass_warnings",
            "Warnings of the last pass (see the journal): renewed, but look.",
            vec![(String::new(), p.warnings as f64)],
        );
        family(
            "cert_rotator_pass_restarts_awaiting_lock",
            "Restarts the last pass left to the next one: no cross-node restart slot.",
            vec![(String::new(), p.restarts_awaiting_lock as f64)],
        );
        family(
            "cert_rotator_pass_rollouts_stopped",
            "Restart groups the last pass stopped across the cluster (failed verification).",
            vec![(String::new(), p.rollouts_stopped as f64)],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_pass_record_round_trips() {
        let p = PassResult {
            at: time::macros::datetime!(2026-03-01 12:00:00 UTC),
            success: false,
            renewed: 3,
            failed: 1,
            warnings: 0,
            restarts_awaiting_lock: 0,
            rollouts_stopped: 0,
        };
        let bytes = p.to_json();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["at"], "2026-03-01T12:00:00Z");
        assert_eq!(v["renewed"], 3);
        assert_eq!(PassResult::from_json(&bytes).unwrap(), p);
        assert!(PassResult::from_json(b"{").is_err());
    }

    #[test]
    fn pass_families_appear_only_after_a_pass() {
        let status = Status {
            role: crate::inventory::NodeRole::Worker,
            generated_at: time::macros::datetime!(2026-03-01 12:00:00 UTC),
            certificates: vec![],
            authorities: vec![],
            unfinished_write: None,
        };
        assert!(!metrics_text(&status, None).contains("cert_rotator_pass_"));
        let p = PassResult {
            at: time::macros::datetime!(2026-03-01 12:00:00 UTC),
            success: true,
            renewed: 2,
            failed: 0,
            warnings: 0,
            restarts_awaiting_lock: 1,
            rollouts_stopped: 0,
        };
        let text = metrics_text(&status, Some(&p));
        assert!(text.contains("cert_rotator_pass_success 1\n"), "{text}");
        assert!(text.contains("cert_rotator_pass_renewed 2\n"), "{text}");
        assert!(
            text.contains("cert_rotator_pass_restarts_awaiting_lock 1\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

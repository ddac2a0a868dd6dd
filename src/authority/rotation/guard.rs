//! While a CA is being rotated, nothing but the rotation may change it.
//!
//! Each phase of a rotation leaves the CA file, key and every copy as the phase promises
//! (`[old, new]` with the old key in `trusting`, `[new, old]` with the new key in
//! `issuing`); a same-key renewal in between (the daily pass renewing a due CA, `ca
//! renew`, `ca import`) would put a third certificate in that place, and the next phase
//! would refuse with the files in an order it never wrote. So from `start` until the
//! rotation is finished (or an abort has completed) `run` and `ca renew` leave the CA
//! alone and say so, `ca import` refuses it, and the rotation itself makes the new CA end
//! after the old one (stage.rs). A finished rotation is history, not a lock.
//!
//! A journal that cannot be read or checked ([`super::trusted`]) holds the CA too, and
//! is an error wherever it is looked at: nobody can tell what phase the node is in.

use std::path::PathBuf;

use super::journal::{self, Phase};
use super::steps::load_staged;
use super::trusted::{self, JournalError};
use crate::inventory::NodeReader;
use crate::write::StateDir;

/// A CA that a rotation in progress holds.
#[derive(Clone, Debug)]
pub struct Hold {
    pub ca: String,
    /// The journal's phase; `Aborted`: an abort whose restarts did not complete.
    pub phase: Phase,
    pub verified: bool,
    pub journal: PathBuf,
}

impl Hold {
    /// The command that moves the rotation on.
    pub fn next(&self) -> String {
        let cmd = match (self.phase, self.verified) {
            (Phase::Started, true) => "trust",
            (Phase::Trusting, true) => "issue",
            (Phase::Issuing, true) => "finish",
            (p, _) => p.command(),
        };
        format!("cert-rotator ca rotate {} {cmd}", self.ca)
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CA {} is being rotated (phase {}{}, journal {}): until the rotation is finished or aborted only `ca rotate {}` changes it; next: `{}`",
            self.ca,
            self.phase.name(),
            if self.verified { "" } else { ", not verified" },
            self.journal.display(),
            self.ca,
            self.next()
        )
    }
}

/// Whether a rotation in progress holds CA `ca` (`ca`, `front-proxy-ca`, `etcd/ca` or
/// kubeadm's `etcd-ca`). An unreadable or untrustworthy journal is an error.
pub fn hold(
    node: &NodeReader<'_>,
    state: &StateDir,
    ca: &str,
) -> Result<Option<Hold>, JournalError> {
    let Some(name) = crate::inventory::anchors::canonical_name(ca) else {
        return Ok(None);
    };
    Ok(trusted::read(node, state, name)?
        .filter(|j| j.phase != Phase::Finished)
        .map(|j| Hold {
            ca: name.to_string(),
            phase: j.phase,
            verified: j.verified,
            journal: journal::journal_path(state, name),
        }))
}

/// Marks the due CAs a rotation holds (or whose journal cannot be used), so that the
/// plan says why they are not renewed.
pub fn mark(node: &NodeReader<'_>, state: &StateDir, due: &mut [crate::plan::DueAuthority]) {
    for d in due {
        d.held = match hold(node, state, &d.name) {
            Ok(h) => h.map(|h| h.to_string()),
            Err(e) => Some(format!(
                "its rotation journal {} cannot be used",
                e.path().display()
            )),
        };
    }
}

/// Every rotation journal of this node that cannot be used: `run` and `ca status` fail
/// naming each.
pub fn broken(node: &NodeReader<'_>, state: &StateDir) -> Vec<JournalError> {
    crate::authority::CA_NAMES
        .iter()
        .filter_map(|ca| trusted::read(node, state, ca).err())
        .collect()
}

/// Loud warnings for `run` and `ca status`: a rotation in progress whose files no
/// longer hold what its phase promises (kubeadm collapsed a bundle, reverted the
/// signer flag), with the command that re-applies the phase. A broken journal is not
/// warned about here: [`broken`] makes it an error.
pub fn warnings(node: &NodeReader<'_>, state: &StateDir) -> Vec<String> {
    let mut out = Vec::new();
    for ca in crate::authority::CA_NAMES {
        let Ok(Some(j)) = trusted::read(node, state, ca) else {
            continue;
        };
        if !matches!(j.phase, Phase::Trusting | Phase::Issuing) {
            continue;
        }
        let dir = journal::rotation_dir(state, ca);
        let s = match load_staged(node.root, &dir, &j) {
            Ok(s) => s,
            Err(e) => {
                out.push(format!("CA rotation of {ca}: {e}"));
                continue;
            }
        };
        let model = node.get();
        let f = super::files::CaFiles::of(node.settings, model.layout.role, ca);
        let problems = super::check::problems(node.root, &f, &j, &s, model, j.phase);
        if !problems.is_empty() {
            out.push(format!(
                "CA rotation of {ca} (phase {}): the node no longer holds what the phase promises: {}; run `cert-rotator ca rotate {ca} {}` to re-apply it",
                j.phase.name(),
                problems.join("; "),
                j.phase.command()
            ));
        }
    }
    out
}

//! What each phase promises about the node's files, checked after every phase and on
//! every `run` and `ca status` while a rotation is in progress: a bundle that
//! `kubeadm certs renew` collapsed to one certificate, a manifest flag that
//! `kubeadm upgrade` reverted, a leaf from the wrong CA. Each problem names its file.

use std::path::Path;

use super::files::{self, CaFiles};
use super::journal::{Phase, RotationJournal};
use super::phase::expected_ca_files;
use super::phase::Which;
use super::Staged;
use crate::inventory::NodeModel;
use crate::node::NodeRoot;
use crate::pki::{CertFacts, PrivateKey};

fn which(c: &CertFacts, s: &Staged) -> Which {
    if c.der == s.old.der {
        Which::Old
    } else if c.der == s.new.der {
        Which::New
    } else {
        Which::Other
    }
}

/// The CA file's certificates and whose key the key file holds, as the phase machine
/// sees them.
pub fn observe_ca(root: &NodeRoot, f: &CaFiles, s: &Staged) -> (Vec<Which>, Which) {
    let bundle = root
        .read_file(&f.cert)
        .ok()
        .and_then(|(_, b)| files::certs_of(&f.cert, &b).ok())
        .unwrap_or_default();
    let key = root
        .read_file(&f.key)
        .ok()
        .and_then(|(_, b)| PrivateKey::from_pem(&b).ok());
    let key = match key {
        Some(k) if k.matches(&s.old) => Which::Old,
        Some(k) if k.matches(&s.new) => Which::New,
        _ => Which::Other,
    };
    (bundle.iter().map(|c| which(c, s)).collect(), key)
}

fn names(ws: &[Which]) -> String {
    let v: Vec<&str> = ws
        .iter()
        .map(|w| match w {
            Which::Old => "old",
            Which::New => "new",
            Which::Other => "unknown",
        })
        .collect();
    format!("[{}]", v.join(", "))
}

/// Every way the node's files differ from what `phase` promises, each naming its file.
pub fn problems(
    root: &NodeRoot,
    f: &CaFiles,
    j: &RotationJournal,
    s: &Staged,
    node: &NodeModel,
    phase: Phase,
) -> Vec<String> {
    let inv = &node.inventory;
    let mut out = Vec::new();
    if phase == Phase::Aborted {
        return out;
    }
    let (bundle, key) = observe_ca(root, f, s);
    let (want_bundle, want_key) = expected_ca_files(phase);
    if bundle != want_bundle {
        let collapsed = bundle.len() == 1 && want_bundle.len() == 2;
        out.push(format!(
            "{}: holds {} where the {} phase needs {}{}",
            f.cert.display(),
            names(&bundle),
            phase.name(),
            names(&want_bundle),
            if collapsed {
                " (COLLAPSED to one certificate: kubeadm certs renew or upgrade?)"
            } else {
                ""
            }
        ));
    }
    if key != want_key {
        out.push(format!(
            "{}: is not the {} CA's key",
            f.key.display(),
            if want_key == Which::Old { "old" } else { "new" }
        ));
    }
    // The controller-manager's signer: one certificate, the issuing one.
    if j.signer_flag_moved {
        if let Some(signer) = &f.signer {
            let at_signer = matches!(phase, Phase::Trusting | Phase::Issuing);
            let want_flag = if at_signer { signer } else { &f.cert };
            match root.read_file(&f.kcm_manifest) {
                Ok((_, b)) => match files::signer_flag(&f.kcm_manifest, &b) {
                    Ok(Some(v)) if Path::new(&v) == want_flag.as_path() => {}
                    Ok(v) => out.push(format!(
                        "{}: --{}={} where the {} phase needs {}{}",
                        f.kcm_manifest.display(),
                        files::SIGNER_FLAG,
                        v.unwrap_or_default(),
                        phase.name(),
                        want_flag.display(),
                        if at_signer {
                            " (REVERTED: kubeadm upgrade regenerates the manifest; the controller-manager would sign with a bundle)"
                        } else {
                            ""
                        }
                    )),
                    Err(e) => out.push(e.to_string()),
                },
                Err(e) => out.push(e.to_string()),
            }
            if at_signer {
                let want = if phase == Phase::Trusting {
                    vec![Which::Old]
                } else {
                    vec![Which::New]
                };
                let got: Vec<Which> = root
                    .read_file(signer)
                    .ok()
                    .and_then(|(_, b)| files::certs_of(signer, &b).ok())
                    .unwrap_or_default()
                    .iter()
                    .map(|c| which(c, s))
                    .collect();
                if got != want {
                    out.push(format!(
                        "{}: holds {} where the {} phase needs {} (exactly one certificate)",
                        signer.display(),
                        names(&got),
                        phase.name(),
                        names(&want)
                    ));
                }
            }
        }
    }
    for t in node
        .anchors
        .authority(f.name)
        .map(|a| a.anchors.as_slice())
        .unwrap_or_default()
    {
        if t.kind == crate::inventory::anchors::AnchorKind::CaFile {
            continue;
        }
        let got: Vec<Which> = t.certs.iter().map(|c| which(c, s)).collect();
        let ok = match phase {
            Phase::Started => got == [Which::Old],
            Phase::Trusting | Phase::Issuing => {
                got.contains(&Which::Old) && got.contains(&Which::New)
            }
            Phase::Finished => got == [Which::New],
            Phase::Aborted => true,
        };
        if !ok {
            out.push(format!(
                "{}: certificate-authority-data holds {} in the {} phase{}",
                t.path.display(),
                names(&got),
                phase.name(),
                if got.len() == 1 && phase != Phase::Finished {
                    " (COLLAPSED to one certificate: kubeadm certs renew?)"
                } else {
                    ""
                }
            ));
        }
    }
    let want_issuer = if matches!(phase, Phase::Started | Phase::Trusting) {
        &s.old
    } else {
        &s.new
    };
    for (o, r) in files::leaves(inv, f.name) {
        if !r.cert.is_signed_by(want_issuer) {
            out.push(format!(
                "{} ({}): not issued by the {} CA in the {} phase",
                o.target.name,
                r.cert_file.display(),
                if want_issuer.der == s.old.der {
                    "old"
                } else {
                    "new"
                },
                phase.name()
            ));
        }
        if f.serving.contains(&r.cert_file) {
            let has_x = s
                .cross
                .as_ref()
                .is_some_and(|x| r.chain.iter().any(|c| c.der == x.der));
            let want_x = phase == Phase::Issuing && s.cross.is_some();
            if has_x != want_x {
                out.push(format!(
                    "{}: the served chain {} the cross certificate in the {} phase",
                    r.cert_file.display(),
                    if has_x { "carries" } else { "lacks" },
                    phase.name()
                ));
            }
        }
    }
    out
}

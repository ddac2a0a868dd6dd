//! A CA rotation whose files drifted between phases: kubeadm collapsed a kubeconfig's
//! CA bundle to one certificate (`kubeadm certs renew`), or `kubeadm upgrade` put the
//! controller-manager's signer flag back. Detected by `ca status`, re-applied by the
//! phase's own command, and carried through the next phase (`issue` re-issues the
//! kubeconfig's client certificate without undoing the bundle it re-applies).

mod common;

use base64::Engine;
use common::rotation::*;
use common::*;

/// Puts only the old CA into admin.conf's certificate-authority-data, as `kubeadm
/// certs renew` does during a rotation (the CA data becomes ca.crt's first certificate).
fn collapse_admin_conf(r: &std::path::Path) -> std::path::PathBuf {
    let admin = host(r, "/etc/kubernetes/admin.conf");
    let t = std::fs::read_to_string(&admin).unwrap();
    let old = std::fs::read(rotation_file(r, "ca", "old-ca.crt")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&old);
    let collapsed: String = t
        .lines()
        .map(|l| match l.find("certificate-authority-data: ") {
            Some(i) => format!("{}certificate-authority-data: {b64}\n", &l[..i]),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&admin, collapsed).unwrap();
    admin
}

#[test]
fn a_collapsed_bundle_is_detected_and_re_applied_by_the_phase_command() {
    let d = ecdsa_node();
    let r = d.path();
    rot(r, "ca", "start");
    rot(r, "ca", "trust");
    collapse_admin_conf(r);
    // Detected on the next `ca status`, loudly, with the command that re-applies it.
    let st = text(&run(r, &["ca", "status"]));
    assert!(
        st.contains("WARNING")
            && st.contains("/etc/kubernetes/admin.conf")
            && st.contains("COLLAPSED")
            && st.contains("ca rotate ca trust"),
        "{st}"
    );
    let again = rot(r, "ca", "trust");
    assert!(
        again.contains("wrote /etc/kubernetes/admin.conf"),
        "{again}"
    );
    assert_eq!(kubectl_ca_data(r, "/etc/kubernetes/admin.conf").len(), 2);
    assert!(!text(&run(r, &["ca", "status"])).contains("WARNING"));
    // `kubeadm upgrade` regenerates the controller-manager's manifest: its signer flag
    // names the bundle again. Detected, and re-applied by the phase's command.
    let m = host(r, "/etc/kubernetes/manifests/kube-controller-manager.yaml");
    let moved = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, moved.replace("pki/ca-signer.crt", "pki/ca.crt")).unwrap();
    let st = text(&run(r, &["ca", "status"]));
    assert!(st.contains("REVERTED"), "{st}");
    rot(r, "ca", "trust");
    assert_eq!(std::fs::read_to_string(&m).unwrap(), moved);
}

/// The merge of `issue`'s changes: admin.conf is both a copy of the CA (its bundle,
/// which the phase re-applies) and a leaf (its client certificate, re-issued by the new
/// CA). Both edits must land in the one file the change set writes.
#[test]
fn issue_after_a_collapse_keeps_the_re_applied_bundle_and_re_issues_the_client() {
    let d = ecdsa_node();
    let r = d.path();
    rot(r, "ca", "start");
    rot(r, "ca", "trust");
    collapse_admin_conf(r);
    let out = rot(r, "ca", "issue");
    assert!(out.contains("wrote /etc/kubernetes/admin.conf"), "{out}");
    let old = std::fs::read(rotation_file(r, "ca", "old-ca.crt")).unwrap();
    let new = std::fs::read(rotation_file(r, "ca", "new-ca.crt")).unwrap();
    assert_eq!(
        kubectl_ca_data(r, "/etc/kubernetes/admin.conf"),
        [pem_certs(&old), pem_certs(&new)].concat(),
        "admin.conf's CA data after issue: [old, new]"
    );
    // The client certificate is the new CA's.
    let tmp = tempfile::tempdir().unwrap();
    let client = client_pem(r, "/etc/kubernetes/admin.conf", tmp.path());
    assert!(verifies(
        &rotation_file(r, "ca", "new-ca.crt"),
        None,
        &client
    ));
    assert!(!text(&run(r, &["ca", "status"])).contains("WARNING"));
}

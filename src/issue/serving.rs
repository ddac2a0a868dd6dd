//! kubelet.crt issued by the cluster (`[kubelet] serving = "cluster-ca"` or `"csr"`):
//! the identity it is issued for, and the certificates API that issues it in `csr` mode.
//!
//! The identity (inventory/serving.rs) takes the Node's addresses when the API server
//! gives them: read with the kubelet's own credentials, bounded. In `cluster-ca` mode
//! that read is optional (at most [`NODE_LOOKUP_SECONDS`]; the node's files and the
//! certificate in place otherwise); in `csr` mode the API server is needed anyway, and
//! the read, the CSR and the wait for it all end by `serving_timeout_seconds`.
//!
//! The identity becomes a template certificate for the new key, which the CA re-issues
//! (local: its subject, SANs and usages copied; cfssl and the certificates API: asked
//! for by a CSR made from it). The template is never written, nor sent.

use std::path::PathBuf;

use time::OffsetDateTime;
use x509_cert::ext::pkix::KeyUsages;

use super::IssueError;
use crate::config::serving::ServingMode;
use crate::config::Settings;
use crate::inventory::serving::{self as facts, IdentityError, ServingIdentity};
use crate::kube::serving::ServingCsr;
use crate::kube::ApiError;
use crate::model::TargetKind;
use crate::node::NodeRoot;
use crate::pki::x509::{CertTemplate, Issuer, EKU_SERVER, OID_CN, OID_O};
use crate::pki::{CertFacts, PrivateKey};
use crate::plan::{CaRoute, PlannedTarget};

/// The most a `cluster-ca` pass waits for the Node object before it names kubelet.crt
/// from the node's files.
pub const NODE_LOOKUP_SECONDS: u64 = 5;

/// Why kubelet.crt cannot be issued as `[kubelet] serving` says. Names the target and
/// the kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("{target}: {source}")]
    Identity {
        target: String,
        #[source]
        source: IdentityError,
    },
    #[error("{target}: [kubelet] serving = \"csr\": {}: {source}", kubeconfig.display())]
    Api {
        target: String,
        kubeconfig: PathBuf,
        #[source]
        source: Box<ApiError>,
    },
}

/// The identity to issue kubelet.crt for, and in `csr` mode the certificates API that
/// issues it; `(None, None)` for every other target and for `serving = "self-signed"`.
pub fn resolve(
    root: &NodeRoot,
    t: &PlannedTarget,
    settings: &Settings,
) -> Result<(Option<ServingIdentity>, Option<ServingCsr>), ServingError> {
    let Some(plan) = t.target.serving.as_deref().filter(|p| {
        p.mode != ServingMode::SelfSigned && t.target.kind == TargetKind::KubeletServing
    }) else {
        return Ok((None, None));
    };
    let api_error = |source| ServingError::Api {
        target: t.name.clone(),
        kubeconfig: plan.kubeconfig.clone(),
        source: Box::new(source),
    };
    let csr = t.route == CaRoute::KubeletCsr;
    let seconds = if csr {
        settings.kubelet.serving_timeout_seconds
    } else {
        NODE_LOOKUP_SECONDS.min(settings.kubelet.serving_timeout_seconds)
    };
    let api = ServingCsr::open(root, &plan.kubeconfig, seconds);
    let node = plan.facts.node_name();
    let addresses = match (&api, &node) {
        (Ok(api), Some(node)) => api.node_addresses(node),
        (Err(_), _) | (_, None) => Ok(Vec::new()),
    };
    let (api, addresses) = match (api, addresses) {
        (Ok(api), Ok(a)) if node.is_some() => (Some(api), Some(a)),
        // csr: nothing to ask without the API server; the error says why.
        (Err(e), _) | (_, Err(e)) if csr => return Err(api_error(e)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(cert_name = %t.name, "kubelet.crt: the Node's addresses are not available ({e}); naming it from the kubelet's flags, the host name and the certificate in place");
            (None, None)
        }
        (Ok(api), _) => (Some(api), None),
    };
    // The inventory read them for the plan (serving-sans).
    let have = t
        .reading
        .alt_names
        .clone()
        .or_else(|| crate::pki::alt_names(&t.reading.cert.der).ok())
        .unwrap_or_default();
    let existing: Vec<String> = have
        .dns
        .into_iter()
        .chain(have.ips.iter().map(ToString::to_string))
        .collect();
    let id = facts::identity(
        &plan.facts,
        &plan.kubeconfig,
        addresses.as_deref(),
        // csr: only what the Node lists, which an approver allows.
        (!csr).then_some(&plan.wanted),
        &existing,
    )
    .map_err(|source| ServingError::Identity {
        target: t.name.clone(),
        source,
    })?;
    tracing::info!(cert_name = %t.name, mode = plan.mode.as_str(), node = %id.node, dns = ?id.dns, ips = ?id.ips, "kubelet.crt: issued for the node's name and addresses");
    Ok((Some(id), api.filter(|_| csr)))
}

/// The template certificate of `id` for `key`: subject `O=system:nodes,
/// CN=system:node:NAME` (Go's order, as the kubelet's own CSR has it), digital signature
/// and key encipherment, server auth, the SANs. Named as issued by `ca` when known, so
/// it carries the CA's key id as the issued certificate will.
pub fn template(
    target: &str,
    id: &ServingIdentity,
    key: &PrivateKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    ca: Option<&CertFacts>,
) -> Result<CertFacts, IssueError> {
    let pki_error = |source| IssueError::Pki {
        target: target.to_string(),
        source,
    };
    let t = CertTemplate {
        subject: vec![
            vec![(OID_O, "system:nodes".into())],
            vec![(OID_CN, id.common_name())],
        ],
        not_before: Some(not_before),
        not_after: Some(not_after),
        is_ca: false,
        key_usage: vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment],
        ext_key_usage: vec![EKU_SERVER],
        dns_names: id.dns.clone(),
        ip_addresses: id.ips.clone(),
        ..Default::default()
    };
    // Signed with the new key whatever the issuer's name: the CA signs it again.
    let issuer = ca.map(|cert| Issuer { cert, key });
    let der = t.issue(key, issuer.as_ref()).map_err(pki_error)?;
    CertFacts::from_der(&der).map_err(pki_error)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use time::OffsetDateTime;

    use super::*;
    use crate::ca::remote::{Identity, San};
    use crate::ca::{CertificateAuthority, LocalCa};
    use crate::issue::{prepare, RenewOptions};
    use crate::model::NewContent;
    use crate::plan::DueReason;

    /// `cluster-ca` on a control plane: the self-signed kubelet.crt, not due by its
    /// dates, is due (serving-issuer) and routed to the local CA; issued for the node's
    /// identity, it verifies against the CA, names the node, serves only, and leaves its
    /// throwaway CA behind.
    #[test]
    fn cluster_ca_makes_kubelet_crt_due_and_issues_it_for_the_node() {
        let (_dir, root) = crate::fixture::temp_control_plane();
        let now = OffsetDateTime::now_utc();
        let mut settings = Settings::default();
        let inv = crate::inventory::read_node(&root, &settings);
        let plan = crate::plan::make_plan(&settings, &inv, &Default::default(), now);
        let due = |p: &crate::plan::Plan| {
            p.groups
                .iter()
                .flat_map(|g| &g.targets)
                .find(|t| t.name == "kubelet.crt")
                .cloned()
        };
        assert!(due(&plan).is_none(), "self-signed: due by its dates only");
        settings.kubelet.serving = ServingMode::ClusterCa;
        let inv = crate::inventory::read_node(&root, &settings);
        let plan = crate::plan::make_plan(&settings, &inv, &Default::default(), now);
        let t = due(&plan).expect("kubelet.crt due under cluster-ca");
        assert_eq!(t.reason, Some(DueReason::ServingIssuer));
        assert_eq!(t.route, CaRoute::Local("ca".into()));
        let s = t.target.serving.as_ref().unwrap();
        assert_eq!(s.facts.client_name.as_deref(), Some("cp-1"));
        let id = facts::identity(
            &s.facts,
            &s.kubeconfig,
            None,
            Some(&s.wanted),
            &["10.0.0.10".into()],
        )
        .unwrap();
        let ca = LocalCa::load(
            &root,
            "ca",
            Path::new("/etc/kubernetes/pki/ca.crt"),
            Path::new("/etc/kubernetes/pki/ca.key"),
            now,
        )
        .unwrap();
        let opts = RenewOptions {
            days: None,
            reuse_key: false,
            now,
            switch_issuer: true,
            serving: Some(id),
        };
        let p = prepare(&t.target, &t.reading, Some(&ca), &opts).unwrap();
        assert!(p.new_cert.is_signed_by(ca.certificate().unwrap()));
        assert_eq!(p.new_cert.subject, "O=system:nodes, CN=system:node:cp-1");
        let got = Identity::of(&p.new_cert.der).unwrap();
        assert!(
            got.sans.contains(&San::Dns("cp-1".into())),
            "{:?}",
            got.sans
        );
        assert!(got.sans.contains(&San::Ip("10.0.0.10".parse().unwrap())));
        assert_eq!(
            got.ext_key_usage.into_iter().collect::<Vec<_>>(),
            [EKU_SERVER]
        );
        assert!(!got.is_ca);
        let file = |name: &str| {
            p.changes
                .iter()
                .find(|c| c.path.file_name().is_some_and(|n| n == name))
                .unwrap()
        };
        let NewContent::File(crt) = &file("kubelet.crt").content else {
            panic!("kubelet.crt is a file");
        };
        assert_eq!(
            String::from_utf8_lossy(crt)
                .matches("BEGIN CERTIFICATE")
                .count(),
            1,
            "the throwaway CA is not kept"
        );
        assert!(file("kubelet.key").secret);

        // Installed, it names what the node's files want: not due.
        for c in &p.changes {
            if let NewContent::File(bytes) = &c.content {
                std::fs::write(root.host(&c.path), bytes).unwrap();
            }
        }
        let inv = crate::inventory::read_node(&root, &settings);
        let plan = crate::plan::make_plan(&settings, &inv, &Default::default(), now);
        assert!(due(&plan).is_none(), "issued for the node: not due");
        // The kubelet's address changes (--node-ip): due again, by its names.
        let flags = root.host(Path::new("/var/lib/kubelet/kubeadm-flags.env"));
        std::fs::write(flags, "KUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.99\"\n").unwrap();
        let inv = crate::inventory::read_node(&root, &settings);
        let plan = crate::plan::make_plan(&settings, &inv, &Default::default(), now);
        let t = due(&plan).expect("kubelet.crt due for its new address");
        assert_eq!(t.reason, Some(DueReason::ServingSans));
        assert_eq!(t.reason.unwrap().to_string(), "serving-sans");
        // csr: an approver allows only what the Node lists, so the names never make it
        // due (a request naming more would be denied at every pass).
        settings.kubelet.serving = ServingMode::Csr;
        let inv = crate::inventory::read_node(&root, &settings);
        let plan = crate::plan::make_plan(&settings, &inv, &Default::default(), now);
        assert!(due(&plan).is_none(), "csr: serving-sans does not apply");
        // Self-signed: the kubelet's business, whatever its names.
        settings.kubelet.serving = ServingMode::SelfSigned;
        let inv = crate::inventory::read_node(&root, &settings);
        let plan = crate::plan::make_plan(&settings, &inv, &Default::default(), now);
        assert!(due(&plan).is_none());
    }
}

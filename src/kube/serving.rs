//! kubelet.crt from the certificates API (`[kubelet] serving = "csr"`), for a node that
//! holds no CA: the CSR the kubelet itself would send with `serverTLSBootstrap` (signer
//! `kubernetes.io/kubelet-serving`, usages digital signature, key encipherment, server
//! auth), created with the kubelet's own credentials, then waited for until it is
//! issued, denied or failed, or the deadline passes. The new key stays on the node: only
//! the PKCS#10 request, which carries its public half, is sent. The controller-manager
//! signs once an approver (`csr.approve_kubelet_serving`, kubelet-csr-approver, or an
//! administrator) approves.
//!
//! Also the Node's `status.addresses`, which kubelet.crt names (inventory/serving.rs).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::types::{CertificateSigningRequest, Node};
use super::{b64, ApiClient, ApiError, ClientOptions};
use crate::ca::remote::build_csr;
use crate::ca::{CaError, CertificateAuthority, Signed, SigningRequest};
use crate::inventory::serving::Address;
use crate::node::NodeRoot;
use crate::pki::{self, CertFacts};

pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
/// How often the CSR is read again while it waits for approval and signature.
const POLL: Duration = Duration::from_millis(500);
/// The API server's lower bound on spec.expirationSeconds (10 minutes).
const MIN_EXPIRATION_SECONDS: i64 = 600;

/// Why kubelet.crt did not come from the certificates API. Names the CSR once it exists.
#[derive(Debug, thiserror::Error)]
pub enum ServingCsrError {
    #[error("the CSR for signer {KUBELET_SERVING}: {0}")]
    Request(#[source] crate::ca::remote::CsrError),
    #[error("creating the CSR: {0}")]
    Create(#[source] Box<ApiError>),
    #[error("CSR {name}: {source}")]
    Read {
        name: String,
        #[source]
        source: Box<ApiError>,
    },
    #[error("CSR {name} was denied{}", why(reason, message))]
    Denied {
        name: String,
        reason: String,
        message: String,
    },
    #[error("CSR {name} failed{}", why(reason, message))]
    Failed {
        name: String,
        reason: String,
        message: String,
    },
    #[error("CSR {name}: not {state} within {seconds} s ([kubelet] serving_timeout_seconds); nothing changed, it is left for an approver (kubectl certificate approve {name}) and the next pass", state = if *approved { "issued" } else { "approved" })]
    Timeout {
        name: String,
        approved: bool,
        seconds: u64,
    },
    #[error("CSR {name}: status.certificate is not a certificate: {reason}")]
    BadCertificate { name: String, reason: String },
    #[error("CSR {name}: the issued certificate's subject {got} is not the requested {asked}")]
    WrongSubject {
        name: String,
        got: String,
        asked: String,
    },
}

fn why(reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" ({reason})"),
        (true, false) => format!(": {message}"),
        (false, false) => format!(" ({reason}): {message}"),
    }
}

/// The certificates API as the CA of kubelet.crt, reached with the kubelet's
/// credentials, all of its exchanges ending by one deadline.
pub struct ServingCsr {
    client: ApiClient,
    kubeconfig: String,
    deadline: Instant,
    seconds: u64,
}

impl ServingCsr {
    /// A client of the kubeconfig at `path` (node path) whose calls all end within
    /// `seconds` from now.
    pub fn open(root: &NodeRoot, path: &Path, seconds: u64) -> Result<Self, ApiError> {
        let client = ApiClient::from_kubeconfig(
            root,
            path,
            ClientOptions {
                connect_timeout_seconds: seconds.clamp(1, 5),
                timeout_seconds: seconds,
                max_answer_bytes: 4 << 20,
            },
        )?;
        Ok(ServingCsr {
            client,
            kubeconfig: path.display().to_string(),
            deadline: Instant::now() + Duration::from_secs(seconds),
            seconds,
        })
    }

    fn left(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// The Node's `status.addresses` (a node may read its own Node object).
    pub fn node_addresses(&self, node: &str) -> Result<Vec<Address>, ApiError> {
        let n: Node = self
            .client
            .get_within(&format!("/api/v1/nodes/{node}"), self.left())?;
        Ok(n.status
            .addresses
            .into_iter()
            .map(|a| Address {
                kind: a.type_,
                value: a.address,
            })
            .collect())
    }

    fn exchange(&self, req: &SigningRequest<'_>) -> Result<Vec<u8>, ServingCsrError> {
        // req.old is the identity to ask for (issue.rs builds it): its subject, SANs and
        // usages go into the request, signed with the new key.
        let pem = build_csr(&req.old.der, req.key).map_err(ServingCsrError::Request)?;
        let expiration = (req.not_after - req.not_before)
            .whole_seconds()
            .max(MIN_EXPIRATION_SECONDS);
        let body = json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "cert-rotator-kubelet-serving-"},
            "spec": {
                "request": b64(pem.as_bytes()),
                "signerName": KUBELET_SERVING,
                "usages": ["digital signature", "key encipherment", "server auth"],
                "expirationSeconds": expiration,
            },
        });
        let created: CertificateSigningRequest = self
            .client
            .post_within(CSRS, &body, self.left())
            .map_err(|e| ServingCsrError::Create(Box::new(e)))?;
        // The name goes into the URL of every read that follows.
        let name = created
            .metadata
            .name
            .clone()
            .filter(|n| crate::model::is_dns1123_name(n, 253))
            .ok_or_else(|| {
                ServingCsrError::Create(Box::new(ApiError::Decode {
                    method: "POST",
                    path: CSRS.into(),
                    reason: "the created CSR has no usable metadata.name".into(),
                }))
            })?;
        tracing::info!(csr = %name, signer = KUBELET_SERVING, kubeconfig = %self.kubeconfig, "kubelet.crt: CSR created; waiting for its approval and certificate");
        let mut approved = false;
        let mut csr = created;
        loop {
            let status = csr.status.clone().unwrap_or_default();
            for c in status.conditions.iter().flatten() {
                if c.status == "False" {
                    continue;
                }
                let reason = c.reason.clone().unwrap_or_default();
                let message = c.message.clone().unwrap_or_default();
                match c.type_.as_str() {
                    "Denied" => {
                        return Err(ServingCsrError::Denied {
                            name,
                            reason,
                            message,
                        })
                    }
                    "Failed" => {
                        return Err(ServingCsrError::Failed {
                            name,
                            reason,
                            message,
                        })
                    }
                    "Approved" => approved = true,
                    _ => {}
                }
            }
            if let Some(cert) = status.certificate.filter(|c| !c.is_empty()) {
                return leaf_of(&name, &cert, &req.old.raw_subject, &req.old.subject);
            }
            if Instant::now() + POLL >= self.deadline {
                return Err(ServingCsrError::Timeout {
                    name,
                    approved,
                    seconds: self.seconds,
                });
            }
            std::thread::sleep(POLL);
            csr = self
                .client
                .get_within(&format!("{CSRS}/{name}"), self.left())
                .map_err(|e| ServingCsrError::Read {
                    name: name.clone(),
                    source: Box::new(e),
                })?;
        }
    }
}

/// The issued leaf's DER from `status.certificate` (base64 of PEM), with the subject
/// asked for.
fn leaf_of(
    name: &str,
    b64_pem: &str,
    raw_subject: &[u8],
    subject: &str,
) -> Result<Vec<u8>, ServingCsrError> {
    use base64::Engine;
    let bad = |reason: String| ServingCsrError::BadCertificate {
        name: name.to_string(),
        reason,
    };
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64_pem)
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let blocks = pki::parse_pem(&pem).map_err(|e| bad(e.to_string()))?;
    let certs = pki::certificates(&blocks).map_err(|e| bad(e.to_string()))?;
    let leaf: &CertFacts = certs
        .first()
        .ok_or_else(|| bad("no CERTIFICATE block".into()))?;
    if leaf.raw_subject != raw_subject {
        return Err(ServingCsrError::WrongSubject {
            name: name.to_string(),
            got: leaf.subject.clone(),
            asked: subject.to_string(),
        });
    }
    Ok(leaf.der.clone())
}

impl CertificateAuthority for ServingCsr {
    fn describe(&self) -> String {
        format!(
            "the certificates API (signer {KUBELET_SERVING}, as {})",
            self.kubeconfig
        )
    }

    /// Unknown here: whoever runs the controller-manager's signer decides.
    fn certificate(&self) -> Option<&CertFacts> {
        None
    }

    fn sign(&self, req: &SigningRequest<'_>) -> Result<Signed, CaError> {
        self.exchange(req)
            .map(Signed::quiet)
            .map_err(|e| CaError::CertificatesApi {
                target: req.target.to_string(),
                source: Box::new(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_csr_and_say_why() {
        let e = ServingCsrError::Denied {
            name: "cert-rotator-kubelet-serving-x7".into(),
            reason: "CertRotatorDenied".into(),
            message: "IP SAN 203.0.113.9 is not one of node n1's addresses".into(),
        };
        assert_eq!(
            e.to_string(),
            "CSR cert-rotator-kubelet-serving-x7 was denied (CertRotatorDenied): IP SAN 203.0.113.9 is not one of node n1's addresses"
        );
        let e = ServingCsrError::Timeout {
            name: "c1".into(),
            approved: false,
            seconds: 60,
        };
        assert!(
            e.to_string()
                .starts_with("CSR c1: not approved within 60 s"),
            "{e}"
        );
        let e = leaf_of("c2", "!!", b"", "").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("CSR c2: status.certificate is not a certificate"),
            "{e}"
        );
    }
}

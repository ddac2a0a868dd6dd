//! The remote CA: a CFSSL server signs for nodes that hold no CA key.
//!
//! Worker nodes, and control planes whose CA is external, cannot renew from a local key.
//! For them the node makes the new key itself (it never leaves the host), writes a
//! PKCS#10 CSR that carries the old certificate's identity (csr.rs), posts it to cfssl
//! (client.rs: `/api/v1/cfssl/authsign` with an HMAC-SHA256 token when an auth key is
//! configured, `/api/v1/cfssl/sign` when not; the request's `hosts` are the old SANs,
//! because cfssl sets SANs from `hosts`), and trusts nothing that comes back (check.rs).
//! See docs/remote-ca.md for what cfssl 1.2 does with CSRs and why these rules.

pub mod check;
pub mod client;
pub mod csr;

use std::path::PathBuf;
use std::sync::Arc;

use time::Duration;

use crate::ca::{CaError, CertificateAuthority, Signed, SigningRequest};
use crate::pki::CertFacts;

pub use crate::config::remote::{RemoteSettings, RemoteSettingsError, RemoteTarget};
pub use check::{check_returned, Accepted, Expectation, Notice, Refusal, CLOCK_SKEW};
pub use client::{CfsslSignRequest, Failure, RemoteClient, RemoteError};
pub use csr::{build_csr, CsrError, Identity, San};

/// Why the remote CA did not sign a target (the target is named by
/// [`CaError::Remote`]).
#[derive(Debug, thiserror::Error)]
pub enum RemoteSignError {
    #[error("old certificate: {0}")]
    OldCertificate(CsrError),
    /// A SAN that cfssl's `hosts` cannot carry: refused before anything is sent.
    #[error("{0}")]
    Hosts(CsrError),
    #[error("CSR: {0}")]
    Csr(CsrError),
    #[error("encoding the request: {0}")]
    Encode(serde_json::Error),
    #[error(transparent)]
    Exchange(#[from] RemoteError),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// A CA reached through cfssl. `ca` is the certificate the returned certificates must
/// verify against (what [`CertificateAuthority::certificate`] returns, so that
/// `issue::prepare` caps validity and verifies with it too).
pub struct RemoteCa {
    client: Arc<RemoteClient>,
    ca: Option<(PathBuf, CertFacts)>,
}

impl RemoteCa {
    pub fn new(client: Arc<RemoteClient>, ca: Option<(PathBuf, CertFacts)>) -> Self {
        RemoteCa { client, ca }
    }
}

impl CertificateAuthority for RemoteCa {
    fn describe(&self) -> String {
        match &self.ca {
            Some((p, _)) => format!("cfssl {} (CA {})", self.client.endpoint(), p.display()),
            None => format!("cfssl {}", self.client.endpoint()),
        }
    }

    fn certificate(&self) -> Option<&CertFacts> {
        self.ca.as_ref().map(|c| &c.1)
    }

    fn sign(&self, req: &SigningRequest<'_>) -> Result<Signed, CaError> {
        let target = req.target;
        let failed = |source: RemoteSignError| CaError::Remote {
            target: target.to_string(),
            source: Box::new(source),
        };
        if let Some((_, ca)) = &self.ca {
            if !req.switch_issuer && !req.old.is_signed_by(ca) {
                return Err(CaError::NotSignedBy {
                    target: target.to_string(),
                    ca: self.describe(),
                    issuer: req.old.issuer.clone(),
                });
            }
        }
        let identity =
            Identity::of(&req.old.der).map_err(|e| failed(RemoteSignError::OldCertificate(e)))?;
        let hosts = identity
            .hosts()
            .map_err(|e| failed(RemoteSignError::Hosts(e)))?;
        let csr = build_csr(&req.old.der, req.key).map_err(|e| failed(RemoteSignError::Csr(e)))?;
        let settings = self.client.settings();
        let (profile, label) = settings.profile_for(target);
        let request = serde_json::to_vec(&CfsslSignRequest {
            certificate_request: &csr,
            profile,
            label,
            hosts: &hosts,
        })
        .map_err(|e| failed(RemoteSignError::Encode(e)))?;
        let pem = self
            .client
            .sign(target, &request)
            .map_err(|e| failed(e.into()))?;
        let accepted = check_returned(
            &pem,
            &Expectation {
                old: req.old,
                key: req.key,
                ca: self.ca.as_ref().map(|c| (c.0.as_path(), &c.1)),
                asked_lifetime: req.not_after - req.not_before,
                margin: Duration::seconds_f64(settings.lifetime_margin_days * 86_400.0),
                now: req.now,
            },
        )
        .map_err(|e| failed(e.into()))?;
        Ok(Signed {
            der: accepted.der,
            warnings: accepted
                .notices
                .iter()
                .map(|n| format!("{target}: {n}"))
                .collect(),
        })
    }
}

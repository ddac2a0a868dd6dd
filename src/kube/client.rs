//! An HTTPS client of the API server made from a kubeconfig: the current context's
//! server and cluster CA, its user's client certificate (embedded or files), the one TLS
//! stack (rustls on aws-lc-rs, through [`crate::ca::remote::client::tls::https_agent`]),
//! a connect and a whole-request timeout on every call, and bounded answers.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;
use ureq::tls::{Certificate, ClientCert, PrivateKey};
use zeroize::Zeroizing;

use super::types::Status;
use crate::ca::remote::client::tls::{
    https_agent, read_roots, rustls_accepts, AgentOptions, TlsFileError,
};
use crate::node::kubeconfig::{self, ClientCredential, ClusterTrust};
use crate::node::NodeRoot;
use crate::pki;

/// How the client talks: timeouts in seconds and the largest answer it reads.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    pub connect_timeout_seconds: u64,
    pub timeout_seconds: u64,
    pub max_answer_bytes: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout_seconds: 5,
            timeout_seconds: 15,
            max_answer_bytes: 32 << 20,
        }
    }
}

/// Why the client could not be made (naming the kubeconfig or the file it names) or a
/// call failed (naming the method and the API path). Never a key's content.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}: {reason}", path.display())]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("{0}")]
    TlsFile(#[from] TlsFileError),
    #[error("{method} {path}: {reason}")]
    Transport {
        method: &'static str,
        path: String,
        reason: String,
    },
    #[error("{method} {path}: HTTP {status}: {message}")]
    Http {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: the answer is not the expected JSON: {reason}")]
    Decode {
        method: &'static str,
        path: String,
        reason: String,
    },
}

impl ApiError {
    /// The API server refused a write because the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Http { status: 409, .. })
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Http { status: 404, .. })
    }
}

/// A decoded answer.
pub type Reply<T> = Result<T, ApiError>;

/// A client of one API server.
pub struct ApiClient {
    agent: ureq::Agent,
    server: String,
    max_answer_bytes: u64,
}

impl ApiClient {
    /// The client of the kubeconfig at `path` (a node path): its current context's
    /// cluster (server, CA) and user (client certificate). A user that authenticates
    /// otherwise (token, exec plugin) is refused: the agent carries no such credential.
    pub fn from_kubeconfig(root: &NodeRoot, path: &Path, o: ClientOptions) -> Reply<Self> {
        let bad = |reason: String| ApiError::Kubeconfig {
            path: path.to_path_buf(),
            reason,
        };
        let (_, bytes) = root
            .read_file(path)
            .map_err(|e| bad(e.problem.to_string()))?;
        let bytes = Zeroizing::new(bytes);
        let kc = kubeconfig::parse(&bytes, path).map_err(|e| bad(e.to_string()))?;
        let cluster_name = kc
            .cluster
            .clone()
            .ok_or_else(|| bad(format!("context {:?} names no cluster", kc.context)))?;
        let cluster = kubeconfig::clusters(&bytes, path)
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .find(|c| c.name == cluster_name)
            .ok_or_else(|| bad(format!("no cluster {cluster_name:?} in the file")))?;
        let server = cluster
            .server
            .clone()
            .filter(|s| s.starts_with("https://"))
            .ok_or_else(|| bad(format!("cluster {cluster_name:?} has no https:// server")))?;
        let roots = match &cluster.trust {
            ClusterTrust::Embedded { pem, .. } => pem_certificates(pem)
                .map_err(|r| bad(format!("certificate-authority-data: {r}")))?,
            ClusterTrust::File(f) => read_roots(root, f)?,
            ClusterTrust::None => {
                return Err(bad(format!(
                    "cluster {cluster_name:?} names no certificate authority; the agent trusts only a configured CA"
                )))
            }
        };
        let client = match &kc.credential {
            ClientCredential::Embedded {
                cert_pem,
                key_pem: Some(key_pem),
                ..
            } => {
                let chain = pem_certificates(cert_pem)
                    .map_err(|r| bad(format!("client-certificate-data: {r}")))?;
                let key = PrivateKey::from_pem(key_pem)
                    .map_err(|_| bad("client-key-data is not a PEM private key".into()))?;
                rustls_accepts(&chain, key_pem).map_err(|r| {
                    bad(format!(
                        "client-certificate-data is not usable as a TLS client certificate: {r}"
                    ))
                })?;
                ClientCert::new_with_certs(&chain, key)
            }
            ClientCredential::Files {
                cert,
                key: Some(key),
            } => crate::ca::remote::client::tls::read_client_cert(root, cert, key)?,
            ClientCredential::Embedded { key_pem: None, .. }
            | ClientCredential::Files { key: None, .. } => {
                return Err(bad(format!("user {:?} has no client key", kc.user)))
            }
            ClientCredential::NotACertificate { method } => {
                return Err(bad(format!(
                    "user {:?} authenticates with {method}; the agent needs a client certificate",
                    kc.user
                )))
            }
        };
        let agent = https_agent(
            roots,
            Some(client),
            &AgentOptions {
                https_only: true,
                connect_timeout_seconds: o.connect_timeout_seconds,
                timeout_seconds: o.timeout_seconds,
            },
        );
        Ok(ApiClient {
            agent,
            server: server.trim_end_matches('/').to_string(),
            max_answer_bytes: o.max_answer_bytes,
        })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Reply<T> {
        let r = self.agent.get(format!("{}{path}", self.server)).call();
        self.answer("GET", path, r)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Reply<T> {
        let r = self
            .agent
            .post(format!("{}{path}", self.server))
            .header("Content-Type", "application/json")
            .send(json(body, "POST", path)?);
        self.answer("POST", path, r)
    }

    /// A GET that ends, answered or not, `within` from now (shorter than the client's
    /// own timeout): for callers that share one deadline across calls.
    pub fn get_within<T: DeserializeOwned>(
        &self,
        path: &str,
        within: std::time::Duration,
    ) -> Reply<T> {
        let r = self
            .agent
            .get(format!("{}{path}", self.server))
            .config()
            .timeout_global(Some(within))
            .build()
            .call();
        self.answer("GET", path, r)
    }

    /// A POST that ends, answered or not, `within` from now (shorter than the client's
    /// own timeout): for callers that share one deadline across calls.
    pub fn post_within<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        within: std::time::Duration,
    ) -> Reply<T> {
        let request = self.agent.post(format!("{}{path}", self.server));
        self.send_within(request, "POST", "application/json", path, body, within)
    }

    /// A JSON merge patch (RFC 7386) that ends, answered or not, `within` from now.
    pub fn merge_patch_within<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        within: std::time::Duration,
    ) -> Reply<T> {
        let request = self.agent.patch(format!("{}{path}", self.server));
        let merge = "application/merge-patch+json";
        self.send_within(request, "PATCH", merge, path, body, within)
    }

    /// `body` as JSON of `content_type` through `request`, ending `within` from now.
    fn send_within<B: Serialize, T: DeserializeOwned>(
        &self,
        request: ureq::RequestBuilder<ureq::typestate::WithBody>,
        method: &'static str,
        content_type: &str,
        path: &str,
        body: &B,
        within: std::time::Duration,
    ) -> Reply<T> {
        let r = request
            .header("Content-Type", content_type)
            .config()
            .timeout_global(Some(within))
            .build()
            .send(json(body, method, path)?);
        self.answer(method, path, r)
    }

    /// A replace. Carrying `metadata.resourceVersion`, it is conditional: a 409 when the
    /// object changed since it was read ([`ApiError::is_conflict`]).
    pub fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Reply<T> {
        let r = self
            .agent
            .put(format!("{}{path}", self.server))
            .header("Content-Type", "application/json")
            .send(json(body, "PUT", path)?);
        self.answer("PUT", path, r)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Reply<T> {
        let mut resp = r.map_err(|e| ApiError::Transport {
            method,
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.max_answer_bytes)
            .read_to_vec()
            .map_err(|e| ApiError::Transport {
                method,
                path: path.to_string(),
                reason: format!("reading the answer: {e}"),
            })?;
        if !(200..300).contains(&status) {
            let s: Status = serde_json::from_slice(&body).unwrap_or_default();
            return Err(ApiError::Http {
                method,
                path: path.to_string(),
                status,
                message: if s.message.is_empty() {
                    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
                } else {
                    s.message
                },
            });
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            method,
            path: path.to_string(),
            reason: e.to_string(),
        })
    }
}

fn json<B: Serialize>(body: &B, method: &'static str, path: &str) -> Reply<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| ApiError::Decode {
        method,
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// The certificates of PEM bytes (a kubeconfig's embedded CA or client chain).
fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let blocks = pki::parse_pem(pem).map_err(|e| e.to_string())?;
    let certs = pki::certificates(&blocks).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(certs
        .iter()
        .map(|c| Certificate::from_der(&c.der).to_owned())
        .collect())
}

/// Base64 as the API carries bytes (`[]byte` fields such as spec.request).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

//! The etcd client's credentials as they are on disk now, not as they were when the
//! pass started. On a node whose certificates all expired the pass renews the very
//! files the lock client presents (apiserver-etcd-client or healthcheck-client) and
//! trusts (the etcd CA bundle), and restarts etcd with a renewed serving certificate:
//! a client still holding the expired ones is refused by the revived etcd ("received
//! fatal alert: BadCertificate") and every later restart of the pass would wait for a
//! lock it can never get. So before each request the files are read again (small,
//! through the node gate) and the HTTPS agent is rebuilt when they changed.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::net::https::{self as tls, AgentOptions, TlsFileError};
use crate::node::NodeRoot;

/// The credential files and the agent made from them.
pub(super) struct Credentials {
    root: NodeRoot,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    timeout_seconds: u64,
    /// (digest of the three files when the agent was made, the agent).
    current: Mutex<(Vec<u8>, ureq::Agent)>,
}

impl Credentials {
    /// Reads the files and makes the first agent; an unreadable file is an error naming it.
    pub(super) fn load(
        root: &NodeRoot,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        timeout_seconds: u64,
    ) -> Result<Self, TlsFileError> {
        let agent = build(root, &ca, &cert, &key, timeout_seconds)?;
        let c = Credentials {
            root: root.clone(),
            ca,
            cert,
            key,
            timeout_seconds,
            current: Mutex::new((Vec::new(), agent)),
        };
        let digest = c.digest();
        c.current.lock().unwrap_or_else(|p| p.into_inner()).0 = digest;
        Ok(c)
    }

    fn build(&self) -> Result<ureq::Agent, TlsFileError> {
        build(
            &self.root,
            &self.ca,
            &self.cert,
            &self.key,
            self.timeout_seconds,
        )
    }

    /// A digest of the three files as they are now (what cannot be read counts as
    /// empty: the agent made from the last readable ones stays).
    fn digest(&self) -> Vec<u8> {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for p in [&self.ca, &self.cert, &self.key] {
            let bytes = self.root.read(p).unwrap_or_default();
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(&bytes);
        }
        ctx.finish().as_ref().to_vec()
    }

    /// The agent for the credentials on disk now: rebuilt when a file changed since the
    /// last one was made. Files that changed but cannot be used (a renewal half
    /// written, a key that does not match yet) keep the previous agent, and are tried
    /// again on the next request.
    pub(super) fn agent(&self) -> ureq::Agent {
        let digest = self.digest();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 != digest {
            match self.build() {
                Ok(agent) => {
                    tracing::info!(
                        "coordination: etcd client credentials changed on disk ({}, {}, {}): using the new ones",
                        self.cert.display(),
                        self.key.display(),
                        self.ca.display()
                    );
                    *cur = (digest, agent);
                }
                Err(e) => tracing::warn!(
                    "coordination: etcd client credentials changed on disk but cannot be used yet ({e}); keeping the previous ones"
                ),
            }
        }
        cur.1.clone()
    }
}

fn build(
    root: &NodeRoot,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    timeout_seconds: u64,
) -> Result<ureq::Agent, TlsFileError> {
    let roots = tls::read_roots(root, ca)?;
    let client = tls::read_client_cert(root, cert, key)?;
    Ok(tls::https_agent(
        roots,
        Some(client),
        &AgentOptions {
            https_only: true,
            connect_timeout_seconds: timeout_seconds.min(5),
            timeout_seconds,
        },
    ))
}

impl super::gateway::Transport for Credentials {
    fn post(
        &self,
        url: &str,
        body: &str,
        timeout: std::time::Duration,
    ) -> Result<super::gateway::Reply, String> {
        let mut resp = self
            .agent()
            .post(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        // Bounded: the gateway's answers are small; a truncated or endless body is an
        // error, not an empty answer.
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| e.to_string());
        Ok(super::gateway::Reply { status, body })
    }
}

//! The restart lock in the cluster's own etcd, over etcd's v3 JSON gateway (HTTPS with
//! the node's etcd client certificate): a counting semaphore of `slots` holder keys
//! per group, each attached to a lease of this pass.
//!
//! Keys, all under [`PREFIX`] (never under kube-apiserver's `/registry`):
//!
//! - `PREFIX/<group>/holders/<slot>` = `{"id","purpose","since"}`, with a lease: the
//!   slot is taken by a transaction whose compares say the slot key does not exist and
//!   no other node's failed mark does, so two nodes never hold the same slot and a
//!   stopped rollout stays stopped. The lease is kept alive from a thread while the
//!   component restarts and verifies (etcd/keeper.rs: failed keep-alives are retried until
//!   the TTL really passed), and revoked on release; an agent killed in between frees
//!   its slot `lease_ttl_seconds` after its last keep-alive.
//! - `PREFIX/<group>/failed/<id>` = `{"id","purpose","at","why"}`, without a lease: left
//!   when a restarted component failed verification. It blocks every other node of the
//!   group until this node's next verified restart in the group deletes it, or an
//!   operator does (`etcdctl del PREFIX/<group>/failed/<id>`).
//!
//! Why not etcd's `v3lock/lock`: it is a mutex (one holder), blocks in the server until
//! the lock is free (no "busy, come back later"), and knows nothing of failed marks.
//! The transaction gives N slots and the failed-mark compare in one round trip.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{HeldSlot, LockError, LockGroup, RestartLock};
use crate::config::Settings;
use crate::net::https::TlsFileError;
use crate::node::manifest::StaticPodManifest;
use crate::node::NodeRoot;

/// Every key of ours starts with this.
pub const PREFIX: &str = "/cert-rotator/restart-lock";

/// Why the etcd lock cannot be made on this node.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No etcd client credentials here (a worker): with `backend = "auto"`, no lock.
    #[error("no etcd client credentials on this node: {0}")]
    NoCredentials(String),
    #[error("etcd client credentials: {0}")]
    Tls(#[from] TlsFileError),
    #[error("{}: {why}", manifest.display())]
    Endpoints { manifest: PathBuf, why: String },
}

/// Where etcd answers and with which credentials, from the node's manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdAccess {
    /// `https://host:port`, in the order they are tried.
    pub endpoints: Vec<String>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The manifest the endpoints come from.
    pub from: PathBuf,
}

fn flags_of(root: &NodeRoot, manifest: &Path) -> Option<std::collections::HashMap<String, String>> {
    let (_, bytes) = root.read_file(manifest).ok()?;
    Some(StaticPodManifest::parse(&bytes).ok()?.container_flags())
}

fn exists(root: &NodeRoot, p: &Path) -> bool {
    root.read_file(p).is_ok()
}

fn https_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| u.to_ascii_lowercase().starts_with("https://"))
        .map(|u| {
            u.replace("://0.0.0.0:", "://127.0.0.1:")
                .replace("://[::]:", "://[::1]:")
        })
        .collect()
}

/// The etcd this node's kube-apiserver uses (`--etcd-servers` with its
/// `--etcd-cafile/--etcd-certfile/--etcd-keyfile`: stacked or external etcd), else the
/// stacked etcd's own `--advertise-client-urls`/`--listen-client-urls` with kubeadm's
/// healthcheck-client certificate.
pub fn access(root: &NodeRoot, settings: &Settings) -> Result<EtcdAccess, SetupError> {
    let k = &settings.kubeadm;
    let apiserver = k.manifests_dir.join("kube-apiserver.yaml");
    if let Some(f) = flags_of(root, &apiserver) {
        let get = |n: &str| f.get(n).map(PathBuf::from);
        if let (Some(servers), Some(ca), Some(cert), Some(key)) = (
            f.get("etcd-servers"),
            get("etcd-cafile"),
            get("etcd-certfile"),
            get("etcd-keyfile"),
        ) {
            if exists(root, &cert) && exists(root, &key) {
                let endpoints = https_urls(servers);
                if endpoints.is_empty() {
                    return Err(SetupError::Endpoints {
                        manifest: apiserver,
                        why: format!("--etcd-servers={servers} names no https:// endpoint"),
                    });
                }
                return Ok(EtcdAccess {
                    endpoints,
                    ca,
                    cert,
                    key,
                    from: apiserver,
                });
            }
        }
    }
    let etcd = k.manifests_dir.join("etcd.yaml");
    let Some(f) = flags_of(root, &etcd) else {
        return Err(SetupError::NoCredentials(format!(
            "neither {} names etcd client credentials nor {} is readable",
            apiserver.display(),
            etcd.display()
        )));
    };
    let cert = k.pki_dir.join("etcd/healthcheck-client.crt");
    let key = k.pki_dir.join("etcd/healthcheck-client.key");
    if !(exists(root, &cert) && exists(root, &key)) {
        return Err(SetupError::NoCredentials(format!(
            "{} or {} is missing",
            cert.display(),
            key.display()
        )));
    }
    let ca = f
        .get("trusted-ca-file")
        .map(PathBuf::from)
        .unwrap_or_else(|| k.pki_dir.join("etcd/ca.crt"));
    let mut endpoints = Vec::new();
    for flag in ["advertise-client-urls", "listen-client-urls"] {
        for u in f.get(flag).map(|l| https_urls(l)).unwrap_or_default() {
            if !endpoints.contains(&u) {
                endpoints.push(u);
            }
        }
    }
    if endpoints.is_empty() {
        return Err(SetupError::Endpoints {
            manifest: etcd,
            why: "--advertise-client-urls/--listen-client-urls name no https:// endpoint".into(),
        });
    }
    Ok(EtcdAccess {
        endpoints,
        ca,
        cert,
        key,
        from: etcd,
    })
}

/// The lock in etcd.
pub struct EtcdLock {
    gw: Arc<Gateway>,
    id: String,
    ttl: u64,
}

mod creds;
mod gateway;
mod keeper;

use gateway::{b64, prefix_end, Gateway};
use keeper::{Keeper, Timing};

/// The JSON of a key's value.
fn record(id: &str, purpose: &str, extra: &[(&str, &str)]) -> String {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), id.into());
    m.insert("purpose".into(), purpose.into());
    m.insert(
        "since".into(),
        crate::timefmt::rfc3339(time::OffsetDateTime::now_utc()).into(),
    );
    for (k, v) in extra {
        m.insert((*k).into(), (*v).into());
    }
    Value::Object(m).to_string()
}

fn holder_id(value: &str) -> String {
    serde_json::from_str::<Value>(value)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| value.to_string())
}

impl EtcdLock {
    /// The lock in the etcd this node's control plane uses ([`access`]).
    pub fn from_node(root: &NodeRoot, settings: &Settings, id: &str) -> Result<Self, SetupError> {
        let a = access(root, settings)?;
        Self::new(
            root,
            &a,
            id,
            settings.coordination.lease_ttl_seconds,
            settings.coordination.timeout_seconds,
        )
    }

    pub fn new(
        root: &NodeRoot,
        a: &EtcdAccess,
        id: &str,
        ttl: u64,
        timeout_seconds: u64,
    ) -> Result<Self, SetupError> {
        let creds = creds::Credentials::load(
            root,
            a.ca.clone(),
            a.cert.clone(),
            a.key.clone(),
            timeout_seconds,
        )?;
        Ok(EtcdLock {
            gw: Arc::new(Gateway {
                transport: Box::new(creds),
                timeout: Duration::from_secs(timeout_seconds),
                endpoints: a.endpoints.clone(),
                preferred: AtomicUsize::new(0),
            }),
            id: id.to_string(),
            ttl,
        })
    }

    fn group_prefix(group: &str) -> String {
        format!("{PREFIX}/{group}/")
    }

    fn failed_key(&self, group: &str) -> String {
        format!("{}failed/{}", Self::group_prefix(group), self.id)
    }

    /// Compares that hold while no other node's failed mark exists in `group`: no key
    /// in [failed/, failed/<id>) nor in (failed/<id>, end of failed/).
    fn no_other_failed(&self, group: &str) -> Vec<Value> {
        let failed = format!("{}failed/", Self::group_prefix(group));
        let mine = self.failed_key(group);
        let after_mine = format!("{mine}\u{0}");
        [(failed.clone(), mine), (after_mine, prefix_end(&failed))]
            .into_iter()
            .map(|(from, to)| {
                json!({"target": "CREATE", "result": "EQUAL", "create_revision": "0",
                       "key": b64(&from), "range_end": b64(&to)})
            })
            .collect()
    }

    /// The holders and the failed marks of `group`, by id.
    fn state(
        &self,
        group: &str,
        deadline: Instant,
    ) -> Result<(Vec<String>, Vec<String>), LockError> {
        let p = Self::group_prefix(group);
        let mut holders = Vec::new();
        let mut failed = Vec::new();
        for (k, v) in self.gw.range_prefix(&p, deadline)? {
            if k.starts_with(&format!("{p}holders/")) {
                holders.push(holder_id(&v));
            } else if let Some(id) = k.strip_prefix(&format!("{p}failed/")) {
                if id != self.id {
                    failed.push(id.to_string());
                }
            }
        }
        Ok((holders, failed))
    }
}

impl RestartLock for EtcdLock {
    fn backend(&self) -> String {
        self.gw.describe()
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn release_stale(&self, group: &LockGroup) -> Result<(), LockError> {
        let p = format!("{}holders/", Self::group_prefix(&group.name));
        let deadline = self.gw.deadline();
        for (k, v) in self.gw.range_prefix(&p, deadline)? {
            if holder_id(&v) == self.id {
                // Only while it is still ours: compared by value.
                self.gw.txn(&json!({
                    "compare": [{"target": "VALUE", "result": "EQUAL", "key": b64(&k), "value": b64(&v)}],
                    "success": [{"request_delete_range": {"key": b64(&k)}}],
                }), deadline)?;
                tracing::info!(group = %group.name, "coordination: released {k}, left by an earlier run of this node");
            }
        }
        Ok(())
    }

    fn acquire(
        &self,
        group: &LockGroup,
        purpose: &str,
    ) -> Result<Box<dyn HeldSlot + '_>, LockError> {
        // One bound for the whole acquisition, over every member and request.
        let deadline = self.gw.deadline();
        // The lease's TTL runs from the grant at the latest: counted from before it.
        let granted = Instant::now();
        let g = self.gw.call_until(
            "lease/grant",
            &json!({ "TTL": self.ttl.to_string() }),
            deadline,
        )?;
        let lease = match &g["ID"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(LockError::Unreachable {
                    backend: self.backend(),
                    detail: format!("lease/grant answered without an ID: {g}"),
                })
            }
        };
        // etcd may grant more than was asked (its minimum TTL), never less.
        let timing = Timing::for_ttl(gateway::ttl_of(&g).ok().flatten().unwrap_or(self.ttl));
        let value = record(&self.id, purpose, &[]);
        let compares = self.no_other_failed(&group.name);
        for slot in 0..group.slots {
            let key = format!("{}holders/{slot}", Self::group_prefix(&group.name));
            let mut cmp = compares.clone();
            cmp.push(json!({"target": "CREATE", "result": "EQUAL", "create_revision": "0", "key": b64(&key)}));
            let ok = self.gw.txn(&json!({
                "compare": cmp,
                "success": [{"request_put": {"key": b64(&key), "value": b64(&value), "lease": lease}}],
            }), deadline);
            match ok {
                Ok(true) => {
                    let keeper =
                        Keeper::start(Arc::clone(&self.gw), lease.clone(), timing, granted);
                    tracing::info!(group = %group.name, component = %purpose, "coordination: holding {key} (lease {lease}, TTL {}s)", timing.ttl.as_secs());
                    return Ok(Box::new(EtcdSlot {
                        lock: self,
                        group: group.name.clone(),
                        key,
                        value,
                        lease,
                        purpose: purpose.to_string(),
                        keeper: Some(keeper),
                    }));
                }
                Ok(false) => continue,
                Err(e) => {
                    self.gw.revoke(&lease, deadline);
                    return Err(e);
                }
            }
        }
        self.gw.revoke(&lease, deadline);
        let (holders, failed) = self.state(&group.name, deadline)?;
        if !failed.is_empty() {
            return Err(LockError::Stopped {
                backend: self.backend(),
                group: group.name.clone(),
                failed,
            });
        }
        Err(LockError::Busy {
            backend: self.backend(),
            group: group.name.clone(),
            slots: group.slots,
            holders,
        })
    }
}

/// A slot held in etcd, with its lease kept alive.
struct EtcdSlot<'l> {
    lock: &'l EtcdLock,
    group: String,
    key: String,
    value: String,
    lease: String,
    purpose: String,
    keeper: Option<Keeper>,
}

impl EtcdSlot<'_> {
    /// Stops the renewals; why the lease was lost while held, if it was.
    fn stop_keepalive(&mut self) -> Option<String> {
        self.keeper.take().and_then(Keeper::stop)
    }

    /// Deletes the holder key while it is still ours and puts or clears this node's
    /// failed mark either way. `Ok(Some(why))`: the slot was no longer ours, the lease
    /// having been lost while the component restarted (another node may have restarted
    /// at the same time).
    fn finish(mut self, failed: Option<&str>) -> Result<Option<String>, LockError> {
        let lost = self.stop_keepalive();
        let gw = &self.lock.gw;
        let fk = self.lock.failed_key(&self.group);
        let mark = match failed {
            Some(why) => {
                json!({"request_put": {"key": b64(&fk), "value": b64(&record(&self.lock.id, &self.purpose, &[("why", why)]))}})
            }
            None => json!({"request_delete_range": {"key": b64(&fk)}}),
        };
        let done = gw.txn(&json!({
            "compare": [{"target": "VALUE", "result": "EQUAL", "key": b64(&self.key), "value": b64(&self.value)}],
            "success": [{"request_delete_range": {"key": b64(&self.key)}}, mark.clone()],
            "failure": [mark],
        }), gw.deadline());
        gw.revoke(&self.lease, gw.deadline());
        match (done?, lost) {
            (true, None) => Ok(None),
            (true, Some(why)) => {
                // The key was still there: no other node could take this slot.
                tracing::warn!(group = %self.group, "coordination: {} was still ours although its keep-alive had given up ({why})", self.key);
                Ok(None)
            }
            (false, why) => {
                let why = why.unwrap_or_else(|| format!("lease {} expired", self.lease));
                tracing::warn!(group = %self.group, "coordination: {} was no longer ours: {why}", self.key);
                Ok(Some(why))
            }
        }
    }
}

impl HeldSlot for EtcdSlot<'_> {
    fn release(self: Box<Self>) -> Result<(), LockError> {
        tracing::info!(group = %self.group, "coordination: released {}", self.key);
        let (backend, key) = (self.lock.backend(), self.key.clone());
        match (*self).finish(None)? {
            None => Ok(()),
            // The pass says it (a slot not given back): the restart ran partly unguarded.
            Some(detail) => Err(LockError::Lost {
                backend,
                key,
                detail,
            }),
        }
    }

    fn keep_failed(self: Box<Self>, why: &str) -> Result<(), LockError> {
        // The mark is written either way (the transaction's failure branch): the
        // rollout stays stopped, which is what the caller needs to know.
        (*self).finish(Some(why)).map(|_| ())
    }
}

impl Drop for EtcdSlot<'_> {
    fn drop(&mut self) {
        // A slot dropped without release (a panic): stop renewing, the TTL frees it.
        self.stop_keepalive();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_apiserver_manifest_else_the_etcd_manifest() {
        let (_d, root) = crate::fixture::temp_control_plane();
        let s = Settings::default();
        let a = access(&root, &s).unwrap();
        assert_eq!(a.endpoints, ["https://127.0.0.1:2379"]);
        assert_eq!(
            a.cert,
            Path::new("/etc/kubernetes/pki/apiserver-etcd-client.crt")
        );
        assert_eq!(a.ca, Path::new("/etc/kubernetes/pki/etcd/ca.crt"));
        assert!(a.from.ends_with("kube-apiserver.yaml"));
        // Without the apiserver's manifest: the stacked etcd's own URLs and kubeadm's
        // healthcheck client.
        std::fs::remove_file(root.host(Path::new("/etc/kubernetes/manifests/kube-apiserver.yaml")))
            .unwrap();
        let a = access(&root, &s).unwrap();
        assert!(a.from.ends_with("etcd.yaml"), "{a:?}");
        assert_eq!(
            a.cert,
            Path::new("/etc/kubernetes/pki/etcd/healthcheck-client.crt")
        );
        assert!(
            a.endpoints.iter().all(|e| e.starts_with("https://")),
            "{a:?}"
        );
        // A worker: nothing.
        let w = tempfile::tempdir().unwrap();
        crate::fixture::build(
            w.path(),
            &crate::fixture::NodeSpec::worker(time::OffsetDateTime::now_utc()),
        )
        .unwrap();
        assert!(matches!(
            access(&NodeRoot::new(w.path()), &s),
            Err(SetupError::NoCredentials(_))
        ));
    }

    #[test]
    fn prefix_ends_and_urls() {
        assert_eq!(prefix_end("/a/b/"), "/a/b0");
        assert_eq!(
            https_urls("https://10.0.0.10:2379, http://x:1,https://0.0.0.0:2379/"),
            ["https://10.0.0.10:2379", "https://127.0.0.1:2379"]
        );
    }
}

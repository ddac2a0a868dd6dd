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
//!   component restarts and verifies, and revoked on release; an agent killed in
//!   between frees its slot `lease_ttl_seconds` after its last keep-alive.
//! - `PREFIX/<group>/failed/<id>` = `{"id","purpose","at","why"}`, without a lease: left
//!   when a restarted component failed verification. It blocks every other node of the
//!   group until this node's next verified restart in the group deletes it, or an
//!   operator does (`etcdctl del PREFIX/<group>/failed/<id>`).
//!
//! Why not etcd's `v3lock/lock`: it is a mutex (one holder), blocks in the server until
//! the lock is free (no "busy, come back later"), and knows nothing of failed marks.
//! The transaction gives N slots and the failed-mark compare in one round trip.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
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

/// The JSON gateway of the cluster's etcd members.
struct Gateway {
    /// The client credentials as they are on disk now ([`creds`]).
    creds: creds::Credentials,
    /// What one operation (a request, or a whole acquisition) may take, over every
    /// member: five silent members must not cost five timeouts.
    timeout: Duration,
    endpoints: Vec<String>,
    /// The endpoint that answered last: tried first.
    last_good: AtomicUsize,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn unb64(v: &Value) -> String {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The end of the range of every key starting with `prefix` (etcd's prefix rule: the
/// last byte plus one; ours are ASCII).
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    if let Some(last) = b.last_mut() {
        *last += 1;
    }
    String::from_utf8_lossy(&b).into_owned()
}

impl Gateway {
    fn describe(&self) -> String {
        format!("etcd {}", self.endpoints.join(","))
    }

    /// POSTs `body` to `/v3/{path}` of the first member that answers, within the
    /// gateway's timeout.
    fn call(&self, path: &str, body: &Value) -> Result<Value, LockError> {
        self.call_until(path, body, Instant::now() + self.timeout)
    }

    /// POSTs `body` to `/v3/{path}` of the first member that answers before `deadline`:
    /// each member gets what is left of the time, and none is asked once it is gone.
    fn call_until(&self, path: &str, body: &Value, deadline: Instant) -> Result<Value, LockError> {
        let n = self.endpoints.len();
        let start = self.last_good.load(Ordering::Relaxed) % n.max(1);
        let mut errors = Vec::new();
        let agent = self.creds.agent();
        for i in 0..n {
            let idx = (start + i) % n;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                errors.push(format!(
                    "{} more member(s) not tried: the {}s for the whole request are over",
                    n - i,
                    self.timeout.as_secs()
                ));
                break;
            }
            let url = format!("{}/v3/{path}", self.endpoints[idx]);
            let resp = agent
                .post(&url)
                .config()
                .timeout_global(Some(left))
                .build()
                .header("Content-Type", "application/json")
                .send(body.to_string().as_bytes());
            let mut resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("{}: {e}", self.endpoints[idx]));
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = resp
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_string()
                .unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status != 200 {
                let msg = v
                    .get("error")
                    .or_else(|| v.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or(text.trim());
                errors.push(format!("{url}: HTTP {status}: {msg}"));
                continue;
            }
            self.last_good.store(idx, Ordering::Relaxed);
            return Ok(v);
        }
        Err(LockError::Unreachable {
            backend: self.describe(),
            detail: errors.join("; "),
        })
    }

    /// The time one operation may take from now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    fn range_prefix(
        &self,
        prefix: &str,
        deadline: Instant,
    ) -> Result<Vec<(String, String)>, LockError> {
        let v = self.call_until(
            "kv/range",
            &json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix))}),
            deadline,
        )?;
        Ok(v.get("kvs")
            .and_then(Value::as_array)
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| (unb64(&kv["key"]), unb64(&kv["value"])))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn txn(&self, body: &Value, deadline: Instant) -> Result<bool, LockError> {
        let v = self.call_until("kv/txn", body, deadline)?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    fn revoke(&self, lease: &str, deadline: Instant) {
        if let Err(e) = self.call_until("lease/revoke", &json!({ "ID": lease }), deadline) {
            // Not fatal: the lease expires on its own after its TTL.
            tracing::warn!("coordination: cannot revoke lease {lease} (it expires by itself): {e}");
        }
    }

    /// Renews `lease`; `false` when etcd no longer knows it.
    fn keepalive(&self, lease: &str) -> Result<bool, LockError> {
        let v = self.call("lease/keepalive", &json!({ "ID": lease }))?;
        let ttl = v
            .pointer("/result/TTL")
            .and_then(|t| {
                t.as_str()
                    .map(str::to_string)
                    .or_else(|| t.as_i64().map(|i| i.to_string()))
            })
            .unwrap_or_default();
        Ok(!ttl.is_empty() && ttl != "0")
    }
}

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
                creds,
                timeout: Duration::from_secs(timeout_seconds),
                endpoints: a.endpoints.clone(),
                last_good: AtomicUsize::new(0),
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
                    let (stop, rx) = mpsc::channel::<()>();
                    let gw = Arc::clone(&self.gw);
                    let l = lease.clone();
                    let every = Duration::from_millis((self.ttl * 1000 / 3).max(500));
                    let keeper = std::thread::spawn(move || loop {
                        match rx.recv_timeout(every) {
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                match gw.keepalive(&l) {
                                    Ok(true) => {}
                                    Ok(false) => {
                                        tracing::error!("coordination: lease {l} expired: the restart slot is lost");
                                        return;
                                    }
                                    Err(e) => {
                                        tracing::warn!("coordination: keep-alive of lease {l}: {e}")
                                    }
                                }
                            }
                            _ => return,
                        }
                    });
                    tracing::info!(group = %group.name, component = %purpose, "coordination: holding {key} (lease {lease}, TTL {}s)", self.ttl);
                    return Ok(Box::new(EtcdSlot {
                        lock: self,
                        group: group.name.clone(),
                        key,
                        value,
                        lease,
                        purpose: purpose.to_string(),
                        keeper: Some((stop, keeper)),
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
    keeper: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl EtcdSlot<'_> {
    fn stop_keepalive(&mut self) {
        if let Some((stop, t)) = self.keeper.take() {
            let _ = stop.send(());
            let _ = t.join();
        }
    }

    fn finish(mut self, failed: Option<&str>) -> Result<(), LockError> {
        self.stop_keepalive();
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
        done.map(|still_ours| {
            if !still_ours {
                tracing::warn!(group = %self.group, "coordination: {} was no longer ours (the lease had expired)", self.key);
            }
        })
    }
}

impl HeldSlot for EtcdSlot<'_> {
    fn release(self: Box<Self>) -> Result<(), LockError> {
        tracing::info!(group = %self.group, "coordination: released {}", self.key);
        (*self).finish(None)
    }

    fn keep_failed(self: Box<Self>, why: &str) -> Result<(), LockError> {
        (*self).finish(Some(why))
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

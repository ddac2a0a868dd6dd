//! The JSON gateway of the cluster's etcd members: which member is asked, for how long,
//! and what counts as an answer.
//!
//! A member is failing, and the next one is asked, when it does not connect or answer
//! in its share of the time, answers with a status other than 200, or answers 200 with
//! a body that cannot be read, is not a JSON object, or carries `"error"` (the gateway
//! reports errors of streaming calls such as `lease/keepalive` inside a 200 body:
//! `{"error":{"grpc_code":14,"message":"etcdserver: no leader",...}}`). Treating any of
//! those as an answer made one truncated keep-alive answer read as "lease expired" and
//! stop the renewals of a slot still held.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::coordination::LockError;

/// The least time a member is given when several share what is left: a healthy member
/// answers in milliseconds, and a slice thinner than this would fail slow but healthy
/// ones for nothing.
pub(super) const MIN_MEMBER_SHARE: Duration = Duration::from_secs(2);

/// What one member said: its status and its body (or why the body could not be read).
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Result<String, String>,
}

/// One POST to one member: the seam between the gateway's policy and the wire (the
/// HTTPS agent of [`super::creds::Credentials`]; a fake in the unit tests).
pub(super) trait Transport: Send + Sync {
    /// POSTs `body` as JSON to `url` within `timeout`; `Err` when no status came back.
    fn post(&self, url: &str, body: &str, timeout: Duration) -> Result<Reply, String>;
}

/// What a keep-alive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Renewal {
    /// Renewed: the lease lives this long from now.
    Renewed(Duration),
    /// etcd no longer knows the lease (expired or revoked): it answers a `result`
    /// without a TTL.
    Gone,
}

/// The JSON gateway of the cluster's etcd members.
pub(super) struct Gateway {
    pub(super) transport: Box<dyn Transport>,
    /// What one operation (a request, or a whole acquisition) may take, over every
    /// member: five silent members must not cost five timeouts.
    pub(super) timeout: Duration,
    pub(super) endpoints: Vec<String>,
    /// The member asked first: the one that answered last, or the one after a member
    /// that failed, so a stuck member is not asked first again and again.
    pub(super) preferred: AtomicUsize,
}

pub(super) fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

pub(super) fn unb64(v: &Value) -> String {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The end of the range of every key starting with `prefix` (etcd's prefix rule: the
/// last byte plus one; ours are ASCII).
pub(super) fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    if let Some(last) = b.last_mut() {
        *last += 1;
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// The text of the gateway's `"error"`: a string (unary calls), or an object with a
/// `message` (streaming calls).
fn error_text(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| other.to_string()),
    }
}

fn clip(s: &str) -> &str {
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The JSON object a member answered, or why its answer is no answer.
pub(super) fn answer(reply: Reply) -> Result<Value, String> {
    let status = reply.status;
    let text = match reply.body {
        Ok(t) => t,
        Err(e) => {
            return Err(format!(
                "HTTP {status}, but its body could not be read: {e}"
            ))
        }
    };
    let v: Option<Value> = serde_json::from_str(&text).ok();
    let err = v
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")));
    if status != 200 {
        let msg = err
            .map(error_text)
            .unwrap_or_else(|| clip(&text).to_string());
        return Err(format!("HTTP {status}: {msg}"));
    }
    match v {
        Some(v) if v.get("error").is_some() => Err(format!(
            "HTTP 200 with an error: {}",
            error_text(&v["error"])
        )),
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err(format!(
            "HTTP 200, but the body is not a JSON object: {:?}",
            clip(&text)
        )),
    }
}

/// The TTL etcd reports (a string in the gateway's JSON, a number would do), if any.
pub(super) fn ttl_of(v: &Value) -> Result<Option<u64>, String> {
    match v.get("TTL") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<i64>()
            .map(|t| u64::try_from(t).ok().filter(|t| *t > 0))
            .map_err(|_| format!("TTL {s:?} is not a number")),
        Some(Value::Number(n)) => Ok(n.as_u64().filter(|t| *t > 0)),
        Some(other) => Err(format!("TTL {other} is not a number")),
    }
}

/// What a keep-alive answer says. etcd answers an unknown (expired or revoked) lease
/// with a `result` that has no TTL (the gateway leaves out a TTL of 0); an answer
/// without a `result` says nothing of the lease.
pub(super) fn renewal(v: &Value) -> Result<Renewal, String> {
    let Some(result) = v.get("result").filter(|r| r.is_object()) else {
        return Err(format!(
            "keep-alive answered without a result: {}",
            clip(&v.to_string())
        ));
    };
    Ok(match ttl_of(result)? {
        Some(t) => Renewal::Renewed(Duration::from_secs(t)),
        None => Renewal::Gone,
    })
}

impl Gateway {
    pub(super) fn describe(&self) -> String {
        format!("etcd {}", self.endpoints.join(","))
    }

    /// The time one operation may take from now.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// POSTs `body` to `/v3/{path}` of the first member that answers before `deadline`.
    /// Each member gets its share of what is left (at least [`MIN_MEMBER_SHARE`], never
    /// more than is left), so one stuck member does not take the time of the healthy
    /// ones; none is asked once the time is gone.
    pub(super) fn call_until(
        &self,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, LockError> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let body = body.to_string();
        let mut errors = Vec::new();
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
            let share = (left / (n - i) as u32).max(MIN_MEMBER_SHARE).min(left);
            let url = format!("{}/v3/{path}", self.endpoints[idx]);
            match self.transport.post(&url, &body, share).and_then(answer) {
                Ok(v) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => {
                    errors.push(format!("{url}: {e}"));
                    // Unless another call found a member that answers meanwhile.
                    let _ = self.preferred.compare_exchange(
                        idx,
                        (idx + 1) % n,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
            }
        }
        Err(LockError::Unreachable {
            backend: self.describe(),
            detail: errors.join("; "),
        })
    }

    pub(super) fn range_prefix(
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

    pub(super) fn txn(&self, body: &Value, deadline: Instant) -> Result<bool, LockError> {
        let v = self.call_until("kv/txn", body, deadline)?;
        Ok(v.get("succeeded").and_then(Value::as_bool).unwrap_or(false))
    }

    pub(super) fn revoke(&self, lease: &str, deadline: Instant) {
        if let Err(e) = self.call_until("lease/revoke", &json!({ "ID": lease }), deadline) {
            // Not fatal: the lease expires on its own after its TTL.
            tracing::warn!("coordination: cannot revoke lease {lease} (it expires by itself): {e}");
        }
    }

    /// Renews `lease`, asking until `deadline`.
    pub(super) fn keepalive(&self, lease: &str, deadline: Instant) -> Result<Renewal, LockError> {
        let v = self.call_until("lease/keepalive", &json!({ "ID": lease }), deadline)?;
        renewal(&v).map_err(|detail| LockError::Unreachable {
            backend: self.describe(),
            detail,
        })
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;

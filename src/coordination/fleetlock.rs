//! A FleetLock client (zincati's protocol, coreos/zincati
//! docs/development/fleetlock/protocol.md), for clusters that run airlock or
//! poseidon/fleetlock: `POST {url}/v1/pre-reboot` takes a slot of a group,
//! `POST {url}/v1/steady-state` gives it back, both with the header
//! `fleet-lock-protocol: true` and the body `{"client_params":{"id","group"}}`. 200 is
//! success, every other status a failure, with an optional JSON `{"kind","value"}`.
//!
//! The server keeps the state and has no TTL: a slot left by a dead agent is given
//! back by the next pass's steady-state report ([`RestartLock::release_stale`]); a
//! failed restart keeps its slot, which stops the group's rollout until this node's
//! next verified restart or an operator releases it.

use serde_json::{json, Value};

use super::{HeldSlot, LockError, LockGroup, RestartLock};
use crate::config::coordination::CoordinationSettings;
use crate::net::https::{self as tls, AgentOptions};
use crate::node::NodeRoot;

pub const PRE_REBOOT: &str = "/v1/pre-reboot";
pub const STEADY_STATE: &str = "/v1/steady-state";

pub struct FleetLock {
    agent: ureq::Agent,
    base: String,
    id: String,
}

impl FleetLock {
    /// The client of `[coordination.fleetlock] url`. An https server's certificate must
    /// chain to `ca_file`, or to the system roots when it is unset.
    pub fn new(root: &NodeRoot, c: &CoordinationSettings, id: &str) -> Result<Self, String> {
        let Some(f) = &c.fleetlock else {
            return Err("[coordination.fleetlock] url is not set".into());
        };
        let base = f.url.trim().trim_end_matches('/').to_string();
        let roots = match &f.ca_file {
            Some(p) => tls::read_roots(root, p).map_err(|e| e.to_string())?,
            None => rustls_native_certs::load_native_certs()
                .certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect(),
        };
        let agent = tls::https_agent(
            roots,
            None,
            &AgentOptions {
                https_only: false,
                connect_timeout_seconds: c.timeout_seconds.min(5),
                timeout_seconds: c.timeout_seconds,
            },
        );
        Ok(FleetLock {
            agent,
            base,
            id: id.to_string(),
        })
    }

    /// The request body for `group`.
    pub fn body(&self, group: &str) -> Value {
        json!({"client_params": {"id": self.id, "group": group}})
    }

    fn post(&self, what: &str, path: &str, group: &str) -> Result<(), LockError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .post(&url)
            .header("fleet-lock-protocol", "true")
            .header("Content-Type", "application/json")
            .send(self.body(group).to_string().as_bytes());
        let mut resp = resp.map_err(|e| LockError::Unreachable {
            backend: self.backend(),
            detail: format!("{url}: {e}"),
        })?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 10)
            .read_to_string()
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let kind = field("kind");
        let value = field("value");
        // poseidon answers 423 lock_held; airlock 500 failed_lock when every slot of
        // the semaphore is taken: both mean "come back later".
        if what == "lock"
            && (status == 423 || matches!(kind.as_deref(), Some("lock_held" | "failed_lock")))
        {
            return Err(LockError::Busy {
                backend: self.backend(),
                group: group.to_string(),
                slots: 0,
                holders: value.into_iter().collect(),
            });
        }
        Err(LockError::Refused {
            backend: self.backend(),
            what: format!("{what} ({url})"),
            status,
            kind,
            value,
        })
    }
}

impl RestartLock for FleetLock {
    fn backend(&self) -> String {
        format!("fleetlock {}", self.base)
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn release_stale(&self, group: &LockGroup) -> Result<(), LockError> {
        self.post("unlock", STEADY_STATE, &group.name)
    }

    fn acquire(
        &self,
        group: &LockGroup,
        _purpose: &str,
    ) -> Result<Box<dyn HeldSlot + '_>, LockError> {
        self.post("lock", PRE_REBOOT, &group.name)?;
        Ok(Box::new(FleetSlot {
            lock: self,
            group: group.name.clone(),
        }))
    }
}

struct FleetSlot<'l> {
    lock: &'l FleetLock,
    group: String,
}

impl HeldSlot for FleetSlot<'_> {
    fn release(self: Box<Self>) -> Result<(), LockError> {
        self.lock.post("unlock", STEADY_STATE, &self.group)
    }

    fn keep_failed(self: Box<Self>, why: &str) -> Result<(), LockError> {
        // FleetLock servers keep a slot until it is given back: holding it is what
        // stops the group's rollout, as a failed update does under zincati.
        tracing::error!(group = %self.group, "coordination: keeping the FleetLock slot of group {} held ({why}): the group's restarts stop until this node's next verified restart or an operator releases it", self.group);
        Ok(())
    }
}

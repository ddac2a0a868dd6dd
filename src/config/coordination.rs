//! `[coordination]`: the cross-node restart lock (docs/coordination.md) and its checks.

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// Which lock serialises restarts across the cluster's nodes.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// etcd where the node holds etcd client credentials (a control-plane node with
    /// stacked or external etcd), else none.
    #[default]
    Auto,
    /// A lease-backed semaphore in the cluster's own etcd, over its v3 JSON gateway.
    Etcd,
    /// A FleetLock server (airlock, poseidon/fleetlock), zincati's protocol.
    Fleetlock,
    /// No lock: each node restarts on its own schedule (the timer's random delay).
    None,
}

/// `[coordination]`. Every key has a default, so a drop-in may set a few.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinationSettings {
    pub backend: Backend,
    /// This node's lock holder id. Unset: derived from /etc/machine-id (a hash of it,
    /// not zincati's app id), else the host name.
    pub id: Option<String>,
    /// The group control-plane static pod restarts take a slot of, and its slots.
    pub control_plane_group: String,
    pub control_plane_slots: u32,
    /// The group systemd unit restarts (the kubelet) take a slot of, and its slots.
    pub workers_group: String,
    pub workers_slots: u32,
    /// etcd: the lease's TTL. It is kept alive while this node restarts and verifies;
    /// a dead agent's slot frees this long after its last keep-alive.
    pub lease_ttl_seconds: u64,
    /// How long a restart waits for a slot other nodes hold before the pass leaves it
    /// for the next pass.
    pub wait_seconds: u64,
    /// A component already broken (expired certificate, failing probe) restarts
    /// without the lock when the lock cannot be had, after hash(id) mod this window.
    pub broken_delay_window_seconds: u64,
    /// One request to the lock backend, connect to last byte.
    pub timeout_seconds: u64,
    /// `[coordination.fleetlock]`: the FleetLock server (none by default).
    pub fleetlock: Option<FleetLockSettings>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetLockSettings {
    /// Base URL: the client posts to `{url}/v1/pre-reboot` and `{url}/v1/steady-state`.
    pub url: String,
    /// PEM bundle an https server's certificate must chain to. Unset: system roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for CoordinationSettings {
    fn default() -> Self {
        CoordinationSettings {
            backend: Backend::Auto,
            id: None,
            control_plane_group: "control-plane".into(),
            control_plane_slots: 1,
            workers_group: "workers".into(),
            workers_slots: 2,
            lease_ttl_seconds: 60,
            wait_seconds: 300,
            broken_delay_window_seconds: 60,
            timeout_seconds: 10,
            fleetlock: None,
        }
    }
}

/// Whether `name` is a FleetLock group name: `^[a-zA-Z0-9.-]+$`.
pub fn valid_group(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

impl CoordinationSettings {
    /// The checks serde cannot make.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        for (key, g) in [
            (
                "coordination.control_plane_group",
                &self.control_plane_group,
            ),
            ("coordination.workers_group", &self.workers_group),
        ] {
            if !valid_group(g) {
                return Err(InvalidValue::new(
                    key,
                    g,
                    "a group name is letters, digits, '.' and '-' (^[a-zA-Z0-9.-]+$)",
                ));
            }
        }
        for (key, n) in [
            ("coordination.control_plane_slots", self.control_plane_slots),
            ("coordination.workers_slots", self.workers_slots),
        ] {
            if !(1..=1000).contains(&n) {
                return Err(InvalidValue::new(key, n, "must be 1 to 1000"));
            }
        }
        if let Some(id) = &self.id {
            if id.is_empty() || id.len() > 253 || id.chars().any(|c| c.is_control()) {
                return Err(InvalidValue::new(
                    "coordination.id",
                    id,
                    "must be 1 to 253 printable characters",
                ));
            }
        }
        // etcd's smallest lease TTL is about 1.5 s (3/2 of the election timeout).
        if !(2..=3600).contains(&self.lease_ttl_seconds) {
            return Err(InvalidValue::new(
                "coordination.lease_ttl_seconds",
                self.lease_ttl_seconds,
                "must be 2 to 3600",
            ));
        }
        if !(1..=600).contains(&self.timeout_seconds) {
            return Err(InvalidValue::new(
                "coordination.timeout_seconds",
                self.timeout_seconds,
                "must be 1 to 600",
            ));
        }
        if self.wait_seconds > 1200 {
            return Err(InvalidValue::new(
                "coordination.wait_seconds",
                self.wait_seconds,
                "must be at most 1200 (the unit's TimeoutStartSec is 30 minutes)",
            ));
        }
        if self.broken_delay_window_seconds > 3600 {
            return Err(InvalidValue::new(
                "coordination.broken_delay_window_seconds",
                self.broken_delay_window_seconds,
                "must be at most 3600",
            ));
        }
        let url = self
            .fleetlock
            .as_ref()
            .map(|f| f.url.trim())
            .unwrap_or_default();
        if self.fleetlock.is_some() {
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err(InvalidValue::new(
                    "coordination.fleetlock.url",
                    url,
                    "must be an http:// or https:// URL",
                ));
            }
        }
        Ok(())
    }

    /// The checks across keys, made once every file is merged (a drop-in may set the
    /// backend and another the URL).
    pub fn validate_merged(&self) -> Result<(), InvalidValue> {
        if self.backend == Backend::Fleetlock && self.fleetlock.is_none() {
            return Err(InvalidValue::new(
                "coordination.fleetlock.url",
                "",
                "backend = \"fleetlock\" needs the server's base URL in [coordination.fleetlock]",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_key() {
        let bad = |f: &dyn Fn(&mut CoordinationSettings), key: &str| {
            let mut c = CoordinationSettings::default();
            f(&mut c);
            let e = c.validate().and_then(|()| c.validate_merged()).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        };
        bad(
            &|c| c.control_plane_group = "control plane".into(),
            "coordination.control_plane_group",
        );
        bad(
            &|c| c.workers_group = String::new(),
            "coordination.workers_group",
        );
        bad(&|c| c.workers_slots = 0, "coordination.workers_slots");
        bad(
            &|c| c.lease_ttl_seconds = 1,
            "coordination.lease_ttl_seconds",
        );
        bad(&|c| c.id = Some(String::new()), "coordination.id");
        bad(
            &|c| c.backend = Backend::Fleetlock,
            "coordination.fleetlock.url",
        );
        bad(
            &|c| {
                c.fleetlock = Some(FleetLockSettings {
                    url: "fleetlock:8080".into(),
                    ca_file: None,
                })
            },
            "coordination.fleetlock.url",
        );
        assert!(CoordinationSettings::default().validate().is_ok());
        assert!(valid_group("cluster-a.control-plane"));
    }
}

//! `[ca.remote]`: the settings of the cfssl server and their checks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[ca.remote]`: the cfssl server that signs what this node cannot. Every key has a
/// default so that a drop-in may set a few of them; the merged section is checked by
/// [`RemoteSettings::validate`]. Paths are node paths (under `--root`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteSettings {
    /// Base URL of the cfssl server, `https://ca.example:8888`.
    pub url: String,
    /// File holding the hex auth key (cfssl's `auth_keys.NAME.key`), mode 0600 or
    /// stricter. Set: requests go to authsign with an HMAC token; unset: to sign.
    pub auth_key_file: Option<PathBuf>,
    /// cfssl signing profile and label for targets without their own (`""`: the
    /// server's default profile).
    pub profile: String,
    pub label: String,
    /// The CA the returned certificates must verify against. Default: the node's CA
    /// certificate that signed the old certificate (/etc/kubernetes/pki/ca.crt for the
    /// kubelet); with none known, the returned certificate must keep the old issuer and
    /// authority key id.
    pub ca_cert: Option<PathBuf>,
    /// PEM bundle the server's TLS certificate must chain to. Default: system roots.
    pub tls_ca_bundle: Option<PathBuf>,
    /// Client certificate and key for mutual TLS (both or neither).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Allow a plain `http://` URL (the CSR and token travel in clear; the returned
    /// certificate is still checked against the trusted CA). Off by default.
    pub allow_http: bool,
    pub connect_timeout_seconds: u64,
    /// Whole request, connect to last byte.
    pub timeout_seconds: u64,
    /// Tries per certificate for transient failures (server down, timeout, HTTP 5xx),
    /// with exponential backoff and jitter starting at `retry_delay_ms`.
    pub attempts: u32,
    pub retry_delay_ms: u64,
    /// A returned certificate may be at most this many days shorter than asked for (the
    /// old certificate's lifetime, `--days`, or the target's `days`). Longer is accepted.
    pub lifetime_margin_days: f64,
    /// Per target name: its own profile, label and the lifetime its profile gives.
    pub targets: BTreeMap<String, RemoteTarget>,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings {
            url: String::new(),
            auth_key_file: None,
            profile: String::new(),
            label: String::new(),
            ca_cert: None,
            tls_ca_bundle: None,
            client_cert: None,
            client_key: None,
            allow_http: false,
            connect_timeout_seconds: 10,
            timeout_seconds: 30,
            attempts: 3,
            retry_delay_ms: 1000,
            lifetime_margin_days: 1.0,
            targets: BTreeMap::new(),
        }
    }
}

/// `[ca.remote.targets."NAME"]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteTarget {
    pub profile: Option<String>,
    pub label: Option<String>,
    /// The lifetime this target's profile gives, in days: asked for instead of the old
    /// certificate's lifetime (cfssl's profile, not the request, sets the lifetime).
    pub days: Option<i64>,
}

/// Why a `[ca.remote]` section is refused: each variant names the key it concerns, so
/// that `config check` and `cert-renew --remote` can say what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteSettingsError {
    #[error("url: missing (the cfssl server, https://HOST:PORT)")]
    MissingUrl,
    #[error(
        "url = {url:?}: plain http is refused (the CSR and the auth token would travel in clear); \
         use https, or set allow_http = true (cert-renew: --insecure-http)"
    )]
    PlainHttp { url: String },
    #[error("url = {url:?}: must start with https://")]
    NotHttps { url: String },
    #[error("url = {url:?}: expected https://HOST[:PORT][/PATH] without query or fragment")]
    UrlShape { url: String },
    #[error("url = {url:?}: not a valid URL")]
    InvalidUrl { url: String },
    /// A number outside its range: `key = value: must be ...`.
    #[error("{key} = {value}: {expected}")]
    OutOfRange {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("client_cert and client_key go together")]
    ClientCertWithoutKey,
    #[error("targets.{target:?}.days = {days}: must be at least 1")]
    TargetDays { target: String, days: i64 },
}

impl RemoteSettings {
    /// Checks the values serde cannot. Errors name the key.
    pub fn validate(&self) -> Result<(), RemoteSettingsError> {
        use RemoteSettingsError as E;
        let url = self.url.trim();
        if url.is_empty() {
            return Err(E::MissingUrl);
        }
        let owned = || url.to_string();
        let lower = url.to_ascii_lowercase();
        let rest = if let Some(r) = lower.strip_prefix("https://") {
            r
        } else if let Some(r) = lower.strip_prefix("http://") {
            if !self.allow_http {
                return Err(E::PlainHttp { url: owned() });
            }
            r
        } else {
            return Err(E::NotHttps { url: owned() });
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() || rest.contains(['?', '#']) || url.contains(char::is_whitespace) {
            return Err(E::UrlShape { url: owned() });
        }
        if ureq::http::Uri::try_from(url).is_err() {
            return Err(E::InvalidUrl { url: owned() });
        }
        let out_of_range = |key, value: &dyn std::fmt::Display, expected| E::OutOfRange {
            key,
            value: value.to_string(),
            expected,
        };
        if !(1..=10).contains(&self.attempts) {
            return Err(out_of_range("attempts", &self.attempts, "must be 1 to 10"));
        }
        for (key, v) in [
            ("connect_timeout_seconds", self.connect_timeout_seconds),
            ("timeout_seconds", self.timeout_seconds),
        ] {
            if !(1..=600).contains(&v) {
                return Err(out_of_range(key, &v, "must be 1 to 600 seconds"));
            }
        }
        if self.retry_delay_ms > 60_000 {
            return Err(out_of_range(
                "retry_delay_ms",
                &self.retry_delay_ms,
                "at most 60000",
            ));
        }
        if !(self.lifetime_margin_days >= 0.0 && self.lifetime_margin_days.is_finite()) {
            return Err(out_of_range(
                "lifetime_margin_days",
                &self.lifetime_margin_days,
                "must be a number of days, 0 or more",
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(E::ClientCertWithoutKey);
        }
        for (name, t) in &self.targets {
            if let Some(d) = t.days {
                if d < 1 {
                    return Err(E::TargetDays {
                        target: name.clone(),
                        days: d,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn profile_for(&self, target: &str) -> (&str, &str) {
        let t = self.targets.get(target);
        (
            t.and_then(|t| t.profile.as_deref())
                .unwrap_or(&self.profile),
            t.and_then(|t| t.label.as_deref()).unwrap_or(&self.label),
        )
    }

    /// The lifetime configured for a target's profile, if any.
    pub fn days_for(&self, target: &str) -> Option<i64> {
        self.targets.get(target).and_then(|t| t.days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_refuse_http_unless_allowed_and_check_ranges() {
        let mut s = RemoteSettings {
            url: "http://127.0.0.1:8888".into(),
            ..Default::default()
        };
        let e = s.validate().unwrap_err();
        assert!(
            matches!(&e, RemoteSettingsError::PlainHttp { url } if url == "http://127.0.0.1:8888")
        );
        assert!(e.to_string().contains("plain http"));
        s.allow_http = true;
        s.validate().unwrap();
        s.url = "ftp://x".into();
        assert!(s.validate().unwrap_err().to_string().contains("https://"));
        s.url = "https://ca.example:8888/".into();
        s.attempts = 0;
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "attempts = 0: must be 1 to 10"
        );
        s.attempts = 3;
        s.connect_timeout_seconds = 0;
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "connect_timeout_seconds = 0: must be 1 to 600 seconds"
        );
        s.connect_timeout_seconds = 10;
        s.client_cert = Some("/x".into());
        assert!(s.validate().unwrap_err().to_string().contains("client_key"));
        s.client_cert = None;
        s.targets.insert(
            "kubelet.crt".into(),
            RemoteTarget {
                days: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "targets.\"kubelet.crt\".days = 0: must be at least 1"
        );
        assert_eq!(
            RemoteSettings::default().validate().unwrap_err(),
            RemoteSettingsError::MissingUrl
        );
    }
}

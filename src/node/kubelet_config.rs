//! The kubelet's configuration file (`/var/lib/kubelet/config.yaml`, a
//! `KubeletConfiguration`), for the two fields that decide who renews the kubelet's
//! certificates: `rotateCertificates` (the kubelet renews its client certificate through
//! the CSR API; kubeadm writes `true`) and `serverTLSBootstrap` (it gets its serving
//! certificate the same way). Both default to `false` in the kubelet
//! (KubeletConfiguration v1beta1 reference: "Default: false").
//!
//! Pure functions on the file's bytes, as for [`manifest`](super::manifest): the caller
//! reads through [`NodeRoot`](super::NodeRoot) and adds the path to errors. The document
//! is read as a generic YAML value, so any other field, or an odd layout, is ignored
//! rather than refused; a field of the wrong type is an error naming the field.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// kubeadm's kubelet configuration file (no setting names it: kubeadm always writes it
/// here, and the kubelet's systemd drop-in points at it).
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// What is wrong with the file's content (the caller adds the path).
#[derive(Debug, thiserror::Error)]
pub enum KubeletConfigError {
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("not valid YAML: {0}")]
    NotYaml(#[source] Box<serde_saphyr::Error>),
    #[error("not a YAML mapping (a KubeletConfiguration)")]
    NotAMapping,
    #[error("{field} is not a boolean")]
    NotABool { field: &'static str },
    #[error("{field} is not a string")]
    NotAString { field: &'static str },
}

/// The fields of a KubeletConfiguration the agent reads. `None`: the key is absent
/// (the kubelet's default applies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeletConfiguration {
    pub rotate_certificates: Option<bool>,
    pub server_tls_bootstrap: Option<bool>,
    /// `tlsCertFile` and `tlsPrivateKeyFile`: the serving certificate's files when not
    /// the kubelet's own kubelet.crt and kubelet.key.
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
}

impl KubeletConfiguration {
    /// Parses the file's bytes. An empty document is a configuration without keys.
    pub fn parse(bytes: &[u8]) -> Result<Self, KubeletConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KubeletConfigError::NotUtf8)?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let doc: Value =
            serde_saphyr::from_str(text).map_err(|e| KubeletConfigError::NotYaml(Box::new(e)))?;
        let map = match doc {
            Value::Object(m) => m,
            Value::Null => return Ok(Self::default()),
            _ => return Err(KubeletConfigError::NotAMapping),
        };
        let flag = |field: &'static str| match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(KubeletConfigError::NotABool { field }),
        };
        let string = |field: &'static str| match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(KubeletConfigError::NotAString { field }),
        };
        Ok(KubeletConfiguration {
            rotate_certificates: flag("rotateCertificates")?,
            server_tls_bootstrap: flag("serverTLSBootstrap")?,
            tls_cert_file: string("tlsCertFile")?,
            tls_private_key_file: string("tlsPrivateKeyFile")?,
        })
    }

    /// Whether the kubelet renews its client certificate itself (absent: `false`, the
    /// kubelet's default).
    pub fn rotates_client(&self) -> bool {
        self.rotate_certificates.unwrap_or(false)
    }

    /// Whether the kubelet gets its serving certificate from the CSR API (absent:
    /// `false`).
    pub fn bootstraps_server(&self) -> bool {
        self.server_tls_bootstrap.unwrap_or(false)
    }

    /// The serving certificate and key the kubelet reads: `tlsCertFile` and
    /// `tlsPrivateKeyFile` when both are set and absolute (the kubelet needs both), else
    /// kubelet.crt and kubelet.key in its certificate directory.
    pub fn serving_files(&self, kubelet_pki: &Path) -> (PathBuf, PathBuf) {
        match (&self.tls_cert_file, &self.tls_private_key_file) {
            (Some(c), Some(k)) if c.starts_with('/') && k.starts_with('/') => {
                (PathBuf::from(c), PathBuf::from(k))
            }
            _ => (
                kubelet_pki.join("kubelet.crt"),
                kubelet_pki.join("kubelet.key"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kubeadm init` writes (abridged, same layout).
    const KUBEADM: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\n\
authentication:\n  anonymous:\n    enabled: false\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n\
cgroupDriver: systemd\nkind: KubeletConfiguration\nrotateCertificates: true\nstaticPodPath: /etc/kubernetes/manifests\n";

    #[test]
    fn kubeadm_s_file_rotates_the_client_certificate() {
        let c = KubeletConfiguration::parse(KUBEADM.as_bytes()).unwrap();
        assert_eq!(c.rotate_certificates, Some(true));
        assert_eq!(c.server_tls_bootstrap, None);
        assert!(c.rotates_client());
        assert!(!c.bootstraps_server());
    }

    #[test]
    fn absent_keys_are_the_kubelet_s_defaults() {
        let c = KubeletConfiguration::parse(b"kind: KubeletConfiguration\n").unwrap();
        assert_eq!(c, KubeletConfiguration::default());
        assert!(!c.rotates_client());
        for empty in ["", "\n", "# only a comment\n", "~\n"] {
            assert_eq!(
                KubeletConfiguration::parse(empty.as_bytes()).unwrap(),
                KubeletConfiguration::default(),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn both_fields_read_true_and_false() {
        let c =
            KubeletConfiguration::parse(b"rotateCertificates: false\nserverTLSBootstrap: true\n")
                .unwrap();
        assert_eq!(c.rotate_certificates, Some(false));
        assert!(c.bootstraps_server());
    }

    #[test]
    fn odd_yaml_is_an_error_never_a_panic() {
        for (text, want) in [
            (
                "rotateCertificates: \"true\"\n",
                "rotateCertificates is not a boolean",
            ),
            (
                "serverTLSBootstrap: [1]\n",
                "serverTLSBootstrap is not a boolean",
            ),
            ("- a\n- b\n", "not a YAML mapping"),
            ("just text\n", "not a YAML mapping"),
            ("rotateCertificates: [\n", "not valid YAML"),
        ] {
            let e = KubeletConfiguration::parse(text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(want), "{text:?}: {e}");
        }
        assert!(matches!(
            KubeletConfiguration::parse(&[0xff, 0xfe]),
            Err(KubeletConfigError::NotUtf8)
        ));
    }
}

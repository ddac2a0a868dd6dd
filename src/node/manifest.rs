//! One model of a static pod manifest (`/etc/kubernetes/manifests/NAME.yaml`), shared by
//! verification (where a component listens: the flags of its container) and restart
//! (the `cert-rotator.k8s.io/certs-hash` annotation that makes the kubelet recreate
//! the pod).
//!
//! Pure functions on the manifest's bytes: reading the file stays with
//! [`NodeRoot`](super::NodeRoot), so a [`ManifestError`] names no path; the caller that
//! read the file wraps it with the path it concerns.
//!
//! The whole document is kept as a generic YAML value rather than typed Pod structs:
//! the annotation edit must be checked against *everything* in the manifest, including
//! fields no struct here would know.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// What is wrong with a manifest's content (the caller adds the path).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("not valid YAML: {0}")]
    NotYaml(#[source] Box<serde_saphyr::Error>),
    #[error("not a YAML mapping (a Pod object)")]
    NotAMapping,
    #[error("no metadata mapping")]
    NoMetadata,
    #[error("metadata.annotations is not a mapping")]
    AnnotationsNotAMapping,
    #[error("the edited manifest is not valid YAML: {0}")]
    EditedNotYaml(#[source] Box<serde_saphyr::Error>),
    #[error("the edit would change more than the annotation (unusual YAML layout); edit the manifest by hand")]
    ChangedMoreThanTheAnnotation,
}

/// A parsed static pod manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticPodManifest {
    doc: Value,
}

impl StaticPodManifest {
    /// Parses a manifest's bytes: UTF-8 YAML whose document is a mapping.
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
        let doc = parse_yaml(text).map_err(ManifestError::NotYaml)?;
        Self::from_doc(doc)
    }

    fn from_doc(doc: Value) -> Result<Self, ManifestError> {
        if !doc.is_object() {
            return Err(ManifestError::NotAMapping);
        }
        Ok(StaticPodManifest { doc })
    }

    /// `metadata.annotations[key]` when it is a string.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.doc
            .get("metadata")?
            .get("annotations")?
            .get(key)?
            .as_str()
    }

    /// The `--name=value` items of the first container's `command` and `args` (a bare
    /// `--flag` is `true`; a later item wins). Components take their listening address
    /// and serving certificate from these flags; only the first container is the
    /// component in a kubeadm static pod. Items that are not strings are ignored.
    pub fn container_flags(&self) -> HashMap<String, String> {
        let mut flags = HashMap::new();
        let Some(first) = self
            .doc
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return flags;
        };
        let items = ["command", "args"]
            .into_iter()
            .filter_map(|k| first.get(k).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_str);
        for item in items {
            if let Some(f) = item.strip_prefix("--") {
                let (k, v) = f.split_once('=').unwrap_or((f, "true"));
                flags.insert(k.to_string(), v.to_string());
            }
        }
        flags
    }

    /// This manifest with `metadata.annotations[key] = value` (an absent or null
    /// `annotations` becomes a mapping), everything else unchanged.
    pub fn with_annotation(mut self, key: &str, value: &str) -> Result<Self, ManifestError> {
        let meta = self
            .doc
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or(ManifestError::NoMetadata)?;
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if ann.is_null() {
            *ann = Value::Object(Map::new());
        }
        ann.as_object_mut()
            .ok_or(ManifestError::AnnotationsNotAMapping)?
            .insert(key.to_string(), Value::String(value.to_string()));
        Ok(self)
    }
}

/// Re-parses both versions of a manifest: `new` must be `old` plus
/// `metadata.annotations[key] = value`, nothing else. This is what makes a line-based
/// edit of the YAML text safe: whatever layout the edit did not foresee ends here as an
/// error instead of a changed pod.
pub fn check_only_annotation_changed(
    old: &str,
    new: &str,
    key: &str,
    value: &str,
) -> Result<(), ManifestError> {
    let want = StaticPodManifest::from_doc(parse_yaml(old).map_err(ManifestError::NotYaml)?)?
        .with_annotation(key, value)?;
    let got = parse_yaml(new).map_err(ManifestError::EditedNotYaml)?;
    if got != want.doc {
        return Err(ManifestError::ChangedMoreThanTheAnnotation);
    }
    Ok(())
}

fn parse_yaml(text: &str) -> Result<Value, Box<serde_saphyr::Error>> {
    serde_saphyr::from_str::<Value>(text).map_err(Box::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n  annotations:\n    a: b\n    n: 5\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --secure-port=8443\n    - --allow-privileged\n    args:\n    - --secure-port=9443\n    - 7\n    name: kube-apiserver\n  - command:\n    - --other=1\n    name: sidecar\n";

    #[test]
    fn flags_of_the_first_container_and_annotations() {
        let m = StaticPodManifest::parse(POD.as_bytes()).unwrap();
        let f = m.container_flags();
        assert_eq!(f.get("secure-port").map(String::as_str), Some("9443"));
        assert_eq!(f.get("allow-privileged").map(String::as_str), Some("true"));
        assert!(!f.contains_key("other"));
        assert_eq!(f.len(), 2);
        assert_eq!(m.annotation("a"), Some("b"));
        assert_eq!(m.annotation("n"), None, "not a string");
        assert_eq!(m.annotation("zz"), None);
        let bare = StaticPodManifest::parse(b"kind: Pod\n").unwrap();
        assert!(bare.container_flags().is_empty());
        assert_eq!(bare.annotation("a"), None);
    }

    #[test]
    fn unreadable_manifests_say_why() {
        assert!(matches!(
            StaticPodManifest::parse(b"\xff\xfe"),
            Err(ManifestError::NotUtf8)
        ));
        assert!(matches!(
            StaticPodManifest::parse(b"{{{ not yaml"),
            Err(ManifestError::NotYaml(_))
        ));
        assert!(matches!(
            StaticPodManifest::parse(b"- a\n- b\n"),
            Err(ManifestError::NotAMapping)
        ));
    }

    #[test]
    fn the_edit_check_accepts_only_our_annotation() {
        let with = POD.replace("    n: 5\n", "    n: 5\n    k: \"v\"\n");
        check_only_annotation_changed(POD, &with, "k", "v").unwrap();
        assert!(matches!(
            check_only_annotation_changed(POD, &with, "k", "other"),
            Err(ManifestError::ChangedMoreThanTheAnnotation)
        ));
        let more = with.replace("--secure-port=9443", "--secure-port=1");
        assert!(matches!(
            check_only_annotation_changed(POD, &more, "k", "v"),
            Err(ManifestError::ChangedMoreThanTheAnnotation)
        ));
        // No annotations at all, or null ones: the key makes a new mapping.
        let none = "metadata:\n  name: x\n";
        check_only_annotation_changed(
            none,
            "metadata:\n  name: x\n  annotations:\n    k: v\n",
            "k",
            "v",
        )
        .unwrap();
        let null = "metadata:\n  annotations: ~\n";
        check_only_annotation_changed(null, "metadata:\n  annotations:\n    k: v\n", "k", "v")
            .unwrap();
        assert!(matches!(
            check_only_annotation_changed("kind: Pod\n", "kind: Pod\n", "k", "v"),
            Err(ManifestError::NoMetadata)
        ));
        assert!(matches!(
            check_only_annotation_changed("metadata:\n  annotations: [1]\n", "", "k", "v"),
            Err(ManifestError::AnnotationsNotAMapping)
        ));
        assert!(matches!(
            check_only_annotation_changed(none, "metadata: [", "k", "v"),
            Err(ManifestError::EditedNotYaml(_))
        ));
    }
}

//! Static pods reload by manifest: the kubelet recreates a static pod only when its
//! manifest's *content* changes (a touch does nothing), so a restart is the manifest
//! with the `cert-rotator.k8s.io/certs-hash` annotation set, as a [`FileChange`] for the
//! crash-safe writer.
//!
//! The edit is made on the YAML *text*, line by line, so every other byte (comments,
//! ordering, quoting) stays as kubeadm wrote it; the manifest model
//! ([`crate::node::manifest`]) then checks that the result means the old pod plus the
//! annotation, nothing else.

use std::path::Path;

use super::{RestartError, CERTS_HASH_ANNOTATION};
use crate::model::FileChange;
use crate::node::manifest::{check_only_annotation_changed, ManifestError, StaticPodManifest};
use crate::node::NodeRoot;

/// Why the annotation cannot be set in a manifest's text.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationEditError {
    #[error("no top-level `metadata:` block mapping")]
    NoMetadataBlock,
    #[error("metadata is empty")]
    EmptyMetadata,
    #[error("unreadable annotations line")]
    UnreadableAnnotationsLine,
    #[error(
        "our key is already in a flow-style annotations mapping; rewrite it as a block mapping"
    )]
    KeyInFlowMapping,
    #[error("unreadable flow mapping")]
    UnreadableFlowMapping,
    #[error("metadata.annotations is neither a mapping nor empty: {0}")]
    NotAMapping(String),
    #[error("metadata.annotations has both an inline value and entries")]
    InlineValueAndEntries,
    /// The manifest itself, or the edited one, as the model reads it.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

fn read_manifest(root: &NodeRoot, manifest: &Path) -> Result<Vec<u8>, RestartError> {
    root.read_file(manifest)
        .map(|(_, bytes)| bytes)
        .map_err(|source| RestartError::ReadManifest { source })
}

/// The new content of a static pod's manifest (a node path) with
/// `metadata.annotations["cert-rotator.k8s.io/certs-hash"]` set to `annotation_value`,
/// every other byte unchanged. The kubelet recreates a static pod only when its
/// manifest's content changes (a touch does nothing), and an annotation is the one
/// change that alters nothing else about the pod.
///
/// The change is staged outside the manifests directory (`stage_outside`): the kubelet
/// would run a temp file there as a pod. When the manifest already carries this value
/// the content is unchanged and the kubelet will not restart the pod.
pub fn static_pod_change(
    root: &NodeRoot,
    manifest: &Path,
    annotation_value: &str,
) -> Result<FileChange, RestartError> {
    let bytes = read_manifest(root, manifest)?;
    let new = annotated(&bytes, CERTS_HASH_ANNOTATION, annotation_value).map_err(|source| {
        RestartError::Manifest {
            path: manifest.to_path_buf(),
            source,
        }
    })?;
    Ok(FileChange::manifest(manifest, new.into_bytes()))
}

/// The manifest text with `metadata.annotations[key] = value`, checked by the model.
fn annotated(bytes: &[u8], key: &str, value: &str) -> Result<String, AnnotationEditError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ManifestError::NotUtf8)?;
    let new = set_annotation(text, key, value)?;
    check_only_annotation_changed(text, &new, key, value)?;
    Ok(new)
}

/// The manifest's current `cert-rotator.k8s.io/certs-hash` annotation, if any.
pub fn current_certs_hash(
    root: &NodeRoot,
    manifest: &Path,
) -> Result<Option<String>, RestartError> {
    let bytes = read_manifest(root, manifest)?;
    let m =
        StaticPodManifest::parse(&bytes).map_err(|source| RestartError::UnreadableManifest {
            path: manifest.to_path_buf(),
            source,
        })?;
    Ok(m.annotation(CERTS_HASH_ANNOTATION).map(str::to_string))
}

/// A YAML double-quoted scalar.
fn quote(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// One line of the manifest, with its line ending kept apart.
struct Line<'a> {
    text: &'a str,
    eol: &'a str,
}

impl Line<'_> {
    fn indent(&self) -> usize {
        self.text.len() - self.text.trim_start_matches(' ').len()
    }
    /// Blank and comment-only lines do not end or start a block.
    fn is_content(&self) -> bool {
        let t = self.text.trim();
        !t.is_empty() && !t.starts_with('#')
    }
    /// The mapping key of a `key: value` line and the text after its colon.
    fn key_value(&self) -> Option<(String, &str)> {
        let t = self.text.trim_start_matches(' ');
        let (key, rest) = if let Some(q @ ('"' | '\'')) = t.chars().next() {
            let end = t[1..].find(q)? + 1;
            (t[1..end].to_string(), &t[end + 1..])
        } else {
            let colon = t
                .find(": ")
                .or_else(|| t.strip_suffix(':').map(|s| s.len()))?;
            (t[..colon].trim_end().to_string(), &t[colon..])
        };
        let rest = rest.trim_start_matches(' ').strip_prefix(':')?;
        Some((key, rest))
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .map(|l| {
            let body = l.strip_suffix('\n').unwrap_or(l);
            let body = body.strip_suffix('\r').unwrap_or(body);
            Line {
                text: body,
                eol: &l[body.len()..],
            }
        })
        .collect()
}

/// Does the text after a key's colon open a block (nothing but maybe a comment)?
fn block_start(rest: &str) -> bool {
    let t = rest.trim();
    t.is_empty() || t.starts_with('#')
}

/// Is the text after a key's colon an empty value (`annotations:` with nothing under
/// it, `{}`, `null`, `~`), possibly followed by a comment?
fn empty_value(rest: &str) -> Option<&str> {
    let t = rest.trim();
    for empty in ["{}", "null", "~", ""] {
        if let Some(after) = t.strip_prefix(empty) {
            let after = after.trim();
            if after.is_empty() || after.starts_with('#') {
                return Some(after);
            }
        }
    }
    None
}

/// Sets `metadata.annotations[key]` in a pod manifest's text, touching only the lines
/// it must: the kubeadm layout (block mappings, two-space steps) and the obvious
/// variants; [`check_only_annotation_changed`] rejects anything it got wrong.
fn set_annotation(text: &str, key: &str, value: &str) -> Result<String, AnnotationEditError> {
    let ls = lines(text);
    let entry =
        |indent: usize, eol: &str| format!("{}{key}: {}{eol}", " ".repeat(indent), quote(value));
    let meta = ls
        .iter()
        .position(|l| {
            l.indent() == 0
                && l.key_value()
                    .is_some_and(|(k, r)| k == "metadata" && block_start(r))
        })
        .ok_or(AnnotationEditError::NoMetadataBlock)?;
    let eol = if ls[meta].eol.is_empty() {
        "\n"
    } else {
        ls[meta].eol
    };
    // metadata's children: the lines up to the next top-level content line.
    let end = (meta + 1..ls.len())
        .find(|&i| ls[i].is_content() && ls[i].indent() == 0)
        .unwrap_or(ls.len());
    let child_indent = (meta + 1..end)
        .find(|&i| ls[i].is_content())
        .map(|i| ls[i].indent())
        .ok_or(AnnotationEditError::EmptyMetadata)?;
    let ann = (meta + 1..end).find(|&i| {
        ls[i].indent() == child_indent && ls[i].key_value().is_some_and(|(k, _)| k == "annotations")
    });
    let mut out: Vec<String> = ls.iter().map(|l| format!("{}{}", l.text, l.eol)).collect();
    let Some(ann) = ann else {
        // kube-controller-manager.yaml and kube-scheduler.yaml from kubeadm.
        out.insert(
            meta + 1,
            format!(
                "{}annotations:{eol}{}",
                " ".repeat(child_indent),
                entry(2 * child_indent, eol)
            ),
        );
        return Ok(out.concat());
    };
    let (_, rest) = ls[ann]
        .key_value()
        .ok_or(AnnotationEditError::UnreadableAnnotationsLine)?;
    let ann_eol = if ls[ann].eol.is_empty() {
        eol
    } else {
        ls[ann].eol
    };
    let block_end = (ann + 1..end)
        .find(|&i| ls[i].is_content() && ls[i].indent() <= child_indent)
        .unwrap_or(end);
    let entries: Vec<usize> = (ann + 1..block_end)
        .filter(|&i| ls[i].is_content())
        .collect();
    // No entries yet: every path of this block returns.
    let Some(&last_entry) = entries.last() else {
        let Some(comment) = empty_value(rest) else {
            let t = rest.trim();
            if let Some(inner) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                // A one-line flow mapping: append our entry inside the braces.
                if inner.contains(key) {
                    return Err(AnnotationEditError::KeyInFlowMapping);
                }
                let pos = ls[ann]
                    .text
                    .rfind('}')
                    .ok_or(AnnotationEditError::UnreadableFlowMapping)?;
                let line = ls[ann].text;
                out[ann] = format!(
                    "{}, {key}: {}{}{ann_eol}",
                    line[..pos].trim_end(),
                    quote(value),
                    &line[pos..]
                );
                return Ok(out.concat());
            }
            return Err(AnnotationEditError::NotAMapping(t.to_string()));
        };
        let comment = if comment.is_empty() {
            String::new()
        } else {
            format!(" {comment}")
        };
        out[ann] = format!(
            "{}annotations:{comment}{ann_eol}{}",
            " ".repeat(child_indent),
            entry(2 * child_indent, ann_eol)
        );
        return Ok(out.concat());
    };
    if !block_start(rest) {
        return Err(AnnotationEditError::InlineValueAndEntries);
    }
    let entry_indent = ls[entries[0]].indent();
    let ours = entries.iter().copied().find(|&i| {
        ls[i].indent() == entry_indent && ls[i].key_value().is_some_and(|(k, _)| k == key)
    });
    match ours {
        Some(i) => {
            // Replace our entry and any continuation lines of a multi-line value.
            let next = entries
                .iter()
                .copied()
                .find(|&j| j > i && ls[j].indent() <= entry_indent)
                .unwrap_or(block_end);
            let last = (i..next).rev().find(|&j| ls[j].is_content()).unwrap_or(i);
            let line_eol = if ls[i].eol.is_empty() { eol } else { ls[i].eol };
            let mut replaced = entry(entry_indent, line_eol);
            if ls[last].eol.is_empty() {
                // The file ended without a newline: keep it that way.
                replaced.truncate(replaced.len() - line_eol.len());
            }
            out.splice(i..=last, [replaced]);
        }
        None => {
            let last = last_entry;
            let line_eol = if ls[last].eol.is_empty() {
                eol
            } else {
                ls[last].eol
            };
            if ls[last].eol.is_empty() {
                out[last].push_str(line_eol);
            }
            out.insert(last + 1, entry(entry_indent, line_eol));
        }
    }
    Ok(out.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, NodeSpec};
    use crate::model::NewContent;
    use std::path::PathBuf;

    fn node() -> (tempfile::TempDir, NodeRoot) {
        let d = tempfile::tempdir().unwrap();
        fixture::build(
            d.path(),
            &NodeSpec::control_plane(time::OffsetDateTime::now_utc()),
        )
        .unwrap();
        let r = NodeRoot::new(d.path());
        (d, r)
    }

    fn manifest(name: &str) -> PathBuf {
        PathBuf::from(format!("/etc/kubernetes/manifests/{name}.yaml"))
    }

    fn content(c: &FileChange) -> String {
        match &c.content {
            NewContent::File(b) => String::from_utf8(b.clone()).unwrap(),
            NewContent::Symlink(_) => panic!("not a file"),
        }
    }

    /// The lines of `new` that are not in `old`, and the other way round (a line diff
    /// good enough for insertions and one-line replacements).
    fn diff(old: &str, new: &str) -> (Vec<String>, Vec<String>) {
        let o: Vec<&str> = old.split_inclusive('\n').collect();
        let n: Vec<&str> = new.split_inclusive('\n').collect();
        let mut p = 0;
        while p < o.len() && p < n.len() && o[p] == n[p] {
            p += 1;
        }
        let mut s = 0;
        while s < o.len() - p && s < n.len() - p && o[o.len() - 1 - s] == n[n.len() - 1 - s] {
            s += 1;
        }
        (
            n[p..n.len() - s].iter().map(|l| l.to_string()).collect(),
            o[p..o.len() - s].iter().map(|l| l.to_string()).collect(),
        )
    }

    #[test]
    fn apiserver_and_etcd_get_our_key_last_in_their_annotations() {
        let (_d, r) = node();
        for (name, before) in [
            ("kube-apiserver", "    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.10:6443\n"),
            ("etcd", "    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.10:2379\n"),
        ] {
            let old = String::from_utf8(r.read(&manifest(name)).unwrap()).unwrap();
            let c = static_pod_change(&r, &manifest(name), "0123456789abcdef").unwrap();
            assert!(c.stage_outside);
            assert_eq!(c.path, manifest(name));
            let new = content(&c);
            let (added, removed) = diff(&old, &new);
            assert!(removed.is_empty(), "{name}: {removed:?}");
            assert_eq!(added, ["    cert-rotator.k8s.io/certs-hash: \"0123456789abcdef\"\n"], "{name}");
            assert!(new.contains(&format!("{before}    cert-rotator.k8s.io/certs-hash")), "{new}");
        }
    }

    #[test]
    fn controller_manager_and_scheduler_get_an_annotations_block() {
        let (_d, r) = node();
        for name in ["kube-controller-manager", "kube-scheduler"] {
            let old = String::from_utf8(r.read(&manifest(name)).unwrap()).unwrap();
            let new = content(&static_pod_change(&r, &manifest(name), "aa").unwrap());
            let (added, removed) = diff(&old, &new);
            assert!(removed.is_empty());
            assert_eq!(
                added,
                [
                    "  annotations:\n",
                    "    cert-rotator.k8s.io/certs-hash: \"aa\"\n"
                ]
            );
            assert!(new.contains("metadata:\n  annotations:\n    cert-rotator"));
        }
    }

    #[test]
    fn an_existing_value_is_replaced_in_place_and_read_back() {
        let (_d, r) = node();
        let m = manifest("kube-apiserver");
        let first = content(&static_pod_change(&r, &m, "1111").unwrap());
        std::fs::write(r.host(&m), &first).unwrap();
        assert_eq!(current_certs_hash(&r, &m).unwrap().as_deref(), Some("1111"));
        let second = content(&static_pod_change(&r, &m, "2222").unwrap());
        let (added, removed) = diff(&first, &second);
        assert_eq!(added, ["    cert-rotator.k8s.io/certs-hash: \"2222\"\n"]);
        assert_eq!(removed, ["    cert-rotator.k8s.io/certs-hash: \"1111\"\n"]);
        assert_eq!(second.len(), first.len());
        // Same value again: nothing changes.
        std::fs::write(r.host(&m), &second).unwrap();
        assert_eq!(content(&static_pod_change(&r, &m, "2222").unwrap()), second);
        assert_eq!(
            current_certs_hash(&r, &manifest("kube-scheduler")).unwrap(),
            None
        );
    }

    #[test]
    fn flow_style_and_odd_layouts() {
        let base = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  annotations: {}\nspec:\n  containers: []\n";
        let got = set_annotation(base, CERTS_HASH_ANNOTATION, "v").unwrap();
        assert_eq!(
            got,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  annotations:\n    cert-rotator.k8s.io/certs-hash: \"v\"\nspec:\n  containers: []\n"
        );
        check_only_annotation_changed(base, &got, CERTS_HASH_ANNOTATION, "v").unwrap();

        let flow = "metadata:\n  annotations: {a: b}\n  name: x\n";
        let got = set_annotation(flow, CERTS_HASH_ANNOTATION, "v").unwrap();
        assert_eq!(
            got,
            "metadata:\n  annotations: {a: b, cert-rotator.k8s.io/certs-hash: \"v\"}\n  name: x\n"
        );
        check_only_annotation_changed(flow, &got, CERTS_HASH_ANNOTATION, "v").unwrap();

        // Four-space indentation, CRLF line endings, a comment, no final newline.
        let crlf =
            "metadata:\r\n    # the pod\r\n    annotations:\r\n        a: \"b\"\r\n    name: x";
        let got = set_annotation(crlf, CERTS_HASH_ANNOTATION, "v").unwrap();
        assert_eq!(
            got,
            "metadata:\r\n    # the pod\r\n    annotations:\r\n        a: \"b\"\r\n        cert-rotator.k8s.io/certs-hash: \"v\"\r\n    name: x"
        );
        check_only_annotation_changed(crlf, &got, CERTS_HASH_ANNOTATION, "v").unwrap();

        let last = "metadata:\n  annotations:\n    cert-rotator.k8s.io/certs-hash: old";
        let got = set_annotation(last, CERTS_HASH_ANNOTATION, "new").unwrap();
        assert_eq!(
            got,
            "metadata:\n  annotations:\n    cert-rotator.k8s.io/certs-hash: \"new\""
        );

        // Quoting keeps odd values a string.
        let got = set_annotation(base, CERTS_HASH_ANNOTATION, "a\"b\\c").unwrap();
        check_only_annotation_changed(base, &got, CERTS_HASH_ANNOTATION, "a\"b\\c").unwrap();

        assert!(set_annotation("kind: Pod\n", CERTS_HASH_ANNOTATION, "v").is_err());
    }

    #[test]
    fn a_misread_layout_is_refused_not_written() {
        // A block scalar line that looks like a comment: the line edit takes it for one
        // and puts our key above it, cutting it off the scalar; the re-parse notices.
        let tricky = "apiVersion: v1\nmetadata:\n  annotations:\n    a: |\n      x\n      # not a comment\n  name: x\n";
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        let m = Path::new("/etc/kubernetes/manifests/tricky.yaml");
        std::fs::create_dir_all(r.host(Path::new("/etc/kubernetes/manifests"))).unwrap();
        std::fs::write(r.host(m), tricky).unwrap();
        let e = static_pod_change(&r, m, "v").unwrap_err();
        assert!(
            e.to_string()
                .contains("/etc/kubernetes/manifests/tricky.yaml: cannot set"),
            "{e}"
        );
        assert!(e.to_string().contains("more than the annotation"), "{e}");
        let e = static_pod_change(&r, Path::new("/etc/kubernetes/manifests/nope.yaml"), "v")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("/etc/kubernetes/manifests/nope.yaml"),
            "{e}"
        );
    }
}

//! Kubeconfigs: which client certificate the current context uses, and where its bytes
//! sit in the file so a renewal can replace exactly those bytes and nothing else.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Deserialize)]
struct RawKubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    cluster: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<AuthInfo>,
}

#[derive(Deserialize, Default)]
struct AuthInfo {
    #[serde(rename = "client-certificate-data", default)]
    client_certificate_data: Option<Spanned<String>>,
    #[serde(rename = "client-key-data", default)]
    client_key_data: Option<Spanned<String>>,
    #[serde(rename = "client-certificate", default)]
    client_certificate: Option<String>,
    #[serde(rename = "client-key", default)]
    client_key: Option<String>,
    // Credentials that are not a client certificate: only their presence matters.
    #[serde(default)]
    token: Option<serde::de::IgnoredAny>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    exec: Option<serde::de::IgnoredAny>,
    #[serde(rename = "auth-provider", default)]
    auth_provider: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    username: Option<serde::de::IgnoredAny>,
}

/// Where a base64 value sits in the kubeconfig file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSpan {
    pub start: usize,
    pub len: usize,
}

/// The client credential of the current context's user.
#[derive(Clone)]
pub enum ClientCredential {
    /// client-certificate-data / client-key-data in the file itself.
    Embedded {
        cert_pem: Vec<u8>,
        key_pem: Option<Vec<u8>>,
        cert_span: Option<ByteSpan>,
        key_span: Option<ByteSpan>,
    },
    /// client-certificate / client-key naming files (node paths; relative ones are
    /// taken from the kubeconfig's directory, as kubectl does).
    Files { cert: PathBuf, key: Option<PathBuf> },
    /// The user authenticates otherwise (a bearer token, an exec plugin such as a cloud
    /// login or OIDC, an auth provider, basic auth): nothing here to renew.
    NotACertificate { method: &'static str },
}

impl std::fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCredential::Embedded { .. } => write!(f, "Embedded(<redacted>)"),
            ClientCredential::Files { cert, key } => write!(f, "Files({cert:?}, {key:?})"),
            ClientCredential::NotACertificate { method } => write!(f, "NotACertificate({method})"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Kubeconfig {
    pub context: String,
    pub user: String,
    pub credential: ClientCredential,
    /// The cluster entry the current context names (an API client's server and CA).
    pub cluster: Option<String>,
}

/// What is wrong with a kubeconfig's content. Like the other content errors of the node
/// layer it names no path: the caller read the file and wraps this with the path.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("not a valid kubeconfig (YAML): {0}")]
    NotYaml(#[source] Box<serde_saphyr::Error>),
    #[error("kubeconfig has no current-context")]
    NoCurrentContext,
    #[error("current-context {context:?} names no context in the file")]
    ContextMissing { context: String },
    #[error("context {context:?} names no user")]
    NoUser { context: String },
    #[error("context {context:?} uses user {user:?}, which is not in the file")]
    UserMissing { context: String, user: String },
    /// `field` is client-certificate-data or client-key-data.
    #[error("user {user:?}: {field} is not base64: {source}")]
    NotBase64 {
        user: String,
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("the current user references certificate files; renew those files instead")]
    ReferencesFiles,
    #[error("cannot locate the base64 data in the file to edit it in place")]
    NoSpan,
    #[error("cluster {cluster:?}: certificate-authority-data is not base64: {source}")]
    ClusterCaNotBase64 {
        cluster: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("no cluster {cluster:?} in the file")]
    ClusterMissing { cluster: String },
    #[error("cluster {cluster:?} has no certificate-authority-data to replace")]
    ClusterCaNotEmbedded { cluster: String },
    #[error("base64 data span lies outside the file")]
    SpanOutsideFile,
    #[error("the base64 value is not on a single line; refusing to rewrite its layout")]
    NotSingleLine,
}

/// A kubeconfig's YAML, its errors quoting nothing of the file: a snippet around a
/// mistake could be a line of `client-key-data` (errors are logged and printed).
fn from_yaml<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, KubeconfigError> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_slice_with_options(bytes, options)
        .map_err(|e| KubeconfigError::NotYaml(Box::new(e)))
}

/// Reads a kubeconfig; `node_path` is where it lives, for relative file references.
pub fn parse(bytes: &[u8], node_path: &Path) -> Result<Kubeconfig, KubeconfigError> {
    credential_of(from_yaml(bytes)?, node_path)
}

/// Both readings of one kubeconfig: the current user's credential ([`parse`]) and every
/// cluster entry ([`clusters`]), each with the result it has alone.
#[derive(Debug)]
pub struct Parsed {
    pub kubeconfig: Result<Kubeconfig, KubeconfigError>,
    pub clusters: Result<Vec<ClusterEntry>, KubeconfigError>,
}

/// [`RawKubeconfig`] and [`RawClusters`] in one document pass.
#[derive(Deserialize)]
struct RawBoth {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
}

/// [`parse`] and [`clusters`] from one YAML parse: the node model reads a kubeconfig for
/// its inventory and its CA copies alike, and the YAML is most of a kubeconfig's cost.
pub fn parse_both(bytes: &[u8], node_path: &Path) -> Parsed {
    match from_yaml::<RawBoth>(bytes) {
        Ok(raw) => Parsed {
            kubeconfig: credential_of(
                RawKubeconfig {
                    current_context: raw.current_context,
                    contexts: raw.contexts,
                    users: raw.users,
                },
                node_path,
            ),
            clusters: clusters_of(
                RawClusters {
                    clusters: raw.clusters,
                },
                node_path,
            ),
        },
        // Apart, as each reads it alone: a part one of them does not look at (users
        // that are no list, say) must not fail the other, and each error stays its own.
        Err(_) => Parsed {
            kubeconfig: parse(bytes, node_path),
            clusters: clusters(bytes, node_path),
        },
    }
}

fn credential_of(raw: RawKubeconfig, node_path: &Path) -> Result<Kubeconfig, KubeconfigError> {
    let Some(context) = raw.current_context.filter(|c| !c.is_empty()) else {
        return Err(KubeconfigError::NoCurrentContext);
    };
    let Some(ctx) = raw
        .contexts
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == context)
    else {
        return Err(KubeconfigError::ContextMissing { context });
    };
    let cluster = ctx.context.cluster.clone().filter(|c| !c.is_empty());
    let Some(user) = ctx.context.user.filter(|u| !u.is_empty()) else {
        return Err(KubeconfigError::NoUser { context });
    };
    let Some(named) = raw
        .users
        .unwrap_or_default()
        .into_iter()
        .find(|u| u.name == user)
    else {
        return Err(KubeconfigError::UserMissing { context, user });
    };
    let auth = named.user.unwrap_or_default();
    let not_base64 = |field: &'static str| {
        let user = user.clone();
        move |source| KubeconfigError::NotBase64 {
            user,
            field,
            source,
        }
    };
    let credential = if let Some(cert) = auth.client_certificate_data {
        let cert_span = span_of(&cert);
        let cert_pem = decode_b64(&cert.value).map_err(not_base64("client-certificate-data"))?;
        let (key_pem, key_span) = match auth.client_key_data {
            Some(k) => {
                let span = span_of(&k);
                let pem = decode_b64(&k.value).map_err(not_base64("client-key-data"))?;
                (Some(pem), span)
            }
            None => (None, None),
        };
        ClientCredential::Embedded {
            cert_pem,
            key_pem,
            cert_span,
            key_span,
        }
    } else if let Some(cert) = auth.client_certificate {
        let base = node_path.parent().unwrap_or(Path::new("/"));
        ClientCredential::Files {
            cert: base.join(cert),
            key: auth.client_key.map(|k| base.join(k)),
        }
    } else {
        let method = if auth.exec.is_some() {
            "an exec credential plugin"
        } else if auth.auth_provider.is_some() {
            "an auth provider (OIDC)"
        } else if auth.token.is_some() || auth.token_file.is_some() {
            "a bearer token"
        } else if auth.username.is_some() {
            "basic auth"
        } else {
            "no client certificate"
        };
        ClientCredential::NotACertificate { method }
    };
    Ok(Kubeconfig {
        context,
        user,
        credential,
        cluster,
    })
}

/// Replaces the current user's client-certificate-data and client-key-data with new
/// PEM bytes, leaving every other byte of the file as it was.
pub fn replace_embedded(
    bytes: &[u8],
    node_path: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Vec<u8>, KubeconfigError> {
    let kc = parse(bytes, node_path)?;
    let ClientCredential::Embedded {
        cert_span,
        key_span,
        ..
    } = kc.credential
    else {
        return Err(KubeconfigError::ReferencesFiles);
    };
    let (Some(cs), Some(ks)) = (cert_span, key_span) else {
        return Err(KubeconfigError::NoSpan);
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    splice_base64(bytes, vec![(cs, b64(cert_pem)), (ks, b64(key_pem))])
}

/// Replaces base64 scalars at their spans with new base64 text, every other byte kept.
/// A value that is not a single-line base64 scalar is refused rather than re-laid out.
fn splice_base64(
    bytes: &[u8],
    mut edits: Vec<(ByteSpan, String)>,
) -> Result<Vec<u8>, KubeconfigError> {
    edits.sort_by_key(|e| std::cmp::Reverse(e.0.start));
    let mut out = bytes.to_vec();
    for (span, new) in edits {
        let end = span.start + span.len;
        let Some(text) = bytes.get(span.start..end) else {
            return Err(KubeconfigError::SpanOutsideFile);
        };
        // A plain scalar spans exactly the value; a quoted one keeps its quotes.
        let (a, b) = match (text.first(), text.last()) {
            (Some(q @ (b'"' | b'\'')), Some(l)) if l == q && text.len() >= 2 => {
                (span.start + 1, end - 1)
            }
            _ => (span.start, end),
        };
        let inner = &bytes[a..b];
        if inner.iter().any(|c| c.is_ascii_whitespace())
            || base64::engine::general_purpose::STANDARD
                .decode(inner)
                .is_err()
        {
            return Err(KubeconfigError::NotSingleLine);
        }
        out.splice(a..b, new.into_bytes());
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RawClusters {
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    #[serde(default)]
    cluster: Option<Cluster>,
}

#[derive(Deserialize, Default)]
struct Cluster {
    #[serde(rename = "certificate-authority-data", default)]
    certificate_authority_data: Option<Spanned<String>>,
    #[serde(rename = "certificate-authority", default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    server: Option<String>,
}

/// The CA a kubeconfig's cluster entry trusts.
#[derive(Clone, Debug)]
pub enum ClusterTrust {
    /// `certificate-authority-data`: the PEM bytes and where their base64 sits.
    Embedded {
        pem: Vec<u8>,
        span: Option<ByteSpan>,
    },
    /// `certificate-authority`: a file (node path; a relative one from the
    /// kubeconfig's directory, as kubectl takes it).
    File(PathBuf),
    /// Neither: the system roots (or `insecure-skip-tls-verify`).
    None,
}

/// One entry of a kubeconfig's `clusters` list.
#[derive(Clone, Debug)]
pub struct ClusterEntry {
    pub name: String,
    pub trust: ClusterTrust,
    /// `server`: the API server's URL.
    pub server: Option<String>,
}

/// Every cluster entry of a kubeconfig and the CA it trusts, whatever the current
/// context (a CA's copies are every entry that embeds it, not only the one in use).
pub fn clusters(bytes: &[u8], node_path: &Path) -> Result<Vec<ClusterEntry>, KubeconfigError> {
    clusters_of(from_yaml(bytes)?, node_path)
}

fn clusters_of(raw: RawClusters, node_path: &Path) -> Result<Vec<ClusterEntry>, KubeconfigError> {
    let mut out = Vec::new();
    for c in raw.clusters.unwrap_or_default() {
        let cluster = c.cluster.unwrap_or_default();
        let trust = if let Some(data) = cluster.certificate_authority_data {
            let span = span_of(&data);
            let pem =
                decode_b64(&data.value).map_err(|source| KubeconfigError::ClusterCaNotBase64 {
                    cluster: c.name.clone(),
                    source,
                })?;
            ClusterTrust::Embedded { pem, span }
        } else if let Some(file) = cluster.certificate_authority.filter(|f| !f.is_empty()) {
            let base = node_path.parent().unwrap_or(Path::new("/"));
            ClusterTrust::File(base.join(file))
        } else {
            ClusterTrust::None
        };
        out.push(ClusterEntry {
            name: c.name,
            trust,
            server: cluster.server.filter(|s| !s.is_empty()),
        });
    }
    Ok(out)
}

/// Replaces the `certificate-authority-data` of the named cluster entries with new PEM
/// bytes (one value per entry), leaving every other byte of the file as it was.
pub fn replace_cluster_ca(
    bytes: &[u8],
    node_path: &Path,
    new: &[(&str, &[u8])],
) -> Result<Vec<u8>, KubeconfigError> {
    let entries = clusters(bytes, node_path)?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut edits = Vec::new();
    for (name, pem) in new {
        let Some(entry) = entries.iter().find(|e| e.name == *name) else {
            return Err(KubeconfigError::ClusterMissing {
                cluster: name.to_string(),
            });
        };
        let ClusterTrust::Embedded { span, .. } = &entry.trust else {
            return Err(KubeconfigError::ClusterCaNotEmbedded {
                cluster: name.to_string(),
            });
        };
        let Some(span) = span else {
            return Err(KubeconfigError::NoSpan);
        };
        edits.push((*span, b64(pem)));
    }
    splice_base64(bytes, edits)
}

fn span_of<T>(s: &Spanned<T>) -> Option<ByteSpan> {
    let sp = s.defined.span();
    Some(ByteSpan {
        start: usize::try_from(sp.byte_offset()?).ok()?,
        len: usize::try_from(sp.byte_len()?).ok()?,
    })
}

fn decode_b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    // kubeadm writes the value on one line: decoded as it is, without a copy.
    if s.bytes()
        .all(|b| b.is_ascii() && !(b as char).is_whitespace())
    {
        return b64.decode(s);
    }
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    b64.decode(compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://10.0.0.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
- context:
    cluster: kubernetes
    user: other
  name: other@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: other
  user:
    client-certificate: other.crt
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn finds_the_current_users_embedded_data_and_its_bytes() {
        let k = parse(KC.as_bytes(), Path::new("/etc/kubernetes/admin.conf")).unwrap();
        assert_eq!(k.user, "kubernetes-admin");
        let ClientCredential::Embedded {
            cert_pem,
            key_pem,
            cert_span,
            key_span,
        } = k.credential
        else {
            panic!("not embedded")
        };
        assert_eq!(cert_pem, b"CERT");
        assert_eq!(key_pem.unwrap(), b"KEY");
        let c = cert_span.unwrap();
        assert_eq!(&KC[c.start..c.start + c.len], "Q0VSVA==");
        let k = key_span.unwrap();
        assert_eq!(&KC[k.start..k.start + k.len], "S0VZ");
    }

    #[test]
    fn replacing_embedded_data_changes_only_those_bytes() {
        let out = replace_embedded(KC.as_bytes(), Path::new("/a"), b"NEWCERT", b"NEWKEY").unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            KC.replace("Q0VSVA==", "TkVXQ0VSVA==")
                .replace("S0VZ", "TkVXS0VZ")
        );
        let quoted = KC.replace("client-key-data: S0VZ", "client-key-data: \"S0VZ\"");
        let out = replace_embedded(quoted.as_bytes(), Path::new("/a"), b"C", b"NEWKEY").unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("client-key-data: \"TkVXS0VZ\"\n"));
    }

    #[test]
    fn cluster_ca_data_is_found_and_replaced_in_place() {
        let e = clusters(KC.as_bytes(), Path::new("/a")).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "kubernetes");
        let ClusterTrust::Embedded { pem, .. } = &e[0].trust else {
            panic!("not embedded")
        };
        assert_eq!(pem, b"CA");
        let out = replace_cluster_ca(KC.as_bytes(), Path::new("/a"), &[("kubernetes", b"NEWCA")])
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            KC.replace(
                "certificate-authority-data: Q0E=",
                "certificate-authority-data: TkVXQ0E="
            )
        );
        let err = replace_cluster_ca(KC.as_bytes(), Path::new("/a"), &[("gone", b"X")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no cluster \"gone\""), "{err}");
        let file = KC.replace(
            "certificate-authority-data: Q0E=",
            "certificate-authority: pki/ca.crt",
        );
        let e = clusters(file.as_bytes(), Path::new("/etc/kubernetes/x.conf")).unwrap();
        assert!(
            matches!(&e[0].trust, ClusterTrust::File(p) if p == Path::new("/etc/kubernetes/pki/ca.crt"))
        );
        let err = replace_cluster_ca(file.as_bytes(), Path::new("/a"), &[("kubernetes", b"X")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no certificate-authority-data"), "{err}");
    }

    /// One parse gives what the two give alone, also when one part is broken.
    #[test]
    fn both_readings_from_one_parse_are_each_as_alone() {
        let p = Path::new("/etc/kubernetes/admin.conf");
        let no_list = KC.replace("users:\n- name: other", "users: 5\nx:\n- name: other");
        let no_context = KC.replace("current-context: kubernetes-admin@kubernetes\n", "");
        for text in [KC.to_string(), no_list, no_context, "{{{ no".to_string()] {
            let both = parse_both(text.as_bytes(), p);
            let alone = (parse(text.as_bytes(), p), clusters(text.as_bytes(), p));
            assert_eq!(
                format!("{:?}", both.kubeconfig),
                format!("{:?}", alone.0),
                "{text}"
            );
            assert_eq!(format!("{:?}", both.clusters), format!("{:?}", alone.1));
        }
        let broken = parse_both(KC.replace("users:\n", "users: 5\nx:\n").as_bytes(), p);
        assert!(broken.kubeconfig.is_err() && broken.clusters.is_ok());
    }

    #[test]
    fn file_references_resolve_from_the_kubeconfig_dir() {
        let kc = KC.replace(
            "current-context: kubernetes-admin@kubernetes",
            "current-context: other@kubernetes",
        );
        let k = parse(kc.as_bytes(), Path::new("/etc/kubernetes/x.conf")).unwrap();
        match k.credential {
            ClientCredential::Files { cert, key } => {
                assert_eq!(cert, Path::new("/etc/kubernetes/other.crt"));
                assert_eq!(key, None);
            }
            _ => panic!("not files"),
        }
    }

    #[test]
    fn broken_kubeconfigs_say_what_is_wrong() {
        let nowhere = KC.replace(
            "current-context: kubernetes-admin@kubernetes",
            "current-context: gone",
        );
        let e = parse(nowhere.as_bytes(), Path::new("/a"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"gone\" names no context"), "{e}");
        let e = parse(b"{{{ not: yaml", Path::new("/a"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("YAML"), "{e}");
        let e = parse(b"kind: Config\n", Path::new("/a"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no current-context"), "{e}");
    }
}

#[cfg(test)]
mod no_key_in_errors {
    use super::*;

    /// A broken kubeconfig's error is logged: it must not quote the file (the key).
    #[test]
    fn a_yaml_error_quotes_nothing_of_the_file() {
        let kc = "apiVersion: v1\nusers:\n- name: a\n  user:\n    client-key-data: U0VDUkVUS0VZU0VDUkVUS0VZ\n    : : [\ncurrent-context: a\n";
        let p = Path::new("/etc/kubernetes/admin.conf");
        for e in [
            parse(kc.as_bytes(), p).err(),
            clusters(kc.as_bytes(), p).err(),
        ] {
            let e = e.expect("not YAML").to_string();
            assert!(!e.contains("U0VDUkVU"), "{e}");
        }
    }
}

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
    /// The value is another entry's, reached through a YAML alias (of the value or of
    /// the mapping holding it): replacing it would change that entry.
    #[error("{entry}: {field} is a YAML alias ({alias}) of another entry's value: renewing it in place would change that entry; edit it by hand (give this entry its own value)")]
    Aliased {
        entry: String,
        field: &'static str,
        // Boxed: the error travels inside the issue errors, kept small (clippy's
        // result_large_err).
        alias: Box<str>,
    },
    /// The value carries a YAML anchor that another entry's value is an alias of.
    #[error("{entry}: {field} carries a YAML anchor that {other} is an alias of: renewing it in place would change that entry too; edit it by hand (give each entry its own value)")]
    AnchorShared {
        entry: String,
        field: &'static str,
        other: Box<str>,
    },
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
/// A value that YAML anchors tie to another entry's is refused: the splice would change
/// both ([`KubeconfigError::Aliased`], [`KubeconfigError::AnchorShared`]).
pub fn replace_embedded(
    bytes: &[u8],
    node_path: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Vec<u8>, KubeconfigError> {
    let raw: RawKubeconfig = from_yaml(bytes)?;
    // Another entry may be tied to this user's values from the clusters too; a clusters
    // list that does not read holds nothing kubectl could use.
    let clusters = from_yaml::<RawClusters>(bytes)
        .ok()
        .and_then(|c| c.clusters);
    let values = base64_values(raw.users.as_deref(), clusters.as_deref());
    let kc = credential_of(raw, node_path)?;
    let entry = format!("user {:?}", kc.user);
    for field in ["client-certificate-data", "client-key-data"] {
        own_value(bytes, &values, &entry, field)?;
    }
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
    let raw: RawClusters = from_yaml(bytes)?;
    // Users that do not read hold nothing kubectl could use.
    let users = from_yaml::<RawKubeconfig>(bytes).ok().and_then(|k| k.users);
    let values = base64_values(users.as_deref(), raw.clusters.as_deref());
    let entries = clusters_of(raw, node_path)?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut edits = Vec::new();
    for (name, pem) in new {
        own_value(
            bytes,
            &values,
            &format!("cluster {name:?}"),
            "certificate-authority-data",
        )?;
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

/// Where a value is defined (for an alias: where its anchor is).
fn span_of<T>(s: &Spanned<T>) -> Option<ByteSpan> {
    byte_span(&s.defined)
}

fn byte_span(l: &serde_saphyr::Location) -> Option<ByteSpan> {
    let sp = l.span();
    Some(ByteSpan {
        start: usize::try_from(sp.byte_offset()?).ok()?,
        len: usize::try_from(sp.byte_len()?).ok()?,
    })
}

/// One base64 value of a kubeconfig's users and clusters: whose, which field, where it
/// is written (`referenced`: an alias's own place) and where its bytes are (`defined`).
struct Base64Value {
    entry: String,
    field: &'static str,
    referenced: Option<ByteSpan>,
    defined: Option<ByteSpan>,
}

impl Base64Value {
    fn of(entry: String, field: &'static str, v: &Spanned<String>) -> Self {
        Base64Value {
            entry,
            field,
            referenced: byte_span(&v.referenced),
            defined: byte_span(&v.defined),
        }
    }

    /// Reached through an alias: written elsewhere than its bytes are.
    fn aliased(&self) -> bool {
        self.referenced != self.defined
    }
}

/// Every base64 value of the users and clusters, for [`own_value`].
fn base64_values(
    users: Option<&[NamedUser]>,
    clusters: Option<&[NamedCluster]>,
) -> Vec<Base64Value> {
    let mut out = Vec::new();
    for u in users.unwrap_or_default() {
        let Some(a) = &u.user else { continue };
        for (field, v) in [
            ("client-certificate-data", &a.client_certificate_data),
            ("client-key-data", &a.client_key_data),
        ] {
            if let Some(v) = v {
                out.push(Base64Value::of(format!("user {:?}", u.name), field, v));
            }
        }
    }
    for c in clusters.unwrap_or_default() {
        let data = c
            .cluster
            .as_ref()
            .and_then(|c| c.certificate_authority_data.as_ref());
        if let Some(v) = data {
            let entry = format!("cluster {:?}", c.name);
            out.push(Base64Value::of(entry, "certificate-authority-data", v));
        }
    }
    out
}

/// Whether `entry`'s `field` (if it has one) is its own, so that replacing its bytes
/// changes it alone: not an alias of another entry's value, and no alias of another
/// entry's refers to it. YAML anchors are rare in kubeconfigs (kubeadm and kubectl
/// write none); an edit in place cannot untie them, so the operator is asked to.
fn own_value(
    bytes: &[u8],
    values: &[Base64Value],
    entry: &str,
    field: &'static str,
) -> Result<(), KubeconfigError> {
    let Some(v) = values.iter().find(|v| v.entry == entry && v.field == field) else {
        return Ok(());
    };
    if v.aliased() {
        // The alias's own text (`*name`): a name, not the value.
        let alias = v
            .referenced
            .and_then(|r| bytes.get(r.start..r.start + r.len))
            .and_then(|t| std::str::from_utf8(t).ok())
            .filter(|t| t.starts_with('*'))
            .unwrap_or("an alias");
        return Err(KubeconfigError::Aliased {
            entry: entry.to_string(),
            field,
            alias: alias.into(),
        });
    }
    let tied = values
        .iter()
        .find(|w| w.aliased() && w.defined.is_some() && w.defined == v.defined);
    if let Some(w) = tied {
        return Err(KubeconfigError::AnchorShared {
            entry: entry.to_string(),
            field,
            other: format!("{}'s {}", w.entry, w.field).into(),
        });
    }
    Ok(())
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
#[path = "kubeconfig_tests.rs"]
mod tests;

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

//! Why a CA command cannot go ahead: each names the CA, the file and what is wrong.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::inventory::anchors::CopyError;
use crate::node::NodeError;
use crate::pki::PkiError;
use crate::rollout::PassError;
use crate::timefmt::rfc3339;
use crate::write::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// A usage error (exit 2): not a CA name at all.
    #[error(
        "{name:?} is not a CA name; valid names: ca, front-proxy-ca, etcd/ca (kubeadm's etcd-ca)"
    )]
    UnknownName { name: String },
    /// A usage error (exit 2): a CA this node does not have.
    #[error("CA {name} is not on this node (it has: {has})")]
    NotOnNode { name: String, has: String },
    #[error("CA {name}: no key at {} on this node (an external CA, or a worker): it cannot be renewed here; renew it where its key is, then `cert-rotator ca export` it and `ca import` it here", key.display())]
    NoKey { name: String, key: PathBuf },
    #[error("{0}")]
    Copy(Box<CopyError>),
    #[error("CA {name}: {source}")]
    NodeCopy {
        name: String,
        #[source]
        source: Box<CopyError>,
    },
    #[error("{}: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: PkiError,
    },
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("{}: the key does not match the first certificate of {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{}: the first certificate is not self-signed (an intermediate CA, signed by {issuer}): renew it where its parent CA is", path.display())]
    NotSelfSigned { path: PathBuf, issuer: String },
    #[error("{}: building the renewed CA certificate: {source}", path.display())]
    Build {
        path: PathBuf,
        #[source]
        source: PkiError,
    },
    /// A safety check of the re-issue: it must keep what leaves are verified against.
    #[error("{}: the renewed certificate would change its {what}; refusing", path.display())]
    Changed { path: PathBuf, what: &'static str },
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("{component}: {source}")]
    Restart {
        component: String,
        #[source]
        source: Box<PassError>,
    },

    // ca export
    #[error("{}: already exists; `ca export` never overwrites a file (choose a new name)", file.display())]
    ExportExists { file: PathBuf },
    #[error("{}: cannot write: {source}", file.display())]
    ExportWrite {
        file: PathBuf,
        #[source]
        source: NodeError,
    },

    // ca import
    #[error("{}: cannot read: {source}", file.display())]
    ImportRead {
        file: PathBuf,
        #[source]
        source: NodeError,
    },
    #[error("{}: {source}", file.display())]
    ImportPem {
        file: PathBuf,
        #[source]
        source: PkiError,
    },
    #[error("{}: no CERTIFICATE block", file.display())]
    ImportNoCertificate { file: PathBuf },
    #[error("{}: {subject} is not a CA certificate", file.display())]
    ImportNotCa { file: PathBuf, subject: String },
    #[error("{}: does not contain a CA this node trusts (subjects {subjects}; this node trusts {cas}); nothing changed", file.display())]
    ImportBundleNoShared {
        file: PathBuf,
        subjects: String,
        cas: String,
    },
    #[error("{}: shares certificates with several of this node's CAs ({names}): one file holds one CA's bundle; nothing changed", file.display())]
    ImportBundleAmbiguous { file: PathBuf, names: String },
    #[error("{}: the CA certificate {subject} expired {}; nothing changed", file.display(), rfc3339(*not_after))]
    ImportExpired {
        file: PathBuf,
        subject: String,
        not_after: OffsetDateTime,
    },
    #[error("{}: holds the CA {subject} (same subject and key) twice; nothing changed", file.display())]
    ImportDuplicate { file: PathBuf, subject: String },
    #[error("{}: {subject} has the subject of CA {name} ({}) but a different public key: it is another CA, not a renewal of the one this node trusts; nothing changed", file.display(), path.display())]
    ImportDifferentKey {
        file: PathBuf,
        subject: String,
        name: String,
        path: PathBuf,
    },
    #[error("{}: has the public key of CA {name} ({}) but subject {theirs}, not {ours}; nothing changed", file.display(), path.display())]
    ImportDifferentSubject {
        file: PathBuf,
        theirs: String,
        ours: String,
        name: String,
        path: PathBuf,
    },
    #[error("{}: {subject} is none of this node's CAs ({cas}); nothing changed", file.display())]
    ImportNoMatch {
        file: PathBuf,
        subject: String,
        cas: String,
    },
    #[error("{}: {subject} is not validly self-signed (its signature does not verify with its own key)", file.display())]
    ImportBadSignature { file: PathBuf, subject: String },
    #[error("{}: the private key in it does not match its certificate", file.display())]
    ImportKeyMismatch { file: PathBuf },
    #[error("{}: its certificate ends {}, before the one CA {name} has here ({}): refusing to go back; nothing changed", file.display(), rfc3339(*theirs), rfc3339(*ours))]
    ImportOlder {
        file: PathBuf,
        name: String,
        theirs: OffsetDateTime,
        ours: OffsetDateTime,
    },
    #[error("{}: {subject} is a CA whose keyUsage does not include keyCertSign: no client accepts a certificate it signed (openssl: \"key usage does not include certificate signing\"); nothing changed", file.display())]
    ImportNoKeyCertSign { file: PathBuf, subject: String },
    #[error("{}: the CA certificate {subject} is not valid yet (notBefore {}; was it made on a node whose clock runs ahead?): clients reject it until then; nothing changed", file.display(), rfc3339(*not_before))]
    ImportNotYetValid {
        file: PathBuf,
        subject: String,
        not_before: OffsetDateTime,
    },
    #[error("{}: holds {count} certificates; a CA file to import holds at most {max} (a CA during a rotation holds 2); nothing changed", file.display())]
    ImportTooMany {
        file: PathBuf,
        count: usize,
        max: usize,
    },
    #[error("{}: its first certificate {subject} is not the one CA {name}'s key {} signs with: on a node with the CA key the first certificate of the CA file must be (kubeadm pairs them; a rotation is `ca rotate {name}`); nothing changed", file.display(), key.display())]
    ImportKeyNotFirst {
        file: PathBuf,
        name: String,
        subject: String,
        key: PathBuf,
    },
    #[error("{}: a bundle for CA {name} on a node with its key and controller-manager ({}): {why}; follow the rotation with `ca rotate {name}` (its `trust` moves the signer to a single-certificate file); nothing changed", file.display(), manifest.display())]
    ImportSignerFlag {
        file: PathBuf,
        name: String,
        manifest: PathBuf,
        why: String,
    },
    #[error("{}: the rotation journal of CA {name} cannot be used (`cert-rotator ca status` says why): nothing changes CA {name} until it is repaired with `ca rotate {name} abort --force-from-backups`; nothing changed", file.display())]
    ImportJournalBroken { file: PathBuf, name: String },
    #[error("{}: CA {name} is being rotated here (phase {phase}): this node holds the key and a rotation journal, so it follows the rotation with `ca rotate {name}`, not `ca import`; nothing changed", file.display())]
    ImportDuringRotation {
        file: PathBuf,
        name: String,
        phase: &'static str,
    },
}

impl From<CopyError> for AuthorityError {
    fn from(e: CopyError) -> Self {
        AuthorityError::Copy(Box::new(e))
    }
}

impl AuthorityError {
    /// Usage errors exit 2, the rest 1.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            AuthorityError::UnknownName { .. } | AuthorityError::NotOnNode { .. }
        )
    }
}

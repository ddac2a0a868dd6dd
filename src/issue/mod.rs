//! Issuing: from a planned target (as the inventory read it) to the exact set of file
//! changes that renew it. Reads nothing: the key, the kubeconfig's bytes and the
//! kubelet's symlink come with the plan. The CA is a trait object; writing is the
//! `write` module's job. kubelet.crt issued by the cluster (`[kubelet] serving`) is
//! issued for the identity serving.rs derives, by the CA of its route.

mod serving;

pub use serving::ServingError;

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::ca::authorities::{Authorities, LoadError};
use crate::ca::{CaError, CertificateAuthority, SigningRequest};
use crate::config::Settings;
use crate::inventory::{Reading, Signer, Target};
use crate::model::TargetKind;
use crate::model::{FileChange, NewContent};
use crate::node::kubeconfig::{self, ClientCredential, KubeconfigError};
use crate::pki::{self, encode_pem, x509, CertFacts, PkiError, PrivateKey};
use crate::plan::{CaRoute, PlannedTarget};

/// How far not_before is set back, for nodes whose clocks run a little behind.
pub const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Ca(Box<CaError>),
    #[error("{target}: {message}")]
    Refused { target: String, message: String },
    /// Making a key or a certificate failed.
    #[error("{target}: {source}")]
    Pki {
        target: String,
        #[source]
        source: PkiError,
    },
    #[error("{target}: {}: no key file to renew with", cert_file.display())]
    NoKeyFile { target: String, cert_file: PathBuf },
    /// The kubeconfig (`path`, at the end of its symlinks) cannot be edited.
    #[error("{target}: {}: {source}", path.display())]
    Kubeconfig {
        target: String,
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("{target}: {}: user {user:?} authenticates with {method}: no client certificate to renew", path.display())]
    NotACertificate {
        target: String,
        path: PathBuf,
        user: String,
        method: &'static str,
    },
    #[error("{target}: {}: the bundled CA that signed kubelet.crt is not in the file", cert_file.display())]
    BundledCaMissing { target: String, cert_file: PathBuf },
    /// kubelet.crt as `[kubelet] serving` says: its identity or the certificates API.
    #[error("{0}")]
    Serving(Box<ServingError>),
}

impl From<CaError> for IssueError {
    fn from(e: CaError) -> Self {
        IssueError::Ca(Box::new(e))
    }
}

#[derive(Clone, Debug)]
pub struct RenewOptions {
    /// Lifetime of the new certificate in days; default: the old certificate's lifetime.
    pub days: Option<i64>,
    /// Keep the current key (certmonger and k3s do); default: a new key of the same
    /// algorithm and size, as kubeadm and the kubelet do.
    pub reuse_key: bool,
    pub now: OffsetDateTime,
    /// Sign a kubelet.crt that its own throwaway CA signed with the given CA instead.
    pub switch_issuer: bool,
    /// Issue kubelet.crt for this identity (`[kubelet] serving`) rather than the old
    /// certificate's.
    pub serving: Option<crate::inventory::serving::ServingIdentity>,
}

/// A renewal ready to be written.
#[derive(Debug)]
pub struct Prepared {
    pub target: String,
    pub changes: Vec<FileChange>,
    pub new_cert: CertFacts,
    /// Loud conditions the operator must hear of (a validity capped by its CA).
    pub warnings: Vec<String>,
}

/// Prepares the renewal of one target. `ca` signs it; `None` is for a kubelet.crt that
/// is self-signed by its own throwaway CA, which is renewed the same way.
pub fn prepare(
    target: &Target,
    reading: &Reading,
    ca: Option<&dyn CertificateAuthority>,
    opts: &RenewOptions,
) -> Result<Prepared, IssueError> {
    let refuse = |message: String| IssueError::Refused {
        target: target.name.clone(),
        message,
    };
    let pki_error = |source| IssueError::Pki {
        target: target.name.clone(),
        source,
    };
    if reading.cert.is_ca {
        return Err(refuse(format!(
            "{} is a CA certificate; cert-rotator renews leaves, not CAs",
            reading.cert_file.display()
        )));
    }
    let Some(old_key) = reading.key.as_deref() else {
        return Err(refuse(format!(
            "{}: no private key to renew with",
            reading.cert_file.display()
        )));
    };
    let new_key;
    let key: &PrivateKey = if opts.reuse_key {
        old_key
    } else {
        new_key =
            PrivateKey::generate(reading.key_algorithm, reading.key_encoding).map_err(pki_error)?;
        &new_key
    };
    // The key is about to be installed with the new certificate (and, for a cfssl CA, to
    // sign the request): the full check now, before anything is signed. The inventory
    // only compared its public half with the certificate.
    key.check().map_err(pki_error)?;
    let lifetime = match opts.days {
        Some(d) if d > 0 => Duration::days(d),
        Some(d) => return Err(refuse(format!("--days {d}: must be at least 1"))),
        None => reading.cert.lifetime(),
    };
    // A certificate whose notAfter is not after its notBefore has no lifetime to copy:
    // renewing it would write a certificate born expired.
    if lifetime <= Duration::ZERO {
        return Err(refuse(format!(
            "{}: notAfter {} is not after notBefore {}: no lifetime to renew with (give --days)",
            reading.cert_file.display(),
            crate::timefmt::rfc3339(reading.cert.not_after),
            crate::timefmt::rfc3339(reading.cert.not_before)
        )));
    }
    let not_before = opts.now - BACKDATE;
    let mut not_after = not_before + lifetime;
    let mut warnings = Vec::new();
    let ca_cert = ca.and_then(|c| c.certificate());
    if let Some(cac) = ca_cert {
        if cac.not_after < not_after {
            warnings.push(format!(
                "{}: validity capped at its CA's end {} (CA {}): renew the CA soon, every leaf it signs ends then",
                target.name,
                crate::timefmt::rfc3339(cac.not_after),
                cac.subject
            ));
            not_after = cac.not_after;
        }
    }
    // kubelet.crt for the identity `[kubelet] serving` wants: the CA issues that.
    let template = match &opts.serving {
        Some(id) => Some(serving::template(
            &target.name,
            id,
            key,
            not_before,
            not_after,
            ca_cert,
        )?),
        None => None,
    };
    let (leaf_der, extra_certs) = match ca {
        Some(ca) => {
            let signed = ca.sign(&SigningRequest {
                target: &target.name,
                old: template.as_ref().unwrap_or(&reading.cert),
                key,
                not_before,
                not_after,
                switch_issuer: opts.switch_issuer,
                now: opts.now,
            })?;
            warnings.extend(signed.warnings);
            let der = signed.der;
            // Intermediates that followed the leaf stay; a throwaway CA left behind does not.
            let chain = if opts.switch_issuer || template.is_some() {
                Vec::new()
            } else {
                reading.chain.iter().map(|c| c.der.clone()).collect()
            };
            (der, chain)
        }
        None => {
            if reading.signer != Signer::Bundled || template.is_some() {
                return Err(refuse(format!(
                    "signed by {} and no CA to renew it with",
                    reading.signer.label()
                )));
            }
            renew_self_signed_bundle(&target.name, reading, key, not_before, not_after)?
        }
    };
    let new_cert =
        CertFacts::from_der(&leaf_der).map_err(|e| refuse(format!("new certificate: {e}")))?;
    if !(new_cert.not_before <= opts.now && opts.now < new_cert.not_after) {
        return Err(refuse(format!(
            "{}: the new certificate would not be valid now (valid {} to {}); nothing written",
            reading.cert_file.display(),
            crate::timefmt::rfc3339(new_cert.not_before),
            crate::timefmt::rfc3339(new_cert.not_after)
        )));
    }
    if !key.matches(&new_cert) {
        return Err(refuse(
            "the CA returned a certificate for another key".into(),
        ));
    }
    if let Some(cac) = ca_cert {
        if !new_cert.is_signed_by(cac) {
            return Err(refuse(
                "the new certificate does not verify against its CA".into(),
            ));
        }
    }
    let mut leaf_pem = encode_pem("CERTIFICATE", &leaf_der);
    for c in &extra_certs {
        leaf_pem.push_str(&encode_pem("CERTIFICATE", c));
    }
    let key_pem = key.to_pem().map_err(pki_error)?;
    let changes = file_changes(target, reading, leaf_pem, &key_pem, opts)?;
    Ok(Prepared {
        target: target.name.clone(),
        changes,
        new_cert,
        warnings,
    })
}

/// The files a renewal writes, by kind of target.
fn file_changes(
    target: &Target,
    reading: &Reading,
    cert_pem: String,
    key_pem: &str,
    opts: &RenewOptions,
) -> Result<Vec<FileChange>, IssueError> {
    let pair = |cert_file: &Path, key_file: Option<&Path>| {
        let mut v = Vec::new();
        match key_file {
            Some(k) if k != cert_file => {
                v.push(FileChange::file(
                    cert_file,
                    cert_pem.clone().into_bytes(),
                    0o644,
                    false,
                ));
                if !opts.reuse_key {
                    v.push(FileChange::file(
                        k,
                        key_pem.as_bytes().to_vec(),
                        0o600,
                        true,
                    ));
                }
            }
            // Certificate and key in one file (kubelet client style).
            _ => {
                let both = format!("{cert_pem}{key_pem}");
                v.push(FileChange::file(cert_file, both.into_bytes(), 0o600, true));
            }
        }
        v
    };
    Ok(match target.kind {
        TargetKind::Certificate | TargetKind::KubeletServing => {
            if reading.key_file.is_none() {
                return Err(IssueError::NoKeyFile {
                    target: target.name.clone(),
                    cert_file: reading.cert_file.clone(),
                });
            }
            pair(&reading.cert_file, reading.key_file.as_deref())
        }
        TargetKind::KubeletClient | TargetKind::KubeletServer => {
            kubelet_client_changes(target, &cert_pem, key_pem, opts.now)
        }
        TargetKind::Kubeconfig => {
            let bytes = reading.source.as_slice();
            // Embedded: the inventory read the certificate from the kubeconfig itself, at
            // the end of its symlinks (/root/.kube/config -> admin.conf stays a link).
            let file = &reading.cert_file;
            let unusable = |source| IssueError::Kubeconfig {
                target: target.name.clone(),
                path: file.clone(),
                source,
            };
            let kc = kubeconfig::parse(bytes, &target.path).map_err(unusable)?;
            match kc.credential {
                ClientCredential::Embedded { .. } => {
                    let new = kubeconfig::replace_embedded(
                        bytes,
                        &target.path,
                        cert_pem.as_bytes(),
                        key_pem.as_bytes(),
                    )
                    .map_err(unusable)?;
                    vec![FileChange::file(file, new, 0o600, true)]
                }
                ClientCredential::Files { .. } => {
                    // A kubeconfig that references files is renewed through those files;
                    // the kubelet's symlinked client file keeps its symlink scheme.
                    if let Some(link) = &reading.kubelet_link {
                        let t = Target {
                            path: link.clone(),
                            ..target.clone()
                        };
                        kubelet_client_changes(&t, &cert_pem, key_pem, opts.now)
                    } else {
                        pair(&reading.cert_file, reading.key_file.as_deref())
                    }
                }
                ClientCredential::NotACertificate { method } => {
                    return Err(IssueError::NotACertificate {
                        target: target.name.clone(),
                        path: file.clone(),
                        user: kc.user,
                        method,
                    })
                }
            }
        }
    })
}

/// client-go's certificate store scheme: a new kubelet-client-<timestamp>.pem (leaf,
/// then key, 0600) and the symlink kubelet-client-current.pem swapped to it through
/// kubelet-client-updated.pem. The old file stays, as the kubelet leaves it. The
/// serving pair of `serverTLSBootstrap` is stored the same way under the prefix
/// `kubelet-server` (the symlink's name without `-current.pem`).
fn kubelet_client_changes(
    target: &Target,
    cert_pem: &str,
    key_pem: &str,
    now: OffsetDateTime,
) -> Vec<FileChange> {
    let dir = target.path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let stamp = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]-[hour]-[minute]-[second]"
        ))
        .unwrap_or_default();
    let prefix = target
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix("-current.pem"))
        .unwrap_or("kubelet-client");
    let file = dir.join(format!("{prefix}-{stamp}.pem"));
    vec![
        FileChange::file(
            &file,
            format!("{cert_pem}{key_pem}").into_bytes(),
            0o600,
            true,
        ),
        FileChange {
            content: NewContent::Symlink(file.clone()),
            staged_name: Some(format!("{prefix}-updated.pem")),
            ..FileChange::file(&target.path, Vec::new(), 0o777, false)
        },
    ]
}

/// kubelet.crt self-signed by its throwaway CA: a new throwaway CA key and certificate
/// (same subject, new validity) and the leaf signed by it. Returns (leaf, [CA]).
fn renew_self_signed_bundle(
    target: &str,
    reading: &Reading,
    leaf_key: &PrivateKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(Vec<u8>, Vec<Vec<u8>>), IssueError> {
    let pki_error = |source| IssueError::Pki {
        target: target.to_string(),
        source,
    };
    let Some(old_ca) = reading.chain.iter().find(|c| reading.cert.is_signed_by(c)) else {
        return Err(IssueError::BundledCaMissing {
            target: target.to_string(),
            cert_file: reading.cert_file.clone(),
        });
    };
    let ca_key = PrivateKey::generate(old_ca_algorithm(old_ca), pki::KeyEncoding::Pkcs1)
        .map_err(pki_error)?;
    let ca_der = x509::resign(
        &x509::Reissue {
            old_der: &old_ca.der,
            new_key: &ca_key,
            not_before,
            not_after,
        },
        None,
    )
    .map_err(pki_error)?;
    let ca_facts = CertFacts::from_der(&ca_der).map_err(pki_error)?;
    let leaf = x509::resign(
        &x509::Reissue {
            old_der: &reading.cert.der,
            new_key: leaf_key,
            not_before,
            not_after,
        },
        Some(&x509::Issuer {
            cert: &ca_facts,
            key: &ca_key,
        }),
    )
    .map_err(pki_error)?;
    Ok((leaf, vec![ca_der]))
}

fn old_ca_algorithm(ca: &CertFacts) -> pki::KeyAlgorithm {
    // The kubelet makes RSA-2048 throwaway CAs; keep the size when it is another RSA size.
    let bits = pkcs1::RsaPublicKey::try_from(ca.public_key.as_slice())
        .map(|k| pki::uint_bits(k.modulus.as_bytes()))
        .unwrap_or(2048);
    match bits {
        2048 | 3072 | 4096 => pki::KeyAlgorithm::Rsa { bits },
        _ => pki::KeyAlgorithm::Rsa { bits: 2048 },
    }
}

/// Why a planned target could not be issued: its route's CA could not be loaded, or
/// the renewal itself failed. Both already name their target or CA.
#[derive(Debug, thiserror::Error)]
pub enum PlannedError {
    #[error("{0}")]
    Ca(#[source] LoadError),
    #[error("{0}")]
    Issue(#[source] IssueError),
}

/// Prepares the renewal of one planned target with the CA of its route: the one
/// issuing path of the pass and of a CA rotation's `issue`. `days`/`reuse_key` are the
/// operator's overrides; without `days`, a remote CA's profile sets the lifetime, so
/// the renewal expects what the target's profile gives.
pub fn prepare_planned(
    t: &PlannedTarget,
    cas: &mut Authorities<'_>,
    settings: &Settings,
    days: Option<i64>,
    reuse_key: bool,
    now: OffsetDateTime,
) -> Result<Prepared, PlannedError> {
    let (identity, api) = serving::resolve(cas.root(), t, settings)
        .map_err(|e| PlannedError::Issue(IssueError::Serving(Box::new(e))))?;
    let mut opts = RenewOptions {
        days,
        reuse_key,
        now,
        switch_issuer: t.route.switches_issuer(&t.reading.signer) || identity.is_some(),
        serving: identity,
    };
    if let (CaRoute::Remote { .. }, Some(remote), None) = (&t.route, &settings.ca.remote, days) {
        opts.days = remote.days_for(&t.name);
    }
    let ca = match (&t.route, &api) {
        (CaRoute::KubeletCsr, Some(api)) => Some(api as &dyn CertificateAuthority),
        _ => cas.signer(&t.route).map_err(PlannedError::Ca)?,
    };
    prepare(&t.target, &t.reading, ca, &opts).map_err(PlannedError::Issue)
}

#[cfg(test)]
mod tests {
    use der::{Decode, Encode};

    use super::*;
    use crate::ca::local::LocalCa;
    use crate::inventory::{self, TargetState};

    /// A leaf key whose public half is its certificate's but whose private half does not
    /// fit (RSA: another private exponent): `status` lists the certificate, and a renewal
    /// that would install that key is refused before anything is signed.
    #[test]
    fn a_key_that_fails_the_full_check_is_never_installed() {
        let (dir, root) = crate::fixture::temp_control_plane();
        let path = dir.path().join("etc/kubernetes/pki/apiserver.key");
        let pem = std::fs::read(&path).unwrap();
        let der = pki::parse_pem(&pem).unwrap().remove(0).der;
        let k = pkcs1::RsaPrivateKey::from_der(&der).unwrap();
        let mut d = k.private_exponent.as_bytes().to_vec();
        let last = d.len() - 1;
        d[last] ^= 0x02;
        let bad = pkcs1::RsaPrivateKey {
            private_exponent: pkcs1::UintRef::new(&d).unwrap(),
            ..k
        };
        std::fs::write(&path, encode_pem("RSA PRIVATE KEY", &bad.to_der().unwrap())).unwrap();

        let layout = inventory::layout(&crate::config::Settings::default(), &root);
        let inv = inventory::read(&layout, &root);
        let o = inv
            .certificates
            .iter()
            .find(|o| o.target.name == "apiserver")
            .unwrap();
        let TargetState::Read(reading) = &o.state else {
            panic!("apiserver: {:?}", o.state);
        };
        let ca = LocalCa::load(
            &root,
            "ca",
            Path::new("/etc/kubernetes/pki/ca.crt"),
            Path::new("/etc/kubernetes/pki/ca.key"),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let opts = |reuse_key| RenewOptions {
            days: None,
            reuse_key,
            now: OffsetDateTime::now_utc(),
            switch_issuer: false,
            serving: None,
        };
        let e = prepare(&o.target, reading, Some(&ca), &opts(true)).unwrap_err();
        assert!(
            matches!(
                e,
                IssueError::Pki {
                    source: PkiError::KeyRejected { .. },
                    ..
                }
            ),
            "{e}"
        );
        // A new key leaves the bad one behind, unused.
        prepare(&o.target, reading, Some(&ca), &opts(false)).unwrap();
    }
}

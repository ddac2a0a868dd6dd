//! The new CA of a rotation and its cross certificate: generated like the old one
//! (algorithm, size, lifetime; subject with a unique CN) or given by the operator and
//! checked; the cross certificate X (the new CA's subject and key, signed by the old
//! key) lets a client that trusts only the old CA verify leaves of the new one.

use std::path::{Path, PathBuf};

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, KeyUsage, KeyUsages};
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::node::NodeRoot;
use crate::pki::x509::{random_serial, validity, CertTemplate, OID_CN};
use crate::pki::{self, encode_pem, CertFacts, PkiError, PrivateKey};

/// Why a new CA cannot be staged. Each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{}: cannot read: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Parse { path: PathBuf, source: PkiError },
    #[error("{}: holds {count} certificates: give the new CA certificate alone", path.display())]
    NotOne { path: PathBuf, count: usize },
    #[error("{}: is not a CA certificate (basicConstraints CA:FALSE or absent)", path.display())]
    NotCa { path: PathBuf },
    #[error("{}: the CA certificate may not sign certificates (keyUsage without keyCertSign)", path.display())]
    NoKeyCertSign { path: PathBuf },
    #[error("{}: is not valid now (valid {not_before} to {not_after})", path.display())]
    NotValidNow {
        path: PathBuf,
        not_before: String,
        not_after: String,
    },
    #[error("{}: ends {new_end}, not after the CA it replaces (ends {old_end}): the new CA must outlive the old one, or the rotation would end on an earlier cliff", path.display())]
    EndsTooSoon {
        path: PathBuf,
        new_end: String,
        old_end: String,
    },
    #[error("{}: the key does not match the new CA certificate {}", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("{}: is the current CA (same key): a same-key renewal is `ca renew`, not a rotation", path.display())]
    SameKey { path: PathBuf },
    #[error("{}: has the current CA's subject {subject}: a new CA needs its own (e.g. CN=<old CN>@<unix time>) so that every client tells the two apart", path.display())]
    SameSubject { path: PathBuf, subject: String },
    #[error("{}: the old CA has no subject key identifier: the cross certificate could not name its authority key", path.display())]
    NoSubjectKeyId { path: PathBuf },
    #[error("building the {what}: {source}")]
    Build {
        what: &'static str,
        source: PkiError,
    },
}

/// A new CA with its key.
pub struct NewCa {
    pub cert: CertFacts,
    pub key: PrivateKey,
}

fn build(what: &'static str) -> impl Fn(PkiError) -> StageError {
    move |source| StageError::Build { what, source }
}

/// The old subject with its CN made unique: `<old CN>@<unix time>` (library-go and k3s
/// name their rotated signers so). Strings keep their printable/UTF-8 choice.
fn new_subject(
    old: &CertFacts,
    now: OffsetDateTime,
) -> Result<Vec<Vec<(ObjectIdentifier, String)>>, StageError> {
    let bad = |x: der::Error| StageError::Build {
        what: "new CA subject",
        source: PkiError::Encoding {
            what: "old CA subject",
            source: x,
        },
    };
    let name = Name::from_der(&old.raw_subject).map_err(bad)?;
    let mut rdns = Vec::new();
    let mut has_cn = false;
    for rdn in name.0.iter() {
        let mut atvs = Vec::new();
        for atv in rdn.0.iter() {
            let value = atv
                .value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<der::asn1::PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .map_err(bad)?;
            if atv.oid == OID_CN {
                has_cn = true;
                atvs.push((atv.oid, format!("{value}@{}", now.unix_timestamp())));
            } else {
                atvs.push((atv.oid, value));
            }
        }
        rdns.push(atvs);
    }
    if !has_cn {
        rdns.push(vec![(OID_CN, format!("ca@{}", now.unix_timestamp()))]);
    }
    Ok(rdns)
}

/// A new CA like `old` (whose key is `old_key`): the same algorithm, size and
/// encoding, lifetime and subject but for the unique CN; a random serial; kubeadm's CA
/// profile.
pub fn generate(
    old: &CertFacts,
    old_key: &PrivateKey,
    now: OffsetDateTime,
) -> Result<NewCa, StageError> {
    let key =
        PrivateKey::generate(old_key.algorithm, old_key.encoding).map_err(build("new CA key"))?;
    let not_before = now - crate::issue::BACKDATE;
    // The old CA's lifetime from now, and never ending before the CA it replaces (an
    // old CA dated in the future would otherwise outlive its successor).
    let not_after = (not_before + old.lifetime()).max(old.not_after + time::Duration::DAY);
    let der = CertTemplate::ca(new_subject(old, now)?, not_before, not_after)
        .issue(&key, None)
        .map_err(build("new CA certificate"))?;
    let cert = CertFacts::from_der(&der).map_err(build("new CA certificate"))?;
    Ok(NewCa { cert, key })
}

/// Whether a certificate may sign certificates: keyUsage present with keyCertSign.
fn has_key_cert_sign(der: &[u8]) -> bool {
    let Ok(c) = Certificate::from_der(der) else {
        return false;
    };
    c.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|x| x.extn_id == der::oid::db::rfc5280::ID_CE_KEY_USAGE)
        .and_then(|x| KeyUsage::from_der(x.extn_value.as_bytes()).ok())
        .is_some_and(|ku| ku.0.contains(KeyUsages::KeyCertSign))
}

/// A CA the operator gives (`--new-cert`, `--new-key`, node paths): one certificate, a
/// CA that may sign certificates, valid now, its key beside it, neither the old CA's
/// key nor its subject.
pub fn load_given(
    root: &NodeRoot,
    cert_path: &Path,
    key_path: &Path,
    old: &CertFacts,
    now: OffsetDateTime,
) -> Result<NewCa, StageError> {
    let read = |p: &Path| {
        root.read_file(p)
            .map(|(_, b)| b)
            .map_err(|e| StageError::Read {
                path: p.to_path_buf(),
                reason: e.problem.to_string(),
            })
    };
    let parse = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StageError::Parse { path: p, source }
    };
    let bytes = read(cert_path)?;
    let blocks = pki::parse_pem(&bytes).map_err(parse(cert_path))?;
    let mut certs = pki::certificates(&blocks).map_err(parse(cert_path))?;
    if certs.len() != 1 {
        return Err(StageError::NotOne {
            path: cert_path.to_path_buf(),
            count: certs.len(),
        });
    }
    let cert = certs.remove(0);
    let here = cert_path.to_path_buf();
    if !cert.is_ca {
        return Err(StageError::NotCa { path: here });
    }
    if !has_key_cert_sign(&cert.der) {
        return Err(StageError::NoKeyCertSign { path: here });
    }
    if !(cert.not_before <= now && now < cert.not_after) {
        return Err(StageError::NotValidNow {
            path: here,
            not_before: crate::timefmt::rfc3339(cert.not_before),
            not_after: crate::timefmt::rfc3339(cert.not_after),
        });
    }
    let key_bytes = zeroize::Zeroizing::new(read(key_path)?);
    let key = PrivateKey::from_pem(&key_bytes).map_err(parse(key_path))?;
    // The staged key will sign and be installed: checked fully before it is accepted.
    key.check().map_err(parse(key_path))?;
    if !key.matches(&cert) {
        return Err(StageError::KeyMismatch {
            key: key_path.to_path_buf(),
            cert: here,
        });
    }
    if cert.public_key == old.public_key {
        return Err(StageError::SameKey { path: here });
    }
    if cert.raw_subject == old.raw_subject {
        return Err(StageError::SameSubject {
            path: here,
            subject: cert.subject.clone(),
        });
    }
    if cert.not_after <= old.not_after {
        return Err(StageError::EndsTooSoon {
            path: here,
            new_end: crate::timefmt::rfc3339(cert.not_after),
            old_end: crate::timefmt::rfc3339(old.not_after),
        });
    }
    Ok(NewCa { cert, key })
}

/// The cross certificate X: the new CA's TBSCertificate (subject, key, extensions)
/// issued by the old CA: a fresh serial (NSS refuses a reused issuer and serial), the
/// old CA's subject as issuer, AKI = the old CA's SKI, NotAfter no later than the old
/// CA's (a chain is never valid longer than its root anyway).
pub fn cross_sign(
    new: &CertFacts,
    old: &CertFacts,
    old_key: &PrivateKey,
    old_path: &Path,
) -> Result<CertFacts, StageError> {
    let enc = |what: &'static str| {
        move |source: der::Error| StageError::Build {
            what: "cross certificate",
            source: PkiError::Encoding { what, source },
        }
    };
    let Some(old_skid) = old.subject_key_id.clone() else {
        return Err(StageError::NoSubjectKeyId {
            path: old_path.to_path_buf(),
        });
    };
    let c = Certificate::from_der(&new.der).map_err(enc("new CA"))?;
    let mut tbs = c.tbs_certificate;
    tbs.serial_number = random_serial().map_err(build("cross certificate"))?;
    tbs.issuer = Name::from_der(&old.raw_subject).map_err(enc("old CA subject"))?;
    tbs.validity = validity(new.not_before, new.not_after.min(old.not_after))
        .map_err(build("cross certificate"))?;
    tbs.signature = old_key.signature_algorithm();
    let akid = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(old_skid).map_err(enc("AKID"))?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let akid_ext = x509_cert::ext::Extension {
        extn_id: der::oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
        critical: false,
        extn_value: OctetString::new(akid.to_der().map_err(enc("AKID"))?).map_err(enc("AKID"))?,
    };
    let exts = tbs.extensions.get_or_insert_with(Vec::new);
    exts.retain(|x| x.extn_id != akid_ext.extn_id);
    exts.push(akid_ext);
    let tbs_der = tbs.to_der().map_err(enc("TBSCertificate"))?;
    let sig = old_key.sign(&tbs_der).map_err(build("cross certificate"))?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: old_key.signature_algorithm(),
        signature: der::asn1::BitString::from_bytes(&sig).map_err(enc("signature"))?,
    };
    let der = cert.to_der().map_err(enc("certificate"))?;
    CertFacts::from_der(&der).map_err(build("cross certificate"))
}

/// SHA-256 of a certificate's DER, lower-case hex: the fingerprint `ca status` shows.
pub fn sha256(cert: &CertFacts) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert.der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn pem(cert: &CertFacts) -> String {
    encode_pem("CERTIFICATE", &cert.der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{KeyAlgorithm, KeyEncoding};

    fn old_ca(now: OffsetDateTime) -> (CertFacts, PrivateKey) {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let der = CertTemplate::ca(
            vec![vec![(OID_CN, "kubernetes".into())]],
            now - time::Duration::days(100),
            now + time::Duration::days(3550),
        )
        .issue(&key, None)
        .unwrap();
        (CertFacts::from_der(&der).unwrap(), key)
    }

    #[test]
    fn a_generated_ca_is_like_the_old_one_under_a_unique_cn_and_x_chains_to_the_old() {
        let now = OffsetDateTime::now_utc();
        let (old, old_key) = old_ca(now);
        let new = generate(&old, &old_key, now).unwrap();
        assert!(new.cert.is_ca && new.cert.self_issued);
        assert_eq!(new.key.algorithm, old_key.algorithm);
        assert_eq!(new.key.encoding, old_key.encoding);
        assert_eq!(
            new.cert.subject,
            format!("CN=kubernetes@{}", now.unix_timestamp())
        );
        assert_eq!(new.cert.lifetime(), old.lifetime());
        assert!(has_key_cert_sign(&new.cert.der));
        let x = cross_sign(&new.cert, &old, &old_key, Path::new("/ca.crt")).unwrap();
        assert!(x.is_signed_by(&old));
        assert!(!x.is_signed_by(&new.cert));
        assert_eq!(x.raw_subject, new.cert.raw_subject);
        assert_eq!(x.public_key, new.cert.public_key);
        assert_eq!(x.subject_key_id, new.cert.subject_key_id);
        assert_eq!(x.authority_key_id, old.subject_key_id);
        assert!(x.not_after <= old.not_after);
        assert_ne!(x.serial, new.cert.serial);
    }
}

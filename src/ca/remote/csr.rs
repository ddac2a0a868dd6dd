//! What the node asks for: the old certificate's identity (subject, SANs, usages), the
//! `hosts` cfssl sets SANs from, and the PKCS#10 CSR that carries it, signed with the
//! new key.

use std::collections::BTreeSet;

use der::asn1::{AnyRef, BitString, ObjectIdentifier, SetOfVec};
use der::oid::AssociatedOid;
use der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};
use x509_cert::Certificate;

pub use crate::pki::sans::{san_of, San};
use crate::pki::{encode_pem, PkiError, PrivateKey};

pub(crate) const OID_SAN: ObjectIdentifier = SubjectAltName::OID;
pub(crate) const OID_KU: ObjectIdentifier = KeyUsage::OID;
pub(crate) const OID_EKU: ObjectIdentifier = ExtendedKeyUsage::OID;

/// Why an identity could not be read or a CSR not be built.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("not a certificate: {0}")]
    NotACertificate(der::Error),
    #[error("{extension}: {source}")]
    Extension {
        extension: &'static str,
        source: der::Error,
    },
    #[error("SAN {san} cannot be carried by a cfssl request (hosts are DNS names, IP addresses, emails and URIs)")]
    UnsupportedSan { san: San },
    #[error("the old subject's DER cannot be reproduced byte for byte")]
    SubjectNotReproducible,
    #[error("{part}: {source}")]
    Encoding {
        part: &'static str,
        source: der::Error,
    },
    #[error(transparent)]
    Key(#[from] PkiError),
}

fn encoding(part: &'static str) -> impl FnOnce(der::Error) -> CsrError {
    move |source| CsrError::Encoding { part, source }
}

/// A certificate's identity as a CSR carries it and as the answer must keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The subject as a name (compared by attribute types and values) ...
    pub subject: Name,
    /// ... and its DER exactly as the certificate holds it.
    pub raw_subject: Vec<u8>,
    /// The SANs in the certificate's order (`hosts` keep it, so does cfssl) ...
    pub san_list: Vec<San>,
    /// ... and as the set that is compared.
    pub sans: BTreeSet<San>,
    pub key_usage: Vec<String>,
    pub ext_key_usage: BTreeSet<ObjectIdentifier>,
    pub is_ca: bool,
}

impl Identity {
    pub fn of(der: &[u8]) -> Result<Self, CsrError> {
        let cert = Certificate::from_der(der).map_err(CsrError::NotACertificate)?;
        let raw_subject = raw_subject(der).map_err(CsrError::NotACertificate)?;
        let tbs = cert.tbs_certificate;
        let ext = |extension| move |source| CsrError::Extension { extension, source };
        let mut san_list = Vec::new();
        let mut key_usage = Vec::new();
        let mut ext_key_usage = BTreeSet::new();
        let mut is_ca = false;
        for x in tbs.extensions.iter().flatten() {
            let v = x.extn_value.as_bytes();
            if x.extn_id == OID_SAN {
                let san = SubjectAltName::from_der(v).map_err(ext("SAN"))?;
                san_list.extend(san.0.iter().map(san_of));
            } else if x.extn_id == OID_KU {
                let ku = KeyUsage::from_der(v).map_err(ext("KeyUsage"))?;
                key_usage = ku.0.into_iter().map(|f| format!("{f:?}")).collect();
            } else if x.extn_id == OID_EKU {
                let eku = ExtendedKeyUsage::from_der(v).map_err(ext("ExtKeyUsage"))?;
                ext_key_usage = eku.0.into_iter().collect();
            } else if x.extn_id == BasicConstraints::OID {
                is_ca = BasicConstraints::from_der(v)
                    .map_err(ext("BasicConstraints"))?
                    .ca;
            }
        }
        Ok(Identity {
            subject: tbs.subject,
            raw_subject,
            sans: san_list.iter().cloned().collect(),
            san_list,
            key_usage,
            ext_key_usage,
            is_ca,
        })
    }

    /// cfssl's `hosts`: every SAN, as cfssl parses it back (IP, email, else DNS name;
    /// newer cfssl also URIs). A SAN that hosts cannot carry is refused here.
    pub fn hosts(&self) -> Result<Vec<String>, CsrError> {
        hosts_of(&self.san_list)
    }
}

/// cfssl's `hosts` for these SANs, in their order (cfssl sets a certificate's SANs from
/// `hosts`, not from the CSR): IP, email, else DNS name; newer cfssl also URIs.
pub fn hosts_of(sans: &[San]) -> Result<Vec<String>, CsrError> {
    sans.iter()
        .map(|s| match s {
            San::Dns(d) => Ok(d.clone()),
            San::Ip(ip) => Ok(ip.to_string()),
            San::Email(m) => Ok(m.clone()),
            San::Uri(u) => Ok(u.clone()),
            San::Other(_) => Err(CsrError::UnsupportedSan { san: s.clone() }),
        })
        .collect()
}

/// The subject of a certificate's DER as the bytes it holds, not re-encoded: walks
/// Certificate → TBSCertificate → [version], serial, signature, issuer, validity,
/// subject.
pub fn raw_subject(cert_der: &[u8]) -> der::Result<Vec<u8>> {
    let cert = AnyRef::from_der(cert_der)?;
    let mut outer = SliceReader::new(cert.value())?;
    let tbs: AnyRef<'_> = outer.decode()?;
    let mut fields = SliceReader::new(tbs.value())?;
    let version = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N0,
    };
    let first: AnyRef<'_> = fields.decode()?;
    if first.tag() == version {
        let _serial: AnyRef<'_> = fields.decode()?;
    }
    let _signature: AnyRef<'_> = fields.decode()?;
    let _issuer: AnyRef<'_> = fields.decode()?;
    let _validity: AnyRef<'_> = fields.decode()?;
    let subject: AnyRef<'_> = fields.decode()?;
    subject.to_der()
}

/// A PKCS#10 CSR for `key` with the old certificate's identity: its subject as is (the
/// raw DER, checked) and an extensionRequest with its SAN, KeyUsage and ExtKeyUsage
/// extensions, signed with `key`. PEM.
pub fn build_csr(old_der: &[u8], key: &PrivateKey) -> Result<String, CsrError> {
    let old = Certificate::from_der(old_der).map_err(CsrError::NotACertificate)?;
    let tbs = old.tbs_certificate;
    let raw = raw_subject(old_der).map_err(CsrError::NotACertificate)?;
    // A SET OF that was not DER-sorted would come out sorted: the CSR would then ask
    // for a subject with other bytes than the old one.
    if tbs.subject.to_der().map_err(encoding("subject"))? != raw {
        return Err(CsrError::SubjectNotReproducible);
    }
    let exts: Vec<_> = tbs
        .extensions
        .unwrap_or_default()
        .into_iter()
        .filter(|x| [OID_SAN, OID_KU, OID_EKU].contains(&x.extn_id))
        .collect();
    let mut attributes = SetOfVec::new();
    if !exts.is_empty() {
        let attr = Attribute::try_from(ExtensionReq(exts)).map_err(encoding("extensionRequest"))?;
        attributes.insert(attr).map_err(encoding("attributes"))?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject: tbs.subject,
        public_key: key.spki()?,
        attributes,
    };
    let info_der = info
        .to_der()
        .map_err(encoding("CertificationRequestInfo"))?;
    let signature = key.sign(&info_der)?;
    let req = CertReq {
        info,
        algorithm: key.signature_algorithm(),
        signature: BitString::from_bytes(&signature).map_err(encoding("signature"))?,
    };
    let der = req.to_der().map_err(encoding("CertificationRequest"))?;
    Ok(encode_pem("CERTIFICATE REQUEST", &der))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pki::x509::{CertTemplate, Issuer, EKU_CLIENT, OID_CN, OID_O};
    use crate::pki::{self, CertFacts, KeyAlgorithm, KeyEncoding};
    use time::{Duration, OffsetDateTime};
    use x509_cert::ext::pkix::KeyUsages;

    pub fn new_ca() -> (CertFacts, PrivateKey) {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let der = CertTemplate {
            subject: vec![vec![(OID_CN, "kubernetes".into())]],
            is_ca: true,
            key_usage: vec![KeyUsages::KeyCertSign, KeyUsages::DigitalSignature],
            ..Default::default()
        }
        .issue(&key, None)
        .unwrap();
        (CertFacts::from_der(&der).unwrap(), key)
    }

    pub fn leaf(ca: &(CertFacts, PrivateKey), t: CertTemplate, key: &PrivateKey) -> CertFacts {
        let der = t
            .issue(
                key,
                Some(&Issuer {
                    cert: &ca.0,
                    key: &ca.1,
                }),
            )
            .unwrap();
        CertFacts::from_der(&der).unwrap()
    }

    pub fn template() -> CertTemplate {
        let now = OffsetDateTime::now_utc();
        CertTemplate {
            subject: vec![
                vec![(OID_O, "system:nodes".into()), (OID_O, "aaa".into())],
                vec![(OID_CN, "system:node:w1".into())],
            ],
            not_before: Some(now - Duration::minutes(5)),
            not_after: Some(now + Duration::days(91)),
            key_usage: vec![KeyUsages::DigitalSignature],
            ext_key_usage: vec![EKU_CLIENT],
            dns_names: vec!["w1".into()],
            ip_addresses: vec!["10.0.0.21".parse().unwrap(), "::1".parse().unwrap()],
            ..Default::default()
        }
    }

    #[test]
    fn csr_carries_the_raw_subject_and_sans_and_verifies() {
        let ca = new_ca();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let old = leaf(&ca, template(), &key);
        let new_key =
            PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs1).unwrap();
        let pem = build_csr(&old.der, &new_key).unwrap();
        let blocks = pki::parse_pem(pem.as_bytes()).unwrap();
        assert_eq!(blocks[0].tag, "CERTIFICATE REQUEST");
        let req = CertReq::from_der(&blocks[0].der).unwrap();
        assert_eq!(req.info.subject.to_der().unwrap(), old.raw_subject);
        assert_eq!(raw_subject(&old.der).unwrap(), old.raw_subject);
        assert_eq!(
            req.info.public_key.subject_public_key.raw_bytes(),
            new_key.public_key()
        );
        // The signature is over the CertificationRequestInfo DER, with the new key.
        let info_der = req.info.to_der().unwrap();
        let public_key = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            req.info.public_key.subject_public_key.raw_bytes(),
        );
        public_key
            .verify(&info_der, req.signature.raw_bytes())
            .unwrap();
        assert_eq!(
            req.algorithm.oid,
            der::oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION
        );
        // One extensionRequest attribute with SAN, KeyUsage and ExtKeyUsage.
        assert_eq!(req.info.attributes.len(), 1);
        let attr = req.info.attributes.iter().next().unwrap();
        assert_eq!(attr.oid, ExtensionReq::OID);
        let exts =
            ExtensionReq::from_der(&attr.values.iter().next().unwrap().to_der().unwrap()).unwrap();
        let ids: Vec<_> = exts.0.iter().map(|x| x.extn_id).collect();
        assert_eq!(ids.len(), 3, "SAN, KeyUsage, ExtKeyUsage");
        for id in [OID_SAN, OID_KU, OID_EKU] {
            assert!(ids.contains(&id), "{id}");
        }
        let id = Identity::of(&old.der).unwrap();
        assert_eq!(
            id.hosts().unwrap(),
            vec!["w1".to_string(), "10.0.0.21".into(), "::1".into()]
        );
    }

    #[test]
    fn a_san_hosts_cannot_carry_is_refused_before_sending() {
        let id = Identity {
            san_list: vec![San::Dns("w1".into()), San::Other("RID:1.2.3".into())],
            ..Identity::of(&leaf(&new_ca(), template(), &new_ca().1).der).unwrap()
        };
        let e = id.hosts().unwrap_err();
        assert!(
            e.to_string().starts_with("SAN RID:1.2.3 cannot be carried"),
            "{e}"
        );
    }
}

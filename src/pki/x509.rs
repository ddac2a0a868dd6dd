//! X.509 building: a TBSCertificate from parts or from an old certificate, signed.
//!
//! Two ways in: [`CertTemplate`] builds a certificate from parts the way Go's crypto/x509
//! lays them out (kubeadm and the kubelet are Go programs, so fixtures and throwaway CAs
//! come out byte-compatible), and [`resign`] re-issues an existing certificate by copying
//! its TBSCertificate and replacing only serial, validity, key and the CA-given key ids,
//! so subject grouping, SANs and every extension survive bit for bit.

use std::net::IpAddr;

use der::asn1::{Ia5String, ObjectIdentifier, OctetString};
use der::oid::AssociatedOid;
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate};

use crate::pki::{CertFacts, PkiError, PrivateKey};

pub const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
pub const OID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
pub const OID_OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
pub const EKU_SERVER: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
pub const EKU_CLIENT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
const OID_SKID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_AKID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");

/// Maps a der encoding failure to a [`PkiError`] naming the part being built.
fn e<T>(what: &'static str, source: der::Error) -> Result<T, PkiError> {
    Err(PkiError::Encoding { what, source })
}

/// The issuer side of a signature: the CA's certificate and key.
pub struct Issuer<'a> {
    pub cert: &'a CertFacts,
    pub key: &'a PrivateKey,
}

/// A certificate described by its parts, laid out as Go's x509.CreateCertificate does.
#[derive(Clone, Debug, Default)]
pub struct CertTemplate {
    /// Relative distinguished names in order; an inner list with several entries is one
    /// multi-valued RDN (kubeadm puts all O values into one).
    pub subject: Vec<Vec<(ObjectIdentifier, String)>>,
    pub not_before: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
    pub is_ca: bool,
    pub key_usage: Vec<KeyUsages>,
    pub ext_key_usage: Vec<ObjectIdentifier>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
}

impl CertTemplate {
    /// A CA certificate as kubeadm (and the kubelet, for its throwaway CA) makes one:
    /// CA:TRUE, digitalSignature + keyEncipherment + keyCertSign.
    pub fn ca(
        subject: Vec<Vec<(ObjectIdentifier, String)>>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Self {
        CertTemplate {
            subject,
            not_before: Some(not_before),
            not_after: Some(not_after),
            is_ca: true,
            key_usage: vec![
                KeyUsages::DigitalSignature,
                KeyUsages::KeyEncipherment,
                KeyUsages::KeyCertSign,
            ],
            ..Default::default()
        }
    }

    /// Issues the certificate for `subject_key`, signed by `issuer`, or self-signed with
    /// `subject_key` when `issuer` is `None`.
    pub fn issue(
        &self,
        subject_key: &PrivateKey,
        issuer: Option<&Issuer<'_>>,
    ) -> Result<Vec<u8>, PkiError> {
        let subject = build_name(&self.subject)?;
        let spki = subject_key.spki()?;
        let (issuer_name, signer, issuer_skid) = match issuer {
            Some(i) => (
                Name::from_der(&i.cert.raw_subject).or_else(|x| e("CA subject", x))?,
                i.key,
                i.cert.subject_key_id.clone(),
            ),
            None => (subject.clone(), subject_key, None),
        };
        let mut exts: Vec<Extension> = Vec::new();
        let ku = self
            .key_usage
            .iter()
            .fold(der::flagset::FlagSet::<KeyUsages>::default(), |a, k| a | *k);
        // Go's order: KeyUsage, ExtKeyUsage, BasicConstraints, SKID, AKID, SAN.
        if !self.key_usage.is_empty() {
            exts.push(ext(&KeyUsage(ku), true)?);
        }
        if !self.ext_key_usage.is_empty() {
            exts.push(ext(&ExtendedKeyUsage(self.ext_key_usage.clone()), false)?);
        }
        exts.push(ext(
            &BasicConstraints {
                ca: self.is_ca,
                path_len_constraint: None,
            },
            true,
        )?);
        if self.is_ca {
            // Go derives a CA's SKID from the SHA-1 of its public key.
            exts.push(ext(&key_id(subject_key.public_key())?, false)?);
        }
        if let Some(skid) = issuer_skid {
            if issuer.is_some() {
                exts.push(ext(
                    &AuthorityKeyIdentifier {
                        key_identifier: Some(OctetString::new(skid).or_else(|x| e("AKID", x))?),
                        authority_cert_issuer: None,
                        authority_cert_serial_number: None,
                    },
                    false,
                )?);
            }
        }
        let mut sans = Vec::new();
        for d in &self.dns_names {
            sans.push(GeneralName::DnsName(
                Ia5String::new(d).or_else(|x| e("DNS SAN", x))?,
            ));
        }
        for m in &self.emails {
            sans.push(GeneralName::Rfc822Name(
                Ia5String::new(m).or_else(|x| e("email SAN", x))?,
            ));
        }
        for ip in &self.ip_addresses {
            let bytes = match ip {
                IpAddr::V4(v) => v.octets().to_vec(),
                IpAddr::V6(v) => v.octets().to_vec(),
            };
            sans.push(GeneralName::IpAddress(
                OctetString::new(bytes).or_else(|x| e("IP SAN", x))?,
            ));
        }
        for u in &self.uris {
            sans.push(GeneralName::UniformResourceIdentifier(
                Ia5String::new(u).or_else(|x| e("URI SAN", x))?,
            ));
        }
        if !sans.is_empty() {
            // RFC 5280: critical only when the subject is empty.
            exts.push(ext(&SubjectAltName(sans), self.subject.is_empty())?);
        }
        let now = OffsetDateTime::now_utc();
        let tbs = TbsCertificate {
            version: x509_cert::Version::V3,
            serial_number: random_serial()?,
            signature: signer.signature_algorithm(),
            issuer: issuer_name,
            validity: validity(
                self.not_before.unwrap_or(now),
                self.not_after.unwrap_or(now + time::Duration::days(365)),
            )?,
            subject,
            subject_public_key_info: spki,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(exts),
        };
        sign_tbs(tbs, signer)
    }
}

/// What a re-issue changes; everything else of the old certificate is kept.
pub struct Reissue<'a> {
    pub old_der: &'a [u8],
    pub new_key: &'a PrivateKey,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Re-issues a certificate: a copy of its TBSCertificate with a fresh random serial, the
/// new validity and public key, the issuer's name, and key identifiers recomputed where
/// the old certificate had them (SKID from the new key, AKID from the CA). Signed by
/// `issuer`, or self-signed by the new key when `issuer` is `None`.
pub fn resign(r: &Reissue<'_>, issuer: Option<&Issuer<'_>>) -> Result<Vec<u8>, PkiError> {
    let old = Certificate::from_der(r.old_der).or_else(|x| e("decoding certificate", x))?;
    let mut tbs = old.tbs_certificate;
    let signer = issuer.map(|i| i.key).unwrap_or(r.new_key);
    tbs.serial_number = random_serial()?;
    tbs.signature = signer.signature_algorithm();
    tbs.validity = validity(r.not_before, r.not_after)?;
    tbs.subject_public_key_info = r.new_key.spki()?;
    tbs.issuer = match issuer {
        Some(i) => Name::from_der(&i.cert.raw_subject).or_else(|x| e("CA subject", x))?,
        None => tbs.subject.clone(),
    };
    if let Some(exts) = tbs.extensions.as_mut() {
        for x in exts.iter_mut() {
            if x.extn_id == OID_SKID {
                x.extn_value = OctetString::new(
                    key_id(r.new_key.public_key())?
                        .to_der()
                        .or_else(|y| e("SKID", y))?,
                )
                .or_else(|y| e("SKID", y))?;
            } else if x.extn_id == OID_AKID {
                let skid = match issuer {
                    Some(i) => i.cert.subject_key_id.clone(),
                    None => None,
                };
                let akid = AuthorityKeyIdentifier {
                    key_identifier: match skid {
                        Some(s) => Some(OctetString::new(s).or_else(|y| e("AKID", y))?),
                        None => Some(key_id(r.new_key.public_key())?.0),
                    },
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                };
                x.extn_value = OctetString::new(akid.to_der().or_else(|y| e("AKID", y))?)
                    .or_else(|y| e("AKID", y))?;
            }
        }
    }
    sign_tbs(tbs, signer)
}

/// Renews a self-signed CA certificate with its own key: a copy of its TBSCertificate
/// with a fresh random serial and the new validity, every other field (subject,
/// issuer, public key, every extension with its key identifiers) kept bit for bit, and
/// signed again by `key`, which must be the certificate's own. Every certificate the CA
/// signed keeps verifying against the result.
pub fn renew_self_signed(
    old_der: &[u8],
    key: &PrivateKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let old = Certificate::from_der(old_der).or_else(|x| e("decoding certificate", x))?;
    let mut tbs = old.tbs_certificate;
    tbs.serial_number = random_serial()?;
    tbs.validity = validity(not_before, not_after)?;
    sign_tbs(tbs, key)
}

pub fn sign_tbs(mut tbs: TbsCertificate, signer: &PrivateKey) -> Result<Vec<u8>, PkiError> {
    tbs.signature = signer.signature_algorithm();
    let tbs_der = tbs.to_der().or_else(|x| e("encoding TBSCertificate", x))?;
    let sig = signer.sign(&tbs_der)?;
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signer.signature_algorithm(),
        signature: der::asn1::BitString::from_bytes(&sig).or_else(|x| e("signature", x))?,
    };
    cert.to_der().or_else(|x| e("encoding certificate", x))
}

/// An extension with the criticality Go's x509 gives it (KeyUsage and BasicConstraints
/// critical, the rest not), which is not always the x509-cert crate's default.
pub fn ext<T: AssociatedOid + Encode>(value: &T, critical: bool) -> Result<Extension, PkiError> {
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der().or_else(|x| e("encoding extension", x))?)
            .or_else(|x| e("encoding extension", x))?,
    })
}

/// SHA-1 of the subjectPublicKey bits, as Go and OpenSSL compute key identifiers.
fn key_id(public_key: &[u8]) -> Result<SubjectKeyIdentifier, PkiError> {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, public_key);
    Ok(SubjectKeyIdentifier(
        OctetString::new(d.as_ref()).or_else(|x| e("key id", x))?,
    ))
}

/// A fresh, random, positive 128-bit serial (RFC 5280 allows up to 20 octets). Never
/// derived from the key: a renewal that reuses its key must still get a new serial.
pub fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| PkiError::NoRandomness("a serial number"))?;
    b[0] = (b[0] & 0x7f) | 0x01; // positive, and no leading zero octet to strip
    SerialNumber::new(&b).or_else(|x| e("serial", x))
}

/// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
pub fn validity(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Validity, PkiError> {
    Ok(Validity {
        not_before: x509_time(not_before)?,
        not_after: x509_time(not_after)?,
    })
}

pub fn x509_time(t: OffsetDateTime) -> Result<Time, PkiError> {
    let secs = t.unix_timestamp();
    let Ok(secs) = u64::try_from(secs) else {
        return Err(PkiError::TimeBefore1970(t));
    };
    let d = std::time::Duration::from_secs(secs);
    if t.year() < 2050 {
        Ok(Time::UtcTime(
            der::asn1::UtcTime::from_unix_duration(d).or_else(|x| e("time", x))?,
        ))
    } else {
        Ok(Time::GeneralTime(
            der::asn1::GeneralizedTime::from_unix_duration(d).or_else(|x| e("time", x))?,
        ))
    }
}

/// Builds a Name; strings are PrintableString when they fit it and UTF8String otherwise,
/// which is what Go's asn1 marshalling picks (so "system:masters" is a PrintableString
/// and "grüße" a UTF8String).
pub fn build_name(rdns: &[Vec<(ObjectIdentifier, String)>]) -> Result<Name, PkiError> {
    let mut seq = Vec::new();
    for rdn in rdns {
        let mut atvs = Vec::new();
        for (oid, value) in rdn {
            let printable = value
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&c));
            let any = if printable {
                der::Any::encode_from(
                    &der::asn1::PrintableString::new(value).or_else(|x| e("name", x))?,
                )
                .or_else(|x| e("name", x))?
            } else {
                der::Any::encode_from(
                    &der::asn1::Utf8StringRef::new(value).or_else(|x| e("name", x))?,
                )
                .or_else(|x| e("name", x))?
            };
            atvs.push(AttributeTypeAndValue {
                oid: *oid,
                value: any,
            });
        }
        seq.push(RelativeDistinguishedName(
            der::asn1::SetOfVec::try_from(atvs).or_else(|x| e("name", x))?,
        ));
    }
    Ok(RdnSequence(seq))
}

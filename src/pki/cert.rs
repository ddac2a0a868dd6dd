//! Reading certificates: the facts the inventory, the plan and `status` need, and whether
//! a CA signed a certificate.
//!
//! Decoding is the RustCrypto `der`/`x509-cert` stack; signatures are checked with
//! aws-lc-rs. Names, the serial and the TBSCertificate are taken as the bytes the file
//! holds (never re-encoded), so comparisons and signature checks see what the signer saw.

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use aws_lc_rs::signature::{self, ParsedPublicKey, UnparsedPublicKey, VerificationAlgorithm};
use der::asn1::{AnyRef, BitStringRef, IntRef, ObjectIdentifier};
use der::oid::AssociatedOid;
use der::{Decode, Encode, Reader, Sequence, SliceReader};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use time::OffsetDateTime;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::time::{Time, Validity};

use super::name::name_to_string;
use super::pem::PemBlock;
use super::PkiError;

/// What we need to know of one X.509 certificate.
#[derive(Clone, Debug)]
pub struct CertFacts {
    pub der: Vec<u8>,
    /// One-line subject, RDNs in stored order: `O=a + O=b, CN=c` (the form is in pki/name.rs).
    pub subject: String,
    pub issuer: String,
    /// Lower-case hex, no leading zeros.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub self_issued: bool,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    /// The subject Name's DER as stored in the certificate.
    pub raw_subject: Vec<u8>,
    pub raw_issuer: Vec<u8>,
    /// The subjectPublicKey bits of the SPKI (RSAPublicKey DER, or the EC point).
    pub public_key: Vec<u8>,
    /// This certificate's key as an issuer's: parsed on the first signature checked
    /// with it, then kept (see [`IssuerKey`]).
    issuer_key: IssuerKey,
}

/// A certificate's public key parsed for checking the signatures it made. A CA checks
/// every certificate of its kind, and aws-lc parses the key and sets up an RSA
/// modulus's Montgomery constants for each [`UnparsedPublicKey::verify`], a third of a
/// verification; a parsed key keeps them. Bound to the algorithm of the first check
/// (one CA signs with one algorithm); a check with another one parses anew.
///
/// It also remembers the verdicts for the last few certificates it checked, by their
/// whole DER: a node holds the same certificate in more than one place (kubeadm tells
/// the admin to copy admin.conf to ~/.kube/config), and the verdict for the same bytes
/// under the same key is the same. Bounded, so memory stays flat in the number of
/// certificates a command reads.
#[derive(Default)]
struct IssuerKey {
    parsed: OnceLock<Option<ParsedKey>>,
    verdicts: Mutex<Vec<(Vec<u8>, bool)>>,
}

/// How many verdicts an issuer's key remembers.
const VERDICTS: usize = 16;

impl Clone for IssuerKey {
    fn clone(&self) -> Self {
        IssuerKey {
            parsed: self.parsed.clone(),
            verdicts: Mutex::new(self.verdicts.lock().map(|v| v.clone()).unwrap_or_default()),
        }
    }
}

impl IssuerKey {
    /// The verdict already reached for exactly these bytes, if it is remembered.
    fn recall(&self, der: &[u8]) -> Option<bool> {
        let v = self.verdicts.lock().ok()?;
        v.iter().find(|(d, _)| d == der).map(|(_, ok)| *ok)
    }

    fn remember(&self, der: &[u8], ok: bool) {
        if let Ok(mut v) = self.verdicts.lock() {
            if v.len() == VERDICTS {
                v.remove(0);
            }
            v.push((der.to_vec(), ok));
        }
    }
}

#[derive(Clone)]
struct ParsedKey {
    /// The DER of the signature AlgorithmIdentifier the key was parsed for: a child
    /// signed with any other algorithm is checked on the one-off path, so the algorithm
    /// field is enforced exactly as there.
    signature_algorithm: Vec<u8>,
    key: ParsedPublicKey,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A cache of `public_key`, which the certificate's Debug already shows.
        f.write_str("IssuerKey")
    }
}

/// Certificate ::= SEQUENCE, with the TBSCertificate kept as its bytes for the signature.
#[derive(Sequence)]
struct RawCertificate<'a> {
    tbs_certificate: AnyRef<'a>,
    signature_algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

/// TBSCertificate (RFC 5280 4.1) with serial and names as stored. x509-cert's own type
/// would decode the names into SETs that re-sort their values and refuse duplicates, and
/// cap serials at 20 octets; the certificate is read as written instead.
#[derive(Sequence)]
struct RawTbs<'a> {
    #[asn1(context_specific = "0", default = "Default::default")]
    version: x509_cert::Version,
    serial_number: AnyRef<'a>,
    signature: AlgorithmIdentifierRef<'a>,
    issuer: AnyRef<'a>,
    validity: Validity,
    subject: AnyRef<'a>,
    subject_public_key_info: SubjectPublicKeyInfoRef<'a>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    issuer_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    subject_unique_id: Option<BitStringRef<'a>>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

/// The outer SEQUENCE only: the signed bytes, the algorithm and the signature.
fn decode_outer(der: &[u8]) -> Result<RawCertificate<'_>, PkiError> {
    let mut reader = SliceReader::new(der).map_err(PkiError::MalformedCertificate)?;
    let cert = RawCertificate::decode(&mut reader).map_err(PkiError::MalformedCertificate)?;
    if !reader.is_finished() {
        return Err(PkiError::TrailingBytes);
    }
    Ok(cert)
}

/// A certificate decoded down to its TBSCertificate.
fn decode(der: &[u8]) -> Result<RawTbs<'_>, PkiError> {
    decode_outer(der)?
        .tbs_certificate
        .decode_as::<RawTbs<'_>>()
        .map_err(PkiError::MalformedCertificate)
}

impl CertFacts {
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let tbs = decode(der)?;
        // A well-formed (minimal) INTEGER; its content octets are the serial as written.
        tbs.serial_number
            .decode_as::<IntRef<'_>>()
            .map_err(PkiError::MalformedCertificate)?;
        let raw_serial = tbs.serial_number.value();
        if raw_serial.first().is_some_and(|b| b & 0x80 != 0) {
            // RFC 5280 4.1.2.2: serials are positive. Go ≥ 1.23 (the kubelet, the API
            // server) refuses to parse such a certificate at all.
            return Err(PkiError::NegativeSerial);
        }
        let subject = name_to_string(tbs.subject).map_err(PkiError::MalformedCertificate)?;
        let issuer = name_to_string(tbs.issuer).map_err(PkiError::MalformedCertificate)?;
        let ext = read_extensions(tbs.extensions.as_deref().unwrap_or_default())?;
        let raw_subject = tbs
            .subject
            .to_der()
            .map_err(PkiError::MalformedCertificate)?;
        let raw_issuer = tbs
            .issuer
            .to_der()
            .map_err(PkiError::MalformedCertificate)?;
        Ok(CertFacts {
            der: der.to_vec(),
            subject,
            issuer,
            serial: serial_hex(raw_serial),
            not_before: datetime(tbs.validity.not_before)?,
            not_after: datetime(tbs.validity.not_after)?,
            is_ca: ext.is_ca,
            self_issued: raw_subject == raw_issuer,
            subject_key_id: ext.subject_key_id,
            authority_key_id: ext.authority_key_id,
            raw_subject,
            raw_issuer,
            public_key: tbs
                .subject_public_key_info
                .subject_public_key
                .raw_bytes()
                .to_vec(),
            issuer_key: IssuerKey::default(),
        })
    }

    /// Whether `ca` signed this certificate: this certificate names `ca`'s subject as its
    /// issuer and its signature verifies with `ca`'s public key. The authority key
    /// identifier is deliberately not consulted: it is a hint for finding candidates, and
    /// a stale or foreign one must neither hide a valid signature nor stand in for one.
    pub fn is_signed_by(&self, ca: &CertFacts) -> bool {
        if self.raw_issuer != ca.raw_subject {
            return false;
        }
        if let Some(ok) = ca.issuer_key.recall(&self.der) {
            return ok;
        }
        let ok = self.verify_with(ca);
        ca.issuer_key.remember(&self.der, ok);
        ok
    }

    /// The signature check of [`CertFacts::is_signed_by`], every time.
    fn verify_with(&self, ca: &CertFacts) -> bool {
        // The outer SEQUENCE is enough: `from_der` decoded the rest when it made `self`.
        let Ok(me) = decode_outer(&self.der) else {
            return false;
        };
        let Ok(tbs) = me.tbs_certificate.to_der() else {
            return false;
        };
        let signature = me.signature.raw_bytes();
        let Ok(signature_algorithm) = me.signature_algorithm.to_der() else {
            return false;
        };
        let parsed = ca.issuer_key.parsed.get_or_init(|| {
            let them = decode(&ca.der).ok()?;
            let spki = &them.subject_public_key_info;
            let alg = verification_algorithm(&me.signature_algorithm, key_curve(&spki.algorithm))?;
            let key = ParsedPublicKey::new(alg, spki.subject_public_key.raw_bytes()).ok()?;
            Some(ParsedKey {
                signature_algorithm: signature_algorithm.clone(),
                key,
            })
        });
        match parsed {
            Some(p) if p.signature_algorithm == signature_algorithm => {
                p.key.verify_sig(&tbs, signature).is_ok()
            }
            // Another algorithm than the first check's, or a key aws-lc refused: the
            // one-off path decides (and refuses alike).
            _ => decode(&ca.der)
                .is_ok_and(|them| verify_signature(&me, &them.subject_public_key_info)),
        }
    }

    pub fn lifetime(&self) -> time::Duration {
        self.not_after - self.not_before
    }
}

/// The extension facts we keep.
#[derive(Default)]
struct ExtensionFacts {
    is_ca: bool,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
}

/// Reads BasicConstraints and the key identifiers, and checks that KeyUsage,
/// ExtendedKeyUsage and SubjectAltName decode: a renewal copies them byte for byte, so a
/// damaged one must stop the renewal here rather than travel into the new certificate.
/// Other extensions are carried without being looked at.
fn read_extensions(exts: &[Extension]) -> Result<ExtensionFacts, PkiError> {
    let mut facts = ExtensionFacts::default();
    for (i, x) in exts.iter().enumerate() {
        let oid = x.extn_id;
        if exts[..i].iter().any(|y| y.extn_id == oid) {
            // RFC 5280 4.2; Go refuses such a certificate ("duplicate extension").
            return Err(PkiError::DuplicateExtension { oid });
        }
        let value = x.extn_value.as_bytes();
        let bad = |source| PkiError::MalformedExtension { oid, source };
        if oid == BasicConstraints::OID {
            facts.is_ca = BasicConstraints::from_der(value).map_err(bad)?.ca;
        } else if oid == SubjectKeyIdentifier::OID {
            let id = SubjectKeyIdentifier::from_der(value).map_err(bad)?;
            facts.subject_key_id = Some(id.0.as_bytes().to_vec());
        } else if oid == AuthorityKeyIdentifier::OID {
            let id = AuthorityKeyIdentifier::from_der(value).map_err(bad)?;
            facts.authority_key_id = id.key_identifier.map(|k| k.as_bytes().to_vec());
        } else if oid == KeyUsage::OID {
            KeyUsage::from_der(value).map_err(bad)?;
        } else if oid == ExtendedKeyUsage::OID {
            ExtendedKeyUsage::from_der(value).map_err(bad)?;
        } else if oid == SubjectAltName::OID {
            SubjectAltName::from_der(value).map_err(bad)?;
        }
    }
    Ok(facts)
}

fn datetime(t: Time) -> Result<OffsetDateTime, PkiError> {
    let secs = t.to_unix_duration().as_secs();
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(PkiError::MalformedCertificate(
            der::ErrorKind::DateTime.into(),
        ))
}

const OID_SHA1_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
/// The OIW's sha1WithRSASignature, still found in old certificates.
const OID_SHA1_RSA_OIW: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.29");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_SHA384_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_SHA512_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Whether `cert`'s signature over its TBSCertificate verifies with `issuer`'s key.
/// Whether `signature` over `message` verifies with `key` under `algorithm`: a
/// certificate request's proof that its sender holds the key (PKCS#10 self-signature).
pub fn signature_verifies(
    message: &[u8],
    algorithm: &AlgorithmIdentifierRef<'_>,
    key: &SubjectPublicKeyInfoRef<'_>,
    signature: &[u8],
) -> bool {
    let Some(alg) = verification_algorithm(algorithm, key_curve(&key.algorithm)) else {
        return false;
    };
    UnparsedPublicKey::new(alg, key.subject_public_key.raw_bytes())
        .verify(message, signature)
        .is_ok()
}

fn verify_signature(cert: &RawCertificate<'_>, issuer: &SubjectPublicKeyInfoRef<'_>) -> bool {
    let curve = key_curve(&issuer.algorithm);
    let Some(alg) = verification_algorithm(&cert.signature_algorithm, curve) else {
        return false;
    };
    let Ok(tbs) = cert.tbs_certificate.to_der() else {
        return false;
    };
    UnparsedPublicKey::new(alg, issuer.subject_public_key.raw_bytes())
        .verify(&tbs, cert.signature.raw_bytes())
        .is_ok()
}

/// The aws-lc-rs algorithm for a signature algorithm identifier: RSA PKCS#1 v1.5 with
/// SHA-1 (old certificates), SHA-256, SHA-384 or SHA-512; RSA-PSS by its hash; ECDSA by
/// the issuer key's curve (P-256, P-384, [`key_curve`]) and the hash; Ed25519. `None`
/// for the rest.
fn verification_algorithm(
    sig: &AlgorithmIdentifierRef<'_>,
    curve: Option<ObjectIdentifier>,
) -> Option<&'static dyn VerificationAlgorithm> {
    let curve = || curve;
    Some(match sig.oid {
        o if o == OID_SHA1_RSA || o == OID_SHA1_RSA_OIW => {
            &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        o if o == OID_SHA256_RSA => &signature::RSA_PKCS1_2048_8192_SHA256,
        o if o == OID_SHA384_RSA => &signature::RSA_PKCS1_2048_8192_SHA384,
        o if o == OID_SHA512_RSA => &signature::RSA_PKCS1_2048_8192_SHA512,
        o if o == OID_RSA_PSS => {
            let params = sig
                .parameters?
                .decode_as::<pkcs1::RsaPssParams<'_>>()
                .ok()?;
            match params.hash.oid {
                h if h == OID_SHA256 => &signature::RSA_PSS_2048_8192_SHA256,
                h if h == OID_SHA384 => &signature::RSA_PSS_2048_8192_SHA384,
                h if h == OID_SHA512 => &signature::RSA_PSS_2048_8192_SHA512,
                _ => return None,
            }
        }
        o if o == OID_ECDSA_SHA256 => match curve()? {
            c if c == OID_P256 => &signature::ECDSA_P256_SHA256_ASN1,
            c if c == OID_P384 => &signature::ECDSA_P384_SHA256_ASN1,
            _ => return None,
        },
        o if o == OID_ECDSA_SHA384 => match curve()? {
            c if c == OID_P256 => &signature::ECDSA_P256_SHA384_ASN1,
            c if c == OID_P384 => &signature::ECDSA_P384_SHA384_ASN1,
            _ => return None,
        },
        o if o == OID_ED25519 => &signature::ED25519,
        _ => return None,
    })
}

/// The named curve of an EC key's algorithm identifier; `None` for other keys.
fn key_curve(key: &AlgorithmIdentifierRef<'_>) -> Option<ObjectIdentifier> {
    key.parameters
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
}

/// Lower-case hex of a DER INTEGER's content bytes without leading zeros.
pub fn serial_hex(raw: &[u8]) -> String {
    let mut s = String::with_capacity(2 * raw.len());
    for b in raw {
        // Writing into a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

/// The certificates of a PEM file, in order. Non-certificate blocks are ignored here.
pub fn certificates(blocks: &[PemBlock]) -> Result<Vec<CertFacts>, PkiError> {
    blocks
        .iter()
        .filter(|b| b.tag == "CERTIFICATE")
        .map(|b| CertFacts::from_der(&b.der))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_leading_zeros() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x00]), "0");
        assert_eq!(serial_hex(&[0x0a]), "a");
    }
}

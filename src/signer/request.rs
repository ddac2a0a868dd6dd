//! A CSR's `spec.request` read as a signer must: bounded, strict PEM, one PKCS#10
//! request whose self-signature verifies (the sender holds the key), and the key and
//! names it asks for. Every refusal is a sentence for the CSR's `Failed` condition.

use der::asn1::{AnyRef, BitStringRef, ObjectIdentifier};
use der::{Decode, Encode, Reader, Sequence, SliceReader};
use spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::request::CertReqInfo;

use crate::pki::{self, uint_bits};

/// The largest spec.request accepted (a CSR is a few hundred bytes; an RSA-8192 one
/// with many SANs stays far below this).
pub const MAX_REQUEST_BYTES: usize = 64 << 10;

/// `spec.request` (the API carries []byte as base64) decoded to its PEM, bounded before
/// decoding. `Err` is the reason, in a person's words.
pub fn decode_request(b64: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if b64.len() > MAX_REQUEST_BYTES * 4 / 3 + 4 {
        return Err(format!(
            "the request is {} bytes of base64, more than this signer reads",
            b64.len()
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("spec.request is not base64: {e}"))
}
/// The smallest RSA key issued for (NIST SP 800-131A; aws-lc verifies no less).
pub const MIN_RSA_BITS: usize = 2048;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_EXTENSION_REQUEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");
const OID_SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// The key a request carries, as the configuration names algorithms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: usize },
    Ecdsa { curve: &'static str },
    Ed25519,
}

impl KeyKind {
    /// The `key_algorithms` word for this key.
    pub fn algorithm(&self) -> &'static str {
        match self {
            KeyKind::Rsa { .. } => "rsa",
            KeyKind::Ecdsa { .. } => "ecdsa",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::Ecdsa { curve } => write!(f, "ECDSA {curve}"),
            KeyKind::Ed25519 => write!(f, "Ed25519"),
        }
    }
}

/// What a verified request asks for.
#[derive(Clone, Debug)]
pub struct ParsedRequest {
    /// The subject Name's DER as the request holds it.
    pub raw_subject: Vec<u8>,
    /// The SubjectPublicKeyInfo's DER.
    pub spki: Vec<u8>,
    pub key: KeyKind,
    /// The requested SubjectAltName extension, as requested (DNS, IP, URI, email).
    pub san: Option<SubjectAltName>,
}

/// CertificationRequest ::= SEQUENCE, the info kept as its bytes for the signature.
#[derive(Sequence)]
struct RawRequest<'a> {
    info: AnyRef<'a>,
    algorithm: AlgorithmIdentifierRef<'a>,
    signature: BitStringRef<'a>,
}

/// The info's subject and key as written (x509-cert's types re-encode names).
struct RawInfo<'a> {
    version: u8,
    subject: AnyRef<'a>,
    public_key: SubjectPublicKeyInfoRef<'a>,
}

/// Reads spec.request (PEM bytes: the API decoded its base64 already).
pub fn parse_request(pem: &[u8]) -> Result<ParsedRequest, String> {
    if pem.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request is {} bytes, more than the {MAX_REQUEST_BYTES} this signer reads",
            pem.len()
        ));
    }
    let blocks = pki::parse_pem(pem).map_err(|e| format!("spec.request is not PEM: {e}"))?;
    let der = match blocks.as_slice() {
        [b] if b.tag == "CERTIFICATE REQUEST" || b.tag == "NEW CERTIFICATE REQUEST" => &b.der,
        [b] => {
            return Err(format!(
                "spec.request holds a {} block, not a CERTIFICATE REQUEST",
                b.tag
            ))
        }
        _ => {
            return Err(format!(
                "spec.request holds {} PEM blocks, not one CERTIFICATE REQUEST",
                blocks.len()
            ))
        }
    };
    let malformed = |e: der::Error| format!("spec.request is not a valid PKCS#10 request: {e}");
    let mut reader = SliceReader::new(der).map_err(malformed)?;
    let raw = RawRequest::decode(&mut reader).map_err(malformed)?;
    if !reader.is_finished() {
        return Err("spec.request has bytes after the PKCS#10 request".into());
    }
    let info_der = raw.info.to_der().map_err(malformed)?;
    let mut ir = SliceReader::new(&info_der).map_err(malformed)?;
    let info_raw: RawInfo<'_> = ir
        .sequence(|r| {
            let info = RawInfo {
                version: r.decode()?,
                subject: r.decode()?,
                public_key: r.decode()?,
            };
            // The attributes, read below with x509-cert's types.
            while !r.is_finished() {
                let _: AnyRef<'_> = r.decode()?;
            }
            Ok(info)
        })
        .map_err(malformed)?;
    if info_raw.version != 0 {
        return Err(format!(
            "the request's version is {}, not PKCS#10 v1 (0)",
            info_raw.version
        ));
    }
    // The key first: a key too weak to verify (RSA-1024) is refused for what it is.
    let key = key_kind(&info_raw.public_key)?;
    if let KeyKind::Rsa { bits } = key {
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "the request's key is RSA-{bits}; this signer issues for RSA keys of {MIN_RSA_BITS} bits or more"
            ));
        }
    }
    if !pki::signature_verifies(
        &info_der,
        &raw.algorithm,
        &info_raw.public_key,
        raw.signature.raw_bytes(),
    ) {
        return Err(format!(
            "the request's signature ({}) does not verify with its own key: the sender does not prove it holds the key",
            raw.algorithm.oid
        ));
    }
    let info = CertReqInfo::from_der(&info_der).map_err(malformed)?;
    let mut san = None;
    for attr in info.attributes.iter() {
        if attr.oid != OID_EXTENSION_REQUEST {
            continue;
        }
        for v in attr.values.iter() {
            let exts: Vec<x509_cert::ext::Extension> = v.decode_as().map_err(malformed)?;
            for x in exts.iter().filter(|x| x.extn_id == OID_SAN) {
                let s = SubjectAltName::from_der(x.extn_value.as_bytes()).map_err(malformed)?;
                for g in &s.0 {
                    if !matches!(
                        g,
                        GeneralName::DnsName(_)
                            | GeneralName::IpAddress(_)
                            | GeneralName::UniformResourceIdentifier(_)
                            | GeneralName::Rfc822Name(_)
                    ) {
                        return Err(format!(
                            "the request asks for a SAN this signer does not issue ({}); DNS, IP, URI and email SANs are",
                            crate::ca::remote::csr::san_of(g)
                        ));
                    }
                }
                san = Some(s);
            }
        }
    }
    Ok(ParsedRequest {
        raw_subject: info_raw.subject.to_der().map_err(malformed)?,
        spki: info_raw.public_key.to_der().map_err(malformed)?,
        key,
        san,
    })
}

fn key_kind(spki: &SubjectPublicKeyInfoRef<'_>) -> Result<KeyKind, String> {
    let oid = spki.algorithm.oid;
    if oid == OID_RSA {
        let k = pkcs1::RsaPublicKey::from_der(spki.subject_public_key.raw_bytes())
            .map_err(|e| format!("the request's RSA key is malformed: {e}"))?;
        return Ok(KeyKind::Rsa {
            bits: uint_bits(k.modulus.as_bytes()),
        });
    }
    if oid == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        return match curve {
            Some(c) if c == OID_P256 => Ok(KeyKind::Ecdsa { curve: "P-256" }),
            Some(c) if c == OID_P384 => Ok(KeyKind::Ecdsa { curve: "P-384" }),
            Some(c) => Err(format!(
                "the request's key is on EC curve {c}; this signer issues for P-256 and P-384"
            )),
            None => Err("the request's EC key names no curve".into()),
        };
    }
    if oid == OID_ED25519 {
        return Ok(KeyKind::Ed25519);
    }
    Err(format!(
        "the request's key algorithm {oid} is not one this signer issues for (RSA, ECDSA, Ed25519)"
    ))
}

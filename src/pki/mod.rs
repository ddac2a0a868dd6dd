//! Reading and holding PKI material: strict PEM, certificate facts, private keys.
//!
//! Everything here is pure (bytes in, values out); the callers attach the file path to
//! errors. Private key bytes never appear in `Debug` output or error messages.

pub mod x509;

#[cfg(test)]
mod facts_tests;

use std::fmt;

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use spki::AlgorithmIdentifierOwned;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

/// A problem with the content of a PKI file. The caller adds the path.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct PkiError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, PkiError> {
    Err(PkiError(msg.into()))
}

/// One PEM block: its tag ("CERTIFICATE", "RSA PRIVATE KEY", ...) and DER contents.
#[derive(Clone)]
pub struct PemBlock {
    pub tag: String,
    pub der: Vec<u8>,
}

impl fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key blocks must never reach a log through a stray `{:?}`.
        write!(f, "PemBlock({}, {} bytes)", self.tag, self.der.len())
    }
}

/// Splits a PEM file into blocks, strictly: anything but white space between blocks, a
/// BEGIN without its END, or bad base64 is an error. Go's and OpenSSL's readers skip
/// junk silently; we refuse it because a file with junk in it was not written by kubeadm
/// or the kubelet and renewing it would hide the damage.
pub fn parse_pem(text: &[u8]) -> Result<Vec<PemBlock>, PkiError> {
    let Ok(text) = std::str::from_utf8(text) else {
        return err("not a PEM file (contains bytes that are not UTF-8)");
    };
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(tag) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            return err(format!(
                "unexpected text outside a PEM block at line {}",
                n + 1
            ));
        };
        let end = format!("-----END {tag}-----");
        let mut body = String::new();
        let mut closed = false;
        for (_, line) in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            if line.contains(':') {
                // RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted legacy key.
                return err(format!(
                    "PEM block {tag} has headers (encrypted key?), which is not supported"
                ));
            }
            body.push_str(line);
        }
        if !closed {
            return err(format!(
                "truncated PEM: block {tag} starting at line {} has no END line",
                n + 1
            ));
        }
        use base64::Engine;
        let der = match base64::engine::general_purpose::STANDARD.decode(body.as_bytes()) {
            Ok(d) => d,
            Err(e) => return err(format!("PEM block {tag} is not valid base64: {e}")),
        };
        blocks.push(PemBlock {
            tag: tag.to_string(),
            der,
        });
    }
    if blocks.is_empty() {
        return err("no PEM block found");
    }
    Ok(blocks)
}

/// Encodes one PEM block with 64-column lines, as Go's encoding/pem does.
pub fn encode_pem(tag: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

/// What we need to know of one X.509 certificate.
#[derive(Clone, Debug)]
pub struct CertFacts {
    pub der: Vec<u8>,
    /// One-line subject as OpenSSL prints it with RFC 2253 order reversed: `CN=…, O=…`.
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
    pub raw_subject: Vec<u8>,
    pub raw_issuer: Vec<u8>,
    /// The subjectPublicKey bits of the SPKI (RSAPublicKey DER, or the EC point).
    pub public_key: Vec<u8>,
}

impl CertFacts {
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, cert) = match X509Certificate::from_der(der) {
            Ok(v) => v,
            Err(e) => return err(format!("not a valid X.509 certificate: {e}")),
        };
        if !rest.is_empty() {
            return err("trailing bytes after the certificate's DER");
        }
        let tbs = &cert.tbs_certificate;
        let raw_serial = tbs.raw_serial();
        if raw_serial.first().is_some_and(|b| b & 0x80 != 0) {
            // RFC 5280 4.1.2.2: serials are positive. Go ≥ 1.23 (the kubelet, the API
            // server) refuses to parse such a certificate at all.
            return err("certificate has a negative serial number (RFC 5280 requires a positive one; Go refuses it)");
        }
        let serial = serial_hex(raw_serial);
        let mut is_ca = false;
        let mut skid = None;
        let mut akid = None;
        for ext in tbs.extensions() {
            use x509_parser::extensions::ParsedExtension;
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
                ParsedExtension::SubjectKeyIdentifier(k) => skid = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    akid = a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                ParsedExtension::UnsupportedExtension { .. } => {}
                ParsedExtension::ParseError { error } => {
                    return err(format!("extension {} cannot be parsed: {error}", ext.oid))
                }
                _ => {}
            }
        }
        Ok(CertFacts {
            der: der.to_vec(),
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            serial,
            not_before: tbs.validity.not_before.to_datetime(),
            not_after: tbs.validity.not_after.to_datetime(),
            is_ca,
            self_issued: tbs.subject.as_raw() == tbs.issuer.as_raw(),
            subject_key_id: skid,
            authority_key_id: akid,
            raw_subject: tbs.subject.as_raw().to_vec(),
            raw_issuer: tbs.issuer.as_raw().to_vec(),
            public_key: tbs.subject_pki.subject_public_key.data.to_vec(),
        })
    }

    /// Whether `ca` signed this certificate: names and key ids agree and the signature
    /// verifies with the CA's public key.
    pub fn is_signed_by(&self, ca: &CertFacts) -> bool {
        if self.raw_issuer != ca.raw_subject {
            return false;
        }
        if let (Some(a), Some(s)) = (&self.authority_key_id, &ca.subject_key_id) {
            if a != s {
                return false;
            }
        }
        let (Ok((_, me)), Ok((_, them))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&ca.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(them.public_key())).is_ok()
    }

    pub fn lifetime(&self) -> time::Duration {
        self.not_after - self.not_before
    }
}

/// Lower-case hex of a DER INTEGER's content bytes without leading zeros.
pub fn serial_hex(raw: &[u8]) -> String {
    let s: String = raw.iter().map(|b| format!("{b:02x}")).collect();
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

/// The key algorithms kubeadm, the kubelet and OpenSSL produce for Kubernetes PKI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa { bits: usize },
    EcdsaP256,
    EcdsaP384,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::EcdsaP256 => write!(f, "ECDSA-P256"),
            KeyAlgorithm::EcdsaP384 => write!(f, "ECDSA-P384"),
        }
    }
}

/// How a key file was written, so a renewed key is written the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEncoding {
    /// "RSA PRIVATE KEY" (kubeadm's RSA format).
    Pkcs1,
    /// "EC PRIVATE KEY" (kubeadm's and the kubelet's ECDSA format).
    Sec1,
    /// "PRIVATE KEY".
    Pkcs8,
}

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_SHA256_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// A private key, normalised to the PKCS#8 form ring loads, remembering its algorithm and
/// the encoding of the file it came from.
pub struct PrivateKey {
    pub algorithm: KeyAlgorithm,
    pub encoding: KeyEncoding,
    pkcs8: Zeroizing<Vec<u8>>,
    /// subjectPublicKey bits, comparable with [`CertFacts::public_key`].
    public_key: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey({}, {:?}, <redacted>)",
            self.algorithm, self.encoding
        )
    }
}

impl PrivateKey {
    /// The first private key among PEM blocks (EC PARAMETERS blocks are skipped).
    pub fn from_blocks(blocks: &[PemBlock]) -> Result<Option<Self>, PkiError> {
        for b in blocks {
            match b.tag.as_str() {
                "RSA PRIVATE KEY" => return Self::from_pkcs1(&b.der).map(Some),
                "EC PRIVATE KEY" => return Self::from_sec1(&b.der, KeyEncoding::Sec1).map(Some),
                "PRIVATE KEY" => return Self::from_pkcs8(&b.der).map(Some),
                "ENCRYPTED PRIVATE KEY" => return err("encrypted private keys are not supported"),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Loads a key from a PEM file's bytes; an error when there is none.
    pub fn from_pem(text: &[u8]) -> Result<Self, PkiError> {
        let blocks = parse_pem(text)?;
        match Self::from_blocks(&blocks)? {
            Some(k) => Ok(k),
            None => err("no private key block found"),
        }
    }

    fn from_pkcs1(der: &[u8]) -> Result<Self, PkiError> {
        let k = match pkcs1::RsaPrivateKey::from_der(der) {
            Ok(k) => k,
            Err(e) => return err(format!("malformed PKCS#1 RSA key: {e}")),
        };
        let bits = uint_bits(k.modulus.as_bytes());
        let public = pkcs1::RsaPublicKey {
            modulus: k.modulus,
            public_exponent: k.public_exponent,
        }
        .to_der()
        .map_err(|e| PkiError(format!("RSA public key: {e}")))?;
        let info = pkcs8::PrivateKeyInfo {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: OID_RSA,
                parameters: Some(der::asn1::AnyRef::NULL),
            },
            private_key: der,
            public_key: None,
        };
        let pkcs8 = Zeroizing::new(
            info.to_der()
                .map_err(|e| PkiError(format!("re-encoding RSA key: {e}")))?,
        );
        let key = PrivateKey {
            algorithm: KeyAlgorithm::Rsa { bits },
            encoding: KeyEncoding::Pkcs1,
            pkcs8,
            public_key: public,
        };
        key.check_loadable()?;
        Ok(key)
    }

    fn from_sec1(der: &[u8], encoding: KeyEncoding) -> Result<Self, PkiError> {
        Self::from_sec1_with_curve(der, None, encoding)
    }

    fn from_sec1_with_curve(
        der: &[u8],
        curve: Option<ObjectIdentifier>,
        encoding: KeyEncoding,
    ) -> Result<Self, PkiError> {
        let k = match sec1::EcPrivateKey::from_der(der) {
            Ok(k) => k,
            Err(e) => return err(format!("malformed SEC1 EC key: {e}")),
        };
        let curve = match (k.parameters.and_then(|p| p.named_curve()), curve) {
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => return err("EC key names no curve"),
        };
        let algorithm = match curve {
            c if c == OID_P256 => KeyAlgorithm::EcdsaP256,
            c if c == OID_P384 => KeyAlgorithm::EcdsaP384,
            c => {
                return err(format!(
                    "EC curve {c} is not supported (P-256 and P-384 are)"
                ))
            }
        };
        let Some(public) = k.public_key else {
            return err("EC key carries no public key (re-export it with OpenSSL or Go)");
        };
        // ring wants the inner ECPrivateKey without the [0] parameters field.
        let inner = sec1::EcPrivateKey {
            private_key: k.private_key,
            parameters: None,
            public_key: Some(public),
        };
        let inner = Zeroizing::new(
            inner
                .to_der()
                .map_err(|e| PkiError(format!("re-encoding EC key: {e}")))?,
        );
        let params = der::asn1::AnyRef::from(&curve);
        let info = pkcs8::PrivateKeyInfo {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: OID_EC,
                parameters: Some(params),
            },
            private_key: &inner,
            public_key: None,
        };
        let pkcs8 = Zeroizing::new(
            info.to_der()
                .map_err(|e| PkiError(format!("re-encoding EC key: {e}")))?,
        );
        let key = PrivateKey {
            algorithm,
            encoding,
            pkcs8,
            public_key: public.to_vec(),
        };
        key.check_loadable()?;
        Ok(key)
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, PkiError> {
        let info = match pkcs8::PrivateKeyInfo::from_der(der) {
            Ok(i) => i,
            Err(e) => return err(format!("malformed PKCS#8 key: {e}")),
        };
        match info.algorithm.oid {
            o if o == OID_RSA => {
                let mut k = Self::from_pkcs1(info.private_key)?;
                k.encoding = KeyEncoding::Pkcs8;
                Ok(k)
            }
            o if o == OID_EC => {
                let curve = info
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                Self::from_sec1_with_curve(info.private_key, curve, KeyEncoding::Pkcs8)
            }
            o => err(format!("private key algorithm {o} is not supported")),
        }
    }

    /// A new key of the given algorithm. RSA comes from aws-lc-rs, because ring cannot
    /// generate RSA keys (docs/crypto.md); ECDSA from ring.
    pub fn generate(algorithm: KeyAlgorithm, encoding: KeyEncoding) -> Result<Self, PkiError> {
        let pkcs8: Zeroizing<Vec<u8>> = match algorithm {
            KeyAlgorithm::Rsa { bits } => {
                use aws_lc_rs::encoding::AsDer;
                use aws_lc_rs::rsa::{KeyPair as AwsRsa, KeySize};
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    8192 => KeySize::Rsa8192,
                    b => return err(format!("cannot generate an RSA key of {b} bits")),
                };
                let kp = AwsRsa::generate(size)
                    .map_err(|_| PkiError("RSA key generation failed".into()))?;
                let der = kp
                    .as_der()
                    .map_err(|_| PkiError("RSA key encoding failed".into()))?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let alg = if algorithm == KeyAlgorithm::EcdsaP256 {
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let doc = EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
                    .map_err(|_| PkiError("ECDSA key generation failed".into()))?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
        };
        let mut key = Self::from_pkcs8(&pkcs8)?;
        key.encoding = encoding;
        Ok(key)
    }

    fn check_loadable(&self) -> Result<(), PkiError> {
        self.signer().map(|_| ())
    }

    fn signer(&self) -> Result<Signer, PkiError> {
        let rng = SystemRandom::new();
        match self.algorithm {
            KeyAlgorithm::Rsa { .. } => RsaKeyPair::from_pkcs8(&self.pkcs8)
                .map(Signer::Rsa)
                .map_err(|e| PkiError(format!("RSA key rejected: {e}"))),
            KeyAlgorithm::EcdsaP256 => EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &self.pkcs8,
                &rng,
            )
            .map(Signer::Ec)
            .map_err(|e| PkiError(format!("EC key rejected: {e}"))),
            KeyAlgorithm::EcdsaP384 => EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                &self.pkcs8,
                &rng,
            )
            .map(Signer::Ec)
            .map_err(|e| PkiError(format!("EC key rejected: {e}"))),
        }
    }

    /// subjectPublicKey bits, to compare with a certificate's.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Whether this key belongs to the certificate.
    pub fn matches(&self, cert: &CertFacts) -> bool {
        self.public_key == cert.public_key
    }

    /// DER SubjectPublicKeyInfo of this key, for a certificate's TBS.
    pub fn spki(&self) -> Result<spki::SubjectPublicKeyInfoOwned, PkiError> {
        let (oid, params) = match self.algorithm {
            KeyAlgorithm::Rsa { .. } => (OID_RSA, Some(der::Any::null())),
            KeyAlgorithm::EcdsaP256 => (OID_EC, Some(der::Any::from(&OID_P256))),
            KeyAlgorithm::EcdsaP384 => (OID_EC, Some(der::Any::from(&OID_P384))),
        };
        Ok(spki::SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: params,
            },
            subject_public_key: der::asn1::BitString::from_bytes(&self.public_key)
                .map_err(|e| PkiError(format!("public key: {e}")))?,
        })
    }

    /// The signature algorithm Go's x509 uses with this key: SHA-256 with RSA,
    /// ECDSA with SHA-256 for P-256 and SHA-384 for P-384.
    pub fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        match self.algorithm {
            KeyAlgorithm::Rsa { .. } => AlgorithmIdentifierOwned {
                oid: OID_SHA256_RSA,
                parameters: Some(der::Any::null()),
            },
            KeyAlgorithm::EcdsaP256 => AlgorithmIdentifierOwned {
                oid: OID_ECDSA_SHA256,
                parameters: None,
            },
            KeyAlgorithm::EcdsaP384 => AlgorithmIdentifierOwned {
                oid: OID_ECDSA_SHA384,
                parameters: None,
            },
        }
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        let rng = SystemRandom::new();
        match self.signer()? {
            Signer::Rsa(kp) => {
                let mut sig = vec![0; kp.public().modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| PkiError("RSA signing failed".into()))?;
                Ok(sig)
            }
            Signer::Ec(kp) => kp
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| PkiError("ECDSA signing failed".into())),
        }
    }

    /// The key as a PEM file in its encoding (PKCS#1, SEC1 with the named curve, or PKCS#8).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, PkiError> {
        let info = pkcs8::PrivateKeyInfo::from_der(&self.pkcs8)
            .map_err(|e| PkiError(format!("key encoding: {e}")))?;
        let pem = match self.encoding {
            KeyEncoding::Pkcs8 => encode_pem("PRIVATE KEY", &self.pkcs8),
            KeyEncoding::Pkcs1 => encode_pem("RSA PRIVATE KEY", info.private_key),
            KeyEncoding::Sec1 => {
                let inner = sec1::EcPrivateKey::from_der(info.private_key)
                    .map_err(|e| PkiError(format!("key encoding: {e}")))?;
                let curve = match self.algorithm {
                    KeyAlgorithm::EcdsaP384 => OID_P384,
                    _ => OID_P256,
                };
                let full = sec1::EcPrivateKey {
                    private_key: inner.private_key,
                    parameters: Some(sec1::EcParameters::NamedCurve(curve)),
                    public_key: inner.public_key,
                };
                let der = Zeroizing::new(
                    full.to_der()
                        .map_err(|e| PkiError(format!("key encoding: {e}")))?,
                );
                encode_pem("EC PRIVATE KEY", &der)
            }
        };
        Ok(Zeroizing::new(pem))
    }
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// Bit length of a big-endian unsigned integer.
pub fn uint_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    bytes.len() * 8 - bytes[0].leading_zeros() as usize
}

/// Public key of an EC key pair as ring sees it; used by tests to cross-check.
pub fn ring_public_key(key: &PrivateKey) -> Result<Vec<u8>, PkiError> {
    Ok(match key.signer()? {
        Signer::Rsa(kp) => kp.public_key().as_ref().to_vec(),
        Signer::Ec(kp) => kp.public_key().as_ref().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_rejects_garbage_between_blocks_and_truncation() {
        let a = encode_pem("CERTIFICATE", b"abc");
        assert!(parse_pem(a.as_bytes()).is_ok());
        let junk = format!("{a}hello\n{a}");
        assert!(parse_pem(junk.as_bytes())
            .unwrap_err()
            .0
            .contains("outside a PEM block"));
        let cut = &a[..a.len() - 10];
        assert!(parse_pem(cut.as_bytes())
            .unwrap_err()
            .0
            .contains("truncated"));
        assert!(parse_pem(b"").unwrap_err().0.contains("no PEM block"));
    }

    #[test]
    fn serial_hex_strips_leading_zeros() {
        assert_eq!(serial_hex(&[0x00, 0x8f, 0x01]), "8f01");
        assert_eq!(serial_hex(&[0x00]), "0");
        assert_eq!(serial_hex(&[0x0a]), "a");
    }

    #[test]
    fn generated_keys_round_trip_in_every_encoding() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Rsa { bits: 2048 },
        ] {
            let encodings: &[KeyEncoding] = match alg {
                KeyAlgorithm::Rsa { .. } => &[KeyEncoding::Pkcs1, KeyEncoding::Pkcs8],
                _ => &[KeyEncoding::Sec1, KeyEncoding::Pkcs8],
            };
            for &enc in encodings {
                let k = PrivateKey::generate(alg, enc).unwrap();
                let pem = k.to_pem().unwrap();
                let back = PrivateKey::from_pem(pem.as_bytes()).unwrap();
                assert_eq!(back.algorithm, alg);
                assert_eq!(back.encoding, enc);
                assert_eq!(back.public_key(), k.public_key());
                assert_eq!(ring_public_key(&back).unwrap(), k.public_key());
                assert!(!format!("{back:?}").contains(&pem[40..60]));
            }
        }
    }
}

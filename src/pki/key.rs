//! Private keys: reading kubeadm's, the kubelet's and OpenSSL's encodings, generating,
//! signing, and writing a key back in the encoding of the file it replaces.
//!
//! A key is held as PKCS#8 in a `Zeroizing` buffer (aws-lc-rs loads that form for every
//! algorithm) together with the encoding it was read in. Key bytes never appear in
//! `Debug` output or error messages.
//!
//! Reading a key is cheap on purpose: its public half (RSA modulus and exponent, the EC
//! point) is taken from the key file's own structures, which is all that matching it
//! with its certificate needs. The full consistency check (aws-lc's `RSA_check_key`, the
//! EC point recomputed from the private scalar) costs far more than reading the file and
//! runs only when the key is about to be used: [`PrivateKey::check`], and implicitly
//! [`PrivateKey::sign`] and [`PrivateKey::to_pem`], so a key that fails it never signs
//! and is never written.

use std::fmt;
use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm, RsaKeyPair};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use super::cert::CertFacts;
use super::pem::{encode_pem, parse_pem, PemBlock};
use super::PkiError;

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

/// A private key, normalised to PKCS#8, remembering its algorithm and the encoding of the
/// file it came from.
pub struct PrivateKey {
    pub algorithm: KeyAlgorithm,
    pub encoding: KeyEncoding,
    pkcs8: Zeroizing<Vec<u8>>,
    /// subjectPublicKey bits, comparable with [`CertFacts::public_key`], as the key file
    /// states them (not yet checked against the private half).
    public_key: Vec<u8>,
    /// The key loaded into aws-lc, which is the full check: done at most once, when the
    /// key first signs or is checked before being installed (a CA key signs many leaves).
    loaded: OnceLock<Result<Signer, PkiError>>,
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

/// A der encoding failure while re-arranging key structures.
fn encoding(what: &'static str) -> impl Fn(der::Error) -> PkiError {
    move |source| PkiError::Encoding { what, source }
}

impl PrivateKey {
    /// The first private key among PEM blocks (EC PARAMETERS blocks are skipped).
    pub fn from_blocks(blocks: &[PemBlock]) -> Result<Option<Self>, PkiError> {
        for b in blocks {
            match b.tag.as_str() {
                "RSA PRIVATE KEY" => return Self::from_pkcs1(&b.der).map(Some),
                "EC PRIVATE KEY" => return Self::from_sec1(&b.der, KeyEncoding::Sec1).map(Some),
                "PRIVATE KEY" => return Self::from_pkcs8(&b.der).map(Some),
                "ENCRYPTED PRIVATE KEY" => return Err(PkiError::EncryptedKey),
                _ => {}
            }
        }
        Ok(None)
    }

    /// Loads a key from a PEM file's bytes; an error when there is none.
    pub fn from_pem(text: &[u8]) -> Result<Self, PkiError> {
        let blocks = parse_pem(text)?;
        Self::from_blocks(&blocks)?.ok_or(PkiError::NoPrivateKey)
    }

    fn from_pkcs1(der: &[u8]) -> Result<Self, PkiError> {
        let k = pkcs1::RsaPrivateKey::from_der(der).map_err(|source| PkiError::MalformedKey {
            encoding: "PKCS#1 RSA",
            source,
        })?;
        let bits = uint_bits(k.modulus.as_bytes());
        let public = pkcs1::RsaPublicKey {
            modulus: k.modulus,
            public_exponent: k.public_exponent,
        }
        .to_der()
        .map_err(encoding("RSA public key"))?;
        let info = pkcs8::PrivateKeyInfo {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: OID_RSA,
                parameters: Some(der::asn1::AnyRef::NULL),
            },
            private_key: der,
            public_key: None,
        };
        let pkcs8 = Zeroizing::new(info.to_der().map_err(encoding("re-encoding RSA key"))?);
        let key = PrivateKey {
            algorithm: KeyAlgorithm::Rsa { bits },
            encoding: KeyEncoding::Pkcs1,
            pkcs8,
            public_key: public,
            loaded: OnceLock::new(),
        };
        Ok(key)
    }

    fn from_sec1(der: &[u8], encoding: KeyEncoding) -> Result<Self, PkiError> {
        Self::from_sec1_with_curve(der, None, encoding)
    }

    fn from_sec1_with_curve(
        der: &[u8],
        curve: Option<ObjectIdentifier>,
        key_encoding: KeyEncoding,
    ) -> Result<Self, PkiError> {
        let k = sec1::EcPrivateKey::from_der(der).map_err(|source| PkiError::MalformedKey {
            encoding: "SEC1 EC",
            source,
        })?;
        let curve = match (k.parameters.and_then(|p| p.named_curve()), curve) {
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => return Err(PkiError::EcKeyWithoutCurve),
        };
        let algorithm = match curve {
            c if c == OID_P256 => KeyAlgorithm::EcdsaP256,
            c if c == OID_P384 => KeyAlgorithm::EcdsaP384,
            c => return Err(PkiError::UnsupportedCurve(c)),
        };
        let Some(public) = k.public_key else {
            return Err(PkiError::EcKeyWithoutPublicKey);
        };
        // In PKCS#8 the curve is named by the AlgorithmIdentifier, so the inner
        // ECPrivateKey leaves its [0] parameters out (RFC 5915 section 3).
        let inner = sec1::EcPrivateKey {
            private_key: k.private_key,
            parameters: None,
            public_key: Some(public),
        };
        let inner = Zeroizing::new(inner.to_der().map_err(encoding("re-encoding EC key"))?);
        let params = der::asn1::AnyRef::from(&curve);
        let info = pkcs8::PrivateKeyInfo {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: OID_EC,
                parameters: Some(params),
            },
            private_key: &inner,
            public_key: None,
        };
        let pkcs8 = Zeroizing::new(info.to_der().map_err(encoding("re-encoding EC key"))?);
        let key = PrivateKey {
            algorithm,
            encoding: key_encoding,
            pkcs8,
            public_key: public.to_vec(),
            loaded: OnceLock::new(),
        };
        Ok(key)
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, PkiError> {
        let info =
            pkcs8::PrivateKeyInfo::from_der(der).map_err(|source| PkiError::MalformedKey {
                encoding: "PKCS#8",
                source,
            })?;
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
            o => Err(PkiError::UnsupportedKeyAlgorithm(o)),
        }
    }

    /// A new key of the given algorithm, to be written in `encoding`.
    pub fn generate(algorithm: KeyAlgorithm, encoding: KeyEncoding) -> Result<Self, PkiError> {
        let failed = |_| PkiError::KeyGeneration(algorithm);
        let pkcs8: Zeroizing<Vec<u8>> = match algorithm {
            KeyAlgorithm::Rsa { bits } => {
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    8192 => KeySize::Rsa8192,
                    b => return Err(PkiError::UnsupportedRsaSize(b)),
                };
                let kp = aws_lc_rs::rsa::KeyPair::generate(size).map_err(failed)?;
                let der = kp.as_der().map_err(failed)?;
                Zeroizing::new(der.as_ref().to_vec())
            }
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let doc =
                    EcdsaKeyPair::generate_pkcs8(ecdsa_algorithm(algorithm), &SystemRandom::new())
                        .map_err(failed)?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
        };
        let mut key = Self::from_pkcs8(&pkcs8)?;
        key.encoding = encoding;
        Ok(key)
    }

    /// The full consistency check of the private key (for RSA: the primes, the private
    /// exponent and the CRT values against the modulus; for EC: the public point
    /// against the private scalar). Run it before the key signs or is installed: reading
    /// and [`Self::matches`] look only at the public half the file states.
    pub fn check(&self) -> Result<(), PkiError> {
        self.signer().map(|_| ())
    }

    fn signer(&self) -> Result<&Signer, PkiError> {
        self.loaded
            .get_or_init(|| {
                let rejected = |source| PkiError::KeyRejected {
                    algorithm: self.algorithm,
                    source,
                };
                match self.algorithm {
                    KeyAlgorithm::Rsa { .. } => RsaKeyPair::from_pkcs8(&self.pkcs8)
                        .map(Signer::Rsa)
                        .map_err(rejected),
                    KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                        EcdsaKeyPair::from_pkcs8(ecdsa_algorithm(self.algorithm), &self.pkcs8)
                            .map(Signer::Ec)
                            .map_err(rejected)
                    }
                }
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// subjectPublicKey bits, to compare with a certificate's.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Whether this key belongs to the certificate, by the public half the key file
    /// states (cheap: no consistency check of the private half, see [`Self::check`]).
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
                .map_err(encoding("public key"))?,
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

    /// Signs `message` with [`Self::signature_algorithm`].
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        let failed = |_| PkiError::Signing(self.algorithm);
        let rng = SystemRandom::new();
        match self.signer()? {
            Signer::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
            Signer::Ec(kp) => kp
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
        }
    }

    /// The key as a PEM file in its encoding (PKCS#1, SEC1 with the named curve, or PKCS#8).
    /// A key is written only to be installed, so it is checked fully first.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, PkiError> {
        self.check()?;
        let info =
            pkcs8::PrivateKeyInfo::from_der(&self.pkcs8).map_err(encoding("key encoding"))?;
        let pem = match self.encoding {
            KeyEncoding::Pkcs8 => encode_pem("PRIVATE KEY", &self.pkcs8),
            KeyEncoding::Pkcs1 => encode_pem("RSA PRIVATE KEY", info.private_key),
            KeyEncoding::Sec1 => {
                let inner = sec1::EcPrivateKey::from_der(info.private_key)
                    .map_err(encoding("key encoding"))?;
                let curve = match self.algorithm {
                    KeyAlgorithm::EcdsaP384 => OID_P384,
                    _ => OID_P256,
                };
                let full = sec1::EcPrivateKey {
                    private_key: inner.private_key,
                    parameters: Some(sec1::EcParameters::NamedCurve(curve)),
                    public_key: inner.public_key,
                };
                let der = Zeroizing::new(full.to_der().map_err(encoding("key encoding"))?);
                encode_pem("EC PRIVATE KEY", &der)
            }
        };
        Ok(Zeroizing::new(pem))
    }

    /// The public key as aws-lc-rs derives it from the private key, independently of the
    /// copy read from the file; tests cross-check the two.
    #[cfg(test)]
    fn derived_public_key(&self) -> Result<Vec<u8>, PkiError> {
        use aws_lc_rs::signature::KeyPair;
        Ok(match self.signer()? {
            Signer::Rsa(kp) => kp.public_key().as_ref().to_vec(),
            Signer::Ec(kp) => kp.public_key().as_ref().to_vec(),
        })
    }
}

fn ecdsa_algorithm(algorithm: KeyAlgorithm) -> &'static EcdsaSigningAlgorithm {
    match algorithm {
        KeyAlgorithm::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        _ => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
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

#[cfg(test)]
#[path = "key_tests.rs"]
mod public_half_tests;

#[cfg(test)]
mod tests {
    use super::*;

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
                assert_eq!(back.derived_public_key().unwrap(), k.public_key());
                assert!(!format!("{back:?}").contains(&pem[40..60]));
            }
        }
    }

    fn openssl(args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}");
        out.stdout
    }

    /// Keys as OpenSSL writes them (which is how kubeadm's look) come back byte for byte.
    #[test]
    fn openssl_keys_are_written_back_exactly_as_read() {
        let cases: [(&[&str], KeyAlgorithm, KeyEncoding); 5] = [
            (
                &["genrsa", "-traditional", "2048"],
                KeyAlgorithm::Rsa { bits: 2048 },
                KeyEncoding::Pkcs1,
            ),
            (
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:3072",
                ],
                KeyAlgorithm::Rsa { bits: 3072 },
                KeyEncoding::Pkcs8,
            ),
            (
                &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
                KeyAlgorithm::EcdsaP256,
                KeyEncoding::Sec1,
            ),
            (
                &["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
                KeyAlgorithm::EcdsaP384,
                KeyEncoding::Sec1,
            ),
            (
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ],
                KeyAlgorithm::EcdsaP256,
                KeyEncoding::Pkcs8,
            ),
        ];
        for (args, alg, enc) in cases {
            let pem = openssl(args);
            let k = PrivateKey::from_pem(&pem).unwrap();
            assert_eq!((k.algorithm, k.encoding), (alg, enc), "{args:?}");
            assert_eq!(k.to_pem().unwrap().as_bytes(), &pem[..], "{args:?}");
            assert_eq!(k.derived_public_key().unwrap(), k.public_key(), "{args:?}");
            let sig = k.sign(b"tbs").unwrap();
            assert!(!sig.is_empty());
        }
        // A leading EC PARAMETERS block (`openssl ecparam -genkey` without -noout) is
        // skipped; the key itself is written back alone.
        let both = openssl(&["ecparam", "-name", "prime256v1", "-genkey"]);
        let k = PrivateKey::from_pem(&both).unwrap();
        let text = std::str::from_utf8(&both).unwrap();
        let key_block = &text[text.find("-----BEGIN EC PRIVATE KEY").unwrap()..];
        assert_eq!(k.to_pem().unwrap().as_str(), key_block);
    }

    #[test]
    fn key_errors_name_the_problem() {
        let e = PrivateKey::from_pem(super::encode_pem("CERTIFICATE", b"x").as_bytes());
        assert_eq!(e.unwrap_err(), PkiError::NoPrivateKey);
        let e = PrivateKey::from_pem(super::encode_pem("ENCRYPTED PRIVATE KEY", b"x").as_bytes());
        assert_eq!(e.unwrap_err(), PkiError::EncryptedKey);
        let e = PrivateKey::from_pem(super::encode_pem("RSA PRIVATE KEY", b"x").as_bytes());
        assert!(e
            .unwrap_err()
            .to_string()
            .starts_with("malformed PKCS#1 RSA key"));
        let e = PrivateKey::generate(KeyAlgorithm::Rsa { bits: 1024 }, KeyEncoding::Pkcs1);
        assert_eq!(e.unwrap_err(), PkiError::UnsupportedRsaSize(1024));
    }
}

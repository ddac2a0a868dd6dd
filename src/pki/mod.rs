//! Reading and holding PKI material: strict PEM, certificate facts, private keys, and
//! building certificates.
//!
//! One stack (docs/crypto.md): aws-lc-rs for every cryptographic operation, the RustCrypto
//! `der`/`x509-cert` family for every ASN.1 structure. Everything here is pure (bytes in,
//! values out); the callers attach the file path to errors. Private key bytes never
//! appear in `Debug` output or error messages.

mod cert;
mod key;
mod name;
mod pem;
pub mod sans;
pub mod x509;

#[cfg(test)]
mod facts_tests;
#[cfg(test)]
mod signature_tests;
#[cfg(test)]
mod testcerts;

use der::asn1::ObjectIdentifier;
use time::OffsetDateTime;

pub use cert::{certificates, serial_hex, signature_verifies, CertFacts};
pub use key::{uint_bits, KeyAlgorithm, KeyEncoding, PrivateKey};
pub use name::{name_attributes, name_to_string, name_values};
pub use pem::{encode_pem, parse_pem, PemBlock};
pub use sans::{alt_names, AltNames};

/// A problem with the content of a PKI file or with building a certificate. The caller
/// adds the path.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PkiError {
    #[error("not a PEM file (contains bytes that are not UTF-8)")]
    PemNotUtf8,
    #[error("unexpected text outside a PEM block at line {line}")]
    PemOutsideBlock { line: usize },
    #[error("PEM block {tag} has headers (encrypted key?), which is not supported")]
    PemHeaders { tag: String },
    #[error("truncated PEM: block {tag} starting at line {line} has no END line")]
    PemTruncated { tag: String, line: usize },
    #[error("PEM block {tag} is not valid base64: {source}")]
    PemBase64 {
        tag: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("no PEM block found")]
    NoPemBlock,

    #[error("not a valid X.509 certificate: {0}")]
    MalformedCertificate(#[source] der::Error),
    #[error("trailing bytes after the certificate's DER")]
    TrailingBytes,
    #[error("certificate has a negative serial number (RFC 5280 requires a positive one; Go refuses it)")]
    NegativeSerial,
    #[error("extension {oid} cannot be parsed: {source}")]
    MalformedExtension {
        oid: ObjectIdentifier,
        #[source]
        source: der::Error,
    },
    #[error("extension {oid} appears more than once (RFC 5280 forbids it; Go refuses it)")]
    DuplicateExtension { oid: ObjectIdentifier },

    #[error("no private key block found")]
    NoPrivateKey,
    #[error("encrypted private keys are not supported")]
    EncryptedKey,
    #[error("malformed {encoding} key: {source}")]
    MalformedKey {
        encoding: &'static str,
        #[source]
        source: der::Error,
    },
    #[error("EC key names no curve")]
    EcKeyWithoutCurve,
    #[error("EC curve {0} is not supported (P-256 and P-384 are)")]
    UnsupportedCurve(ObjectIdentifier),
    #[error("EC key carries no public key (re-export it with OpenSSL or Go)")]
    EcKeyWithoutPublicKey,
    #[error("private key algorithm {0} is not supported")]
    UnsupportedKeyAlgorithm(ObjectIdentifier),
    #[error("{algorithm} key rejected: {source}")]
    KeyRejected {
        algorithm: KeyAlgorithm,
        #[source]
        source: aws_lc_rs::error::KeyRejected,
    },
    #[error("cannot generate an RSA key of {0} bits (2048, 3072, 4096 or 8192 can be)")]
    UnsupportedRsaSize(usize),
    #[error("{0} key generation failed")]
    KeyGeneration(KeyAlgorithm),
    #[error("{0} signing failed")]
    Signing(KeyAlgorithm),

    #[error("{what}: {source}")]
    Encoding {
        what: &'static str,
        #[source]
        source: der::Error,
    },
    #[error("no randomness available for {0}")]
    NoRandomness(&'static str),
    #[error("time {0} cannot be written into a certificate (before 1970)")]
    TimeBefore1970(OffsetDateTime),
}

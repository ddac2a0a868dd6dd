//! Certificates assembled from raw DER for the pki tests, so that a test controls every
//! byte a reader sees: string types, RDN grouping, even SET order a DER encoder would
//! not emit, serials, validity and extensions.

use der::asn1::{ObjectIdentifier, OctetString};
use der::Encode;
use time::macros::datetime;
use time::OffsetDateTime;
use x509_cert::ext::Extension;

use super::x509::validity;
use super::{CertFacts, KeyAlgorithm, KeyEncoding, PrivateKey};

pub(super) const PRINTABLE: u8 = 0x13;
pub(super) const UTF8: u8 = 0x0c;
pub(super) const IA5: u8 = 0x16;
pub(super) const T61: u8 = 0x14;
pub(super) const BMP: u8 = 0x1e;
pub(super) const UNIVERSAL: u8 = 0x1c;
pub(super) const INTEGER: u8 = 0x02;

pub(super) const CN: &str = "2.5.4.3";
pub(super) const O: &str = "2.5.4.10";

/// A DER TLV with a definite length.
pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A Name from RDNs of (attribute type, string tag, value bytes), in exactly the given
/// order: no DER sorting of multi-valued RDNs.
pub(super) fn raw_name(rdns: &[&[(&str, u8, &[u8])]]) -> Vec<u8> {
    let mut seq = Vec::new();
    for rdn in rdns {
        let mut set = Vec::new();
        for (oid, tag, value) in rdn.iter() {
            let mut atv = ObjectIdentifier::new_unwrap(oid).to_der().unwrap();
            atv.extend(tlv(*tag, value));
            set.extend(tlv(0x30, &atv));
        }
        seq.extend(tlv(0x31, &set));
    }
    tlv(0x30, &seq)
}

/// One printable-string RDN per (type, value).
pub(super) fn simple_name(rdns: &[(&str, &str)]) -> Vec<u8> {
    let owned: Vec<[(&str, u8, &[u8]); 1]> = rdns
        .iter()
        .map(|(oid, v)| [(*oid, PRINTABLE, v.as_bytes())])
        .collect();
    let refs: Vec<&[(&str, u8, &[u8])]> = owned.iter().map(|r| &r[..]).collect();
    raw_name(&refs)
}

pub(super) struct Raw<'a> {
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub serial: &'a [u8],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub extensions: Vec<Extension>,
    pub subject_key: &'a dyn TestKey,
    pub signer: &'a dyn TestKey,
}

/// What the assembler needs of a key: [`PrivateKey`], or a test-only key of an algorithm
/// the renewal never creates (Ed25519, RSA-PSS, RSA with SHA-512).
pub(super) trait TestKey {
    fn spki(&self) -> Vec<u8>;
    fn algorithm(&self) -> Vec<u8>;
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}

impl TestKey for PrivateKey {
    fn spki(&self) -> Vec<u8> {
        PrivateKey::spki(self).unwrap().to_der().unwrap()
    }
    fn algorithm(&self) -> Vec<u8> {
        self.signature_algorithm().to_der().unwrap()
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        PrivateKey::sign(self, message).unwrap()
    }
}

/// A v3 certificate assembled from the parts in `r`, signed by `r.signer`.
pub(super) fn build(r: &Raw<'_>) -> Vec<u8> {
    let alg = r.signer.algorithm();
    let mut tbs = tlv(0xa0, &tlv(INTEGER, &[2]));
    tbs.extend(tlv(INTEGER, r.serial));
    tbs.extend(&alg);
    tbs.extend(&r.issuer);
    tbs.extend(
        validity(r.not_before, r.not_after)
            .unwrap()
            .to_der()
            .unwrap(),
    );
    tbs.extend(&r.subject);
    tbs.extend(r.subject_key.spki());
    if !r.extensions.is_empty() {
        let exts: Vec<u8> = r
            .extensions
            .iter()
            .flat_map(|x| x.to_der().unwrap())
            .collect();
        tbs.extend(tlv(0xa3, &tlv(0x30, &exts)));
    }
    let tbs = tlv(0x30, &tbs);
    let sig = r.signer.sign(&tbs);
    let mut bits = vec![0u8];
    bits.extend(sig);
    let mut cert = tbs;
    cert.extend(alg);
    cert.extend(tlv(0x03, &bits));
    tlv(0x30, &cert)
}

pub(super) fn key() -> PrivateKey {
    PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap()
}

/// A self-signed certificate with `subject` as both names and a fixed serial and validity.
pub(super) fn self_signed(subject: Vec<u8>) -> CertFacts {
    let k = key();
    let der = build(&Raw {
        issuer: subject.clone(),
        subject,
        serial: &[0x01],
        not_before: datetime!(2024-01-02 03:04:05 UTC),
        not_after: datetime!(2034-01-02 03:04:05 UTC),
        extensions: vec![],
        subject_key: &k,
        signer: &k,
    });
    CertFacts::from_der(&der).unwrap()
}

pub(super) fn subject_of(rdns: &[&[(&str, u8, &[u8])]]) -> String {
    self_signed(raw_name(rdns)).subject
}

pub(super) fn ext<T: der::oid::AssociatedOid + Encode>(value: &T, critical: bool) -> Extension {
    Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(value.to_der().unwrap()).unwrap(),
    }
}

pub(super) struct Ed25519(pub aws_lc_rs::signature::Ed25519KeyPair);

impl TestKey for Ed25519 {
    fn spki(&self) -> Vec<u8> {
        use aws_lc_rs::signature::KeyPair;
        let mut bits = vec![0];
        bits.extend(self.0.public_key().as_ref());
        let mut spki = self.algorithm();
        spki.extend(tlv(0x03, &bits));
        tlv(0x30, &spki)
    }
    fn algorithm(&self) -> Vec<u8> {
        tlv(
            0x30,
            &ObjectIdentifier::new_unwrap("1.3.101.112")
                .to_der()
                .unwrap(),
        )
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

/// An RSA key signing with PSS (SHA-256, MGF1-SHA-256, 32-byte salt) or PKCS#1 v1.5
/// with SHA-512.
pub(super) struct Rsa {
    pub key: aws_lc_rs::rsa::KeyPair,
    pub pss: bool,
}

impl TestKey for Rsa {
    fn spki(&self) -> Vec<u8> {
        use aws_lc_rs::signature::KeyPair;
        let mut alg = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1")
            .to_der()
            .unwrap();
        alg.extend([0x05, 0x00]);
        let mut bits = vec![0];
        bits.extend(self.key.public_key().as_ref());
        let mut spki = tlv(0x30, &alg);
        spki.extend(tlv(0x03, &bits));
        tlv(0x30, &spki)
    }
    fn algorithm(&self) -> Vec<u8> {
        let oid = |o: &str| ObjectIdentifier::new_unwrap(o).to_der().unwrap();
        if !self.pss {
            let mut alg = oid("1.2.840.113549.1.1.13");
            alg.extend([0x05, 0x00]);
            return tlv(0x30, &alg);
        }
        let sha256 = tlv(
            0x30,
            &[oid("2.16.840.1.101.3.4.2.1"), vec![0x05, 0x00]].concat(),
        );
        let mgf1 = tlv(
            0x30,
            &[oid("1.2.840.113549.1.1.8"), sha256.clone()].concat(),
        );
        let params = tlv(
            0x30,
            &[
                tlv(0xa0, &sha256),
                tlv(0xa1, &mgf1),
                tlv(0xa2, &tlv(INTEGER, &[32])),
            ]
            .concat(),
        );
        tlv(0x30, &[oid("1.2.840.113549.1.1.10"), params].concat())
    }
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        use aws_lc_rs::signature::{RSA_PKCS1_SHA512, RSA_PSS_SHA256};
        let mut sig = vec![0; self.key.public_modulus_len()];
        let enc: &'static dyn aws_lc_rs::signature::RsaEncoding = if self.pss {
            &RSA_PSS_SHA256
        } else {
            &RSA_PKCS1_SHA512
        };
        self.key
            .sign(
                enc,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut sig,
            )
            .unwrap();
        sig
    }
}

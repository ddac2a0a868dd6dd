//! Whether a CA signed a certificate: the signature decides, for every algorithm a
//! Kubernetes PKI may hold.

use der::asn1::OctetString;
use time::macros::datetime;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, SubjectKeyIdentifier};

use super::testcerts::*;
use super::x509::{CertTemplate, Issuer};
use super::{CertFacts, KeyAlgorithm, KeyEncoding, PrivateKey};

#[test]
fn signed_by_checks_the_signature() {
    for alg in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Rsa { bits: 2048 },
    ] {
        let ca_key = PrivateKey::generate(alg, KeyEncoding::Pkcs8).unwrap();
        let ca_t = CertTemplate {
            subject: vec![vec![(super::x509::OID_CN, "kubernetes".into())]],
            is_ca: true,
            ..Default::default()
        };
        let ca = CertFacts::from_der(&ca_t.issue(&ca_key, None).unwrap()).unwrap();
        assert!(ca.is_signed_by(&ca), "{alg}");
        let leaf_key = key();
        let leaf_t = CertTemplate {
            subject: vec![vec![(super::x509::OID_CN, "leaf".into())]],
            ..Default::default()
        };
        let issuer = Issuer {
            cert: &ca,
            key: &ca_key,
        };
        let leaf = CertFacts::from_der(&leaf_t.issue(&leaf_key, Some(&issuer)).unwrap()).unwrap();
        assert!(leaf.is_signed_by(&ca), "{alg}");
        assert!(!ca.is_signed_by(&leaf), "{alg}");
        assert!(!leaf.is_signed_by(&leaf), "{alg}");

        // Same name, another key: the signature does not verify.
        let other_key = PrivateKey::generate(alg, KeyEncoding::Pkcs8).unwrap();
        let other = CertFacts::from_der(&ca_t.issue(&other_key, None).unwrap()).unwrap();
        assert_eq!(other.raw_subject, ca.raw_subject);
        assert!(!leaf.is_signed_by(&other), "{alg}");
    }
}

/// A CA named `ca_name` with `ca` as its key, and a leaf it signed carrying `akid`.
fn ca_and_leaf(ca: &dyn TestKey, akid: Option<Vec<u8>>) -> (CertFacts, CertFacts) {
    let ca_name = simple_name(&[(CN, "kubernetes")]);
    let bc = BasicConstraints {
        ca: true,
        path_len_constraint: None,
    };
    let ca_cert = build(&Raw {
        subject: ca_name.clone(),
        issuer: ca_name.clone(),
        serial: &[0x01],
        not_before: datetime!(2024-01-02 03:04:05 UTC),
        not_after: datetime!(2034-01-02 03:04:05 UTC),
        extensions: vec![
            ext(&bc, true),
            ext(
                &SubjectKeyIdentifier(OctetString::new(vec![0xca; 20]).unwrap()),
                false,
            ),
        ],
        subject_key: ca,
        signer: ca,
    });
    let leaf_key = key();
    let extensions = akid
        .map(|id| {
            ext(
                &AuthorityKeyIdentifier {
                    key_identifier: Some(OctetString::new(id).unwrap()),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
                false,
            )
        })
        .into_iter()
        .collect();
    let leaf = build(&Raw {
        subject: simple_name(&[(CN, "leaf")]),
        issuer: ca_name,
        serial: &[0x02],
        not_before: datetime!(2024-01-02 03:04:05 UTC),
        not_after: datetime!(2025-01-02 03:04:05 UTC),
        extensions,
        subject_key: &leaf_key,
        signer: ca,
    });
    (
        CertFacts::from_der(&ca_cert).unwrap(),
        CertFacts::from_der(&leaf).unwrap(),
    )
}

#[test]
fn ed25519_rsa_pss_and_rsa_sha512_signatures_verify() {
    type MakeKey = fn() -> Box<dyn TestKey>;
    fn rsa(pss: bool) -> Box<dyn TestKey> {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        Box::new(Rsa { key, pss })
    }
    let kinds: [(&str, MakeKey); 3] = [
        ("Ed25519", || {
            Box::new(Ed25519(
                aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap(),
            ))
        }),
        ("RSA-PSS", || rsa(true)),
        ("RSA-SHA512", || rsa(false)),
    ];
    for (what, make) in kinds {
        let k = make();
        let (ca, leaf) = ca_and_leaf(k.as_ref(), None);
        assert!(ca.is_signed_by(&ca), "{what}");
        assert!(leaf.is_signed_by(&ca), "{what}");
        // The same name on another key of the same kind: no.
        let (impostor, _) = ca_and_leaf(make().as_ref(), None);
        assert!(!leaf.is_signed_by(&impostor), "{what}");
    }
}

#[test]
fn the_signature_decides_not_the_authority_key_id() {
    let ca_key = key();
    // A stale AKID (say, from a CA that was re-keyed) hides nothing.
    let (ca, leaf) = ca_and_leaf(&ca_key, Some(vec![0x00; 20]));
    assert_ne!(leaf.authority_key_id, ca.subject_key_id);
    assert!(leaf.is_signed_by(&ca));
    // A matching AKID on a certificate the CA never signed proves nothing.
    let (_, forged) = ca_and_leaf(&key(), Some(vec![0xca; 20]));
    assert_eq!(forged.authority_key_id, ca.subject_key_id);
    assert!(!forged.is_signed_by(&ca));
}

/// The same bytes checked again get the remembered verdict; other bytes, even a copy
/// with one bit of its signature flipped, are checked anew.
#[test]
fn a_verdict_is_remembered_for_the_same_bytes_only() {
    let ca_key =
        PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs8).unwrap();
    let ca_t = CertTemplate {
        subject: vec![vec![(super::x509::OID_CN, "kubernetes".into())]],
        is_ca: true,
        ..Default::default()
    };
    let ca = CertFacts::from_der(&ca_t.issue(&ca_key, None).unwrap()).unwrap();
    let issuer = Issuer {
        cert: &ca,
        key: &ca_key,
    };
    let leaf_t = CertTemplate {
        subject: vec![vec![(super::x509::OID_CN, "kubernetes-admin".into())]],
        ..Default::default()
    };
    let der = leaf_t.issue(&key(), Some(&issuer)).unwrap();
    let admin = CertFacts::from_der(&der).unwrap();
    let copy = CertFacts::from_der(&der).unwrap();
    assert!(admin.is_signed_by(&ca));
    assert!(copy.is_signed_by(&ca));
    let mut bad = der.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let forged = CertFacts::from_der(&bad).unwrap();
    assert!(!forged.is_signed_by(&ca));
    assert!(!forged.is_signed_by(&ca));
    assert!(admin.is_signed_by(&ca));
    // More certificates than it remembers: each still gets its own verdict.
    for _ in 0..20 {
        let other = CertFacts::from_der(&leaf_t.issue(&key(), Some(&issuer)).unwrap()).unwrap();
        assert!(other.is_signed_by(&ca));
    }
    assert!(!forged.is_signed_by(&ca));
    assert!(admin.is_signed_by(&ca.clone()));
}

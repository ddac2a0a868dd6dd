//! The facts [`CertFacts`] reads from a certificate, pinned byte for byte.
//!
//! `subject`, `issuer` and `serial` are printed by `status --json` and compared by scripts
//! that watch a node, so their exact text is a contract. The expected strings below are
//! what the x509-parser based reader printed; any reader must keep printing them.

use der::asn1::{ObjectIdentifier, OctetString};
use time::macros::datetime;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, BasicConstraints, SubjectKeyIdentifier};
use x509_cert::ext::Extension;

use super::testcerts::*;
use super::x509::CertTemplate;
use super::{certificates, parse_pem, CertFacts, KeyAlgorithm, KeyEncoding, PrivateKey};

#[test]
fn kubeadm_multi_valued_o_rdn_prints_in_der_set_order() {
    // Go puts every O value into one RDN and DER-sorts the SET (shorter encoding first).
    let sorted = subject_of(&[
        &[(O, PRINTABLE, b"other"), (O, PRINTABLE, b"system:masters")],
        &[(CN, PRINTABLE, b"kube-apiserver-kubelet-client")],
    ]);
    assert_eq!(
        sorted,
        "O=other + O=system:masters, CN=kube-apiserver-kubelet-client"
    );
    // A SET written out of DER order is printed as written, not re-sorted.
    let unsorted = subject_of(&[
        &[(O, PRINTABLE, b"system:masters"), (O, PRINTABLE, b"other")],
        &[(CN, PRINTABLE, b"kube-apiserver-kubelet-client")],
    ]);
    assert_eq!(
        unsorted,
        "O=system:masters + O=other, CN=kube-apiserver-kubelet-client"
    );
}

#[test]
fn kubeadm_template_subject_matches_the_raw_encoding() {
    use super::x509::{OID_CN, OID_O};
    let k = key();
    let t = CertTemplate {
        subject: vec![
            vec![
                (OID_O, "system:masters".into()),
                (OID_O, "kubeadm:cluster-admins".into()),
            ],
            vec![(OID_CN, "kubernetes-super-admin".into())],
        ],
        ..Default::default()
    };
    let c = CertFacts::from_der(&t.issue(&k, None).unwrap()).unwrap();
    assert_eq!(
        c.subject,
        "O=system:masters + O=kubeadm:cluster-admins, CN=kubernetes-super-admin"
    );
    assert_eq!(c.issuer, c.subject);
    assert!(c.self_issued);
}

#[test]
fn separate_o_rdns_print_comma_separated_in_order() {
    let s = self_signed(simple_name(&[
        (O, "system:masters"),
        (O, "other"),
        (CN, "kube-apiserver-kubelet-client"),
    ]));
    assert_eq!(
        s.subject,
        "O=system:masters, O=other, CN=kube-apiserver-kubelet-client"
    );
}

#[test]
fn cn_only_and_empty_names() {
    assert_eq!(
        self_signed(simple_name(&[(CN, "kubernetes")])).subject,
        "CN=kubernetes"
    );
    assert_eq!(self_signed(raw_name(&[])).subject, "");
}

#[test]
fn utf8_and_printable_values_print_the_same_text() {
    assert_eq!(
        subject_of(&[&[(O, UTF8, b"system:masters")]]),
        subject_of(&[&[(O, PRINTABLE, b"system:masters")]])
    );
    assert_eq!(subject_of(&[&[(CN, UTF8, "grüße".as_bytes())]]), "CN=grüße");
    // No escaping of RFC 4514 specials: the value is printed as stored.
    assert_eq!(subject_of(&[&[(CN, UTF8, b"a,b+c=d\\e")]]), "CN=a,b+c=d\\e");
}

#[test]
fn other_string_types_and_non_string_values() {
    assert_eq!(subject_of(&[&[(CN, IA5, b"ia5")]]), "CN=ia5");
    assert_eq!(subject_of(&[&[(CN, T61, b"teletex")]]), "CN=teletex");
    let zoe: Vec<u8> = "Zoë".encode_utf16().flat_map(u16::to_be_bytes).collect();
    assert_eq!(subject_of(&[&[(CN, BMP, &zoe)]]), "CN=Zoë");
    // Types that are not read as text print their content octets as upper-case hex.
    assert_eq!(
        subject_of(&[&[(CN, UNIVERSAL, &[0, 0, 0, 0x61, 0, 0, 0, 0x62])]]),
        "CN=0000006100000062"
    );
    assert_eq!(subject_of(&[&[(CN, INTEGER, &[0x05, 0xab])]]), "CN=05AB");
    // A text value that is not UTF-8 spoils the whole name.
    assert_eq!(
        subject_of(&[&[(O, PRINTABLE, b"ok")], &[(CN, T61, &[0x5a, 0xfc, 0x72])]]),
        "<X509Error: Invalid X.509 name>"
    );
}

#[test]
fn attribute_type_names() {
    let s = self_signed(simple_name(&[
        ("2.5.4.6", "DE"),
        ("2.5.4.8", "Berlin"),
        ("2.5.4.7", "Berlin"),
        (O, "example"),
        ("2.5.4.11", "ops"),
        (CN, "node-1"),
        ("2.5.4.5", "1234"),
        ("2.5.4.4", "Doe"),
        ("2.5.4.42", "Jane"),
        ("2.5.4.12", "admin"),
        ("2.5.4.9", "Main St 1"),
        ("2.5.4.17", "10115"),
        ("2.5.4.46", "q"),
        ("0.9.2342.19200300.100.1.1", "jdoe"),
        ("0.9.2342.19200300.100.1.25", "example"),
        ("1.2.840.113549.1.9.1", "ops@example.org"),
        ("1.2.840.113549.1.9.2", "unstructured"),
        ("1.3.6.1.4.1.311.60.2.1.3", "DE"),
        ("1.2.3.4.5", "custom"),
        ("2.5.4.99", "x"),
    ]));
    assert_eq!(
        s.subject,
        "C=DE, ST=Berlin, L=Berlin, O=example, OU=ops, CN=node-1, serialNumber=1234, \
         surname=Doe, givenName=Jane, title=admin, streetAddress=Main St 1, \
         postalCode=10115, dnQualifier=q, uid=jdoe, DC=example, Email=ops@example.org, \
         unstructuredName=unstructured, msJurisdictionCountry=DE, OID(1.2.3.4.5)=custom, \
         OID(2.5.4.99)=x"
    );
}

#[test]
fn openssl_written_certificates() {
    let pem = include_bytes!("testdata/openssl-ec-ca.pem");
    let c = &certificates(&parse_pem(pem).unwrap()).unwrap()[0];
    let name = "C=DE, ST=Berlin, L=Berlin, O=other + O=system:masters, OU=ops, \
                CN=kube-apiserver-kubelet-client, Email=ops@example.org, DC=example, DC=org, \
                serialNumber=1234";
    assert_eq!(c.subject, name);
    assert_eq!(c.issuer, name);
    assert_eq!(c.serial, "c0ffee0102");
    assert_eq!(c.not_before, datetime!(2026-12-01 09:02:07 UTC));
    assert_eq!(c.not_after, datetime!(2036-11-28 09:02:07 UTC));
    assert!(c.is_ca);
    assert!(c.self_issued);
    let id = [
        0x90, 0xaa, 0x44, 0x98, 0xa4, 0x09, 0x53, 0xa4, 0xd9, 0x79, 0xa0, 0x11, 0xb2, 0xb5, 0xf9,
        0x64, 0xaf, 0x0f, 0x2b, 0xaa,
    ];
    assert_eq!(c.subject_key_id.as_deref(), Some(&id[..]));
    assert_eq!(c.authority_key_id.as_deref(), Some(&id[..]));
    assert_eq!(c.public_key.len(), 65);
    assert_eq!(c.public_key[..3], [0x04, 0x53, 0x04]);
    assert_eq!(c.raw_subject, c.raw_issuer);
    assert_eq!(c.raw_subject.len(), 236);
    assert_eq!(c.raw_subject[..3], [0x30, 0x81, 0xe9]);
    assert!(c.is_signed_by(c));
    assert_eq!(c.lifetime(), time::Duration::days(3650));

    let pem = include_bytes!("testdata/openssl-rsa-utf8.pem");
    let c = &certificates(&parse_pem(pem).unwrap()).unwrap()[0];
    assert_eq!(c.subject, "O=Zürich AG, CN=grüße");
    assert_eq!(c.serial, "ff");
    assert_eq!(c.not_before, datetime!(2026-12-01 09:02:08 UTC));
    assert_eq!(c.not_after, datetime!(2026-12-31 09:02:08 UTC));
    assert!(c.is_signed_by(c));
}

#[test]
fn serial_validity_ca_and_key_ids() {
    let ca_key = key();
    let leaf_key = PrivateKey::generate(KeyAlgorithm::EcdsaP384, KeyEncoding::Sec1).unwrap();
    let skid = SubjectKeyIdentifier(OctetString::new(vec![0xaa; 20]).unwrap());
    let akid = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(vec![0xbb; 20]).unwrap()),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let bc = BasicConstraints {
        ca: true,
        path_len_constraint: Some(0),
    };
    let subject = simple_name(&[(CN, "etcd-ca")]);
    let issuer = simple_name(&[(CN, "kubernetes")]);
    let der = build(&Raw {
        subject: subject.clone(),
        issuer: issuer.clone(),
        // A leading zero octet (needed when the top bit is set) is not printed.
        serial: &[0x00, 0x8f, 0x01, 0x00],
        not_before: datetime!(2024-01-02 03:04:05 UTC),
        // From 2050 on, RFC 5280 uses GeneralizedTime.
        not_after: datetime!(2050-06-07 08:09:10 UTC),
        extensions: vec![ext(&bc, true), ext(&skid, false), ext(&akid, false)],
        subject_key: &leaf_key,
        signer: &ca_key,
    });
    let c = CertFacts::from_der(&der).unwrap();
    assert_eq!(c.der, der);
    assert_eq!(c.serial, "8f0100");
    assert_eq!(c.subject, "CN=etcd-ca");
    assert_eq!(c.issuer, "CN=kubernetes");
    assert_eq!(c.not_before, datetime!(2024-01-02 03:04:05 UTC));
    assert_eq!(c.not_after, datetime!(2050-06-07 08:09:10 UTC));
    assert!(c.is_ca);
    assert!(!c.self_issued);
    assert_eq!(c.subject_key_id, Some(vec![0xaa; 20]));
    assert_eq!(c.authority_key_id, Some(vec![0xbb; 20]));
    assert_eq!(c.raw_subject, subject);
    assert_eq!(c.raw_issuer, issuer);
    assert_eq!(c.public_key, leaf_key.public_key());
    assert!(leaf_key.matches(&c));
    assert!(!ca_key.matches(&c));

    // No extensions at all: not a CA, no key ids.
    let plain = self_signed(simple_name(&[(CN, "x")]));
    assert!(!plain.is_ca);
    assert_eq!(plain.subject_key_id, None);
    assert_eq!(plain.authority_key_id, None);
    assert_eq!(plain.serial, "1");
}

#[test]
fn serial_zero_and_negative_serials() {
    let k = key();
    let mut r = Raw {
        subject: simple_name(&[(CN, "x")]),
        issuer: simple_name(&[(CN, "x")]),
        serial: &[0x00],
        not_before: datetime!(2024-01-02 03:04:05 UTC),
        not_after: datetime!(2025-01-02 03:04:05 UTC),
        extensions: vec![],
        subject_key: &k,
        signer: &k,
    };
    assert_eq!(CertFacts::from_der(&build(&r)).unwrap().serial, "0");
    r.serial = &[0x8f, 0x01];
    let e = CertFacts::from_der(&build(&r)).unwrap_err().to_string();
    assert!(e.contains("negative serial number"), "{e}");
}

#[test]
fn malformed_der_is_refused() {
    let c = self_signed(simple_name(&[(CN, "x")]));
    let mut trailing = c.der.clone();
    trailing.push(0);
    let e = CertFacts::from_der(&trailing).unwrap_err().to_string();
    assert!(e.contains("trailing bytes"), "{e}");
    let e = CertFacts::from_der(&c.der[..c.der.len() - 1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid X.509 certificate"), "{e}");
}

#[test]
fn damaged_and_duplicate_extensions_are_refused() {
    let k = key();
    let garbage = Extension {
        extn_id: ObjectIdentifier::new_unwrap("2.5.29.19"),
        critical: true,
        extn_value: OctetString::new(vec![0x04, 0x00]).unwrap(),
    };
    let bc = ext(
        &BasicConstraints {
            ca: false,
            path_len_constraint: None,
        },
        true,
    );
    for (exts, want) in [
        (vec![garbage], "extension 2.5.29.19 cannot be parsed"),
        (
            vec![bc.clone(), bc],
            "extension 2.5.29.19 appears more than once",
        ),
    ] {
        let der = build(&Raw {
            subject: simple_name(&[(CN, "x")]),
            issuer: simple_name(&[(CN, "x")]),
            serial: &[0x01],
            not_before: datetime!(2024-01-02 03:04:05 UTC),
            not_after: datetime!(2025-01-02 03:04:05 UTC),
            extensions: exts,
            subject_key: &k,
            signer: &k,
        });
        let e = CertFacts::from_der(&der).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}");
    }
}

//! The kubelet-serving approver with `[csr] kubelet_serving_dns_patterns` and
//! `kubelet_serving_ip_prefixes` (src/config/san_rules.rs, src/signer/approve.rs),
//! without an API server: a node's request for a name of a configured pattern and an
//! address of a configured prefix is approved, one beyond them denied with the reason,
//! and a bad pattern or prefix is a configuration error naming the key and the file
//! (`config check`); a subject value that does not decode as text is denied, not
//! skipped. The real API server judges the same in tests/k8s/csr.sh.

mod common;

use base64::Engine;
use cert_rotator::ca::remote::build_csr;
use cert_rotator::config::san_rules::SanRules;
use cert_rotator::kube::types::{CertificateSigningRequest, Node, NodeAddress};
use cert_rotator::pki::x509::{CertTemplate, OID_CN, OID_O};
use cert_rotator::pki::{KeyAlgorithm, KeyEncoding, PrivateKey};
use cert_rotator::signer::approve::{judge_with, Verdict};

/// Node n1's own serving request (O=system:nodes, CN=system:node:n1) for these SANs.
fn request(dns: &[&str], ips: &[&str]) -> CertificateSigningRequest {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
    let der = CertTemplate {
        subject: vec![
            vec![(OID_O, "system:nodes".into())],
            vec![(OID_CN, "system:node:n1".into())],
        ],
        dns_names: dns.iter().map(|d| d.to_string()).collect(),
        ip_addresses: ips.iter().map(|i| i.parse().unwrap()).collect(),
        ..Default::default()
    }
    .issue(&key, None)
    .unwrap();
    let pem = build_csr(&der, &key).unwrap();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "csr-1", "resourceVersion": "7"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": "kubernetes.io/kubelet-serving",
            "usages": ["digital signature", "server auth"],
            "username": "system:node:n1",
            "groups": ["system:nodes", "system:authenticated"],
        }
    }))
    .unwrap()
}

fn node() -> Node {
    let mut n = Node::default();
    n.status.addresses = vec![NodeAddress {
        type_: "InternalIP".into(),
        address: "192.0.2.10".into(),
    }];
    n
}

fn rules() -> SanRules {
    SanRules::parse(
        &[
            "{node}.nodes.example.internal".into(),
            "*.svc.example.internal".into(),
        ],
        &["10.0.0.0/8".into(), "fd00::/8".into()],
    )
    .unwrap()
}

fn verdict(dns: &[&str], ips: &[&str], rules: &SanRules) -> Verdict {
    judge_with(&request(dns, ips), Some(&node()), 86400, rules)
}

#[test]
fn names_of_a_pattern_and_addresses_of_a_prefix_are_approved() {
    let v = verdict(
        &[
            "n1",
            "n1.nodes.example.internal",
            "metrics.svc.example.internal",
        ],
        &["192.0.2.10", "10.20.30.40", "fd00::10"],
        &rules(),
    );
    assert!(
        matches!(&v, Verdict::Approve(m) if m.contains("configured")),
        "{v:?}"
    );
}

#[test]
fn beyond_the_patterns_and_prefixes_is_denied_naming_the_san() {
    let r = rules();
    let deny = |dns: &[&str], ips: &[&str]| match verdict(dns, ips, &r) {
        Verdict::Deny(m) => m,
        v => panic!("{dns:?} {ips:?}: expected a denial, got {v:?}"),
    };
    // Another node's name under {node}, two labels for one '*', a foreign address.
    assert_eq!(
        deny(&["n2.nodes.example.internal"], &[]),
        "DNS SAN n2.nodes.example.internal is neither node n1's name nor one of its DNS addresses nor a configured pattern"
    );
    assert!(deny(&["a.b.svc.example.internal"], &[]).contains("a.b.svc.example.internal"));
    assert_eq!(
        deny(&["n1"], &["203.0.113.9"]),
        "IP SAN 203.0.113.9 is not one of node n1's addresses nor in a configured prefix"
    );
    assert!(deny(&["n1"], &["fe80::1"]).contains("fe80::1"));
}

#[test]
fn without_rules_only_the_nodes_own_are_approved() {
    let none = SanRules::default();
    assert!(matches!(
        verdict(&["n1"], &["192.0.2.10"], &none),
        Verdict::Approve(_)
    ));
    match verdict(&["n1"], &["10.0.0.1"], &none) {
        Verdict::Deny(m) => assert_eq!(m, "IP SAN 10.0.0.1 is not one of node n1's addresses"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn config_check_names_the_file_and_the_key_of_a_bad_pattern_or_prefix() {
    for (line, key, words) in [
        (
            "kubelet_serving_dns_patterns = [\"*.*\"]",
            "csr.kubelet_serving_dns_patterns",
            "literal label",
        ),
        (
            "kubelet_serving_ip_prefixes = [\"10.0.0.0/40\"]",
            "csr.kubelet_serving_ip_prefixes",
            "0 to 32",
        ),
        (
            "kubelet_serving_ip_prefixes = [\"10.0.0.0\"]",
            "csr.kubelet_serving_ip_prefixes",
            "CIDR",
        ),
        (
            "timeout_seconds = 15",
            "csr.timeout_seconds",
            "below csr.lease_duration_seconds",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, format!("[csr]\n{line}\n")).unwrap();
        let out = std::process::Command::new(common::bin())
            .args(["--root", &dir.path().display().to_string()])
            .arg("--config")
            .arg(&file)
            .args(["config", "check"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line}: accepted");
        assert!(
            err.contains(&file.display().to_string()) && err.contains(key) && err.contains(words),
            "{line}: {err}"
        );
    }
}

// ------------------------------------------------ subjects it cannot read ---

mod unreadable_subject {
    use super::*;
    use der::asn1::{Any, BitString, Ia5String, OctetString, SetOfVec};
    use der::oid::AssociatedOid;
    use der::{Encode, Tag};
    use x509_cert::attr::{Attribute, AttributeTypeAndValue};
    use x509_cert::ext::pkix::{name::GeneralName, SubjectAltName};
    use x509_cert::ext::Extension;
    use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
    use x509_cert::request::{CertReqInfo, ExtensionReq, Version};

    const CN: &str = "2.5.4.3";
    const O: &str = "2.5.4.10";
    const OU: &str = "2.5.4.11";

    /// One RDN of one attribute, its value of `tag` with these content octets (which
    /// CertTemplate, writing UTF8Strings only, cannot make).
    fn rdn(oid: &str, tag: Tag, value: &[u8]) -> RelativeDistinguishedName {
        let mut set = SetOfVec::new();
        set.insert(AttributeTypeAndValue {
            oid: oid.parse().unwrap(),
            value: Any::new(tag, value.to_vec()).unwrap(),
        })
        .unwrap();
        RelativeDistinguishedName(set)
    }

    /// Node n1's request with DNS SAN n1 and this subject.
    fn with_subject(rdns: Vec<RelativeDistinguishedName>) -> CertificateSigningRequest {
        with_patched_subject(rdns, |_| {})
    }

    /// [`with_subject`], `patch` changing the encoded request info before it is signed:
    /// what x509_cert, which sorts a SET OF as it encodes, cannot write.
    fn with_patched_subject(
        rdns: Vec<RelativeDistinguishedName>,
        patch: impl FnOnce(&mut Vec<u8>),
    ) -> CertificateSigningRequest {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let san = SubjectAltName(vec![GeneralName::DnsName(Ia5String::new("n1").unwrap())]);
        let ext = Extension {
            extn_id: SubjectAltName::OID,
            critical: false,
            extn_value: OctetString::new(san.to_der().unwrap()).unwrap(),
        };
        let mut attributes = SetOfVec::new();
        attributes
            .insert(Attribute::try_from(ExtensionReq(vec![ext])).unwrap())
            .unwrap();
        let info = CertReqInfo {
            version: Version::V1,
            subject: Name::from(RdnSequence(rdns)),
            public_key: key.spki().unwrap(),
            attributes,
        };
        let mut info = info.to_der().unwrap();
        patch(&mut info);
        let signature = key.sign(&info).unwrap();
        // CertificationRequest ::= SEQUENCE { info, algorithm, signature }, by hand: the
        // patched info need not decode as x509_cert's.
        let mut body = info;
        body.extend(key.signature_algorithm().to_der().unwrap());
        body.extend(BitString::from_bytes(&signature).unwrap().to_der().unwrap());
        let req = Any::new(Tag::Sequence, body).unwrap().to_der().unwrap();
        let pem = cert_rotator::pki::encode_pem("CERTIFICATE REQUEST", &req);
        let mut csr = request(&["n1"], &[]);
        csr.spec.request = base64::engine::general_purpose::STANDARD.encode(pem);
        csr
    }

    fn judged(extra: Option<RelativeDistinguishedName>) -> Verdict {
        let mut rdns = vec![
            rdn(O, Tag::Utf8String, b"system:nodes"),
            rdn(CN, Tag::Utf8String, b"system:node:n1"),
        ];
        rdns.extend(extra);
        judge_with(
            &with_subject(rdns),
            Some(&node()),
            86_400,
            &SanRules::default(),
        )
    }

    #[test]
    fn a_subject_value_that_does_not_decode_is_denied_not_skipped() {
        assert!(
            matches!(judged(None), Verdict::Approve(_)),
            "{:?}",
            judged(None)
        );
        // Read as strings by an approver in Go: an OU, a second O, a second CN.
        for (oid, value) in [
            (OU, &b"\xffanything"[..]),
            (O, b"system:masters\xff"),
            (CN, b"system:node:n2\xff"),
        ] {
            match judged(Some(rdn(oid, Tag::TeletexString, value))) {
                Verdict::Deny(m) => assert!(
                    m.contains("1 attribute value(s) that do not decode as text")
                        && m.contains("CN=system:node:n1, O=system:nodes"),
                    "{oid}: {m}"
                ),
                v => panic!("{oid} {value:?}: {v:?}"),
            }
        }
        // Readable, the same extra attributes are denied as before.
        for (oid, value) in [
            (OU, &b"anything"[..]),
            (O, b"system:masters"),
            (CN, b"system:node:n2"),
        ] {
            match judged(Some(rdn(oid, Tag::TeletexString, value))) {
                Verdict::Deny(m) => assert!(m.starts_with("the subject is "), "{oid}: {m}"),
                v => panic!("{oid} {value:?}: {v:?}"),
            }
        }
        // One CN, one O: a value readable but repeated is no kubelet's either.
        match judged(Some(rdn(O, Tag::Utf8String, b"system:nodes"))) {
            Verdict::Deny(m) => assert!(
                m.contains("O=system:nodes, CN=system:node:n1, O=system:nodes"),
                "{m}"
            ),
            v => panic!("{v:?}"),
        }
    }

    fn atv(oid: &str, value: &[u8]) -> AttributeTypeAndValue {
        AttributeTypeAndValue {
            oid: oid.parse().unwrap(),
            value: Any::new(Tag::Utf8String, value.to_vec()).unwrap(),
        }
    }

    /// One RDN holding both CN=system:node:n1 and O=system:nodes, stored out of DER
    /// order (CN before O; DER sorts the shorter O first), and `extra` after it.
    fn judged_unsorted(extra: Option<RelativeDistinguishedName>) -> Verdict {
        let (cn, o) = (atv(CN, b"system:node:n1"), atv(O, b"system:nodes"));
        let mut both = SetOfVec::new();
        both.insert(cn.clone()).unwrap();
        both.insert(o.clone()).unwrap();
        let sorted = [o.to_der().unwrap(), cn.to_der().unwrap()].concat();
        let unsorted = [cn.to_der().unwrap(), o.to_der().unwrap()].concat();
        let mut rdns = vec![RelativeDistinguishedName(both)];
        rdns.extend(extra);
        let csr = with_patched_subject(rdns, |info| {
            let at = info
                .windows(sorted.len())
                .position(|w| w == sorted.as_slice())
                .expect("the RDN's values, DER-sorted");
            info[at..at + sorted.len()].copy_from_slice(&unsorted);
        });
        judge_with(&csr, Some(&node()), 86_400, &SanRules::default())
    }

    #[test]
    fn a_multi_valued_rdn_out_of_der_order_is_read_not_called_malformed() {
        // Read as Go reads it: CN and O, the kubelet's subject.
        let v = judged_unsorted(None);
        assert!(matches!(v, Verdict::Approve(_)), "{v:?}");
        // Denied for what it says, not as malformed.
        match judged_unsorted(Some(rdn(OU, Tag::Utf8String, b"extra"))) {
            Verdict::Deny(m) => assert!(
                m.starts_with("the subject is CN=system:node:n1, O=system:nodes, OU=extra;"),
                "{m}"
            ),
            v => panic!("{v:?}"),
        }
    }
}

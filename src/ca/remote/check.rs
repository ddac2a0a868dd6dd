//! Nothing the server returns is trusted: [`check_returned`] refuses a certificate that
//! is for another key, changes the subject (as a name: same RDNs, attribute types and
//! values; the string encoding of a value may change) or the SAN set, narrows the key
//! usages, is a CA, does not verify against the CA the node trusts (or, with no CA
//! known, changes issuer or authority key id), or is not valid now. One shorter than
//! asked by more than the margin is refused when it ends no later than the old
//! certificate, and accepted with a [`Notice`] when it ends later: refusing it would let
//! the node's certificate expire.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use der::asn1::ObjectIdentifier;
use der::{Tag, Tagged};
use time::{Duration, OffsetDateTime};
use x509_cert::name::{Name, RelativeDistinguishedName};

use crate::ca::remote::csr::{CsrError, Identity, San};
use crate::pki::{self, CertFacts, PkiError, PrivateKey};
use crate::timefmt::rfc3339;

/// How far in the future a returned certificate's notBefore may lie (clock skew between
/// the node and the CA). cfssl itself backdates by five minutes.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// What a returned certificate must satisfy.
pub struct Expectation<'a> {
    pub old: &'a CertFacts,
    pub key: &'a PrivateKey,
    /// The CA it must verify against (path for messages), when known.
    pub ca: Option<(&'a Path, &'a CertFacts)>,
    pub asked_lifetime: Duration,
    pub margin: Duration,
    /// The pass's clock.
    pub now: OffsetDateTime,
}

/// A returned certificate that passed, and what the operator must hear about it.
#[derive(Debug)]
pub struct Accepted {
    pub der: Vec<u8>,
    pub notices: Vec<Notice>,
}

/// Accepted, but loudly.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Notice {
    #[error(
        "the certificate lives {} but {} was asked for (margin {}): accepted because it ends {}, later than the old certificate ({}), \
         but it comes due again sooner; fix the server's profile, or set [ca.remote.targets.\"NAME\"] days (cert-renew: --days) to what it gives",
        days(*got), days(*asked), days(*margin), rfc3339(*not_after), rfc3339(*old_not_after)
    )]
    ShorterThanAsked {
        got: Duration,
        asked: Duration,
        margin: Duration,
        not_after: OffsetDateTime,
        old_not_after: OffsetDateTime,
    },
}

/// Why a returned certificate is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the server's certificate is not PEM: {0}")]
    NotPem(PkiError),
    #[error("the server's certificate: {0}")]
    Unparsable(PkiError),
    #[error("the server's certificate: {0}")]
    Identity(CsrError),
    #[error("the server's answer holds no certificate")]
    Empty,
    #[error(
        "the server returned a certificate for another public key, not the key this node made"
    )]
    OtherKey,
    #[error("the server returned a CA certificate (CA:TRUE) for a leaf")]
    Ca,
    #[error("the server changed the subject: asked for {asked:?}, got {got:?}")]
    Subject { asked: String, got: String },
    #[error(
        "the server changed the subject alternative names: asked for [{}], got [{}] (missing [{}], added [{}])",
        list(asked), list(got), list(missing), list(added)
    )]
    Sans {
        asked: Vec<San>,
        got: Vec<San>,
        missing: Vec<San>,
        added: Vec<San>,
    },
    #[error("the server's profile drops extended key usage {} the old certificate had (check the profile's usages)", lost.join(", "))]
    ExtKeyUsage { lost: Vec<String> },
    #[error("the server's profile drops key usage {} the old certificate had (check the profile's usages)", lost.join(", "))]
    KeyUsage { lost: Vec<String> },
    #[error(
        "the certificate is signed by another CA (issuer {issuer}{}), not by the trusted CA {} ({ca_subject})",
        if *same_name { ", same name but another key" } else { "" },
        ca_path.display()
    )]
    OtherCa {
        issuer: String,
        same_name: bool,
        ca_path: PathBuf,
        ca_subject: String,
    },
    #[error("the certificate's issuer changed: {got:?} (the old one: {old:?}); give the CA certificate to verify against")]
    IssuerChanged { got: String, old: String },
    #[error("the certificate's authority key id differs from the old certificate's: signed by another CA key")]
    AuthorityKeyId,
    #[error("the certificate is not valid yet (not before {})", rfc3339(*not_before))]
    NotYetValid { not_before: OffsetDateTime },
    #[error("the certificate has already expired (not after {})", rfc3339(*not_after))]
    Expired { not_after: OffsetDateTime },
    #[error(
        "the certificate lives {} but {} was asked for (margin {}) and it ends {}, no later than the old certificate ({}): \
         the server's profile gives a shorter lifetime; fix the profile, or set [ca.remote.targets.\"NAME\"] days (cert-renew: --days) to what it gives",
        days(*got), days(*asked), days(*margin), rfc3339(*not_after), rfc3339(*old_not_after)
    )]
    TooShort {
        got: Duration,
        asked: Duration,
        margin: Duration,
        not_after: OffsetDateTime,
        old_not_after: OffsetDateTime,
    },
}

/// Checks the certificate cfssl returned (PEM, leaf first).
pub fn check_returned(pem: &str, e: &Expectation<'_>) -> Result<Accepted, Refusal> {
    let blocks = pki::parse_pem(pem.as_bytes()).map_err(Refusal::NotPem)?;
    let new = pki::certificates(&blocks)
        .map_err(Refusal::Unparsable)?
        .into_iter()
        .next()
        .ok_or(Refusal::Empty)?;
    if !e.key.matches(&new) {
        return Err(Refusal::OtherKey);
    }
    // The old certificate is ours: one we cannot read is refused before anything is
    // sent, so this is the server's side only in theory.
    let old_id = Identity::of(&e.old.der).map_err(Refusal::Identity)?;
    let new_id = Identity::of(&new.der).map_err(Refusal::Identity)?;
    if new_id.is_ca || new.is_ca {
        return Err(Refusal::Ca);
    }
    if !same_name(&new_id.subject, &old_id.subject) {
        return Err(Refusal::Subject {
            asked: e.old.subject.clone(),
            got: new.subject.clone(),
        });
    }
    if new_id.sans != old_id.sans {
        let vec = |s: &BTreeSet<San>| s.iter().cloned().collect::<Vec<_>>();
        return Err(Refusal::Sans {
            asked: vec(&old_id.sans),
            got: vec(&new_id.sans),
            missing: old_id.sans.difference(&new_id.sans).cloned().collect(),
            added: new_id.sans.difference(&old_id.sans).cloned().collect(),
        });
    }
    let lost_eku: Vec<String> = old_id
        .ext_key_usage
        .difference(&new_id.ext_key_usage)
        .map(eku_name)
        .collect();
    if !lost_eku.is_empty() {
        return Err(Refusal::ExtKeyUsage { lost: lost_eku });
    }
    let lost_ku: Vec<String> = old_id
        .key_usage
        .iter()
        .filter(|k| !new_id.key_usage.contains(k))
        .cloned()
        .collect();
    if !lost_ku.is_empty() {
        return Err(Refusal::KeyUsage { lost: lost_ku });
    }
    match e.ca {
        Some((path, ca)) => {
            if !new.is_signed_by(ca) {
                return Err(Refusal::OtherCa {
                    issuer: new.issuer.clone(),
                    same_name: new.raw_issuer == ca.raw_subject,
                    ca_path: path.to_path_buf(),
                    ca_subject: ca.subject.clone(),
                });
            }
        }
        None => {
            if new.raw_issuer != e.old.raw_issuer {
                return Err(Refusal::IssuerChanged {
                    got: new.issuer.clone(),
                    old: e.old.issuer.clone(),
                });
            }
            if e.old.authority_key_id.is_some() && new.authority_key_id != e.old.authority_key_id {
                return Err(Refusal::AuthorityKeyId);
            }
        }
    }
    if new.not_before > e.now + CLOCK_SKEW {
        return Err(Refusal::NotYetValid {
            not_before: new.not_before,
        });
    }
    if new.not_after <= e.now {
        return Err(Refusal::Expired {
            not_after: new.not_after,
        });
    }
    let mut notices = Vec::new();
    let got = new.not_after - new.not_before;
    if got < e.asked_lifetime - e.margin {
        if new.not_after <= e.old.not_after {
            return Err(Refusal::TooShort {
                got,
                asked: e.asked_lifetime,
                margin: e.margin,
                not_after: new.not_after,
                old_not_after: e.old.not_after,
            });
        }
        notices.push(Notice::ShorterThanAsked {
            got,
            asked: e.asked_lifetime,
            margin: e.margin,
            not_after: new.not_after,
            old_not_after: e.old.not_after,
        });
    }
    Ok(Accepted {
        der: new.der,
        notices,
    })
}

/// Whether two names are the same name: the same RDNs in the same order, each with the
/// same attribute types and values. A string value is compared as text (case-sensitive,
/// as Kubernetes compares user and group names), whatever ASN.1 string type holds it:
/// cfssl rebuilds subjects the way Go does, PrintableString where it fits, so a subject
/// OpenSSL wrote as UTF8String comes back with other bytes but the same name.
pub fn same_name(a: &Name, b: &Name) -> bool {
    a.0.len() == b.0.len()
        && a.0
            .iter()
            .zip(&b.0)
            .all(|(x, y)| rdn_values(x) == rdn_values(y))
}

/// An attribute value as it is compared.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Value<'a> {
    Text(String),
    /// Not a string type (or not decodable as one): its tag and content bytes.
    Other(u8, &'a [u8]),
}

/// The (type, value) pairs of one RDN, sorted: a multi-valued RDN is a SET.
fn rdn_values(rdn: &RelativeDistinguishedName) -> Vec<(ObjectIdentifier, Value<'_>)> {
    let mut v: Vec<_> = rdn
        .0
        .iter()
        .map(|atv| (atv.oid, value(atv.value.tag(), atv.value.value())))
        .collect();
    v.sort();
    v
}

fn value(tag: Tag, bytes: &[u8]) -> Value<'_> {
    let text = match tag {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::VisibleString
        | Tag::NumericString => std::str::from_utf8(bytes).ok().map(str::to_string),
        // Go reads T61String as Latin-1, one byte a character.
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString if bytes.len() % 2 == 0 => char::decode_utf16(
            bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]])),
        )
        .collect::<Result<String, _>>()
        .ok(),
        _ => None,
    };
    match text {
        Some(t) => Value::Text(t),
        None => Value::Other(tag.octet(), bytes),
    }
}

fn list(s: &[San]) -> String {
    s.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn days(d: Duration) -> String {
    let secs = d.whole_seconds();
    if secs == 86_400 {
        "1 day".into()
    } else if secs % 86_400 == 0 {
        format!("{} days", secs / 86_400)
    } else {
        format!("{:.2} days", secs as f64 / 86_400.0)
    }
}

fn eku_name(o: &ObjectIdentifier) -> String {
    match o.to_string().as_str() {
        "1.3.6.1.5.5.7.3.1" => "serverAuth".into(),
        "1.3.6.1.5.5.7.3.2" => "clientAuth".into(),
        s => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::remote::csr::tests::{leaf, new_ca, template};
    use crate::pki::encode_pem;
    use crate::pki::x509::{CertTemplate, EKU_CLIENT, EKU_SERVER, OID_CN, OID_O};
    use crate::pki::{KeyAlgorithm, KeyEncoding};
    use der::asn1::{BitString, SetOfVec};
    use der::{Any, Decode, Encode};
    use x509_cert::attr::AttributeTypeAndValue;
    use x509_cert::ext::pkix::KeyUsages;
    use x509_cert::name::RdnSequence;
    use x509_cert::Certificate;

    fn expect<'a>(old: &'a CertFacts, key: &'a PrivateKey, ca: &'a CertFacts) -> Expectation<'a> {
        Expectation {
            old,
            key,
            ca: Some((Path::new("/etc/kubernetes/pki/ca.crt"), ca)),
            asked_lifetime: Duration::days(91),
            margin: Duration::days(1),
            now: OffsetDateTime::now_utc(),
        }
    }

    fn pem(c: &CertFacts) -> String {
        encode_pem("CERTIFICATE", &c.der)
    }

    #[test]
    fn a_faithful_answer_is_accepted_and_each_change_is_refused() {
        let ca = new_ca();
        let old_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let old = leaf(&ca, template(), &old_key);
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        // Wider usages are fine.
        let good = leaf(
            &ca,
            CertTemplate {
                key_usage: vec![KeyUsages::DigitalSignature, KeyUsages::KeyEncipherment],
                ext_key_usage: vec![EKU_CLIENT, EKU_SERVER],
                ..template()
            },
            &key,
        );
        let ok = check_returned(&pem(&good), &expect(&old, &key, &ca.0)).unwrap();
        assert_eq!(ok.der, good.der);
        assert!(ok.notices.is_empty());

        let refused = |c: CertFacts, k: &PrivateKey, want: &str| {
            let e = check_returned(&pem(&c), &expect(&old, k, &ca.0))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        };
        // Another key.
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        refused(leaf(&ca, template(), &other), &key, "another public key");
        // Subject: separate O RDNs instead of one multi-valued RDN.
        let mut t = template();
        t.subject = vec![
            vec![(OID_O, "aaa".into())],
            vec![(OID_O, "system:nodes".into())],
            vec![(OID_CN, "system:node:w1".into())],
        ];
        refused(leaf(&ca, t, &key), &key, "changed the subject");
        // Subject: the same values in another order.
        let mut t = template();
        t.subject.reverse();
        refused(leaf(&ca, t, &key), &key, "changed the subject");
        // Subject: case matters (Kubernetes user and group names are case-sensitive).
        let mut t = template();
        t.subject[1] = vec![(OID_CN, "system:node:W1".into())];
        refused(leaf(&ca, t, &key), &key, "changed the subject");
        // SANs dropped.
        let mut t = template();
        t.ip_addresses.clear();
        refused(leaf(&ca, t, &key), &key, "missing [IP:10.0.0.21, IP:::1]");
        // EKU narrowed.
        let mut t = template();
        t.ext_key_usage = vec![EKU_SERVER];
        refused(leaf(&ca, t, &key), &key, "clientAuth");
        // Another CA with the same name.
        refused(
            leaf(&new_ca(), template(), &key),
            &key,
            "signed by another CA",
        );
        // Expired.
        let mut t = template();
        t.not_before = Some(OffsetDateTime::now_utc() - Duration::days(200));
        t.not_after = Some(OffsetDateTime::now_utc() - Duration::days(1));
        refused(leaf(&ca, t, &key), &key, "expired");
    }

    #[test]
    fn shorter_than_asked_is_refused_unless_it_ends_later_than_the_old_one() {
        let ca = new_ca();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let now = OffsetDateTime::now_utc();
        // The old certificate: 365 days, 10 left; the profile gives 30.
        let old = leaf(
            &ca,
            CertTemplate {
                not_before: Some(now - Duration::days(355)),
                not_after: Some(now + Duration::days(10)),
                ..template()
            },
            &key,
        );
        let returned = |days| {
            leaf(
                &ca,
                CertTemplate {
                    not_before: Some(now - Duration::minutes(5)),
                    not_after: Some(now - Duration::minutes(5) + Duration::days(days)),
                    ..template()
                },
                &key,
            )
        };
        let mut e = expect(&old, &key, &ca.0);
        e.asked_lifetime = Duration::days(365);
        e.now = now;
        let short = returned(30);
        let ok = check_returned(&pem(&short), &e).unwrap();
        assert_eq!(ok.der, short.der);
        assert_eq!(ok.notices.len(), 1);
        assert!(matches!(
            ok.notices[0],
            Notice::ShorterThanAsked { got, asked, .. } if got == Duration::days(30) && asked == Duration::days(365)
        ));
        let n = ok.notices[0].to_string();
        assert!(
            n.contains("lives 30 days but 365 days was asked for")
                && n.contains("later than the old certificate"),
            "{n}"
        );
        // Ending no later than the old one: renewing would not help, refused.
        let shorter = returned(7);
        let err = check_returned(&pem(&shorter), &e).unwrap_err();
        assert!(matches!(err, Refusal::TooShort { .. }), "{err}");
        let err = err.to_string();
        assert!(
            err.contains("lives 7 days") && err.contains("no later than the old certificate"),
            "{err}"
        );
        // Within the margin: quiet.
        e.asked_lifetime = Duration::days(30) + Duration::hours(12);
        assert!(check_returned(&pem(&short), &e).unwrap().notices.is_empty());
    }

    #[test]
    fn without_a_ca_the_issuer_and_akid_must_stay() {
        let ca1 = new_ca();
        let ca2 = new_ca();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let old = leaf(&ca1, template(), &key);
        let mut e = expect(&old, &key, &ca1.0);
        e.ca = None;
        let same = leaf(&ca1, template(), &key);
        check_returned(&pem(&same), &e).unwrap();
        let other = leaf(&ca2, template(), &key);
        let err = check_returned(&pem(&other), &e).unwrap_err();
        assert!(matches!(err, Refusal::AuthorityKeyId), "{err}");
        assert!(err.to_string().contains("authority key id"), "{err}");
    }

    /// `cert` with every subject value re-encoded as UTF8String (what OpenSSL writes),
    /// signed again by `ca`.
    fn with_utf8_subject(cert: &CertFacts, ca: &(CertFacts, PrivateKey)) -> CertFacts {
        let mut c = Certificate::from_der(&cert.der).unwrap();
        let rdns = c
            .tbs_certificate
            .subject
            .0
            .iter()
            .map(|rdn| {
                let atvs: Vec<_> = rdn
                    .0
                    .iter()
                    .map(|atv| AttributeTypeAndValue {
                        oid: atv.oid,
                        value: Any::new(Tag::Utf8String, atv.value.value()).unwrap(),
                    })
                    .collect();
                RelativeDistinguishedName(SetOfVec::try_from(atvs).unwrap())
            })
            .collect();
        c.tbs_certificate.subject = RdnSequence(rdns);
        let sig = ca.1.sign(&c.tbs_certificate.to_der().unwrap()).unwrap();
        c.signature = BitString::from_bytes(&sig).unwrap();
        CertFacts::from_der(&c.to_der().unwrap()).unwrap()
    }

    #[test]
    fn the_same_subject_in_another_string_type_is_no_change() {
        let ca = new_ca();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        // The old certificate as OpenSSL makes it; cfssl answers with PrintableString.
        let old = with_utf8_subject(&leaf(&ca, template(), &key), &ca);
        let returned = leaf(&ca, template(), &key);
        assert_ne!(old.raw_subject, returned.raw_subject);
        assert_eq!(old.subject, returned.subject);
        let ok = check_returned(&pem(&returned), &expect(&old, &key, &ca.0)).unwrap();
        assert!(ok.notices.is_empty());
        // And the other way round.
        let returned = with_utf8_subject(&returned, &ca);
        let old = leaf(&ca, template(), &key);
        check_returned(&pem(&returned), &expect(&old, &key, &ca.0)).unwrap();
    }

    #[test]
    fn names_compare_by_type_and_text() {
        let atv = |oid, tag, s: &[u8]| AttributeTypeAndValue {
            oid,
            value: Any::new(tag, s).unwrap(),
        };
        let name = |rdns: Vec<Vec<AttributeTypeAndValue>>| {
            RdnSequence(
                rdns.into_iter()
                    .map(|v| RelativeDistinguishedName(SetOfVec::try_from(v).unwrap()))
                    .collect(),
            )
        };
        let cn = |tag, s: &[u8]| name(vec![vec![atv(OID_CN, tag, s)]]);
        assert!(same_name(
            &cn(Tag::PrintableString, b"node"),
            &cn(Tag::Utf8String, b"node")
        ));
        assert!(same_name(
            &cn(Tag::BmpString, &[0, b'n', 0, b'o']),
            &cn(Tag::Utf8String, b"no")
        ));
        assert!(same_name(
            &cn(Tag::TeletexString, &[0xe9]),
            &cn(Tag::Utf8String, "é".as_bytes())
        ));
        assert!(!same_name(
            &cn(Tag::Utf8String, b"Node"),
            &cn(Tag::Utf8String, b"node")
        ));
        // Same value, another attribute type.
        assert!(!same_name(
            &cn(Tag::Utf8String, b"node"),
            &name(vec![vec![atv(OID_O, Tag::Utf8String, b"node")]])
        ));
        // A non-string value is compared as tag and bytes.
        assert!(!same_name(
            &cn(Tag::OctetString, b"node"),
            &cn(Tag::Utf8String, b"node")
        ));
        // One multi-valued RDN is not two RDNs; order inside an RDN does not matter.
        let a = atv(OID_O, Tag::PrintableString, b"a");
        let b = atv(OID_O, Tag::Utf8String, b"b");
        let multi = name(vec![vec![a.clone(), b.clone()]]);
        assert!(same_name(&multi, &name(vec![vec![b.clone(), a.clone()]])));
        assert!(!same_name(&multi, &name(vec![vec![a], vec![b]])));
    }
}

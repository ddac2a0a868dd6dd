//! The certificate for a granted CSR, as Kubernetes' own signer lays it out: the
//! request's subject, key and SANs; the granted usages; CA:FALSE; the CA's key id;
//! backdated five minutes for clock skew; never past the CA's own end.

use der::asn1::OctetString;
use der::flagset::FlagSet;
use der::Decode;
use time::OffsetDateTime;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
};
use x509_cert::name::Name;
use x509_cert::TbsCertificate;

use super::decide::{Grant, Usage};
use crate::pki::x509::{ext, random_serial, sign_tbs, validity, Issuer};
use crate::pki::PkiError;

/// How far notBefore is set back, for clients whose clocks lag (Kubernetes' signer
/// does the same).
pub const BACKDATE: time::Duration = time::Duration::minutes(5);

/// The validity of a certificate issued at `now` for `lifetime`, within the CA's.
/// `None` when nothing valid can be issued (the CA ends now or earlier).
pub fn window(
    now: OffsetDateTime,
    lifetime: std::time::Duration,
    ca_not_before: OffsetDateTime,
    ca_not_after: OffsetDateTime,
) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let not_before = (now - BACKDATE).max(ca_not_before);
    let lifetime = time::Duration::try_from(lifetime).ok()?;
    // A lifetime past the calendar's end is capped by the CA's end, never a panic.
    let not_after = now
        .checked_add(lifetime)
        .map_or(ca_not_after, |end| end.min(ca_not_after));
    (not_after > now).then_some((not_before, not_after))
}

/// Signs the certificate (DER).
pub fn issue(
    grant: &Grant,
    issuer: &Issuer<'_>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let enc = |what: &'static str| move |source| PkiError::Encoding { what, source };
    let subject = Name::from_der(&grant.request.raw_subject).map_err(enc("request subject"))?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&grant.request.spki)
        .map_err(enc("request key"))?;
    let mut ku = FlagSet::<KeyUsages>::default();
    let mut eku = Vec::new();
    for u in &grant.usages {
        match u {
            Usage::Key(k) => ku |= *k,
            Usage::Extended(o) => eku.push(*o),
        }
    }
    let mut exts = Vec::new();
    if !ku.is_empty() {
        exts.push(ext(&KeyUsage(ku), true)?);
    }
    if !eku.is_empty() {
        exts.push(ext(&ExtendedKeyUsage(eku), false)?);
    }
    exts.push(ext(
        &BasicConstraints {
            ca: false,
            path_len_constraint: None,
        },
        true,
    )?);
    if let Some(skid) = &issuer.cert.subject_key_id {
        exts.push(ext(
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(skid.clone()).map_err(enc("AKID"))?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?);
    }
    if let Some(san) = &grant.request.san {
        // RFC 5280: critical only when the subject is empty.
        exts.push(ext(san, subject.0.is_empty())?);
    }
    let tbs = TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: random_serial()?,
        signature: issuer.key.signature_algorithm(),
        issuer: Name::from_der(&issuer.cert.raw_subject).map_err(enc("CA subject"))?,
        validity: validity(not_before, not_after)?,
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    };
    sign_tbs(tbs, issuer.key)
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn a_lifetime_past_the_calendar_ends_with_the_ca() {
        let now = OffsetDateTime::now_utc();
        let ca_end = now + time::Duration::days(365);
        let huge = std::time::Duration::from_secs(1 << 50);
        let (_, end) = window(now, huge, now - time::Duration::days(1), ca_end).expect("a window");
        assert_eq!(end, ca_end);
    }
}

//! A `[[signer]]` whose CA is a cfssl server, pure: the sign request for an approved
//! CSR, and the judgement of what cfssl returns. The request goes through the project's
//! one cfssl client (`ca::remote::client`, the one `[ca.remote]` renews with: TLS, the
//! authsign HMAC, timeouts, retries); the CSR's own PKCS#10 request is sent as is, so
//! cfssl signs the requester's public key and no private key is ever involved.
//!
//! cfssl (1.2, Debian's golang-cfssl) takes the lifetime from the profile's `expiry`
//! and cannot be asked for one, and it does not cap it at its CA's end (the seed's
//! 876000h profile gives 100 years under a 5-year CA). So the profile governs, and a
//! certificate that lives longer than the CSR may have (spec.expirationSeconds within
//! `max_duration_seconds`) or outlives the CA is never written: the CSR is failed with
//! the reason, naming the fix (the profile's expiry).

use std::collections::BTreeSet;
use std::path::Path;

use der::Decode;
use time::{Duration, OffsetDateTime};
use x509_cert::name::Name;

use super::decide::{usage, Grant, Usage};
use crate::ca::remote::csr::{hosts_of, san_of, Identity, San};
use crate::ca::remote::{check::same_name, CfsslSignRequest, CLOCK_SKEW};
use crate::config::signer::{SignerSettings, KNOWN_USAGES};
use crate::pki::{self, CertFacts};
use crate::timefmt::rfc3339;

/// Why a certificate cfssl returned is not written: the CSR's `Failed` reason.
#[derive(Debug, thiserror::Error)]
pub enum Unfit {
    #[error("the request asks for SAN {0}, which cfssl's hosts cannot carry")]
    Hosts(San),
    #[error("encoding the cfssl request: {0}")]
    Encode(String),
    #[error("cfssl returned no readable certificate: {0}")]
    Unreadable(String),
    #[error("cfssl returned a certificate for another public key than the request's")]
    OtherKey,
    #[error("cfssl returned a CA certificate (CA:TRUE)")]
    Ca,
    #[error(
        "cfssl changed the subject: the request asks for {asked:?}, the certificate has {got:?}"
    )]
    Subject { asked: String, got: String },
    #[error(
        "cfssl changed the SANs: the request asks for [{}], the certificate has [{}]",
        list(asked),
        list(got)
    )]
    Sans { asked: Vec<San>, got: Vec<San> },
    #[error(
        "{} gives usages {} that signer {signer} does not allow (it issues {}); fix the profile's usages",
        shown(profile),
        extra.join(", "), allowed.join(", ")
    )]
    ExtraUsages {
        profile: String,
        signer: String,
        extra: Vec<String>,
        allowed: Vec<String>,
    },
    #[error(
        "{} does not give usages {} the CSR asks for; fix the profile's usages",
        shown(profile),
        missing.join(", ")
    )]
    MissingUsages {
        profile: String,
        missing: Vec<String>,
    },
    #[error("the certificate cfssl returned is not signed by the CA {} ({ca}) but by {issuer}", ca_path.display())]
    OtherCa {
        issuer: String,
        ca: String,
        ca_path: std::path::PathBuf,
    },
    #[error("the certificate cfssl returned is not valid now (not before {}, not after {})", rfc3339(*not_before), rfc3339(*not_after))]
    NotValidNow {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error(
        "{} gives a certificate of {} ending {}, past the CA's end {}: \
         it would outlive its CA; set the profile's expiry shorter",
        shown(profile), days(*lifetime), rfc3339(*not_after), rfc3339(*ca_end)
    )]
    OutlivesCa {
        profile: String,
        not_after: OffsetDateTime,
        lifetime: Duration,
        ca_end: OffsetDateTime,
    },
    #[error(
        "{} gives {} but the CSR may have at most {} ({}); \
         cfssl cannot be asked for a lifetime, its profile's expiry sets it",
        shown(profile), days(*got), days(*allowed), why
    )]
    TooLong {
        profile: String,
        got: Duration,
        allowed: Duration,
        why: &'static str,
    },
}

/// The body of the sign request (before the authsign wrapping): the CSR's PEM as the
/// requester made it, the profile and label, and `hosts` = the request's SANs (cfssl
/// sets the SANs from `hosts`; an empty list would mean none).
pub fn request_body(
    grant: &Grant,
    request_pem: &str,
    s: &SignerSettings,
) -> Result<Vec<u8>, Unfit> {
    let sans: Vec<San> = grant
        .request
        .san
        .iter()
        .flat_map(|s| s.0.iter().map(san_of))
        .collect();
    let hosts = hosts_of(&sans).map_err(|_| {
        let other = sans.iter().find(|s| matches!(s, San::Other(_)));
        Unfit::Hosts(other.cloned().unwrap_or(San::Other(String::new())))
    })?;
    let (profile, label) = profile_of(s);
    serde_json::to_vec(&CfsslSignRequest {
        certificate_request: request_pem,
        profile,
        label,
        hosts: &hosts,
    })
    .map_err(|e| Unfit::Encode(e.to_string()))
}

fn profile_of(s: &SignerSettings) -> (&str, &str) {
    s.cfssl
        .as_ref()
        .map_or(("", ""), |c| (c.profile.as_str(), c.label.as_str()))
}

/// What the certificate cfssl returned must be, to be written.
pub struct Expected<'a> {
    pub grant: &'a Grant,
    pub signer: &'a SignerSettings,
    /// The CA file: its certificates, the issuing one first.
    pub ca_path: &'a Path,
    pub ca: &'a [CertFacts],
    /// spec.expirationSeconds was given (then it bounds the lifetime, else the maximum).
    pub asked_expiration: bool,
    pub now: OffsetDateTime,
}

/// Checks the certificate cfssl returned (PEM, leaf first): the request's key, subject
/// and SANs; not a CA; the usages the CSR asks for and no other the signer does not
/// allow; signed by the CA; valid now; no longer than the CSR may have; ending no later
/// than the CA that signed it. The DER to write, or the reason to fail the CSR.
pub fn check_issued(pem: &str, e: &Expected<'_>) -> Result<Vec<u8>, Unfit> {
    let unreadable = |x: &dyn std::fmt::Display| Unfit::Unreadable(x.to_string());
    let blocks = pki::parse_pem(pem.as_bytes()).map_err(|x| unreadable(&x))?;
    let cert = pki::certificates(&blocks)
        .map_err(|x| unreadable(&x))?
        .into_iter()
        .next()
        .ok_or_else(|| unreadable(&"no CERTIFICATE block"))?;
    let id = Identity::of(&cert.der).map_err(|x| unreadable(&x))?;
    let req = &e.grant.request;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&req.spki).map_err(|x| unreadable(&x))?;
    if spki.subject_public_key.raw_bytes() != cert.public_key.as_slice() {
        return Err(Unfit::OtherKey);
    }
    if id.is_ca || cert.is_ca {
        return Err(Unfit::Ca);
    }
    let asked_subject = Name::from_der(&req.raw_subject).map_err(|x| unreadable(&x))?;
    if !same_name(&id.subject, &asked_subject) {
        return Err(Unfit::Subject {
            asked: der::asn1::AnyRef::from_der(&req.raw_subject)
                .and_then(pki::name_to_string)
                .unwrap_or_else(|_| asked_subject.to_string()),
            got: cert.subject.clone(),
        });
    }
    let asked_sans: BTreeSet<San> = req
        .san
        .iter()
        .flat_map(|s| s.0.iter().map(san_of))
        .collect();
    if id.sans != asked_sans {
        return Err(Unfit::Sans {
            asked: asked_sans.into_iter().collect(),
            got: id.sans.into_iter().collect(),
        });
    }
    check_usages(&id, e)?;
    let (profile, _) = profile_of(e.signer);
    let profile = profile.to_string();
    let Some(ca) = e.ca.iter().find(|c| cert.is_signed_by(c)) else {
        return Err(Unfit::OtherCa {
            issuer: cert.issuer.clone(),
            ca: e.ca.first().map(|c| c.subject.clone()).unwrap_or_default(),
            ca_path: e.ca_path.to_path_buf(),
        });
    };
    if cert.not_before > e.now + CLOCK_SKEW || cert.not_after <= e.now {
        return Err(Unfit::NotValidNow {
            not_before: cert.not_before,
            not_after: cert.not_after,
        });
    }
    let lifetime = cert.not_after - cert.not_before;
    if cert.not_after > ca.not_after {
        return Err(Unfit::OutlivesCa {
            profile,
            not_after: cert.not_after,
            lifetime,
            ca_end: ca.not_after,
        });
    }
    let allowed = Duration::try_from(e.grant.lifetime).unwrap_or(Duration::MAX);
    // From now, not from notBefore: cfssl backdates by five minutes; the same again
    // for the clocks of this node and the server.
    if cert.not_after - e.now > allowed + CLOCK_SKEW {
        return Err(Unfit::TooLong {
            profile,
            got: lifetime,
            allowed,
            why: if e.asked_expiration {
                "spec.expirationSeconds"
            } else {
                "the signer's max_duration_seconds"
            },
        });
    }
    Ok(cert.der)
}

/// The certificate's usages against the CSR's and the signer's.
fn check_usages(id: &Identity, e: &Expected<'_>) -> Result<(), Unfit> {
    let key = |u: &Usage| match u {
        Usage::Key(k) => format!("{k:?}"),
        Usage::Extended(o) => o.to_string(),
    };
    // The API's word for a usage the certificate carries, or its X.509 name.
    let word = |k: &str| {
        KNOWN_USAGES
            .iter()
            .find(|w| usage(w).as_ref().map(key).as_deref() == Some(k))
            .map_or_else(|| k.to_string(), |w| w.to_string())
    };
    let carried: BTreeSet<String> = id
        .key_usage
        .iter()
        .cloned()
        .chain(id.ext_key_usage.iter().map(|o| o.to_string()))
        .collect();
    let allowed: BTreeSet<String> = e
        .signer
        .usages
        .iter()
        .filter_map(|w| usage(w))
        .map(|u| key(&u))
        .collect();
    let (profile, _) = profile_of(e.signer);
    let extra: Vec<String> = carried.difference(&allowed).map(|k| word(k)).collect();
    if !extra.is_empty() {
        return Err(Unfit::ExtraUsages {
            profile: profile.into(),
            signer: e.signer.name.clone(),
            extra,
            allowed: e.signer.usages.clone(),
        });
    }
    let missing: Vec<String> = e
        .grant
        .usages
        .iter()
        .map(key)
        .filter(|k| !carried.contains(k))
        .map(|k| word(&k))
        .collect();
    if !missing.is_empty() {
        return Err(Unfit::MissingUsages {
            profile: profile.into(),
            missing,
        });
    }
    Ok(())
}

/// The profile as the operator configured it.
fn shown(profile: &str) -> String {
    if profile.is_empty() {
        "cfssl's default profile".into()
    } else {
        format!("cfssl's profile {profile:?}")
    }
}

fn list(s: &[San]) -> String {
    s.iter().map(San::to_string).collect::<Vec<_>>().join(", ")
}

/// A lifetime as a person reads it: days, else hours, else seconds.
fn days(d: Duration) -> String {
    let s = d.whole_seconds();
    match s {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3_600 => format!("{} hours", s / 3_600),
        s => format!("{s} seconds"),
    }
}

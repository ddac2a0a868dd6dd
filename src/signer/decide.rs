//! The signer's decisions, pure: where a CSR stands, and whether this signer's profile
//! lets it issue what the CSR asks for (key, usages, lifetime) or must fail it.

use std::time::Duration;

use der::asn1::ObjectIdentifier;
use x509_cert::ext::pkix::KeyUsages;

use super::request::{decode_request, parse_request, ParsedRequest};
use crate::config::signer::SignerSettings;
use crate::kube::types::CertificateSigningRequest;

/// Where a CSR stands, from its status (the API's own conditions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Neither approved nor denied yet: a signer waits.
    Pending,
    /// Approved and not yet issued or failed: a signer's work.
    Approved,
    Denied,
    Failed,
    /// status.certificate is set: done, never signed again.
    Issued,
}

impl Phase {
    pub fn of(csr: &CertificateSigningRequest) -> Phase {
        let status = csr.status.clone().unwrap_or_default();
        if status.certificate.as_deref().is_some_and(|c| !c.is_empty()) {
            return Phase::Issued;
        }
        let conditions = status.conditions.unwrap_or_default();
        // A condition counts unless explicitly "False" (the API defaults status to True).
        let has = |t: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status != "False")
        };
        if has("Denied") {
            Phase::Denied
        } else if has("Failed") {
            Phase::Failed
        } else if has("Approved") {
            Phase::Approved
        } else {
            Phase::Pending
        }
    }
}

/// A usage the API names, as the certificate carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Key(KeyUsages),
    Extended(ObjectIdentifier),
}

/// The API's usage word (certificates.k8s.io/v1 KeyUsage) as an X.509 usage, as
/// Kubernetes' own signer maps it. "signing" is digital signature (cfssl's word).
pub fn usage(word: &str) -> Option<Usage> {
    let eku = |s: &str| Usage::Extended(ObjectIdentifier::new_unwrap(s));
    Some(match word {
        "signing" | "digital signature" => Usage::Key(KeyUsages::DigitalSignature),
        "content commitment" => Usage::Key(KeyUsages::NonRepudiation),
        "key encipherment" => Usage::Key(KeyUsages::KeyEncipherment),
        "key agreement" => Usage::Key(KeyUsages::KeyAgreement),
        "data encipherment" => Usage::Key(KeyUsages::DataEncipherment),
        "encipher only" => Usage::Key(KeyUsages::EncipherOnly),
        "decipher only" => Usage::Key(KeyUsages::DecipherOnly),
        "any" => eku("2.5.29.37.0"),
        "server auth" => eku("1.3.6.1.5.5.7.3.1"),
        "client auth" => eku("1.3.6.1.5.5.7.3.2"),
        "code signing" => eku("1.3.6.1.5.5.7.3.3"),
        "email protection" | "s/mime" => eku("1.3.6.1.5.5.7.3.4"),
        "ipsec end system" => eku("1.3.6.1.5.5.7.3.5"),
        "ipsec tunnel" => eku("1.3.6.1.5.5.7.3.6"),
        "ipsec user" => eku("1.3.6.1.5.5.7.3.7"),
        "timestamping" => eku("1.3.6.1.5.5.7.3.8"),
        "ocsp signing" => eku("1.3.6.1.5.5.7.3.9"),
        "microsoft sgc" => eku("1.3.6.1.4.1.311.10.3.3"),
        "netscape sgc" => eku("2.16.840.1.113730.4.1"),
        _ => return None,
    })
}

/// What this signer will issue for an approved CSR.
#[derive(Clone, Debug)]
pub struct Grant {
    pub request: ParsedRequest,
    pub usages: Vec<Usage>,
    /// The lifetime asked for, within the profile's maximum (the CA's own end caps it
    /// again when signing).
    pub lifetime: Duration,
}

/// Why the CSR gets the `Failed` condition: a sentence a person understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

/// The lifetime to issue: spec.expirationSeconds when given and positive, within the
/// profile's maximum; the maximum otherwise.
pub fn lifetime(expiration_seconds: Option<i64>, max_seconds: u64) -> Duration {
    let asked = expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .unwrap_or(max_seconds);
    Duration::from_secs(asked.min(max_seconds))
}

/// Checks an approved CSR against the profile: the request itself, its key, its
/// usages. `Err` is the reason for the `Failed` condition.
pub fn evaluate(csr: &CertificateSigningRequest, p: &SignerSettings) -> Result<Grant, Refusal> {
    let refuse = |m: String| Refusal(m);
    let pem = decode_request(&csr.spec.request).map_err(refuse)?;
    let request = parse_request(&pem).map_err(refuse)?;
    if !p
        .key_algorithms
        .iter()
        .any(|a| a == request.key.algorithm())
    {
        return Err(refuse(format!(
            "the request's key is {}; signer {} issues for {} keys only",
            request.key,
            p.name,
            p.key_algorithms.join(", ")
        )));
    }
    let asked = csr.spec.usages.clone().unwrap_or_default();
    if asked.is_empty() {
        return Err(refuse("the CSR asks for no usages".into()));
    }
    let allowed = |w: &str| {
        let u = usage(w);
        u.is_some() && p.usages.iter().any(|a| usage(a) == u)
    };
    let refused: Vec<&str> = asked
        .iter()
        .map(String::as_str)
        .filter(|w| !allowed(w))
        .collect();
    if !refused.is_empty() {
        return Err(refuse(format!(
            "usages {} are not allowed by signer {} (it issues {})",
            refused.join(", "),
            p.name,
            p.usages.join(", ")
        )));
    }
    let mut usages: Vec<Usage> = Vec::new();
    for u in asked.iter().filter_map(|w| usage(w)) {
        if !usages.contains(&u) {
            usages.push(u);
        }
    }
    Ok(Grant {
        request,
        usages,
        lifetime: lifetime(csr.spec.expiration_seconds, p.max_duration_seconds),
    })
}

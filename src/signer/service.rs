//! The signer's loop: hold the Lease (one signer signs at a time), list each signer's
//! CSRs, act on the Approved ones, sleep, again. A list every poll rather than a watch:
//! a restarted signer, an API server restart or a dropped connection loses nothing, as
//! the next list sees every CSR as it stands. Every status write carries the
//! resourceVersion the decision was made on, so a CSR another signer wrote in the
//! meantime is refused with 409 and never signed twice. A round stops before a write
//! that could land after the Lease expired ([`Term`]), renews it and goes on.
//!
//! A cfssl server is asked within the term too: no try starts, nor lasts, past it, and
//! a server that did not answer rests for a while (rest.rs) before it is asked again,
//! so a dead server neither lets the Lease lapse nor slows every round. The kubelets'
//! serving CSRs are approved first in each round, before any signing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::approve::{judge_with, requesting_node, Verdict, KUBELET_SERVING};
use super::cfssl::{check_issued, request_body, Expected};
use super::decide::{evaluate, Grant, Phase, Refusal};
use super::issue::{issue, window};
use super::request::decode_request;
use super::rest::Resting;
use crate::ca::remote::client::{Deadline, Failure, RemoteError};
use crate::ca::remote::RemoteClient;
use crate::ca::{load_ca_bundle, LocalCa};
use crate::config::remote::RemoteSettings;
use crate::config::san_rules::SanRules;
use crate::config::signer::{CsrSettings, SignerSettings};
use crate::config::InvalidValue;
use crate::kube::lease::Elector;
use crate::kube::types::{CertificateSigningRequest, CsrCondition, CsrStatus, List, Node};
use crate::kube::{b64, ApiClient, ApiError, ClientOptions};
use crate::node::NodeRoot;
use crate::pki::{encode_pem, CertFacts};

const CSR_API: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "no [[signer]] table is configured and csr.approve_kubelet_serving is false: nothing to do"
    )]
    NoSigner,
    #[error("[csr] kubeconfig {0}")]
    Client(#[source] ApiError),
    #[error("{0}")]
    Config(#[from] InvalidValue),
}

/// The time this signer may still write in after a renewal of the Lease: the Lease's
/// duration less one request's timeout, so the last write started ends (answered or
/// timed out) before another signer can take the Lease over. Checked before every write:
/// a round of many CSRs, each up to a timeout, would otherwise outlast the Lease.
#[derive(Clone, Copy, Debug)]
struct Term {
    /// Taken before the renewal's first request: its renewTime, and another candidate's
    /// clock, start no earlier.
    renewed_at: Instant,
    budget: Duration,
}

impl Term {
    fn new(renewed_at: Instant, lease: Duration, timeout: Duration) -> Term {
        Term {
            renewed_at,
            budget: lease.saturating_sub(timeout),
        }
    }

    /// Whether a write started at `now` might end after the Lease.
    fn over_at(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.renewed_at) >= self.budget
    }

    fn over(&self) -> bool {
        self.over_at(Instant::now())
    }

    /// When the term ends: the last moment a write may start.
    fn end(&self) -> Instant {
        self.renewed_at + self.budget
    }
}

/// What the service keeps between rounds.
#[derive(Default)]
struct Memory {
    /// What was last said about each signer that cannot sign, so a broken CA is logged
    /// when it breaks or changes, not at every poll.
    said: BTreeMap<String, String>,
    /// The signers whose cfssl server did not answer, resting.
    resting: Resting,
}

/// What happened to one CSR in one round, for the journal.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Issued {
        serial: String,
    },
    Failed {
        reason: String,
    },
    /// Another writer changed the CSR first (409): the next list decides again.
    Lost,
    /// The CA or its server cannot sign now: the signer's other CSRs wait for the next
    /// round too.
    Waiting,
    /// cfssl refused this one request: the CSR stays Approved for the next round (a
    /// refusal may be the signer's configuration, fixed by the operator), and the
    /// signer's other CSRs go on.
    Skipped,
    /// The term since the Lease's renewal ran out before the write: renew first.
    TermOver,
}

/// Runs until killed (`rounds` None) or for that many rounds.
pub fn serve(
    root: &NodeRoot,
    csr: &CsrSettings,
    signers: &[SignerSettings],
    rounds: Option<u64>,
) -> Result<(), ServeError> {
    if signers.is_empty() && !csr.approve_kubelet_serving {
        return Err(ServeError::NoSigner);
    }
    let rules = csr.san_rules()?;
    let api = ApiClient::from_kubeconfig(
        root,
        &csr.kubeconfig,
        ClientOptions {
            connect_timeout_seconds: csr.timeout_seconds.min(5),
            timeout_seconds: csr.timeout_seconds,
            ..Default::default()
        },
    )
    .map_err(ServeError::Client)?;
    let identity = csr.identity.clone().unwrap_or_else(default_identity);
    let mut elector = Elector::new(
        &csr.lease_namespace,
        &csr.lease_name,
        &identity,
        Duration::from_secs(csr.lease_duration_seconds),
    );
    tracing::info!(
        identity = %identity,
        signers = %signers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        "signer started"
    );
    let mut memory = Memory::default();
    let mut leading = false;
    let mut n = 0;
    loop {
        let renewed_at = Instant::now();
        match elector.try_lead(&api) {
            Ok(now_leading) => {
                if now_leading != leading {
                    tracing::info!(
                        lease = %format!("{}/{}", csr.lease_namespace, csr.lease_name),
                        identity = %identity,
                        "{}",
                        if now_leading { "leading: this signer signs" } else { "following: another signer holds the lease" }
                    );
                }
                leading = now_leading;
            }
            Err(e) => {
                if leading {
                    tracing::warn!("lost the lease (cannot renew it): {e}");
                }
                leading = false;
            }
        }
        let term = Term::new(
            renewed_at,
            Duration::from_secs(csr.lease_duration_seconds),
            Duration::from_secs(csr.timeout_seconds),
        );
        let mut cut = false;
        if leading {
            // Approvals first: signing, however long it takes within the term, never
            // holds up a kubelet waiting for its serving certificate.
            if csr.approve_kubelet_serving {
                cut = !approve_round(&api, csr.kubelet_serving_max_seconds, &rules, &term);
            }
            for s in signers {
                if cut {
                    break;
                }
                cut = !round(root, &api, s, &mut memory, &term);
            }
        }
        n += 1;
        if rounds.is_some_and(|r| n >= r) {
            return Ok(());
        }
        if cut {
            // What is left is acted on right after the renewal, not a poll later.
            tracing::info!(
                "the round reached lease_duration_seconds - timeout_seconds since the Lease's renewal: renewing it before going on"
            );
            continue;
        }
        std::thread::sleep(Duration::from_secs(csr.poll_seconds));
    }
}

/// One list of the kubelets' serving CSRs, each pending one approved or denied. False
/// when it stopped because the term since the Lease's renewal ran out.
fn approve_round(api: &ApiClient, max_seconds: u64, rules: &SanRules, term: &Term) -> bool {
    let path = format!(
        "{CSR_API}?fieldSelector=spec.signerName%3D{}",
        encode(KUBELET_SERVING)
    );
    let list: List<CertificateSigningRequest> = match api.get(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(signer = KUBELET_SERVING, "listing CSRs failed: {e}");
            return true;
        }
    };
    for csr in list.items {
        if csr.spec.signer_name != KUBELET_SERVING || Phase::of(&csr) != Phase::Pending {
            continue;
        }
        // An object without a name cannot be addressed (no PUT to .../csrs//status).
        let Some(name) = csr.metadata.name.clone().filter(|n| !n.is_empty()) else {
            continue;
        };
        // The Node as the API server has it: its addresses decide the IP SANs.
        let node = match requesting_node(&csr) {
            Some(n) => match api.get::<Node>(&format!("/api/v1/nodes/{}", encode(&n))) {
                Ok(node) => Some(node),
                Err(e) if e.is_not_found() => None,
                Err(e) => {
                    tracing::warn!(csr = %name, "reading Node {n} failed: {e}");
                    continue;
                }
            },
            None => None,
        };
        let (kind, reason, message) = match judge_with(&csr, node.as_ref(), max_seconds, rules) {
            Verdict::Approve(m) => ("Approved", "CertRotatorApproved", m),
            Verdict::Deny(m) => ("Denied", "CertRotatorDenied", m),
        };
        if term.over() {
            return false;
        }
        let mut next = csr;
        push_condition(&mut next, kind, reason, &message);
        let path = format!("{CSR_API}/{}/approval", encode(&name));
        match api.put::<_, serde_json::Value>(&path, &next) {
            Ok(_) if kind == "Approved" => tracing::info!(csr = %name, "approved: {message}"),
            Ok(_) => tracing::warn!(csr = %name, "denied: {message}"),
            Err(e) if e.is_conflict() => {
                tracing::info!(csr = %name, "the CSR changed before our write (409): left to the next round")
            }
            Err(e) => tracing::warn!(csr = %name, "{e}"),
        }
    }
    true
}

/// One list of one signer's CSRs, each Approved one signed or failed. False when it
/// stopped because the term since the Lease's renewal ran out.
fn round(
    root: &NodeRoot,
    api: &ApiClient,
    s: &SignerSettings,
    memory: &mut Memory,
    term: &Term,
) -> bool {
    // A cfssl server that did not answer rests: its CSRs wait without a list.
    if s.cfssl.is_some() && memory.resting.left(&s.name, Instant::now()).is_some() {
        return true;
    }
    let path = format!(
        "{CSR_API}?fieldSelector=spec.signerName%3D{}",
        encode(&s.name)
    );
    let list: List<CertificateSigningRequest> = match api.get(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(signer = %s.name, "listing CSRs failed: {e}");
            return true;
        }
    };
    sign_listed(root, api, s, list.items, memory, term)
}

/// Acts on the listed CSRs of one signer, each Approved one signed or failed, in list
/// order. The first that must wait (the CA or its cfssl server cannot sign now: a
/// server that did not answer begins its rest) ends the signer's round, so a round
/// sends a dead server one CSR's tries and counts one failure. False when it stopped
/// because the term ran out.
fn sign_listed(
    root: &NodeRoot,
    api: &ApiClient,
    s: &SignerSettings,
    items: Vec<CertificateSigningRequest>,
    memory: &mut Memory,
    term: &Term,
) -> bool {
    for csr in items {
        // The field selector is the API server's; the check is ours.
        if csr.spec.signer_name != s.name || Phase::of(&csr) != Phase::Approved {
            continue;
        }
        // An object without a name cannot be addressed (no PUT to .../csrs//status).
        let Some(name) = csr.metadata.name.clone().filter(|n| !n.is_empty()) else {
            continue;
        };
        if term.over() {
            return false;
        }
        match handle(root, api, s, csr, memory, term) {
            Ok(Outcome::Issued { serial }) => {
                tracing::info!(csr = %name, signer = %s.name, serial = %serial, "issued")
            }
            Ok(Outcome::Failed { reason }) => {
                tracing::warn!(csr = %name, signer = %s.name, "failed the CSR: {reason}")
            }
            Ok(Outcome::Lost) => {
                tracing::info!(csr = %name, "the CSR changed before our write (409): left to the next round")
            }
            // Not `continue`: the signer's other CSRs would go to a server that just
            // failed, each counting a failure (a rest of 20 s after 3 CSRs, not 5 s).
            Ok(Outcome::Waiting) => break,
            Ok(Outcome::Skipped) => continue,
            Ok(Outcome::TermOver) => return false,
            Err(e) => tracing::warn!(csr = %name, signer = %s.name, "{e}"),
        }
    }
    true
}

fn handle(
    root: &NodeRoot,
    api: &ApiClient,
    s: &SignerSettings,
    csr: CertificateSigningRequest,
    memory: &mut Memory,
    term: &Term,
) -> Result<Outcome, ApiError> {
    let grant = match evaluate(&csr, s) {
        Ok(g) => g,
        Err(Refusal(reason)) => return fail(api, csr, "SignerValidationFailure", reason),
    };
    let now = OffsetDateTime::now_utc();
    let signature = match &s.cfssl {
        None => sign_locally(root, s, &grant, now, &mut memory.said),
        Some(c) => sign_with_cfssl(root, s, c, &csr, &grant, memory, term),
    };
    // Signing may have taken a while (a cfssl server's tries, up to the term's end):
    // the one write, Issued or Failed alike, happens only within the term of the Lease
    // this signer renewed.
    if term.over() {
        return Ok(Outcome::TermOver);
    }
    let der = match signature {
        Signature::Der(d) => d,
        Signature::Refused(reason, message) => return fail(api, csr, reason, message),
        Signature::Wait => return Ok(Outcome::Waiting),
        Signature::Skip => return Ok(Outcome::Skipped),
    };
    let serial = CertFacts::from_der(&der)
        .map(|c| c.serial)
        .unwrap_or_default();
    let mut next = csr;
    let mut status = next.status.take().unwrap_or_default();
    status.certificate = Some(b64(encode_pem("CERTIFICATE", &der).as_bytes()));
    next.status = Some(status);
    write_status(api, &next).map(|written| {
        if written {
            Outcome::Issued { serial }
        } else {
            Outcome::Lost
        }
    })
}

/// What signing one granted CSR came to.
enum Signature {
    Der(Vec<u8>),
    /// The CSR gets `Failed` with this reason and message.
    Refused(&'static str, String),
    /// cfssl refused this request: said in the journal, this CSR waits, the others go on.
    Skip,
    /// The CA or its server cannot sign now: said in the journal, the CSR waits.
    Wait,
}

/// Says in the journal why a signer cannot sign, when that changes (not at every poll).
fn cannot_sign(said: &mut BTreeMap<String, String>, s: &SignerSettings, why: String) -> Signature {
    if said.get(&s.name) != Some(&why) {
        tracing::error!(signer = %s.name, "cannot sign: {why}");
        said.insert(s.name.clone(), why);
    }
    Signature::Wait
}

/// Signs with the CA key on this node.
fn sign_locally(
    root: &NodeRoot,
    s: &SignerSettings,
    grant: &Grant,
    now: OffsetDateTime,
    ca_said: &mut BTreeMap<String, String>,
) -> Signature {
    let Some(key) = &s.ca_key else {
        return cannot_sign(ca_said, s, "neither ca_key nor a cfssl table is set".into());
    };
    // Loaded for each signature: a renewed CA is used at once, an expired one signs
    // nothing, a missing one is said in the journal and the CSR waits for it.
    let ca = match LocalCa::load(root, &s.name, &s.ca_cert, key, now) {
        Ok(ca) => {
            ca_said.remove(&s.name);
            ca
        }
        Err(e) => return cannot_sign(ca_said, s, format!("the CA cannot be used: {e}")),
    };
    let issuer = ca.issuer();
    let Some((nb, na)) = window(
        now,
        grant.lifetime,
        issuer.cert.not_before,
        issuer.cert.not_after,
    ) else {
        return Signature::Wait;
    };
    match issue(grant, &issuer, nb, na) {
        Ok(d) => Signature::Der(d),
        Err(e) => Signature::Refused("SigningFailed", format!("signing failed: {e}")),
    }
}

/// Has the cfssl server sign the CSR's own request, and checks what it returns. The
/// server refusing, unreachable or timing out is no reason to fail the CSR: it waits,
/// and the journal names the server. The server is asked within the Lease's term only;
/// one that did not answer rests (rest.rs).
fn sign_with_cfssl(
    root: &NodeRoot,
    s: &SignerSettings,
    c: &RemoteSettings,
    csr: &CertificateSigningRequest,
    grant: &Grant,
    memory: &mut Memory,
    term: &Term,
) -> Signature {
    let now = OffsetDateTime::now_utc();
    let said = &mut memory.said;
    let ca = match load_ca_bundle(root, &s.ca_cert, now) {
        Ok(b) => b,
        Err(e) => return cannot_sign(said, s, format!("the CA cannot be used: {e}")),
    };
    // evaluate() read it already: PEM, so ASCII.
    let pem = decode_request(&csr.spec.request)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let body = match request_body(grant, &pem, s) {
        Ok(b) => b,
        Err(u) => return Signature::Refused("SignerValidationFailure", u.to_string()),
    };
    // Made for each signature, as the local CA is loaded: a new auth key or TLS bundle
    // is used at once.
    let client = match RemoteClient::new(root, c) {
        Ok(c) => c,
        Err(e) => return cannot_sign(said, s, format!("the cfssl client: {e}")),
    };
    let name = csr.metadata.name.as_deref().unwrap_or_default();
    let deadline = Deadline {
        at: term.end(),
        why: "the Lease's term ends (csr.lease_duration_seconds - csr.timeout_seconds after its renewal)".into(),
    };
    let answer = match client.sign_by(name, &body, Some(deadline)) {
        Ok(a) => a,
        Err(e) if e.transport_failure().is_some() => {
            let rest = memory.resting.failed(&s.name, Instant::now());
            return cannot_sign(
                said,
                s,
                format!(
                    "{e}; the CSR waits, and the signer's CSRs are not sent to cfssl for {} s",
                    rest.as_secs()
                ),
            );
        }
        // cfssl answered and refused this request: it waits, the signer's others go on.
        Err(
            e @ RemoteError::Exchange {
                failure: Failure::Refused(_) | Failure::NoCertificate,
                ..
            },
        ) => {
            memory.resting.answered(&s.name);
            cannot_sign(said, s, format!("{e}; CSR {name} waits"));
            return Signature::Skip;
        }
        Err(e) => return cannot_sign(said, s, format!("{e}; the CSR waits")),
    };
    memory.resting.answered(&s.name);
    if said.remove(&s.name).is_some() {
        tracing::info!(signer = %s.name, "cfssl {} signs again", client.endpoint());
    }
    let expected = Expected {
        grant,
        signer: s,
        ca_path: &s.ca_cert,
        ca: &ca,
        asked_expiration: csr.spec.expiration_seconds.is_some_and(|x| x > 0),
        now,
    };
    match check_issued(&answer, &expected) {
        Ok(der) => Signature::Der(der),
        Err(u) => Signature::Refused("CfsslCertificateRefused", u.to_string()),
    }
}

/// Appends the `Failed` condition (the API's way for a signer to refuse).
fn fail(
    api: &ApiClient,
    mut csr: CertificateSigningRequest,
    reason: &str,
    message: String,
) -> Result<Outcome, ApiError> {
    push_condition(&mut csr, "Failed", reason, &message);
    write_status(api, &csr).map(|written| {
        if written {
            Outcome::Failed { reason: message }
        } else {
            Outcome::Lost
        }
    })
}

/// Appends a condition (status True, now) to the CSR's status.
fn push_condition(csr: &mut CertificateSigningRequest, kind: &str, reason: &str, message: &str) {
    let now = crate::timefmt::rfc3339(OffsetDateTime::now_utc());
    let mut status: CsrStatus = csr.status.take().unwrap_or_default();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let mut rest = serde_json::Map::new();
    rest.insert("lastUpdateTime".into(), now.clone().into());
    rest.insert("lastTransitionTime".into(), now.into());
    conditions.push(CsrCondition {
        type_: kind.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        rest,
    });
    status.conditions = Some(conditions);
    csr.status = Some(status);
}

/// PUT .../NAME/status with the resourceVersion read: false on 409.
fn write_status(api: &ApiClient, csr: &CertificateSigningRequest) -> Result<bool, ApiError> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    match api.put::<_, serde_json::Value>(&format!("{CSR_API}/{}/status", encode(&name)), csr) {
        Ok(_) => Ok(true),
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Percent-encodes a path segment or query value (signerNames hold '/').
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The host name and the process id: unique per process, readable in the Lease.
fn default_identity() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}_{}", std::process::id())
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;

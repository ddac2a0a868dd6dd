//! The approver of `kubernetes.io/kubelet-serving` CSRs (the job kubelet-csr-approver
//! does), pure: a kubelet with `serverTLSBootstrap: true` asks for its serving
//! certificate and the controller-manager signs it once approved. Approved only when
//! every part names the requesting node and nothing else: requested by
//! `system:node:NAME` in `system:nodes`; subject exactly one CN `system:node:NAME` and
//! one O `system:nodes`, nothing else, every value readable text; usages within digital signature, key encipherment, server auth; every
//! DNS SAN the node's name, one of the Node's DNS addresses or a configured pattern;
//! every IP SAN one of the Node's IP addresses or in a configured prefix; the duration
//! asked within the maximum. Denied with the reason otherwise.

use std::net::IpAddr;

use x509_cert::ext::pkix::name::GeneralName;

use super::request::{decode_request, parse_request};
use crate::config::san_rules::SanRules;
use crate::kube::types::{CertificateSigningRequest, Node};
use crate::pki::name_values;

pub use crate::kube::serving::KUBELET_SERVING;
const NODE_PREFIX: &str = "system:node:";
const NODES_GROUP: &str = "system:nodes";
const USAGES: &[&str] = &["digital signature", "key encipherment", "server auth"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Approve(String),
    Deny(String),
}

/// The node a kubelet-serving CSR was requested by, when a node requested it.
pub fn requesting_node(csr: &CertificateSigningRequest) -> Option<String> {
    let user = csr.spec.username.as_deref()?;
    let name = user.strip_prefix(NODE_PREFIX)?;
    let in_group = csr.spec.groups.iter().flatten().any(|g| g == NODES_GROUP);
    (in_group && !name.is_empty()).then(|| name.to_string())
}

/// The verdict on a pending kubelet-serving CSR; `node` is the requesting node's Node
/// object (None: it does not exist).
pub fn judge(csr: &CertificateSigningRequest, node: Option<&Node>, max_seconds: u64) -> Verdict {
    judge_with(csr, node, max_seconds, &SanRules::default())
}

/// [`judge`] with the configured DNS patterns and IP prefixes (`[csr]
/// kubelet_serving_dns_patterns`, `kubelet_serving_ip_prefixes`) allowed too.
pub fn judge_with(
    csr: &CertificateSigningRequest,
    node: Option<&Node>,
    max_seconds: u64,
    rules: &SanRules,
) -> Verdict {
    match check(csr, node, max_seconds, rules) {
        Ok(name) => Verdict::Approve(format!(
            "cert-rotator: the request names node {name} and only its addresses{}",
            if rules == &SanRules::default() {
                ""
            } else {
                " or the configured names and prefixes"
            }
        )),
        Err(reason) => Verdict::Deny(reason),
    }
}

fn check(
    csr: &CertificateSigningRequest,
    node: Option<&Node>,
    max: u64,
    rules: &SanRules,
) -> Result<String, String> {
    let Some(name) = requesting_node(csr) else {
        return Err(format!(
            "requested by {:?}, not by a node (system:node:NAME in system:nodes)",
            csr.spec.username.as_deref().unwrap_or("")
        ));
    };
    if let Some(s) = csr.spec.expiration_seconds {
        if u64::try_from(s).map_or(true, |s| s > max) {
            return Err(format!(
                "expirationSeconds {s} is more than the {max} allowed"
            ));
        }
    }
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if let Some(u) = usages.iter().find(|u| !USAGES.contains(&u.as_str())) {
        return Err(format!(
            "usage {u:?} is not one a kubelet serves with ({})",
            USAGES.join(", ")
        ));
    }
    if !usages.iter().any(|u| u == "server auth") {
        return Err("the CSR does not ask for server auth".into());
    }
    let pem = decode_request(&csr.spec.request)?;
    let req = parse_request(&pem)?;
    // Read once, as pki::name reads any Name (a multi-valued RDN in any order). A value
    // whose text does not decode (a T61String of bytes that are no UTF-8, say) is one the
    // subject says and we cannot read, which an approver in Go would read as something
    // (an OU, a second O or CN): denied, never ignored.
    let values = name_values(&req.raw_subject)
        .map_err(|e| format!("the request's subject is malformed: {e}"))?;
    let undecodable = values.iter().filter(|(_, v)| v.is_none()).count();
    if undecodable > 0 {
        return Err(format!(
            "the subject holds {undecodable} attribute value(s) that do not decode as text; a kubelet of node {name} asks for CN=system:node:{name}, O=system:nodes"
        ));
    }
    let subject: Vec<(String, String)> = values
        .into_iter()
        .map(|(t, v)| (t, v.unwrap_or_default()))
        .collect();
    let want = [
        ("CN".to_string(), format!("{NODE_PREFIX}{name}")),
        ("O".to_string(), NODES_GROUP.to_string()),
    ];
    let mut sorted = subject.clone();
    sorted.sort();
    if sorted != want {
        let shown: Vec<String> = subject.iter().map(|(t, v)| format!("{t}={v}")).collect();
        return Err(format!(
            "the subject is {}; a kubelet of node {name} asks for CN=system:node:{name}, O=system:nodes",
            shown.join(", ")
        ));
    }
    let Some(node) = node else {
        return Err(format!("Node {name} does not exist"));
    };
    let addresses = &node.status.addresses;
    let dns_ok = |d: &str| {
        d == name
            || addresses.iter().any(|a| {
                a.address == d
                    && matches!(a.type_.as_str(), "Hostname" | "InternalDNS" | "ExternalDNS")
            })
            || rules.dns_allowed(d, &name)
    };
    let ip_ok = |ip: &IpAddr| {
        addresses
            .iter()
            .any(|a| a.address.parse::<IpAddr>().ok().as_ref() == Some(ip))
            || rules.ip_allowed(ip)
    };
    let sans = req.san.map(|s| s.0).unwrap_or_default();
    if sans.is_empty() {
        return Err("the request names no DNS or IP SAN".into());
    }
    for g in &sans {
        match g {
            GeneralName::DnsName(d) if dns_ok(d.as_str()) => {}
            GeneralName::DnsName(d) => {
                return Err(format!(
                    "DNS SAN {} is neither node {name}'s name nor one of its DNS addresses{}",
                    d.as_str(),
                    if rules.dns_patterns.is_empty() {
                        ""
                    } else {
                        " nor a configured pattern"
                    }
                ))
            }
            GeneralName::IpAddress(o) => {
                let ip = match o.as_bytes().len() {
                    4 => <[u8; 4]>::try_from(o.as_bytes()).map(IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(o.as_bytes()).map(IpAddr::from).ok(),
                    _ => None,
                };
                match ip {
                    Some(ip) if ip_ok(&ip) => {}
                    Some(ip) => {
                        return Err(format!(
                            "IP SAN {ip} is not one of node {name}'s addresses{}",
                            if rules.ip_prefixes.is_empty() {
                                ""
                            } else {
                                " nor in a configured prefix"
                            }
                        ))
                    }
                    None => return Err("an IP SAN is neither IPv4 nor IPv6".into()),
                }
            }
            other => {
                return Err(format!(
                    "SAN {} is not one a kubelet serves under",
                    crate::ca::remote::csr::san_of(other)
                ))
            }
        }
    }
    Ok(name)
}

//! `[csr]` and `[[signer]]`: the certificates-API signer (`cert-rotator signer`,
//! docs/csr.md). Off by default: no `[[signer]]` table, nothing signs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::remote::RemoteSettings;
use super::san_rules::SanRules;
use super::InvalidValue;

/// `[csr]`: how the signer service reaches the API server and elects one leader.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CsrSettings {
    /// The kubeconfig (node path) whose user may list CSRs, update their status, sign
    /// for the configured signer names and hold the Lease.
    pub kubeconfig: PathBuf,
    /// The coordination.k8s.io/v1 Lease that lets one signer sign at a time.
    pub lease_namespace: String,
    pub lease_name: String,
    pub lease_duration_seconds: u64,
    /// Seconds between two lists of the CSRs (and two renewals of the Lease).
    pub poll_seconds: u64,
    /// One request to the API server, connect to last byte.
    pub timeout_seconds: u64,
    /// This signer's holder identity in the Lease. Unset: the host name and the
    /// process id.
    pub identity: Option<String>,
    /// Approve (or deny, with the reason) the kubelets' `kubernetes.io/kubelet-serving`
    /// CSRs: only a node's own name and addresses (docs/csr.md). Off by default.
    pub approve_kubelet_serving: bool,
    /// The longest spec.expirationSeconds such a CSR may ask for.
    pub kubelet_serving_max_seconds: u64,
    /// DNS SANs allowed beyond the node's name and DNS addresses: patterns where `*` is
    /// one label and `{node}` the node's name (`{node}.nodes.example.internal`).
    pub kubelet_serving_dns_patterns: Vec<String>,
    /// IP SANs allowed beyond the Node's status.addresses: CIDR prefixes.
    pub kubelet_serving_ip_prefixes: Vec<String>,
}

impl CsrSettings {
    /// The approver's extra DNS patterns and IP prefixes, parsed (checked at load by
    /// [`validate`], so the service's call cannot fail on a loaded configuration).
    pub fn san_rules(&self) -> Result<SanRules, InvalidValue> {
        SanRules::parse(
            &self.kubelet_serving_dns_patterns,
            &self.kubelet_serving_ip_prefixes,
        )
    }
}

impl Default for CsrSettings {
    fn default() -> Self {
        CsrSettings {
            kubeconfig: PathBuf::from("/etc/kubernetes/admin.conf"),
            lease_namespace: "kube-system".into(),
            lease_name: "cert-rotator-signer".into(),
            lease_duration_seconds: 15,
            poll_seconds: 2,
            timeout_seconds: 10,
            identity: None,
            approve_kubelet_serving: false,
            kubelet_serving_max_seconds: 365 * 24 * 3600,
            kubelet_serving_dns_patterns: Vec::new(),
            kubelet_serving_ip_prefixes: Vec::new(),
        }
    }
}

/// One `[[signer]]`: a signerName this node signs for, with the CA and the profile.
/// The CA is either local (`ca_cert` and `ca_key`) or a cfssl server (`ca_cert` and a
/// `cfssl` table), never both.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignerSettings {
    /// spec.signerName of the CSRs to sign (`example.com/serving`).
    pub name: String,
    /// The CA certificate (node path, PEM), loaded at every signature so a renewed CA is
    /// used at once and an expired one signs nothing. With `cfssl`: the CA the server
    /// signs with, which every returned certificate must verify against.
    pub ca_cert: PathBuf,
    /// The CA key (node path, PEM): this node signs. Unset when `cfssl` signs.
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    /// The cfssl server that signs instead (the `[ca.remote]` table's keys, less
    /// `ca_cert`, `targets` and `lifetime_margin_days`; docs/csr.md).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "signer_cfssl"
    )]
    pub cfssl: Option<RemoteSettings>,
    /// The usages a CSR may ask for, in the API's words ("digital signature",
    /// "key encipherment", "server auth", ...; "signing" is "digital signature").
    pub usages: Vec<String>,
    /// The longest lifetime issued; a CSR's spec.expirationSeconds may ask for less.
    #[serde(default = "default_max_seconds")]
    pub max_duration_seconds: u64,
    /// The key algorithms a CSR may carry: "rsa" (2048 bits or more), "ecdsa" (P-256,
    /// P-384), "ed25519".
    #[serde(default = "default_key_algorithms")]
    pub key_algorithms: Vec<String>,
}

/// The keys of `[ca.remote]` a signer's cfssl table does not take.
const NOT_FOR_SIGNERS: [&str; 3] = ["ca_cert", "targets", "lifetime_margin_days"];

/// A signer's cfssl table as `config check` prints it: without the keys it does not take.
fn signer_cfssl<S: serde::Serializer>(c: &Option<RemoteSettings>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let Some(c) = c else {
        return s.serialize_none();
    };
    let mut table = toml::Table::try_from(c).map_err(S::Error::custom)?;
    for k in NOT_FOR_SIGNERS {
        table.remove(k);
    }
    table.serialize(s)
}

fn default_max_seconds() -> u64 {
    365 * 24 * 3600
}

fn default_key_algorithms() -> Vec<String> {
    vec!["rsa".into(), "ecdsa".into()]
}

/// The usages the API defines (certificates.k8s.io/v1 KeyUsage), less "cert sign" and
/// "crl sign": this signer never issues a CA.
pub const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

pub const KEY_ALGORITHMS: &[&str] = &["rsa", "ecdsa", "ed25519"];

/// Checks what serde cannot: names, paths, usages, durations.
pub fn validate(csr: &CsrSettings, signers: &[SignerSettings]) -> Result<(), InvalidValue> {
    if !csr.kubeconfig.is_absolute() {
        return Err(InvalidValue::new(
            "csr.kubeconfig",
            &csr.kubeconfig,
            "must be an absolute node path",
        ));
    }
    for (key, v) in [
        ("csr.lease_duration_seconds", csr.lease_duration_seconds),
        ("csr.poll_seconds", csr.poll_seconds),
        ("csr.timeout_seconds", csr.timeout_seconds),
    ] {
        if v == 0 {
            return Err(InvalidValue::new(key, v, "must be at least 1"));
        }
    }
    // They are parts of the Lease's URL path: Kubernetes object names (DNS-1123 labels
    // for the namespace, subdomains for the name), nothing to encode.
    for (key, v, max) in [
        ("csr.lease_namespace", &csr.lease_namespace, 63),
        ("csr.lease_name", &csr.lease_name, 253),
    ] {
        if !is_dns1123_name(v, max) {
            return Err(InvalidValue::new(
                key,
                v,
                "must be a Kubernetes object name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
            ));
        }
    }
    if csr.poll_seconds >= csr.lease_duration_seconds {
        return Err(InvalidValue::new(
            "csr.poll_seconds",
            csr.poll_seconds,
            "must be below csr.lease_duration_seconds, or the Lease expires between two renewals",
        ));
    }
    // A round renews the Lease before starting a request that could end after it
    // expires (lease_duration - timeout since the renewal): that needs room.
    if csr.timeout_seconds >= csr.lease_duration_seconds {
        return Err(InvalidValue::new(
            "csr.timeout_seconds",
            csr.timeout_seconds,
            format!(
                "must be below csr.lease_duration_seconds ({}): one request must fit in the Lease's time, or a signer could write after another took the Lease over",
                csr.lease_duration_seconds
            ),
        ));
    }
    csr.san_rules()?;
    for (i, s) in signers.iter().enumerate() {
        let key = |k: &str| format!("signer[{i}].{k}");
        // The API's own rule for signerName: a domain, a slash, a path.
        let valid_name = s
            .name
            .split_once('/')
            .is_some_and(|(d, p)| d.contains('.') && !p.is_empty());
        if !valid_name {
            return Err(InvalidValue::new(
                key("name"),
                &s.name,
                "must be a signerName: a domain, '/', a path (example.com/serving)",
            ));
        }
        if signers[..i].iter().any(|o| o.name == s.name) {
            return Err(InvalidValue::new(
                key("name"),
                &s.name,
                "is configured twice",
            ));
        }
        check_ca(s, &key)?;
        if s.usages.is_empty() {
            return Err(InvalidValue::new(
                key("usages"),
                &s.usages,
                "must allow at least one usage",
            ));
        }
        for u in &s.usages {
            if !KNOWN_USAGES.contains(&u.as_str()) {
                return Err(InvalidValue::new(
                    key("usages"),
                    u,
                    format!(
                        "is not a usage this signer issues; known: {}",
                        KNOWN_USAGES.join(", ")
                    ),
                ));
            }
        }
        for a in &s.key_algorithms {
            if !KEY_ALGORITHMS.contains(&a.as_str()) {
                return Err(InvalidValue::new(
                    key("key_algorithms"),
                    a,
                    format!("known: {}", KEY_ALGORITHMS.join(", ")),
                ));
            }
        }
        // The API's minimum for spec.expirationSeconds.
        if s.max_duration_seconds < 600 {
            return Err(InvalidValue::new(
                key("max_duration_seconds"),
                s.max_duration_seconds,
                "must be at least 600 (the API's shortest expirationSeconds)",
            ));
        }
        if s.max_duration_seconds > MAX_DURATION_SECONDS {
            return Err(InvalidValue::new(
                key("max_duration_seconds"),
                s.max_duration_seconds,
                "must be at most 3153600000 (100 years)",
            ));
        }
    }
    Ok(())
}

/// The CA of one `[[signer]]`: local files or a cfssl server, never both, never neither.
fn check_ca(s: &SignerSettings, key: &dyn Fn(&str) -> String) -> Result<(), InvalidValue> {
    let absolute = |k: &str, p: &PathBuf| {
        if p.is_absolute() {
            Ok(())
        } else {
            Err(InvalidValue::new(
                key(k),
                p,
                "must be an absolute node path",
            ))
        }
    };
    absolute("ca_cert", &s.ca_cert)?;
    match (&s.ca_key, &s.cfssl) {
        (Some(_), Some(_)) => Err(InvalidValue::new(
            key("ca_key"),
            &s.ca_key,
            "and a cfssl table are both set: a signer signs with its local CA key or through cfssl, not both",
        )),
        (None, None) => Err(InvalidValue::new(
            key("ca_key"),
            "",
            "missing: set ca_key (the local CA key) or a cfssl table (a cfssl server signs)",
        )),
        (Some(k), None) => absolute("ca_key", k),
        (None, Some(c)) => check_cfssl(c, &|k| key(&format!("cfssl.{k}"))),
    }
}

/// The `[ca.remote]` checks, and the keys that mean nothing for a signer refused: the
/// CA is the signer's `ca_cert`, the lifetime is checked against the CSR's.
fn check_cfssl(c: &RemoteSettings, key: &dyn Fn(&str) -> String) -> Result<(), InvalidValue> {
    let unused = RemoteSettings::default();
    if let Some(p) = &c.ca_cert {
        return Err(InvalidValue::new(
            key("ca_cert"),
            p,
            "is not a key of a signer's cfssl table: set ca_cert in the [[signer]] table itself",
        ));
    }
    if !c.targets.is_empty() {
        return Err(InvalidValue::new(
            key("targets"),
            c.targets.keys().collect::<Vec<_>>(),
            "is not a key of a signer's cfssl table (targets are [ca.remote]'s): use profile and label",
        ));
    }
    if c.lifetime_margin_days != unused.lifetime_margin_days {
        return Err(InvalidValue::new(
            key("lifetime_margin_days"),
            c.lifetime_margin_days,
            "is not a key of a signer's cfssl table: the CSR's expirationSeconds and max_duration_seconds bound the lifetime",
        ));
    }
    for (k, p) in [
        ("auth_key_file", &c.auth_key_file),
        ("tls_ca_bundle", &c.tls_ca_bundle),
        ("client_cert", &c.client_cert),
        ("client_key", &c.client_key),
    ] {
        if let Some(p) = p.as_ref().filter(|p| !p.is_absolute()) {
            return Err(InvalidValue::new(
                key(k),
                p,
                "must be an absolute node path",
            ));
        }
    }
    c.validate().map_err(|e| InvalidValue {
        key: key("url").trim_end_matches(".url").to_string(),
        value: format!("{{ url = {:?} }}", c.url),
        problem: e.to_string(),
    })
}

/// The longest lifetime a signer may be configured to give: 100 years.
const MAX_DURATION_SECONDS: u64 = 100 * 365 * 24 * 3600;

use crate::model::is_dns1123_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_kubernetes_names() {
        let mut csr = CsrSettings::default();
        assert!(validate(&csr, &[]).is_ok());
        for bad in ["", "Kube-System", "a/b", "x?y", "-a", "a-"] {
            csr.lease_namespace = bad.into();
            assert!(validate(&csr, &[]).is_err(), "{bad:?}");
        }
        csr.lease_namespace = "kube-system".into();
        csr.lease_name = "a.b/../c".into();
        assert!(validate(&csr, &[]).is_err());
        csr.lease_name = "cert-rotator.signer".into();
        assert!(validate(&csr, &[]).is_ok());
    }

    #[test]
    fn a_request_must_fit_in_the_lease() {
        let mut csr = CsrSettings {
            lease_duration_seconds: 10,
            poll_seconds: 2,
            timeout_seconds: 10,
            ..Default::default()
        };
        let e = validate(&csr, &[]).unwrap_err();
        assert_eq!(e.key, "csr.timeout_seconds");
        assert!(e.problem.contains("below csr.lease_duration_seconds (10)"));
        csr.timeout_seconds = 9;
        assert!(validate(&csr, &[]).is_ok());
    }

    #[test]
    fn approver_patterns_and_prefixes_are_checked_at_load() {
        let mut csr = CsrSettings {
            kubelet_serving_dns_patterns: vec!["{node}.nodes.example.internal".into()],
            kubelet_serving_ip_prefixes: vec!["10.0.0.0/8".into(), "fd00::/8".into()],
            ..Default::default()
        };
        assert!(validate(&csr, &[]).is_ok());
        csr.kubelet_serving_ip_prefixes.push("10.0.0.1/8".into());
        let e = validate(&csr, &[]).unwrap_err();
        assert_eq!(e.key, "csr.kubelet_serving_ip_prefixes");
        assert!(e.to_string().contains("host bits"), "{e}");
        csr.kubelet_serving_ip_prefixes.pop();
        csr.kubelet_serving_dns_patterns.push("*.*".into());
        assert_eq!(
            validate(&csr, &[]).unwrap_err().key,
            "csr.kubelet_serving_dns_patterns"
        );
    }

    /// The `[[signer]]` tables of a TOML text, checked: the error's text.
    fn check(toml_text: &str) -> Result<Vec<SignerSettings>, String> {
        #[derive(Deserialize)]
        struct Doc {
            signer: Vec<SignerSettings>,
        }
        let doc: Doc = toml::from_str(toml_text).map_err(|e| e.message().to_string())?;
        validate(&CsrSettings::default(), &doc.signer).map_err(|e| e.to_string())?;
        Ok(doc.signer)
    }

    const HEAD: &str = r#"
[[signer]]
name = "example.com/serving"
ca_cert = "/etc/example-ca/ca.pem"
usages = ["signing", "key encipherment", "server auth"]
"#;

    #[test]
    fn a_signer_signs_with_local_ca_files_or_through_cfssl() {
        let local = check(&format!("{HEAD}ca_key = \"/etc/example-ca/ca-key.pem\"\n")).unwrap();
        assert_eq!(
            local[0].ca_key.as_deref(),
            Some(std::path::Path::new("/etc/example-ca/ca-key.pem"))
        );
        assert!(local[0].cfssl.is_none());
        let remote = check(&format!(
            r#"{HEAD}
[signer.cfssl]
url = "https://127.0.0.1:8888"
profile = "server"
auth_key_file = "/etc/cert-rotator/cfssl-auth.key"
tls_ca_bundle = "/etc/example-ca/ca.pem"
attempts = 1
timeout_seconds = 5
"#
        ))
        .unwrap();
        let c = remote[0].cfssl.as_ref().unwrap();
        assert_eq!(
            (c.profile.as_str(), c.attempts, c.timeout_seconds),
            ("server", 1, 5)
        );
        assert!(remote[0].ca_key.is_none());
    }

    #[test]
    fn local_and_cfssl_are_exclusive_and_errors_name_the_key() {
        let cfssl = "[signer.cfssl]\nurl = \"https://127.0.0.1:8888\"\n";
        let both = check(&format!("{HEAD}ca_key = \"/k.pem\"\n{cfssl}")).unwrap_err();
        assert!(
            both.starts_with("signer[0].ca_key = ") && both.contains("not both"),
            "{both}"
        );
        let neither = check(HEAD).unwrap_err();
        assert!(
            neither.starts_with("signer[0].ca_key = ") && neither.contains("or a cfssl table"),
            "{neither}"
        );
        let relative = check(&format!("{HEAD}ca_key = \"ca-key.pem\"\n")).unwrap_err();
        assert!(
            relative.contains("signer[0].ca_key") && relative.contains("absolute"),
            "{relative}"
        );
        // The [ca.remote] checks, under the signer's key.
        let http = check(&format!(
            "{HEAD}[signer.cfssl]\nurl = \"http://127.0.0.1:8888\"\n"
        ))
        .unwrap_err();
        assert!(
            http.starts_with("signer[0].cfssl = ") && http.contains("plain http"),
            "{http}"
        );
        let no_url = check(&format!("{HEAD}[signer.cfssl]\nprofile = \"server\"\n")).unwrap_err();
        assert!(
            no_url.contains("signer[0].cfssl") && no_url.contains("url: missing"),
            "{no_url}"
        );
        let attempts = check(&format!("{HEAD}{cfssl}attempts = 0\n")).unwrap_err();
        assert!(
            attempts.contains("attempts = 0: must be 1 to 10"),
            "{attempts}"
        );
        // What a signer's cfssl table does not take.
        let ca = check(&format!("{HEAD}{cfssl}ca_cert = \"/ca.pem\"\n")).unwrap_err();
        assert!(
            ca.starts_with("signer[0].cfssl.ca_cert = ") && ca.contains("[[signer]] table itself"),
            "{ca}"
        );
        let targets = check(&format!(
            "{HEAD}{cfssl}[signer.cfssl.targets.\"x\"]\nprofile = \"p\"\n"
        ))
        .unwrap_err();
        assert!(
            targets.starts_with("signer[0].cfssl.targets = "),
            "{targets}"
        );
        let key = check(&format!("{HEAD}{cfssl}auth_key_file = \"auth.key\"\n")).unwrap_err();
        assert!(
            key.starts_with("signer[0].cfssl.auth_key_file = ") && key.contains("absolute"),
            "{key}"
        );
        let unknown = check(&format!("{HEAD}{cfssl}uri = \"x\"\n")).unwrap_err();
        assert!(unknown.contains("unknown field `uri`"), "{unknown}");
    }
}

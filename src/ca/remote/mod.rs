//! The remote CA: a CFSSL server signs for nodes that hold no CA key.
//!
//! Worker nodes, and control planes whose CA is external, cannot renew from a local key.
//! For them the node makes the new key itself (it never leaves the host), writes a
//! PKCS#10 CSR that carries the old certificate's identity (its subject exactly as the
//! old raw subject DER, its SAN, KeyUsage and ExtKeyUsage extensions), signs the CSR with
//! the new key and posts it to cfssl: `/api/v1/cfssl/authsign` with an HMAC-SHA256 token
//! when an auth key is configured, `/api/v1/cfssl/sign` when not. The `hosts` of the
//! request are the old SANs, because cfssl sets SANs from `hosts`.
//!
//! Nothing the server returns is trusted: [`check_returned`] refuses a certificate that
//! is for another key, changes the subject (raw DER compare) or the SAN set, narrows the
//! key usages, is a CA, does not verify against the CA the node trusts (or, with no CA
//! known, changes issuer or authority key id), is not valid now, or is shorter than
//! asked by more than `lifetime_margin_days`. See docs/remote-ca.md for what cfssl 1.2
//! does with CSRs and why these rules.
//!
//! Transport: ureq 3 with rustls (ring provider). It is blocking (the agent is a oneshot
//! that makes a handful of POSTs: an async runtime plus reqwest would triple the
//! dependency tree for that), pure Rust TLS (no OpenSSL linkage, the same ring the rest
//! of the crate uses), actively maintained, and it supports what this needs: a custom
//! root store, client certificates, per-phase timeouts, no proxy, no redirects.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use base64::Engine;
use der::asn1::{BitString, ObjectIdentifier, SetOfVec};
use der::oid::AssociatedOid;
use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::request::{CertReq, CertReqInfo, ExtensionReq, Version};
use x509_cert::Certificate;
use zeroize::Zeroizing;

use crate::ca::{CaError, CertificateAuthority, SigningRequest};
use crate::node::NodeRoot;
use crate::pki::{self, encode_pem, CertFacts, PrivateKey};

const OID_SAN: ObjectIdentifier = SubjectAltName::OID;
const OID_KU: ObjectIdentifier = KeyUsage::OID;
const OID_EKU: ObjectIdentifier = ExtendedKeyUsage::OID;

/// How far in the future a returned certificate's notBefore may lie (clock skew between
/// the node and the CA). cfssl itself backdates by five minutes.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

pub use crate::config::remote::{RemoteSettings, RemoteTarget};

/// The HTTP side: one agent, the endpoint and the auth key, shared by every target of a
/// pass. The auth key is held only as an HMAC key and never printed.
pub struct RemoteClient {
    settings: RemoteSettings,
    agent: ureq::Agent,
    endpoint: String,
    auth_key: Option<ring::hmac::Key>,
}

impl fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RemoteClient({}, auth key {})",
            self.endpoint,
            if self.auth_key.is_some() {
                "<redacted>"
            } else {
                "none"
            }
        )
    }
}

impl RemoteClient {
    /// Reads the auth key, TLS roots and client certificate and makes the agent. Errors
    /// name the file and the problem, never a key's content.
    pub fn new(root: &NodeRoot, settings: &RemoteSettings) -> Result<Self, String> {
        settings
            .validate()
            .map_err(|m| format!("[ca.remote] {m}"))?;
        let base = settings.url.trim().trim_end_matches('/');
        let http = base.to_ascii_lowercase().starts_with("http://");
        if http {
            tracing::warn!(
                "[ca.remote] url {base} is plain http (allowed by configuration): the CSR and the auth token travel in clear"
            );
        }
        let auth_key = match &settings.auth_key_file {
            Some(p) => Some(read_auth_key(root, p)?),
            None => None,
        };
        let endpoint = format!(
            "{base}/api/v1/cfssl/{}",
            if auth_key.is_some() {
                "authsign"
            } else {
                "sign"
            }
        );
        let roots: Vec<ureq::tls::Certificate<'static>> = match &settings.tls_ca_bundle {
            Some(p) => {
                let certs = read_certificates(root, p)?;
                certs
                    .iter()
                    .map(|c| ureq::tls::Certificate::from_der(&c.der).to_owned())
                    .collect()
            }
            None if http => Vec::new(),
            None => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    return Err(format!(
                        "[ca.remote] no system root certificates found ({} errors); set tls_ca_bundle",
                        found.errors.len()
                    ));
                }
                found
                    .certs
                    .iter()
                    .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                    .collect()
            }
        };
        let client_cert = match (&settings.client_cert, &settings.client_key) {
            (Some(c), Some(k)) => {
                let chain: Vec<ureq::tls::Certificate<'static>> = read_certificates(root, c)?
                    .iter()
                    .map(|x| ureq::tls::Certificate::from_der(&x.der).to_owned())
                    .collect();
                let (shown, bytes) = root.read_file(k).map_err(|e| e.to_string())?;
                let bytes = Zeroizing::new(bytes);
                let key = ureq::tls::PrivateKey::from_pem(&bytes).map_err(|_| {
                    format!(
                        "{}: not a PEM private key (client_key of [ca.remote])",
                        shown.display()
                    )
                })?;
                Some(ureq::tls::ClientCert::new_with_certs(&chain, key))
            }
            _ => None,
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
            .client_cert(client_cert)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .https_only(!http)
            // A CA request goes where it is configured: no proxy from the environment,
            // no redirects (which could downgrade to http or leave the trusted host).
            .proxy(None)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(StdDuration::from_secs(
                settings.connect_timeout_seconds,
            )))
            .timeout_global(Some(StdDuration::from_secs(settings.timeout_seconds)))
            .user_agent(format!("cert-rotator/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        Ok(RemoteClient {
            settings: settings.clone(),
            agent,
            endpoint,
            auth_key,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn settings(&self) -> &RemoteSettings {
        &self.settings
    }

    /// The body posted for a sign request: the request itself, or wrapped with its
    /// HMAC-SHA256 token for authsign.
    pub fn body(&self, request: &[u8]) -> Vec<u8> {
        match &self.auth_key {
            None => request.to_vec(),
            Some(key) => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let token = ring::hmac::sign(key, request);
                serde_json::json!({
                    "token": b64.encode(token.as_ref()),
                    "request": b64.encode(request),
                })
                .to_string()
                .into_bytes()
            }
        }
    }

    /// Posts a sign request with retries; returns the certificate PEM cfssl answered.
    pub fn sign(&self, target: &str, request: &[u8]) -> Result<String, String> {
        let body = self.body(request);
        let attempts = self.settings.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.post_once(&body) {
                Attempt::Done(pem) => return Ok(pem),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Transient(e) => {
                    last = e;
                    if attempt < attempts {
                        let wait = backoff(self.settings.retry_delay_ms, attempt);
                        tracing::warn!(
                            target_name = %target,
                            "{last}; attempt {attempt} of {attempts}, retrying in {} ms",
                            wait.as_millis()
                        );
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        Err(format!("{last} (gave up after {attempts} attempts)"))
    }

    fn post_once(&self, body: &[u8]) -> Attempt {
        let at = &self.endpoint;
        let resp = self
            .agent
            .post(at)
            .header("Content-Type", "application/json")
            .send(body);
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => return classify_transport(at, e),
        };
        let status = resp.status().as_u16();
        let text = match resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
        {
            Ok(t) => t,
            Err(e) if status < 300 => {
                return Attempt::Transient(format!("cfssl {at}: reading the answer: {e}"))
            }
            Err(_) => String::new(),
        };
        let parsed: Option<CfsslResponse> = serde_json::from_str(&text).ok();
        if !(200..300).contains(&status) {
            let detail = match &parsed {
                Some(p) => format!(": {}", p.errors_text()),
                None if (300..400).contains(&status) => {
                    " (a redirect: redirects are not followed, configure the final URL)".into()
                }
                None => String::new(),
            };
            let msg = format!("cfssl {at}: HTTP {status}{detail}");
            return if status >= 500 || status == 429 || status == 408 {
                Attempt::Transient(msg)
            } else {
                Attempt::Fatal(msg)
            };
        }
        let Some(parsed) = parsed else {
            return Attempt::Fatal(format!(
                "cfssl {at}: HTTP {status} but the answer is not cfssl's JSON"
            ));
        };
        if !parsed.success {
            return Attempt::Fatal(format!("cfssl {at}: refused: {}", parsed.errors_text()));
        }
        match parsed.result.and_then(|r| r.certificate) {
            Some(c) if !c.trim().is_empty() => Attempt::Done(c),
            _ => Attempt::Fatal(format!(
                "cfssl {at}: success but no result.certificate in the answer"
            )),
        }
    }
}

enum Attempt {
    Done(String),
    Transient(String),
    Fatal(String),
}

fn classify_transport(at: &str, e: ureq::Error) -> Attempt {
    use ureq::Error as E;
    match e {
        E::Io(io) => {
            // rustls reports certificate and handshake problems as InvalidData: retrying
            // cannot help, and the message says what the server presented.
            use std::io::ErrorKind as K;
            match io.kind() {
                K::InvalidData => Attempt::Fatal(format!("cfssl {at}: TLS: {io}")),
                K::ConnectionRefused | K::NotFound | K::AddrNotAvailable => {
                    Attempt::Transient(format!("cfssl {at}: server unreachable: {io}"))
                }
                _ => Attempt::Transient(format!("cfssl {at}: connection failed: {io}")),
            }
        }
        E::Timeout(t) => Attempt::Transient(format!("cfssl {at}: timed out ({t})")),
        E::ConnectionFailed | E::HostNotFound | E::BodyStalled => {
            Attempt::Transient(format!("cfssl {at}: server unreachable: {e}"))
        }
        E::Protocol(_) => Attempt::Transient(format!("cfssl {at}: {e}")),
        E::Tls(_) | E::Rustls(_) | E::Pem(_) | E::TlsRequired => {
            Attempt::Fatal(format!("cfssl {at}: TLS: {e}"))
        }
        other => Attempt::Fatal(format!("cfssl {at}: {other}")),
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, times a random factor in
/// [0.5, 1.5), at most 30 s.
fn backoff(base_ms: u64, attempt: u32) -> StdDuration {
    use ring::rand::SecureRandom;
    let exp = base_ms.saturating_mul(1u64 << (attempt.saturating_sub(1)).min(16));
    let mut b = [0u8; 2];
    let r = ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map(|_| u16::from_be_bytes(b))
        .unwrap_or(u16::MAX / 2);
    let factor = 0.5 + f64::from(r) / f64::from(u16::MAX);
    StdDuration::from_millis(((exp as f64 * factor) as u64).min(30_000))
}

/// cfssl's answer: `{"success", "result": {"certificate"}, "errors": [{"code",
/// "message"}], "messages"}`.
#[derive(Debug, Deserialize)]
struct CfsslResponse {
    success: bool,
    #[serde(default)]
    result: Option<CfsslResult>,
    #[serde(default)]
    errors: Vec<CfsslMessage>,
}

#[derive(Debug, Deserialize)]
struct CfsslResult {
    #[serde(default)]
    certificate: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CfsslMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

impl CfsslResponse {
    fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "no error message".into();
        }
        self.errors
            .iter()
            .map(|e| {
                let hint = match e.message.as_str() {
                    "invalid token" => " (wrong auth key?)",
                    "authentication required" => {
                        " (the profile needs an auth key: set auth_key_file)"
                    }
                    "no authentication provider" => {
                        " (the profile has no auth key: unset auth_key_file)"
                    }
                    _ => "",
                };
                format!("{} (code {}){hint}", e.message, e.code)
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// cfssl's sign request.
#[derive(Debug, Serialize)]
pub struct CfsslSignRequest<'a> {
    pub certificate_request: &'a str,
    pub profile: &'a str,
    pub label: &'a str,
    pub hosts: &'a [String],
}

/// Reads a hex auth key from a file that only its owner may read.
fn read_auth_key(root: &NodeRoot, path: &Path) -> Result<ring::hmac::Key, String> {
    let resolved = root
        .resolve(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let host = root.host(&resolved);
    let meta = std::fs::metadata(&host).map_err(|e| {
        format!(
            "{}: cannot read the cfssl auth key: {e}",
            resolved.display()
        )
    })?;
    if !meta.is_file() {
        return Err(format!(
            "{}: the cfssl auth key must be a regular file",
            resolved.display()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: mode {mode:04o}: the cfssl auth key file must be mode 0600 or stricter (chmod 600)",
            resolved.display()
        ));
    }
    let text = Zeroizing::new(std::fs::read(&host).map_err(|e| {
        format!(
            "{}: cannot read the cfssl auth key: {e}",
            resolved.display()
        )
    })?);
    let hex = text.trim_ascii();
    let key = hex_decode(hex).ok_or_else(|| {
        format!(
            "{}: the cfssl auth key must be hex digits (as in cfssl's auth_keys), an even number of them",
            resolved.display()
        )
    })?;
    if key.is_empty() {
        return Err(format!(
            "{}: the cfssl auth key is empty",
            resolved.display()
        ));
    }
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key))
}

fn hex_decode(hex: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
    for pair in hex.chunks(2) {
        out.push((digit(pair[0])? << 4) | digit(pair[1])?);
    }
    Some(out)
}

fn read_certificates(root: &NodeRoot, path: &Path) -> Result<Vec<CertFacts>, String> {
    let (shown, bytes) = root.read_file(path).map_err(|e| e.to_string())?;
    let blocks = pki::parse_pem(&bytes).map_err(|e| format!("{}: {e}", shown.display()))?;
    let certs = pki::certificates(&blocks).map_err(|e| format!("{}: {e}", shown.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE block", shown.display()));
    }
    Ok(certs)
}

/// Loads the CA certificate returned certificates must verify against: the first
/// certificate of the file, a CA, not expired.
pub fn load_ca_certificate(
    root: &NodeRoot,
    path: &Path,
    now: OffsetDateTime,
) -> Result<CertFacts, String> {
    let cert = read_certificates(root, path)?.remove(0);
    if !cert.is_ca {
        return Err(format!(
            "{}: is not a CA certificate (CA:FALSE)",
            path.display()
        ));
    }
    if cert.not_after <= now {
        return Err(format!(
            "{}: CA certificate expired on {}: renew the CA first",
            path.display(),
            crate::timefmt::rfc3339(cert.not_after)
        ));
    }
    Ok(cert)
}

/// A CA reached through cfssl. `ca` is the certificate the returned certificates must
/// verify against (what [`CertificateAuthority::certificate`] returns, so that
/// `issue::prepare` caps validity and verifies with it too).
pub struct RemoteCa {
    client: Arc<RemoteClient>,
    ca: Option<(PathBuf, CertFacts)>,
}

impl RemoteCa {
    pub fn new(client: Arc<RemoteClient>, ca: Option<(PathBuf, CertFacts)>) -> Self {
        RemoteCa { client, ca }
    }
}

impl CertificateAuthority for RemoteCa {
    fn describe(&self) -> String {
        match &self.ca {
            Some((p, _)) => format!("cfssl {} (CA {})", self.client.endpoint, p.display()),
            None => format!("cfssl {}", self.client.endpoint),
        }
    }

    fn certificate(&self) -> Option<&CertFacts> {
        self.ca.as_ref().map(|c| &c.1)
    }

    fn sign(&self, req: &SigningRequest<'_>) -> Result<Vec<u8>, CaError> {
        let target = req.target;
        let refuse = |m: String| CaError::Refused(format!("{target}: {m}"));
        if let Some((path, ca)) = &self.ca {
            if !req.switch_issuer && !req.old.is_signed_by(ca) {
                return Err(refuse(format!(
                    "not signed by the CA {} (issuer {}); renewing through this CA would break trust",
                    path.display(),
                    req.old.issuer
                )));
            }
        }
        let identity =
            Identity::of(&req.old.der).map_err(|m| refuse(format!("old certificate: {m}")))?;
        let hosts = identity.hosts().map_err(refuse)?;
        let csr = build_csr(&req.old.der, req.key).map_err(|m| refuse(format!("CSR: {m}")))?;
        let (profile, label) = self.client.settings.profile_for(target);
        let request = serde_json::to_vec(&CfsslSignRequest {
            certificate_request: &csr,
            profile,
            label,
            hosts: &hosts,
        })
        .map_err(|e| refuse(format!("encoding the request: {e}")))?;
        let pem = self.client.sign(target, &request).map_err(refuse)?;
        let margin = Duration::seconds_f64(self.client.settings.lifetime_margin_days * 86_400.0);
        check_returned(
            &pem,
            &Expectation {
                old: req.old,
                key: req.key,
                ca: self.ca.as_ref().map(|c| (c.0.as_path(), &c.1)),
                asked_lifetime: req.not_after - req.not_before,
                margin,
                now: OffsetDateTime::now_utc(),
            },
        )
        .map_err(refuse)
    }
}

/// A certificate's identity as a CSR carries it and as the answer must keep it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub raw_subject: Vec<u8>,
    /// The SANs in the certificate's order (`hosts` keep it, so does cfssl) ...
    pub san_list: Vec<San>,
    /// ... and as the set that is compared.
    pub sans: BTreeSet<San>,
    pub key_usage: Vec<String>,
    pub ext_key_usage: BTreeSet<ObjectIdentifier>,
    pub is_ca: bool,
}

/// One subject alternative name, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    Email(String),
    Uri(String),
    /// otherName, directoryName, registeredID, ...: not expressible in cfssl's hosts.
    Other(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(s) => write!(f, "DNS:{s}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Email(s) => write!(f, "email:{s}"),
            San::Uri(s) => write!(f, "URI:{s}"),
            San::Other(s) => f.write_str(s),
        }
    }
}

impl Identity {
    pub fn of(der: &[u8]) -> Result<Self, String> {
        let cert = Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
        let tbs = &cert.tbs_certificate;
        let raw_subject = tbs.subject.to_der().map_err(|e| format!("subject: {e}"))?;
        let mut san_list = Vec::new();
        let mut key_usage = Vec::new();
        let mut ext_key_usage = BTreeSet::new();
        let mut is_ca = false;
        for x in tbs.extensions.iter().flatten() {
            let v = x.extn_value.as_bytes();
            if x.extn_id == OID_SAN {
                let san = SubjectAltName::from_der(v).map_err(|e| format!("SAN: {e}"))?;
                san_list.extend(san.0.iter().map(san_of));
            } else if x.extn_id == OID_KU {
                let ku = KeyUsage::from_der(v).map_err(|e| format!("KeyUsage: {e}"))?;
                key_usage = ku.0.into_iter().map(|f| format!("{f:?}")).collect();
            } else if x.extn_id == OID_EKU {
                let eku = ExtendedKeyUsage::from_der(v).map_err(|e| format!("ExtKeyUsage: {e}"))?;
                ext_key_usage = eku.0.into_iter().collect();
            } else if x.extn_id == BasicConstraints::OID {
                let bc =
                    BasicConstraints::from_der(v).map_err(|e| format!("BasicConstraints: {e}"))?;
                is_ca = bc.ca;
            }
        }
        Ok(Identity {
            raw_subject,
            sans: san_list.iter().cloned().collect(),
            san_list,
            key_usage,
            ext_key_usage,
            is_ca,
        })
    }

    /// cfssl's `hosts`: every SAN, as cfssl parses it back (IP, email, else DNS name;
    /// newer cfssl also URIs). A SAN that hosts cannot carry is refused here.
    pub fn hosts(&self) -> Result<Vec<String>, String> {
        self.san_list
            .iter()
            .map(|s| match s {
                San::Dns(d) => Ok(d.clone()),
                San::Ip(ip) => Ok(ip.to_string()),
                San::Email(m) => Ok(m.clone()),
                San::Uri(u) => Ok(u.clone()),
                San::Other(o) => Err(format!(
                    "SAN {o} cannot be carried by a cfssl request (hosts are DNS names, IP addresses, emails and URIs)"
                )),
            })
            .collect()
    }
}

fn san_of(g: &GeneralName) -> San {
    match g {
        GeneralName::DnsName(s) => San::Dns(s.to_string()),
        GeneralName::Rfc822Name(s) => San::Email(s.to_string()),
        GeneralName::UniformResourceIdentifier(s) => San::Uri(s.to_string()),
        GeneralName::IpAddress(o) => {
            let b = o.as_bytes();
            match b.len() {
                4 => San::Ip(IpAddr::from(<[u8; 4]>::try_from(b).unwrap_or_default())),
                16 => {
                    let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default());
                    // Go writes IPv4 addresses as 4 bytes; an IPv4-mapped one is the same host.
                    match v6.to_ipv4_mapped() {
                        Some(v4) => San::Ip(IpAddr::V4(v4)),
                        None => San::Ip(IpAddr::V6(v6)),
                    }
                }
                _ => San::Other(format!("IP:<{} bytes>", b.len())),
            }
        }
        GeneralName::OtherName(o) => San::Other(format!("otherName:{}", o.type_id)),
        GeneralName::DirectoryName(n) => San::Other(format!("dirName:{n}")),
        GeneralName::RegisteredId(o) => San::Other(format!("RID:{o}")),
        GeneralName::EdiPartyName(_) => San::Other("ediPartyName".into()),
    }
}

/// A PKCS#10 CSR for `key` with the old certificate's identity: its subject as is (the
/// raw DER, checked) and an extensionRequest with its SAN, KeyUsage and ExtKeyUsage
/// extensions, signed with `key`. PEM.
pub fn build_csr(old_der: &[u8], key: &PrivateKey) -> Result<String, String> {
    let old = Certificate::from_der(old_der).map_err(|e| format!("old certificate: {e}"))?;
    let tbs = old.tbs_certificate;
    let raw_subject = x509_parser_raw_subject(old_der)?;
    if tbs.subject.to_der().map_err(|e| e.to_string())? != raw_subject {
        return Err("the old subject's DER cannot be reproduced byte for byte".into());
    }
    let exts: Vec<_> = tbs
        .extensions
        .unwrap_or_default()
        .into_iter()
        .filter(|x| [OID_SAN, OID_KU, OID_EKU].contains(&x.extn_id))
        .collect();
    let mut attributes = SetOfVec::new();
    if !exts.is_empty() {
        let attr = Attribute::try_from(ExtensionReq(exts))
            .map_err(|e| format!("extensionRequest: {e}"))?;
        attributes
            .insert(attr)
            .map_err(|e| format!("attributes: {e}"))?;
    }
    let info = CertReqInfo {
        version: Version::V1,
        subject: tbs.subject,
        public_key: key.spki().map_err(|e| e.to_string())?,
        attributes,
    };
    let info_der = info
        .to_der()
        .map_err(|e| format!("CertificationRequestInfo: {e}"))?;
    let signature = key.sign(&info_der).map_err(|e| e.to_string())?;
    let req = CertReq {
        info,
        algorithm: key.signature_algorithm(),
        signature: BitString::from_bytes(&signature).map_err(|e| format!("signature: {e}"))?,
    };
    let der = req
        .to_der()
        .map_err(|e| format!("CertificationRequest: {e}"))?;
    Ok(encode_pem("CERTIFICATE REQUEST", &der))
}

fn x509_parser_raw_subject(der: &[u8]) -> Result<Vec<u8>, String> {
    CertFacts::from_der(der)
        .map(|f| f.raw_subject)
        .map_err(|e| e.to_string())
}

/// What a returned certificate must satisfy.
pub struct Expectation<'a> {
    pub old: &'a CertFacts,
    pub key: &'a PrivateKey,
    /// The CA it must verify against (path for messages), when known.
    pub ca: Option<(&'a Path, &'a CertFacts)>,
    pub asked_lifetime: Duration,
    pub margin: Duration,
    pub now: OffsetDateTime,
}

/// Checks the certificate cfssl returned (PEM, leaf first) and returns its DER.
pub fn check_returned(pem: &str, e: &Expectation<'_>) -> Result<Vec<u8>, String> {
    let blocks = pki::parse_pem(pem.as_bytes())
        .map_err(|x| format!("the server's certificate is not PEM: {x}"))?;
    let new = pki::certificates(&blocks)
        .map_err(|x| format!("the server's certificate: {x}"))?
        .into_iter()
        .next()
        .ok_or("the server's answer holds no certificate")?;
    if !e.key.matches(&new) {
        return Err(
            "the server returned a certificate for another public key, not the key this node made"
                .into(),
        );
    }
    let old_id = Identity::of(&e.old.der)?;
    let new_id = Identity::of(&new.der).map_err(|x| format!("the server's certificate: {x}"))?;
    if new_id.is_ca || new.is_ca {
        return Err("the server returned a CA certificate (CA:TRUE) for a leaf".into());
    }
    if new.raw_subject != e.old.raw_subject {
        let how = if new.subject == e.old.subject {
            " (same text, different encoding: cfssl re-encodes subjects the way Go does)"
        } else {
            ""
        };
        return Err(format!(
            "the server changed the subject: asked for {:?}, got {:?}{how}",
            e.old.subject, new.subject
        ));
    }
    if new_id.sans != old_id.sans {
        let list = |s: &BTreeSet<San>| {
            s.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let missing: BTreeSet<San> = old_id.sans.difference(&new_id.sans).cloned().collect();
        let extra: BTreeSet<San> = new_id.sans.difference(&old_id.sans).cloned().collect();
        return Err(format!(
            "the server changed the subject alternative names: asked for [{}], got [{}] (missing [{}], added [{}])",
            list(&old_id.sans),
            list(&new_id.sans),
            list(&missing),
            list(&extra)
        ));
    }
    let lost_eku: Vec<String> = old_id
        .ext_key_usage
        .difference(&new_id.ext_key_usage)
        .map(eku_name)
        .collect();
    if !lost_eku.is_empty() {
        return Err(format!(
            "the server's profile drops extended key usage {} the old certificate had (check the profile's usages)",
            lost_eku.join(", ")
        ));
    }
    let lost_ku: Vec<&String> = old_id
        .key_usage
        .iter()
        .filter(|k| !new_id.key_usage.contains(k))
        .collect();
    if !lost_ku.is_empty() {
        return Err(format!(
            "the server's profile drops key usage {} the old certificate had (check the profile's usages)",
            lost_ku
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match e.ca {
        Some((path, ca)) => {
            if !new.is_signed_by(ca) {
                let same_name = if new.raw_issuer == ca.raw_subject {
                    ", same name but another key"
                } else {
                    ""
                };
                return Err(format!(
                    "the certificate is signed by another CA (issuer {}{same_name}), not by the trusted CA {} ({})",
                    new.issuer,
                    path.display(),
                    ca.subject
                ));
            }
        }
        None => {
            if new.raw_issuer != e.old.raw_issuer {
                return Err(format!(
                    "the certificate's issuer changed: {:?} (the old one: {:?}); give the CA certificate to verify against",
                    new.issuer, e.old.issuer
                ));
            }
            if e.old.authority_key_id.is_some() && new.authority_key_id != e.old.authority_key_id {
                return Err("the certificate's authority key id differs from the old certificate's: signed by another CA key".into());
            }
        }
    }
    if new.not_before > e.now + CLOCK_SKEW {
        return Err(format!(
            "the certificate is not valid yet (not before {})",
            crate::timefmt::rfc3339(new.not_before)
        ));
    }
    if new.not_after <= e.now {
        return Err(format!(
            "the certificate has already expired (not after {})",
            crate::timefmt::rfc3339(new.not_after)
        ));
    }
    let got = new.not_after - new.not_before;
    if got < e.asked_lifetime - e.margin {
        return Err(format!(
            "the certificate lives {} but {} was asked for (margin {}): the server's profile gives a shorter lifetime; \
             fix the profile, or set [ca.remote.targets.\"NAME\"] days (cert-renew: --days) to what it gives",
            days(got),
            days(e.asked_lifetime),
            days(e.margin)
        ));
    }
    Ok(new.der)
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
    use crate::pki::x509::{CertTemplate, Issuer, EKU_CLIENT, EKU_SERVER, OID_CN, OID_O};
    use crate::pki::{KeyAlgorithm, KeyEncoding};
    use x509_cert::ext::pkix::KeyUsages;

    fn new_ca() -> (CertFacts, PrivateKey) {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let der = CertTemplate {
            subject: vec![vec![(OID_CN, "kubernetes".into())]],
            is_ca: true,
            key_usage: vec![KeyUsages::KeyCertSign, KeyUsages::DigitalSignature],
            ..Default::default()
        }
        .issue(&key, None)
        .unwrap();
        (CertFacts::from_der(&der).unwrap(), key)
    }

    fn leaf(ca: &(CertFacts, PrivateKey), t: CertTemplate, key: &PrivateKey) -> CertFacts {
        let der = t
            .issue(
                key,
                Some(&Issuer {
                    cert: &ca.0,
                    key: &ca.1,
                }),
            )
            .unwrap();
        CertFacts::from_der(&der).unwrap()
    }

    fn template() -> CertTemplate {
        let now = OffsetDateTime::now_utc();
        CertTemplate {
            subject: vec![
                vec![(OID_O, "system:nodes".into()), (OID_O, "aaa".into())],
                vec![(OID_CN, "system:node:w1".into())],
            ],
            not_before: Some(now - Duration::minutes(5)),
            not_after: Some(now + Duration::days(91)),
            key_usage: vec![KeyUsages::DigitalSignature],
            ext_key_usage: vec![EKU_CLIENT],
            dns_names: vec!["w1".into()],
            ip_addresses: vec!["10.0.0.21".parse().unwrap(), "::1".parse().unwrap()],
            ..Default::default()
        }
    }

    #[test]
    fn csr_carries_the_raw_subject_and_sans_and_verifies() {
        let ca = new_ca();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let old = leaf(&ca, template(), &key);
        let new_key =
            PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }, KeyEncoding::Pkcs1).unwrap();
        let pem = build_csr(&old.der, &new_key).unwrap();
        let blocks = pki::parse_pem(pem.as_bytes()).unwrap();
        assert_eq!(blocks[0].tag, "CERTIFICATE REQUEST");
        let req = CertReq::from_der(&blocks[0].der).unwrap();
        assert_eq!(req.info.subject.to_der().unwrap(), old.raw_subject);
        assert_eq!(
            req.info.public_key.subject_public_key.raw_bytes(),
            new_key.public_key()
        );
        // The signature is over the CertificationRequestInfo DER, with the new key.
        let (_, parsed) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&blocks[0].der)
                .unwrap();
        parsed.verify_signature().unwrap();
        let exts: Vec<_> = parsed.requested_extensions().unwrap().collect();
        assert_eq!(exts.len(), 3, "SAN, KeyUsage, ExtKeyUsage");
        let id = Identity::of(&old.der).unwrap();
        assert_eq!(
            id.hosts().unwrap(),
            vec!["w1".to_string(), "10.0.0.21".into(), "::1".into()]
        );
    }

    use x509_parser::prelude::FromDer;

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

    #[test]
    fn a_faithful_answer_is_accepted_and_each_change_is_refused() {
        let ca = new_ca();
        let old_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let old = leaf(&ca, template(), &old_key);
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
        let pem = |c: &CertFacts| encode_pem("CERTIFICATE", &c.der);
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
        check_returned(&pem(&good), &expect(&old, &key, &ca.0)).unwrap();

        let refused = |c: CertFacts, k: &PrivateKey, want: &str| {
            let e = check_returned(&pem(&c), &expect(&old, k, &ca.0)).unwrap_err();
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
        // Too short.
        let mut t = template();
        t.not_after = Some(OffsetDateTime::now_utc() + Duration::days(30));
        refused(leaf(&ca, t, &key), &key, "lives");
        // Expired.
        let mut t = template();
        t.not_before = Some(OffsetDateTime::now_utc() - Duration::days(200));
        t.not_after = Some(OffsetDateTime::now_utc() - Duration::days(1));
        refused(leaf(&ca, t, &key), &key, "expired");
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
        check_returned(&encode_pem("CERTIFICATE", &same.der), &e).unwrap();
        let other = leaf(&ca2, template(), &key);
        let err = check_returned(&encode_pem("CERTIFICATE", &other.der), &e).unwrap_err();
        assert!(err.contains("authority key id"), "{err}");
    }

    #[test]
    fn settings_refuse_http_unless_allowed_and_check_ranges() {
        let mut s = RemoteSettings {
            url: "http://127.0.0.1:8888".into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().contains("plain http"));
        s.allow_http = true;
        s.validate().unwrap();
        s.url = "ftp://x".into();
        assert!(s.validate().unwrap_err().contains("https://"));
        s.url = "https://ca.example:8888/".into();
        s.attempts = 0;
        assert!(s.validate().unwrap_err().contains("attempts"));
        s.attempts = 3;
        s.client_cert = Some("/x".into());
        assert!(s.validate().unwrap_err().contains("client_key"));
        assert!(RemoteSettings::default()
            .validate()
            .unwrap_err()
            .contains("url"));
    }

    #[test]
    fn authsign_body_is_the_hmac_of_the_request_bytes() {
        let d = tempfile::tempdir().unwrap();
        let root = NodeRoot::new(d.path());
        let f = d.path().join("key");
        std::fs::write(&f, "0123456789abcdef0123456789ABCDEF\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut s = RemoteSettings {
            url: "https://127.0.0.1:1".into(),
            auth_key_file: Some("/key".into()),
            tls_ca_bundle: None,
            ..Default::default()
        };
        let e = RemoteClient::new(&root, &s).unwrap_err();
        assert!(e.contains("0644") && e.contains("0600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The bundle: any certificate will do for building the client.
        let c = new_ca();
        std::fs::write(d.path().join("b.pem"), encode_pem("CERTIFICATE", &c.0.der)).unwrap();
        s.tls_ca_bundle = Some("/b.pem".into());
        let client = RemoteClient::new(&root, &s).unwrap();
        assert!(client.endpoint().ends_with("/api/v1/cfssl/authsign"));
        assert!(!format!("{client:?}").contains("0123"));
        let body: serde_json::Value = serde_json::from_slice(&client.body(b"{\"x\":1}")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(body["request"], b64.encode(b"{\"x\":1}"));
        let key = hex_decode(b"0123456789abcdef0123456789abcdef").unwrap();
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            b"{\"x\":1}",
        );
        assert_eq!(body["token"], b64.encode(tag.as_ref()));
        s.auth_key_file = None;
        let plain = RemoteClient::new(&root, &s).unwrap();
        assert!(plain.endpoint().ends_with("/api/v1/cfssl/sign"));
        assert_eq!(plain.body(b"abc"), b"abc");
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        for attempt in 1..=3 {
            let d = backoff(100, attempt).as_millis() as u64;
            let base = 100 << (attempt - 1);
            assert!(d >= base / 2 && d <= base * 3 / 2, "{attempt}: {d}");
        }
        assert!(backoff(60_000, 10) <= StdDuration::from_secs(30));
    }
}

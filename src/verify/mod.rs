//! Verification: is the renewed certificate really what the component now serves?
//!
//! [`endpoints`] says, from the node's files alone, where each component listens and
//! what to check there: the certificate file whose leaf must be served
//! ([`Check::ServedCert`]), or, for components that serve a self-made certificate
//! (controller-manager, scheduler), a health check ([`Check::Healthz`]).
//! [`Prober`] is the network edge, with one real implementation, [`TlsProber`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::model::Component;
use crate::node::NodeRoot;
use crate::pki::CertFacts;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("{endpoint}: no answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: TLS handshake failed: {message}")]
    Tls { endpoint: String, message: String },
    #[error("{endpoint}: the server presented no certificate")]
    NoCertificate { endpoint: String },
    #[error("{endpoint}: the served certificate cannot be read: {message}")]
    BadCertificate { endpoint: String, message: String },
    #[error("https://{endpoint}/healthz: {message}")]
    Unhealthy { endpoint: String, message: String },
}

/// Where a component listens, and what to check there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// An IP address (IPv6 without brackets) or a host name.
    pub host: String,
    pub port: u16,
    pub check: Check,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// The leaf served here must be the first certificate of this file (node path).
    ServedCert { cert: PathBuf },
    /// `GET /healthz` must answer 200 `ok`: the component serves a certificate it made
    /// itself in memory, so there is no file to compare with, but a healthy answer shows
    /// it runs again with its (renewed) kubeconfig.
    Healthz,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The certificate a server presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedCert {
    /// Lower-case hex without leading zeros, as [`crate::pki::serial_hex`] prints it.
    pub serial: String,
    pub not_after: OffsetDateTime,
    pub subject: String,
    /// DER of the presented chain, leaf first.
    pub chain: Vec<Vec<u8>>,
}

/// The network edge of verification.
pub trait Prober {
    /// Connects to the endpoint and returns the leaf certificate it serves. `timeout`
    /// bounds the whole probe.
    fn served_leaf(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<ServedCert, VerifyError>;
    /// `GET https://endpoint/healthz` without verifying the server (curl -k) must answer
    /// 200 with the body `ok`.
    fn healthy(&self, endpoint: &Endpoint, timeout: Duration) -> Result<(), VerifyError>;
}

// ---------------------------------------------------------------- discovery ---

/// Where `component` serves and what to check there, from its static pod manifest in
/// `manifests_dir` (a node path) or the kubelet's config file. Missing or unreadable
/// files give kubeadm's defaults (logged); components whose listening address cannot
/// be known (other units and static pods) give none.
pub fn endpoints(root: &NodeRoot, manifests_dir: &Path, component: &Component) -> Vec<Endpoint> {
    let manifest = |name: &str| manifest_flags(root, &manifests_dir.join(format!("{name}.yaml")));
    let mut out = Vec::new();
    match component {
        Component::KubeApiserver => {
            let f = manifest("kube-apiserver").unwrap_or_default();
            let Some(port) = port_flag(&f, "secure-port", 6443) else {
                return out;
            };
            let cert = path_flag(&f, "tls-cert-file", "/etc/kubernetes/pki/apiserver.crt");
            let check = Check::ServedCert { cert };
            if let Some(a) = f.get("advertise-address").filter(|a| !is_unspecified(a)) {
                push(&mut out, a, port, &check);
            }
            push(&mut out, &local_host(f.get("bind-address")), port, &check);
        }
        Component::Etcd => {
            let f = manifest("etcd");
            let cert = path_flag(
                f.as_ref().unwrap_or(&HashMap::new()),
                "cert-file",
                "/etc/kubernetes/pki/etcd/server.crt",
            );
            let check = Check::ServedCert { cert };
            let urls = match &f {
                Some(f) => f.get("listen-client-urls").cloned().unwrap_or_default(),
                None => "https://127.0.0.1:2379".into(),
            };
            for (host, port) in urls
                .split(',')
                .filter_map(|u| https_host_port(u.trim(), 2379))
            {
                push(&mut out, &local_host(Some(&host)), port, &check);
            }
        }
        Component::KubeControllerManager | Component::KubeScheduler => {
            let (name, default_port) = if *component == Component::KubeScheduler {
                ("kube-scheduler", 10259)
            } else {
                ("kube-controller-manager", 10257)
            };
            let f = manifest(name).unwrap_or_default();
            if let Some(port) = port_flag(&f, "secure-port", default_port) {
                push(
                    &mut out,
                    &local_host(f.get("bind-address")),
                    port,
                    &Check::Healthz,
                );
            }
        }
        Component::Kubelet => {
            let k = kubelet_config(root);
            let cert = match (k.tls_cert_file, k.server_tls_bootstrap) {
                (Some(c), _) if !c.is_empty() => PathBuf::from(c),
                (_, Some(true)) => PathBuf::from("/var/lib/kubelet/pki/kubelet-server-current.pem"),
                _ => PathBuf::from("/var/lib/kubelet/pki/kubelet.crt"),
            };
            let port = k.port.filter(|p| *p != 0).unwrap_or(10250);
            push(
                &mut out,
                &local_host(k.address.as_ref()),
                port,
                &Check::ServedCert { cert },
            );
        }
        Component::Unit(_) | Component::StaticPod(_) => {}
    }
    out
}

fn push(out: &mut Vec<Endpoint>, host: &str, port: u16, check: &Check) {
    let e = Endpoint {
        host: host.to_string(),
        port,
        check: check.clone(),
    };
    if !out.contains(&e) {
        out.push(e);
    }
}

fn is_unspecified(host: &str) -> bool {
    host.is_empty() || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// The address to reach a server bound to `bind` from this node: loopback when it
/// listens on every address (or the flag is absent), else the address itself.
fn local_host(bind: Option<&String>) -> String {
    match bind {
        Some(b) if !is_unspecified(b) => b.clone(),
        _ => "127.0.0.1".into(),
    }
}

fn port_flag(flags: &HashMap<String, String>, name: &str, default: u16) -> Option<u16> {
    match flags.get(name) {
        None => Some(default),
        // Port 0 turns the secure port off: nothing to probe.
        Some(v) => match v.parse::<u16>() {
            Ok(0) => None,
            Ok(p) => Some(p),
            Err(_) => {
                tracing::warn!(flag = name, value = %v, "unreadable port flag; using the default");
                Some(default)
            }
        },
    }
}

fn path_flag(flags: &HashMap<String, String>, name: &str, default: &str) -> PathBuf {
    PathBuf::from(flags.get(name).map(String::as_str).unwrap_or(default))
}

/// Host and port of an `https://` URL (etcd's `--listen-client-urls` entries); other
/// schemes (`http://`, `unix://`) serve no certificate.
fn https_host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default_port,
    };
    Some((host.to_string(), port))
}

#[derive(Deserialize, Default)]
struct Pod {
    #[serde(default)]
    spec: PodSpec,
}

#[derive(Deserialize, Default)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Deserialize, Default)]
struct Container {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
}

/// The `--name=value` items of a static pod's first container (command and args; a
/// bare `--flag` is `true`). `None` when the manifest is missing or unreadable.
fn manifest_flags(root: &NodeRoot, manifest: &Path) -> Option<HashMap<String, String>> {
    let bytes = match root.read(manifest) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(manifest = %manifest.display(), error = %e, "no manifest; using kubeadm's defaults");
            return None;
        }
    };
    let pod: Pod = match serde_saphyr::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(manifest = %manifest.display(), error = %e, "unreadable manifest; using kubeadm's defaults");
            return None;
        }
    };
    Some(parse_flags(pod.spec.containers.first()))
}

fn parse_flags(c: Option<&Container>) -> HashMap<String, String> {
    let mut flags = HashMap::new();
    for item in c.into_iter().flat_map(|c| c.command.iter().chain(&c.args)) {
        if let Some(f) = item.strip_prefix("--") {
            let (k, v) = f.split_once('=').unwrap_or((f, "true"));
            flags.insert(k.to_string(), v.to_string());
        }
    }
    flags
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KubeletConfig {
    address: Option<String>,
    port: Option<u16>,
    tls_cert_file: Option<String>,
    #[serde(rename = "serverTLSBootstrap")]
    server_tls_bootstrap: Option<bool>,
}

/// kubeadm's kubelet configuration file; defaults when absent or unreadable.
fn kubelet_config(root: &NodeRoot) -> KubeletConfig {
    let p = Path::new("/var/lib/kubelet/config.yaml");
    match root.read(p) {
        Ok(b) => serde_saphyr::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(file = %p.display(), error = %e, "unreadable kubelet configuration; using defaults");
            KubeletConfig::default()
        }),
        Err(_) => KubeletConfig::default(),
    }
}

// ------------------------------------------------------------------- probing ---

/// Probes over TLS with rustls (the `ring` provider: the project already builds ring,
/// and rustls's default aws-lc-rs feature set would add nothing we need).
pub struct TlsProber {
    provider: Arc<CryptoProvider>,
}

impl Default for TlsProber {
    fn default() -> Self {
        Self::new()
    }
}

/// Accepts whatever certificate the server presents and records the chain.
///
/// This is deliberately not authentication: the probe only asks *which* certificate
/// a local component serves, to compare its serial with the file just written, and it
/// sends nothing secret. Checking trust would also wrongly fail on the kubelet's
/// self-signed `kubelet.crt`. The handshake signatures are still verified against the
/// presented certificate, so a served certificate is one whose key the server holds.
#[derive(Debug)]
struct Recorder {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<Vec<u8>>>,
    signed: AtomicBool,
}

impl Recorder {
    fn chain(&self) -> Vec<Vec<u8>> {
        self.chain.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.chain.lock().unwrap_or_else(|p| p.into_inner()) = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let v = rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )?;
        self.signed.store(true, Ordering::SeqCst);
        Ok(v)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let v = rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )?;
        self.signed.store(true, Ordering::SeqCst);
        Ok(v)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection after the handshake.
struct Session {
    conn: ClientConnection,
    sock: TcpStream,
}

/// The time left before `deadline`, or a timeout error.
fn left(
    deadline: Instant,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Duration, VerifyError> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(VerifyError::Timeout {
            endpoint: endpoint.to_string(),
            timeout,
        });
    }
    Ok(d)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl TlsProber {
    pub fn new() -> Self {
        TlsProber {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// Connects and completes the TLS handshake without a client certificate. A server
    /// that asks for one (kube-apiserver with --client-ca-file, the kubelet) goes on
    /// without it; one that requires it (etcd with --client-cert-auth) fails the
    /// handshake, but only after presenting its certificate, which `rec` keeps.
    fn open(
        &self,
        ep: &Endpoint,
        deadline: Instant,
        timeout: Duration,
        rec: &Arc<Recorder>,
    ) -> Result<Session, VerifyError> {
        let tls_err = |message: String| VerifyError::Tls {
            endpoint: ep.to_string(),
            message,
        };
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(rec.clone())
            .with_no_client_auth();
        // rustls sends SNI for a host name and none for an IP address.
        let name = match ep.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(ep.host.clone())
                .map_err(|e| tls_err(format!("{:?} is not a valid host name: {e}", ep.host)))?,
        };
        let mut conn =
            ClientConnection::new(Arc::new(config), name).map_err(|e| tls_err(e.to_string()))?;
        let sock = self.connect(ep, deadline, timeout)?;
        let mut sock = sock;
        while conn.is_handshaking() {
            let d = left(deadline, ep, timeout)?;
            let _ = sock.set_read_timeout(Some(d));
            let _ = sock.set_write_timeout(Some(d));
            match conn.complete_io(&mut sock) {
                Ok((0, 0)) if conn.is_handshaking() => {
                    return Err(tls_err("the server closed the connection".into()))
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    return Err(VerifyError::Timeout {
                        endpoint: ep.to_string(),
                        timeout,
                    })
                }
                Err(e) => return Err(tls_err(e.to_string())),
            }
        }
        Ok(Session { conn, sock })
    }

    fn connect(
        &self,
        ep: &Endpoint,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<TcpStream, VerifyError> {
        let conn_err = |source: io::Error| VerifyError::Connect {
            endpoint: ep.to_string(),
            source,
        };
        let addrs = (ep.host.as_str(), ep.port)
            .to_socket_addrs()
            .map_err(conn_err)?;
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            "the host name resolves to no address",
        );
        for a in addrs {
            let d = left(deadline, ep, timeout)?;
            match TcpStream::connect_timeout(&a, d) {
                Ok(s) => return Ok(s),
                Err(e) if is_timeout(&e) => {
                    return Err(VerifyError::Timeout {
                        endpoint: ep.to_string(),
                        timeout,
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(conn_err(last))
    }

    fn recorder(&self) -> Arc<Recorder> {
        Arc::new(Recorder {
            provider: self.provider.clone(),
            chain: Mutex::new(Vec::new()),
            signed: AtomicBool::new(false),
        })
    }
}

impl Prober for TlsProber {
    fn served_leaf(
        &self,
        endpoint: &Endpoint,
        timeout: Duration,
    ) -> Result<ServedCert, VerifyError> {
        let deadline = Instant::now() + timeout;
        let rec = self.recorder();
        if let Err(e) = self.open(endpoint, deadline, timeout, &rec) {
            // A server that insists on a client certificate refuses us after it showed
            // its own and proved it holds the key: that is all we came for.
            if rec.chain().is_empty() || !rec.signed.load(Ordering::SeqCst) {
                return Err(e);
            }
            tracing::debug!(%endpoint, error = %e, "server refused the handshake after presenting its certificate");
        }
        let chain = rec.chain();
        let leaf = chain.first().ok_or_else(|| VerifyError::NoCertificate {
            endpoint: endpoint.to_string(),
        })?;
        let facts = CertFacts::from_der(leaf).map_err(|e| VerifyError::BadCertificate {
            endpoint: endpoint.to_string(),
            message: e.to_string(),
        })?;
        Ok(ServedCert {
            serial: facts.serial,
            not_after: facts.not_after,
            subject: facts.subject,
            chain,
        })
    }

    fn healthy(&self, endpoint: &Endpoint, timeout: Duration) -> Result<(), VerifyError> {
        let deadline = Instant::now() + timeout;
        let rec = self.recorder();
        let Session { mut conn, mut sock } = self.open(endpoint, deadline, timeout, &rec)?;
        let unhealthy = |message: String| VerifyError::Unhealthy {
            endpoint: endpoint.to_string(),
            message,
        };
        let io_err = |e: io::Error| {
            if is_timeout(&e) {
                VerifyError::Timeout {
                    endpoint: endpoint.to_string(),
                    timeout,
                }
            } else {
                unhealthy(e.to_string())
            }
        };
        // HTTP/1.0: the server answers without chunked encoding and closes the
        // connection, so reading to the end (or to Content-Length) is the whole parser.
        let request = format!(
            "GET /healthz HTTP/1.0\r\nHost: {endpoint}\r\nUser-Agent: cert-rotator\r\nAccept: */*\r\n\r\n"
        );
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        let d = left(deadline, endpoint, timeout)?;
        let _ = stream.sock.set_write_timeout(Some(d));
        stream.write_all(request.as_bytes()).map_err(io_err)?;
        stream.flush().map_err(io_err)?;
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let d = left(deadline, endpoint, timeout)?;
            let _ = stream.sock.set_read_timeout(Some(d));
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                // Servers that close without close_notify: what came is the answer.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => break,
                Err(e) => return Err(io_err(e)),
            }
            if response_complete(&response) || response.len() > 64 * 1024 {
                break;
            }
        }
        let (status, body) = parse_response(&response).map_err(unhealthy)?;
        if status != 200 {
            return Err(unhealthy(format!("answered {status}: {}", excerpt(&body))));
        }
        if body.trim() != "ok" {
            return Err(unhealthy(format!(
                "answered 200 but not \"ok\": {}",
                excerpt(&body)
            )));
        }
        Ok(())
    }
}

fn split_head(resp: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&resp[..i], &resp[i + 4..]))
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Whether the whole answer is in (its Content-Length reached); without one the
/// server's close ends it.
fn response_complete(resp: &[u8]) -> bool {
    split_head(resp)
        .is_some_and(|(head, body)| content_length(head).is_some_and(|n| body.len() >= n))
}

/// Status code and body of an HTTP/1.x answer.
fn parse_response(resp: &[u8]) -> Result<(u16, String), String> {
    let (head, body) = split_head(resp).ok_or_else(|| {
        if resp.is_empty() {
            "the server closed the connection without an answer".to_string()
        } else {
            format!(
                "not an HTTP answer: {}",
                excerpt(&String::from_utf8_lossy(resp))
            )
        }
    })?;
    let head = String::from_utf8_lossy(head);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let code = match (parts.next(), parts.next()) {
        (Some(v), Some(c)) if v.starts_with("HTTP/") => c.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("not an HTTP status line: {}", excerpt(status_line)))?;
    let body = match content_length(head.as_bytes()) {
        Some(n) if n < body.len() => &body[..n],
        _ => body,
    };
    Ok((code, String::from_utf8_lossy(body).into_owned()))
}

fn excerpt(s: &str) -> String {
    let one_line: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, NodeSpec};
    use std::process::{Child, Command, Stdio};

    fn served(host: &str, port: u16, cert: &str) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            check: Check::ServedCert { cert: cert.into() },
        }
    }

    fn health(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            check: Check::Healthz,
        }
    }

    fn node() -> (tempfile::TempDir, NodeRoot) {
        let d = tempfile::tempdir().unwrap();
        fixture::build(
            d.path(),
            &NodeSpec::control_plane(OffsetDateTime::now_utc()),
        )
        .unwrap();
        let r = NodeRoot::new(d.path());
        (d, r)
    }

    const MANIFESTS: &str = "/etc/kubernetes/manifests";

    #[test]
    fn endpoints_of_a_kubeadm_control_plane() {
        let (_d, r) = node();
        let m = Path::new(MANIFESTS);
        let api = "/etc/kubernetes/pki/apiserver.crt";
        assert_eq!(
            endpoints(&r, m, &Component::KubeApiserver),
            [
                served("10.0.0.10", 6443, api),
                served("127.0.0.1", 6443, api)
            ]
        );
        let etcd = "/etc/kubernetes/pki/etcd/server.crt";
        assert_eq!(
            endpoints(&r, m, &Component::Etcd),
            [
                served("127.0.0.1", 2379, etcd),
                served("10.0.0.10", 2379, etcd)
            ]
        );
        assert_eq!(
            endpoints(&r, m, &Component::Kubelet),
            [served(
                "127.0.0.1",
                10250,
                "/var/lib/kubelet/pki/kubelet.crt"
            )]
        );
        assert_eq!(
            endpoints(&r, m, &Component::KubeControllerManager),
            [health(10257)]
        );
        assert_eq!(endpoints(&r, m, &Component::KubeScheduler), [health(10259)]);
        assert!(endpoints(&r, m, &Component::Unit("x.service".into())).is_empty());
        assert!(endpoints(&r, m, &Component::StaticPod("x".into())).is_empty());
    }

    #[test]
    fn flags_and_kubelet_config_override_the_defaults() {
        let d = tempfile::tempdir().unwrap();
        let r = NodeRoot::new(d.path());
        let m = Path::new(MANIFESTS);
        // Nothing on disk: kubeadm's defaults.
        assert_eq!(
            endpoints(&r, m, &Component::KubeApiserver),
            [served(
                "127.0.0.1",
                6443,
                "/etc/kubernetes/pki/apiserver.crt"
            )]
        );
        assert_eq!(
            endpoints(&r, m, &Component::Etcd),
            [served(
                "127.0.0.1",
                2379,
                "/etc/kubernetes/pki/etcd/server.crt"
            )]
        );
        std::fs::create_dir_all(r.host(m)).unwrap();
        let pod = |args: &str| {
            format!("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - command:\n    - x\n    args:\n{args}    name: x\n")
        };
        std::fs::write(
            r.host(&m.join("kube-apiserver.yaml")),
            pod("    - --secure-port=8443\n    - --bind-address=192.168.1.5\n    - --advertise-address=0.0.0.0\n    - --tls-cert-file=/srv/a.crt\n"),
        )
        .unwrap();
        assert_eq!(
            endpoints(&r, m, &Component::KubeApiserver),
            [served("192.168.1.5", 8443, "/srv/a.crt")]
        );
        std::fs::write(
            r.host(&m.join("etcd.yaml")),
            pod("    - --listen-client-urls=http://127.0.0.1:2381,https://[::1]:2379,https://0.0.0.0,unix://x\n"),
        )
        .unwrap();
        let etcd = "/etc/kubernetes/pki/etcd/server.crt";
        let got = endpoints(&r, m, &Component::Etcd);
        assert_eq!(
            got,
            [served("::1", 2379, etcd), served("127.0.0.1", 2379, etcd)]
        );
        assert_eq!(got[0].to_string(), "[::1]:2379");
        std::fs::write(
            r.host(&m.join("kube-scheduler.yaml")),
            pod("    - --secure-port=0\n"),
        )
        .unwrap();
        assert!(endpoints(&r, m, &Component::KubeScheduler).is_empty());
        std::fs::write(
            r.host(&m.join("kube-controller-manager.yaml")),
            "{{{ not yaml",
        )
        .unwrap();
        assert_eq!(
            endpoints(&r, m, &Component::KubeControllerManager),
            [health(10257)]
        );
        std::fs::create_dir_all(r.host(Path::new("/var/lib/kubelet"))).unwrap();
        std::fs::write(
            r.host(Path::new("/var/lib/kubelet/config.yaml")),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nport: 10350\nserverTLSBootstrap: true\nauthentication:\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n",
        )
        .unwrap();
        assert_eq!(
            endpoints(&r, m, &Component::Kubelet),
            [served(
                "127.0.0.1",
                10350,
                "/var/lib/kubelet/pki/kubelet-server-current.pem"
            )]
        );
    }

    #[test]
    fn http_answers_are_parsed() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap(),
            (200, "ok".to_string())
        );
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        ));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\no"
        ));
        assert_eq!(parse_response(b"HTTP/1.0 500 x\r\n\r\nbad").unwrap().0, 500);
        assert!(parse_response(b"")
            .unwrap_err()
            .contains("without an answer"));
        assert!(parse_response(b"SSH-2.0\r\n\r\n")
            .unwrap_err()
            .contains("not an HTTP status line"));
    }

    // ------------------------------------------------- against a real TLS server ---

    /// An `openssl s_server` on a loopback port, killed on drop.
    struct Server {
        child: Child,
        port: u16,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn s_server(cert: &Path, key: &Path, cwd: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new("openssl")
            .arg("s_server")
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(extra)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let mut server = Server { child, port };
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "openssl s_server exited"
            );
            assert!(
                Instant::now() < until,
                "openssl s_server does not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.port = port;
        server
    }

    fn openssl_serial(cert: &Path) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(cert)
            .output()
            .unwrap();
        assert!(out.status.success());
        let s = String::from_utf8(out.stdout).unwrap();
        let hex = s.trim().trim_start_matches("serial=").to_ascii_lowercase();
        let t = hex.trim_start_matches('0');
        if t.is_empty() {
            "0".into()
        } else {
            t.into()
        }
    }

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn tls_prober_reads_the_served_serial_from_openssl() {
        let (d, r) = node();
        let cert = r.host(Path::new("/etc/kubernetes/pki/apiserver.crt"));
        let key = r.host(Path::new("/etc/kubernetes/pki/apiserver.key"));
        let want = openssl_serial(&cert);
        let facts = CertFacts::from_der(
            &crate::pki::parse_pem(&std::fs::read(&cert).unwrap()).unwrap()[0].der,
        )
        .unwrap();
        let p = TlsProber::new();
        // Plain, asking for an optional client certificate (kube-apiserver with
        // --client-ca-file), and requiring one (etcd with --client-cert-auth); TLS 1.2
        // and 1.3.
        for extra in [
            &[][..],
            &["-verify", "1"],
            &["-Verify", "1"],
            &["-Verify", "1", "-tls1_2"],
            &["-tls1_2"],
        ] {
            let mut args = vec!["-www"];
            args.extend_from_slice(extra);
            let s = s_server(&cert, &key, d.path(), &args);
            let got = p
                .served_leaf(&served("127.0.0.1", s.port, "x"), T)
                .unwrap_or_else(|e| panic!("{extra:?}: {e}"));
            assert_eq!(got.serial, want, "{extra:?}");
            assert_eq!(got.not_after, facts.not_after);
            assert_eq!(got.chain.len(), 1);
            // By name too: SNI "localhost".
            let got = p.served_leaf(&served("localhost", s.port, "x"), T).unwrap();
            assert_eq!(got.serial, want);
        }
        // The kubelet's bundle: self-signed leaf followed by its CA, sent as a chain.
        let kcert = r.host(Path::new("/var/lib/kubelet/pki/kubelet.crt"));
        let kkey = r.host(Path::new("/var/lib/kubelet/pki/kubelet.key"));
        let s = s_server(
            &kcert,
            &kkey,
            d.path(),
            &["-www", "-cert_chain", kcert.to_str().unwrap()],
        );
        let got = p.served_leaf(&served("127.0.0.1", s.port, "x"), T).unwrap();
        assert_eq!(got.serial, openssl_serial(&kcert));
    }

    #[test]
    fn a_closed_port_is_named_in_the_error() {
        let port = free_port();
        let e = TlsProber::new()
            .served_leaf(&served("127.0.0.1", port, "x"), T)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{msg}"
        );
        assert!(matches!(e, VerifyError::Connect { .. }));
        let e = TlsProber::new().healthy(&health(port), T).unwrap_err();
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[test]
    fn a_server_that_is_not_tls_is_a_clear_error_and_silence_a_timeout() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            // First connection: answer in plain text; second: say nothing.
            let (mut c, _) = l.accept().unwrap();
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nplain http\n");
            drop(c);
            let (c, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            drop(c);
        });
        let p = TlsProber::new();
        let e = p
            .served_leaf(&served("127.0.0.1", port, "x"), T)
            .unwrap_err();
        assert!(matches!(e, VerifyError::Tls { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("127.0.0.1:{port}: TLS handshake failed")),
            "{e}"
        );
        let e = p
            .served_leaf(&served("127.0.0.1", port, "x"), Duration::from_millis(300))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("127.0.0.1:{port}: no answer within 300ms")
        );
        t.join().unwrap();
    }

    #[test]
    fn healthz_over_tls() {
        let (d, r) = node();
        let cert = r.host(Path::new("/etc/kubernetes/pki/apiserver.crt"));
        let key = r.host(Path::new("/etc/kubernetes/pki/apiserver.key"));
        // s_server -WWW serves files of its working directory: /healthz is ./healthz.
        let www = d.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("healthz"), "ok").unwrap();
        let p = TlsProber::new();
        let s = s_server(&cert, &key, &www, &["-WWW", "-verify", "1"]);
        p.healthy(&health(s.port), T).unwrap();
        std::fs::write(www.join("healthz"), "[-]poststarthook failed\n").unwrap();
        let e = p.healthy(&health(s.port), T).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("https://127.0.0.1:{}/healthz: answered 200 but not \"ok\": [-]poststarthook failed", s.port)
        );
        // s_server answers a missing file with 200 and a long error text: shown cut.
        std::fs::remove_file(www.join("healthz")).unwrap();
        let e = p.healthy(&health(s.port), T).unwrap_err().to_string();
        assert!(
            e.contains("answered 200 but not \"ok\": Error opening 'healthz'"),
            "{e}"
        );
        assert!(e.ends_with("..."), "{e}");
    }
}

//! The network edge of verification: [`TlsProber`] connects to a component, records
//! the certificate chain it presents and, for components with a self-made serving
//! certificate, asks `/healthz`. TLS is rustls on the aws-lc-rs provider, the crypto
//! the rest of the agent already uses.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::http::{excerpt, parse_response, response_complete};
use super::listener::{Listeners, ProcListeners};
use super::{Endpoint, Prober, Readiness, RestartRequested, ServedCert, VerifyError};
use crate::pki::CertFacts;

/// Probes over TLS with rustls and its aws-lc-rs provider; tells the listening process
/// from the live system's `/proc` (a prober exists only in a live pass).
pub struct TlsProber {
    provider: Arc<CryptoProvider>,
    proc: ProcListeners,
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
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            proc: ProcListeners::default(),
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
        // Within the deadline: a host name is not resolved past it (resolve.rs).
        let addrs =
            super::resolve::addresses(ep, deadline, timeout, super::resolve::system_lookup)?;
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
            source: e,
        })?;
        Ok(ServedCert {
            serial: facts.serial,
            not_after: facts.not_after,
            subject: facts.subject,
            chain,
        })
    }

    fn healthy(&self, endpoint: &Endpoint, timeout: Duration) -> Result<(), VerifyError> {
        let unhealthy = |message: String| VerifyError::Unhealthy {
            endpoint: endpoint.to_string(),
            message,
        };
        let (status, body) = self.get(endpoint, "/healthz", timeout, unhealthy)?;
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

    fn ready(&self, endpoint: &Endpoint, timeout: Duration) -> Result<Readiness, VerifyError> {
        let not_ready = |message: String| VerifyError::NotReady {
            endpoint: endpoint.to_string(),
            message,
        };
        let (status, body) = match self.get(endpoint, "/readyz", timeout, not_ready) {
            Err(VerifyError::Tls { message, .. } | VerifyError::NotReady { message, .. })
                if message.contains(CLIENT_CERT_REQUIRED) =>
            {
                return Ok(Readiness::NotVisible(
                    "the server requires a client certificate".into(),
                ))
            }
            r => r?,
        };
        match status {
            200 if body.trim() == "ok" => Ok(Readiness::Ready),
            401 => Ok(Readiness::NotVisible(
                "answered 401 to a client without credentials".into(),
            )),
            403 => Ok(Readiness::Forbidden(format!(
                "answered 403 to a client without credentials: {}",
                excerpt(&body)
            ))),
            200 => Err(not_ready(format!(
                "answered 200 but not \"ok\": {}",
                excerpt(&body)
            ))),
            _ => Err(not_ready(format!("answered {status}: {}", excerpt(&body)))),
        }
    }

    fn restart_mark(&self) -> Option<RestartRequested> {
        self.proc.mark()
    }

    fn listeners(&self, endpoint: &Endpoint) -> Listeners {
        self.proc.on_endpoint(&endpoint.host, endpoint.port)
    }
}

/// How rustls names the alert of a server that requires a client certificate (TLS 1.3
/// `certificate_required`; TLS 1.2 servers send `handshake_failure` and are not told
/// apart from other failures).
const CLIENT_CERT_REQUIRED: &str = "CertificateRequired";

impl TlsProber {
    /// `GET https://endpoint{path}` over HTTP/1.0, without verifying the server and
    /// without credentials: the status and body. Errors after the handshake are made
    /// by `fail` (the caller's error for that path).
    fn get(
        &self,
        endpoint: &Endpoint,
        path: &str,
        timeout: Duration,
        fail: impl Fn(String) -> VerifyError,
    ) -> Result<(u16, String), VerifyError> {
        let deadline = Instant::now() + timeout;
        let rec = self.recorder();
        let Session { mut conn, mut sock } = self.open(endpoint, deadline, timeout, &rec)?;
        let io_err = |e: io::Error| {
            if is_timeout(&e) {
                VerifyError::Timeout {
                    endpoint: endpoint.to_string(),
                    timeout,
                }
            } else {
                fail(e.to_string())
            }
        };
        // HTTP/1.0: the server answers without chunked encoding and closes the
        // connection, so reading to the end (or to Content-Length) is the whole parser.
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {endpoint}\r\nUser-Agent: cert-rotator\r\nAccept: */*\r\n\r\n"
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
        parse_response(&response).map_err(|e| fail(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::node::NodeRoot;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    fn node() -> (tempfile::TempDir, NodeRoot) {
        fixture::temp_control_plane()
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
                .served_leaf(&Endpoint::served("127.0.0.1", s.port, "x"), T)
                .unwrap_or_else(|e| panic!("{extra:?}: {e}"));
            assert_eq!(got.serial, want, "{extra:?}");
            assert_eq!(got.not_after, facts.not_after);
            assert_eq!(got.chain.len(), 1);
            // By name too: SNI "localhost".
            let got = p
                .served_leaf(&Endpoint::served("localhost", s.port, "x"), T)
                .unwrap();
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
        let got = p
            .served_leaf(&Endpoint::served("127.0.0.1", s.port, "x"), T)
            .unwrap();
        assert_eq!(got.serial, openssl_serial(&kcert));
    }

    #[test]
    fn a_closed_port_is_named_in_the_error() {
        let port = free_port();
        let e = TlsProber::new()
            .served_leaf(&Endpoint::served("127.0.0.1", port, "x"), T)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
            "{msg}"
        );
        assert!(matches!(e, VerifyError::Connect { .. }));
        let e = TlsProber::new()
            .healthy(&Endpoint::healthz(port), T)
            .unwrap_err();
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
            .served_leaf(&Endpoint::served("127.0.0.1", port, "x"), T)
            .unwrap_err();
        assert!(matches!(e, VerifyError::Tls { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("127.0.0.1:{port}: TLS handshake failed")),
            "{e}"
        );
        let e = p
            .served_leaf(
                &Endpoint::served("127.0.0.1", port, "x"),
                Duration::from_millis(300),
            )
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
        p.healthy(&Endpoint::healthz(s.port), T).unwrap();
        std::fs::write(www.join("healthz"), "[-]poststarthook failed\n").unwrap();
        let e = p.healthy(&Endpoint::healthz(s.port), T).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("https://127.0.0.1:{}/healthz: answered 200 but not \"ok\": [-]poststarthook failed", s.port)
        );
        // s_server answers a missing file with 200 and a long error text: shown cut.
        std::fs::remove_file(www.join("healthz")).unwrap();
        let e = p
            .healthy(&Endpoint::healthz(s.port), T)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("answered 200 but not \"ok\": Error opening 'healthz'"),
            "{e}"
        );
        assert!(e.ends_with("..."), "{e}");
        drop(s);
        // /readyz: ok is ready; anything else (kube-apiserver's 500 lists the failed
        // checks) is not.
        std::fs::write(www.join("readyz"), "ok").unwrap();
        let s = s_server(&cert, &key, &www, &["-WWW", "-verify", "1"]);
        let ep = Endpoint::served("127.0.0.1", s.port, "x");
        assert_eq!(p.ready(&ep, T).unwrap(), Readiness::Ready);
        std::fs::write(www.join("readyz"), "[-]etcd failed: reason withheld\n").unwrap();
        assert_eq!(
            p.ready(&ep, T).unwrap_err().to_string(),
            format!("https://127.0.0.1:{}/readyz: answered 200 but not \"ok\": [-]etcd failed: reason withheld", s.port)
        );
        drop(s);
        // A server that requires a client certificate shows no readiness to a probe
        // that sends none (TLS 1.3's certificate_required alert).
        let s = s_server(&cert, &key, &www, &["-WWW", "-Verify", "1"]);
        let ep = Endpoint::served("127.0.0.1", s.port, "x");
        assert!(
            matches!(p.ready(&ep, T), Ok(Readiness::NotVisible(_))),
            "{:?}",
            p.ready(&ep, T)
        );
    }
}

//! The cfssl client's own behaviour: the authsign body, transport failures told apart,
//! retries bounded by a deadline and by a pass's breaker.

use super::auth_key::hex_decode;
use super::*;
use crate::pki::encode_pem;
use crate::pki::x509::{CertTemplate, OID_CN};
use crate::pki::{KeyAlgorithm, KeyEncoding, PrivateKey};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn any_certificate() -> Vec<u8> {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, KeyEncoding::Sec1).unwrap();
    CertTemplate {
        subject: vec![vec![(OID_CN, "cfssl-tls-ca".into())]],
        is_ca: true,
        ..Default::default()
    }
    .issue(&key, None)
    .unwrap()
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
    assert!(
        matches!(&e, RemoteError::AuthKey { path, problem: AuthKeyProblem::Mode { mode: 0o644 } } if path == Path::new("/key")),
        "{e}"
    );
    let e = e.to_string();
    assert!(e.contains("0644") && e.contains("0600"), "{e}");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The bundle: any certificate will do for building the client.
    std::fs::write(
        d.path().join("b.pem"),
        encode_pem("CERTIFICATE", &any_certificate()),
    )
    .unwrap();
    s.tls_ca_bundle = Some("/b.pem".into());
    let client = RemoteClient::new(&root, &s).unwrap();
    assert!(client.endpoint().ends_with("/api/v1/cfssl/authsign"));
    assert!(!format!("{client:?}").contains("0123"));
    let body: serde_json::Value = serde_json::from_slice(&client.body(b"{\"x\":1}")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(body["request"], b64.encode(b"{\"x\":1}"));
    let key = hex_decode(b"0123456789abcdef0123456789abcdef").unwrap();
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), b"{\"x\":1}");
    assert_eq!(body["token"], b64.encode(tag.as_ref()));
    s.auth_key_file = None;
    let plain = RemoteClient::new(&root, &s).unwrap();
    assert!(plain.endpoint().ends_with("/api/v1/cfssl/sign"));
    assert_eq!(plain.body(b"abc"), b"abc");
}

/// A TCP listener on 127.0.0.1 whose every accepted connection `serve` handles, kept
/// open when it returns it: its port and the count of connections it accepted. The
/// stand-ins below and the signer service's tests are made of it.
pub(crate) fn listener(
    serve: impl Fn(std::net::TcpStream) -> Option<std::net::TcpStream> + Send + 'static,
) -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.extend(serve(s));
        }
    });
    (port, accepted)
}

/// A stand-in for a hung server, which no real cfssl (nor API server) can be made to
/// be: a TCP listener that accepts and never speaks. Its port and the count of
/// connections it accepted. Shared with the signer service's tests.
pub(crate) fn silent_listener() -> (u16, Arc<AtomicUsize>) {
    listener(Some)
}

/// A [`silent_listener`] and a node root with a TLS bundle for a client of it.
fn silent_server() -> (u16, Arc<AtomicUsize>, tempfile::TempDir) {
    let (port, accepted) = silent_listener();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("b.pem"),
        encode_pem("CERTIFICATE", &any_certificate()),
    )
    .unwrap();
    (port, accepted, d)
}

fn silent_settings(port: u16, attempts: u32, connect_timeout_seconds: u64) -> RemoteSettings {
    RemoteSettings {
        url: format!("https://127.0.0.1:{port}"),
        tls_ca_bundle: Some("/b.pem".into()),
        connect_timeout_seconds,
        attempts,
        retry_delay_ms: 1,
        ..Default::default()
    }
}

#[test]
fn a_handshake_that_hangs_is_not_a_connect_timeout() {
    let (port, _, d) = silent_server();
    let s = silent_settings(port, 1, 1);
    let client = RemoteClient::new(&NodeRoot::new(d.path()), &s).unwrap();
    let started = Instant::now();
    let e = client.sign("kubelet.crt", b"{}").unwrap_err();
    assert!(started.elapsed() < StdDuration::from_secs(10), "{e}");
    assert!(
        matches!(
            &e,
            RemoteError::GaveUp {
                last: Failure::TlsHandshakeTimeout { seconds: 1, .. },
                attempts: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains(&format!(
            "TLS handshake with 127.0.0.1:{port} timed out after 1s"
        )),
        "{e}"
    );
}

#[test]
fn nothing_listening_is_unreachable_and_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = RemoteSettings {
        url: format!("http://127.0.0.1:{port}"),
        allow_http: true,
        attempts: 2,
        retry_delay_ms: 1,
        ..Default::default()
    };
    let client = RemoteClient::new(&NodeRoot::new("/nonexistent"), &s).unwrap();
    let e = client.sign("kubelet.crt", b"{}").unwrap_err();
    assert!(
        matches!(&e, RemoteError::GaveUp { last: Failure::Unreachable(_) | Failure::Connection(_), attempts: 2, url } if url.ends_with("/api/v1/cfssl/sign")),
        "{e:?}"
    );
    assert!(e.to_string().contains("gave up after 2 attempts"), "{e}");
}

#[test]
fn a_server_that_never_answers_costs_the_pass_one_targets_tries() {
    let (port, accepted, d) = silent_server();
    let client = RemoteClient::new(&NodeRoot::new(d.path()), &silent_settings(port, 2, 1)).unwrap();
    let started = Instant::now();
    let e = client.sign("apiserver", b"{}").unwrap_err();
    assert!(
        matches!(
            &e,
            RemoteError::GaveUp {
                last: Failure::TlsHandshakeTimeout { .. },
                attempts: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // The pass's other targets: at once, saying why, nothing dialled.
    let at = Instant::now();
    for target in ["apiserver-kubelet-client", "front-proxy-client"] {
        let e = client.sign(target, b"{}").unwrap_err();
        assert!(matches!(&e, RemoteError::DownThisPass { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "cfssl https://127.0.0.1:{port}/api/v1/cfssl/sign unreachable earlier in this pass: \
                 TLS handshake with 127.0.0.1:{port} timed out after 1s; not retried"
            )
        );
        assert!(e.transport_failure().is_some());
    }
    assert!(
        at.elapsed() < StdDuration::from_millis(500),
        "{:?}",
        at.elapsed()
    );
    assert!(started.elapsed() < StdDuration::from_secs(10));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn a_refusal_or_a_server_error_is_no_transport_failure() {
    let url = "https://ca.example:8888/api/v1/cfssl/authsign".to_string();
    let refused = RemoteError::Exchange {
        url: url.clone(),
        failure: Failure::Refused("bad request".into()),
    };
    assert!(refused.transport_failure().is_none());
    let busy = RemoteError::GaveUp {
        url: url.clone(),
        last: Failure::Http {
            status: 503,
            detail: HttpDetail::None,
        },
        attempts: 3,
    };
    assert!(busy.transport_failure().is_none());
    let tls = RemoteError::Exchange {
        url,
        failure: Failure::Tls("UnknownIssuer".into()),
    };
    assert!(tls.transport_failure().is_none());
}

#[test]
fn no_try_starts_nor_lasts_past_the_deadline() {
    let (port, accepted, d) = silent_server();
    // Three tries of 5 s each, 15 s and more: the deadline, 1.5 s away, ends them.
    let client = RemoteClient::new(&NodeRoot::new(d.path()), &silent_settings(port, 3, 5)).unwrap();
    let started = Instant::now();
    let deadline = Deadline {
        at: started + StdDuration::from_millis(1500),
        why: "the Lease term ends".into(),
    };
    let e = client
        .sign_by("csr-1", b"{}", Some(deadline.clone()))
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= StdDuration::from_millis(1400) && took < StdDuration::from_secs(3),
        "{took:?}: {e}"
    );
    assert!(
        matches!(&e, RemoteError::OutOfTime { attempts: 1, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().ends_with(&format!(
            "TLS handshake with 127.0.0.1:{port} timed out after 2s (stopped after 1 attempt(s): the Lease term ends)"
        )),
        "{e}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // A deadline already past: nothing is sent.
    let fresh = RemoteClient::new(&NodeRoot::new(d.path()), &silent_settings(port, 3, 5)).unwrap();
    let e = fresh.sign_by("csr-2", b"{}", Some(deadline)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("cfssl https://127.0.0.1:{port}/api/v1/cfssl/sign: not asked: the Lease term ends")
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
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

/// A stand-in for a server that answers wrongly, which no real cfssl can be made to do:
/// a plain-HTTP listener that reads each request and writes `answer`, then closes the
/// connection (`hold`: keeps it open, saying nothing more). Its port and the count of
/// connections it accepted.
fn answering_listener(answer: Vec<u8>, hold: bool) -> (u16, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    listener(move |mut s| {
        // The request's head and its body of Content-Length bytes, so that the answer
        // is no reset of a connection with unread data.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let complete = |got: &[u8]| {
            let text = String::from_utf8_lossy(got).to_ascii_lowercase();
            let Some(end) = text.find("\r\n\r\n") else {
                return false;
            };
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            got.len() >= end + 4 + length
        };
        while !complete(&got) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(&answer);
        hold.then_some(s)
    })
}

fn http_client(port: u16, attempts: u32) -> RemoteClient {
    let s = RemoteSettings {
        url: format!("http://127.0.0.1:{port}"),
        allow_http: true,
        timeout_seconds: 1,
        attempts,
        retry_delay_ms: 1,
        ..Default::default()
    };
    RemoteClient::new(&NodeRoot::new("/nonexistent"), &s).unwrap()
}

#[test]
fn an_answer_over_the_limit_is_no_transport_failure_and_not_retried() {
    let body = vec![b' '; (ANSWER_LIMIT + 1) as usize];
    let mut answer =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    answer.extend(body);
    let (port, accepted) = answering_listener(answer, false);
    let client = http_client(port, 3);
    let e = client.sign("csr-1", b"{}").unwrap_err();
    assert!(
        matches!(
            &e,
            RemoteError::Exchange {
                failure: Failure::AnswerTooLarge {
                    status: 200,
                    limit: ANSWER_LIMIT
                },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .ends_with("HTTP 200 but the answer is over the 1048576 bytes read"),
        "{e}"
    );
    assert!(e.transport_failure().is_none());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // The pass's breaker stays open: the next request is sent.
    let _ = client.sign("csr-2", b"{}").unwrap_err();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn an_answer_that_is_no_utf8_is_no_cfssl_json_not_a_transport_failure() {
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\xff\xfe{}".to_vec();
    let (port, accepted) = answering_listener(answer, false);
    let e = http_client(port, 3).sign("csr-1", b"{}").unwrap_err();
    assert!(
        matches!(
            &e,
            RemoteError::Exchange {
                failure: Failure::NotCfssl { status: 200 },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.transport_failure().is_none());
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn an_answer_cut_or_stalled_is_a_transport_failure() {
    // 10 bytes of the 1,000 said, then the connection closes, or stays silent.
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"success\"".to_vec();
    for hold in [false, true] {
        let (port, accepted) = answering_listener(answer.clone(), hold);
        let client = http_client(port, 2);
        let started = Instant::now();
        let e = client.sign("csr-1", b"{}").unwrap_err();
        assert!(
            matches!(
                &e,
                RemoteError::GaveUp {
                    last: Failure::ReadAnswer(_),
                    attempts: 2,
                    ..
                }
            ),
            "hold {hold}: {e:?}"
        );
        assert!(e.transport_failure().is_some(), "hold {hold}");
        assert!(started.elapsed() < StdDuration::from_secs(5), "hold {hold}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // The breaker: the pass's next request is not sent.
        let e = client.sign("csr-2", b"{}").unwrap_err();
        assert!(matches!(&e, RemoteError::DownThisPass { .. }), "{e:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}

//! The HTTP side of the remote CA: the cfssl endpoint, TLS roots and client
//! certificate, retries with backoff, and how a transport failure is classified. The
//! auth key is auth_key.rs, cfssl's wire types wire.rs; the HTTPS client and its
//! handshake stage are crate::net's.
//!
//! Time: a client is one pass's (one command's), shared by its targets. A server that
//! cannot be reached costs the pass one target's retries, not every target's: after a
//! sign request gave up on a transport failure the pass's other requests fail at once,
//! saying so. All requests of a pass wait on cfssl [`PASS_BUDGET`] at most in all, so
//! that a slow server leaves the pass time for the targets a local CA signs. A caller
//! with a deadline of its own (the signer service's Lease term) passes it, and no try
//! starts, nor lasts, past it.
//!
//! Transport: ureq 3 with rustls and the aws-lc-rs provider, given explicitly (ureq is
//! built without a provider of its own, so nothing falls back to ring). It is blocking
//! (the agent is a oneshot that makes a handful of POSTs: an async runtime plus reqwest
//! would triple the dependency tree for that), pure Rust TLS (no OpenSSL linkage),
//! actively maintained, and it supports what this needs: a custom root store, client
//! certificates, per-phase timeouts, no proxy, no redirects.

mod auth_key;
mod wire;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration as StdDuration, Instant};

use aws_lc_rs::hmac;
use base64::Engine;

use crate::config::remote::{RemoteSettings, RemoteSettingsError};
use crate::net::handshake::HandshakeTimedOut;
/// The HTTPS client factory, now `crate::net::https`, where it always was for callers.
pub use crate::net::https as tls;
use crate::node::NodeRoot;
use crate::pki::PkiError;
use auth_key::read_auth_key;
pub use auth_key::AuthKeyProblem;
use wire::CfsslResponse;
pub use wire::CfsslSignRequest;

/// Why the client could not be made or a sign request failed. Setup errors name the
/// file or the key of the cfssl table (`[ca.remote]` or a `[[signer]]`'s); exchange
/// errors name the cfssl URL. Never a key's content.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("[ca.remote] {0}")]
    Settings(#[from] RemoteSettingsError),
    #[error("{}: {problem}", path.display())]
    AuthKey {
        path: PathBuf,
        problem: AuthKeyProblem,
    },
    #[error("{}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Pem { path: PathBuf, source: PkiError },
    #[error("{}: no CERTIFICATE block", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not a PEM private key (client_key of the cfssl table)", path.display())]
    ClientKey { path: PathBuf },
    #[error(
        "no system root certificates found ({errors} errors); set the cfssl table's tls_ca_bundle"
    )]
    NoSystemRoots { errors: usize },
    /// One exchange failed in a way retrying cannot help.
    #[error("cfssl {url}: {failure}")]
    Exchange { url: String, failure: Failure },
    /// Every try failed transiently; `last` is the last try's failure.
    #[error("cfssl {url}: {last} (gave up after {attempts} attempts)")]
    GaveUp {
        url: String,
        last: Failure,
        attempts: u32,
    },
    /// The tries failed transiently and the time allowed ended before the next.
    #[error("cfssl {url}: {last} (stopped after {attempts} attempt(s): {why})")]
    OutOfTime {
        url: String,
        last: Failure,
        attempts: u32,
        why: String,
    },
    /// No time was left for a first try.
    #[error("cfssl {url}: not asked: {why}")]
    NoTimeLeft { url: String, why: String },
    /// An earlier request of this pass gave up on a transport failure: this one is not
    /// tried, so that a dead server costs the pass one target's retries.
    #[error("cfssl {url} unreachable earlier in this pass: {earlier}; not retried")]
    DownThisPass { url: String, earlier: Failure },
}

impl RemoteError {
    /// The transport failure that ended a sign request's tries, if one did: the server
    /// did not answer, not a refusal of this request.
    pub fn transport_failure(&self) -> Option<&Failure> {
        match self {
            RemoteError::GaveUp { last, .. } | RemoteError::OutOfTime { last, .. }
                if last.is_transport() =>
            {
                Some(last)
            }
            RemoteError::DownThisPass { earlier, .. } => Some(earlier),
            _ => None,
        }
    }
}

impl RemoteError {
    /// The cfssl client's words for a TLS file it cannot use.
    fn tls(e: tls::TlsFileError) -> Self {
        match e {
            tls::TlsFileError::Read { path, reason } => RemoteError::Read { path, reason },
            tls::TlsFileError::Pem { path, source } => RemoteError::Pem { path, source },
            tls::TlsFileError::NoCertificate { path } => RemoteError::NoCertificate { path },
            tls::TlsFileError::NotAKey { path } => RemoteError::ClientKey { path },
            tls::TlsFileError::ClientCertRefused { path, reason } => {
                RemoteError::Read { path, reason }
            }
        }
    }
}

/// How one exchange with cfssl failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("server unreachable: {0}")]
    Unreachable(String),
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("timed out ({0})")]
    Timeout(String),
    /// TCP connected but the server never finished the TLS handshake (an overloaded
    /// server, a port that is not TLS, a middlebox): not a connect timeout.
    #[error("TLS handshake with {authority} timed out after {seconds}s")]
    TlsHandshakeTimeout { authority: String, seconds: u64 },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Protocol(String),
    /// A 2xx answer whose body stalled or was cut: the server did not finish answering.
    #[error("reading the answer: {0}")]
    ReadAnswer(String),
    /// A 2xx answer over the size read: the server answered, with something not cfssl's.
    #[error("HTTP {status} but the answer is over the {limit} bytes read")]
    AnswerTooLarge { status: u16, limit: u64 },
    #[error("HTTP {status}{detail}")]
    Http { status: u16, detail: HttpDetail },
    #[error("HTTP {status} but the answer is not cfssl's JSON")]
    NotCfssl { status: u16 },
    #[error("refused: {0}")]
    Refused(String),
    #[error("success but no result.certificate in the answer")]
    NoCertificate,
    #[error("{0}")]
    Other(String),
}

impl Failure {
    /// The server was not reached, or did not answer in time: no HTTP answer at all, or
    /// one it did not finish. An answer too large or not cfssl's JSON is no transport
    /// failure: the server answered.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Failure::Unreachable(_)
                | Failure::Connection(_)
                | Failure::Timeout(_)
                | Failure::TlsHandshakeTimeout { .. }
                | Failure::Protocol(_)
                | Failure::ReadAnswer(_)
        )
    }
}

/// What follows `HTTP {status}` in a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpDetail {
    /// cfssl's own errors, with hints.
    Cfssl(String),
    Redirect,
    None,
}

impl fmt::Display for HttpDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpDetail::Cfssl(e) => write!(f, ": {e}"),
            HttpDetail::Redirect => {
                f.write_str(" (a redirect: redirects are not followed, configure the final URL)")
            }
            HttpDetail::None => Ok(()),
        }
    }
}

/// The most of an answer read: a signed certificate and cfssl's envelope are a few KiB.
const ANSWER_LIMIT: u64 = 1 << 20;

/// How long the sign requests of one client (one pass) may wait on cfssl in all: well
/// within the agent unit's TimeoutStartSec (30 min), whatever the cfssl table's
/// timeouts and attempts, so that the targets a local CA signs are still renewed.
pub const PASS_BUDGET: StdDuration = StdDuration::from_secs(600);

/// When a sign request must be over, and why (said when it cuts the tries short).
#[derive(Clone, Debug)]
pub struct Deadline {
    pub at: Instant,
    pub why: String,
}

/// What a pass's requests learnt of the server: its transport failure that made one
/// give up, and the time they spent waiting on it.
#[derive(Default)]
struct PassState {
    down: Option<Failure>,
    spent: StdDuration,
}

/// The HTTP side: one agent, the endpoint and the auth key, shared by every target of a
/// pass. The auth key is held only as an HMAC key and never printed.
pub struct RemoteClient {
    settings: RemoteSettings,
    agent: ureq::Agent,
    endpoint: String,
    auth_key: Option<hmac::Key>,
    pass: Mutex<PassState>,
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
    pub fn new(root: &NodeRoot, settings: &RemoteSettings) -> Result<Self, RemoteError> {
        settings.validate()?;
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
            Some(p) => tls::read_roots(root, p).map_err(RemoteError::tls)?,
            None if http => Vec::new(),
            None => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    return Err(RemoteError::NoSystemRoots {
                        errors: found.errors.len(),
                    });
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
                Some(tls::read_client_cert(root, c, k).map_err(RemoteError::tls)?)
            }
            _ => None,
        };
        let agent = tls::https_agent(
            roots,
            client_cert,
            &tls::AgentOptions {
                https_only: !http,
                connect_timeout_seconds: settings.connect_timeout_seconds,
                timeout_seconds: settings.timeout_seconds,
            },
        );
        Ok(RemoteClient {
            settings: settings.clone(),
            agent,
            endpoint,
            auth_key,
            pass: Mutex::new(PassState::default()),
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
                let token = hmac::sign(key, request);
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
    pub fn sign(&self, target: &str, request: &[u8]) -> Result<String, RemoteError> {
        self.sign_by(target, request, None)
    }

    /// [`sign`](Self::sign), over by `deadline` too: no try starts, nor lasts, past it.
    /// Fails at once when an earlier request of this client gave up on a transport
    /// failure, and when its [`PASS_BUDGET`] is spent.
    pub fn sign_by(
        &self,
        target: &str,
        request: &[u8],
        deadline: Option<Deadline>,
    ) -> Result<String, RemoteError> {
        let started = Instant::now();
        let budget_left = {
            let pass = self.pass();
            if let Some(earlier) = &pass.down {
                return Err(RemoteError::DownThisPass {
                    url: self.endpoint.clone(),
                    earlier: earlier.clone(),
                });
            }
            PASS_BUDGET.saturating_sub(pass.spent)
        };
        let budget = Deadline {
            at: started + budget_left,
            why: format!(
                "this pass waited on cfssl {} s in all, its most",
                PASS_BUDGET.as_secs()
            ),
        };
        let deadline = match deadline {
            Some(d) if d.at < budget.at => d,
            _ => budget,
        };
        let result = self.tries(target, &self.body(request), &deadline);
        let mut pass = self.pass();
        pass.spent += started.elapsed();
        if let Some(f) = result.as_ref().err().and_then(|e| e.transport_failure()) {
            pass.down = Some(f.clone());
        }
        result
    }

    fn pass(&self) -> MutexGuard<'_, PassState> {
        // A panic elsewhere while holding it leaves a state still worth reading.
        self.pass.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tries(&self, target: &str, body: &[u8], deadline: &Deadline) -> Result<String, RemoteError> {
        let attempts = self.settings.attempts.max(1);
        let url = || self.endpoint.clone();
        let out_of_time = |last: Option<Failure>, attempts: u32| match last {
            Some(last) => RemoteError::OutOfTime {
                url: url(),
                last,
                attempts,
                why: deadline.why.clone(),
            },
            None => RemoteError::NoTimeLeft {
                url: url(),
                why: deadline.why.clone(),
            },
        };
        let mut last = None;
        for attempt in 1..=attempts {
            let left = deadline.at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(out_of_time(last, attempt - 1));
            }
            match self.post_once(body, left) {
                Attempt::Done(pem) => return Ok(pem),
                Attempt::Fatal(failure) => {
                    return Err(RemoteError::Exchange {
                        url: url(),
                        failure,
                    })
                }
                Attempt::Transient(failure) => {
                    if attempt < attempts {
                        let wait = backoff(self.settings.retry_delay_ms, attempt);
                        if Instant::now() + wait >= deadline.at {
                            return Err(out_of_time(Some(failure), attempt));
                        }
                        tracing::warn!(
                            target_name = %target,
                            "cfssl {}: {failure}; attempt {attempt} of {attempts}, retrying in {} ms",
                            self.endpoint,
                            wait.as_millis()
                        );
                        std::thread::sleep(wait);
                    }
                    last = Some(failure);
                }
            }
        }
        Err(RemoteError::GaveUp {
            url: url(),
            // attempts >= 1 and every try that did not return was transient.
            last: last.unwrap_or(Failure::Other("no attempt made".into())),
            attempts,
        })
    }

    /// One try, over within `left` (the agent's timeout_seconds, or less).
    fn post_once(&self, body: &[u8], left: StdDuration) -> Attempt {
        let post = self.agent.post(&self.endpoint);
        let post = if left < StdDuration::from_secs(self.settings.timeout_seconds) {
            post.config().timeout_global(Some(left)).build()
        } else {
            post
        };
        let resp = post.header("Content-Type", "application/json").send(body);
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => {
                return match classify_transport(e) {
                    // The handshake stage names the agent's whole-request timeout when
                    // the request's was cut to `left`: the try lasted `left` at most.
                    Attempt::Transient(Failure::TlsHandshakeTimeout { authority, seconds }) => {
                        Attempt::Transient(Failure::TlsHandshakeTimeout {
                            authority,
                            seconds: seconds.min(left.as_secs_f64().ceil() as u64),
                        })
                    }
                    other => other,
                };
            }
        };
        let status = resp.status().as_u16();
        // Bytes, not a string: a body that is no UTF-8 is no cfssl JSON (NotCfssl below),
        // not a failure to read it.
        let body = match resp
            .body_mut()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_to_vec()
        {
            Ok(b) => b,
            Err(ureq::Error::BodyExceedsLimit(limit)) if status < 300 => {
                return Attempt::Fatal(Failure::AnswerTooLarge { status, limit })
            }
            // Stalled (a timeout) or cut (the connection closed early).
            Err(e) if status < 300 => {
                return Attempt::Transient(Failure::ReadAnswer(e.to_string()))
            }
            Err(_) => Vec::new(),
        };
        let parsed: Option<CfsslResponse> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let detail = match &parsed {
                Some(p) => HttpDetail::Cfssl(p.errors_text()),
                None if (300..400).contains(&status) => HttpDetail::Redirect,
                None => HttpDetail::None,
            };
            let failure = Failure::Http { status, detail };
            return if status >= 500 || status == 429 || status == 408 {
                Attempt::Transient(failure)
            } else {
                Attempt::Fatal(failure)
            };
        }
        let Some(parsed) = parsed else {
            return Attempt::Fatal(Failure::NotCfssl { status });
        };
        if !parsed.success {
            return Attempt::Fatal(Failure::Refused(parsed.errors_text()));
        }
        match parsed.result.and_then(|r| r.certificate) {
            Some(c) if !c.trim().is_empty() => Attempt::Done(c),
            _ => Attempt::Fatal(Failure::NoCertificate),
        }
    }
}

enum Attempt {
    Done(String),
    Transient(Failure),
    Fatal(Failure),
}

fn classify_transport(e: ureq::Error) -> Attempt {
    use ureq::Error as E;
    match e {
        E::Io(io) => {
            if let Some(h) = io
                .get_ref()
                .and_then(|x| x.downcast_ref::<HandshakeTimedOut>())
            {
                return Attempt::Transient(Failure::TlsHandshakeTimeout {
                    authority: h.authority.clone(),
                    seconds: h.seconds,
                });
            }
            // rustls reports certificate and handshake problems as InvalidData: retrying
            // cannot help, and the message says what the server presented.
            use std::io::ErrorKind as K;
            match io.kind() {
                K::InvalidData => Attempt::Fatal(Failure::Tls(io.to_string())),
                K::ConnectionRefused | K::NotFound | K::AddrNotAvailable => {
                    Attempt::Transient(Failure::Unreachable(io.to_string()))
                }
                _ => Attempt::Transient(Failure::Connection(io.to_string())),
            }
        }
        E::Timeout(t) => Attempt::Transient(Failure::Timeout(t.to_string())),
        E::ConnectionFailed | E::HostNotFound | E::BodyStalled => {
            Attempt::Transient(Failure::Unreachable(e.to_string()))
        }
        E::Protocol(_) => Attempt::Transient(Failure::Protocol(e.to_string())),
        E::Tls(_) | E::Rustls(_) | E::Pem(_) | E::TlsRequired => {
            Attempt::Fatal(Failure::Tls(e.to_string()))
        }
        other => Attempt::Fatal(Failure::Other(other.to_string())),
    }
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, times a random factor in
/// [0.5, 1.5), at most 30 s.
fn backoff(base_ms: u64, attempt: u32) -> StdDuration {
    use aws_lc_rs::rand::SecureRandom;
    let exp = base_ms.saturating_mul(1u64 << (attempt.saturating_sub(1)).min(16));
    let mut b = [0u8; 2];
    // Without randomness the factor is 1: the backoff still grows, only in step.
    let r = aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .map(|_| u16::from_be_bytes(b))
        .unwrap_or(u16::MAX / 2);
    let factor = 0.5 + f64::from(r) / f64::from(u16::MAX);
    StdDuration::from_millis(((exp as f64 * factor) as u64).min(30_000))
}

#[cfg(test)]
pub(crate) mod tests;

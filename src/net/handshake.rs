//! The TLS stage of the connector chain, wrapped so that a handshake that hangs is told
//! apart from a TCP connect that hangs.

use std::io;

use ureq::unversioned::transport::{ConnectionDetails, Connector, RustlsConnector, Transport};

/// ureq's TLS stage, wrapped: ureq counts the handshake into its connect timeout and
/// reports both the same way, but "the server accepts and never speaks TLS" needs
/// another fix than "nothing answers at that address".
#[derive(Debug)]
pub(super) struct TlsStage {
    pub inner: RustlsConnector,
    pub connect_timeout_seconds: u64,
    pub timeout_seconds: u64,
}

/// The marker a `TlsStage` puts in the `io::Error` it returns (ureq's error type has
/// no variant of its own for it), found again by `classify_transport`.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {authority} timed out after {seconds}s")]
pub struct HandshakeTimedOut {
    pub authority: String,
    pub seconds: u64,
}

impl<In: Transport> Connector<In> for TlsStage {
    type Out = <RustlsConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        // Only a transport the TCP stage produced gets here with TLS still to do.
        let handshaking = details.needs_tls() && chained.as_ref().is_some_and(|t| !t.is_tls());
        match self.inner.connect(details, chained) {
            Err(e) if handshaking => {
                let seconds = match &e {
                    ureq::Error::Timeout(ureq::Timeout::Global) => self.timeout_seconds,
                    ureq::Error::Timeout(_) => self.connect_timeout_seconds,
                    ureq::Error::Io(io)
                        if matches!(
                            io.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        ) =>
                    {
                        self.connect_timeout_seconds
                    }
                    _ => return Err(e),
                };
                let uri = details.uri;
                let authority = format!(
                    "{}:{}",
                    uri.host().unwrap_or_default(),
                    uri.port_u16().unwrap_or(443)
                );
                Err(ureq::Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    HandshakeTimedOut { authority, seconds },
                )))
            }
            other => other,
        }
    }
}

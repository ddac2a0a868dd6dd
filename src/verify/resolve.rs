//! Where a probe connects: the addresses of an endpoint's host, never past the probe's
//! deadline.
//!
//! The host comes from a component's flags (`--advertise-address`, etcd's
//! `--listen-client-urls`): kubeadm writes IP addresses there, and `localhost` is common
//! in hand-made ones. Both are taken as they are, asking nobody. Any other name goes to
//! the system resolver, whose `getaddrinfo` has no timeout of its own (a dead DNS server
//! holds it for the resolver's retries): it runs on a helper thread and is given up at
//! the deadline, the probe failing as a timeout. The thread ends by itself when the
//! resolver answers; nothing waits for it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Endpoint, VerifyError};

/// A resolver: a host name and port to addresses (the system's, or a test's).
pub type Lookup = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// The system resolver.
pub fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// The addresses of `ep`: an IP literal or `localhost` at once, any other name through
/// `lookup` within `deadline` (`timeout` is the probe's, named in its error).
pub fn addresses(
    ep: &Endpoint,
    deadline: Instant,
    timeout: Duration,
    lookup: Lookup,
) -> Result<Vec<SocketAddr>, VerifyError> {
    if let Ok(ip) = ep.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, ep.port)]);
    }
    if ep.host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), ep.port),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), ep.port),
        ]);
    }
    let timed_out = || VerifyError::Timeout {
        endpoint: ep.to_string(),
        timeout,
    };
    let wait = deadline.saturating_duration_since(Instant::now());
    if wait.is_zero() {
        return Err(timed_out());
    }
    let (tx, rx) = mpsc::channel();
    let (host, port) = (ep.host.clone(), ep.port);
    std::thread::Builder::new()
        .name("probe-resolve".into())
        .spawn(move || {
            // The probe may have given up: nobody to tell then.
            let _ = tx.send(lookup(&host, port));
        })
        .map_err(|source| VerifyError::Connect {
            endpoint: ep.to_string(),
            source,
        })?;
    match rx.recv_timeout(wait) {
        Ok(found) => found.map_err(|source| VerifyError::Connect {
            endpoint: ep.to_string(),
            source,
        }),
        Err(_) => Err(timed_out()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Check;

    fn ep(host: &str) -> Endpoint {
        Endpoint {
            host: host.into(),
            port: 6443,
            check: Check::Healthz,
        }
    }

    fn never(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        panic!("no resolver may be asked for an IP literal or localhost")
    }

    fn hangs(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_secs(30));
        Ok(Vec::new())
    }

    fn answers(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new(
            Ipv4Addr::new(10, 0, 0, 1).into(),
            port,
        )])
    }

    #[test]
    fn literals_and_localhost_ask_no_resolver() {
        let far = Instant::now() + Duration::from_secs(5);
        let t = Duration::from_secs(5);
        let got = addresses(&ep("10.1.2.3"), far, t, never).unwrap();
        assert_eq!(got, ["10.1.2.3:6443".parse().unwrap()]);
        let got = addresses(&ep("fd00::1"), far, t, never).unwrap();
        assert_eq!(got, ["[fd00::1]:6443".parse().unwrap()]);
        let got = addresses(&ep("LocalHost"), far, t, never).unwrap();
        assert_eq!(got[0], "127.0.0.1:6443".parse().unwrap());
    }

    /// A resolver that does not answer costs the probe its deadline, no more.
    #[test]
    fn a_name_resolves_within_the_deadline_or_times_out() {
        let t = Duration::from_millis(200);
        let started = Instant::now();
        let e = addresses(&ep("cp.example"), started + t, t, hangs).unwrap_err();
        assert!(matches!(e, VerifyError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let far = Instant::now() + Duration::from_secs(5);
        let got = addresses(&ep("cp.example"), far, t, answers).unwrap();
        assert_eq!(got, ["10.0.0.1:6443".parse().unwrap()]);
    }
}

//! A certificate's DNS and IP subject alternative names, for asking whether it still
//! names what it must (kubelet.crt and the node's addresses).

use std::fmt;
use std::net::IpAddr;

use der::oid::AssociatedOid;
use der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

use super::PkiError;

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

/// One name of a SubjectAltName extension as a [`San`] (the one reading of SANs: the
/// cfssl requests, the certificates API's checks and kubelet.crt's names alike).
pub fn san_of(g: &GeneralName) -> San {
    match g {
        GeneralName::DnsName(s) => San::Dns(s.to_string()),
        GeneralName::Rfc822Name(s) => San::Email(s.to_string()),
        GeneralName::UniformResourceIdentifier(s) => San::Uri(s.to_string()),
        GeneralName::IpAddress(o) => {
            let b = o.as_bytes();
            if let Ok(v4) = <[u8; 4]>::try_from(b) {
                San::Ip(IpAddr::from(v4))
            } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
                let v6 = std::net::Ipv6Addr::from(v6);
                // Go writes IPv4 addresses as 4 bytes; an IPv4-mapped one is the same host.
                match v6.to_ipv4_mapped() {
                    Some(v4) => San::Ip(IpAddr::V4(v4)),
                    None => San::Ip(IpAddr::V6(v6)),
                }
            } else {
                San::Other(format!("IP:<{} bytes>", b.len()))
            }
        }
        GeneralName::OtherName(o) => San::Other(format!("otherName:{}", o.type_id)),
        GeneralName::DirectoryName(n) => San::Other(format!("dirName:{n}")),
        GeneralName::RegisteredId(o) => San::Other(format!("RID:{o}")),
        GeneralName::EdiPartyName(_) => San::Other("ediPartyName".into()),
    }
}

/// DNS names (lower-case) and IP addresses (an IPv4-mapped IPv6 one as IPv4, as Go
/// writes it), each once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AltNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl AltNames {
    pub fn add_dns(&mut self, name: &str) {
        let name = name.trim().to_lowercase();
        if !name.is_empty() && !self.dns.contains(&name) {
            self.dns.push(name);
        }
    }

    pub fn add_ip(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// The names of `wanted` that these lack, in `wanted`'s order: `DNS:x`, `IP:y`.
    pub fn missing(&self, wanted: &AltNames) -> Vec<String> {
        let dns = wanted
            .dns
            .iter()
            .filter(|d| !self.dns.contains(d))
            .map(|d| format!("DNS:{d}"));
        let ips = wanted
            .ips
            .iter()
            .filter(|ip| !self.ips.contains(&ip.to_canonical()))
            .map(|ip| format!("IP:{ip}"));
        dns.chain(ips).collect()
    }
}

/// The DNS and IP SANs of the certificate `der` (none without the extension).
pub fn alt_names(der: &[u8]) -> Result<AltNames, PkiError> {
    let cert = Certificate::from_der(der).map_err(PkiError::MalformedCertificate)?;
    let mut out = AltNames::default();
    for x in cert.tbs_certificate.extensions.iter().flatten() {
        if x.extn_id != SubjectAltName::OID {
            continue;
        }
        let san = SubjectAltName::from_der(x.extn_value.as_bytes()).map_err(|source| {
            PkiError::MalformedExtension {
                oid: x.extn_id,
                source,
            }
        })?;
        for g in &san.0 {
            match san_of(g) {
                San::Dns(d) => out.add_dns(&d),
                San::Ip(ip) => out.add_ip(ip),
                _ => {}
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn what_is_missing_of_the_wanted_names() {
        let mut have = AltNames::default();
        have.add_dns("Node-1");
        have.add_dns("node-1");
        have.add_ip(ip("::ffff:10.0.0.5"));
        assert_eq!(have.dns, ["node-1"]);
        assert_eq!(have.ips, [ip("10.0.0.5")]);
        let mut want = AltNames::default();
        want.add_dns("node-1");
        want.add_ip(ip("10.0.0.5"));
        assert!(have.missing(&want).is_empty());
        want.add_dns("node-1.example");
        want.add_ip(ip("10.0.0.6"));
        assert_eq!(have.missing(&want), ["DNS:node-1.example", "IP:10.0.0.6"]);
        assert!(alt_names(b"not DER").is_err());
    }
}

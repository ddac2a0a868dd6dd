//! What the kubelet-serving approver accepts beyond a node's own name and addresses
//! (`[csr] kubelet_serving_dns_patterns`, `kubelet_serving_ip_prefixes`): DNS name
//! patterns and IP prefixes, parsed once, at configuration load, so a typo is an error
//! naming the key rather than a CSR denied later.

use std::net::IpAddr;

use super::InvalidValue;

/// A DNS name pattern, by labels: `*` matches exactly one label (never none, never
/// several, never part of one), `{node}` the requesting node's name (all its labels),
/// anything else the label itself. Compared without regard to case, as DNS does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsPattern {
    labels: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Any,
    Node,
    Label(String),
}

impl DnsPattern {
    fn parse(s: &str) -> Result<DnsPattern, String> {
        if s.len() > 253 {
            return Err("is longer than a DNS name (253 characters)".into());
        }
        let mut labels = Vec::new();
        for l in s.split('.') {
            labels.push(match l {
                "*" => Part::Any,
                "{node}" => Part::Node,
                l if is_label(l) => Part::Label(l.to_ascii_lowercase()),
                l => {
                    return Err(format!(
                        "label {l:?} is none of: '*' (one label), '{{node}}' (the node's name), a DNS label (letters, digits, '-', at most 63)"
                    ))
                }
            });
        }
        if !labels.iter().any(|p| matches!(p, Part::Label(_))) {
            // "*" or "*.*" would let a node serve under names it does not own.
            return Err("must hold at least one literal label (a domain of yours)".into());
        }
        Ok(DnsPattern { labels })
    }

    /// Whether `name` matches for the node `node`: `{node}` expanded to the node's
    /// labels, then label against label.
    pub fn matches(&self, name: &str, node: &str) -> bool {
        let node = node.to_ascii_lowercase();
        let mut want: Vec<Option<&str>> = Vec::new();
        for part in &self.labels {
            match part {
                Part::Any => want.push(None),
                Part::Label(l) => want.push(Some(l)),
                Part::Node if node.is_empty() => return false,
                Part::Node => want.extend(node.split('.').map(Some)),
            }
        }
        let name = name.to_ascii_lowercase();
        let got: Vec<&str> = name.split('.').collect();
        got.len() == want.len()
            && got.iter().zip(&want).all(|(g, w)| match w {
                // One real label: never a literal `*` (a wildcard SAN would cover every
                // other node's name) nor anything a DNS label cannot hold.
                None => is_label(g),
                Some(l) => g == l,
            })
    }
}

/// A DNS label as a name a certificate may carry: letters, digits and '-', 1 to 63,
/// not starting or ending with '-'.
fn is_label(l: &str) -> bool {
    // One DNS label, in any case (a SAN's case does not matter): the shared name check.
    crate::model::is_dns1123_name(&l.to_ascii_lowercase(), 63)
}

/// An IP prefix in CIDR form (`10.0.0.0/8`, `fd00::/8`), without host bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPrefix {
    network: IpAddr,
    len: u8,
}

impl IpPrefix {
    fn parse(s: &str) -> Result<IpPrefix, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or("is not in CIDR form ADDRESS/LENGTH (10.0.0.0/8, fd00::/8)")?;
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("the prefix length {len:?} is not 0 to {max}"))?;
        let p = IpPrefix { network, len };
        if !p.contains(&network) || mask(network, len) != bits(network) {
            return Err(format!(
                "has host bits set beyond /{len}: the network is {}/{len}",
                unbits(network, mask(network, len))
            ));
        }
        Ok(p)
    }

    /// Whether `ip` is in the prefix (an IPv4 address never in an IPv6 prefix).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4()
            && mask(*ip, self.len) == mask(self.network, self.len)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn unbits(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(v)),
    }
}

/// The address's bits with all but the first `len` cleared.
fn mask(ip: IpAddr, len: u8) -> u128 {
    let width = if ip.is_ipv4() { 32 } else { 128 };
    let host = u32::from(width - len.min(width));
    let keep = u128::MAX.checked_shl(host).unwrap_or(0);
    bits(ip) & keep
}

/// The approver's rules beyond the node's own name and addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SanRules {
    pub dns_patterns: Vec<DnsPattern>,
    pub ip_prefixes: Vec<IpPrefix>,
}

impl SanRules {
    /// Parses the two keys' values; an error names the key and the value.
    pub fn parse(dns: &[String], ip: &[String]) -> Result<SanRules, InvalidValue> {
        let dns_patterns = dns
            .iter()
            .map(|p| {
                DnsPattern::parse(p)
                    .map_err(|e| InvalidValue::new("csr.kubelet_serving_dns_patterns", p, e))
            })
            .collect::<Result<_, _>>()?;
        let ip_prefixes = ip
            .iter()
            .map(|p| {
                IpPrefix::parse(p)
                    .map_err(|e| InvalidValue::new("csr.kubelet_serving_ip_prefixes", p, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(SanRules {
            dns_patterns,
            ip_prefixes,
        })
    }

    pub fn dns_allowed(&self, name: &str, node: &str) -> bool {
        self.dns_patterns.iter().any(|p| p.matches(name, node))
    }

    pub fn ip_allowed(&self, ip: &IpAddr) -> bool {
        self.ip_prefixes.iter().any(|p| p.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DnsPattern {
        DnsPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_star_is_exactly_one_label() {
        let pat = p("*.nodes.example.internal");
        assert!(pat.matches("n1.nodes.example.internal", "n1"));
        assert!(pat.matches("N1.Nodes.Example.Internal", "n1"));
        assert!(pat.matches("other.nodes.example.internal", "n1"));
        assert!(!pat.matches("a.b.nodes.example.internal", "n1"));
        assert!(!pat.matches("nodes.example.internal", "n1"));
        assert!(!pat.matches(".nodes.example.internal", "n1"));
        assert!(!pat.matches("n1.nodes.example.internal.evil", "n1"));
        assert!(!pat.matches("n1.xnodes.example.internal", "n1"));
        // A wildcard SAN would cover every other node's name: never matched by `*`.
        assert!(!pat.matches("*.nodes.example.internal", "n1"));
        assert!(!pat.matches("n_1.nodes.example.internal", "n1"));
        let mid = p("api.*.example.com");
        assert!(mid.matches("api.eu.example.com", "n1"));
        assert!(!mid.matches("api.example.com", "n1"));
        assert!(p("host.*").matches("host.lan", "n1"));
        assert!(!p("host.*").matches("host.lan.x", "n1"));
        assert!(!p("host.*").matches("host.", "n1"));
    }

    #[test]
    fn node_is_the_requesting_nodes_name() {
        let pat = p("{node}.nodes.example.internal");
        assert!(pat.matches("n1.nodes.example.internal", "n1"));
        assert!(!pat.matches("n2.nodes.example.internal", "n1"));
        // A node name with dots fills as many labels.
        assert!(pat.matches("n1.rack2.nodes.example.internal", "n1.rack2"));
        assert!(!pat.matches("n1.nodes.example.internal", ""));
        assert!(p("{node}.*.example.com").matches("n1.eu.example.com", "n1"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "*",
            "*.*",
            "{node}",
            "a..b",
            "*.exa mple.com",
            "x*.example.com",
            "-a.example.com",
            "{nodes}.example.com",
            "a_b.example.com",
        ] {
            assert!(DnsPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DnsPattern::parse(&"a.".repeat(130)).is_err());
    }

    #[test]
    fn prefixes_hold_their_addresses_only() {
        let v4 = IpPrefix::parse("10.0.0.0/8").unwrap();
        assert!(v4.contains(&"10.1.2.3".parse().unwrap()));
        assert!(!v4.contains(&"11.0.0.1".parse().unwrap()));
        assert!(!v4.contains(&"::ffff:10.0.0.1".parse().unwrap()));
        let v6 = IpPrefix::parse("fd00::/8").unwrap();
        assert!(v6.contains(&"fd12::1".parse().unwrap()));
        assert!(!v6.contains(&"fe80::1".parse().unwrap()));
        assert!(!v6.contains(&"10.0.0.1".parse().unwrap()));
        let host = IpPrefix::parse("192.0.2.7/32").unwrap();
        assert!(host.contains(&"192.0.2.7".parse().unwrap()));
        assert!(!host.contains(&"192.0.2.8".parse().unwrap()));
        assert!(IpPrefix::parse("0.0.0.0/0")
            .unwrap()
            .contains(&"203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_reason() {
        let e = |s: &str| IpPrefix::parse(s).unwrap_err();
        assert!(e("10.0.0.0").contains("CIDR"));
        assert!(e("10.0.0/8").contains("not an IPv4"));
        assert!(e("10.0.0.0/33").contains("0 to 32"));
        assert!(e("fd00::/129").contains("0 to 128"));
        assert!(e("10.0.0.0/x").contains("prefix length"));
        assert_eq!(
            e("10.1.0.0/8"),
            "has host bits set beyond /8: the network is 10.0.0.0/8"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = SanRules::parse(&["*".into()], &[]).unwrap_err();
        assert_eq!(err.key, "csr.kubelet_serving_dns_patterns");
        assert_eq!(err.value, "\"*\"");
        let err = SanRules::parse(&[], &["10.0.0.0/8".into(), "fd00::/200".into()]).unwrap_err();
        assert_eq!(err.key, "csr.kubelet_serving_ip_prefixes");
        assert!(err.to_string().contains("fd00::/200"));
        assert_eq!(SanRules::parse(&[], &[]).unwrap(), SanRules::default());
    }
}

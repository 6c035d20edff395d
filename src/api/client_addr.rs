//! The client address used for token IP restrictions: the TCP peer, or, only when the peer is
//! a trusted reverse proxy (`--trusted-proxies`), the rightmost address of `X-Forwarded-For`
//! that is not itself a trusted proxy. Anything left of that is what the client claimed and
//! is never believed. Pure: given/when/then tests below.

use std::net::IpAddr;

/// An address range: an address and a prefix length within its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128` or a bare address (a range of one).
    pub fn parse(text: &str) -> Option<Self> {
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => (address.trim(), Some(bits.trim())),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().ok()?;
        let width = if network.is_ipv4() { 32 } else { 128 };
        let prefix_bits = match bits {
            None => width,
            Some(bits) => bits.parse().ok().filter(|b| *b <= width)?,
        };
        Some(Self { network, prefix_bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_bits)).unwrap_or(0);
                u32::from(ip) & mask == u32::from(net) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_bits)).unwrap_or(0);
                u128::from(ip) & mask == u128::from(net) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, a dual-stack listener's peer) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The reverse proxies whose `X-Forwarded-For` is believed. Empty by default: the peer is
/// the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// A comma-separated list of addresses and CIDR ranges.
    ///
    /// # Errors
    /// The first entry that is neither.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| Cidr::parse(entry).ok_or_else(|| entry.to_owned()))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client address for a request from `peer` carrying these `X-Forwarded-For` header
    /// values (in header order). Walks the forwarded chain from the right while each hop is a
    /// trusted proxy; the first untrusted address is the client. An entry that is no address
    /// stops the walk at the last trusted hop (its proxy is then taken as the client, which
    /// fails closed for IP restrictions).
    pub fn client_ip<'a>(&self, peer: IpAddr, forwarded_for: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let chain: Vec<&str> = forwarded_for.into_iter().flat_map(|value| value.split(',')).map(str::trim).collect();
        let mut client = peer;
        for hop in chain.iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn given_no_trusted_proxies_when_forwarded_for_is_sent_then_the_peer_is_the_client() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.0.0.1"), ["203.0.113.7"]), ip("10.0.0.1"));
    }

    #[test]
    fn given_a_trusted_proxy_when_it_forwards_then_the_rightmost_untrusted_address_is_the_client() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap();
        // The client claimed 1.1.1.1; the outer proxy saw 203.0.113.7; the inner one 10.0.0.2.
        let chain = ["1.1.1.1, 203.0.113.7", "10.0.0.2"];
        assert_eq!(proxies.client_ip(ip("192.168.1.1"), chain), ip("203.0.113.7"));
        assert_eq!(proxies.client_ip(ip("10.9.9.9"), ["203.0.113.7:5555"]), ip("203.0.113.7"));
    }

    #[test]
    fn given_an_untrusted_peer_when_it_sends_forwarded_for_then_it_is_ignored() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(proxies.client_ip(ip("198.51.100.1"), ["203.0.113.7"]), ip("198.51.100.1"));
    }

    #[test]
    fn given_a_trusted_peer_when_the_header_is_missing_or_garbage_then_the_last_trusted_hop_is_used() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), []), ip("10.0.0.1"));
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), ["203.0.113.7, nonsense"]), ip("10.0.0.1"));
        assert_eq!(proxies.client_ip(ip("10.0.0.1"), ["10.0.0.5"]), ip("10.0.0.5"));
    }

    #[test]
    fn given_mapped_addresses_then_they_compare_as_ipv4() {
        let proxies = TrustedProxies::parse("127.0.0.1").unwrap();
        assert_eq!(proxies.client_ip(ip("::ffff:127.0.0.1"), ["::ffff:203.0.113.7"]), ip("203.0.113.7"));
    }

    #[test]
    fn lists_are_checked() {
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert_eq!(TrustedProxies::parse("10.0.0.0/33"), Err("10.0.0.0/33".to_owned()));
        assert_eq!(TrustedProxies::parse("10.0.0.1,proxy"), Err("proxy".to_owned()));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(!Cidr::parse("::/0").unwrap().contains(ip("1.2.3.4")));
    }
}

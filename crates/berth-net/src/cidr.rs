//! [`Ipv4Cidr`]: an IPv4 network in CIDR notation, a thin layer over [`ipnet::Ipv4Net`] that keeps
//! the host bits cleared so equal networks compare equal.

use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// An IPv4 network in CIDR notation (`10.88.0.0/16`), always stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr(Ipv4Net);

/// Why a CIDR did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IPv4 CIDR like 10.88.0.0/16")]
pub struct CidrParseError(String);

impl Ipv4Cidr {
    /// The network `addr/prefix` (host bits cleared); `None` for a prefix over 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        Ipv4Net::new(addr, prefix).ok().map(|n| Ipv4Cidr(n.trunc()))
    }

    /// The network address (the first address).
    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    /// The broadcast address (the last address).
    pub fn broadcast(&self) -> Ipv4Addr {
        self.0.broadcast()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether `addr` lies in this network.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.0.contains(&addr)
    }

    /// Whether the two networks share any address (for networks: one contains the other).
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.0.contains(&other.0) || other.0.contains(&self.0)
    }

    /// The `n`-th address of the network (0 is the network address), if the network has it.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let addr = u32::from(self.network()).checked_add(n)?;
        (addr <= u32::from(self.broadcast())).then(|| Ipv4Addr::from(addr))
    }

    /// The subnets of length `prefix` inside this network, in address order; none when `prefix`
    /// is shorter than this network's or longer than 32.
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Ipv4Cidr> {
        self.0.subnets(prefix).into_iter().flatten().map(Ipv4Cidr)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    /// Parses `a.b.c.d/len` (any prefix 0..=32); host bits are cleared.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<Ipv4Net>()
            .map(|n| Ipv4Cidr(n.trunc()))
            .map_err(|_| CidrParseError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(cidr("10.88.3.7/16").to_string(), "10.88.0.0/16");
        assert!("10.88.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.88.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("ten/8".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn contains_nth_and_subnets() {
        let net = cidr("10.99.0.0/29");
        assert!(net.contains(Ipv4Addr::new(10, 99, 0, 7)));
        assert!(!net.contains(Ipv4Addr::new(10, 99, 0, 8)));
        assert_eq!(net.nth(0), Some(Ipv4Addr::new(10, 99, 0, 0)));
        assert_eq!(net.nth(7), Some(Ipv4Addr::new(10, 99, 0, 7)));
        assert_eq!(net.nth(8), None);
        let subs: Vec<String> = net.subnets(30).map(|c| c.to_string()).collect();
        assert_eq!(subs, ["10.99.0.0/30", "10.99.0.4/30"]);
        assert_eq!(
            net.subnets(28).count(),
            0,
            "a subnet larger than the network"
        );
        assert_eq!(net.subnets(33).count(), 0);
        assert!(net.overlaps(&cidr("10.99.0.4/30")) && cidr("10.0.0.0/8").overlaps(&net));
        assert!(!net.overlaps(&cidr("10.99.0.8/29")));
    }
}

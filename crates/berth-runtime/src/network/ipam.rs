//! host-local style IP allocation: one file per allocated address, created with O_EXCL and
//! holding the owner's id, so concurrent allocations (even across restarts) never collide.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// An IPv4 pod CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length (8..=30).
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/len`.
    pub fn parse(s: &str) -> Option<Self> {
        let (ip, len) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = len.parse().ok()?;
        if !(8..=30).contains(&prefix) {
            return None;
        }
        let mask = u32::MAX << (32 - prefix);
        Some(Self {
            network: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    /// The gateway (bridge) address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Host addresses available to pods (after the gateway, before broadcast).
    fn pod_range(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix);
        (base + 2..base + size - 1).map(Ipv4Addr::from)
    }
}

/// Allocations under one directory.
pub struct Ipam {
    dir: PathBuf,
    cidr: Cidr,
}

impl Ipam {
    /// Opens (creating) the allocation dir for `cidr`.
    pub fn open(dir: &Path, cidr: Cidr) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cidr,
        })
    }

    /// Allocates the first free address for `owner`.
    pub fn allocate(&self, owner: &str) -> io::Result<Ipv4Addr> {
        for ip in self.cidr.pod_range() {
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes())?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "no free address in {}/{}",
            self.cidr.network, self.cidr.prefix
        )))
    }

    /// Releases `ip` if `owner` holds it (missing is fine).
    pub fn release(&self, ip: Ipv4Addr, owner: &str) -> io::Result<()> {
        let path = self.dir.join(ip.to_string());
        match std::fs::read_to_string(&path) {
            Ok(o) if o == owner => std::fs::remove_file(&path),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_distinct_addresses_and_reuses_released_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let cidr = Cidr::parse("10.99.0.7/29").expect("cidr");
        assert_eq!(cidr.network, Ipv4Addr::new(10, 99, 0, 0));
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 99, 0, 1));
        let ipam = Ipam::open(dir.path(), cidr).expect("ipam");
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| ipam.allocate(&format!("s{i}")).expect("alloc"))
            .collect();
        assert_eq!(got.first(), Some(&Ipv4Addr::new(10, 99, 0, 2)));
        assert_eq!(got.last(), Some(&Ipv4Addr::new(10, 99, 0, 6)));
        assert!(
            ipam.allocate("full").is_err(),
            "broadcast is never handed out"
        );
        ipam.release(got[1], "someone-else").expect("release");
        assert!(ipam.allocate("x").is_err(), "only the owner releases");
        ipam.release(got[1], "s1").expect("release");
        assert_eq!(ipam.allocate("y").expect("realloc"), got[1]);
        assert!(Cidr::parse("10.0.0.0/31").is_none() && Cidr::parse("nonsense").is_none());
    }
}

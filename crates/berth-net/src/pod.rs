//! Pod addresses within a node's pod CIDR, and the host-local style allocator that hands them out.
//!
//! In a pod CIDR the network address is reserved, the first host address is the gateway (the
//! bridge), and the broadcast address is never handed out; pods get everything in between. The
//! allocator keeps one file per allocated address, created with O_EXCL and holding the owner's
//! id, so concurrent allocations (even across restarts) never collide.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::Ipv4Cidr;

/// Prefix lengths a pod CIDR may have: /30 is the smallest with a gateway and one pod address.
pub const POD_PREFIXES: RangeInclusive<u8> = 8..=30;

impl Ipv4Cidr {
    /// Parses a pod CIDR `a.b.c.d/len` (host bits cleared); `None` unless the prefix is in
    /// [`POD_PREFIXES`].
    pub fn parse_pod_cidr(s: &str) -> Option<Self> {
        let cidr: Ipv4Cidr = s.parse().ok()?;
        POD_PREFIXES.contains(&cidr.prefix()).then_some(cidr)
    }

    /// The gateway (bridge) address of a pod CIDR: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).saturating_add(1))
    }

    /// The addresses pods get: after the gateway, before the broadcast address.
    pub fn pod_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = u32::from(self.network()).saturating_add(2);
        (first..u32::from(self.broadcast())).map(Ipv4Addr::from)
    }
}

/// Pod IP allocations of one pod CIDR, one file per address under one directory.
pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Cidr,
}

impl Ipam {
    /// Opens (creating) the allocation dir for `cidr`.
    pub fn open(dir: &Path, cidr: Ipv4Cidr) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cidr,
        })
    }

    /// Allocates the first free pod address for `owner`.
    pub fn allocate(&self, owner: &str) -> io::Result<Ipv4Addr> {
        for ip in self.cidr.pod_addresses() {
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
            "no free address in {}",
            self.cidr
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
        let cidr = Ipv4Cidr::parse_pod_cidr("10.99.0.7/29").expect("cidr");
        assert_eq!(cidr.network(), Ipv4Addr::new(10, 99, 0, 0));
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
        assert!(
            Ipv4Cidr::parse_pod_cidr("10.0.0.0/31").is_none()
                && Ipv4Cidr::parse_pod_cidr("nonsense").is_none()
        );
    }
}

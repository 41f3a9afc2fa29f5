//! Pod networking: a Linux bridge with the gateway address, one veth pair per sandbox (host end
//! on the bridge, pod end eth0 in the sandbox netns) and IPAM. Links, addresses and routes are
//! set over rtnetlink in-process ([`netlink`] for the pod's veth, [`berth_net::netlink`] for the
//! rest): no `ip` processes on the pod start path.

pub mod hostport;
pub mod ipam;
pub mod netlink;

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

pub use ipam::{Cidr, Ipam};

/// Pod network settings.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Bridge name.
    pub bridge: String,
    /// Pod CIDR.
    pub cidr: Cidr,
}

/// The bridge network of one runtime.
pub struct Network {
    config: NetworkConfig,
    ipam: Ipam,
}

/// The host-side veth name of a sandbox (interface names are at most 15 bytes).
pub fn host_veth(sandbox_id: &str) -> String {
    format!("veth{}", &sandbox_id[..sandbox_id.len().min(11)])
}

impl Network {
    /// Opens IPAM under `dir` and makes sure the bridge exists, is up and has the gateway.
    pub fn open(dir: &Path, config: NetworkConfig) -> io::Result<Self> {
        let ipam = Ipam::open(
            &dir.join(format!(
                "{}-{}",
                config.cidr.network(),
                config.cidr.prefix()
            )),
            config.cidr,
        )?;
        let net = Self { config, ipam };
        net.ensure_bridge()?;
        Ok(net)
    }

    /// The bridge and CIDR this network uses.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    fn ensure_bridge(&self) -> io::Result<()> {
        let cidr = self.config.cidr;
        berth_net::netlink::ensure_bridge(&self.config.bridge, cidr.gateway(), cidr.prefix())?;
        // Pods reach beyond the node through the host's routing.
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        Ok(())
    }

    /// Gives the sandbox netns an eth0 on the bridge with a fresh address; returns it.
    pub fn attach(&self, sandbox_id: &str, netns: &Path) -> io::Result<Ipv4Addr> {
        let addr = self.ipam.allocate(sandbox_id)?;
        if let Err(e) = self.attach_with(sandbox_id, netns, addr) {
            let _ = self.detach(sandbox_id, Some(addr));
            return Err(e);
        }
        Ok(addr)
    }

    fn attach_with(&self, sandbox_id: &str, netns: &Path, addr: Ipv4Addr) -> io::Result<()> {
        let veth = host_veth(sandbox_id);
        let link = netlink::PodLink {
            host_name: &veth,
            bridge: &self.config.bridge,
            addr,
            prefix: self.config.cidr.prefix(),
            gateway: self.config.cidr.gateway(),
        };
        netlink::add_pod_veth(netns, link)
    }

    /// Removes the sandbox's veth and releases its address. Idempotent.
    pub fn detach(&self, sandbox_id: &str, addr: Option<Ipv4Addr>) -> io::Result<()> {
        let veth = host_veth(sandbox_id);
        // Not a sysfs check: /sys/class/net shows the netns sysfs was mounted in, which is not
        // ours when the runtime runs in a private netns (as tests do).
        berth_net::netlink::delete_link(&veth)?;
        if let Some(a) = addr {
            self.ipam.release(a, sandbox_id)?;
        }
        Ok(())
    }
}

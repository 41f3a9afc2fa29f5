//! Pod networking: a Linux bridge with the gateway address, one veth pair per sandbox (host end
//! on the bridge, pod end renamed eth0 in the sandbox netns) and IPAM. Uses the `ip` command
//! (iproute2) — simple and verifiable; rtnetlink in-process is a later optimisation.

pub mod hostport;
pub mod ipam;

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

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

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?}: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn ip(args: &[&str]) -> io::Result<()> {
    run(Command::new("ip").args(args))
}

/// `ip` run inside the network namespace pinned at `netns`.
fn ip_in(netns: &Path, args: &[&str]) -> io::Result<()> {
    run(Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("ip")
        .args(args))
}

/// The host-side veth name of a sandbox (interface names are at most 15 bytes).
pub fn host_veth(sandbox_id: &str) -> String {
    format!("veth{}", &sandbox_id[..sandbox_id.len().min(11)])
}

impl Network {
    /// Opens IPAM under `dir` and makes sure the bridge exists, is up and has the gateway.
    pub fn open(dir: &Path, config: NetworkConfig) -> io::Result<Self> {
        let ipam = Ipam::open(
            &dir.join(format!("{}-{}", config.cidr.network, config.cidr.prefix)),
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
        let br = &self.config.bridge;
        if !Path::new("/sys/class/net").join(br).exists() {
            // A concurrent runtime may win the race; the checks below still hold.
            let _ = ip(&["link", "add", br, "type", "bridge"]);
        }
        let gw = format!("{}/{}", self.config.cidr.gateway(), self.config.cidr.prefix);
        let out = Command::new("ip")
            .args(["-4", "addr", "show", "dev", br])
            .output()?;
        if !String::from_utf8_lossy(&out.stdout).contains(&format!("inet {gw}")) {
            ip(&["addr", "add", &gw, "dev", br])?;
        }
        ip(&["link", "set", br, "up"])?;
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
        let me = std::process::id().to_string();
        // Created from inside the pod netns, its peer sent to ours: eth0 never exists on the host.
        ip_in(
            netns,
            &[
                "link", "add", "eth0", "type", "veth", "peer", "name", &veth, "netns", &me,
            ],
        )?;
        ip(&["link", "set", &veth, "master", &self.config.bridge, "up"])?;
        let cidr = format!("{addr}/{}", self.config.cidr.prefix);
        ip_in(netns, &["addr", "add", &cidr, "dev", "eth0"])?;
        ip_in(netns, &["link", "set", "eth0", "up"])?;
        ip_in(
            netns,
            &[
                "route",
                "add",
                "default",
                "via",
                &self.config.cidr.gateway().to_string(),
            ],
        )
    }

    /// Removes the sandbox's veth and releases its address. Idempotent.
    pub fn detach(&self, sandbox_id: &str, addr: Option<Ipv4Addr>) -> io::Result<()> {
        let veth = host_veth(sandbox_id);
        if Path::new("/sys/class/net").join(&veth).exists() {
            ip(&["link", "del", &veth])?;
        }
        if let Some(a) = addr {
            self.ipam.release(a, sandbox_id)?;
        }
        Ok(())
    }
}

//! The node network: the bridge on the host (berth-net's rtnetlink), one pinned network
//! namespace per node and the veth between them (iproute2, which pins namespaces where
//! `ip netns` shows them). Removal functions treat "already gone" as success.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use crate::LaunchError;

/// Runs `ip ARGS`, failing with its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<(), LaunchError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| LaunchError::Command {
            command: format!("ip {}", args.join(" ")),
            message: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(LaunchError::Command {
        command: format!("ip {}", args.join(" ")),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Whether link `name` exists in the host's namespace.
pub(crate) fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether namespace `name` is pinned.
pub(crate) fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// The bridge `name` with `addr/prefix`, up (kept if it exists): berth-net's, as the runtime's
/// pod bridges.
pub(crate) fn ensure_bridge(name: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), LaunchError> {
    berth_net::netlink::ensure_bridge(name, addr, prefix).map_err(|e| LaunchError::Command {
        command: format!("creating bridge {name} with {addr}/{prefix}"),
        message: e.to_string(),
    })
}

/// The namespace `netns` (pinned, kept if it exists) with `lo` up and `eth0` as the far end of
/// veth `veth` on `bridge`, holding `addr/prefix` and a default route via `gateway`.
pub(crate) fn ensure_node_netns(
    netns: &str,
    veth: &str,
    bridge: &str,
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), LaunchError> {
    if !netns_exists(netns) {
        ip(&["netns", "add", netns])?;
    }
    if !link_exists(veth) {
        ip(&[
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ])?;
    }
    ip(&["link", "set", veth, "master", bridge, "up"])?;
    let cidr = format!("{addr}/{prefix}");
    ip(&["-n", netns, "addr", "replace", &cidr, "dev", "eth0"])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    ip(&["-n", netns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        netns,
        "route",
        "replace",
        "default",
        "via",
        &gateway.to_string(),
    ])
}

/// Sets link `name` up or down.
pub(crate) fn set_link(name: &str, up: bool) -> Result<(), LaunchError> {
    ip(&["link", "set", name, if up { "up" } else { "down" }])
}

/// Deletes link `name`; true if it existed.
pub(crate) fn delete_link(name: &str) -> bool {
    link_exists(name) && berth_net::netlink::delete_link(name).is_ok()
}

/// Deletes the pinned namespace `name` (its veth end goes with it); true if it existed.
pub(crate) fn delete_netns(name: &str) -> bool {
    netns_exists(name) && ip(&["netns", "del", name]).is_ok()
}

/// Deletes the veths attached to `bridge`, then the bridge; what it deleted.
pub(crate) fn delete_bridge(bridge: &str) -> Vec<String> {
    let mut gone = Vec::new();
    let brif = Path::new("/sys/class/net").join(bridge).join("brif");
    for port in std::fs::read_dir(brif).into_iter().flatten().flatten() {
        let name = port.file_name().to_string_lossy().to_string();
        if delete_link(&name) {
            gone.push(name);
        }
    }
    if delete_link(bridge) {
        gone.push(bridge.to_string());
    }
    gone
}

/// Turns IPv4 forwarding on in the host's namespace (left on, as berth's runtime leaves it: the
/// host may route for other pods too).
pub(crate) fn enable_forwarding() -> Result<(), LaunchError> {
    let path = Path::new("/proc/sys/net/ipv4/ip_forward");
    std::fs::write(path, "1").map_err(crate::error::io_at(path))
}

/// Routes `dest` through `via` in the host's namespace (replacing a route to `dest`).
pub(crate) fn route_via(dest: &str, via: Ipv4Addr) -> Result<(), LaunchError> {
    ip(&["route", "replace", dest, "via", &via.to_string()])
}

/// Deletes the host route to `dest`; true if there was one.
pub(crate) fn delete_route(dest: &str) -> bool {
    ip(&["route", "del", dest]).is_ok()
}

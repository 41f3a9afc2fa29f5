//! A berth cluster on one machine, and its complete removal: the one launcher behind
//! `berth up --nodes N`, `berth down`, the multi-node end-to-end tests and `berth bench failover`.
//!
//! [`Cluster::start`] runs `berth server` (control plane only) in the host's network namespace,
//! with the host end of a bridge `bu-<tag>` as its address (`.1` of [`ClusterSpec::subnet`]), and
//! one `berth agent` per node, each inside its own network namespace (`berth-<tag>-<i>`, pinned
//! under /run/netns so `ip netns list` shows it) whose `eth0` is a veth on that bridge with address
//! `.(10+i)`. Every daemon runs in its own session (Ctrl-C on the launcher reaches only the
//! launcher) with its output in `DIR/logs/<name>.log` unless [`Logs::Inherit`]. Once the nodes
//! are Ready, the host routes each node's pod range through that node, so the host and every node
//! reach every Pod.
//!
//! Everything about to be made is written to `DIR/launch.json` *before* it is made ([`record`]),
//! so [`down`] removes all of it even after the launcher crashed: processes (daemons, shims and
//! container processes, found by cgroup and by command line), mounts under DIR, network
//! namespaces, veths, the bridge, host routes and container cgroups ([`cleanup`]).
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod cleanup;
mod cluster;
mod down;
mod error;
mod net;
mod proc;
mod ready;
pub mod record;

use std::path::PathBuf;

pub use cluster::{Cluster, Node};
pub use down::{Report, down};
pub use error::LaunchError;

/// What to launch.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Short and unique per cluster on this machine (ASCII letters and digits, at most 8): names
    /// the bridge `bu-<tag>`, the namespaces `berth-<tag>-<i>` and the nodes `<tag>-n<i>`.
    pub tag: String,
    /// Everything lives here: `server/` (the server's data dir), `nodes/<name>/`, `logs/*.log`,
    /// `launch.json`.
    pub data_dir: PathBuf,
    /// How many nodes (each with its own namespace, runtime and data dir).
    pub nodes: u32,
    /// The `berth` binary to run.
    pub berth_exe: PathBuf,
    /// The node network: `.1` is the host side of the bridge (the server), `.11`, `.12`, … the nodes.
    pub subnet: berth_net::Ipv4Cidr,
    /// The pod network, split by the server into one range per node.
    pub cluster_cidr: berth_net::Ipv4Cidr,
    /// The API server's port.
    pub api_port: u16,
    /// The embedded registry's port.
    pub registry_port: u16,
    /// Extra `berth server` flags.
    pub server_args: Vec<String>,
    /// Extra `berth agent` flags (every node).
    pub agent_args: Vec<String>,
    /// Where the daemons' output goes.
    pub logs: Logs,
}

/// Where the daemons' stdout and stderr go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    /// One file per daemon, `DIR/logs/<name>.log`.
    Files,
    /// The launcher's own stdout and stderr.
    Inherit,
}

impl ClusterSpec {
    /// The bridge's name.
    pub fn bridge(&self) -> String {
        format!("bu-{}", self.tag)
    }

    /// The server's address on the bridge (`.1` of the subnet).
    pub fn server_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.subnet.nth(1)
    }
}

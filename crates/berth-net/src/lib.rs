//! `berth-net`: pod network addressing shared by the controllers (node CIDRs) and the runtime (pod
//! IPs), and the one home of berth's rtnetlink code, shared by the runtime (bridge, links) and
//! the agent (routes to other nodes).
//!
//! - [`cidr`]: [`Ipv4Cidr`], the one IPv4 network type (on [`ipnet`]);
//! - [`node`]: carving node pod CIDRs out of the cluster CIDR (the controller's node IPAM);
//! - [`pod`]: the addresses of a node's pod CIDR (gateway, pod range) and the host-local allocator
//!   that hands them to sandboxes (the runtime's IPAM);
//! - [`routes`]: route sets and the plan from the routes a host has to those it should have;
//! - [`netlink`]: rtnetlink in-process, one short-lived thread per operation (links, bridges,
//!   berth's own routes).
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod cidr;
pub mod netlink;
pub mod node;
pub mod pod;
pub mod routes;

pub use cidr::{CidrParseError, Ipv4Cidr};

//! `berth-net`: pod network addressing shared by the controllers (node CIDRs) and the runtime (pod IPs).
//!
//! - [`cidr`]: [`Ipv4Cidr`], the one IPv4 network type (on [`ipnet`]);
//! - [`node`]: carving node pod CIDRs out of the cluster CIDR (the controller's node IPAM);
//! - [`pod`]: the addresses of a node's pod CIDR (gateway, pod range) and the host-local allocator
//!   that hands them to sandboxes (the runtime's IPAM).
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod cidr;
pub mod node;
pub mod pod;

pub use cidr::{CidrParseError, Ipv4Cidr};

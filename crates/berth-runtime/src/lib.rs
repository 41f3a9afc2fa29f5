//! `berth-runtime`: berth embedded CRI runtime: images, snapshots, pod sandboxes, containers.

pub mod container;
pub mod oci;
pub mod shim;
pub mod snapshot;

//! `berth-runtime`: berth embedded CRI runtime: images, snapshots, pod sandboxes, containers.

pub mod cgroup;
pub mod container;
pub mod image;
pub mod network;
pub mod oci;
pub mod sandbox;
pub mod server;
pub mod shim;
pub mod snapshot;
pub mod stream;
pub mod testimage;

pub use server::{CriService, RuntimeConfig, StartError};

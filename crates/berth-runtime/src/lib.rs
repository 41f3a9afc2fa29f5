//! `berth-runtime`: berth embedded CRI runtime: images, snapshots, pod sandboxes, containers.

pub mod snapshot;

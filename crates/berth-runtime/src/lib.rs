//! `berth-runtime`: berth embedded CRI runtime: images, snapshots, pod sandboxes, containers.
//!
//! [`CriService`] implements CRI v1 `RuntimeService` and `ImageService` over stores that keep
//! all state on disk under the runtime root, so a restarted runtime picks up where it was:
//!
//! - `content/` — blobs (berth-image's content store, digest-verified, shared by all images);
//! - `snapshots/<chain id>/` — each layer unpacked once ([`snapshot`]), used as overlay lower dirs;
//! - `images/<id>.json` — image records ([`image`]); the image id is the config digest;
//! - `sandboxes/<id>/` — pinned netns, hostname, hosts, resolv.conf, `sandbox.json` ([`sandbox`]);
//!   pod networking (bridge, veth, IPAM, host ports) is in [`network`];
//! - `containers/<id>/` — `config.json` ([`oci`]), overlay rootfs, `state.json`, and the shim's
//!   `state/{pid,shim.pid,exit.json}` ([`container`], [`shim`]);
//! - `runc/` — the OCI runtime's own state root.
//!
//! Every container is supervised by its own detached `berth shim` process (runc create/start,
//! CRI log format, exit record), so containers outlive the runtime process. [`server`] holds the
//! CRI services, one module per verb family; [`ociruntime`] builds the runc/crun commands;
//! [`cgroup`] reads and limits container cgroups (v1 and v2); [`stream`] serves exec streams
//! (with terminals).
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod cgroup;
pub mod container;
pub mod image;
pub mod network;
pub mod oci;
pub mod ociruntime;
pub mod sandbox;
pub mod server;
pub mod shim;
pub mod snapshot;
pub mod stream;

pub use server::{CriService, RuntimeConfig, StartError};

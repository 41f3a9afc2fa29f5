//! `berth-image`: OCI image content store, layouts, distribution client and Dockerfile builds.
//!
//! - [`store::ContentStore`]: blobs by digest, verified streaming writes.
//! - [`client::RegistryClient`]: pull/push against OCI distribution registries; [`auth`]: registry
//!   credentials and token authentication.
//! - [`local::LocalImages`]: named images on this machine (`berth images`).
//! - [`rootfs`]: a local image's root filesystem unpacked into a directory (`berth pull
//!   --unpack`, `COPY --from`), through berth-oci's confined unpacker.
//! - [`layout`]: OCI image layout directories; [`archive`]: `docker save`-style archives.
//! - `reference`, `digest`, `manifest`: image names, content digests, manifests and indexes.
//! - [`build`]: `berth build` (Dockerfile builds), with [`dockerfile`] (parsing), [`layer`]
//!   (writing reproducible layers), [`context`] (`.dockerignore` selection of the build context)
//!   and [`sources`] (`COPY`/`ADD` source globs).
//! - [`synthetic`]: random images for benchmarks and tests.
//! - [`error`]: the crate's error type.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod archive;
pub mod auth;
pub mod build;
pub mod client;
pub mod context;
pub mod dockerfile;
pub mod error;
pub mod layer;
pub mod layout;
pub mod local;
pub mod rootfs;
pub mod sources;
pub mod store;

pub use berth_oci::{Digest, Reference};
pub use client::{ClientOptions, Progress, ProgressEvent, PulledImage, RegistryClient};
pub use error::{Error, Result};
pub use local::LocalImages;
pub use store::ContentStore;

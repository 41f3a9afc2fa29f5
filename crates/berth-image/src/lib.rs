//! `berth-image`: OCI image content store, layouts, distribution client and Dockerfile builds.
//!
//! - [`store::ContentStore`]: blobs by digest, verified streaming writes.
//! - [`client::RegistryClient`]: pull/push against OCI distribution registries.
//! - [`local::LocalImages`]: named images on this machine (`berth images`).
//! - [`layout`]: OCI image layout directories.

pub mod archive;
pub mod auth;
pub mod build;
pub mod client;
pub mod dockerfile;
pub mod error;
pub mod layer;
pub mod layout;
pub mod local;
pub mod store;
pub mod synthetic;

pub use berth_oci::{Digest, Reference};
pub use client::{ClientOptions, Progress, ProgressEvent, PulledImage, RegistryClient};
pub use error::{Error, Result};
pub use local::LocalImages;
pub use store::ContentStore;

//! `berth-oci`: the OCI core shared by the registry, the image client and builder, and the runtime.
//!
//! - [`reference`]: image references (`[registry/]repository[:tag][@digest]`), repository names
//!   and tags, with berth's defaulting of bare names;
//! - [`digest`]: content digests and the hashers that compute them;
//! - [`media`]: media types of manifests, indexes, configs and layers;
//! - [`manifest`]: manifests, indexes and descriptors as clients read them, and the summary the
//!   registry checks pushes against.

pub mod digest;
pub mod manifest;
pub mod media;
pub mod reference;

pub use digest::Digest;
pub use reference::Reference;

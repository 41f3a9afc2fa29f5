//! `berth-oci`: the OCI core shared by the registry, the image client and builder, and the runtime.
//!
//! - [`reference`]: image references (`[registry/]repository[:tag][@digest]`), repository names
//!   and tags, with berth's defaulting of bare names;
//! - [`digest`]: content digests and the hashers that compute them;
//! - [`media`]: media types of manifests, indexes, configs and layers;
//! - [`manifest`]: manifests, indexes and descriptors as clients read them, and the summary the
//!   registry checks pushes against;
//! - [`unpack`]: the one confined layer unpacker (and the one media type -> decompressor
//!   chooser), used for runtime snapshots, `berth pull --unpack` and `COPY --from` in builds.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod digest;
pub mod manifest;
pub mod media;
pub mod reference;
pub mod unpack;

pub use digest::Digest;
pub use reference::Reference;

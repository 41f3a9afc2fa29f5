//! `berth-oci`: the OCI core shared by the registry, the image client and builder, and the runtime.
//!
//! - [`unpack`]: the one confined layer unpacker (and the one media type -> decompressor
//!   chooser), used for runtime snapshots, `berth pull --unpack` and `COPY --from` in builds.
#![cfg_attr(test, allow(unused_crate_dependencies))] // unit tests see every dev-dependency

pub mod unpack;

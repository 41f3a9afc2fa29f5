//! `berth-oci`: the OCI core shared by the registry, the image client and builder, and the runtime.
//!
//! - [`unpack`]: the one confined layer unpacker (and the one media type -> decompressor
//!   chooser), used for runtime snapshots, `berth pull --unpack` and `COPY --from` in builds.

pub mod unpack;

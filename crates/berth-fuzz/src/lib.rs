//! `berth-fuzz`: the entry points of berth's fuzz targets, one `pub fn <target>(data: &[u8])` per
//! target, each feeding outside input to one parser the way the product does.
//!
//! An `Err` from a parser is the right answer to bad input and is ignored: only a panic, a hang
//! or an abort is a finding. A few targets also check a property the product relies on (an image
//! reference prints as something that parses back to it; a layer never writes outside its root)
//! and panic when it does not hold.
//!
//! The cargo-fuzz project in `fuzz/` at the repository root wraps each function in a
//! `fuzz_target!`; [`TARGETS`] is the one list of them, which `tests/corpus.rs` uses to replay
//! every seed in `fuzz/corpus/<target>/` and every past crash in `fuzz/regressions/<target>/`.
//! `docs/testing.md` says how to run a target and how a crash becomes a regression.

mod api;
mod image;
mod layer;
mod registry;

pub use api::{
    json_patch, manifest, manifest_stream, merge_patch, server_side_apply, strategic_merge_patch,
};
pub use image::{dockerfile, image_reference, oci_manifest};
pub use layer::layer_tar;
pub use registry::registry_request;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every fuzz target by name (the name of its `fuzz/fuzz_targets/<name>.rs` and corpus folder).
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("manifest_stream", manifest_stream),
    ("json_patch", json_patch),
    ("merge_patch", merge_patch),
    ("strategic_merge_patch", strategic_merge_patch),
    ("server_side_apply", server_side_apply),
    ("dockerfile", dockerfile),
    ("image_reference", image_reference),
    ("oci_manifest", oci_manifest),
    ("layer_tar", layer_tar),
    ("registry_request", registry_request),
];

//! `berth-oci`: the OCI core shared by the registry, the image client and builder, and the runtime.
#![cfg_attr(test, allow(unused_crate_dependencies))] // unit tests see every dev-dependency

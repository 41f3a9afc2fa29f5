//! `berth-testkit`: test images and fixtures shared by tests and benchmarks.
//!
//! - [`hostile`]: layers that try to write or delete outside the unpack root, for the tests of
//!   every caller of berth-oci's unpacker.
#![cfg_attr(test, allow(unused_crate_dependencies))] // unit tests see every dev-dependency

pub mod hostile;

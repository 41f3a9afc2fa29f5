//! `berth-testkit`: test images and fixtures shared by tests and benchmarks.
//!
//! - [`hostile`]: layers that try to write or delete outside the unpack root, for the tests of
//!   every caller of berth-oci's unpacker.

pub mod hostile;

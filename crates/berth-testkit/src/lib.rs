//! `berth-testkit`: test images and fixtures shared by tests and benchmarks.
#![cfg_attr(test, allow(unused_crate_dependencies))] // unit tests see every dev-dependency

//! `berth-bench`: the benchmarks behind `berth bench`.
#![cfg_attr(test, allow(unused_crate_dependencies))] // unit tests see every dev-dependency

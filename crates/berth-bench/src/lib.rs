//! `berth-bench`: the benchmarks behind `berth bench`.

//! `berth-testkit`: test images and fixtures shared by tests and benchmarks.

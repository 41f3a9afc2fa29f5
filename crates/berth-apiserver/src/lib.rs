//! `berth-apiserver`: Kubernetes-compatible REST API server for berth.

pub mod resources;

//! What the kubectl-like commands (`apply`, `get`, `describe`, `delete`, `scale`) share: finding
//! the kubeconfig, discovering served kinds, reading manifests, rendering Tables and ages, and
//! wording server errors like kubectl does.

pub mod connect;
pub mod container;
pub mod discovery;
pub mod errors;
pub mod manifest;
pub mod table;
pub mod target;
pub mod terminal;

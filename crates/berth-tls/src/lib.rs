//! `berth-tls`: TLS material and the one accept loop that serves HTTPS for the API server, the registry and the node endpoint.
#![cfg_attr(test, allow(unused_crate_dependencies))] // unit tests see every dev-dependency

//! `berth-net`: pod network addressing shared by the controllers (node CIDRs) and the runtime (pod IPs).
#![cfg_attr(test, allow(unused_crate_dependencies))] // unit tests see every dev-dependency

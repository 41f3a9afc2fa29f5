//! Pod IP allocation for the bridge network: the pod CIDR type and the host-local allocator (one
//! file per address, created with O_EXCL, so concurrent allocations never collide) live in
//! `berth-net`, the one home of CIDR arithmetic; this module names them for the runtime.

pub use berth_net::Ipv4Cidr as Cidr;
pub use berth_net::pod::Ipam;

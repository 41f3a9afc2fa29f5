//! `berth-cri`: CRI v1 (runtime.v1) gRPC types, server traits and a Unix-socket client.

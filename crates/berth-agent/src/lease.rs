//! The node Lease (heartbeat).

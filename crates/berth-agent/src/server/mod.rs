//! The node endpoint for logs and exec.

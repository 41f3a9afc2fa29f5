//! Kubernetes crash-loop backoff.

//! Readiness, liveness and startup probes.

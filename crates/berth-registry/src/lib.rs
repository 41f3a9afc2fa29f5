//! `berth-registry`: OCI distribution-spec registry server.

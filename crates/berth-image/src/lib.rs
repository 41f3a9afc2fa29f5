//! `berth-image`: OCI image content store, layouts, distribution client and Dockerfile builds.

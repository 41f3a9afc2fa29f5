//! `berth-oci`: the OCI core shared by the registry, the image client and builder, and the runtime.

//! How the stores' errors become gRPC statuses: missing things are NotFound, duplicates
//! AlreadyExists, wrong states FailedPrecondition, everything else Internal.

use tonic::Status;

use crate::container::ContainerError;
use crate::image::ImageError;
use crate::network::hostport::HostPortError;
use crate::sandbox::SandboxError;

/// An Internal status carrying `e`'s message.
pub(super) fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// The status of a container store error.
pub(super) fn container_status(e: ContainerError) -> Status {
    match e {
        ContainerError::NotFound(_) => Status::not_found(e.to_string()),
        ContainerError::Exists(_) => Status::already_exists(e.to_string()),
        ContainerError::State { .. } => Status::failed_precondition(e.to_string()),
        other => internal(other),
    }
}

/// The status of a sandbox store error.
pub(super) fn sandbox_status(e: SandboxError) -> Status {
    match e {
        SandboxError::NotFound(_) => Status::not_found(e.to_string()),
        other => internal(other),
    }
}

/// The status of an image store error.
pub(super) fn image_status(e: ImageError) -> Status {
    internal(e)
}

/// The status of a host port that could not be opened (a taken port fails the sandbox).
pub(super) fn host_port_status(e: HostPortError) -> Status {
    match e {
        HostPortError::Open { .. } => Status::failed_precondition(e.to_string()),
        HostPortError::Poisoned(_) => internal(e),
    }
}

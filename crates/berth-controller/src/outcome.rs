//! Logging what a controller's reconciles come to. An object deleted between the event that
//! queued it and its reconcile (kube-runtime's `ObjectNotFound`, or a 404 from the API) is the
//! normal end of a deletion, not a failure: it is logged at debug level, everything else that
//! failed as a warning.

use std::fmt::Display;

use kube::runtime::controller::Error as ControllerError;
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, warn};

/// Whether `e` is the API saying the object is gone (404).
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// Logs one item of a controller's run stream; `gone` tells which reconcile errors mean the
/// object was deleted meanwhile.
pub fn log<K, A, E, Q>(
    controller: &str,
    item: Result<(ObjectRef<K>, A), ControllerError<E, Q>>,
    gone: impl Fn(&E) -> bool,
) where
    K: kube::Resource,
    K::DynamicType: Clone + Eq + std::hash::Hash + std::fmt::Debug,
    ObjectRef<K>: Display,
    E: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    match item {
        Ok((obj, _)) => debug!(controller, object = %obj, "reconciled"),
        Err(ControllerError::ObjectNotFound(obj)) => {
            debug!(controller, object = %obj, "deleted before its reconcile")
        }
        Err(ControllerError::ReconcilerFailed(e, obj)) if gone(&e) => {
            debug!(controller, object = %obj, "deleted during its reconcile")
        }
        Err(e) => warn!(controller, error = %e, "reconcile failed"),
    }
}

//! Kubernetes Events as tests look for them.

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;

/// Whether an Event with `reason` about the object `name`, whose message contains `needle`, has
/// been recorded (a failed list counts as not yet).
pub async fn recorded(events: &Api<Event>, reason: &str, name: &str, needle: &str) -> bool {
    let Ok(list) = events.list(&ListParams::default()).await else {
        return false;
    };
    list.items.iter().any(|e| {
        e.reason.as_deref() == Some(reason)
            && e.involved_object.name.as_deref() == Some(name)
            && e.message.as_deref().is_some_and(|m| m.contains(needle))
    })
}

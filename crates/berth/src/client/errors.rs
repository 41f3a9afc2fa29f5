//! Errors worded like kubectl's, e.g.
//! `Error from server (NotFound): modelservices.berth.dev "x" not found`, and for invalid objects
//! `The ModelService "x" is invalid:` followed by one `* field: message` line per cause.

use kube::core::Status;

/// Turns a kube-rs error into the text kubectl would show.
pub fn explain(err: kube::Error) -> anyhow::Error {
    match err {
        kube::Error::Api(status) => anyhow::anyhow!(server_error(&status)),
        kube::Error::HyperError(e) => anyhow::anyhow!("Unable to connect to the server: {e}"),
        kube::Error::Service(e) => anyhow::anyhow!("Unable to connect to the server: {e}"),
        other => anyhow::Error::new(other),
    }
}

/// The kubectl wording of a failed request's Status.
pub fn server_error(status: &Status) -> String {
    let causes: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect();
    if status.reason == "Invalid" && !causes.is_empty() {
        let (kind, name) = status
            .details
            .as_ref()
            .map_or((String::new(), String::new()), |d| {
                (d.kind.clone(), d.name.clone())
            });
        let lines: String = causes.iter().map(|c| format!("\n* {c}")).collect();
        return format!("The {kind} \"{name}\" is invalid: {lines}");
    }
    let reason = if status.reason.is_empty() {
        "Unknown".to_string()
    } else {
        status.reason.clone()
    };
    format!("Error from server ({reason}): {}", status.message)
}

/// Whether a kube-rs error is a 404 from the server.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(v: serde_json::Value) -> Status {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn not_found_reads_like_kubectl() {
        let s = status(
            serde_json::json!({"status": "Failure", "code": 404, "reason": "NotFound",
            "message": "modelservices.berth.dev \"x\" not found"}),
        );
        assert_eq!(
            server_error(&s),
            "Error from server (NotFound): modelservices.berth.dev \"x\" not found"
        );
    }

    #[test]
    fn invalid_lists_every_cause() {
        let s = status(
            serde_json::json!({"status": "Failure", "code": 422, "reason": "Invalid",
            "message": "ModelService.berth.dev \"x\" is invalid: [...]",
            "details": {"name": "x", "kind": "ModelService", "causes": [
                {"reason": "FieldValueInvalid", "field": "spec.replicas", "message": "Invalid value: -1: must be greater than or equal to 0"},
                {"reason": "FieldValueRequired", "field": "spec.image", "message": "Required value"}]}}),
        );
        assert_eq!(
            server_error(&s),
            "The ModelService \"x\" is invalid: \n* spec.replicas: Invalid value: -1: must be greater than or equal to 0\n* spec.image: Required value"
        );
    }
}

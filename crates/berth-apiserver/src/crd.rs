//! CustomResourceDefinitions: validation, defaulting, the status the server sets (names accepted,
//! Established), and keeping the resource registry in step with stored CRDs.

use std::sync::Arc;

use berth_store::RangeOptions;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::resources::{self, ResourceInfo};
use crate::state::ApiServer;

fn is_crd(r: &ResourceInfo) -> bool {
    r.builtin && r.plural == "customresourcedefinitions"
}

fn required(field: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: field.into(),
    }
}

/// Validates a CRD object (names, group, versions).
pub fn validate(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(required("spec.group"));
    }
    if plural.is_empty() {
        causes.push(required("spec.names.plural"));
    }
    if spec["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        causes.push(required("spec.names.kind"));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
            field: "metadata.name".into(),
        });
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(required("spec.versions"));
    } else if versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count()
        != 1
    {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: "Invalid value: must have exactly one version marked as storage version"
                .into(),
            field: "spec.versions".into(),
        });
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
        causes.push(Cause {
            reason: "FieldValueNotSupported".into(),
            message: "Unsupported value: supported values: \"Cluster\", \"Namespaced\"".into(),
            field: "spec.scope".into(),
        });
    }
    causes
}

/// Fills in defaults (singular, listKind, conversion) and the accepted/established status.
pub fn default_and_accept(crd: &mut Value) {
    let kind = crd["spec"]["names"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let names = &mut crd["spec"]["names"];
    if names["singular"].as_str().unwrap_or_default().is_empty() {
        names["singular"] = json!(kind.to_lowercase());
    }
    if names["listKind"].as_str().unwrap_or_default().is_empty() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    let accepted = names.clone();
    if crd["spec"].get("conversion").is_none() {
        crd["spec"]["conversion"] = json!({"strategy": "None"});
    }
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    let now = crate::object::now();
    crd["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": stored,
    });
}

/// After a write of any object: a written CRD becomes (or stays) served at once.
pub fn after_write(srv: &ApiServer, r: &ResourceInfo, obj: &Value) {
    if !is_crd(r) {
        return;
    }
    let group = obj["spec"]["group"].as_str().unwrap_or_default();
    let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default();
    srv.registry.remove_custom(group, plural);
    if obj["metadata"].get("deletionTimestamp").is_none() {
        for info in resources::from_crd(obj) {
            srv.registry.insert(info);
        }
    }
}

/// After a deletion: a deleted CRD stops being served and its objects are removed.
pub fn after_delete(srv: &Arc<ApiServer>, r: &ResourceInfo, obj: &Value) {
    if !is_crd(r) {
        return;
    }
    let group = obj["spec"]["group"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let plural = obj["spec"]["names"]["plural"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    srv.registry.remove_custom(&group, &plural);
    let store = srv.store.clone();
    tokio::spawn(async move {
        let prefix = format!("/registry/{group}/{plural}/");
        if let Ok(res) = store.range(&prefix, RangeOptions::default()).await {
            for kv in res.kvs {
                if let Err(e) = store.delete(&kv.key, kv.mod_revision).await {
                    tracing::debug!(key = %kv.key, error = %e, "deleting custom object of removed CRD");
                }
            }
        }
    });
}

/// Serves every stored CRD, and creates (or updates) the given built-in CRDs (e.g. ModelService).
pub async fn bootstrap(
    srv: &Arc<ApiServer>,
    install: &[Value],
) -> Result<(), crate::error::ApiError> {
    let crds = srv
        .registry
        .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(crate::error::ApiError::no_route)?;
    for crd in install {
        let mut crd = crd.clone();
        crd["apiVersion"] = json!("apiextensions.k8s.io/v1");
        crd["kind"] = json!("CustomResourceDefinition");
        default_and_accept(&mut crd);
        let name = crd["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = crds.key(None, &name);
        match srv.store.get(&key).await? {
            Some(kv) => {
                let mut cur: Value =
                    serde_json::from_slice(&kv.value).map_err(crate::error::ApiError::internal)?;
                if cur["spec"] != crd["spec"] {
                    cur["spec"] = crd["spec"].clone();
                    default_and_accept(&mut cur);
                    srv.store
                        .update(&key, crate::object::encode(&cur, &crds)?, kv.mod_revision)
                        .await?;
                }
            }
            None => {
                let meta = crate::object::meta_mut(&mut crd);
                meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                meta.insert("creationTimestamp".into(), json!(crate::object::now()));
                meta.insert("generation".into(), json!(1));
                srv.store
                    .create(&key, crate::object::encode(&crd, &crds)?)
                    .await?;
            }
        }
    }
    let res = srv
        .store
        .range(&crds.collection_prefix(None), RangeOptions::default())
        .await?;
    for kv in res.kvs {
        if let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) {
            after_write(srv, &crds, &obj);
        }
    }
    Ok(())
}

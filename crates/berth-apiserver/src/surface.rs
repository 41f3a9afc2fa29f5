//! Glue to the API surface: answers discovery and OpenAPI requests with the documents
//! [`crate::discovery`] and [`crate::openapi`] build from the registry, in the right media type.
//! Built-in kinds' OpenAPI schemas come from k8s-openapi.

use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{self, KindSchema};
use crate::patch::{self, SmpList};
use crate::path::ApiPath;
use crate::resources::ResourceInfo;
use crate::state::ApiServer;

fn respond(content_type: &str, body: &Value) -> Response {
    (
        [(http::header::CONTENT_TYPE, content_type.to_string())],
        body.to_string(),
    )
        .into_response()
}

/// Answers `/api`, `/apis`, `/apis/G` and `/api/v1`, `/apis/G/V`.
pub fn discovery(srv: &ApiServer, path: &ApiPath, accept: &str) -> ApiResult<Response> {
    let all = srv.registry.all();
    let resources: Vec<&ResourceInfo> = all.iter().map(|r| r.as_ref()).collect();
    if !srv.options.legacy_discovery && discovery::wants_aggregated(accept) {
        match path {
            ApiPath::CoreRoot => {
                return Ok(respond(
                    discovery::AGGREGATED_CONTENT_TYPE,
                    &discovery::aggregated(&resources, true),
                ));
            }
            ApiPath::GroupsRoot => {
                return Ok(respond(
                    discovery::AGGREGATED_CONTENT_TYPE,
                    &discovery::aggregated(&resources, false),
                ));
            }
            _ => {}
        }
    }
    let doc = match path {
        ApiPath::CoreRoot => Some(discovery::api_versions("")),
        ApiPath::GroupsRoot => Some(discovery::api_group_list(&resources)),
        ApiPath::Group(g) => discovery::api_group(&resources, g),
        ApiPath::GroupVersion { group, version } => {
            discovery::api_resource_list(&resources, group, version)
        }
        _ => None,
    };
    doc.map(|d| respond("application/json", &d))
        .ok_or_else(ApiError::no_route)
}

/// The published schema of a built-in kind (from k8s-openapi, generated once), with `$ref`s
/// pointing into `#/components/schemas/`.
fn builtin_schema(r: &ResourceInfo) -> Option<KindSchema> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static CACHE: OnceLock<HashMap<(&'static str, &'static str), KindSchema>> = OnceLock::new();
    macro_rules! schema_of {
        ($t:ty) => {
            serde_json::to_value(k8s_openapi::schemars::schema_for!($t)).unwrap_or(Value::Null)
        };
    }
    let cache = CACHE.get_or_init(|| {
        use k8s_openapi::api::{coordination, core::v1 as core, events};
        let raw = [
            (("", "Namespace"), schema_of!(core::Namespace)),
            (("", "Pod"), schema_of!(core::Pod)),
            (("", "Node"), schema_of!(core::Node)),
            (("", "Service"), schema_of!(core::Service)),
            (("", "Endpoints"), schema_of!(core::Endpoints)),
            (("", "Event"), schema_of!(core::Event)),
            (("", "ConfigMap"), schema_of!(core::ConfigMap)),
            (("", "Secret"), schema_of!(core::Secret)),
            (("", "ResourceQuota"), schema_of!(core::ResourceQuota)),
            (
                ("coordination.k8s.io", "Lease"),
                schema_of!(coordination::v1::Lease),
            ),
            (("events.k8s.io", "Event"), schema_of!(events::v1::Event)),
        ];
        raw.into_iter()
            .filter_map(|(k, mut v)| {
                rewrite_refs(&mut v);
                let id = v.get("title")?.as_str()?.to_string();
                let mut refs = v
                    .as_object_mut()?
                    .remove("$defs")
                    .and_then(|d| d.as_object().cloned())
                    .unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("$schema");
                    m.remove("title");
                }
                mark_patch_strategies(k.1, &mut v, &mut refs, &mut Vec::new());
                Some((
                    k,
                    KindSchema {
                        id,
                        schema: v,
                        refs: refs.into_iter().collect(),
                    },
                ))
            })
            .collect()
    });
    if !r.builtin {
        return None;
    }
    cache
        .iter()
        .find(|((g, k), _)| *g == r.group && *k == r.kind)
        .map(|(_, v)| v.clone())
}

/// Points JSON-Schema `$defs` references at OpenAPI components.
fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{name}");
                }
            }
            m.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Marks the lists strategic merge patch merges ([`patch::smp_list_strategy`]) with the
/// `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key` extensions kube-apiserver
/// publishes: kubectl computes its patches from these schemas, and only with them does it send
/// `$patch: delete` for list items dropped from a manifest instead of whole lists. `path` holds
/// the field names from the kind's root; referenced components are walked where they are used.
fn mark_patch_strategies(
    kind: &str,
    node: &mut Value,
    refs: &mut Map<String, Value>,
    path: &mut Vec<String>,
) {
    let Some(m) = node.as_object_mut() else {
        return;
    };
    if let Some(id) = m
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        // Taken out while it is walked: a component that (indirectly) contains itself stops there.
        if let Some(mut target) = refs.remove(id) {
            let id = id.to_string();
            mark_patch_strategies(kind, &mut target, refs, path);
            refs.insert(id, target);
        }
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for alt in m
            .get_mut(combinator)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            mark_patch_strategies(kind, alt, refs, path);
        }
    }
    for (name, prop) in m
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flatten()
    {
        path.push(name.clone());
        if prop.get("type").and_then(Value::as_str) == Some("array") {
            let names: Vec<&str> = path.iter().map(String::as_str).collect();
            let (strategy, key) = match patch::smp_list_strategy(kind, &names) {
                SmpList::MergeByKey(key) => (Some("merge"), Some(key)),
                SmpList::MergePrimitives => (Some("merge"), None),
                SmpList::Replace => (None, None),
            };
            if let Some(p) = prop.as_object_mut() {
                if let Some(s) = strategy {
                    p.insert("x-kubernetes-patch-strategy".into(), json!(s));
                }
                if let Some(k) = key {
                    p.insert("x-kubernetes-patch-merge-key".into(), json!(k));
                }
                if let Some(items) = p.get_mut("items") {
                    mark_patch_strategies(kind, items, refs, path);
                }
            }
        } else {
            mark_patch_strategies(kind, prop, refs, path);
        }
        path.pop();
    }
}

/// Answers `/openapi/v3` (the index) and `/openapi/v3/<group-version path>`.
pub fn openapi(srv: &ApiServer, path: &str, _accept: &str) -> ApiResult<Response> {
    let all = srv.registry.all();
    let resources: Vec<&ResourceInfo> = all.iter().map(|r| r.as_ref()).collect();
    let doc_of =
        |g: &str, v: &str| openapi::group_version_document(&resources, g, v, &builtin_schema);
    let rest = path.trim_start_matches("/openapi/v3").trim_matches('/');
    if rest.is_empty() {
        let index = openapi::root(&resources, &|g, v| doc_of(g, v).unwrap_or(Value::Null));
        return Ok(respond("application/json", &index));
    }
    let r = resources
        .iter()
        .find(|r| openapi::gv_path(&r.group, &r.version) == rest)
        .ok_or_else(ApiError::no_route)?;
    let doc = doc_of(&r.group, &r.version).ok_or_else(ApiError::no_route)?;
    Ok(respond("application/json", &doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pod_schema_carries_the_patch_strategies_the_server_merges_by() {
        let all = crate::resources::builtins();
        let pods = all
            .iter()
            .find(|r| r.plural == "pods" && r.group.is_empty())
            .unwrap();
        let k = builtin_schema(pods).unwrap();
        let component = |id: &str| {
            k.refs
                .get(&format!("io.k8s.api.core.v1.{id}"))
                .unwrap()
                .clone()
        };
        let prop = |id: &str, field: &str| component(id)["properties"][field].clone();
        assert_eq!(
            prop("PodSpec", "containers")["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            prop("Container", "env")["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            prop("Container", "ports")["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert_eq!(
            prop("Container", "volumeMounts")["x-kubernetes-patch-strategy"],
            "merge"
        );
        assert_eq!(
            prop("PodStatus", "conditions")["x-kubernetes-patch-merge-key"],
            "type"
        );
        assert!(
            prop("Container", "args")
                .get("x-kubernetes-patch-strategy")
                .is_none(),
            "args are replaced"
        );
        let meta = &k.refs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
        assert!(
            meta["finalizers"]
                .get("x-kubernetes-patch-merge-key")
                .is_none()
        );
        // With the strategies published, the document advertises strategic merge patch.
        let doc = openapi::group_version_document(&[pods], "", "v1", &builtin_schema).unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
    }
}

//! Glue to the API surface (discovery and OpenAPI documents), answering with the right media type.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::path::ApiPath;
use crate::resources::{ResourceInfo, STANDARD_VERBS};
use crate::state::ApiServer;

fn respond(content_type: &str, body: &Value) -> Response {
    ([(http::header::CONTENT_TYPE, content_type.to_string())], body.to_string()).into_response()
}

/// Answers `/api`, `/apis`, `/apis/G` and `/api/v1`, `/apis/G/V`.
pub fn discovery(srv: &ApiServer, path: &ApiPath, _accept: &str) -> ApiResult<Response> {
    let all = srv.registry.all();
    match path {
        ApiPath::CoreRoot => Ok(respond("application/json", &json!({"kind":"APIVersions","versions":["v1"],
            "serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":""}]}))),
        ApiPath::GroupsRoot => {
            let mut groups: Vec<Value> = Vec::new();
            let mut seen = Vec::new();
            for r in all.iter().filter(|r| !r.group.is_empty()) {
                if seen.contains(&r.group) {
                    continue;
                }
                seen.push(r.group.clone());
                groups.push(group_entry(&all, &r.group));
            }
            Ok(respond("application/json", &json!({"kind":"APIGroupList","apiVersion":"v1","groups":groups})))
        }
        ApiPath::Group(g) if all.iter().any(|r| &r.group == g) => {
            let mut e = group_entry(&all, g);
            e["kind"] = json!("APIGroup");
            e["apiVersion"] = json!("v1");
            Ok(respond("application/json", &e))
        }
        ApiPath::GroupVersion { group, version } if srv.registry.has_group_version(group, version) => {
            let resources: Vec<Value> = all
                .iter()
                .filter(|r| &r.group == group && &r.version == version)
                .flat_map(|r| resource_entries(r))
                .collect();
            let gv = if group.is_empty() { version.clone() } else { format!("{group}/{version}") };
            Ok(respond("application/json", &json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":gv,"resources":resources})))
        }
        _ => Err(ApiError::no_route()),
    }
}

fn group_entry(all: &[std::sync::Arc<ResourceInfo>], group: &str) -> Value {
    let mut versions: Vec<String> = Vec::new();
    for r in all.iter().filter(|r| r.group == group) {
        if !versions.contains(&r.version) {
            versions.push(r.version.clone());
        }
    }
    let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

fn resource_entries(r: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
        "verbs": STANDARD_VERBS});
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    if r.status_subresource {
        out.push(json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": r.kind, "verbs": ["get", "patch", "update"]}));
    }
    if r.scale.is_some() {
        out.push(json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced,
            "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    for s in &r.extra_subresources {
        out.push(json!({"name": format!("{}/{}", r.plural, s.name), "singularName": "", "namespaced": r.namespaced,
            "kind": s.kind, "verbs": s.verbs}));
    }
    out
}

/// Answers `/openapi/v3` and `/openapi/v3/<group-version path>`.
pub fn openapi(_srv: &ApiServer, _path: &str, _accept: &str) -> ApiResult<Response> {
    Err(ApiError::no_route())
}

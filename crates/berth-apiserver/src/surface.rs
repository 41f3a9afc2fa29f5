//! Glue to the API surface: answers discovery and OpenAPI requests with the documents
//! [`crate::discovery`] and [`crate::openapi`] build from the registry, in the right media type.
//! Built-in kinds' OpenAPI schemas come from k8s-openapi.

use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::openapi::{self, KindSchema};
use crate::path::ApiPath;
use crate::resources::ResourceInfo;
use crate::state::ApiServer;

fn respond(content_type: &str, body: &Value) -> Response {
    ([(http::header::CONTENT_TYPE, content_type.to_string())], body.to_string()).into_response()
}

/// Answers `/api`, `/apis`, `/apis/G` and `/api/v1`, `/apis/G/V`.
pub fn discovery(srv: &ApiServer, path: &ApiPath, accept: &str) -> ApiResult<Response> {
    let all = srv.registry.all();
    let resources: Vec<&ResourceInfo> = all.iter().map(|r| r.as_ref()).collect();
    if !srv.options.legacy_discovery && discovery::wants_aggregated(accept) {
        match path {
            ApiPath::CoreRoot => return Ok(respond(discovery::AGGREGATED_CONTENT_TYPE, &discovery::aggregated(&resources, true))),
            ApiPath::GroupsRoot => return Ok(respond(discovery::AGGREGATED_CONTENT_TYPE, &discovery::aggregated(&resources, false))),
            _ => {}
        }
    }
    let doc = match path {
        ApiPath::CoreRoot => Some(discovery::api_versions("")),
        ApiPath::GroupsRoot => Some(discovery::api_group_list(&resources)),
        ApiPath::Group(g) => discovery::api_group(&resources, g),
        ApiPath::GroupVersion { group, version } => discovery::api_resource_list(&resources, group, version),
        _ => None,
    };
    doc.map(|d| respond("application/json", &d)).ok_or_else(ApiError::no_route)
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
            (("coordination.k8s.io", "Lease"), schema_of!(coordination::v1::Lease)),
            (("events.k8s.io", "Event"), schema_of!(events::v1::Event)),
        ];
        raw.into_iter()
            .filter_map(|(k, mut v)| {
                rewrite_refs(&mut v);
                let id = v.get("title")?.as_str()?.to_string();
                let refs = v.as_object_mut()?.remove("$defs").and_then(|d| d.as_object().cloned()).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("$schema");
                    m.remove("title");
                }
                Some((k, KindSchema { id, schema: v, refs: refs.into_iter().collect() }))
            })
            .collect()
    });
    if !r.builtin {
        return None;
    }
    cache.iter().find(|((g, k), _)| *g == r.group && *k == r.kind).map(|(_, v)| v.clone())
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

/// Answers `/openapi/v3` (the index) and `/openapi/v3/<group-version path>`.
pub fn openapi(srv: &ApiServer, path: &str, _accept: &str) -> ApiResult<Response> {
    let all = srv.registry.all();
    let resources: Vec<&ResourceInfo> = all.iter().map(|r| r.as_ref()).collect();
    let doc_of = |g: &str, v: &str| openapi::group_version_document(&resources, g, v, &builtin_schema);
    let rest = path.trim_start_matches("/openapi/v3").trim_matches('/');
    if rest.is_empty() {
        let index = openapi::root(&resources, &|g, v| doc_of(g, v).unwrap_or(Value::Null));
        return Ok(respond("application/json", &index));
    }
    let r = resources.iter().find(|r| openapi::gv_path(&r.group, &r.version) == rest).ok_or_else(ApiError::no_route)?;
    let doc = doc_of(&r.group, &r.version).ok_or_else(ApiError::no_route)?;
    Ok(respond("application/json", &doc))
}

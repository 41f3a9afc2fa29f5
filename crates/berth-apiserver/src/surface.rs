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

/// The aggregated discovery media type (KEP-3352).
const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the Accept header asks for aggregated discovery v2 before plain JSON.
fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let params: Vec<&str> = first.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io") && params.contains(&"v=v2") && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let kind = |g: &str, v: &str, k: &str| json!({"group": g, "version": v, "kind": k});
    let mut subs = Vec::new();
    if r.status_subresource {
        subs.push(json!({"subresource": "status", "responseKind": kind(&r.group, &r.version, &r.kind), "verbs": ["get", "patch", "update"]}));
    }
    if r.scale.is_some() {
        subs.push(json!({"subresource": "scale", "responseKind": kind("autoscaling", "v1", "Scale"), "verbs": ["get", "patch", "update"]}));
    }
    for s in &r.extra_subresources {
        subs.push(json!({"subresource": s.name, "responseKind": kind(&s.group, &s.version, &s.kind), "verbs": s.verbs}));
    }
    let mut e = json!({"resource": r.plural, "singularResource": r.singular,
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "responseKind": kind(&r.group, &r.version, &r.kind), "verbs": STANDARD_VERBS, "subresources": subs});
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    e
}

/// The APIGroupDiscoveryList for the core group (`core`) or all named groups.
fn aggregated(all: &[std::sync::Arc<ResourceInfo>], core: bool) -> Value {
    let mut groups: Vec<String> = Vec::new();
    for r in all.iter().filter(|r| r.group.is_empty() == core) {
        if !groups.contains(&r.group) {
            groups.push(r.group.clone());
        }
    }
    let items: Vec<Value> = groups
        .iter()
        .map(|g| {
            let mut versions: Vec<String> = Vec::new();
            for r in all.iter().filter(|r| &r.group == g) {
                if !versions.contains(&r.version) {
                    versions.push(r.version.clone());
                }
            }
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let rs: Vec<Value> = all.iter().filter(|r| &r.group == g && &r.version == v).map(|r| aggregated_resource(r)).collect();
                    json!({"version": v, "resources": rs, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": vs})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Answers `/api`, `/apis`, `/apis/G` and `/api/v1`, `/apis/G/V`.
pub fn discovery(srv: &ApiServer, path: &ApiPath, accept: &str) -> ApiResult<Response> {
    let all = srv.registry.all();
    if !srv.options.legacy_discovery && wants_aggregated(accept) {
        match path {
            ApiPath::CoreRoot => return Ok(respond(AGGREGATED, &aggregated(&all, true))),
            ApiPath::GroupsRoot => return Ok(respond(AGGREGATED, &aggregated(&all, false))),
            _ => {}
        }
    }
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

/// The OpenAPI component name of a kind: reversed group + version + kind
/// (`dev.berth.v1alpha1.ModelService`, `io.k8s.api.core.v1.Pod` for core).
fn schema_id(r: &ResourceInfo) -> String {
    if let Some((id, _, _)) = builtin_schema(r) {
        return id.clone();
    }
    if r.group.is_empty() {
        return format!("io.k8s.api.core.v1.{}", r.kind);
    }
    let mut parts: Vec<&str> = r.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), r.version, r.kind)
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn object_meta_schema() -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    json!({"type": "object", "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": s("Name must be unique within a namespace."),
            "generateName": s("Optional prefix used by the server to generate a unique name."),
            "namespace": s("Namespace defines the space within which each name must be unique."),
            "uid": s("UID is the unique in time and space value for this object."),
            "resourceVersion": s("An opaque value that represents the internal version of this object."),
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": s("CreationTimestamp is a timestamp representing the server time when this object was created."),
            "deletionTimestamp": s("DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."),
            "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values for organizing and categorizing objects."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Unstructured key value map stored with a resource."},
            "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "Objects depended by this object."},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "Field ownership of this object."},
        }})
}

/// A published schema: (component id, schema, the component schemas it references).
type PublishedSchema = (String, Value, serde_json::Map<String, Value>);

/// The published schema of a built-in kind (from k8s-openapi), with `$ref`s pointing into
/// `#/components/schemas/`.
fn builtin_schema(r: &ResourceInfo) -> Option<&'static PublishedSchema> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static CACHE: OnceLock<HashMap<(&'static str, &'static str), PublishedSchema>> = OnceLock::new();
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
                let defs = v.as_object_mut()?.remove("$defs").and_then(|d| d.as_object().cloned()).unwrap_or_default();
                if let Some(m) = v.as_object_mut() {
                    m.remove("$schema");
                    m.remove("title");
                }
                Some((k, (id, v, defs)))
            })
            .collect()
    });
    if !r.builtin {
        return None;
    }
    cache.iter().find(|((g, k), _)| *g == r.group && *k == r.kind).map(|(_, v)| v)
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

/// The component schema of a resource: the CRD's structural schema, or an open object for built-ins.
fn kind_schema(r: &ResourceInfo) -> Value {
    let mut schema = r.schema.clone().unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if !schema.is_object() {
        schema = json!({"type": "object"});
    }
    schema["properties"]["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
    schema["properties"]["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
    schema["properties"]["metadata"] = json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
        "description": "Standard object's metadata."});
    if schema.get("description").is_none() {
        schema["description"] = json!(format!("{} is served by berth.", r.kind));
    }
    schema["x-kubernetes-group-version-kind"] = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
    schema
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operations(r: &ResourceInfo) -> (Value, Value) {
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_id(r))});
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}});
    let write_params = json!([
        query_param("dryRun", "When present, indicates that modifications should not be persisted."),
        query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict."),
    ]);
    let mut patch_params = write_params.clone();
    if let Some(a) = patch_params.as_array_mut() {
        a.push(query_param("force", "Force is going to \"force\" Apply requests."));
    }
    let mut patch_types = serde_json::Map::new();
    for ct in ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"] {
        patch_types.insert(ct.into(), json!({"schema": {"type": "object"}}));
    }
    let op = |action: &str, extra: Value| {
        let mut o = json!({"operationId": format!("{action}{}", r.kind), "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk, "responses": ok});
        if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        o
    };
    let item = json!({
        "get": op("get", json!({})),
        "put": op("put", json!({"parameters": write_params, "requestBody": {"content": {"application/json": {"schema": reference}}}})),
        "patch": op("patch", json!({"parameters": patch_params, "requestBody": {"content": patch_types}})),
        "delete": op("delete", json!({})),
    });
    let collection = json!({
        "get": op("list", json!({})),
        "post": op("post", json!({"parameters": write_params, "requestBody": {"content": {"application/json": {"schema": reference}}}})),
    });
    (item, collection)
}

fn gv_prefix(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// The OpenAPI v3 document of one group version.
fn gv_document(resources: &[std::sync::Arc<ResourceInfo>]) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    schemas.insert(OBJECT_META.into(), object_meta_schema());
    for r in resources {
        let base = format!("/{}", gv_prefix(&r.group, &r.version));
        let coll = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let (item, collection) = operations(r);
        paths.insert(format!("{coll}/{{name}}"), item);
        paths.insert(coll, collection);
        match builtin_schema(r) {
            Some((_, schema, defs)) => {
                let mut schema = schema.clone();
                schema["x-kubernetes-group-version-kind"] = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
                schemas.insert(schema_id(r), schema);
                schemas.extend(defs.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            None => {
                schemas.insert(schema_id(r), kind_schema(r));
            }
        }
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths, "components": {"schemas": schemas}})
}

fn hash_of(v: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha512::digest(v.to_string().as_bytes());
    hex::encode(&digest[..32]).to_uppercase()
}

/// Answers `/openapi/v3` and `/openapi/v3/<group-version path>`.
pub fn openapi(srv: &ApiServer, path: &str, _accept: &str) -> ApiResult<Response> {
    let all = srv.registry.all();
    let mut gvs: Vec<(String, String)> = Vec::new();
    for r in &all {
        let gv = (r.group.clone(), r.version.clone());
        if !gvs.contains(&gv) {
            gvs.push(gv);
        }
    }
    let doc_of = |g: &str, v: &str| {
        let rs: Vec<_> = all.iter().filter(|r| r.group == g && r.version == v).cloned().collect();
        gv_document(&rs)
    };
    let rest = path.trim_start_matches("/openapi/v3").trim_matches('/');
    if rest.is_empty() {
        let mut paths = serde_json::Map::new();
        for (g, v) in &gvs {
            let p = gv_prefix(g, v);
            let url = format!("/openapi/v3/{p}?hash={}", hash_of(&doc_of(g, v)));
            paths.insert(p, json!({"serverRelativeURL": url}));
        }
        return Ok(respond("application/json", &json!({"paths": paths})));
    }
    let (g, v) = gvs
        .iter()
        .find(|(g, v)| gv_prefix(g, v) == rest)
        .ok_or_else(ApiError::no_route)?;
    Ok(respond("application/json", &doc_of(g, v)))
}

//! OpenAPI v3 documents generated from the resource registry: the root index (`/openapi/v3`,
//! one `serverRelativeURL` with a content hash per group version) and one document per group
//! version with item/collection paths and `components.schemas` (what `kubectl explain` and
//! kubectl's field validation read).
//!
//! Pure and deterministic (sorted maps, no clocks), so a document's hash only changes when the
//! served resources do. Built-in kinds' full schemas (from k8s-openapi) are supplied by the
//! caller as [`KindSchema`]s; without one a kind is published as an open object.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::resources::ResourceInfo;

/// A published schema for a kind: its component id and schema, plus the component schemas it
/// references (`#/components/schemas/<id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct KindSchema {
    /// Component id, e.g. `io.k8s.api.core.v1.Pod`.
    pub id: String,
    /// The kind's schema.
    pub schema: Value,
    /// Schemas it references, by component id.
    pub refs: BTreeMap<String, Value>,
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The document path of a group version: `api/v1` or `apis/<group>/<version>`.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Upper-case hex of the first 32 bytes of SHA-512 of the document's JSON (the `hash` query
/// value clients cache documents by).
pub fn hash(doc: &Value) -> String {
    let digest = sha2::Sha512::digest(doc.to_string().as_bytes());
    hex::encode_upper(&digest[..32])
}

/// The `/openapi/v3` index: `{"paths": {"<gv path>": {"serverRelativeURL": ".../<gv path>?hash=H"}}}`
/// for the group versions of `resources`, each document built by `doc_of`.
pub fn root(resources: &[&ResourceInfo], doc_of: &dyn Fn(&str, &str) -> Value) -> Value {
    let mut paths = BTreeMap::new();
    for r in resources {
        let p = gv_path(&r.group, &r.version);
        if let std::collections::btree_map::Entry::Vacant(slot) = paths.entry(p) {
            let url = format!(
                "/openapi/v3/{}?hash={}",
                slot.key(),
                hash(&doc_of(&r.group, &r.version))
            );
            slot.insert(json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

/// The component id of a kind without a supplied schema: reversed group, version, kind
/// (`dev.berth.v1alpha1.ModelService`; `io.k8s.api.core.v1.Pod` for the core group).
pub fn component_id(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        return format!("io.k8s.api.core.{}.{}", r.version, r.kind);
    }
    let mut parts: Vec<&str> = r.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), r.version, r.kind)
}

/// The OpenAPI v3 document of the group version `group`/`version`; `builtin_schema` supplies
/// complete schemas for built-in kinds.
pub fn group_version_document(
    resources: &[&ResourceInfo],
    group: &str,
    version: &str,
    builtin_schema: &dyn Fn(&ResourceInfo) -> Option<KindSchema>,
) -> Option<Value> {
    let served: Vec<&&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut paths: BTreeMap<String, Value> = BTreeMap::new();
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    schemas.insert(OBJECT_META.into(), object_meta_schema());
    for r in served {
        let gvk = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        let id = match builtin_schema(r) {
            Some(k) => {
                let mut s = k.schema;
                s["x-kubernetes-group-version-kind"] = gvk;
                schemas.insert(k.id.clone(), s);
                schemas.extend(k.refs);
                k.id
            }
            None => {
                let id = component_id(r);
                schemas.insert(id.clone(), crd_kind_schema(r, gvk));
                id
            }
        };
        let base = format!("/{}", gv_path(&r.group, &r.version));
        let collection = match r.namespaced {
            true => format!("{base}/namespaces/{{namespace}}/{}", r.plural),
            false => format!("{base}/{}", r.plural),
        };
        // Strategic merge patch is only advertised where the schema carries patch strategies:
        // kubectl then computes its patches from this schema, and without the strategies it
        // would treat every list as atomic (sending whole lists the server merges by key).
        let smp = r.builtin && builtin_schema(r).is_some_and(|k| has_patch_strategies(&k));
        if r.status_subresource {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                item_operations(r, &id, smp),
            );
        }
        paths.insert(
            format!("{collection}/{{name}}"),
            item_operations(r, &id, smp),
        );
        paths.insert(collection, collection_operations(r, &id));
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths, "components": {"schemas": schemas}}),
    )
}

/// Whether a kind's schema or one it references declares `x-kubernetes-patch-strategy`.
fn has_patch_strategies(k: &KindSchema) -> bool {
    fn declares(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                m.contains_key("x-kubernetes-patch-strategy") || m.values().any(declares)
            }
            Value::Array(a) => a.iter().any(declares),
            _ => false,
        }
    }
    declares(&k.schema) || k.refs.values().any(declares)
}

/// A CRD's structural schema with apiVersion/kind/metadata filled in and the GVK list attached.
fn crd_kind_schema(r: &ResourceInfo, gvk: Value) -> Value {
    let mut s = match &r.schema {
        Some(v) if v.is_object() => v.clone(),
        _ => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    };
    s["properties"]["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
    s["properties"]["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
    s["properties"]["metadata"] = json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}], "description": "Standard object's metadata."});
    s["x-kubernetes-group-version-kind"] = gvk;
    s
}

fn param(name: &str, description: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
            "string",
        ),
        param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
            "string",
        ),
        param(
            "fieldValidation",
            "How to handle unknown or duplicate fields: Ignore, Warn or Strict.",
            "string",
        ),
    ]
}

fn operation(r: &ResourceInfo, action: &str, id: &str, extra: Value) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{id}")});
    let mut op = json!({"operationId": format!("{action}{}", r.kind), "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}}});
    if let (Some(o), Value::Object(e)) = (op.as_object_mut(), extra) {
        o.extend(e);
    }
    op
}

fn item_operations(r: &ResourceInfo, id: &str, smp: bool) -> Value {
    let body = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{id}")}}}});
    let mut patch_params = write_params();
    patch_params.push(param(
        "force",
        "Force is going to \"force\" Apply requests.",
        "boolean",
    ));
    let mut types = Map::new();
    for ct in [
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ] {
        types.insert(ct.into(), json!({"schema": {"type": "object"}}));
    }
    if smp {
        types.insert(
            "application/strategic-merge-patch+json".into(),
            json!({"schema": {"type": "object"}}),
        );
    }
    json!({
        "get": operation(r, "get", id, json!({})),
        "put": operation(r, "put", id, json!({"parameters": write_params(), "requestBody": body})),
        "patch": operation(r, "patch", id, json!({"parameters": patch_params, "requestBody": {"content": types}})),
        "delete": operation(r, "delete", id, json!({"parameters": [param("dryRun", "When present, indicates that modifications should not be persisted.", "string")]})),
    })
}

fn collection_operations(r: &ResourceInfo, id: &str) -> Value {
    let body = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{id}")}}}});
    json!({
        "get": operation(r, "list", id, json!({})),
        "post": operation(r, "post", id, json!({"parameters": write_params(), "requestBody": body})),
    })
}

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
        "creationTimestamp": s("The server time when this object was created (RFC 3339)."),
        "deletionTimestamp": s("RFC 3339 date and time at which this resource will be deleted."),
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values for organizing and categorizing objects."},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Unstructured key value map stored with a resource."},
        "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
        "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "Objects depended by this object."},
        "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "Field ownership of this object."},
    }})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;

    fn modelservice() -> ResourceInfo {
        let mut ms = builtins().into_iter().find(|r| r.plural == "pods").unwrap();
        ms.group = "berth.dev".into();
        ms.version = "v1alpha1".into();
        ms.kind = "ModelService".into();
        ms.plural = "modelservices".into();
        ms.builtin = false;
        ms.schema = Some(
            json!({"type": "object", "properties": {"spec": {"type": "object", "description": "Desired state.",
            "properties": {"replicas": {"type": "integer"}, "image": {"type": "string"}}, "required": ["image"]}}}),
        );
        ms
    }

    fn no_builtins(_: &ResourceInfo) -> Option<KindSchema> {
        None
    }

    #[test]
    fn crd_document_has_patch_metadata_and_explainable_schema() {
        let ms = modelservice();
        let doc = group_version_document(&[&ms], "berth.dev", "v1alpha1", &no_builtins).unwrap();
        let item =
            &doc["paths"]["/apis/berth.dev/v1alpha1/namespaces/{namespace}/modelservices/{name}"];
        let patch = &item["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "berth.dev", "version": "v1alpha1", "kind": "ModelService"})
        );
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            params,
            ["dryRun", "fieldManager", "fieldValidation", "force"]
        );
        let types: Vec<&String> = patch["requestBody"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert!(
            !types.iter().any(|t| t.contains("strategic")),
            "no strategic merge patch for CRDs: {types:?}"
        );
        for verb in ["get", "put", "delete"] {
            assert!(item.get(verb).is_some(), "{verb}");
        }
        assert!(
            doc["paths"]["/apis/berth.dev/v1alpha1/namespaces/{namespace}/modelservices"]["post"]
                .is_object()
        );
        let schema = &doc["components"]["schemas"]["dev.berth.v1alpha1.ModelService"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group": "berth.dev", "version": "v1alpha1", "kind": "ModelService"}])
        );
        assert_eq!(schema["properties"]["spec"]["required"], json!(["image"]));
        assert!(doc["components"]["schemas"][OBJECT_META].is_object());
        assert!(group_version_document(&[&ms], "berth.dev", "v9", &no_builtins).is_none());
    }

    #[test]
    fn builtins_use_supplied_schemas_and_advertise_strategic_merge() {
        let all = builtins();
        let pods = all
            .iter()
            .find(|r| r.plural == "pods" && r.group.is_empty())
            .unwrap();
        let pod_spec =
            |containers: Value| json!({"type": "object", "properties": {"containers": containers}});
        let supplied = |spec: Value| {
            move |r: &ResourceInfo| {
                (r.kind == "Pod").then(|| KindSchema {
                    id: "io.k8s.api.core.v1.Pod".into(),
                    schema: json!({"type": "object", "properties": {"spec": {"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}}}),
                    refs: BTreeMap::from([("io.k8s.api.core.v1.PodSpec".to_string(), spec.clone())]),
                })
            }
        };
        let with_strategies = pod_spec(
            json!({"type": "array", "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "name"}),
        );
        let doc = group_version_document(&[pods], "", "v1", &supplied(with_strategies)).unwrap();
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"].is_object());
        assert_eq!(
            doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"]
                [0]["kind"],
            "Pod"
        );
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
        assert!(doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"].is_object());
        // Without patch strategies kubectl would compute atomic-list patches from the schema.
        let doc = group_version_document(
            &[pods],
            "",
            "v1",
            &supplied(pod_spec(json!({"type": "array"}))),
        )
        .unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert!(
            patch["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
    }

    #[test]
    fn root_index_hashes_are_stable_and_track_content() {
        let ms = modelservice();
        let all = builtins();
        let mut refs: Vec<&ResourceInfo> = all.iter().collect();
        refs.push(&ms);
        let doc_of = |g: &str, v: &str| {
            group_version_document(&refs, g, v, &no_builtins).unwrap_or(Value::Null)
        };
        let a = root(&refs, &doc_of);
        assert_eq!(a, root(&refs, &doc_of), "deterministic");
        let url = a["paths"]["apis/berth.dev/v1alpha1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(
            url.starts_with("/openapi/v3/apis/berth.dev/v1alpha1?hash="),
            "{url}"
        );
        assert!(a["paths"]["api/v1"].is_object());
        let mut changed = modelservice();
        changed.schema = Some(json!({"type": "object"}));
        let mut refs2: Vec<&ResourceInfo> = all.iter().collect();
        refs2.push(&changed);
        let doc_of2 = |g: &str, v: &str| {
            group_version_document(&refs2, g, v, &no_builtins).unwrap_or(Value::Null)
        };
        let b = root(&refs2, &doc_of2);
        assert_ne!(
            a["paths"]["apis/berth.dev/v1alpha1"],
            b["paths"]["apis/berth.dev/v1alpha1"]
        );
        assert_eq!(a["paths"]["api/v1"], b["paths"]["api/v1"]);
    }
}

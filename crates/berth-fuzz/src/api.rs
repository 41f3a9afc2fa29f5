//! Targets of the API server and the CLI: request bodies (JSON or YAML) through type checks,
//! pruning and validation; `berth apply -f` manifest streams; the four patch formats.

use std::sync::OnceLock;

use berth_apiserver::patch::{self, Writer};
use berth_apiserver::resources::{ResourceInfo, builtins, from_crd};
use berth_apiserver::rest::patch::{PatchType, apply_patch};
use berth_apiserver::rest::{check_type, parse_body};
use berth_apiserver::{crd, object, schema};
use bytes::Bytes;
use serde_json::{Value, json};

/// The `berth apply -f` manifest reader, compiled from the CLI's own source: the `berth` crate
/// is a binary, and this file depends on nothing of it but serde.
#[allow(dead_code)]
#[path = "../../berth/src/client/manifest.rs"]
mod cli_manifest;

/// The example ModelService shipped in `manifests/`, as the API server stores it.
const MODEL_SERVICE: &str = include_str!("../../../manifests/examples/churn-model.yaml");

/// A Pod with the lists strategic merge keys on (containers, ports, env, volumes).
fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"},
                     "finalizers": ["x"], "resourceVersion": "7"},
        "spec": {
            "containers": [{"name": "c", "image": "i", "args": ["a", "b"],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "K", "value": "v"}],
                            "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}]
        }
    })
}

/// The example ModelService as JSON.
fn model_service() -> Value {
    serde_yaml::from_str(MODEL_SERVICE).unwrap_or(Value::Null)
}

/// Every kind the API server serves at start: the built-ins and the ModelService CRD.
fn resources() -> &'static [ResourceInfo] {
    static ALL: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = builtins();
        all.extend(from_crd(&berth_api::crd_json()));
        all
    })
}

/// The resource serving `kind`, or ModelService (the kind most manifests are).
fn resource_of(kind: &str) -> &'static ResourceInfo {
    let all = resources();
    all.iter()
        .find(|r| r.kind == kind)
        .or_else(|| all.iter().find(|r| r.kind == "ModelService"))
        .unwrap_or(&all[0])
}

/// A create or update body, as the API server reads it: decoded (JSON, else YAML), typed against
/// the resource its `kind` names, pruned and validated by the resource's schema, the name
/// checked, then berth's ModelService rules or, for a CRD, its validation and registry entries.
pub fn manifest(data: &[u8]) {
    let Ok(mut obj) = parse_body(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let r = resource_of(&kind);
    if check_type(r, &mut obj).is_err() {
        return;
    }
    if let Some(s) = &r.schema {
        schema::prune(&mut obj, s);
        schema::validate(&obj, s);
    }
    object::name_problem(object::name(&obj).unwrap_or_default());
    match r.kind.as_str() {
        "ModelService" => drop(berth_api::validate_value(&obj)),
        "CustomResourceDefinition" if crd::validate(&obj).is_empty() => drop(from_crd(&obj)),
        _ => {}
    }
}

/// A `berth apply -f` file: a YAML stream of documents, `List`s flattened, each checked for
/// apiVersion, kind and name.
pub fn manifest_stream(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cli_manifest::parse_docs(text, "fuzz.yaml");
    }
}

/// A JSON patch (RFC 6902) body applied to the example ModelService and to a Pod.
pub fn json_patch(data: &[u8]) {
    plain_patch(PatchType::Json, data);
}

/// A JSON merge patch (RFC 7386) body applied to the example ModelService and to a Pod.
pub fn merge_patch(data: &[u8]) {
    plain_patch(PatchType::Merge, data);
}

/// A strategic merge patch body applied to a Pod (the kind's list strategies) and to the example
/// ModelService (no known lists: every list is replaced).
pub fn strategic_merge_patch(data: &[u8]) {
    plain_patch(PatchType::Strategic, data);
}

fn plain_patch(pt: PatchType, data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    for target in [model_service(), pod()] {
        let _ = apply_patch(pt, &target, &body);
    }
}

/// A server-side apply body (YAML or JSON) applied by manager `fuzz`, with and without force, to
/// the live object of its kind (a Pod, else the example ModelService) that manager `other` has
/// applied before, then recorded as an update.
pub fn server_side_apply(data: &[u8]) {
    let Ok(applied) = parse_body(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let is_pod = applied["kind"] == "Pod";
    let r = resource_of(if is_pod { "Pod" } else { "ModelService" });
    let list_types = patch::list_types(&r.kind, r.schema.as_ref());
    let api_version = r.api_version();
    let writer = |manager| Writer {
        manager,
        api_version: &api_version,
        time: "2026-01-01T00:00:00Z",
        subresource: None,
    };
    let base = if is_pod { pod() } else { model_service() };
    let Ok(live) = patch::apply(None, &base, writer("other"), false, &list_types) else {
        return;
    };
    for force in [false, true] {
        if let Ok(mut out) = patch::apply(Some(&live), &applied, writer("fuzz"), force, &list_types)
        {
            patch::unchanged(&live, &out);
            let old = out.clone();
            patch::record_update(&old, &mut out, writer("fuzz-update"), &list_types);
        }
    }
    if patch::apply(None, &applied, writer("fuzz"), false, &list_types).is_ok() {
        let mut created = applied.clone();
        patch::record_update(&live, &mut created, writer("fuzz-update"), &list_types);
    }
}

//! The CRD berth serves: its shape, and that the committed manifest is exactly `berth crd`'s output.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use serde_json::Value;

fn walk(schema: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    for k in [
        "$ref",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "$schema",
        "definitions",
    ] {
        if obj.contains_key(k) {
            problems.push(format!("{path}: has {k}"));
        }
    }
    let typed = obj.contains_key("type")
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !typed {
        problems.push(format!("{path}: no type"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(v, &format!("{path}.{k}"), problems);
        }
    }
    if let Some(items) = obj.get("items") {
        walk(items, &format!("{path}[]"), problems);
    }
    if let Some(ap) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        walk(ap, &format!("{path}{{}}"), problems);
    }
}

#[test]
fn schema_is_structural() {
    let crd = berth_api::crd_json();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    walk(schema, "", &mut problems);
    assert_eq!(problems, Vec::<String>::new());
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["replicas"]["default"], 1);
    let surge = &spec["strategy"]["properties"]["rollingUpdate"]["properties"]["maxSurge"];
    assert_eq!(surge["x-kubernetes-int-or-string"], true);
}

#[test]
fn names_subresources_and_columns() {
    let crd = berth_api::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("modelservices.berth.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["ms".to_string()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["all".to_string()]));
    let scale = berth_api::scale_subresource().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let cols: Vec<(String, i32)> = berth_api::printer_columns()
        .into_iter()
        .map(|c| (c.name, c.priority.unwrap_or(0)))
        .collect();
    let want = [
        ("Image", 0),
        ("Desired", 0),
        ("Ready", 0),
        ("Up-To-Date", 0),
        ("Available", 1),
        ("Port", 1),
        ("Age", 0),
    ];
    assert_eq!(cols, want.map(|(n, p)| (n.to_string(), p)).to_vec());
}

#[test]
fn committed_manifest_matches_generated_crd() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/crds/modelservices.berth.dev.yaml"
    );
    let committed =
        std::fs::read_to_string(path).expect("manifests/crds/modelservices.berth.dev.yaml exists");
    assert!(
        committed == berth_api::crd_yaml().unwrap(),
        "manifests/crds/modelservices.berth.dev.yaml is stale: regenerate it with `berth crd > {path}`"
    );
}

#[test]
fn example_manifest_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/examples/churn-model.yaml"
    );
    let text = std::fs::read_to_string(path).expect("example exists");
    let ms: berth_api::ModelService = serde_yaml::from_str(&text).unwrap();
    assert_eq!(ms.metadata.name.as_deref(), Some("churn-model"));
    assert_eq!(ms.spec.replicas, 3);
    berth_api::validate(&ms).unwrap();
}

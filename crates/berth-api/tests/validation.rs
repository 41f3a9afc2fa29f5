//! ModelService validation as a user sees it: every problem, each with its Kubernetes field path.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_api::{ErrorType, ModelService, validate, validate_value};
use serde_json::{Value, json};

fn churn() -> Value {
    json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "ModelService",
        "metadata": {"name": "churn-model", "namespace": "default"},
        "spec": {
            "image": "localhost:5000/churn-model:v1",
            "replicas": 3,
            "env": [{"name": "MODEL_PATH", "value": "/app/models/churn.json"}],
            "ports": [{"name": "http", "containerPort": 8000}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
            "livenessProbe": {"httpGet": {"path": "/health", "port": 8000}},
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
            "service": {"port": 8000, "targetPort": "http"}
        }
    })
}

fn fields(obj: &Value) -> Vec<(String, &'static str)> {
    validate_value(obj)
        .into_iter()
        .map(|e| (e.field.clone(), e.reason()))
        .collect()
}

#[test]
fn a_good_service_is_valid() {
    assert_eq!(fields(&churn()), vec![]);
    let ms: ModelService = serde_json::from_value(churn()).unwrap();
    assert!(validate(&ms).is_ok());
}

#[test]
fn replicas_default_to_one() {
    let mut obj = churn();
    obj["spec"].as_object_mut().unwrap().remove("replicas");
    let ms: ModelService = serde_json::from_value(obj).unwrap();
    assert_eq!(ms.spec.replicas, 1);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let mut obj = churn();
    obj["metadata"]["name"] = json!("Bad_Name");
    obj["spec"]["replicas"] = json!(-1);
    obj["spec"]["image"] = json!("Not An Image");
    obj["spec"]["ports"] = json!([
        {"name": "http", "containerPort": 8000},
        {"name": "http", "containerPort": 70000},
        {"name": "metrics", "containerPort": 8000}
    ]);
    obj["spec"]["readinessProbe"]["httpGet"]["port"] = json!("grpc");
    obj["spec"]["env"][0]["name"] = json!("1BAD");
    obj["spec"]["resources"]["requests"]["memory"] = json!("12 bytes");
    obj["spec"]["service"]["port"] = json!(0);
    obj["spec"]["progressDeadlineSeconds"] = json!(0);
    let got = fields(&obj);
    let want = [
        ("metadata.name", "FieldValueInvalid"),
        ("spec.image", "FieldValueInvalid"),
        ("spec.replicas", "FieldValueInvalid"),
        ("spec.env[0].name", "FieldValueInvalid"),
        ("spec.ports[1].containerPort", "FieldValueInvalid"),
        ("spec.ports[1].name", "FieldValueDuplicate"),
        ("spec.ports[2].containerPort", "FieldValueDuplicate"),
        ("spec.readinessProbe.httpGet.port", "FieldValueInvalid"),
        ("spec.resources.requests[memory]", "FieldValueInvalid"),
        ("spec.service.port", "FieldValueInvalid"),
        ("spec.progressDeadlineSeconds", "FieldValueInvalid"),
    ];
    for (field, reason) in want {
        assert!(
            got.contains(&(field.to_string(), reason)),
            "missing {field} {reason} in {got:?}"
        );
    }
    assert_eq!(got.len(), want.len(), "unexpected extra errors: {got:?}");
}

#[test]
fn messages_read_like_kube_apiserver() {
    let mut obj = churn();
    obj["spec"]["replicas"] = json!(-1);
    let errs = validate_value(&obj);
    assert_eq!(
        errs[0].to_string(),
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    obj["spec"]["image"] = json!("");
    let errs = validate_value(&obj);
    assert!(
        errs.iter()
            .any(|e| e.to_string() == "spec.image: Required value"),
        "{errs:?}"
    );
}

#[test]
fn names_must_leave_room_for_pod_suffixes() {
    let mut obj = churn();
    obj["metadata"]["name"] = json!("a".repeat(47));
    assert_eq!(
        fields(&obj),
        vec![("metadata.name".to_string(), "FieldValueInvalid")]
    );
    obj["metadata"]["name"] = json!("a".repeat(46));
    assert_eq!(fields(&obj), vec![]);
    obj["metadata"].as_object_mut().unwrap().remove("name");
    assert_eq!(
        fields(&obj),
        vec![("metadata.name".to_string(), "FieldValueRequired")]
    );
}

#[test]
fn probes_need_exactly_one_handler_and_known_ports() {
    let mut obj = churn();
    obj["spec"]["livenessProbe"] = json!({"periodSeconds": 5});
    obj["spec"]["startupProbe"] = json!({"tcpSocket": {"port": "http"}, "exec": {"command": ["true"]}, "successThreshold": 2});
    obj["spec"]["readinessProbe"] = json!({"tcpSocket": {"port": 0}});
    let got = fields(&obj);
    assert_eq!(
        got,
        vec![
            (
                "spec.readinessProbe.tcpSocket.port".to_string(),
                "FieldValueInvalid"
            ),
            ("spec.livenessProbe".to_string(), "FieldValueRequired"),
            ("spec.startupProbe".to_string(), "FieldValueInvalid"),
            (
                "spec.startupProbe.successThreshold".to_string(),
                "FieldValueInvalid"
            ),
        ]
    );
}

#[test]
fn rolling_update_bounds() {
    let mut obj = churn();
    obj["spec"]["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}});
    assert_eq!(
        fields(&obj),
        vec![(
            "spec.strategy.rollingUpdate.maxUnavailable".to_string(),
            "FieldValueInvalid"
        )]
    );
    obj["spec"]["strategy"] =
        json!({"rollingUpdate": {"maxSurge": "lots", "maxUnavailable": "150%"}});
    assert_eq!(
        fields(&obj),
        vec![
            (
                "spec.strategy.rollingUpdate.maxSurge".to_string(),
                "FieldValueInvalid"
            ),
            (
                "spec.strategy.rollingUpdate.maxUnavailable".to_string(),
                "FieldValueInvalid"
            ),
        ]
    );
    let ms: ModelService = serde_json::from_value(churn()).unwrap();
    let mut defaulted = ms.clone();
    defaulted.spec.strategy = None;
    assert_eq!(
        defaulted.spec.max_surge(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("25%".into())
    );
}

#[test]
fn requests_may_not_exceed_limits() {
    let mut obj = churn();
    obj["spec"]["resources"] = json!({"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}});
    let errs = validate_value(&obj);
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0].to_string(),
        "spec.resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 500m"
    );
}

#[test]
fn wrong_shapes_name_the_field() {
    let mut obj = churn();
    obj["spec"]["replicas"] = json!("three");
    let errs = validate_value(&obj);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec.replicas");
    let mut obj = churn();
    obj.as_object_mut().unwrap().remove("spec");
    let errs = validate_value(&obj);
    assert_eq!(
        (errs[0].field.as_str(), errs[0].error_type),
        ("spec", ErrorType::Required)
    );
    let mut obj = churn();
    obj["spec"]["imagePullPolicy"] = json!("Sometimes");
    assert_eq!(validate_value(&obj)[0].field, "spec.imagePullPolicy");
}

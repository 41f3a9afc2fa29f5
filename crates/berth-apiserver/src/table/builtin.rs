//! The columns kubectl prints for built-in kinds (Pod, Node, Namespace, ConfigMap, Secret,
//! Service, Event, Lease, ResourceQuota, CustomResourceDefinition) and how each kind's cells are computed
//! from the object, as kube-apiserver's table printers do.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{age, text};

/// Kinds whose kubectl columns [`super::Columns::Builtin`] knows.
pub(super) const KINDS: &[&str] = &[
    "Pod",
    "Node",
    "Namespace",
    "ConfigMap",
    "Secret",
    "Service",
    "Event",
    "Lease",
    "ResourceQuota",
    "CustomResourceDefinition",
];

/// (name, type, priority) of a built-in kind's columns after NAME.
pub(super) fn columns(kind: &str) -> &'static [(&'static str, &'static str, i32)] {
    match kind {
        "Pod" => &[
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        "Node" => &[
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
        ],
        "Namespace" => &[("Status", "string", 0), ("Age", "string", 0)],
        "ConfigMap" => &[("Data", "integer", 0), ("Age", "string", 0)],
        "Secret" => &[
            ("Type", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        "Service" => &[
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "Event" => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        "Lease" => &[("Holder", "string", 0), ("Age", "string", 0)],
        "ResourceQuota" => &[
            ("Age", "string", 0),
            ("Request", "string", 0),
            ("Limit", "string", 0),
        ],
        "CustomResourceDefinition" => &[("Created At", "date", 0)],
        _ => &[("Age", "string", 0)],
    }
}

/// The cells of a built-in kind's columns after NAME (`age_`: the object's age, rendered).
pub(super) fn cells(kind: &str, o: &Value, age_: &str, now: DateTime<Utc>) -> Vec<Value> {
    match kind {
        "Pod" => pod_cells(o, age_),
        "Node" => node_cells(o, age_),
        "Namespace" => vec![json!(or_none(text(o, "/status/phase"))), json!(age_)],
        "ConfigMap" => vec![
            json!(count(o, "/data") + count(o, "/binaryData")),
            json!(age_),
        ],
        "Secret" => vec![
            json!(or_none(text(o, "/type"))),
            json!(count(o, "/data")),
            json!(age_),
        ],
        "Service" => service_cells(o, age_),
        "Event" => event_cells(o, now),
        "Lease" => vec![json!(text(o, "/spec/holderIdentity")), json!(age_)],
        "ResourceQuota" => quota_cells(o, age_),
        "CustomResourceDefinition" => vec![json!(text(o, "/metadata/creationTimestamp"))],
        _ => vec![json!(age_)],
    }
}

/// REQUEST and LIMIT: `key: used/hard` of each `status.hard` key, sorted, `limits.*` keys in
/// LIMIT (as kube-apiserver prints them).
fn quota_cells(o: &Value, age_: &str) -> Vec<Value> {
    let hard = o.pointer("/status/hard").and_then(Value::as_object);
    let mut keys: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
    keys.sort();
    let (mut request, mut limit) = (Vec::new(), Vec::new());
    for k in keys {
        let of = |part: &str| {
            let v = &o["status"][part][k.as_str()];
            v.as_str().map_or_else(|| v.to_string(), String::from)
        };
        let used = o["status"]["used"]
            .get(k.as_str())
            .map_or("0".into(), |_| of("used"));
        let cell = format!("{k}: {used}/{}", of("hard"));
        if k.starts_with("limits.") {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    vec![
        json!(age_),
        json!(request.join(", ")),
        json!(limit.join(", ")),
    ]
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

fn count(o: &Value, pointer: &str) -> usize {
    o.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn pod_cells(o: &Value, age_: &str) -> Vec<Value> {
    let statuses = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let total = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    vec![
        json!(format!("{ready}/{total}")),
        json!(pod_status(o, statuses)),
        json!(restarts.to_string()),
        json!(age_),
        json!(or_none(text(o, "/status/podIP"))),
        json!(or_none(text(o, "/spec/nodeName"))),
    ]
}

/// The STATUS column: Terminating, else a container's waiting/terminated reason, else the
/// status reason or phase.
fn pod_status(o: &Value, statuses: &[Value]) -> String {
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return "Terminating".into();
    }
    let mut reason = o
        .pointer("/status/reason")
        .and_then(Value::as_str)
        .or_else(|| o.pointer("/status/phase").and_then(Value::as_str))
        .unwrap_or("Pending")
        .to_string();
    for s in statuses.iter().rev() {
        if let Some(r) = s.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(t) = s.pointer("/state/terminated") {
            reason = match (
                t["reason"].as_str(),
                t["signal"].as_i64(),
                t["exitCode"].as_i64(),
            ) {
                (Some(r), _, _) => r.to_string(),
                (None, Some(sig), _) => format!("Signal:{sig}"),
                (None, None, code) => format!("ExitCode:{}", code.unwrap_or(0)),
            };
        }
    }
    reason
}

fn node_cells(o: &Value, age_: &str) -> Vec<Value> {
    let conditions = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    let mut status = match ready.map(|c| &c["status"]) {
        Some(Value::String(s)) if s == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<&str> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    let internal_ip = o
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
        .and_then(|a| a["address"].as_str())
        .unwrap_or("<none>");
    vec![
        json!(status),
        json!(or_none(roles.join(","))),
        json!(age_),
        json!(text(o, "/status/nodeInfo/kubeletVersion")),
        json!(internal_ip),
    ]
}

fn service_cells(o: &Value, age_: &str) -> Vec<Value> {
    let ports: Vec<String> = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    let external: Vec<String> = o
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i["ip"]
                .as_str()
                .or_else(|| i["hostname"].as_str())
                .map(String::from)
        })
        .chain(
            o.pointer("/spec/externalIPs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from)),
        )
        .collect();
    let selector: Vec<String> = o
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    vec![
        json!(if o.pointer("/spec/type").is_some() {
            text(o, "/spec/type")
        } else {
            "ClusterIP".into()
        }),
        json!(or_none(text(o, "/spec/clusterIP"))),
        json!(or_none(external.join(","))),
        json!(or_none(ports.join(","))),
        json!(age_),
        json!(or_none(selector.join(","))),
    ]
}

fn event_cells(o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last = [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .map(|p| text(o, p))
    .find(|s| !s.is_empty())
    .unwrap_or_default();
    let kind = text(o, "/involvedObject/kind").to_lowercase();
    vec![
        json!(age(&last, now)),
        json!(text(o, "/type")),
        json!(text(o, "/reason")),
        json!(format!("{kind}/{}", text(o, "/involvedObject/name"))),
        json!(text(o, "/message")),
    ]
}

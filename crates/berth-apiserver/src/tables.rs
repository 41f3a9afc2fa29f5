//! Server-side Tables (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`) built from each
//! resource's printer columns, so `kubectl get` shows the columns a CRD declares.

use serde_json::{Value, json};

use crate::object;
use crate::rest::Ctx;

/// A one-row Table for one object.
pub fn object_table(ctx: &Ctx, obj: &Value) -> Value {
    list_table(ctx, std::slice::from_ref(obj), json!({"resourceVersion": obj["metadata"]["resourceVersion"]}))
}

/// Formats an age like kubectl (`45s`, `12m`, `5h3m`, `3d4h`, `400d`).
pub fn age(timestamp: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) else { return "<unknown>".into() };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", secs % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

fn cell(obj: &Value, path: &str, ty: &str) -> Value {
    let Some(v) = object::get_path(obj, path) else { return Value::Null };
    match (ty, v) {
        ("date", Value::String(s)) => json!(age(s)),
        (_, Value::Array(a)) => json!(a.iter().map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>().join(",")),
        (_, Value::Object(_)) => json!(v.to_string()),
        _ => v.clone(),
    }
}

fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// Computed columns of kinds whose kubectl output is not a plain JSONPath (name, type, priority).
fn computed_columns(r: &crate::resources::ResourceInfo) -> Option<Vec<(&'static str, &'static str, i32)>> {
    match (r.builtin, r.group.as_str(), r.plural.as_str()) {
        (true, "", "pods") => Some(vec![
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ]),
        (true, "", "nodes") => Some(vec![("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0), ("Version", "string", 0)]),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let statuses = o["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.iter().filter(|s| s["ready"].as_bool() == Some(true)).count();
    let restarts: i64 = statuses.iter().filter_map(|s| s["restartCount"].as_i64()).sum();
    let waiting = statuses.iter().find_map(|s| s["state"]["waiting"]["reason"].as_str().map(String::from));
    let status = if o["metadata"].get("deletionTimestamp").is_some() {
        "Terminating".to_string()
    } else {
        waiting.unwrap_or_else(|| o["status"]["phase"].as_str().unwrap_or("Pending").to_string())
    };
    let or_none = |s: String| if s.is_empty() { "<none>".to_string() } else { s };
    vec![
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts.to_string()),
        json!(age(o["metadata"]["creationTimestamp"].as_str().unwrap_or_default())),
        json!(or_none(text(&o["status"]["podIP"]))),
        json!(or_none(text(&o["spec"]["nodeName"]))),
    ]
}

fn node_cells(o: &Value) -> Vec<Value> {
    let ready = o["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
    let mut status = match ready.map(|c| text(&c["status"])).as_deref() {
        Some("True") => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if o["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
        .collect();
    vec![
        json!(status),
        json!(if roles.is_empty() { "<none>".to_string() } else { roles.join(",") }),
        json!(age(o["metadata"]["creationTimestamp"].as_str().unwrap_or_default())),
        json!(text(&o["status"]["nodeInfo"]["kubeletVersion"])),
    ]
}

/// A Table of `items` with list metadata `meta`.
pub fn list_table(ctx: &Ctx, items: &[Value], meta: Value) -> Value {
    let cols = &ctx.r.printer_columns;
    let computed = computed_columns(&ctx.r);
    let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    match &computed {
        Some(cc) => defs.extend(cc.iter().map(|(name, ty, priority)| json!({"name": name, "type": ty, "format": "",
            "description": "", "priority": priority}))),
        None => defs.extend(cols.iter().map(|c| json!({"name": c.name, "type": c.type_, "format": c.format,
            "description": c.description, "priority": c.priority}))),
    }
    let include = ctx.query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            match (ctx.r.plural.as_str(), &computed) {
                ("pods", Some(_)) => cells.extend(pod_cells(o)),
                ("nodes", Some(_)) => cells.extend(node_cells(o)),
                _ => cells.extend(cols.iter().map(|c| cell(o, &c.json_path, &c.type_))),
            }
            let object = match include {
                "Object" => o.clone(),
                "None" => Value::Null,
                _ => partial_metadata(o),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_row_like_kubectl() {
        let pod = json!({"metadata":{"name":"p","creationTimestamp":"2020-01-01T00:00:00Z"},
            "spec":{"containers":[{"name":"a"},{"name":"b"}],"nodeName":"n1"},
            "status":{"phase":"Running","podIP":"10.0.0.2","containerStatuses":[
                {"name":"a","ready":true,"restartCount":2,"state":{"running":{}}},
                {"name":"b","ready":false,"restartCount":1,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}});
        let cells = pod_cells(&pod);
        assert_eq!(cells[0], "1/2");
        assert_eq!(cells[1], "CrashLoopBackOff");
        assert_eq!(cells[2], "3");
        assert!(cells[3].as_str().unwrap().ends_with('d'));
        assert_eq!((cells[4].as_str(), cells[5].as_str()), (Some("10.0.0.2"), Some("n1")));
    }

    #[test]
    fn ages_read_like_kubectl() {
        let ago = |s: i64| (chrono::Utc::now() - chrono::Duration::seconds(s)).to_rfc3339();
        assert_eq!(age(&ago(5)), "5s");
        assert_eq!(age(&ago(5 * 60 + 3)), "5m3s");
        assert_eq!(age(&ago(3600 * 5 + 60 * 7)), "5h7m");
        assert_eq!(age(&ago(86400 * 3 + 3600 * 4)), "3d4h");
    }
}

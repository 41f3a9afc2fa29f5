//! Server-side Tables (meta.k8s.io/v1 `Table`) for `kubectl get`: the columns kube-apiserver
//! prints for built-in kinds, and CRD `additionalPrinterColumns` evaluated as simple JSONPath
//! ([`crate::jsonpath`]).
//!
//! Pure: objects in, Table JSON out; the current time is a parameter so ages are testable.
//! This module assembles Tables and renders custom columns; the kubectl columns of built-in
//! kinds are in `builtin`.

mod builtin;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::jsonpath::jsonpath;
pub use crate::resources::PrinterColumn;
use crate::resources::ResourceInfo;

/// The columns of a served resource: kubectl's for known built-in kinds, else its printer
/// columns (CRDs' `additionalPrinterColumns`).
pub fn columns_for(r: &ResourceInfo) -> Columns<'_> {
    // events.k8s.io Events have another shape (regarding/note) than the core ones kubectl's
    // Event columns read.
    let core_shape = r.kind != "Event" || r.group.is_empty();
    if r.builtin && core_shape && builtin::KINDS.contains(&r.kind.as_str()) {
        Columns::Builtin(&r.kind)
    } else {
        Columns::Custom(&r.printer_columns)
    }
}

/// Which columns a resource's Table has.
#[derive(Debug, Clone, Copy)]
pub enum Columns<'a> {
    /// A built-in kind's kubectl columns, by kind (`Pod`, `Node`, ...). Unknown kinds get
    /// `NAME AGE`.
    Builtin(&'a str),
    /// A custom resource's printer columns (`NAME`, these, and `AGE` if none is a date column
    /// named Age, as kube-apiserver does).
    Custom(&'a [PrinterColumn]),
}

/// What each row's `object` carries (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A PartialObjectMetadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// From the `includeObject` query value (`None` when absent: the default).
    pub fn parse(v: Option<&str>) -> Option<Self> {
        match v {
            None | Some("") | Some("Metadata") => Some(Self::Metadata),
            Some("None") => Some(Self::None),
            Some("Object") => Some(Self::Object),
            Some(_) => None,
        }
    }
}

/// Whether an Accept header asks for a meta.k8s.io/v1 Table
/// (`application/json;as=Table;v=v1;g=meta.k8s.io`, possibly among other alternatives).
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|alt| {
        let mut parts = alt.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let params: Vec<(&str, &str)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| *pk == k && *pv == v);
        media == "application/json"
            && has("as", "Table")
            && has("g", "meta.k8s.io")
            && (has("v", "v1") || has("v", "v1beta1"))
    })
}

/// A Table of `items` (list `metadata` given by the caller: resourceVersion, continue).
pub fn table(
    columns: Columns<'_>,
    items: &[Value],
    list_meta: Value,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let defs = column_definitions(columns);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(columns, o, now), "object": row_object(o, include)}))
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": defs, "rows": rows})
}

/// The Table sent as a watch event's object: one row for `obj`. kube-apiserver omits the column
/// definitions after the first event; sending them every time is accepted by kubectl.
pub fn watch_event_table(
    columns: Columns<'_>,
    obj: &Value,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    table(
        columns,
        std::slice::from_ref(obj),
        json!({"resourceVersion": rv}),
        include,
        now,
    )
}

fn row_object(o: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => o.clone(),
        IncludeObject::Metadata => {
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({}))})
        }
    }
}

fn column_definitions(columns: Columns<'_>) -> Vec<Value> {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace."}),
    ];
    match columns {
        Columns::Builtin(kind) => defs.extend(builtin::columns(kind).iter().map(|(n, t, p)| {
            json!({"name": n, "type": t, "format": "", "description": "", "priority": p})
        })),
        Columns::Custom(cols) => {
            defs.extend(cols.iter().map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
            }));
            if !custom_has_age(cols) {
                defs.push(json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}));
            }
        }
    }
    defs
}

fn custom_has_age(cols: &[PrinterColumn]) -> bool {
    cols.iter().any(|c| c.name.eq_ignore_ascii_case("age"))
}

fn cells(columns: Columns<'_>, o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
    let created = text(o, "/metadata/creationTimestamp");
    match columns {
        Columns::Builtin(kind) => cells.extend(builtin::cells(kind, o, &age(&created, now), now)),
        Columns::Custom(cols) => {
            cells.extend(cols.iter().map(|c| custom_cell(o, c, now)));
            if !custom_has_age(cols) {
                cells.push(json!(age(&created, now)));
            }
        }
    }
    cells
}

/// The value at `pointer` as text (strings as they are, other values as JSON, none empty).
fn text(o: &Value, pointer: &str) -> String {
    match o.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn custom_cell(o: &Value, c: &PrinterColumn, now: DateTime<Utc>) -> Value {
    let values = jsonpath(o, &c.json_path);
    let Some(first) = values.first() else {
        return Value::Null;
    };
    match (c.type_.as_str(), first) {
        // kube-apiserver renders date columns of custom resources as ages.
        ("date", Value::String(s)) => json!(age(s, now)),
        (_, v) if values.len() == 1 && !v.is_object() && !v.is_array() => (*v).clone(),
        _ => json!(
            values
                .iter()
                .map(|v| v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Formats the time since `timestamp` like kubectl (`45s`, `5m3s`, `12m`, `5h3m`, `20h`, `3d4h`,
/// `400d`); `<unknown>` if it does not parse.
pub fn age(timestamp: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(timestamp) else {
        return "<unknown>".into();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", secs % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y{}d", d / 365, d % 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cells_of(kind: &str, o: Value) -> Vec<Value> {
        let t = table(
            Columns::Builtin(kind),
            &[o],
            json!({}),
            IncludeObject::Metadata,
            now(),
        );
        t["rows"][0]["cells"].as_array().unwrap().clone()
    }

    #[test]
    fn accept_header_detection() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(wants_table(
            "application/json; as=Table; g=meta.k8s.io; v=v1"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(
            "application/json;as=APIGroupDiscoveryList;v=v2;g=apidiscovery.k8s.io"
        ));
    }

    #[test]
    fn pod_columns_and_rows_like_kubectl() {
        let pod = json!({"metadata":{"name":"p","creationTimestamp":"2026-01-10T11:55:00Z"},
            "spec":{"containers":[{"name":"a"},{"name":"b"}],"nodeName":"n1"},
            "status":{"phase":"Running","podIP":"10.0.0.2","containerStatuses":[
                {"name":"a","ready":true,"restartCount":2,"state":{"running":{}}},
                {"name":"b","ready":false,"restartCount":1,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}});
        let t = table(
            Columns::Builtin("Pod"),
            std::slice::from_ref(&pod),
            json!({"resourceVersion":"7"}),
            IncludeObject::Metadata,
            now(),
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"]
        );
        assert_eq!(
            t["columnDefinitions"][5]["priority"], 1,
            "IP only with -o wide"
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "p",
                "1/2",
                "CrashLoopBackOff",
                "3",
                "5m0s",
                "10.0.0.2",
                "n1"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn pod_status_reasons() {
        let done = json!({"metadata":{"name":"p"},"spec":{"containers":[{}]},"status":{"phase":"Succeeded",
            "containerStatuses":[{"state":{"terminated":{"reason":"Completed","exitCode":0}}}]}});
        assert_eq!(cells_of("Pod", done)[2], "Completed");
        let killed = json!({"metadata":{"name":"p"},"status":{"containerStatuses":[{"state":{"terminated":{"signal":9}}}]}});
        assert_eq!(cells_of("Pod", killed)[2], "Signal:9");
        let deleting = json!({"metadata":{"name":"p","deletionTimestamp":"2026-01-10T12:00:00Z"},"status":{"phase":"Running"}});
        assert_eq!(cells_of("Pod", deleting)[2], "Terminating");
        assert_eq!(
            cells_of("Pod", json!({"metadata":{"name":"p"}}))[2],
            "Pending"
        );
    }

    #[test]
    fn other_builtin_kinds() {
        let node = json!({"metadata":{"name":"n","labels":{"node-role.kubernetes.io/control-plane":""}},"spec":{"unschedulable":true},
            "status":{"conditions":[{"type":"Ready","status":"True"}],"nodeInfo":{"kubeletVersion":"berth-0.1"},"addresses":[{"type":"InternalIP","address":"10.1.1.1"}]}});
        assert_eq!(
            cells_of("Node", node),
            json!([
                "n",
                "Ready,SchedulingDisabled",
                "control-plane",
                "<unknown>",
                "berth-0.1",
                "10.1.1.1"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let cm = json!({"metadata":{"name":"c","creationTimestamp":"2026-01-07T08:00:00Z"},"data":{"a":"1","b":"2"},"binaryData":{"c":""}});
        assert_eq!(
            cells_of("ConfigMap", cm),
            vec![json!("c"), json!(3), json!("3d4h")]
        );
        let svc = json!({"metadata":{"name":"s"},"spec":{"type":"NodePort","clusterIP":"10.96.0.5","selector":{"app":"x"},
            "ports":[{"port":80,"nodePort":30080},{"port":53,"protocol":"UDP"}]}});
        assert_eq!(
            cells_of("Service", svc)[1..5],
            [
                json!("NodePort"),
                json!("10.96.0.5"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        let ev = json!({"metadata":{"name":"e"},"type":"Normal","reason":"Scheduled","message":"ok","lastTimestamp":"2026-01-10T11:59:30Z",
            "involvedObject":{"kind":"Pod","name":"p"}});
        assert_eq!(
            cells_of("Event", ev)[1..],
            [
                json!("30s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/p"),
                json!("ok")
            ]
        );
        let lease = json!({"metadata":{"name":"l"},"spec":{"holderIdentity":"node-1"}});
        assert_eq!(cells_of("Lease", lease)[1], "node-1");
        let ns = json!({"metadata":{"name":"default"},"status":{"phase":"Active"}});
        assert_eq!(cells_of("Namespace", ns)[1], "Active");
    }

    #[test]
    fn custom_printer_columns_with_filters_and_dates() {
        let cols = vec![
            PrinterColumn {
                name: "Replicas".into(),
                type_: "integer".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".spec.replicas".into(),
            },
            PrinterColumn {
                name: "Ready".into(),
                type_: "string".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                json_path: ".status.conditions[?(@.type==\"Ready\")].status".into(),
            },
            PrinterColumn {
                name: "Since".into(),
                type_: "date".into(),
                format: String::new(),
                description: String::new(),
                priority: 1,
                json_path: ".status.since".into(),
            },
        ];
        let ms = json!({"metadata":{"name":"m","creationTimestamp":"2026-01-10T10:00:00Z"},"spec":{"replicas":2},
            "status":{"since":"2026-01-10T11:00:00Z","conditions":[{"type":"Available","status":"False"},{"type":"Ready","status":"True"}]}});
        let t = table(
            Columns::Custom(&cols),
            &[ms],
            json!({}),
            IncludeObject::Object,
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["m", 2, "True", "60m", "120m"])
        );
        assert_eq!(t["columnDefinitions"][4]["name"], "Age");
        assert_eq!(
            t["rows"][0]["object"]["spec"]["replicas"], 2,
            "includeObject=Object"
        );
        let missing = table(
            Columns::Custom(&cols),
            &[json!({"metadata":{"name":"x"}})],
            json!({}),
            IncludeObject::None,
            now(),
        );
        assert_eq!(missing["rows"][0]["cells"][1], Value::Null);
        assert_eq!(missing["rows"][0]["object"], Value::Null);
    }

    #[test]
    fn registry_entries_pick_their_columns() {
        let all = crate::resources::builtins();
        let by = |group: &str, kind: &str| {
            all.iter()
                .find(|r| r.group == group && r.kind == kind)
                .unwrap()
        };
        assert!(matches!(
            columns_for(by("", "ConfigMap")),
            Columns::Builtin("ConfigMap")
        ));
        assert!(matches!(
            columns_for(by("", "Event")),
            Columns::Builtin("Event")
        ));
        assert!(matches!(
            columns_for(by("events.k8s.io", "Event")),
            Columns::Custom(_)
        ));
        let mut crd_like = by("", "ConfigMap").clone();
        crd_like.builtin = false;
        assert!(matches!(columns_for(&crd_like), Columns::Custom(_)));
    }

    #[test]
    fn include_object_parsing_and_watch_rows() {
        assert_eq!(IncludeObject::parse(None), Some(IncludeObject::Metadata));
        assert_eq!(
            IncludeObject::parse(Some("Object")),
            Some(IncludeObject::Object)
        );
        assert_eq!(IncludeObject::parse(Some("bogus")), None);
        let t = watch_event_table(
            Columns::Builtin("Lease"),
            &json!({"metadata":{"name":"l","resourceVersion":"9"}}),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(t["rows"].as_array().unwrap().len(), 1);
        assert_eq!(t["metadata"]["resourceVersion"], "9");
    }

    #[test]
    fn ages() {
        let ago = |s: i64| (now() - chrono::Duration::seconds(s)).to_rfc3339();
        assert_eq!(age(&ago(5), now()), "5s");
        assert_eq!(age(&ago(5 * 60 + 3), now()), "5m3s");
        assert_eq!(age(&ago(3600 * 5 + 60 * 7), now()), "5h7m");
        assert_eq!(age(&ago(86400 * 3 + 3600 * 4), now()), "3d4h");
        assert_eq!(age(&ago(86400 * 800), now()), "2y70d");
        assert_eq!(age("garbage", now()), "<unknown>");
    }
}

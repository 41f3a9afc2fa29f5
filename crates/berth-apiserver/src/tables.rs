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

/// A Table of `items` with list metadata `meta`.
pub fn list_table(ctx: &Ctx, items: &[Value], meta: Value) -> Value {
    let cols = &ctx.r.printer_columns;
    let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    defs.extend(cols.iter().map(|c| json!({"name": c.name, "type": c.type_, "format": c.format,
        "description": c.description, "priority": c.priority})));
    let include = ctx.query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(cols.iter().map(|c| cell(o, &c.json_path, &c.type_)));
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

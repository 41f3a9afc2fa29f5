//! `metadata.managedFields` bookkeeping for non-apply writes (POST, PUT, non-apply PATCH).
//!
//! The writer's `Update` entry gains every field whose value changed; other managers lose them.

use serde_json::{Map, Value, json};

/// The `fieldsV1` set of every leaf of `v` (skipping server-owned metadata).
pub fn fields_of(v: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = v.as_object() {
        for (k, child) in m {
            if matches!(k.as_str(), "apiVersion" | "kind") {
                continue;
            }
            if k == "metadata" {
                let mut meta = Map::new();
                for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(x) = child.get(f) {
                        meta.insert(format!("f:{f}"), leaf_set(x));
                    }
                }
                if !meta.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(meta));
                }
                continue;
            }
            out.insert(format!("f:{k}"), leaf_set(child));
        }
    }
    Value::Object(out)
}

fn leaf_set(v: &Value) -> Value {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut out = Map::new();
            out.insert(".".into(), json!({}));
            for (k, c) in m {
                out.insert(format!("f:{k}"), leaf_set(c));
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

/// The fields (as a `fieldsV1` tree) whose value differs between `old` and `new`.
pub fn changed_fields(old: &Value, new: &Value) -> Value {
    diff(old, new).unwrap_or_else(|| json!({}))
}

fn diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = Map::new();
            for (k, nv) in b {
                if matches!(k.as_str(), "apiVersion" | "kind" | "resourceVersion" | "managedFields" | "generation") {
                    continue;
                }
                match a.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => {
                        if let Some(d) = diff(ov, nv) {
                            out.insert(format!("f:{k}"), d);
                        }
                    }
                    None => {
                        out.insert(format!("f:{k}"), leaf_set(nv));
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (a, b) if a == b => None,
        _ => Some(json!({})),
    }
}

/// Removes the paths of `remove` from the fieldsV1 tree `set`; returns whether anything is left.
fn subtract(set: &mut Value, remove: &Value) -> bool {
    if let (Some(s), Some(r)) = (set.as_object_mut(), remove.as_object()) {
        for (k, rv) in r {
            if k == "." {
                continue;
            }
            let drop = match s.get_mut(k) {
                Some(sv) => {
                    let rv_is_leaf = rv.as_object().is_none_or(|m| m.is_empty());
                    rv_is_leaf || !subtract(sv, rv)
                }
                None => false,
            };
            if drop {
                s.remove(k);
            }
        }
        s.keys().any(|k| k != ".")
    } else {
        false
    }
}

fn merge_sets(into: &mut Value, add: &Value) {
    if let (Some(i), Some(a)) = (into.as_object_mut(), add.as_object()) {
        for (k, v) in a {
            match i.get_mut(k) {
                Some(existing) => merge_sets(existing, v),
                None => {
                    i.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Records an Update by `manager` that changed `changed` (a fieldsV1 tree) in `obj`.
pub fn record_update(obj: &mut Value, manager: &str, api_version: &str, subresource: Option<&str>, changed: &Value, time: &str) {
    let mut entries: Vec<Value> = obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let is_mine = |e: &Value| {
        e["manager"] == manager && e["operation"] == "Update" && e["subresource"].as_str() == subresource
    };
    for e in entries.iter_mut().filter(|e| !is_mine(e)) {
        if let Some(f) = e.get_mut("fieldsV1") {
            subtract(f, changed);
        }
    }
    entries.retain(|e| is_mine(e) || e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    let has_changes = changed.as_object().is_some_and(|m| !m.is_empty());
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(e) if has_changes => {
            merge_sets(&mut e["fieldsV1"], changed);
            e["time"] = json!(time);
            e["apiVersion"] = json!(api_version);
        }
        Some(_) => {}
        None if has_changes => {
            let mut e = json!({"manager": manager, "operation": "Update", "apiVersion": api_version,
                "time": time, "fieldsType": "FieldsV1", "fieldsV1": changed});
            if let Some(s) = subresource {
                e["subresource"] = json!(s);
            }
            entries.push(e);
        }
        None => {}
    }
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("managedFields".into(), Value::Array(entries));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_moves_ownership() {
        let mut obj = json!({"metadata":{"managedFields":[{"manager":"kubectl","operation":"Apply","apiVersion":"v1",
            "fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:replicas":{},"f:image":{}}}}]}});
        let old = json!({"spec":{"replicas":1,"image":"a"}});
        let new = json!({"spec":{"replicas":5,"image":"a"}});
        let changed = changed_fields(&old, &new);
        assert_eq!(changed, json!({"f:spec":{"f:replicas":{}}}));
        record_update(&mut obj, "kubectl-scale", "v1", Some("scale"), &changed, "t");
        let mf = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf[0]["fieldsV1"], json!({"f:spec":{"f:image":{}}}));
        assert_eq!(mf[1]["manager"], "kubectl-scale");
        assert_eq!(mf[1]["fieldsV1"], json!({"f:spec":{"f:replicas":{}}}));
    }
}

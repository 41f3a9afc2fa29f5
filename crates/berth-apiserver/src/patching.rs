//! The patch algorithms the REST layer calls: strategic merge patch and server-side apply.
//!
//! These are compact in-crate versions (lists merged by their well-known keys; fields tracked as
//! `fieldsV1` trees with atomic lists), kept behind these three functions so a fuller
//! implementation can replace them without touching the REST layer.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, Cause};
use crate::managed;
use crate::resources::ResourceInfo;

/// The merge key of a list field in built-in kinds (strategic merge patch).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "addresses" => Some("type"),
        _ => None,
    }
}

/// Applies a strategic merge patch `patch` to `target`.
pub fn strategic_merge(target: &Value, patch: &Value) -> ApiResult<Value> {
    Ok(smp(target, patch))
}

fn smp(target: &Value, patch: &Value) -> Value {
    let Some(p) = patch.as_object() else { return patch.clone() };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut out = p.clone();
        out.remove("$patch");
        return Value::Object(out);
    }
    let mut out: Map<String, Value> = target.as_object().cloned().unwrap_or_default();
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(del)) = (out.get_mut(field), v.as_array()) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match (out.get(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => match merge_key(k) {
                Some(mk) => Value::Array(merge_list(cur, items, mk)),
                None if k == "finalizers" => {
                    let mut set = cur.clone();
                    set.extend(items.iter().filter(|i| !cur.contains(i)).cloned());
                    Value::Array(set)
                }
                None => v.clone(),
            },
            (Some(cur @ Value::Object(_)), Value::Object(_)) => smp(cur, v),
            _ => strip_directives(v),
        };
        out.insert(k.clone(), merged);
    }
    Value::Object(out)
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_list(cur: &[Value], patch: &[Value], key: &str) -> Vec<Value> {
    let mut out: Vec<Value> = cur.to_vec();
    for item in patch {
        let id = item.get(key);
        let pos = id.and_then(|id| out.iter().position(|c| c.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (Some(i), false) => out[i] = smp(&out[i], item),
            (None, false) => out.push(strip_directives(item)),
            (None, true) => {}
        }
    }
    out
}

/// The part of an applied object that a manager owns through `sub`.
fn applied_part(applied: &Value, sub: Option<&str>, r: &ResourceInfo) -> Value {
    let mut part = applied.clone();
    if let Some(m) = part.as_object_mut() {
        if sub == Some("status") {
            m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "status"));
        } else if r.status_subresource {
            m.remove("status");
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| matches!(k.as_str(), "labels" | "annotations" | "finalizers" | "ownerReferences"));
        }
    }
    part
}

/// Marks a new object's managedFields for an Apply by `manager`.
pub fn apply_to_new(obj: &mut Value, manager: &str, api_version: &str, time: &str) {
    let fields = managed::fields_of(obj);
    let entry = json!({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": time,
        "fieldsType": "FieldsV1", "fieldsV1": fields});
    crate::object::meta_mut(obj).insert("managedFields".into(), json!([entry]));
}

/// Leaf paths (as keys without `f:`) of a fieldsV1 tree.
fn leaves(set: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let children: Vec<(&String, &Value)> =
        set.as_object().map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect()).unwrap_or_default();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (k, v) in children {
        prefix.push(k[2..].to_string());
        leaves(v, prefix, out);
        prefix.pop();
    }
}

/// Whether the fieldsV1 tree `set` owns `path` (itself, a descendant or an atomic ancestor).
fn owns(set: &Value, path: &[String]) -> bool {
    let mut cur = set;
    for seg in path {
        let has_children = cur.as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("f:")));
        if !has_children && !std::ptr::eq(cur, set) {
            return true;
        }
        match cur.get(format!("f:{seg}")) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| cur.get(seg))
}

fn remove_path(set: &mut Value, path: &[String]) {
    let Some((last, init)) = path.split_last() else { return };
    let mut cur = set;
    for seg in init {
        match cur.get_mut(format!("f:{seg}")) {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(&format!("f:{last}"));
    }
}

fn remove_value(obj: &mut Value, path: &[String]) {
    let Some((last, init)) = path.split_last() else { return };
    let mut cur = obj;
    for seg in init {
        match cur.get_mut(seg) {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn deep_merge(base: &mut Value, over: &Value) {
    match (base.as_object_mut(), over.as_object()) {
        (Some(b), Some(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => deep_merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *base = over.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `live`; returns the new object or a 409 naming
/// every conflicting field (unless `force`).
#[allow(clippy::too_many_arguments)]
pub fn server_side_apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    sub: Option<&str>,
    force: bool,
    time: &str,
    r: &ResourceInfo,
) -> ApiResult<Value> {
    let part = applied_part(applied, sub, r);
    let fset = managed::fields_of(&part);
    let mut new_leaves = Vec::new();
    leaves(&fset, &mut Vec::new(), &mut new_leaves);
    let mut entries: Vec<Value> = live["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let mine = |e: &Value| e["manager"] == manager && e["operation"] == "Apply" && e["subresource"].as_str() == sub;
    let mut conflicts: Vec<(String, String, String)> = Vec::new();
    for path in &new_leaves {
        if value_at(live, path) == value_at(&part, path) {
            continue;
        }
        for e in entries.iter().filter(|e| !mine(e)) {
            if owns(&e["fieldsV1"], path) {
                let who = e["manager"].as_str().unwrap_or_default().to_string();
                let av = e["apiVersion"].as_str().unwrap_or_default().to_string();
                conflicts.push((who, av, format!(".{}", path.join("."))));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let n = conflicts.len();
        let lines: Vec<String> = conflicts.iter().map(|(w, av, p)| format!("conflict with \"{w}\" using {av}: {p}")).collect();
        let message = if n == 1 {
            format!("Apply failed with 1 conflict: {}", lines[0])
        } else {
            format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
        };
        let causes: Vec<Cause> = conflicts
            .iter()
            .map(|(w, av, p)| Cause { reason: "FieldManagerConflict".into(), message: format!("conflict with \"{w}\" using {av}"), field: p.clone() })
            .collect();
        let causes: Vec<Value> = causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
        return Err(ApiError::new(409, "Conflict", message).with_details_raw(json!({"causes": causes})));
    }
    if force {
        for e in entries.iter_mut().filter(|e| !mine(e)) {
            for (_, _, p) in &conflicts {
                let path: Vec<String> = p.trim_start_matches('.').split('.').map(String::from).collect();
                remove_path(&mut e["fieldsV1"], &path);
            }
        }
    }
    let mut out = live.clone();
    // Fields this manager applied before but no longer does, and nobody else owns, are removed.
    if let Some(prev) = entries.iter().find(|e| mine(e)) {
        let mut old_leaves = Vec::new();
        leaves(&prev["fieldsV1"], &mut Vec::new(), &mut old_leaves);
        for path in old_leaves.iter().filter(|p| !new_leaves.contains(p)) {
            let others = entries.iter().filter(|e| !mine(e)).any(|e| owns(&e["fieldsV1"], path));
            if !others {
                remove_value(&mut out, path);
            }
        }
    }
    let mut merge_part = part.clone();
    if let Some(m) = merge_part.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    deep_merge(&mut out, &merge_part);
    entries.retain(|e| !mine(e));
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("f:"))));
    let mut entry = json!({"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": time,
        "fieldsType": "FieldsV1", "fieldsV1": fset});
    if let Some(s) = sub {
        entry["subresource"] = json!(s);
    }
    entries.push(entry);
    crate::object::meta_mut(&mut out).insert("managedFields".into(), Value::Array(entries));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms() -> ResourceInfo {
        let mut r = crate::resources::builtins().remove(0);
        r.status_subresource = true;
        r
    }

    #[test]
    fn apply_conflicts_name_the_field_and_force_takes_over() {
        let r = ms();
        let mut live = json!({"metadata":{"name":"a"},"spec":{"replicas":1,"image":"x"}});
        apply_to_new(&mut live, "kubectl", "v1", "t");
        let other = json!({"metadata":{"name":"a"},"spec":{"replicas":3}});
        let err = server_side_apply(&live, &other, "other", "v1", None, false, "t", &r).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(err.message.contains(".spec.replicas"), "{}", err.message);
        let out = server_side_apply(&live, &other, "other", "v1", None, true, "t", &r).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(out["spec"]["image"], "x");
        // Same manager dropping a field removes it.
        let again = json!({"metadata":{"name":"a"},"spec":{"image":"x"}});
        let out2 = server_side_apply(&out, &again, "kubectl", "v1", None, false, "t", &r).unwrap();
        assert_eq!(out2["spec"]["replicas"], 3, "replicas is owned by 'other' now");
    }

    #[test]
    fn smp_merges_containers_by_name() {
        let t = json!({"spec":{"containers":[{"name":"a","image":"1"},{"name":"b","image":"2"}]}});
        let p = json!({"spec":{"containers":[{"name":"b","image":"3"},{"name":"a","$patch":"delete"}]}});
        let out = strategic_merge(&t, &p).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name":"b","image":"3"}]));
    }
}

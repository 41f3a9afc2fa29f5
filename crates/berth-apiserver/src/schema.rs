//! Structural-schema handling for custom resources: pruning of unknown fields and validation
//! (types, `required`, enums, bounds), answering every problem as a field-level [`Cause`].

use serde_json::Value;

use crate::error::Cause;

/// Removes fields not declared in `schema` from `obj` (in place) and returns their paths
/// (`spec.foo`). Root `apiVersion`, `kind` and `metadata` are always kept.
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune_at(obj, schema, "", true, &mut removed);
    removed
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn prune_at(v: &mut Value, schema: &Value, path: &str, root: bool, removed: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        && schema.get("properties").is_none()
    {
        return;
    }
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let keep_meta =
                    (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                if keep_meta {
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&k)).or(match additional {
                    Some(Value::Object(_)) => additional,
                    _ => None,
                });
                match (child_schema, additional) {
                    (Some(cs), _) => {
                        if let Some(child) = map.get_mut(&k) {
                            prune_at(child, cs, &join(path, &k), false, removed);
                        }
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if preserve => {}
                    (None, _) => {
                        map.remove(&k);
                        removed.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_at(item, is, &format!("{path}[{i}]"), false, removed);
                }
            }
        }
        _ => {}
    }
}

/// Validates `obj` against `schema`; returns every problem found.
pub fn validate(obj: &Value, schema: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_at(obj, schema, "", &mut causes);
    causes
}

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        message,
        field: field.into(),
    }
}

fn type_matches(v: &Value, ty: &str, int_or_string: bool) -> bool {
    if int_or_string {
        return v.is_string() || v.is_i64() || v.is_u64();
    }
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 64 {
        format!("{}...", &s[..61])
    } else {
        s
    }
}

fn validate_at(v: &Value, schema: &Value, path: &str, out: &mut Vec<Cause>) {
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true)
            && schema.get("type").is_some()
        {
            out.push(cause(
                "FieldValueInvalid",
                path,
                "Invalid value: \"null\": field must not be null".into(),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        if !type_matches(v, ty, int_or_string) {
            out.push(cause(
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {}: {path} in body must be of type {ty}",
                    short(v)
                ),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            out.push(cause(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    short(v),
                    list.join(", ")
                ),
            ));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                out.push(cause("FieldValueInvalid", path, format!("Invalid value: {}: {path} in body should be greater than or equal to {min}", short(v))));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should be less than or equal to {max}",
                        short(v)
                    ),
                ));
            }
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                out.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should be at least {min} chars long",
                        short(v)
                    ),
                ));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                out.push(cause(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
        }
    }
    match v {
        Value::Object(map) => {
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = req.as_str() {
                    if !map.contains_key(r) {
                        out.push(cause(
                            "FieldValueRequired",
                            &join(path, r),
                            "Required value".into(),
                        ));
                    }
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, child) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let cs = props
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(cs) = cs {
                    validate_at(child, cs, &join(path, k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    out.push(cause(
                        "FieldValueInvalid",
                        path,
                        format!(
                            "Invalid value: {}: {path} in body should have at least {min} items",
                            items.len()
                        ),
                    ));
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if (items.len() as u64) > max {
                    out.push(cause(
                        "FieldValueTooMany",
                        path,
                        format!("Too many: {}: must have at most {max} items", items.len()),
                    ));
                }
            }
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_at(item, is, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type":"object","required":["spec"],"properties":{
            "spec":{"type":"object","required":["image"],"properties":{
                "image":{"type":"string","minLength":1},
                "replicas":{"type":"integer","minimum":0,"nullable":true},
                "ports":{"type":"array","items":{"type":"object","properties":{"containerPort":{"type":"integer"}}}},
                "env":{"type":"object","additionalProperties":{"type":"string"}},
                "free":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}},
            "status":{"type":"object","properties":{"replicas":{"type":"integer"}}}}})
    }

    #[test]
    fn prune_reports_unknown_fields() {
        let mut o = json!({"apiVersion":"x/v1","kind":"K","metadata":{"name":"a"},"bogus":1,
            "spec":{"image":"i","foo":2,"ports":[{"containerPort":1,"bar":3}],"env":{"A":"b"},"free":{"any":1}}});
        let mut removed = prune(&mut o, &schema());
        removed.sort();
        assert_eq!(removed, vec!["bogus", "spec.foo", "spec.ports[0].bar"]);
        assert_eq!(o["spec"]["free"]["any"], 1);
        assert_eq!(o["spec"]["env"]["A"], "b");
        assert_eq!(o["metadata"]["name"], "a");
    }

    #[test]
    fn validate_names_every_field() {
        let o = json!({"spec":{"replicas":-1,"ports":[{"containerPort":"x"}]}});
        let fields: Vec<String> = validate(&o, &schema())
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            vec!["spec.image", "spec.ports[0].containerPort", "spec.replicas"]
        );
        assert!(
            validate(&json!({}), &schema())
                .iter()
                .any(|c| c.field == "spec" && c.reason == "FieldValueRequired")
        );
        assert!(validate(&json!({"spec":{"image":"i","replicas":null}}), &schema()).is_empty());
    }
}

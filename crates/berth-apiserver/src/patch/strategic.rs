//! Strategic merge patch (`application/strategic-merge-patch+json`) for built-in kinds, as kubectl
//! client-side apply, edit, label and annotate send it.
//!
//! Maps merge recursively (`null` deletes a key); lists merge according to
//! [`smp_list_strategy`]: by merge key, as a set of primitives, or replaced. Directives:
//! `$patch: replace|merge|delete` on maps and list items, `$retainKeys`, `$setElementOrder/<f>`
//! and `$deleteFromPrimitiveList/<f>`.

use serde_json::{Map, Value};

use super::PatchError;
use super::keys::{SmpList, smp_list_strategy};

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// Applies the strategic merge patch `patch` to `target`, an object of `kind`.
pub fn strategic_merge(kind: &str, target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Some(patch) = patch.as_object() else {
        return Err(PatchError::Decode(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let empty = Map::new();
    let base = target.as_object().unwrap_or(&empty);
    let merged = Merger { kind }.map(&mut Vec::new(), base, patch)?;
    // `$patch: delete` at the top level empties the object rather than deleting it.
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// The merge walk; `kind` selects list strategies.
struct Merger<'a> {
    kind: &'a str,
}

impl Merger<'_> {
    /// Merges `patch` into the map `target` at `path`; `None` when the patch deletes the map.
    fn map(
        &self,
        path: &mut Vec<String>,
        target: &Map<String, Value>,
        patch: &Map<String, Value>,
    ) -> Result<Option<Map<String, Value>>, PatchError> {
        match patch.get("$patch").map(|d| d.as_str()) {
            None | Some(Some("merge")) => {}
            Some(Some("delete")) => return Ok(None),
            // Replace: the patch (directives processed against nothing) is the new map.
            Some(Some("replace")) => {
                return self.map(path, &Map::new(), &without_patch_directive(patch));
            }
            Some(other) => {
                return Err(PatchError::Directive(format!(
                    "unknown $patch value {other:?}"
                )));
            }
        }
        let mut out = target.clone();
        if let Some(retain) = patch.get("$retainKeys") {
            let keep = string_list(retain, "$retainKeys")?;
            out.retain(|k, _| keep.iter().any(|r| r == k));
        }
        for (k, v) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
            path.push(k.clone());
            let merged = self.value(path, out.get(k), v);
            path.pop();
            match merged? {
                Some(m) => out.insert(k.clone(), m),
                None => out.remove(k),
            };
        }
        for (k, v) in patch {
            if let Some(field) = k.strip_prefix(DELETE_PRIMITIVES) {
                delete_primitives(&mut out, field, v)?;
            }
        }
        for (k, v) in patch {
            if let Some(field) = k.strip_prefix(SET_ORDER) {
                path.push(field.to_string());
                let key = match smp_list_strategy(self.kind, &as_strs(path)) {
                    SmpList::MergeByKey(key) => Some(key),
                    _ => None,
                };
                path.pop();
                reorder(&mut out, field, v, key)?;
            } else if k.starts_with('$')
                && !matches!(k.as_str(), "$patch" | "$retainKeys")
                && !k.starts_with(DELETE_PRIMITIVES)
            {
                return Err(PatchError::Directive(format!("unknown directive {k}")));
            }
        }
        Ok(Some(out))
    }

    /// Merges one patch value into the (possibly absent) live value; `None` deletes the field.
    fn value(
        &self,
        path: &mut Vec<String>,
        live: Option<&Value>,
        patch: &Value,
    ) -> Result<Option<Value>, PatchError> {
        let empty = Map::new();
        Ok(match patch {
            Value::Null => None,
            Value::Object(p) => {
                let base = live.and_then(Value::as_object).unwrap_or(&empty);
                self.map(path, base, p)?.map(Value::Object)
            }
            Value::Array(items) => {
                let base = live
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                Some(Value::Array(self.list(path, base, items)?))
            }
            primitive => Some(primitive.clone()),
        })
    }

    /// Merges the patch list `patch` into `live` according to the list's strategy.
    fn list(
        &self,
        path: &mut Vec<String>,
        live: &[Value],
        patch: &[Value],
    ) -> Result<Vec<Value>, PatchError> {
        // `{"$patch": "replace"}` among the items: the other items are the whole new list.
        let replace = patch
            .iter()
            .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
        let rest: Vec<&Value> = patch
            .iter()
            .filter(|i| !(replace && i.get("$patch").is_some()))
            .collect();
        let strategy = smp_list_strategy(self.kind, &as_strs(path));
        if replace || strategy == SmpList::Replace {
            return rest
                .into_iter()
                .filter_map(|i| self.value(path, None, i).transpose())
                .collect();
        }
        let mut out = live.to_vec();
        match strategy {
            SmpList::MergeByKey(key) => {
                for item in rest {
                    self.merge_item(path, &mut out, item, key)?;
                }
            }
            _ => {
                for item in rest {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Merges one item of a keyed list into `out` (appending, merging or deleting by key).
    fn merge_item(
        &self,
        path: &mut Vec<String>,
        out: &mut Vec<Value>,
        item: &Value,
        key: &str,
    ) -> Result<(), PatchError> {
        let missing_key = || PatchError::MissingMergeKey {
            item: item.to_string(),
            key: key.to_string(),
        };
        let Some(map) = item.as_object() else {
            return Err(missing_key());
        };
        let id = map.get(key).ok_or_else(missing_key)?;
        let pos = out.iter().position(|c| c.get(key) == Some(id));
        let empty = Map::new();
        let base = pos.and_then(|i| out[i].as_object()).unwrap_or(&empty);
        match (self.map(path, base, map)?, pos) {
            (Some(m), Some(i)) => out[i] = Value::Object(m),
            (Some(m), None) => out.push(Value::Object(m)),
            (None, Some(i)) => {
                out.remove(i);
            }
            (None, None) => {}
        }
        Ok(())
    }
}

fn as_strs(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

fn without_patch_directive(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| k.as_str() != "$patch")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn string_list<'a>(v: &'a Value, what: &str) -> Result<Vec<&'a str>, PatchError> {
    v.as_array()
        .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| PatchError::Directive(format!("{what} must be a list of strings")))
}

/// `$deleteFromPrimitiveList/<field>`: removes the listed values from the primitive list.
fn delete_primitives(
    out: &mut Map<String, Value>,
    field: &str,
    values: &Value,
) -> Result<(), PatchError> {
    let Some(values) = values.as_array() else {
        return Err(PatchError::Directive(format!(
            "{DELETE_PRIMITIVES}{field} must be a list"
        )));
    };
    if let Some(Value::Array(items)) = out.get_mut(field) {
        items.retain(|i| !values.contains(i));
    }
    Ok(())
}

/// `$setElementOrder/<field>`: items named in `order` come first, in that order; items only the
/// live object has keep their relative order after them.
fn reorder(
    out: &mut Map<String, Value>,
    field: &str,
    order: &Value,
    key: Option<&str>,
) -> Result<(), PatchError> {
    let Some(order) = order.as_array() else {
        return Err(PatchError::Directive(format!(
            "{SET_ORDER}{field} must be a list"
        )));
    };
    let Some(Value::Array(items)) = out.get_mut(field) else {
        return Ok(());
    };
    let rank = |item: &Value| {
        order.iter().position(|o| match key {
            Some(k) => o.get(k).is_some() && o.get(k) == item.get(k),
            None => o == item,
        })
    };
    // A stable sort keeps unranked items (usize::MAX) in their live order.
    items.sort_by_key(|i| rank(i).unwrap_or(usize::MAX));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, t: Value, p: Value) -> Value {
        strategic_merge(kind, &t, &p).unwrap()
    }

    #[test]
    fn containers_merge_by_name_and_delete_directive_removes_one() {
        let t = json!({"spec":{"containers":[{"name":"a","image":"1"},{"name":"b","image":"2"}]}});
        let p = json!({"spec":{"containers":[{"name":"b","image":"3"},{"name":"a","$patch":"delete"},{"name":"c","image":"4"}]}});
        assert_eq!(
            smp("Pod", t, p)["spec"]["containers"],
            json!([{"name":"b","image":"3"},{"name":"c","image":"4"}])
        );
    }

    #[test]
    fn nested_env_and_ports_merge_inside_a_container() {
        let t = json!({"spec":{"containers":[{"name":"a","env":[{"name":"X","value":"1"},{"name":"Y","value":"2"}],
            "ports":[{"containerPort":80,"name":"http"}],"args":["x","y"]}]}});
        let p = json!({"spec":{"containers":[{"name":"a","env":[{"name":"Y","value":"3"}],"ports":[{"containerPort":443}],"args":["z"]}]}});
        let c = &smp("Pod", t, p)["spec"]["containers"][0];
        assert_eq!(
            c["env"],
            json!([{"name":"X","value":"1"},{"name":"Y","value":"3"}])
        );
        assert_eq!(
            c["ports"],
            json!([{"containerPort":80,"name":"http"},{"containerPort":443}])
        );
        assert_eq!(
            c["args"],
            json!(["z"]),
            "lists without a strategy are replaced"
        );
    }

    #[test]
    fn service_ports_merge_by_port_number() {
        let t = json!({"spec":{"ports":[{"port":80,"targetPort":8080},{"port":443}]}});
        let p = json!({"spec":{"ports":[{"port":80,"targetPort":9090}]}});
        assert_eq!(
            smp("Service", t, p)["spec"]["ports"],
            json!([{"port":80,"targetPort":9090},{"port":443}])
        );
    }

    #[test]
    fn null_deletes_and_map_patch_directives_work() {
        let t = json!({"metadata":{"labels":{"a":"1","b":"2"}},"data":{"k":"v","j":"w"}});
        let out = smp(
            "ConfigMap",
            t.clone(),
            json!({"metadata":{"labels":{"a":null,"c":"3"}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b":"2","c":"3"}));
        let out = smp(
            "ConfigMap",
            t.clone(),
            json!({"data":{"$patch":"replace","n":"m"}}),
        );
        assert_eq!(out["data"], json!({"n":"m"}));
        let out = smp("ConfigMap", t, json!({"data":{"$patch":"delete"}}));
        assert!(out.get("data").is_none());
    }

    #[test]
    fn list_replace_directive_replaces_a_keyed_list() {
        let t = json!({"spec":{"containers":[{"name":"a"},{"name":"b"}]}});
        let p = json!({"spec":{"containers":[{"$patch":"replace"},{"name":"c"}]}});
        assert_eq!(
            smp("Pod", t, p)["spec"]["containers"],
            json!([{"name":"c"}])
        );
    }

    #[test]
    fn retain_keys_drops_unlisted_fields() {
        let t =
            json!({"spec":{"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}});
        let p = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}});
        assert_eq!(
            smp("Deployment", t, p)["spec"]["strategy"],
            json!({"type":"Recreate"})
        );
    }

    #[test]
    fn finalizers_merge_as_set_and_delete_from_primitive_list() {
        let t = json!({"metadata":{"finalizers":["a","b"]}});
        let out = smp(
            "ConfigMap",
            t.clone(),
            json!({"metadata":{"finalizers":["b","c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = smp(
            "ConfigMap",
            t,
            json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn set_element_order_reorders_keyed_items() {
        let t = json!({"spec":{"containers":[{"name":"a"},{"name":"x"},{"name":"b"}]}});
        let p = json!({"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}],"containers":[{"name":"b","image":"i"}]}});
        assert_eq!(
            smp("Pod", t, p)["spec"]["containers"],
            json!([{"name":"b","image":"i"},{"name":"a"},{"name":"x"}])
        );
    }

    #[test]
    fn kubectl_three_way_patch_removes_a_dropped_container_env() {
        // What kubectl sends after an env var was removed from the manifest.
        let t = json!({"metadata":{"name":"p","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},
            "spec":{"containers":[{"name":"c","image":"i","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]}]}});
        let p = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"x\":1}"}},
            "spec":{"$setElementOrder/containers":[{"name":"c"}],"containers":[{"$setElementOrder/env":[{"name":"A"}],"name":"c","env":[{"$patch":"delete","name":"B"}]}]}});
        let out = smp("Pod", t, p);
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name":"c","image":"i","env":[{"name":"A","value":"1"}]}])
        );
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{\"x\":1}"
        );
    }

    #[test]
    fn new_values_lose_their_directives() {
        let out = smp(
            "Pod",
            json!({}),
            json!({"spec":{"containers":[{"name":"a","env":[{"name":"X","$patch":"delete"}]}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name":"a","env":[]}]));
    }

    #[test]
    fn bad_patches_are_400() {
        let err = strategic_merge(
            "Pod",
            &json!({}),
            &json!({"spec":{"containers":[{"image":"x"}]}}),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::MissingMergeKey { .. }), "{err}");
        assert_eq!(err.status_code(), 400);
        let err =
            strategic_merge("Pod", &json!({}), &json!({"spec":{"$patch":"explode"}})).unwrap_err();
        assert_eq!(err.status_code(), 400);
        assert!(strategic_merge("Pod", &json!({}), &json!([1])).is_err());
    }
}

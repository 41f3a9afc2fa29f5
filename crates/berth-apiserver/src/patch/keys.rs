//! How lists of built-in kinds merge: the `patchStrategy`/`patchMergeKey` and
//! `x-kubernetes-list-type`/`x-kubernetes-list-map-keys` facts of the upstream types, as a table
//! keyed by kind and field path (list indices and keys left out, e.g.
//! `["spec", "containers", "ports"]`).

use serde_json::Value;

use super::fields::{FieldPath, PathElement};

/// How strategic merge patch treats a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmpList {
    /// No patch strategy: the patch's list replaces the live one.
    Replace,
    /// A list of objects merged item by item, matched on this key.
    MergeByKey(&'static str),
    /// A list of primitives merged as a set (`finalizers`).
    MergePrimitives,
}

/// How server-side apply owns a list (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Owned as a whole; the applier's list replaces the live one.
    Atomic,
    /// Items are objects identified by these keys (`k:{...}` in fieldsV1).
    Map(Vec<String>),
    /// Items are distinct primitives (`v:<json>` in fieldsV1).
    Set,
}

/// The strategic merge strategy of the list at `path` (field names only) in objects of `kind`.
pub fn smp_list_strategy(kind: &str, path: &[&str]) -> SmpList {
    let Some((&field, parents)) = path.split_last() else {
        return SmpList::Replace;
    };
    let parent = parents.last().copied().unwrap_or("");
    match (field, parent) {
        ("finalizers", "metadata") => SmpList::MergePrimitives,
        ("podCIDRs", "spec") if kind == "Node" => SmpList::MergePrimitives,
        // Service ports merge by port number; container ports by containerPort.
        ("ports", "spec") if kind == "Service" => SmpList::MergeByKey("port"),
        ("ports", _)
            if parents.contains(&"containers")
                || parents.contains(&"initContainers")
                || parents.contains(&"ephemeralContainers") =>
        {
            SmpList::MergeByKey("containerPort")
        }
        ("containers" | "initContainers" | "ephemeralContainers", "spec") => {
            SmpList::MergeByKey("name")
        }
        ("volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates", "spec") => {
            SmpList::MergeByKey("name")
        }
        ("env", _) => SmpList::MergeByKey("name"),
        ("volumeMounts", _) => SmpList::MergeByKey("mountPath"),
        ("volumeDevices", _) => SmpList::MergeByKey("devicePath"),
        ("hostAliases", "spec") => SmpList::MergeByKey("ip"),
        ("topologySpreadConstraints", "spec") => SmpList::MergeByKey("topologyKey"),
        ("podIPs" | "hostIPs", "status") => SmpList::MergeByKey("ip"),
        ("conditions", "status") => SmpList::MergeByKey("type"),
        ("addresses", "status") if kind == "Node" => SmpList::MergeByKey("type"),
        ("ownerReferences", "metadata") => SmpList::MergeByKey("uid"),
        _ => SmpList::Replace,
    }
}

/// The server-side apply list type of built-in list fields (used when no schema says otherwise):
/// lists with a merge key are maps on that key (service ports on port+protocol, as upstream),
/// primitive merge lists are sets, everything else is atomic.
pub fn builtin_list_type(kind: &str, path: &[&str]) -> ListType {
    match smp_list_strategy(kind, path) {
        SmpList::MergeByKey("port") => ListType::Map(vec!["port".into(), "protocol".into()]),
        SmpList::MergeByKey("containerPort") => {
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        }
        SmpList::MergeByKey(k) => ListType::Map(vec![k.into()]),
        SmpList::MergePrimitives => ListType::Set,
        SmpList::Replace => ListType::Atomic,
    }
}

/// The list type at `path` per a structural schema (`x-kubernetes-list-type` and
/// `x-kubernetes-list-map-keys`), or `None` where the schema does not say.
pub fn schema_list_type(schema: &Value, path: &[PathElement]) -> Option<ListType> {
    let mut node = schema;
    for seg in path {
        node = match seg {
            PathElement::Field(f) => node.get("properties")?.get(f)?,
            _ => node.get("items")?,
        };
    }
    match node.get("x-kubernetes-list-type")?.as_str()? {
        "map" => {
            let keys = node.get("x-kubernetes-list-map-keys")?.as_array()?;
            Some(ListType::Map(
                keys.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect(),
            ))
        }
        "set" => Some(ListType::Set),
        _ => Some(ListType::Atomic),
    }
}

/// The list-type lookup server-side apply needs for objects of `kind`: the CRD schema's
/// annotations where present, else the built-in table (atomic for anything unknown).
pub fn list_types<'a>(
    kind: &'a str,
    schema: Option<&'a Value>,
) -> impl Fn(&FieldPath) -> ListType + 'a {
    move |path: &FieldPath| {
        if let Some(t) = schema.and_then(|s| schema_list_type(s, path)) {
            return t;
        }
        let names: Vec<&str> = path
            .iter()
            .filter_map(|s| {
                if let PathElement::Field(f) = s {
                    Some(f.as_str())
                } else {
                    None
                }
            })
            .collect();
        builtin_list_type(kind, &names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_schema_annotations_decide_list_types() {
        let schema = json!({"type":"object","properties":{"spec":{"type":"object","properties":{
            "models":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["name"],
                "items":{"type":"object","properties":{"tags":{"type":"array","x-kubernetes-list-type":"set"}}}},
            "args":{"type":"array"}}}}});
        let lt = list_types("ModelService", Some(&schema));
        let f = |s: &str| PathElement::Field(s.into());
        assert_eq!(
            lt(&vec![f("spec"), f("models")]),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            lt(&vec![
                f("spec"),
                f("models"),
                PathElement::Key("{\"name\":\"a\"}".into()),
                f("tags")
            ]),
            ListType::Set
        );
        assert_eq!(lt(&vec![f("spec"), f("args")]), ListType::Atomic);
        assert_eq!(
            lt(&vec![f("metadata"), f("finalizers")]),
            ListType::Set,
            "built-in metadata facts still apply"
        );
    }

    #[test]
    fn ports_depend_on_kind_and_place() {
        assert_eq!(
            smp_list_strategy("Service", &["spec", "ports"]),
            SmpList::MergeByKey("port")
        );
        assert_eq!(
            smp_list_strategy("Pod", &["spec", "containers", "ports"]),
            SmpList::MergeByKey("containerPort")
        );
        assert_eq!(
            smp_list_strategy(
                "Deployment",
                &["spec", "template", "spec", "containers", "ports"]
            ),
            SmpList::MergeByKey("containerPort")
        );
        assert_eq!(
            smp_list_strategy("Pod", &["spec", "tolerations"]),
            SmpList::Replace
        );
        assert_eq!(
            smp_list_strategy("Pod", &["spec", "containers", "args"]),
            SmpList::Replace
        );
        assert_eq!(
            smp_list_strategy("ConfigMap", &["metadata", "finalizers"]),
            SmpList::MergePrimitives
        );
    }

    #[test]
    fn apply_list_types_follow_merge_keys() {
        assert_eq!(
            builtin_list_type("Pod", &["spec", "containers"]),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            builtin_list_type("Service", &["spec", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(
            builtin_list_type("Pod", &["metadata", "finalizers"]),
            ListType::Set
        );
        assert_eq!(
            builtin_list_type("Pod", &["spec", "containers", "command"]),
            ListType::Atomic
        );
    }
}

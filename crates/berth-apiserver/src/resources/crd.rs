//! A CustomResourceDefinition's registry entries: one [`ResourceInfo`] per served version,
//! with its scale paths, printer columns, schema and selectable fields. (Establishing CRDs is
//! [`crate::crd`]'s job; this only reads the definition.)

use serde_json::Value;

use super::{Conversion, PrinterColumn, ResourceInfo, ScalePaths};

/// Builds the registry entries (one per served version) of a CRD object
/// (apiextensions.k8s.io/v1 CustomResourceDefinition as JSON).
pub fn from_crd(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = names["listKind"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| format!("{kind}List"));
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let subs = &v["subresources"];
        let scale = subs.get("scale").and_then(|s| {
            Some(ScalePaths {
                spec_replicas_path: s["specReplicasPath"].as_str()?.to_string(),
                status_replicas_path: s["statusReplicasPath"].as_str()?.to_string(),
                label_selector_path: s["labelSelectorPath"].as_str().map(String::from),
            })
        });
        let printer_columns = v["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .filter_map(|c| serde_json::from_value(c.clone()).ok())
                    .collect()
            })
            .unwrap_or_else(|| {
                vec![PrinterColumn {
                    name: "Age".into(),
                    type_: "date".into(),
                    json_path: ".metadata.creationTimestamp".into(),
                    description: String::new(),
                    priority: 0,
                    format: String::new(),
                }]
            });
        let field_labels = v["selectableFields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["jsonPath"].as_str())
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceInfo {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().to_string(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: subs.get("status").is_some(),
            scale,
            extra_subresources: Vec::new(),
            printer_columns,
            schema: v["schema"].get("openAPIV3Schema").cloned(),
            builtin: false,
            field_labels,
            storage_prefix: format!("/registry/{group}/{plural}"),
            conversion: Conversion::None,
            has_generation: true,
            create_on_update: false,
            return_deleted_object: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_versions_become_resources() {
        let crd = serde_json::json!({"spec":{"group":"berth.dev","scope":"Namespaced",
            "names":{"kind":"ModelService","plural":"modelservices","shortNames":["ms"]},
            "versions":[{"name":"v1alpha1","served":true,"storage":true,
              "subresources":{"status":{},"scale":{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas"}},
              "additionalPrinterColumns":[{"name":"Image","type":"string","jsonPath":".spec.image"}]}]}});
        let rs = from_crd(&crd);
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!(r.list_kind, "ModelServiceList");
        assert_eq!(r.singular, "modelservice");
        assert!(r.status_subresource);
        assert_eq!(
            r.scale.as_ref().unwrap().spec_replicas_path,
            ".spec.replicas"
        );
        assert_eq!(r.printer_columns[0].name, "Image");
        assert_eq!(
            r.key(Some("default"), "x"),
            "/registry/berth.dev/modelservices/default/x"
        );
    }
}

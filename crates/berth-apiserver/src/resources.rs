//! The resource registry: everything the server knows about each served resource type.
//!
//! One [`ResourceInfo`] per (group, version, resource). Built-in kinds are registered at start;
//! each established CustomResourceDefinition adds one entry per served version. Discovery, OpenAPI,
//! Tables, routing and storage all derive from this one description, so they cannot disagree.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A column of `kubectl get` output (CRD `additionalPrinterColumns`, or a built-in equivalent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterColumn {
    /// Column header, e.g. `Ready`.
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Simple JSONPath of the cell value, e.g. `.status.readyReplicas`.
    pub json_path: String,
    /// Column description (shown by some clients).
    #[serde(default)]
    pub description: String,
    /// 0 = always shown, >0 only with `-o wide`.
    #[serde(default)]
    pub priority: i32,
    /// Optional format hint (`name`, `int32`, ...).
    #[serde(default)]
    pub format: String,
}

/// Where the scale subresource reads and writes replicas (CRD `subresources.scale`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalePaths {
    /// e.g. `.spec.replicas`.
    pub spec_replicas_path: String,
    /// e.g. `.status.replicas`.
    pub status_replicas_path: String,
    /// e.g. `.status.selector` (a string selector), if any.
    #[serde(default)]
    pub label_selector_path: Option<String>,
}

/// Field-level conversion between the stored form and the served form of a resource.
/// Only events need one: events.k8s.io/v1 and core/v1 share one store (stored as core/v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Served exactly as stored.
    None,
    /// Served as events.k8s.io/v1 Event, stored as core/v1 Event.
    EventsV1,
}

/// Everything the server knows about one served resource type at one version.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// List kind, e.g. `PodList`.
    pub list_kind: String,
    /// Plural resource name used in URLs, e.g. `pods`.
    pub plural: String,
    /// Singular name, e.g. `pod`.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names for kubectl (`ms`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether `/status` is served (and main-resource writes ignore status).
    pub status_subresource: bool,
    /// The scale subresource mapping, if served.
    pub scale: Option<ScalePaths>,
    /// Other subresources served, as (name, responseKind, verbs): e.g. pods/binding.
    pub extra_subresources: Vec<ExtraSubresource>,
    /// Columns for `kubectl get` (excluding `Name`, which is always first).
    pub printer_columns: Vec<PrinterColumn>,
    /// The structural OpenAPI v3 schema (CRDs), or `None` for built-ins (no pruning).
    pub schema: Option<Value>,
    /// Built into the server (true) or served from a CRD (false).
    pub builtin: bool,
    /// Field selector labels supported beyond `metadata.name` / `metadata.namespace`.
    pub field_labels: Vec<String>,
    /// Key prefix in the store without trailing slash, e.g. `/registry/pods` or
    /// `/registry/berth.dev/modelservices`.
    pub storage_prefix: String,
    /// How objects are converted between storage and the wire.
    pub conversion: Conversion,
    /// Whether `generation` is maintained (objects with spec semantics).
    pub has_generation: bool,
    /// A PUT to a missing object creates it (leases).
    pub create_on_update: bool,
    /// DELETE answers with the deleted object instead of a Status (pods, services).
    pub return_deleted_object: bool,
}

/// A subresource other than status/scale, e.g. `binding`, `log`, `exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraSubresource {
    /// Subresource name (`binding`).
    pub name: String,
    /// Group of the response kind ("" for core).
    pub group: String,
    /// Version of the response kind.
    pub version: String,
    /// Response kind (`Binding`).
    pub kind: String,
    /// Verbs (`create`).
    pub verbs: Vec<String>,
}

/// The verbs every served collection supports.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `group/version`, or `version` for the core group (the `apiVersion` of objects).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (or `plural` for core), as used in error messages (`configmaps "x" not found`).
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` (or `Kind` for core), as used in 422 messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}/{}/{}", self.storage_prefix, ns, name),
            _ => format!("{}/{}", self.storage_prefix, name),
        }
    }

    /// The key prefix of a collection (all namespaces when `namespace` is `None`).
    pub fn collection_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}/{}/", self.storage_prefix, ns),
            _ => format!("{}/", self.storage_prefix),
        }
    }

    /// Whether a field label is supported by field selectors on this resource.
    pub fn supports_field(&self, label: &str) -> bool {
        label == "metadata.name"
            || label == "metadata.namespace"
            || self.field_labels.iter().any(|f| f == label)
    }

    /// Names of all served subresources (`status`, `scale`, `binding`, ...).
    pub fn subresource_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.status_subresource {
            names.push("status".to_string());
        }
        if self.scale.is_some() {
            names.push("scale".to_string());
        }
        names.extend(self.extra_subresources.iter().map(|s| s.name.clone()));
        names
    }
}

/// The set of served resources; CRDs add and remove entries at run time.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    resources: Vec<Arc<ResourceInfo>>,
    /// Bumped on every change, so OpenAPI/discovery caches (and hashes) can follow.
    generation: u64,
}

impl Registry {
    /// A registry holding the built-in resources.
    pub fn with_builtins() -> Self {
        let reg = Registry::default();
        for r in builtins() {
            reg.insert(r);
        }
        reg
    }

    /// Adds or replaces the entry for (group, version, plural).
    pub fn insert(&self, info: ResourceInfo) {
        let mut inner = self.write();
        inner.resources.retain(|r| {
            !(r.group == info.group && r.version == info.version && r.plural == info.plural)
        });
        inner.resources.push(Arc::new(info));
        inner.generation += 1;
    }

    /// Removes every version of a non-builtin resource of `group` with `plural`.
    pub fn remove_custom(&self, group: &str, plural: &str) {
        let mut inner = self.write();
        inner
            .resources
            .retain(|r| r.builtin || !(r.group == group && r.plural == plural));
        inner.generation += 1;
    }

    /// Looks a resource up by its URL coordinates.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.read()
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// Whether any resource is served under (group, version).
    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.read()
            .resources
            .iter()
            .any(|r| r.group == group && r.version == version)
    }

    /// A snapshot of all served resources, in registration order.
    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.read().resources.clone()
    }

    /// A counter that changes whenever the set of resources changes.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RegistryInner> {
        // A poisoned lock only means a panic elsewhere while holding it; the data is still a
        // consistent Vec (every mutation is a single push/retain), so keep serving.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RegistryInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A compact description of a built-in resource, expanded by [`builtin`].
struct Builtin<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
    plural: &'a str,
    namespaced: bool,
    short_names: &'a [&'a str],
    status: bool,
    field_labels: &'a [&'a str],
    columns: &'a [(&'a str, &'a str, &'a str, i32)],
}

fn builtin(b: Builtin<'_>) -> ResourceInfo {
    let storage_prefix = if b.group.is_empty() {
        format!("/registry/{}", b.plural)
    } else {
        format!("/registry/{}/{}", b.group, b.plural)
    };
    ResourceInfo {
        group: b.group.into(),
        version: b.version.into(),
        kind: b.kind.into(),
        list_kind: format!("{}List", b.kind),
        plural: b.plural.into(),
        singular: b.kind.to_lowercase(),
        namespaced: b.namespaced,
        short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_subresource: b.status,
        scale: None,
        extra_subresources: Vec::new(),
        printer_columns: b
            .columns
            .iter()
            .map(|(name, ty, path, priority)| PrinterColumn {
                name: name.to_string(),
                type_: ty.to_string(),
                json_path: path.to_string(),
                description: String::new(),
                priority: *priority,
                format: String::new(),
            })
            .collect(),
        schema: None,
        builtin: true,
        field_labels: b.field_labels.iter().map(|s| s.to_string()).collect(),
        storage_prefix,
        conversion: Conversion::None,
        has_generation: b.status,
        create_on_update: false,
        return_deleted_object: false,
    }
}

const AGE: (&str, &str, &str, i32) = ("Age", "date", ".metadata.creationTimestamp", 0);

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "type",
    "source",
    "reportingComponent",
];

/// The built-in resources served by every berth server.
pub fn builtins() -> Vec<ResourceInfo> {
    let mut out = vec![
        builtin(Builtin {
            group: "",
            version: "v1",
            kind: "Namespace",
            plural: "namespaces",
            namespaced: false,
            short_names: &["ns"],
            status: true,
            field_labels: &["status.phase"],
            columns: &[("Status", "string", ".status.phase", 0), AGE],
        }),
        builtin(Builtin {
            group: "",
            version: "v1",
            kind: "Pod",
            plural: "pods",
            namespaced: true,
            short_names: &["po"],
            status: true,
            field_labels: &["spec.nodeName", "status.phase", "spec.restartPolicy"],
            columns: &[
                ("Status", "string", ".status.phase", 0),
                AGE,
                ("IP", "string", ".status.podIP", 1),
                ("Node", "string", ".spec.nodeName", 1),
            ],
        }),
        builtin(Builtin {
            group: "",
            version: "v1",
            kind: "Node",
            plural: "nodes",
            namespaced: false,
            short_names: &["no"],
            status: true,
            field_labels: &["spec.unschedulable"],
            columns: &[
                AGE,
                ("Version", "string", ".status.nodeInfo.kubeletVersion", 0),
            ],
        }),
        builtin(Builtin {
            group: "",
            version: "v1",
            kind: "Service",
            plural: "services",
            namespaced: true,
            short_names: &["svc"],
            status: true,
            field_labels: &[],
            columns: &[
                ("Type", "string", ".spec.type", 0),
                ("Cluster-IP", "string", ".spec.clusterIP", 0),
                AGE,
            ],
        }),
        builtin(Builtin {
            group: "",
            version: "v1",
            kind: "Endpoints",
            plural: "endpoints",
            namespaced: true,
            short_names: &["ep"],
            status: false,
            field_labels: &[],
            columns: &[AGE],
        }),
        core_events(),
        builtin(Builtin {
            group: "",
            version: "v1",
            kind: "ConfigMap",
            plural: "configmaps",
            namespaced: true,
            short_names: &["cm"],
            status: false,
            field_labels: &[],
            columns: &[AGE],
        }),
        builtin(Builtin {
            group: "",
            version: "v1",
            kind: "Secret",
            plural: "secrets",
            namespaced: true,
            short_names: &[],
            status: false,
            field_labels: &["type"],
            columns: &[("Type", "string", ".type", 0), AGE],
        }),
        builtin(Builtin {
            group: "coordination.k8s.io",
            version: "v1",
            kind: "Lease",
            plural: "leases",
            namespaced: true,
            short_names: &[],
            status: false,
            field_labels: &[],
            columns: &[("Holder", "string", ".spec.holderIdentity", 0), AGE],
        }),
        builtin(Builtin {
            group: "apiextensions.k8s.io",
            version: "v1",
            kind: "CustomResourceDefinition",
            plural: "customresourcedefinitions",
            namespaced: false,
            short_names: &["crd", "crds"],
            status: true,
            field_labels: &[],
            columns: &[("Created At", "date", ".metadata.creationTimestamp", 0)],
        }),
    ];
    for r in &mut out {
        match r.plural.as_str() {
            "pods" => {
                r.categories = vec!["all".into()];
                r.return_deleted_object = true;
                r.extra_subresources = vec![ExtraSubresource {
                    name: "binding".into(),
                    group: String::new(),
                    version: "v1".into(),
                    kind: "Binding".into(),
                    verbs: vec!["create".into()],
                }];
            }
            "services" => {
                r.categories = vec!["all".into()];
                r.return_deleted_object = true;
            }
            "leases" => r.create_on_update = true,
            "namespaces" | "nodes" => r.has_generation = false,
            _ => {}
        }
    }
    // events.k8s.io/v1 shares the core events store (converted field by field).
    let mut events_v1 = core_events();
    events_v1.group = "events.k8s.io".into();
    events_v1.conversion = Conversion::EventsV1;
    events_v1.field_labels = vec![
        "regarding.kind".into(),
        "regarding.namespace".into(),
        "regarding.name".into(),
        "regarding.uid".into(),
        "reason".into(),
        "type".into(),
        "reportingController".into(),
    ];
    events_v1.printer_columns = vec![
        PrinterColumn {
            name: "Reason".into(),
            type_: "string".into(),
            json_path: ".reason".into(),
            description: String::new(),
            priority: 0,
            format: String::new(),
        },
        PrinterColumn {
            name: "Note".into(),
            type_: "string".into(),
            json_path: ".note".into(),
            description: String::new(),
            priority: 0,
            format: String::new(),
        },
    ];
    out.push(events_v1);
    out
}

/// core/v1 events (also the storage of events.k8s.io/v1).
fn core_events() -> ResourceInfo {
    builtin(Builtin {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        status: false,
        field_labels: EVENT_FIELDS,
        columns: &[
            ("Type", "string", ".type", 0),
            ("Reason", "string", ".reason", 0),
            ("Object", "string", ".involvedObject.name", 0),
            ("Message", "string", ".message", 0),
        ],
    })
}

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
    fn keys_follow_kube_apiserver_layout() {
        let reg = Registry::with_builtins();
        let pods = reg.lookup("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let leases = reg.lookup("coordination.k8s.io", "v1", "leases").unwrap();
        assert_eq!(
            leases.key(Some("kube-node-lease"), "n1"),
            "/registry/coordination.k8s.io/leases/kube-node-lease/n1"
        );
        let ns = reg.lookup("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.key(Some("ignored"), "default"),
            "/registry/namespaces/default"
        );
        let ev = reg.lookup("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(ev.storage_prefix, "/registry/events");
    }

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

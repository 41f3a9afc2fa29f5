//! The resource registry: everything the server knows about each served resource type.
//!
//! One [`ResourceInfo`] per (group, version, resource). Built-in kinds are registered at start;
//! each established CustomResourceDefinition adds one entry per served version. Discovery, OpenAPI,
//! Tables, routing and storage all derive from this one description, so they cannot disagree.
//!
//! This module holds the description ([`ResourceInfo`]) and the [`Registry`]; the built-in
//! table is in `builtin` ([`builtins`]) and a CRD's entries are derived in `crd` ([`from_crd`]).

mod builtin;
mod crd;

pub use builtin::builtins;
pub use crd::from_crd;

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
}

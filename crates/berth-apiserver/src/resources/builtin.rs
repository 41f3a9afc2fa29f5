//! The built-in resources every berth server serves: a compact table (kind, plural, scope,
//! short names, field labels, `kubectl get` columns) expanded into [`ResourceInfo`] entries.

use super::{Conversion, ExtraSubresource, PrinterColumn, ResourceInfo};

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
            group: "",
            version: "v1",
            kind: "ResourceQuota",
            plural: "resourcequotas",
            namespaced: true,
            short_names: &["quota"],
            status: true,
            field_labels: &[],
            columns: &[AGE],
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
                r.extra_subresources = vec![
                    ExtraSubresource {
                        name: "binding".into(),
                        group: String::new(),
                        version: "v1".into(),
                        kind: "Binding".into(),
                        verbs: vec!["create".into()],
                    },
                    // kubectl drain uses evictions only when discovery lists this entry.
                    ExtraSubresource {
                        name: "eviction".into(),
                        group: "policy".into(),
                        version: "v1".into(),
                        kind: "Eviction".into(),
                        verbs: vec!["create".into()],
                    },
                ];
            }
            "services" => {
                r.categories = vec!["all".into()];
                r.return_deleted_object = true;
            }
            "leases" => r.create_on_update = true,
            "namespaces" | "nodes" | "resourcequotas" => r.has_generation = false,
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

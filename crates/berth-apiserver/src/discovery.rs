//! Discovery documents generated from the resource registry: legacy (`/api` APIVersions, `/apis`
//! APIGroupList, `/apis/G` APIGroup, `/api/v1` and `/apis/G/V` APIResourceList) and aggregated
//! (apidiscovery.k8s.io/v2 APIGroupDiscoveryList).
//!
//! Pure: registry entries in, JSON out. Versions of a group are ordered like kube-apiserver
//! (GA > beta > alpha, higher numbers first) so the first is the preferred version.

use std::cmp::Reverse;

use serde_json::{Value, json};

use crate::resources::{ResourceInfo, STANDARD_VERBS};

/// The Content-Type of aggregated discovery responses.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Verbs of the status and scale subresources.
const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// Whether `accept` prefers aggregated discovery v2: the best-ranked (by `q`, then order)
/// alternative names `as=APIGroupDiscoveryList` in `apidiscovery.k8s.io` v2.
pub fn wants_aggregated(accept: &str) -> bool {
    let mut best: Option<(f32, bool)> = None;
    for alt in accept.split(',') {
        let params: Vec<(&str, &str)> = alt
            .split(';')
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let q = get("q").and_then(|q| q.parse().ok()).unwrap_or(1.0);
        let aggregated = get("g") == Some("apidiscovery.k8s.io")
            && get("v") == Some("v2")
            && get("as") == Some("APIGroupDiscoveryList");
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, aggregated));
        }
    }
    best.is_some_and(|(_, aggregated)| aggregated)
}

/// Sort key of a Kubernetes version string: GA first, then beta, then alpha, then others;
/// higher major/minor first within a class.
fn version_rank(v: &str) -> (u8, Reverse<u32>, Reverse<u32>, String) {
    let Some(rest) = v.strip_prefix('v') else {
        return (3, Reverse(0), Reverse(0), v.to_string());
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (3, Reverse(0), Reverse(0), v.to_string());
    };
    let tail = &rest[digits.len()..];
    let (class, minor) = if tail.is_empty() {
        (0, "0")
    } else if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (2, m)
    } else {
        return (3, Reverse(0), Reverse(0), v.to_string());
    };
    (
        class,
        Reverse(major),
        Reverse(minor.parse().unwrap_or(0)),
        String::new(),
    )
}

/// Groups in registration order (core first if present), each with its versions, preferred first.
fn groups<'a>(resources: &[&'a ResourceInfo]) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in resources {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) if !vs.contains(&r.version.as_str()) => vs.push(&r.version),
            Some(_) => {}
            None => out.push((&r.group, vec![&r.version])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by_key(|v| version_rank(v));
    }
    out
}

/// `/api`: APIVersions.
pub fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({"name": group, "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(), "preferredVersion": gv(versions[0])})
}

/// `/apis`: APIGroupList of every named group.
pub fn api_group_list(resources: &[&ResourceInfo]) -> Value {
    let gs: Vec<Value> = groups(resources)
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `/apis/<group>`: APIGroup, or `None` (404) for an unknown group.
pub fn api_group(resources: &[&ResourceInfo], group: &str) -> Option<Value> {
    let gs = groups(resources);
    let (g, vs) = gs.iter().find(|(g, _)| !g.is_empty() && *g == group)?;
    let mut doc = group_json(g, vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/<group>/<version>`: APIResourceList, or `None` (404) when nothing is served.
pub fn api_resource_list(resources: &[&ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let entries: Vec<Value> = served.iter().flat_map(|r| legacy_entries(r)).collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}),
    )
}

/// One resource's APIResource entries: the resource, then `<plural>/<subresource>` entries.
fn legacy_entries(r: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": STANDARD_VERBS});
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    let sub = |name: &str, group: &str, version: &str, kind: &str, verbs: Vec<String>| {
        let mut e = json!({"name": format!("{}/{name}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
        // Entries whose kind lives in another group version say so (autoscaling/v1 Scale).
        if group != r.group || version != r.version {
            e["group"] = json!(group);
            e["version"] = json!(version);
        }
        e
    };
    let verbs = || {
        SUBRESOURCE_VERBS
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
    };
    if r.status_subresource {
        out.push(sub("status", &r.group, &r.version, &r.kind, verbs()));
    }
    if r.scale.is_some() {
        out.push(sub("scale", "autoscaling", "v1", "Scale", verbs()));
    }
    for s in &r.extra_subresources {
        out.push(sub(&s.name, &s.group, &s.version, &s.kind, s.verbs.clone()));
    }
    out
}

/// Aggregated discovery: the core group alone (`/api`, `core = true`) or every named group
/// (`/apis`).
pub fn aggregated(resources: &[&ResourceInfo], core: bool) -> Value {
    let items: Vec<Value> = groups(resources)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let rs: Vec<Value> = resources
                        .iter()
                        .filter(|r| r.group == g && r.version == *v)
                        .map(|r| aggregated_resource(r))
                        .collect();
                    json!({"version": v, "resources": rs, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let kind = |g: &str, v: &str, k: &str| json!({"group": g, "version": v, "kind": k});
    let mut subs = Vec::new();
    if r.status_subresource {
        subs.push(json!({"subresource": "status", "responseKind": kind(&r.group, &r.version, &r.kind), "verbs": SUBRESOURCE_VERBS}));
    }
    if r.scale.is_some() {
        subs.push(json!({"subresource": "scale", "responseKind": kind("autoscaling", "v1", "Scale"), "verbs": SUBRESOURCE_VERBS}));
    }
    for s in &r.extra_subresources {
        subs.push(json!({"subresource": s.name, "responseKind": kind(&s.group, &s.version, &s.kind), "verbs": s.verbs}));
    }
    let mut e = json!({"resource": r.plural, "singularResource": r.singular, "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "responseKind": kind(&r.group, &r.version, &r.kind), "verbs": STANDARD_VERBS});
    if !subs.is_empty() {
        e["subresources"] = json!(subs);
    }
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{ScalePaths, builtins};

    fn registry() -> Vec<ResourceInfo> {
        let mut all = builtins();
        let pods = all
            .iter()
            .find(|r| r.plural == "pods" && r.group.is_empty())
            .unwrap()
            .clone();
        let mut ms = pods.clone();
        ms.group = "berth.dev".into();
        ms.version = "v1alpha1".into();
        ms.kind = "ModelService".into();
        ms.plural = "modelservices".into();
        ms.singular = "modelservice".into();
        ms.short_names = vec!["ms".into()];
        ms.categories = vec!["all".into()];
        ms.extra_subresources.clear();
        ms.scale = Some(ScalePaths {
            spec_replicas_path: ".spec.replicas".into(),
            status_replicas_path: ".status.replicas".into(),
            label_selector_path: None,
        });
        let mut ms_v1 = ms.clone();
        ms_v1.version = "v1".into();
        all.push(ms);
        all.push(ms_v1);
        all
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json, */*"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5,application/json"
        ));
        assert!(!wants_aggregated(""));
    }

    #[test]
    fn versions_are_ordered_by_kubernetes_priority() {
        let mut vs = vec!["v1alpha1", "v2beta1", "v1", "v1beta2", "v2", "foo"];
        vs.sort_by_key(|v| version_rank(v));
        assert_eq!(vs, ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
    }

    #[test]
    fn legacy_documents() {
        let reg = registry();
        let refs: Vec<&ResourceInfo> = reg.iter().collect();
        let groups = api_group_list(&refs);
        let berth = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "berth.dev")
            .unwrap();
        assert_eq!(
            berth["preferredVersion"],
            json!({"groupVersion": "berth.dev/v1", "version": "v1"})
        );
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["name"] != ""),
            "core is not a named group"
        );
        assert_eq!(api_group(&refs, "berth.dev").unwrap()["kind"], "APIGroup");
        assert!(api_group(&refs, "nope.dev").is_none());

        let core = api_resource_list(&refs, "", "v1").unwrap();
        assert_eq!(core["groupVersion"], "v1");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"pods")
                && names.contains(&"pods/status")
                && names.contains(&"configmaps"),
            "{names:?}"
        );
        let ms = api_resource_list(&refs, "berth.dev", "v1alpha1").unwrap();
        let scale = ms["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "modelservices/scale")
            .unwrap();
        assert_eq!(
            (
                scale["group"].as_str(),
                scale["version"].as_str(),
                scale["kind"].as_str()
            ),
            (Some("autoscaling"), Some("v1"), Some("Scale"))
        );
        assert_eq!(ms["resources"][0]["shortNames"], json!(["ms"]));
        assert!(api_resource_list(&refs, "berth.dev", "v9").is_none());
        assert_eq!(api_versions("127.0.0.1:6443")["versions"], json!(["v1"]));
    }

    #[test]
    fn aggregated_documents() {
        let reg = registry();
        let refs: Vec<&ResourceInfo> = reg.iter().collect();
        let core = aggregated(&refs, true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let pods = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(
            pods["responseKind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        let apis = aggregated(&refs, false);
        let berth = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "berth.dev")
            .unwrap();
        assert_eq!(
            berth["versions"][0]["version"], "v1",
            "preferred version first"
        );
        let ms = &berth["versions"][1]["resources"][0];
        assert_eq!(ms["singularResource"], "modelservice");
        assert_eq!(ms["categories"], json!(["all"]));
        let subs: Vec<&str> = ms["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["subresource"].as_str().unwrap())
            .collect();
        assert!(subs.contains(&"scale"), "{subs:?}");
    }
}

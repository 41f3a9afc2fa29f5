//! Pod Security admission, as Kubernetes' PodSecurity admission plugin enforces it.
//!
//! A namespace's `pod-security.kubernetes.io/enforce` label picks its level: `privileged`,
//! `baseline` or `restricted` (always the `latest` version of the standards). berth is secure by
//! default: a namespace without the label is `baseline`, except `kube-system`, which is
//! `privileged`. An unknown label value counts as `restricted`, so a typo never opens a namespace.
//!
//! Pods that break their namespace's level are refused with 403 Forbidden, in Kubernetes' words,
//! naming every offending field. Only Pod creates and main-resource updates that change the Pod's
//! spec are checked, so status, binding and metadata writes to running Pods always pass.
//!
//! Checks made (of the Pod Security Standards): `baseline` forbids host namespaces, privileged
//! containers, capabilities beyond the default set, hostPath volumes, host ports and an
//! `Unconfined` seccomp profile. `restricted` adds: only ephemeral volume types,
//! `allowPrivilegeEscalation: false`, capabilities dropped to `ALL` (only `NET_BIND_SERVICE` may
//! be added back), `runAsNonRoot: true`, no `runAsUser: 0`, and a `RuntimeDefault` or
//! `Localhost` seccomp profile. Not checked (berth's node does not offer them): AppArmor,
//! SELinux options, `procMount`, sysctls and Windows host processes.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::rest::Ctx;

/// The namespace label that picks the enforced level.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// A Pod Security Standards level, from least to most restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Anything goes.
    Privileged,
    /// Known privilege escalations are refused.
    Baseline,
    /// Pod hardening best practices are required.
    Restricted,
}

impl Level {
    /// The level enforced in namespace `name` with `labels` (its `metadata.labels`, or null).
    pub fn of_namespace(name: &str, labels: &Value) -> Level {
        match labels.get(ENFORCE_LABEL).and_then(Value::as_str) {
            Some("privileged") => Level::Privileged,
            Some("baseline") => Level::Baseline,
            Some(_) => Level::Restricted,
            None if name == "kube-system" => Level::Privileged,
            None => Level::Baseline,
        }
    }

    /// The level's name, as in the label.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// One check: a violation message for a Pod spec, or `None` when the spec passes.
type Check = fn(&Value) -> Option<String>;

/// The checks of `baseline`.
const BASELINE: &[Check] = &[
    host_namespaces,
    privileged,
    baseline_capabilities,
    host_path_volumes,
    host_ports,
    seccomp_unconfined,
];

/// The checks of `restricted` (baseline's capability and seccomp checks are replaced by stricter
/// ones, as in Kubernetes).
const RESTRICTED: &[Check] = &[
    host_namespaces,
    privileged,
    host_path_volumes,
    host_ports,
    restricted_volumes,
    privilege_escalation,
    restricted_capabilities,
    run_as_non_root,
    run_as_root_user,
    restricted_seccomp,
];

/// Every violation of `level` by the Pod spec `spec`, in Kubernetes' words.
pub fn violations(level: Level, spec: &Value) -> Vec<String> {
    let checks: &[Check] = match level {
        Level::Privileged => &[],
        Level::Baseline => BASELINE,
        Level::Restricted => RESTRICTED,
    };
    checks.iter().filter_map(|check| check(spec)).collect()
}

/// Refuses a Pod write that breaks its namespace's level (403 Forbidden). `old` is the stored
/// Pod on an update; `sub` the subresource written. Other resources always pass.
pub async fn admit(
    ctx: &Ctx,
    old: Option<&Value>,
    pod: &Value,
    sub: Option<&str>,
) -> ApiResult<()> {
    let is_pod = ctx.r.builtin && ctx.r.group.is_empty() && ctx.r.plural == "pods";
    // Like Kubernetes: subresources and updates that leave the spec alone are not checked.
    if !is_pod || sub.is_some() || old.is_some_and(|o| o.get("spec") == pod.get("spec")) {
        return Ok(());
    }
    let level = namespace_level(ctx).await?;
    let found = violations(level, &pod["spec"]);
    if found.is_empty() {
        return Ok(());
    }
    let name = object::name(pod).unwrap_or_default();
    Err(ApiError::forbidden(format!(
        "pods \"{name}\" is forbidden: violates PodSecurity \"{}:latest\": {}",
        level.as_str(),
        found.join(", ")
    ))
    .with_details(&ctx.r, name))
}

/// The level of the request's namespace, read from the store.
async fn namespace_level(ctx: &Ctx) -> ApiResult<Level> {
    let ns = ctx.namespace().unwrap_or_default();
    let labels = match ctx
        .srv
        .store
        .get(&format!("/registry/namespaces/{ns}"))
        .await?
    {
        Some(kv) => {
            let obj: Value = serde_json::from_slice(&kv.value).map_err(ApiError::internal)?;
            obj["metadata"]["labels"].clone()
        }
        None => Value::Null,
    };
    Ok(Level::of_namespace(ns, &labels))
}

/// Capabilities a `baseline` container may add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types a `restricted` Pod may use.
const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every container of the spec: init, regular and ephemeral.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .filter_map(|f| spec.get(f).and_then(Value::as_array))
        .flatten()
}

/// The names of the containers for which `pred` holds.
fn containers_where(spec: &Value, pred: impl Fn(&Value) -> bool) -> Vec<&str> {
    containers(spec)
        .filter(|c| pred(c))
        .map(|c| c["name"].as_str().unwrap_or_default())
        .collect()
}

/// `container "a"` or `containers "a", "b"` (Kubernetes' way of naming what broke a rule).
fn subject(what: &str, names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let plural = if names.len() == 1 { "" } else { "s" };
    format!("{what}{plural} {}", quoted.join(", "))
}

/// `"A", "B"`, sorted and without repeats.
fn quoted_set<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let set: std::collections::BTreeSet<&str> = items.collect();
    let quoted: Vec<String> = set.iter().map(|s| format!("\"{s}\"")).collect();
    quoted.join(", ")
}

/// hostNetwork, hostPID and hostIPC.
fn host_namespaces(spec: &Value) -> Option<String> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|f| spec[*f].as_bool() == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    (!set.is_empty()).then(|| format!("host namespaces ({})", set.join(", ")))
}

/// `securityContext.privileged: true`.
fn privileged(spec: &Value) -> Option<String> {
    let names = containers_where(spec, |c| {
        c["securityContext"]["privileged"].as_bool() == Some(true)
    });
    (!names.is_empty()).then(|| {
        format!(
            "privileged ({} must not set securityContext.privileged=true)",
            subject("container", &names)
        )
    })
}

/// The capabilities a container adds.
fn added_capabilities(c: &Value) -> impl Iterator<Item = &str> {
    c["securityContext"]["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// The rule "must not include CAPS in capabilities.add" for capabilities outside `allowed`.
fn capabilities_beyond(spec: &Value, allowed: &[&str]) -> Option<String> {
    let beyond = |c: &Value| added_capabilities(c).any(|cap| !allowed.contains(&cap));
    let names = containers_where(spec, beyond);
    if names.is_empty() {
        return None;
    }
    let caps = quoted_set(
        containers(spec)
            .flat_map(added_capabilities)
            .filter(|cap| !allowed.contains(cap)),
    );
    Some(format!(
        "{} must not include {caps} in securityContext.capabilities.add",
        subject("container", &names)
    ))
}

/// Capabilities beyond the baseline set.
fn baseline_capabilities(spec: &Value) -> Option<String> {
    capabilities_beyond(spec, BASELINE_CAPABILITIES)
        .map(|rule| format!("non-default capabilities ({rule})"))
}

/// hostPath volumes.
fn host_path_volumes(spec: &Value) -> Option<String> {
    let names: Vec<&str> = volumes(spec)
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| v["name"].as_str().unwrap_or_default())
        .collect();
    (!names.is_empty()).then(|| format!("hostPath volumes ({})", subject("volume", &names)))
}

/// The spec's volumes.
fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec["volumes"].as_array().into_iter().flatten()
}

/// Non-zero host ports.
fn host_ports(spec: &Value) -> Option<String> {
    let port_of = |p: &Value| p["hostPort"].as_i64().filter(|n| *n != 0);
    let ports_of = |c: &Value| -> Vec<i64> {
        let ports = c["ports"].as_array().into_iter().flatten();
        ports.filter_map(port_of).collect()
    };
    let names = containers_where(spec, |c| !ports_of(c).is_empty());
    if names.is_empty() {
        return None;
    }
    let ports: Vec<String> = containers(spec)
        .flat_map(ports_of)
        .map(|p| p.to_string())
        .collect();
    let (verb, noun) = if names.len() == 1 && ports.len() == 1 {
        ("uses", "hostPort")
    } else if names.len() == 1 {
        ("uses", "hostPorts")
    } else {
        ("use", "hostPorts")
    };
    Some(format!(
        "hostPort ({} {verb} {noun} {})",
        subject("container", &names),
        ports.join(", ")
    ))
}

/// The seccomp profile type set in a securityContext, if any.
fn seccomp_type(security_context: &Value) -> Option<&str> {
    security_context["seccompProfile"]["type"].as_str()
}

/// An `Unconfined` seccomp profile on the pod or a container.
fn seccomp_unconfined(spec: &Value) -> Option<String> {
    let unconfined = |sc: &Value| seccomp_type(sc) == Some("Unconfined");
    let mut who = Vec::new();
    if unconfined(&spec["securityContext"]) {
        who.push("pod".to_string());
    }
    let names = containers_where(spec, |c| unconfined(&c["securityContext"]));
    if !names.is_empty() {
        who.push(subject("container", &names));
    }
    (!who.is_empty()).then(|| {
        format!(
            "seccompProfile ({} must not set securityContext.seccompProfile.type to \"Unconfined\")",
            who.join(" and ")
        )
    })
}

/// Restricted: an Unconfined profile is refused, and every container needs a profile.
fn restricted_seccomp(spec: &Value) -> Option<String> {
    seccomp_unconfined(spec).or_else(|| {
        let pod = seccomp_type(&spec["securityContext"]);
        let names = containers_where(spec, |c| {
            !matches!(
                seccomp_type(&c["securityContext"]).or(pod),
                Some("RuntimeDefault" | "Localhost")
            )
        });
        (!names.is_empty()).then(|| {
            format!(
                "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
                subject("container", &names)
            )
        })
    })
}

/// Restricted: only ephemeral volume types.
fn restricted_volumes(spec: &Value) -> Option<String> {
    let kind = |v: &Value| -> Option<String> {
        let m = v.as_object()?;
        m.keys().find(|k| *k != "name").cloned()
    };
    let bad: Vec<(&str, String)> = volumes(spec)
        .filter_map(|v| kind(v).map(|k| (v["name"].as_str().unwrap_or_default(), k)))
        .filter(|(_, k)| !RESTRICTED_VOLUME_TYPES.contains(&k.as_str()))
        .collect();
    if bad.is_empty() {
        return None;
    }
    let names: Vec<&str> = bad.iter().map(|(n, _)| *n).collect();
    let kinds = quoted_set(bad.iter().map(|(_, k)| k.as_str()));
    let (verb, noun) = if names.len() == 1 {
        ("uses", "type")
    } else {
        ("use", "types")
    };
    Some(format!(
        "restricted volume types ({} {verb} restricted volume {noun} {kinds})",
        subject("volume", &names)
    ))
}

/// Restricted: `allowPrivilegeEscalation: false` on every container.
fn privilege_escalation(spec: &Value) -> Option<String> {
    let names = containers_where(spec, |c| {
        c["securityContext"]["allowPrivilegeEscalation"].as_bool() != Some(false)
    });
    (!names.is_empty()).then(|| {
        format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            subject("container", &names)
        )
    })
}

/// Restricted: drop ALL, add back at most NET_BIND_SERVICE.
fn restricted_capabilities(spec: &Value) -> Option<String> {
    let drops_all = |c: &Value| {
        let drop = c["securityContext"]["capabilities"]["drop"].as_array();
        drop.is_some_and(|d| d.iter().any(|x| x.as_str() == Some("ALL")))
    };
    let mut rules = Vec::new();
    let names = containers_where(spec, |c| !drops_all(c));
    if !names.is_empty() {
        rules.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            subject("container", &names)
        ));
    }
    rules.extend(capabilities_beyond(spec, &["NET_BIND_SERVICE"]));
    (!rules.is_empty()).then(|| format!("unrestricted capabilities ({})", rules.join("; ")))
}

/// Restricted: `runAsNonRoot: true` on the pod or every container.
fn run_as_non_root(spec: &Value) -> Option<String> {
    let pod = spec["securityContext"]["runAsNonRoot"].as_bool();
    let names = containers_where(spec, |c| {
        c["securityContext"]["runAsNonRoot"].as_bool().or(pod) != Some(true)
    });
    (!names.is_empty()).then(|| {
        format!(
            "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
            subject("container", &names)
        )
    })
}

/// Restricted: no `runAsUser: 0` on the pod or a container.
fn run_as_root_user(spec: &Value) -> Option<String> {
    let root = |sc: &Value| sc["runAsUser"].as_i64() == Some(0);
    let mut who = Vec::new();
    if root(&spec["securityContext"]) {
        who.push("pod".to_string());
    }
    let names = containers_where(spec, |c| root(&c["securityContext"]));
    if !names.is_empty() {
        who.push(subject("container", &names));
    }
    (!who.is_empty()).then(|| {
        format!(
            "runAsUser=0 ({} must not set runAsUser=0)",
            who.join(" and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn app(extra: Value) -> Value {
        let mut c = json!({"name": "app", "image": "x"});
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        c
    }

    #[test]
    fn namespace_labels_pick_the_level() {
        let labelled = |v: &str| json!({ENFORCE_LABEL: v});
        assert_eq!(
            Level::of_namespace("default", &Value::Null),
            Level::Baseline
        );
        assert_eq!(
            Level::of_namespace("kube-system", &json!({})),
            Level::Privileged
        );
        assert_eq!(
            Level::of_namespace("kube-system", &labelled("baseline")),
            Level::Baseline
        );
        assert_eq!(
            Level::of_namespace("ml", &labelled("privileged")),
            Level::Privileged
        );
        assert_eq!(
            Level::of_namespace("ml", &labelled("restricted")),
            Level::Restricted
        );
        assert_eq!(
            Level::of_namespace("ml", &labelled("typo")),
            Level::Restricted
        );
    }

    #[test]
    fn a_plain_pod_passes_baseline_and_anything_passes_privileged() {
        let plain = json!({"containers": [app(json!({"securityContext": {"runAsUser": 0}}))]});
        assert!(violations(Level::Baseline, &plain).is_empty());
        let wild = json!({"hostNetwork": true, "volumes": [{"name": "d", "hostPath": {"path": "/"}}],
            "containers": [app(json!({"securityContext": {"privileged": true}}))]});
        assert!(violations(Level::Privileged, &wild).is_empty());
    }

    #[test]
    fn baseline_names_every_forbidden_field() {
        let spec = json!({
            "hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "data", "hostPath": {"path": "/srv"}}, {"name": "s", "emptyDir": {}}],
            "securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [
                app(json!({"securityContext": {"privileged": true,
                    "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}]})),
                {"name": "side", "image": "y", "ports": [{"containerPort": 90}],
                 "securityContext": {"seccompProfile": {"type": "Unconfined"}}}
            ]
        });
        assert_eq!(
            violations(Level::Baseline, &spec),
            [
                "host namespaces (hostNetwork=true, hostPID=true)",
                "privileged (container \"app\" must not set securityContext.privileged=true)",
                "non-default capabilities (container \"app\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)",
                "hostPath volumes (volume \"data\")",
                "hostPort (container \"app\" uses hostPort 8080)",
                "seccompProfile (pod and container \"side\" must not set securityContext.seccompProfile.type to \"Unconfined\")",
            ]
        );
    }

    #[test]
    fn baseline_allows_default_capabilities_and_zero_host_ports() {
        let spec = json!({"containers": [app(json!({
            "securityContext": {"capabilities": {"add": ["CHOWN", "NET_BIND_SERVICE"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "ports": [{"containerPort": 80, "hostPort": 0}]}))]});
        assert!(violations(Level::Baseline, &spec).is_empty());
    }

    #[test]
    fn restricted_requires_hardening() {
        let spec = json!({"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}],
            "containers": [app(json!({"securityContext": {"runAsUser": 0,
                "capabilities": {"add": ["CHOWN"]}}}))]});
        assert_eq!(
            violations(Level::Restricted, &spec),
            [
                "restricted volume types (volume \"n\" uses restricted volume type \"nfs\")",
                "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false)",
                "unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]; container \"app\" must not include \"CHOWN\" in securityContext.capabilities.add)",
                "runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true)",
                "runAsUser=0 (container \"app\" must not set runAsUser=0)",
                "seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            ]
        );
    }

    #[test]
    fn a_hardened_pod_passes_restricted() {
        let spec = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "c", "configMap": {"name": "x"}}],
            "containers": [app(json!({"securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}))]
        });
        assert!(violations(Level::Restricted, &spec).is_empty());
    }

    #[test]
    fn several_offenders_are_listed_together() {
        let spec = json!({"volumes": [{"name": "a", "hostPath": {"path": "/a"}},
                                      {"name": "b", "hostPath": {"path": "/b"}}],
            "containers": [app(json!({"securityContext": {"privileged": true}})),
                           {"name": "two", "image": "x", "securityContext": {"privileged": true}}]});
        assert_eq!(
            violations(Level::Baseline, &spec),
            [
                "privileged (containers \"app\", \"two\" must not set securityContext.privileged=true)",
                "hostPath volumes (volumes \"a\", \"b\")",
            ]
        );
    }
}

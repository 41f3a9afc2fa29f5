//! Taints and tolerations with Kubernetes' matching rules: which taint of a node keeps a Pod off
//! it, and whether a Pod tolerates a cordoned node.

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

/// The taint a cordoned node (`spec.unschedulable`) stands for.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Whether toleration `t` tolerates `taint`: an empty effect matches every effect, an empty key
/// every key; `Exists` ignores the value, `Equal` (the default) compares it.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "Exists" => true,
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// Whether the Pod tolerates `taint`.
pub fn pod_tolerates(pod: &Pod, taint: &Taint) -> bool {
    tolerations(pod).iter().any(|t| tolerates(t, taint))
}

/// The first taint of the node that keeps the Pod off it: effect `NoSchedule` or `NoExecute`
/// (`PreferNoSchedule` only ranks nodes in Kubernetes, so it never rules one out here).
pub fn untolerated<'a>(pod: &Pod, node: &'a Node) -> Option<&'a Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
        .find(|t| !pod_tolerates(pod, t))
}

/// Whether the node is cordoned and the Pod does not tolerate
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn cordoned_for(pod: &Pod, node: &Node) -> bool {
    let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    cordoned
        && !pod_tolerates(
            pod,
            &Taint {
                key: UNSCHEDULABLE_TAINT.to_string(),
                effect: "NoSchedule".to_string(),
                ..Taint::default()
            },
        )
}

/// A taint as Kubernetes prints it in FailedScheduling: `{key: value}`.
pub fn describe(taint: &Taint) -> String {
    format!(
        "{{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    #[test]
    fn equal_compares_values_and_effect() {
        let gpu = taint("gpu", "a100", "NoSchedule");
        let t = tol(json!({"key":"gpu","operator":"Equal","value":"a100","effect":"NoSchedule"}));
        assert!(tolerates(&t, &gpu));
        let t = tol(json!({"key":"gpu","value":"h100"}));
        assert!(!tolerates(&t, &gpu));
        let t = tol(json!({"key":"gpu","value":"a100","effect":"NoExecute"}));
        assert!(!tolerates(&t, &gpu));
        // No effect in the toleration matches every effect; Equal is the default operator.
        assert!(tolerates(&tol(json!({"key":"gpu","value":"a100"})), &gpu));
    }

    #[test]
    fn exists_ignores_the_value_and_an_empty_key_matches_all() {
        let gpu = taint("gpu", "a100", "NoExecute");
        assert!(tolerates(
            &tol(json!({"key":"gpu","operator":"Exists"})),
            &gpu
        ));
        assert!(!tolerates(
            &tol(json!({"key":"tpu","operator":"Exists"})),
            &gpu
        ));
        assert!(tolerates(&tol(json!({"operator":"Exists"})), &gpu));
        assert!(!tolerates(
            &tol(json!({"operator":"Exists","effect":"NoSchedule"})),
            &gpu
        ));
    }

    #[test]
    fn prefer_no_schedule_never_excludes_and_cordon_is_tolerable() {
        let node: Node = serde_json::from_value(json!({"metadata":{"name":"n"},
            "spec":{"unschedulable":true,"taints":[{"key":"soft","effect":"PreferNoSchedule"},
                {"key":"dedicated","value":"ml","effect":"NoSchedule"}]}}))
        .unwrap();
        let mut pod: Pod = serde_json::from_value(json!({"spec":{"containers":[]}})).unwrap();
        assert_eq!(
            describe(untolerated(&pod, &node).unwrap()),
            "{dedicated: ml}"
        );
        assert!(cordoned_for(&pod, &node));
        pod.spec.as_mut().unwrap().tolerations = Some(vec![
            tol(json!({"key":"dedicated","operator":"Exists"})),
            tol(json!({"key":UNSCHEDULABLE_TAINT,"operator":"Exists","effect":"NoSchedule"})),
        ]);
        assert!(untolerated(&pod, &node).is_none());
        assert!(!cordoned_for(&pod, &node));
    }
}

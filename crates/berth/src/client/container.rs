//! Which container of a Pod a command means when the user named none (`logs`, `exec`), chosen
//! like kubectl does.

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Pod;

/// The container a command acts on: `-c`, else the default-container annotation, else the first one
/// (saying so on stderr when `announce` and there are several, as kubectl does).
pub fn container_of(pod: &Pod, asked: Option<&str>, announce: bool) -> anyhow::Result<String> {
    if let Some(c) = asked {
        return Ok(c.to_string());
    }
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| c.name.clone())
        .collect();
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .filter(|c| names.contains(c));
    let chosen = annotated
        .or(names.first())
        .cloned()
        .context("the Pod has no containers")?;
    if announce && annotated.is_none() && names.len() > 1 {
        eprintln!(
            "Defaulted container \"{chosen}\" out of: {}",
            names.join(", ")
        );
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_container() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}))
        .unwrap();
        assert_eq!(container_of(&pod, None, false).unwrap(), "a");
        assert_eq!(container_of(&pod, Some("b"), false).unwrap(), "b");
        let mut annotated = pod.clone();
        annotated.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/default-container".to_string(),
                "b".to_string(),
            )]
            .into(),
        );
        assert_eq!(container_of(&annotated, None, false).unwrap(), "b");
    }
}

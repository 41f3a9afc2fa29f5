//! What a Pod asks of the node's confinement, passed through CRI so the runtime honours it
//! rather than dropping it: the host namespaces (`hostNetwork`, `hostPID`, `hostIPC`) and the
//! seccomp profile (`securityContext.seccompProfile`, the container's over the Pod's).

use std::path::{Component, Path};

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};

/// What the node settles for a container beyond its spec: its volume mounts and its seccomp
/// profile, or why the Pod cannot run as asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Confinement {
    /// The CRI mounts of the container's volumes.
    pub mounts: Vec<cri::Mount>,
    /// The seccomp profile (`None`: the runtime default).
    pub seccomp: Option<cri::SecurityProfile>,
}

impl Confinement {
    /// The confinement of `container`, or a message for CreateContainerConfigError.
    pub fn of(pod: &Pod, container: &Container, data_dir: &Path) -> Result<Self, String> {
        Ok(Confinement {
            mounts: super::volumes::mounts(pod, container)?,
            seccomp: container_seccomp(pod, container, data_dir)?,
        })
    }
}

/// Where `Localhost` seccomp profiles live, under the agent's data dir (as the kubelet's
/// `<root-dir>/seccomp`).
pub const SECCOMP_DIR: &str = "seccomp";

/// The Pod's namespace modes: NODE for each host namespace it asks for, else POD.
pub fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.as_ref();
    let mode = |host: Option<bool>| {
        if host.unwrap_or(false) {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        }
    };
    cri::NamespaceOption {
        network: mode(spec.and_then(|s| s.host_network)),
        pid: mode(spec.and_then(|s| s.host_pid)),
        ipc: mode(spec.and_then(|s| s.host_ipc)),
        ..Default::default()
    }
}

/// Whether the Pod runs on the node's network (its IP is then the node's).
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The Pod-level seccomp profile (`None`: the runtime default).
pub fn pod_seccomp(pod: &Pod, data_dir: &Path) -> Result<Option<cri::SecurityProfile>, String> {
    let profile = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.seccomp_profile.as_ref());
    profile.map(|p| to_cri(p, data_dir)).transpose()
}

/// The container's seccomp profile: its own, else the Pod's (`None`: the runtime default).
pub fn container_seccomp(
    pod: &Pod,
    container: &Container,
    data_dir: &Path,
) -> Result<Option<cri::SecurityProfile>, String> {
    match container
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
    {
        Some(p) => to_cri(p, data_dir).map(Some),
        None => pod_seccomp(pod, data_dir),
    }
}

/// A Kubernetes seccomp profile as CRI's: `Localhost` names a descending path under
/// [`SECCOMP_DIR`], which the runtime receives as an absolute path.
fn to_cri(p: &SeccompProfile, data_dir: &Path) -> Result<cri::SecurityProfile, String> {
    use cri::security_profile::ProfileType;
    let (profile_type, localhost_ref) = match p.type_.as_str() {
        "RuntimeDefault" => (ProfileType::RuntimeDefault, String::new()),
        "Unconfined" => (ProfileType::Unconfined, String::new()),
        "Localhost" => {
            let rel = p.localhost_profile.as_deref().unwrap_or_default();
            let descending = !rel.is_empty()
                && Path::new(rel)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)));
            if !descending {
                return Err(format!(
                    "seccompProfile.localhostProfile {rel:?} must be a descending relative path"
                ));
            }
            let path = data_dir.join(SECCOMP_DIR).join(rel);
            (ProfileType::Localhost, path.display().to_string())
        }
        other => return Err(format!("seccompProfile.type {other:?} is not supported")),
    };
    Ok(cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn host_namespaces_become_node_modes() {
        let p = pod(json!({"hostNetwork": true, "hostIPC": true, "containers": []}));
        let ns = namespace_options(&p);
        let node = cri::NamespaceMode::Node as i32;
        assert_eq!((ns.network, ns.pid, ns.ipc), (node, 0, node));
        assert!(host_network(&p));
        let ns = namespace_options(&pod(json!({"containers": []})));
        assert_eq!((ns.network, ns.pid, ns.ipc), (0, 0, 0));
    }

    #[test]
    fn seccomp_comes_from_the_container_then_the_pod() {
        let p = pod(json!({
            "securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [
                {"name": "own", "image": "i", "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "prof/a.json"}}},
                {"name": "inherits", "image": "i"}
            ]
        }));
        let cs = &p.spec.as_ref().unwrap().containers;
        let data = Path::new("/var/lib/berth");
        let own = container_seccomp(&p, &cs[0], data).unwrap().unwrap();
        assert_eq!(own.profile_type, 2);
        assert_eq!(own.localhost_ref, "/var/lib/berth/seccomp/prof/a.json");
        let inherited = container_seccomp(&p, &cs[1], data).unwrap().unwrap();
        assert_eq!(inherited.profile_type, 1);
        let none = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        let c = &none.spec.as_ref().unwrap().containers[0];
        assert_eq!(container_seccomp(&none, c, data), Ok(None));
        let escape = pod(json!({"containers": [{"name": "c", "image": "i",
            "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "../x"}}}]}));
        let c = &escape.spec.as_ref().unwrap().containers[0];
        assert!(container_seccomp(&escape, c, data).is_err());
    }
}

//! From a Pod spec to CRI configs (pure): the sandbox config, the image pull decision inputs and
//! each container's config with env, resources and security context.

use std::collections::HashMap;
use std::path::Path;

use berth_api::quantity::parse_quantity;
use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements, SecurityContext};
use kube::ResourceExt;

use super::confine::{self, Confinement};
use crate::labels;

/// The CFS period the agent uses with a cpu limit (the kernel's default, as the kubelet).
const CPU_PERIOD: i64 = 100_000;

/// The CRI labels that identify a Pod's sandbox and containers.
/// The Pod's terminationGracePeriodSeconds, 30 s when unset (kubelet's default): the one place
/// the agent reads it, for stopping containers and the annotation the runtime keeps.
pub fn termination_grace_seconds(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_NAME.to_string(), pod.name_any()),
        (
            labels::POD_NAMESPACE.to_string(),
            pod.namespace().unwrap_or_default(),
        ),
        (labels::POD_UID.to_string(), pod.uid().unwrap_or_default()),
    ])
}

/// The directory of a Pod's container logs under the agent's data dir (`pods/<ns>_<name>_<uid>`,
/// the kubelet's layout).
pub fn log_directory(data_dir: &Path, pod: &Pod) -> String {
    let dir = format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default()
    );
    data_dir.join("pods").join(dir).display().to_string()
}

/// The Pod's sandbox config (attempt counts earlier sandboxes of the same Pod).
pub fn sandbox_config(pod: &Pod, attempt: u32, log_dir: String) -> cri::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|h| *h > 0)?;
            Some(cri::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => cri::Protocol::Udp as i32,
                    Some("SCTP") => cri::Protocol::Sctp as i32,
                    _ => cri::Protocol::Tcp as i32,
                },
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    let mut hostname = spec.hostname.clone().unwrap_or_else(|| pod.name_any());
    hostname.truncate(63);
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            namespace: pod.namespace().unwrap_or_default(),
            attempt,
        }),
        hostname,
        log_directory: log_dir,
        port_mappings,
        labels: pod_labels(pod),
        annotations: pod.annotations().clone().into_iter().collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(confine::namespace_options(pod)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What `valueFrom.fieldRef` env vars resolve against.
#[derive(Debug, Clone, Default)]
pub struct FieldValues {
    /// `status.podIP`.
    pub pod_ip: Option<String>,
    /// `spec.nodeName` / `status.hostIP` source.
    pub node_name: String,
    /// `status.hostIP`.
    pub host_ip: String,
}

/// Whether the image should be pulled given its policy and whether it is present.
pub fn should_pull(container: &Container, present: bool) -> Result<bool, String> {
    match pull_policy(container).as_str() {
        "Always" => Ok(true),
        "Never" if present => Ok(false),
        "Never" => Err(format!(
            "Container image \"{}\" is not present with pull policy of Never",
            image(container)
        )),
        _ => Ok(!present),
    }
}

/// The effective imagePullPolicy: given, else the default for the image
/// ([`berth_api::image::default_pull_policy`]).
pub fn pull_policy(container: &Container) -> String {
    match container
        .image_pull_policy
        .clone()
        .filter(|p| !p.is_empty())
    {
        Some(p) => p,
        None => berth_api::image::default_pull_policy(&image(container))
            .as_str()
            .to_string(),
    }
}

/// The container's image reference.
pub fn image(container: &Container) -> String {
    container.image.clone().unwrap_or_default()
}

/// The container's CRI config for instance number `restart_count`, confined as `confinement`
/// says (its mounts and seccomp profile).
pub fn container_config(
    pod: &Pod,
    container: &Container,
    restart_count: u32,
    fields: &FieldValues,
    confinement: &Confinement,
) -> cri::ContainerConfig {
    let mut labels = pod_labels(pod);
    labels.insert(labels::CONTAINER_NAME.into(), container.name.clone());
    let grace = termination_grace_seconds(pod);
    let annotations = HashMap::from([
        (labels::RESTART_COUNT.to_string(), restart_count.to_string()),
        (labels::GRACE_PERIOD.to_string(), grace.to_string()),
    ]);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
        }),
        image: Some(cri::ImageSpec {
            image: image(container),
            ..Default::default()
        }),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env(pod, container, fields),
        labels,
        annotations,
        log_path: format!("{}/{}.log", container.name, restart_count),
        mounts: confinement.mounts.clone(),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(container.resources.as_ref())),
            security_context: Some(security(pod, container, confinement)),
        }),
        ..Default::default()
    }
}

/// The container's environment; `$(VAR)` references are left as written (not expanded).
fn env(pod: &Pod, container: &Container, fields: &FieldValues) -> Vec<cri::KeyValue> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => {
                    field_value(pod, from.field_ref.as_ref()?.field_path.as_str(), fields)?
                }
                (None, None) => String::new(),
            };
            Some(cri::KeyValue {
                key: e.name.clone(),
                value: value.into_bytes(),
            })
        })
        .collect()
}

/// The value of a supported `fieldRef.fieldPath`.
fn field_value(pod: &Pod, path: &str, fields: &FieldValues) -> Option<String> {
    match path {
        "metadata.name" => Some(pod.name_any()),
        "metadata.namespace" => pod.namespace(),
        "metadata.uid" => pod.uid(),
        "spec.nodeName" => Some(fields.node_name.clone()),
        "status.podIP" => Some(fields.pod_ip.clone().unwrap_or_default()),
        "status.hostIP" => Some(fields.host_ip.clone()),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        _ => None,
    }
}

/// cpu shares from the request, a CFS quota from the cpu limit, the memory limit.
pub fn resources(res: Option<&ResourceRequirements>) -> cri::LinuxContainerResources {
    let get = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
               k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(|q| parse_quantity(&q.0).ok())
    };
    let limits = res.and_then(|r| r.limits.as_ref());
    // Kubernetes defaults a missing request to the limit.
    let requests = res.and_then(|r| r.requests.as_ref());
    let cpu_request = get(requests, "cpu").or(get(limits, "cpu"));
    let mut out = cri::LinuxContainerResources {
        // The kubelet's minimum of 2 shares (the kernel's minimum) when nothing is requested.
        cpu_shares: cpu_request.map_or(2, |c| ((c * 1024.0).round() as i64).max(2)),
        ..Default::default()
    };
    if let Some(cpu) = get(limits, "cpu") {
        out.cpu_period = CPU_PERIOD;
        out.cpu_quota = ((cpu * CPU_PERIOD as f64).round() as i64).max(1000);
    }
    if let Some(mem) = get(limits, "memory") {
        out.memory_limit_in_bytes = mem.round() as i64;
    }
    out
}

/// The container's Linux security context: its own settings, the Pod's host namespaces and
/// the seccomp profile settled in `confinement`.
pub fn security(
    pod: &Pod,
    container: &Container,
    confinement: &Confinement,
) -> cri::LinuxContainerSecurityContext {
    let from_pod = cri::LinuxContainerSecurityContext {
        namespace_options: Some(confine::namespace_options(pod)),
        seccomp: confinement.seccomp.clone(),
        ..Default::default()
    };
    let Some(sc) = container.security_context.as_ref() else {
        return from_pod;
    };
    cri::LinuxContainerSecurityContext {
        capabilities: sc.capabilities.as_ref().map(|c| cri::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged: sc.privileged.unwrap_or(false),
        run_as_user: sc.run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: sc.run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        ..from_pod
    }
}

/// The user an image runs as, as the runtime reports it (CRI `Image.uid` / `Image.username`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    /// A numeric uid (an image without a user runs as root: uid 0).
    Uid(i64),
    /// A user name, resolved only inside the container.
    Name(String),
}

impl ImageUser {
    /// What the runtime says of `image`; root when it says nothing, as kubelet assumes.
    pub fn of(image: Option<&cri::Image>) -> ImageUser {
        match image {
            Some(i) if i.uid.is_some() => ImageUser::Uid(i.uid.as_ref().map_or(0, |u| u.value)),
            Some(i) if !i.username.is_empty() => ImageUser::Name(i.username.clone()),
            _ => ImageUser::Uid(0),
        }
    }
}

/// The container's (else the Pod's) securityContext field `f`.
fn security_field<T>(
    container: &Container,
    pod: &Pod,
    f: impl Fn(&SecurityContext) -> Option<T>,
    pf: impl Fn(&k8s_openapi::api::core::v1::PodSecurityContext) -> Option<T>,
) -> Option<T> {
    container
        .security_context
        .as_ref()
        .and_then(f)
        .or_else(|| pod.spec.as_ref()?.security_context.as_ref().and_then(pf))
}

/// Whether the container must not run as root and sets no uid itself, so that the image's user
/// decides (then [`non_root_violation`] needs it).
pub fn needs_image_user(container: &Container, pod: &Pod) -> bool {
    run_as_non_root(container, pod) && run_as_user(container, pod).is_none()
}

fn run_as_non_root(container: &Container, pod: &Pod) -> bool {
    security_field(container, pod, |s| s.run_as_non_root, |s| s.run_as_non_root).unwrap_or(false)
}

fn run_as_user(container: &Container, pod: &Pod) -> Option<i64> {
    security_field(container, pod, |s| s.run_as_user, |s| s.run_as_user)
}

/// Why a container may not start for its `runAsNonRoot`, in kubelet's words: an explicit uid 0,
/// or no uid and an image that runs as root or as a user name that cannot be verified.
pub fn non_root_violation(
    container: &Container,
    pod: &Pod,
    image_user: &ImageUser,
) -> Option<String> {
    if !run_as_non_root(container, pod) {
        return None;
    }
    match (run_as_user(container, pod), image_user) {
        (Some(0), _) => Some("container's runAsUser breaks non-root policy".into()),
        (Some(_), _) => None,
        (None, ImageUser::Uid(0)) => {
            Some("container has runAsNonRoot and image will run as root".into())
        }
        (None, ImageUser::Uid(_)) => None,
        (None, ImageUser::Name(name)) => Some(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 5}
        }))
        .unwrap()
    }

    #[test]
    fn pull_policy_defaults() {
        let c = |img: &str| Container {
            image: Some(img.into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("reg:5000/busybox:latest")), "Always");
        assert_eq!(pull_policy(&c("reg:5000/busybox")), "Always");
        assert_eq!(pull_policy(&c("reg:5000/busybox:1.0")), "IfNotPresent");
        assert_eq!(pull_policy(&c("busybox@sha256:abc")), "IfNotPresent");
        let never = Container {
            image_pull_policy: Some("Never".into()),
            ..c("x:1")
        };
        assert!(should_pull(&never, false).is_err());
        assert_eq!(should_pull(&never, true), Ok(false));
        assert_eq!(should_pull(&c("x:1"), true), Ok(false));
        assert_eq!(should_pull(&c("x:1"), false), Ok(true));
        assert_eq!(should_pull(&c("x"), true), Ok(true));
    }

    #[test]
    fn container_config_env_resources_security() {
        let p = pod(json!([{
            "name": "app", "image": "img:1", "command": ["/bin/sh"], "args": ["-c", "x"], "workingDir": "/w",
            "env": [{"name": "A", "value": "1"},
                    {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
            "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": true,
                                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}
        }]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let fields = FieldValues {
            pod_ip: Some("10.1.0.5".into()),
            node_name: "n1".into(),
            host_ip: "1.2.3.4".into(),
        };
        let cfg = container_config(&p, c, 3, &fields, &Confinement::default());
        let env: Vec<(String, String)> = cfg
            .envs
            .iter()
            .map(|kv| (kv.key.clone(), String::from_utf8(kv.value.clone()).unwrap()))
            .collect();
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("N".into(), "p".into()),
                ("IP".into(), "10.1.0.5".into()),
                ("NODE".into(), "n1".into())
            ]
        );
        assert_eq!(cfg.log_path, "app/3.log");
        assert_eq!(cfg.annotations[labels::RESTART_COUNT], "3");
        assert_eq!(cfg.annotations[labels::GRACE_PERIOD], "5");
        assert_eq!(cfg.labels[labels::CONTAINER_NAME], "app");
        assert_eq!(cfg.labels[labels::POD_UID], "u1");
        let linux = cfg.linux.unwrap();
        let r = linux.resources.unwrap();
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (256, 50_000, 100_000, 64 << 20)
        );
        let s = linux.security_context.unwrap();
        assert_eq!(s.run_as_user.unwrap().value, 1000);
        assert!(s.readonly_rootfs);
        assert_eq!(
            s.capabilities.unwrap().drop_capabilities,
            vec!["ALL".to_string()]
        );
    }

    #[test]
    fn sandbox_maps_host_ports() {
        let p = pod(
            json!([{"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]),
        );
        let cfg = sandbox_config(&p, 1, "/logs".into());
        assert_eq!(cfg.port_mappings.len(), 1);
        assert_eq!(
            (
                cfg.port_mappings[0].container_port,
                cfg.port_mappings[0].host_port
            ),
            (80, 8080)
        );
        let m = cfg.metadata.unwrap();
        assert_eq!(
            (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt
            ),
            ("p", "ns", "u1", 1)
        );
        assert_eq!(cfg.hostname, "p");
        let ns = cfg
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options;
        assert_eq!(ns, Some(confine::namespace_options(&p)));
    }

    #[test]
    fn containers_carry_host_namespaces_seccomp_and_mounts() {
        let p: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"hostPID": true, "containers": [{"name": "a", "image": "i"}]}
        }))
        .unwrap();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let confinement = Confinement {
            mounts: vec![cri::Mount {
                host_path: "/srv".into(),
                container_path: "/srv".into(),
                ..Default::default()
            }],
            seccomp: Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                localhost_ref: String::new(),
            }),
        };
        let cfg = container_config(&p, c, 0, &FieldValues::default(), &confinement);
        assert_eq!(cfg.mounts, confinement.mounts);
        let sc = cfg.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.seccomp, confinement.seccomp);
        let ns = sc.namespace_options.unwrap();
        assert_eq!(ns.pid, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
    }

    #[test]
    fn run_as_non_root_follows_the_uid_then_the_image() {
        let check = |sc: serde_json::Value, image: ImageUser| {
            let p = pod(json!([{"name": "a", "image": "i", "securityContext": sc}]));
            let c = &p.spec.as_ref().unwrap().containers[0];
            non_root_violation(c, &p, &image)
        };
        let non_root = json!({"runAsNonRoot": true});
        // An explicit uid decides, whatever the image.
        let root = json!({"runAsNonRoot": true, "runAsUser": 0});
        assert!(check(root, ImageUser::Uid(10)).is_some());
        let ten = json!({"runAsNonRoot": true, "runAsUser": 10});
        assert_eq!(check(ten, ImageUser::Uid(0)), None);
        // Else the image's user.
        let msg = check(non_root.clone(), ImageUser::Uid(0)).unwrap();
        assert_eq!(msg, "container has runAsNonRoot and image will run as root");
        assert_eq!(check(non_root.clone(), ImageUser::Uid(10001)), None);
        let named = check(non_root, ImageUser::Name("app".into())).unwrap();
        assert!(named.contains("non-numeric user (app)"), "{named}");
        // No policy, no refusal.
        assert_eq!(check(json!({}), ImageUser::Uid(0)), None);
    }

    #[test]
    fn image_user_from_the_runtime() {
        assert_eq!(ImageUser::of(None), ImageUser::Uid(0));
        let image = |uid: Option<i64>, name: &str| cri::Image {
            uid: uid.map(|value| cri::Int64Value { value }),
            username: name.into(),
            ..Default::default()
        };
        assert_eq!(ImageUser::of(Some(&image(Some(7), ""))), ImageUser::Uid(7));
        assert_eq!(
            ImageUser::of(Some(&image(None, "app"))),
            ImageUser::Name("app".into())
        );
        assert_eq!(ImageUser::of(Some(&image(None, ""))), ImageUser::Uid(0));
    }
}

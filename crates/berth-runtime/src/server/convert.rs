//! CRI <-> internal conversions, all pure: CRI container configs become the store's
//! [`ContainerParams`], and the stores' records become CRI containers, sandboxes and images.

use berth_cri::v1 as cri;

use super::meta::CriMeta;
use crate::container::{ContainerState, ContainerStatus};
use crate::image::ImageRecord;
use crate::oci::{BindMount, ContainerParams, Resources, SeccompProfile};
use crate::sandbox::SandboxInfo;

/// The CRI state of a container state.
pub(super) fn cri_state(s: ContainerState) -> i32 {
    (match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
    }) as i32
}

/// How the store runs a container created from `req` in `sandbox`.
pub(super) fn container_params(
    req: &cri::ContainerConfig,
    sandbox: &SandboxInfo,
) -> ContainerParams {
    let linux = req.linux.clone().unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let res = linux.resources.unwrap_or_default();
    let caps = sc.capabilities.unwrap_or_default();
    let positive = |v: i64| (v > 0).then_some(v);
    let pod_sc = sandbox_security(sandbox);
    let namespaces = sc
        .namespace_options
        .clone()
        .or_else(|| pod_sc.namespace_options.clone())
        .unwrap_or_default();
    let node = cri::NamespaceMode::Node as i32;
    ContainerParams {
        command: req.command.clone(),
        args: req.args.clone(),
        envs: req
            .envs
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect(),
        working_dir: Some(req.working_dir.clone()).filter(|w| !w.is_empty()),
        run_as_user: sc.run_as_user.map(|v| v.value as u32),
        run_as_username: Some(sc.run_as_username).filter(|n| !n.is_empty()),
        run_as_group: sc.run_as_group.map(|v| v.value as u32),
        supplemental_groups: sc.supplemental_groups.iter().map(|g| *g as u32).collect(),
        mounts: req
            .mounts
            .iter()
            .map(|m| BindMount {
                host_path: m.host_path.clone().into(),
                container_path: m.container_path.clone().into(),
                readonly: m.readonly,
            })
            .collect(),
        netns_path: Some(sandbox.netns_path.clone()),
        // The network is the sandbox's: only the sandbox decides whether it is the node's.
        host_network: sandbox.host_network(),
        host_pid: namespaces.pid == node,
        host_ipc: namespaces.ipc == node,
        hostname: sandbox.hostname.clone(),
        etc_files: vec![
            (sandbox.hostname_path.clone(), "/etc/hostname"),
            (sandbox.hosts_path.clone(), "/etc/hosts"),
            (sandbox.resolv_conf_path.clone(), "/etc/resolv.conf"),
        ],
        resources: Resources {
            cpu_shares: positive(res.cpu_shares).map(|v| v as u64),
            cpu_quota: positive(res.cpu_quota),
            cpu_period: positive(res.cpu_period).map(|v| v as u64),
            memory_limit: positive(res.memory_limit_in_bytes),
            pids_limit: None,
        },
        cgroups_path: None,
        privileged: sc.privileged,
        readonly_rootfs: sc.readonly_rootfs,
        allow_privilege_escalation: false,
        add_capabilities: caps.add_capabilities,
        drop_capabilities: caps.drop_capabilities,
        add_ambient_capabilities: caps.add_ambient_capabilities,
        seccomp: seccomp_profile(sc.seccomp.as_ref().or(pod_sc.seccomp.as_ref())),
    }
}

/// The sandbox's Linux security context (empty when it has none).
fn sandbox_security(sandbox: &SandboxInfo) -> cri::LinuxSandboxSecurityContext {
    sandbox
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default()
}

/// The seccomp profile a CRI `SecurityProfile` names; none named means the runtime default.
fn seccomp_profile(p: Option<&cri::SecurityProfile>) -> SeccompProfile {
    use cri::security_profile::ProfileType;
    match p.map(|p| (p.profile_type(), p)) {
        None | Some((ProfileType::RuntimeDefault, _)) => SeccompProfile::RuntimeDefault,
        Some((ProfileType::Unconfined, _)) => SeccompProfile::Unconfined,
        Some((ProfileType::Localhost, p)) => {
            SeccompProfile::Localhost(p.localhost_ref.clone().into())
        }
    }
}

/// The CRI status of a container with its CRI metadata `m` (empty when it has none).
pub(super) fn container_status_to_cri(s: &ContainerStatus, m: CriMeta) -> cri::ContainerStatus {
    let exit = s.exit.clone();
    cri::ContainerStatus {
        id: s.record.id.clone(),
        metadata: Some(cri::ContainerMetadata {
            name: m.name.clone(),
            attempt: m.attempt,
        }),
        state: cri_state(s.state()),
        created_at: s.record.created_at_ns,
        started_at: s.record.started_at_ns.unwrap_or(0),
        finished_at: exit.as_ref().map(|e| e.finished_at_ns).unwrap_or(0),
        exit_code: exit.as_ref().map(|e| e.exit_code).unwrap_or(0),
        image: Some(cri::ImageSpec {
            image: m.image_id.clone(),
            ..Default::default()
        }),
        image_ref: m.image_id.clone(),
        image_id: m.image_id.clone(),
        reason: exit.as_ref().map(|e| e.reason.clone()).unwrap_or_default(),
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        mounts: m
            .mounts
            .iter()
            .map(|(c, h, ro)| cri::Mount {
                container_path: c.clone(),
                host_path: h.clone(),
                readonly: *ro,
                ..Default::default()
            })
            .collect(),
        log_path: s.record.log_path.display().to_string(),
        ..Default::default()
    }
}

/// A sandbox as a CRI list item, with its CRI state.
pub(super) fn sandbox_to_cri(s: &SandboxInfo) -> (cri::PodSandboxState, cri::PodSandbox) {
    let state = if s.ready {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    };
    let item = cri::PodSandbox {
        id: s.id.clone(),
        metadata: s.config.metadata.clone(),
        state: state as i32,
        created_at: s.created_at_ns,
        labels: s.config.labels.clone(),
        annotations: s.config.annotations.clone(),
        runtime_handler: String::new(),
    };
    (state, item)
}

/// An image record as a CRI image (the config's user as uid or username).
pub(super) fn image_to_cri(r: &ImageRecord) -> cri::Image {
    let user = r
        .config
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default();
    let user = user.split(':').next().unwrap_or_default().to_string();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) if user.is_empty() => (None, String::new()),
        Err(_) => (None, user),
    };
    cri::Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid,
        username,
        ..Default::default()
    }
}

/// Username/password from a CRI AuthConfig (explicit fields, or `auth` = base64 `user:pass`).
pub(super) fn credentials_of(a: &cri::AuthConfig) -> Option<berth_image::auth::Credentials> {
    use base64::Engine as _;
    if !a.username.is_empty() {
        return Some(berth_image::auth::Credentials {
            username: a.username.clone(),
            password: a.password.clone(),
        });
    }
    if !a.registry_token.is_empty() || !a.identity_token.is_empty() {
        // Token auth is not wired yet: treat a token as a password for the `<token>` user.
        let token = if a.registry_token.is_empty() {
            &a.identity_token
        } else {
            &a.registry_token
        };
        return Some(berth_image::auth::Credentials {
            username: "<token>".into(),
            password: token.clone(),
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(a.auth.as_bytes())
        .ok()?;
    berth_image::auth::Credentials::from_pair(&String::from_utf8(decoded).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_auth_configs_become_credentials() {
        let explicit = cri::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        let c = credentials_of(&explicit).expect("explicit");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        let encoded = cri::AuthConfig {
            auth: "YWxpY2U6czNjcmV0".into(),
            ..Default::default()
        }; // alice:s3cret
        let c = credentials_of(&encoded).expect("auth field");
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(credentials_of(&cri::AuthConfig::default()).is_none());
    }

    fn sandbox(config: cri::PodSandboxConfig) -> SandboxInfo {
        SandboxInfo {
            id: "sb".into(),
            netns_path: "/sb/netns".into(),
            hostname: "h".into(),
            hostname_path: "/sb/hostname".into(),
            hosts_path: "/sb/hosts".into(),
            resolv_conf_path: "/sb/resolv.conf".into(),
            log_directory: None,
            ip: None,
            ready: true,
            created_at_ns: 1,
            config,
        }
    }

    fn profile(t: cri::security_profile::ProfileType, r: &str) -> cri::SecurityProfile {
        cri::SecurityProfile {
            profile_type: t as i32,
            localhost_ref: r.into(),
        }
    }

    #[test]
    fn seccomp_and_host_namespaces_come_from_the_container_then_the_sandbox() {
        use cri::security_profile::ProfileType;
        let node = cri::NamespaceMode::Node as i32;
        let pod_sc = cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: node,
                pid: node,
                ..Default::default()
            }),
            seccomp: Some(profile(ProfileType::Unconfined, "")),
            ..Default::default()
        };
        let sb = sandbox(cri::PodSandboxConfig {
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(pod_sc),
                ..Default::default()
            }),
            ..Default::default()
        });
        let inherits = container_params(&cri::ContainerConfig::default(), &sb);
        assert!(inherits.host_network && inherits.host_pid && !inherits.host_ipc);
        assert_eq!(inherits.seccomp, SeccompProfile::Unconfined);
        let own_sc = cri::LinuxContainerSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                ipc: node,
                ..Default::default()
            }),
            seccomp: Some(profile(ProfileType::Localhost, "/p.json")),
            capabilities: Some(cri::Capability {
                add_ambient_capabilities: vec!["NET_RAW".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let own = cri::ContainerConfig {
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(own_sc),
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = container_params(&own, &sb);
        assert!(p.host_network && !p.host_pid && p.host_ipc);
        assert_eq!(p.seccomp, SeccompProfile::Localhost("/p.json".into()));
        assert_eq!(p.add_ambient_capabilities, vec!["NET_RAW".to_string()]);
        let plain = container_params(
            &cri::ContainerConfig::default(),
            &sandbox(Default::default()),
        );
        assert!(!plain.host_network && !plain.host_pid && !plain.host_ipc);
        assert_eq!(plain.seccomp, SeccompProfile::RuntimeDefault);
    }

    #[test]
    fn image_user_maps_to_uid_or_username() {
        let cfg = |user: &str| -> oci_spec::image::ImageConfiguration {
            serde_json::from_value(serde_json::json!({"architecture":"amd64","os":"linux","config":{"User":user},"rootfs":{"type":"layers","diff_ids":[]}})).expect("config")
        };
        let rec = |user: &str| ImageRecord {
            id: "sha256:x".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            manifest: String::new(),
            layers: vec![],
            chain_ids: vec![],
            size: 0,
            config: cfg(user),
        };
        assert_eq!(
            image_to_cri(&rec("1000:1000")).uid.map(|v| v.value),
            Some(1000)
        );
        assert_eq!(image_to_cri(&rec("app")).username, "app");
        assert!(image_to_cri(&rec("")).uid.is_none());
    }
}

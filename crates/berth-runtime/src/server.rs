//! The CRI gRPC services: thin translations between CRI messages and the image, sandbox and
//! container stores, which hold all state (on disk).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_cri::v1 as cri;
use berth_cri::v1::image_service_server::ImageService;
use berth_cri::v1::runtime_service_server::RuntimeService;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::container::{ContainerError, ContainerState, ContainerStatus, ContainerStore};
use crate::image::{ImageError, ImageRecord, ImageStore};
use crate::oci::{BindMount, ContainerParams, Resources};
use crate::sandbox::{SandboxError, SandboxInfo, SandboxStore};

/// CRI metadata of a container kept next to its state (`containers/<id>/cri.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CriMeta {
    sandbox_id: String,
    name: String,
    attempt: u32,
    image: String,
    image_id: String,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
    /// CRI mounts as (container path, host path, readonly).
    mounts: Vec<(String, String, bool)>,
}

/// Both CRI services over shared stores.
#[derive(Clone)]
pub struct CriService {
    /// Images and snapshots.
    pub images: Arc<ImageStore>,
    /// Pod sandboxes.
    pub sandboxes: Arc<SandboxStore>,
    /// Containers.
    pub containers: Arc<ContainerStore>,
    /// The exec streaming server, once started.
    pub streams: Option<crate::stream::StreamServer>,
    /// Host-port proxies per sandbox id.
    ports: Arc<std::sync::Mutex<HashMap<String, Vec<tokio::task::AbortHandle>>>>,
    /// Where pod networks keep their state (IPAM per CIDR, the last CIDR set over CRI).
    net_dir: PathBuf,
    /// The bridge a pod CIDR received over CRI (UpdateRuntimeConfig) is served on.
    pod_bridge: String,
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn container_status(e: ContainerError) -> Status {
    match e {
        ContainerError::NotFound(_) => Status::not_found(e.to_string()),
        ContainerError::Exists(_) => Status::already_exists(e.to_string()),
        ContainerError::State { .. } => Status::failed_precondition(e.to_string()),
        other => internal(other),
    }
}

fn sandbox_status(e: SandboxError) -> Status {
    match e {
        SandboxError::NotFound(_) => Status::not_found(e.to_string()),
        other => internal(other),
    }
}

fn image_status(e: ImageError) -> Status {
    internal(e)
}

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

fn cri_state(s: ContainerState) -> i32 {
    (match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
    }) as i32
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl CriService {
    fn meta(&self, id: &str) -> Option<CriMeta> {
        let dir = self.containers.path(id).ok()?;
        serde_json::from_slice(&std::fs::read(dir.join("cri.json")).ok()?).ok()
    }

    fn params(req: &cri::ContainerConfig, sandbox: &SandboxInfo) -> ContainerParams {
        let linux = req.linux.clone().unwrap_or_default();
        let sc = linux.security_context.unwrap_or_default();
        let res = linux.resources.unwrap_or_default();
        let caps = sc.capabilities.unwrap_or_default();
        let positive = |v: i64| (v > 0).then_some(v);
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
        }
    }

    fn to_cri_status(&self, s: &ContainerStatus) -> cri::ContainerStatus {
        let meta = self.meta(&s.record.id);
        let m = meta.clone().unwrap_or_else(|| CriMeta {
            sandbox_id: String::new(),
            name: String::new(),
            attempt: 0,
            image: String::new(),
            image_id: String::new(),
            labels: HashMap::new(),
            annotations: HashMap::new(),
            mounts: Vec::new(),
        });
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

    fn stats_of(&self, s: &ContainerStatus) -> cri::ContainerStats {
        let st = self.to_cri_status(s);
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let usage = crate::cgroup::usage(
            std::path::Path::new("/sys/fs/cgroup"),
            &s.record.cgroup_path,
        )
        .unwrap_or_default();
        let value = |v: u64| Some(cri::UInt64Value { value: v });
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: st.id,
                metadata: st.metadata,
                labels: st.labels,
                annotations: st.annotations,
            }),
            cpu: Some(cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: value(usage.cpu_ns),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: value(usage.working_set_bytes),
                usage_bytes: value(usage.memory_bytes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sandbox_containers(&self, sandbox_id: &str) -> Vec<String> {
        self.containers
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                self.meta(&c.record.id)
                    .is_some_and(|m| m.sandbox_id == sandbox_id)
            })
            .map(|c| c.record.id)
            .collect()
    }
}

/// Username/password from a CRI AuthConfig (explicit fields, or `auth` = base64 `user:pass`).
fn credentials_of(a: &cri::AuthConfig) -> Option<berth_image::auth::Credentials> {
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

fn image_to_cri(r: &ImageRecord) -> cri::Image {
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

#[tonic::async_trait]
impl ImageService for CriService {
    async fn list_images(
        &self,
        _r: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let images = self.images.list().map_err(image_status)?;
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(image_to_cri).collect(),
        }))
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = r.into_inner();
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let image = self.images.resolve(&name).map_err(image_status)?;
        // Verbose: the config as pulled (Docker's Healthcheck included), as containerd answers.
        let info = match (&image, req.verbose) {
            (Some(record), true) => crate::image::healthcheck::verbose_info(
                self.images.config_json(record).map_err(image_status)?,
            ),
            _ => HashMap::new(),
        };
        Ok(Response::new(cri::ImageStatusResponse {
            image: image.as_ref().map(image_to_cri),
            info,
        }))
    }

    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = r.into_inner();
        let credentials = req.auth.as_ref().and_then(credentials_of);
        let name = req.image.map(|i| i.image).unwrap_or_default();
        // The registry client's pull future is not provably Send (a higher-ranked lifetime in
        // its stream combinators), so drive it on a blocking thread with the runtime's handle.
        let images = self.images.clone();
        let handle = tokio::runtime::Handle::current();
        let n = name.clone();
        let record =
            tokio::task::spawn_blocking(move || handle.block_on(images.pull(&n, credentials)))
                .await
                .map_err(internal)?
                .map_err(|e| Status::unknown(format!("pulling {name}: {e}")))?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: record.id,
        }))
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.images.remove(&name).await.map_err(image_status)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let (bytes, inodes) = self.images.usage();
        let usage = cri::FilesystemUsage {
            timestamp: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: self.images.dir().display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage],
            ..Default::default()
        }))
    }
}

fn sandbox_to_cri(s: &SandboxInfo) -> (cri::PodSandboxState, cri::PodSandbox) {
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

#[tonic::async_trait]
impl RuntimeService for CriService {
    async fn version(
        &self,
        _r: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "berth".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: berth_cri::API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        _r: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let cond = |t: &str| cri::RuntimeCondition {
            r#type: t.into(),
            status: true,
            ..Default::default()
        };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
            }),
            info: HashMap::new(),
        }))
    }

    /// Takes the node's pod CIDR (the kubelet's way of passing `Node.spec.podCIDR`): future
    /// sandboxes get addresses from it; the choice is remembered across runtime restarts.
    async fn update_runtime_config(
        &self,
        r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let cidr = r
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if cidr.is_empty() {
            return Ok(Response::new(cri::UpdateRuntimeConfigResponse {}));
        }
        let parsed = crate::network::Cidr::parse_pod_cidr(&cidr).ok_or_else(|| {
            Status::invalid_argument(format!(
                "runtime_config.network_config.pod_cidr {cidr:?}: expected an IPv4 CIDR with a prefix of 8..30"
            ))
        })?;
        let this = self.clone();
        blocking(move || this.set_pod_cidr(parsed)).await?;
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let config = r.into_inner().config.unwrap_or_default();
        let id = new_id();
        let store = self.sandboxes.clone();
        let sid = id.clone();
        let info = blocking(move || store.run(&sid, config).map_err(sandbox_status)).await?;
        if let Err(e) = self.open_host_ports(&info) {
            let store = self.sandboxes.clone();
            let sid = id.clone();
            let _ = blocking(move || store.remove(&sid).map_err(sandbox_status)).await;
            return Err(e);
        }
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        self.close_host_ports(&id);
        let this = self.clone();
        blocking(move || {
            for c in this.sandbox_containers(&id) {
                this.containers
                    .stop(&c, Duration::ZERO)
                    .map_err(container_status)?;
            }
            this.sandboxes.stop(&id).map_err(sandbox_status)
        })
        .await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        self.close_host_ports(&id);
        let this = self.clone();
        blocking(move || {
            for c in this.sandbox_containers(&id) {
                this.containers.remove(&c).map_err(container_status)?;
            }
            this.sandboxes.remove(&id).map_err(sandbox_status)
        })
        .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let s = self
            .sandboxes
            .info(&r.into_inner().pod_sandbox_id)
            .map_err(sandbox_status)?;
        let (state, _) = sandbox_to_cri(&s);
        let status = cri::PodSandboxStatus {
            id: s.id.clone(),
            metadata: s.config.metadata.clone(),
            state: state as i32,
            created_at: s.created_at_ns,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: s.ip.map(|i| i.to_string()).unwrap_or_default(),
                additional_ips: vec![],
            }),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
            runtime_handler: String::new(),
        };
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(status),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let filter = r.into_inner().filter.unwrap_or_default();
        let items = self
            .sandboxes
            .list()
            .map_err(sandbox_status)?
            .iter()
            .map(sandbox_to_cri)
            .filter(|(state, item)| {
                item.id.starts_with(&filter.id)
                    && filter
                        .state
                        .as_ref()
                        .is_none_or(|f| f.state == *state as i32)
                    && labels_match(&item.labels, &filter.label_selector)
            })
            .map(|(_, item)| item)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = r.into_inner();
        let config = req.config.unwrap_or_default();
        let sandbox = self
            .sandboxes
            .info(&req.pod_sandbox_id)
            .map_err(sandbox_status)?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self
            .images
            .resolve(&image_name)
            .map_err(image_status)?
            .ok_or_else(|| Status::not_found(format!("image {image_name:?} not present")))?;
        let id = new_id();
        let log_path = match (&sandbox.log_directory, config.log_path.is_empty()) {
            (Some(dir), false) => dir.join(&config.log_path),
            _ => self
                .containers
                .path(&id)
                .map_err(container_status)?
                .with_extension("log"),
        };
        let params = Self::params(&config, &sandbox);
        let meta = CriMeta {
            sandbox_id: sandbox.id.clone(),
            name: config
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            attempt: config.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            image: image_name,
            image_id: image.id.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            mounts: config
                .mounts
                .iter()
                .map(|m| (m.container_path.clone(), m.host_path.clone(), m.readonly))
                .collect(),
        };
        let layers = self.images.snapshot_dirs(&image);
        let this = self.clone();
        let cid = id.clone();
        blocking(move || {
            let img_cfg = image.config.config().clone();
            this.containers
                .create(&cid, &layers, img_cfg.as_ref(), params, &log_path)
                .map_err(container_status)?;
            let dir = this.containers.path(&cid).map_err(container_status)?;
            let json = serde_json::to_vec(&meta).map_err(internal)?;
            crate::shim::write_atomic(&dir.join("cri.json"), &json).map_err(internal)
        })
        .await?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        let store = self.containers.clone();
        blocking(move || store.start(&id).map_err(container_status)).await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = r.into_inner();
        let store = self.containers.clone();
        let grace = Duration::from_secs(req.timeout.max(0) as u64);
        blocking(move || match store.stop(&req.container_id, grace) {
            Ok(_) | Err(ContainerError::NotFound(_)) => Ok(()),
            Err(e) => Err(container_status(e)),
        })
        .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        let store = self.containers.clone();
        blocking(move || store.remove(&id).map_err(container_status)).await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let all = self.containers.list().map_err(container_status)?;
        let containers = all
            .iter()
            .map(|s| (s, self.to_cri_status(s), self.meta(&s.record.id)))
            .filter(|(_, st, meta)| {
                st.id.starts_with(&f.id)
                    && f.state.as_ref().is_none_or(|v| v.state == st.state)
                    && (f.pod_sandbox_id.is_empty()
                        || meta
                            .as_ref()
                            .is_some_and(|m| m.sandbox_id == f.pod_sandbox_id))
                    && labels_match(&st.labels, &f.label_selector)
            })
            .map(|(_, st, meta)| cri::Container {
                id: st.id.clone(),
                pod_sandbox_id: meta.map(|m| m.sandbox_id).unwrap_or_default(),
                metadata: st.metadata.clone(),
                image: st.image.clone(),
                image_ref: st.image_ref.clone(),
                state: st.state,
                created_at: st.created_at,
                labels: st.labels.clone(),
                annotations: st.annotations.clone(),
                image_id: st.image_id.clone(),
            })
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let s = self
            .containers
            .status(&r.into_inner().container_id)
            .map_err(container_status)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(self.to_cri_status(&s)),
            info: HashMap::new(),
        }))
    }

    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let id = r.into_inner().container_id;
        let dir = self.containers.path(&id).map_err(container_status)?;
        let pid = std::fs::read_to_string(dir.join("state").join(crate::shim::SHIM_PID_FILE))
            .map_err(|_| Status::not_found(id.clone()))?;
        let pid: i32 = pid.trim().parse().map_err(internal)?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .map_err(internal)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        r: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = r.into_inner();
        let status = self
            .containers
            .status(&req.container_id)
            .map_err(container_status)?;
        if status.state() != ContainerState::Running {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                req.container_id
            )));
        }
        let mut cmd = self
            .containers
            .exec_command(&req.container_id, &req.cmd, false)
            .map_err(container_status)?;
        cmd.kill_on_drop(true);
        let fut = cmd.output();
        let out = if req.timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(req.timeout as u64), fut).await {
                Ok(o) => o,
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "exec timed out after {}s",
                        req.timeout
                    )));
                }
            }
        } else {
            fut.await
        }
        .map_err(internal)?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.status.code().unwrap_or(255),
        }))
    }

    async fn exec(
        &self,
        r: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let req = r.into_inner();
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout or stderr must be set",
            ));
        }
        let streams = self
            .streams
            .as_ref()
            .ok_or_else(|| Status::unavailable("exec streaming server not started"))?;
        let status = self
            .containers
            .status(&req.container_id)
            .map_err(container_status)?;
        if status.state() != ContainerState::Running {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                req.container_id
            )));
        }
        let command = self
            .containers
            .exec_command(&req.container_id, &req.cmd, req.tty)
            .map_err(container_status)?;
        // With a terminal, stderr is part of what the terminal shows (kubelet: tty implies no
        // separate stderr).
        let url = streams
            .register(crate::stream::PendingExec {
                command,
                stdin: req.stdin,
                tty: req.tty,
            })
            .ok_or_else(|| internal("registering exec"))?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let s = self
            .containers
            .status(&r.into_inner().container_id)
            .map_err(container_status)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(self.stats_of(&s)),
        }))
    }

    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let stats = self
            .containers
            .list()
            .map_err(container_status)?
            .iter()
            .filter(|s| s.record.id.starts_with(&f.id) && s.state() == ContainerState::Running)
            .filter(|s| {
                let meta = self.meta(&s.record.id);
                (f.pod_sandbox_id.is_empty()
                    || meta
                        .as_ref()
                        .is_some_and(|m| m.sandbox_id == f.pod_sandbox_id))
                    && labels_match(
                        &meta.map(|m| m.labels).unwrap_or_default(),
                        &f.label_selector,
                    )
            })
            .map(|s| self.stats_of(s))
            .collect();
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }
}

/// The bridge a pod CIDR set over CRI is served on when none was configured.
const DEFAULT_BRIDGE: &str = "berth0";
/// File under `root/network` remembering the pod network last set over CRI (`BRIDGE CIDR`).
const POD_NETWORK_FILE: &str = "pod-network";

/// The pod network last set over CRI, if one was and it still parses.
fn saved_pod_network(net_dir: &std::path::Path) -> Option<crate::network::NetworkConfig> {
    let text = std::fs::read_to_string(net_dir.join(POD_NETWORK_FILE)).ok()?;
    let (bridge, cidr) = text.trim().split_once(' ')?;
    Some(crate::network::NetworkConfig {
        bridge: bridge.to_string(),
        cidr: crate::network::Cidr::parse_pod_cidr(cidr)?,
    })
}

/// Where the runtime keeps its state and how it runs containers.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The runtime root (content, snapshots, images, sandboxes, containers).
    pub root: PathBuf,
    /// The executable started as `<shim_exe> shim ...` (normally the `berth` binary itself).
    pub shim_exe: PathBuf,
    /// The OCI runtime binary.
    pub oci_runtime: PathBuf,
    /// Registries spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Pod networking (bridge + CIDR); `None` leaves each sandbox with only loopback.
    pub network: Option<crate::network::NetworkConfig>,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Images could not be opened.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Sandboxes could not be opened.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Containers could not be opened.
    #[error(transparent)]
    Container(#[from] ContainerError),
}

impl CriService {
    /// Opens every store under `config.root` (recovering whatever is on disk).
    pub fn open(config: &RuntimeConfig) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.root).map_err(|source| ContainerError::Io {
            path: config.root.clone(),
            source,
        })?;
        let net_dir = config.root.join("network");
        let pod_bridge = config
            .network
            .as_ref()
            .map_or_else(|| DEFAULT_BRIDGE.to_string(), |n| n.bridge.clone());
        // An explicit network wins; else the one last set over CRI, so a restarted runtime keeps
        // serving the node's pod CIDR before the agent repeats it.
        let wanted = config
            .network
            .clone()
            .or_else(|| saved_pod_network(&net_dir));
        let network = match wanted {
            Some(n) => Some(
                crate::network::Network::open(&net_dir, n).map_err(|source| SandboxError::Io {
                    path: net_dir.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        Ok(Self {
            images: ImageStore::open(&config.root, config.insecure_registries.clone())?,
            sandboxes: Arc::new(SandboxStore::open(&config.root, network)?),
            containers: Arc::new(ContainerStore::open(
                &config.root,
                config.shim_exe.clone(),
                config.oci_runtime.clone(),
            )?),
            ports: Arc::default(),
            streams: None,
            net_dir,
            pod_bridge,
        })
    }

    /// Sets the bridge used when a pod CIDR arrives over CRI and no network was configured.
    pub fn with_pod_bridge(mut self, bridge: impl Into<String>) -> Self {
        self.pod_bridge = bridge.into();
        self
    }

    /// Serves `cidr` to future sandboxes (no-op when it already does) and remembers it.
    fn set_pod_cidr(&self, cidr: crate::network::Cidr) -> Result<(), Status> {
        let current = self.sandboxes.network();
        if current.as_ref().is_some_and(|n| n.config().cidr == cidr) {
            return Ok(());
        }
        let bridge = current.map_or_else(|| self.pod_bridge.clone(), |n| n.config().bridge.clone());
        let config = crate::network::NetworkConfig { bridge, cidr };
        let network =
            crate::network::Network::open(&self.net_dir, config.clone()).map_err(|e| {
                Status::internal(format!(
                    "pod network {}/{}: {e}",
                    cidr.network(),
                    cidr.prefix()
                ))
            })?;
        let saved = format!("{} {}/{}\n", config.bridge, cidr.network(), cidr.prefix());
        crate::shim::write_atomic(&self.net_dir.join(POD_NETWORK_FILE), saved.as_bytes())
            .map_err(|e| Status::internal(format!("saving the pod network: {e}")))?;
        tracing::info!(bridge = %config.bridge, cidr = %format!("{}/{}", cidr.network(), cidr.prefix()), "pod network set over CRI");
        self.sandboxes.set_network(network);
        Ok(())
    }

    /// Starts the exec streaming server on 127.0.0.1 (within a tokio runtime).
    pub async fn start_streaming(&mut self) -> std::io::Result<()> {
        self.streams = Some(crate::stream::StreamServer::start().await?);
        Ok(())
    }

    /// Re-establishes the host ports of every ready sandbox (after a runtime restart). Must be
    /// called within a tokio runtime.
    pub fn restore_host_ports(&self) {
        for s in self
            .sandboxes
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.ready)
        {
            if let Err(e) = self.open_host_ports(&s) {
                tracing::warn!(sandbox = %s.id, error = %e, "restoring host ports");
            }
        }
    }

    fn open_host_ports(&self, s: &SandboxInfo) -> Result<(), Status> {
        let Some(pod_ip) = s.ip else { return Ok(()) };
        let rt = tokio::runtime::Handle::current();
        let mut handles = Vec::new();
        let tcp = s
            .config
            .port_mappings
            .iter()
            .filter(|m| m.protocol == cri::Protocol::Tcp as i32 && m.host_port > 0);
        for m in tcp {
            let opened = crate::network::hostport::host_addr(&m.host_ip, m.host_port as u16)
                .and_then(|host| {
                    crate::network::hostport::forward(
                        &rt,
                        host,
                        std::net::SocketAddr::new(pod_ip, m.container_port as u16),
                    )
                });
            match opened {
                Ok(h) => handles.push(h),
                Err(e) => {
                    handles
                        .iter()
                        .for_each(|h: &tokio::task::AbortHandle| h.abort());
                    return Err(Status::failed_precondition(format!(
                        "host port {}: {e}",
                        m.host_port
                    )));
                }
            }
        }
        self.ports
            .lock()
            .map_err(internal)?
            .insert(s.id.clone(), handles);
        Ok(())
    }

    fn close_host_ports(&self, sandbox_id: &str) {
        if let Ok(mut ports) = self.ports.lock() {
            for h in ports.remove(sandbox_id).unwrap_or_default() {
                h.abort();
            }
        }
    }
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

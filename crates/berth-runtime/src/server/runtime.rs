//! The CRI `RuntimeService`: answers Version and Status itself and hands every other verb to the
//! module that owns it (`sandbox`, `container`, `exec`, `stats`, `network`).

use std::collections::HashMap;

use berth_cri::v1 as cri;
use berth_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::{CriService, container, exec, network, sandbox, stats};

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
        network::update_runtime_config(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        sandbox::run(self, r.into_inner()).await.map(Response::new)
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        sandbox::stop(self, r.into_inner()).await.map(Response::new)
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        sandbox::remove(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        sandbox::status(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        sandbox::list(self, r.into_inner()).await.map(Response::new)
    }

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        container::create(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        container::start(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        container::stop(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        container::remove(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        container::list(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        container::status(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        container::reopen_log(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn exec_sync(
        &self,
        r: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        exec::exec_sync(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn exec(
        &self,
        r: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        exec::exec(self, r.into_inner()).await.map(Response::new)
    }

    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        stats::container_stats(self, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        stats::list_container_stats(self, r.into_inner())
            .await
            .map(Response::new)
    }
}

//! ExecSync (run a command in a container and wait for its output) and Exec (hand the command
//! to the streaming server, which serves it at the URL returned).

use std::time::Duration;

use berth_cri::v1 as cri;
use tonic::Status;

use super::CriService;
use super::error::{container_status, internal};
use crate::container::ContainerState;

/// ExecSync: runs the command (killed after the request's timeout, if any) and returns its
/// output and exit code.
pub(super) async fn exec_sync(
    svc: &CriService,
    req: cri::ExecSyncRequest,
) -> Result<cri::ExecSyncResponse, Status> {
    ensure_running(svc, &req.container_id)?;
    let mut cmd = svc
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
    Ok(cri::ExecSyncResponse {
        stdout: out.stdout,
        stderr: out.stderr,
        exit_code: out.status.code().unwrap_or(255),
    })
}

/// Exec: registers the command with the streaming server and returns where to attach.
pub(super) async fn exec(
    svc: &CriService,
    req: cri::ExecRequest,
) -> Result<cri::ExecResponse, Status> {
    if !(req.stdin || req.stdout || req.stderr) {
        return Err(Status::invalid_argument(
            "one of stdin, stdout or stderr must be set",
        ));
    }
    let streams = svc
        .streams
        .as_ref()
        .ok_or_else(|| Status::unavailable("exec streaming server not started"))?;
    ensure_running(svc, &req.container_id)?;
    let command = svc
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
    Ok(cri::ExecResponse { url })
}

/// Commands run only in running containers.
fn ensure_running(svc: &CriService, container_id: &str) -> Result<(), Status> {
    let status = svc
        .containers
        .status(container_id)
        .map_err(container_status)?;
    if status.state() != ContainerState::Running {
        return Err(Status::failed_precondition(format!(
            "container {container_id} is not running"
        )));
    }
    Ok(())
}

//! berth's CRI runtime served in-process on a Unix socket, with a client connected to it: how the
//! runtime's and the agent's tests drive a runtime exactly as a kubelet-like client would.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_cri::v1 as cri;
use berth_cri::{CriClient, CriError};
use berth_runtime::CriService;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};

/// A runtime served in-process on a Unix socket, and a client of it.
pub struct ServedRuntime {
    /// The socket's endpoint, `unix://...`.
    pub endpoint: String,
    /// A client connected to [`ServedRuntime::endpoint`].
    pub cri: CriClient,
    /// Sending (or dropping) it stops the server.
    pub stop: oneshot::Sender<()>,
    /// The server task; it ends once stopped.
    pub task: JoinHandle<Result<(), CriError>>,
}

impl ServedRuntime {
    /// Serves `service` (both CRI services) on the Unix socket `socket` and connects to it.
    /// Panics if either fails: it is a test fixture.
    pub async fn serve(service: CriService, socket: &Path) -> ServedRuntime {
        let listener = berth_cri::bind(socket).expect("bind");
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(berth_cri::serve(
            listener,
            service.clone(),
            service,
            async {
                let _ = stop_rx.await;
            },
        ));
        let endpoint = format!("unix://{}", socket.display());
        let cri = berth_cri::connect(&endpoint).await.expect("connect");
        ServedRuntime {
            endpoint,
            cri,
            stop,
            task,
        }
    }

    /// Stops serving; returns how the server task ended.
    pub async fn stop(self) -> Result<Result<(), CriError>, JoinError> {
        let _ = self.stop.send(());
        self.task.await
    }
}

/// Polls the container `id` until it has exited; returns its status. Panics after `patience`,
/// so a container that never exits fails the test instead of hanging it.
pub async fn wait_exited(c: &mut CriClient, id: &str, patience: Duration) -> cri::ContainerStatus {
    let deadline = Instant::now() + patience;
    loop {
        let status = c
            .runtime
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .expect("status")
            .into_inner()
            .status
            .expect("status");
        if status.state() == cri::ContainerState::ContainerExited {
            return status;
        }
        assert!(Instant::now() < deadline, "container {id} did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

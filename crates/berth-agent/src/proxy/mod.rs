//! The service proxy: every ModelService's `service.port` served on this node and balanced over
//! the service's Ready Pods, on any node.
//!
//! - [`endpoints`]: which Pods are endpoints (Ready, not deleting) and at which port;
//! - [`backends`]: one service's endpoint set, round-robin with failover to the next endpoint;
//! - [`listener`]: one port: bind (retried while taken, with a `PortInUse` Event), accept,
//!   forward with `copy_bidirectional`;
//! - [`table`]: the served services, kept in line with the watched objects.
//!
//! [`run`] watches ModelServices and the Pods labelled `berth.dev/modelservice` in all namespaces
//! and re-syncs the table on every change, so a Pod leaves its service's set as soon as the
//! watch shows it not Ready or being deleted: before the agent sends its containers SIGTERM.

pub mod backends;
pub mod endpoints;
pub mod listener;
pub mod table;

use std::fmt::Debug;

use berth_api::ModelService;
use berth_api::labels::MODELSERVICE_LABEL;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

pub use backends::Backends;
pub use table::Table;

/// The name the proxy records Events under.
pub const REPORTER: &str = "berth-proxy";

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A watch stream ended, which kube-runtime's watchers never do on their own.
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// Serves every ModelService's `service.port` on `bind` until dropped.
pub async fn run(client: kube::Client, bind: std::net::IpAddr) -> Result<(), ProxyError> {
    let changed = Notify::new();
    let (services, services_writer) = reflector::store::<ModelService>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let service_events = reflector::reflector(
        services_writer,
        watcher(
            Api::<ModelService>::all(client.clone()),
            watcher::Config::default(),
        ),
    );
    let pod_events = reflector::reflector(
        pods_writer,
        watcher(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(MODELSERVICE_LABEL),
        ),
    );
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: REPORTER.into(),
            instance: None,
        },
    );
    tokio::select! {
        () = drive(service_events, &changed) => Err(ProxyError::WatchEnded("modelservices")),
        () = drive(pod_events, &changed) => Err(ProxyError::WatchEnded("pods")),
        never = keep_in_sync(Table::new(bind, recorder), services, pods, &changed) => match never {},
    }
}

/// Polls a reflector's watch stream (which updates its store) and signals every change.
async fn drive<K: Debug>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    changed: &Notify,
) {
    let mut stream = std::pin::pin!(stream.default_backoff());
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => changed.notify_one(),
            Err(err) => tracing::warn!(error = %err, "proxy watch failed; retrying"),
        }
    }
}

/// Re-syncs the table after every change, once both stores hold their first full list (so no
/// service starts without knowing its Pods).
async fn keep_in_sync(
    mut table: Table,
    services: Store<ModelService>,
    pods: Store<Pod>,
    changed: &Notify,
) -> std::convert::Infallible {
    // Both writers live as long as this future's siblings in `run`; if one were dropped the
    // select would already have ended, so a failed wait just falls through.
    let _ = services.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    loop {
        table.sync(&services.state(), &pods.state());
        // Changes during the sync leave a permit, so none is missed.
        changed.notified().await;
    }
}

//! The proxy's service table: which ports are served and each one's endpoints, brought in line
//! with the watched ModelServices and Pods.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use berth_api::ModelService;
use berth_api::labels::MODELSERVICE_LABEL;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::Recorder;
use kube::{Resource, ResourceExt};

use super::endpoints::{endpoints, service_port};
use super::listener::{EventSink, ServiceListener};

/// A served ModelService, keyed in the table by namespace and name.
struct Entry {
    /// The object's uid: a ModelService deleted and created again under the same name is a new
    /// service (its Events go to the new object).
    uid: Option<String>,
    listener: ServiceListener,
}

/// The services this proxy serves.
pub struct Table {
    bind: IpAddr,
    recorder: Recorder,
    services: HashMap<(String, String), Entry>,
}

impl Table {
    /// An empty table serving on `bind`, recording Events with `recorder`.
    pub fn new(bind: IpAddr, recorder: Recorder) -> Self {
        Table {
            bind,
            recorder,
            services: HashMap::new(),
        }
    }

    /// The ports currently served (bound or waiting to bind), for logs and tests.
    pub fn ports(&self) -> Vec<u16> {
        self.services.values().map(|e| e.listener.port).collect()
    }

    /// Brings the table in line with `services` and `pods`: stops listeners of deleted services
    /// and of changed ports, starts missing ones, and sets every service's endpoints.
    pub fn sync(&mut self, services: &[Arc<ModelService>], pods: &[Arc<Pod>]) {
        let by_service = group_pods(pods);
        let mut wanted = HashMap::with_capacity(services.len());
        for ms in services {
            if let Some(port) = service_port(ms) {
                wanted.insert(
                    (ms.namespace().unwrap_or_default(), ms.name_any()),
                    (port, ms),
                );
            }
        }
        self.services.retain(|key, entry| match wanted.get(key) {
            Some((port, ms)) if *port == entry.listener.port && ms.uid() == entry.uid => true,
            _ => {
                tracing::info!(namespace = %key.0, service = %key.1, port = entry.listener.port, "stop serving");
                false
            }
        });
        for (key, (port, ms)) in wanted {
            let pods = by_service
                .get(&(key.0.as_str(), key.1.as_str()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let eps = endpoints(ms, pods.iter().map(|p| p.as_ref()));
            let entry = self.services.entry(key).or_insert_with_key(|key| Entry {
                uid: ms.uid(),
                listener: ServiceListener::start(
                    Arc::from(format!("{}/{}", key.0, key.1)),
                    self.bind,
                    port,
                    EventSink {
                        recorder: self.recorder.clone(),
                        regarding: ms.object_ref(&()),
                    },
                ),
            });
            let count = eps.len();
            if entry.listener.backends.set(eps) {
                tracing::debug!(service = %ms.name_any(), endpoints = count, "endpoints changed");
            }
        }
    }
}

/// Pods by (namespace, ModelService label value), so each service looks only at its own.
fn group_pods(pods: &[Arc<Pod>]) -> HashMap<(&str, &str), Vec<&Arc<Pod>>> {
    let mut out: HashMap<(&str, &str), Vec<&Arc<Pod>>> = HashMap::new();
    for pod in pods {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(service) = pod.labels().get(MODELSERVICE_LABEL) {
            out.entry((ns, service.as_str())).or_default().push(pod);
        }
    }
    out
}

//! Waiting for the example to become Ready, with a live line of how far its Pods are
//! (scheduled, image pulled, running, Ready) from watches of the ModelService and its Pods.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::Duration;

use berth_api::ModelService;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};

use crate::cmd::rollout::{Progress, progress};

/// How many of the Pods reached each stage.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bound to a node.
    pub scheduled: usize,
    /// Their image is on the node (a container exists with an image ID, or runs).
    pub pulled: usize,
    /// Every container runs.
    pub running: usize,
    /// The Ready condition is True.
    pub ready: usize,
}

impl Counts {
    /// Counts the Pods that are not being deleted.
    pub fn of<'a>(pods: impl Iterator<Item = &'a Pod>) -> Counts {
        let mut c = Counts::default();
        for pod in pods.filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let spec_node = pod.spec.as_ref().and_then(|s| s.node_name.as_ref());
            let status = pod.status.as_ref();
            let containers = status
                .and_then(|s| s.container_statuses.as_deref())
                .unwrap_or_default();
            let running = |cs: &k8s_openapi::api::core::v1::ContainerStatus| {
                cs.state.as_ref().is_some_and(|s| s.running.is_some())
            };
            c.scheduled += usize::from(spec_node.is_some());
            c.pulled += usize::from(
                !containers.is_empty()
                    && containers
                        .iter()
                        .all(|cs| !cs.image_id.is_empty() || running(cs)),
            );
            c.running += usize::from(!containers.is_empty() && containers.iter().all(running));
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            c.ready += usize::from(ready);
        }
        c
    }

    /// `3/3 scheduled, 3/3 pulled, 2/3 running, 1/3 ready`.
    pub fn line(&self, want: i32) -> String {
        format!(
            "{s}/{want} scheduled, {p}/{want} pulled, {r}/{want} running, {y}/{want} ready",
            s = self.scheduled,
            p = self.pulled,
            r = self.running,
            y = self.ready
        )
    }
}

enum Change {
    Service(Box<ModelService>),
    Pod(Box<Pod>),
    PodGone(String),
}

/// Waits until the ModelService reports all its replicas Ready on the current spec.
pub async fn until_ready(
    client: &kube::Client,
    name: &str,
    namespace: &str,
    within: Duration,
) -> anyhow::Result<()> {
    tokio::time::timeout(within, follow(client, name, namespace)).await.map_err(|_| {
        anyhow::anyhow!(
            "not ready after {within:?}: see `berth describe ms {name}` and `berth get pods -l {}={name}`",
            berth_api::labels::MODELSERVICE_LABEL
        )
    })?
}

async fn follow(client: &kube::Client, name: &str, namespace: &str) -> anyhow::Result<()> {
    let services = watcher(
        Api::<ModelService>::namespaced(client.clone(), namespace),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .default_backoff()
    .filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Apply(ms) | watcher::Event::InitApply(ms)) => {
                Some(Change::Service(Box::new(ms)))
            }
            _ => None,
        }
    });
    let pods = watcher(
        Api::<Pod>::namespaced(client.clone(), namespace),
        watcher::Config::default()
            .labels(&format!("{}={name}", berth_api::labels::MODELSERVICE_LABEL)),
    )
    .default_backoff()
    .filter_map(|e| async move {
        match e {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                Some(Change::Pod(Box::new(p)))
            }
            Ok(watcher::Event::Delete(p)) => p.metadata.name.map(Change::PodGone),
            _ => None,
        }
    });
    let mut changes = std::pin::pin!(futures::stream::select(services, pods));
    let display = Display::new(name);
    let mut seen: BTreeMap<String, Pod> = BTreeMap::new();
    let mut service: Option<ModelService> = None;
    while let Some(change) = changes.next().await {
        match change {
            Change::Service(ms) => service = Some(*ms),
            Change::Pod(p) => {
                seen.insert(p.metadata.name.clone().unwrap_or_default(), *p);
            }
            Change::PodGone(n) => {
                seen.remove(&n);
            }
        }
        let Some(ms) = &service else { continue };
        let counts = Counts::of(seen.values());
        display.show(&counts.line(ms.spec.replicas));
        match progress(ms) {
            Progress::Done(_) => {
                display.done(&format!(
                    "{name}: {}/{} ready",
                    ms.spec.replicas, ms.spec.replicas
                ));
                return Ok(());
            }
            Progress::Failed(m) => anyhow::bail!("{m}"),
            Progress::Waiting(_) => {}
        }
    }
    anyhow::bail!("the watch of {name} ended")
}

/// A spinner on a terminal; else one plain line per change (for logs and tests).
struct Display {
    bar: Option<indicatif::ProgressBar>,
    last: std::cell::RefCell<String>,
    name: String,
}

impl Display {
    fn new(name: &str) -> Display {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar.set_prefix(name.to_string());
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar
        });
        Display {
            bar,
            last: Default::default(),
            name: name.to_string(),
        }
    }

    fn show(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(line.to_string()),
            None if *self.last.borrow() != line => {
                eprintln!("berth up: {}: {line}", self.name);
                *self.last.borrow_mut() = line.to_string();
            }
            None => {}
        }
    }

    /// Ends the display and prints the final line on stdout.
    fn done(&self, line: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn counts_follow_pod_stages() {
        let pending =
            pod(serde_json::json!({"metadata": {"name": "a"}, "spec": {"containers": []}}));
        let creating = pod(serde_json::json!({
            "metadata": {"name": "b"}, "spec": {"nodeName": "n", "containers": []},
            "status": {"containerStatuses": [{"name": "c", "image": "i", "imageID": "sha256:1", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        }));
        let ready = pod(serde_json::json!({
            "metadata": {"name": "c"}, "spec": {"nodeName": "n", "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {}}}]}
        }));
        let mut deleting = ready.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        let c = Counts::of([pending, creating, ready, deleting].iter());
        assert_eq!(
            c,
            Counts {
                scheduled: 2,
                pulled: 2,
                running: 1,
                ready: 1
            }
        );
        assert_eq!(
            c.line(3),
            "2/3 scheduled, 2/3 pulled, 1/3 running, 1/3 ready"
        );
    }
}

//! Reading the Pod's containers from CRI: the instances of each spec container in the current
//! sandbox, with a cache of what does not change once read.

use std::collections::HashMap;

use berth_cri::CriClient;
use berth_cri::v1 as cri;
use kube::ResourceExt;

use super::Worker;
use crate::labels;
use crate::pod::status::Instance;

impl Worker {
    /// The instances of each spec container in the current sandbox, by container name.
    pub(super) async fn observe(&mut self) -> HashMap<String, Vec<Instance>> {
        let mut out: HashMap<String, Vec<Instance>> = HashMap::new();
        let Some(sandbox_id) = self.sandbox.as_ref().map(|s| s.id.clone()) else {
            return out;
        };
        let filter = cri::ContainerFilter {
            pod_sandbox_id: sandbox_id,
            label_selector: HashMap::from([(labels::POD_UID.to_string(), self.uid())]),
            ..Default::default()
        };
        let mut rt = self.ctx.cri.runtime.clone();
        let listed = match rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
        {
            Ok(r) => r.into_inner().containers,
            Err(e) => {
                tracing::warn!(pod = %self.pod.name_any(), error = %e, "listing containers failed");
                return out;
            }
        };
        self.cache
            .retain(|id, _| listed.iter().any(|c| &c.id == id));
        for c in listed {
            let Some(name) = c.labels.get(labels::CONTAINER_NAME).cloned() else {
                continue;
            };
            let fresh = self
                .cache
                .get(&c.id)
                .filter(|i| i.state as i32 == c.state)
                .cloned();
            let inst = match fresh {
                Some(i) => i,
                None => match instance(&self.ctx.cri, &c.id).await {
                    Some(i) => {
                        self.cache.insert(c.id.clone(), i.clone());
                        i
                    }
                    None => continue,
                },
            };
            out.entry(name).or_default().push(inst);
        }
        out
    }
}

/// Reads one container's status as an [`Instance`].
async fn instance(cri_: &CriClient, id: &str) -> Option<Instance> {
    let req = cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    };
    let st = cri_
        .runtime
        .clone()
        .container_status(req)
        .await
        .ok()?
        .into_inner()
        .status?;
    let restart_count = st
        .annotations
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Instance {
        id: st.id,
        state: cri::ContainerState::try_from(st.state)
            .unwrap_or(cri::ContainerState::ContainerUnknown),
        started_at: st.started_at,
        finished_at: st.finished_at,
        exit_code: st.exit_code,
        reason: st.reason,
        message: st.message,
        image: st.image.map(|i| i.image).unwrap_or_default(),
        image_ref: st.image_ref,
        restart_count,
    })
}

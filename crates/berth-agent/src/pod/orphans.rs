//! Removing the sandboxes (with their containers) of Pods that no longer exist: Pods deleted
//! while the agent was down, or whose worker ended before its sandbox was gone. The check runs
//! after every full list of the Pod watch and periodically ([`AgentConfig::orphan_check`]).
//!
//! [`AgentConfig::orphan_check`]: crate::AgentConfig::orphan_check

use std::collections::HashSet;
use std::sync::Arc;

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::{Ctx, worker};
use crate::labels;

/// Removes the sandboxes labelled with a Pod UID that neither a worker in `owned` handles nor
/// the API still has. The API is listed after the sandboxes, so a Pod created (and its sandbox
/// started) just now is in that list even if its watch event has not arrived yet.
pub async fn remove(ctx: Arc<Ctx>, owned: HashSet<String>) {
    let mut rt = ctx.cri.runtime.clone();
    let sandboxes = match rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
    {
        Ok(r) => r.into_inner().items,
        Err(e) => {
            tracing::warn!(error = %e, "listing sandboxes for orphan cleanup failed");
            return;
        }
    };
    let candidates: Vec<(String, String)> = sandboxes
        .into_iter()
        .filter_map(|sb| Some((sb.labels.get(labels::POD_UID)?.clone(), sb.id)))
        .filter(|(uid, _)| !owned.contains(uid))
        .collect();
    if candidates.is_empty() {
        return;
    }
    let Some(live) = live_pods(&ctx).await else {
        return;
    };
    for (uid, id) in candidates.into_iter().filter(|(u, _)| !live.contains(u)) {
        tracing::info!(sandbox = %id, pod_uid = %uid, "removing the sandbox of a Pod that no longer exists");
        worker::remove_sandbox(&ctx.cri, &id, 2).await;
    }
}

/// The UIDs of the Pods bound to this node, freshly listed; `None` when the API cannot say (then
/// nothing is removed).
async fn live_pods(ctx: &Ctx) -> Option<HashSet<String>> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    match api.list(&lp).await {
        Ok(list) => Some(list.items.iter().filter_map(|p| p.uid()).collect()),
        Err(e) => {
            tracing::warn!(error = %e, "listing Pods for orphan cleanup failed");
            None
        }
    }
}

//! Stand-ins for agents in tests of the control plane alone: Nodes registered by the test.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Registers a Ready Node `name` with `labels` and `resources` (cpu, memory, pods) as both its
/// capacity and its allocatable, as an agent would.
pub async fn register_node(client: &kube::Client, name: &str, labels: Value, resources: Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
        .expect("a Node from a name and labels");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("creating the Node");
    let status = json!({"status": {"capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "agent is posting ready status"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("marking the Node Ready");
}

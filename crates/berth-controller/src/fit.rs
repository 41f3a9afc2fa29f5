//! The scheduler's pure part: which nodes can take a Pod (readiness, cordon, taints, nodeSelector,
//! cpu/memory, the `pods` count, host ports), why the others cannot, and which fitting node is
//! best: the one with the fewest replicas of the same ModelService, so replicas spread evenly.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::quantity::parse_quantity;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use berth_api::labels::MODELSERVICE_LABEL;

use crate::taints;

/// cpu (cores) and memory (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// CPU in cores.
    pub cpu: f64,
    /// Memory in bytes.
    pub memory: f64,
}

impl Resources {
    fn add(self, o: Resources) -> Resources {
        Resources {
            cpu: self.cpu + o.cpu,
            memory: self.memory + o.memory,
        }
    }
}

/// Why a node cannot take a Pod; the text is what Kubernetes prints in FailedScheduling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// cpu requests do not fit in what is left of allocatable.
    InsufficientCpu,
    /// memory requests do not fit.
    InsufficientMemory,
    /// The node's labels do not match the Pod's nodeSelector.
    SelectorMismatch,
    /// The node is not Ready.
    NotReady,
    /// The node's Ready condition is Unknown: its heartbeat stopped (the node lifecycle
    /// controller taints it `node.kubernetes.io/unreachable`).
    Unreachable,
    /// The node is cordoned (`spec.unschedulable`) and the Pod does not tolerate that.
    Unschedulable,
    /// The node has a NoSchedule/NoExecute taint the Pod does not tolerate (`{key: value}`).
    UntoleratedTaint(String),
    /// A requested host port is taken.
    PortsTaken,
    /// The node already runs as many Pods as its allocatable `pods` (`--max-pods`) allows.
    TooManyPods,
}

impl Reason {
    /// The Kubernetes wording.
    pub fn text(&self) -> String {
        let fixed = match self {
            Reason::InsufficientCpu => "Insufficient cpu",
            Reason::InsufficientMemory => "Insufficient memory",
            Reason::SelectorMismatch => "node(s) didn't match Pod's node affinity/selector",
            Reason::NotReady => "node(s) had untolerated taint {node.kubernetes.io/not-ready: }",
            Reason::Unreachable => {
                "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
            }
            Reason::Unschedulable => "node(s) were unschedulable",
            Reason::UntoleratedTaint(t) => return format!("node(s) had untolerated taint {t}"),
            Reason::PortsTaken => "node(s) didn't have free ports for the requested pod ports",
            Reason::TooManyPods => "Too many pods",
        };
        fixed.to_string()
    }
}

/// The summed container requests of a Pod (unparseable quantities count as 0; the API validates).
pub fn requests(pod: &Pod) -> Resources {
    let get = |m: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
               k: &str| {
        m.get(k)
            .and_then(|q| parse_quantity(&q.0).ok())
            .unwrap_or(0.0)
    };
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .fold(Resources::default(), |acc, c| {
            let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            acc.add(
                r.map(|m| Resources {
                    cpu: get(m, "cpu"),
                    memory: get(m, "memory"),
                })
                .unwrap_or_default(),
            )
        })
}

fn host_ports(pod: &Pod) -> BTreeSet<(String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port
                .filter(|h| *h > 0)
                .map(|h| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), h))
        })
        .collect()
}

fn allocatable(node: &Node) -> Resources {
    let st = node.status.as_ref();
    let m = st.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
    let get = |k: &str| {
        m.and_then(|m| m.get(k))
            .and_then(|q| parse_quantity(&q.0).ok())
            .unwrap_or(0.0)
    };
    Resources {
        cpu: get("cpu"),
        memory: get("memory"),
    }
}

/// How many Pods the node takes: allocatable (else capacity) `pods`; `None` when it says nothing.
fn max_pods(node: &Node) -> Option<f64> {
    let st = node.status.as_ref()?;
    let m = st.allocatable.as_ref().or(st.capacity.as_ref())?;
    m.get("pods").and_then(|q| parse_quantity(&q.0).ok())
}

/// The status of the node's Ready condition (`True`, `False`, `Unknown`), if it has one.
pub fn ready_status(node: &Node) -> Option<&str> {
    let conds = node.status.as_ref()?.conditions.as_ref()?;
    conds
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    ready_status(node) == Some("True")
}

/// Pods that occupy a node: bound to it and not finished.
fn occupants<'a>(node: &str, pods: &'a [Pod]) -> impl Iterator<Item = &'a Pod> {
    pods.iter().filter(move |p| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Failed" | "Succeeded")
            )
    })
}

/// Every reason `node` cannot take `pod` given the `pods` that exist (empty = it fits).
pub fn check(pod: &Pod, node: &Node, pods: &[Pod]) -> Vec<Reason> {
    match ready_status(node) {
        Some("True") => {}
        Some("Unknown") => return vec![Reason::Unreachable],
        _ => return vec![Reason::NotReady],
    }
    if taints::cordoned_for(pod, node) {
        return vec![Reason::Unschedulable];
    }
    if let Some(t) = taints::untolerated(pod, node) {
        return vec![Reason::UntoleratedTaint(taints::describe(t))];
    }
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    if selector.is_some_and(|sel| sel.iter().any(|(k, v)| node.labels().get(k) != Some(v))) {
        return vec![Reason::SelectorMismatch];
    }
    let name = node.name_any();
    let used = occupants(&name, pods)
        .map(requests)
        .fold(Resources::default(), Resources::add);
    let want = requests(pod);
    let cap = allocatable(node);
    let mut reasons = Vec::new();
    if max_pods(node).is_some_and(|max| occupants(&name, pods).count() as f64 >= max) {
        reasons.push(Reason::TooManyPods);
    }
    if want.cpu > 0.0 && used.cpu + want.cpu > cap.cpu {
        reasons.push(Reason::InsufficientCpu);
    }
    if want.memory > 0.0 && used.memory + want.memory > cap.memory {
        reasons.push(Reason::InsufficientMemory);
    }
    let taken: BTreeSet<_> = occupants(&name, pods).flat_map(host_ports).collect();
    if host_ports(pod).iter().any(|p| taken.contains(p)) {
        reasons.push(Reason::PortsTaken);
    }
    reasons
}

/// Score of a fitting node; lower is better: fewest Pods of the same ModelService, then the
/// smallest requested share of allocatable after placing the Pod.
fn score(pod: &Pod, node: &Node, pods: &[Pod]) -> (usize, u64) {
    let name = node.name_any();
    let service = pod.labels().get(MODELSERVICE_LABEL);
    let same = occupants(&name, pods)
        .filter(|p| {
            service.is_some()
                && p.labels().get(MODELSERVICE_LABEL) == service
                && p.namespace() == pod.namespace()
        })
        .count();
    let used = occupants(&name, pods)
        .map(requests)
        .fold(requests(pod), Resources::add);
    let cap = allocatable(node);
    let share = |u: f64, c: f64| if c > 0.0 { u / c } else { 0.0 };
    // Average of the two shares in per-mille, so the tuple is totally ordered.
    let load = (share(used.cpu, cap.cpu) + share(used.memory, cap.memory)) * 500.0;
    (same, load.max(0.0) as u64)
}

/// The outcome of scheduling one Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind to this node.
    Bind(String),
    /// No node fits; the message says why (Kubernetes wording).
    Unschedulable(String),
}

/// Chooses a node for `pod` among `nodes`, given all existing `pods`.
pub fn schedule(pod: &Pod, nodes: &[Node], pods: &[Pod]) -> Decision {
    let mut tally: BTreeMap<Reason, usize> = BTreeMap::new();
    let mut best: Option<((usize, u64), String)> = None;
    for node in nodes {
        let reasons = check(pod, node, pods);
        if reasons.is_empty() {
            let s = (score(pod, node, pods), node.name_any());
            if best.as_ref().is_none_or(|b| s < *b) {
                best = Some(s);
            }
        }
        for r in reasons {
            *tally.entry(r).or_default() += 1;
        }
    }
    match best {
        Some((_, name)) => Decision::Bind(name),
        None => Decision::Unschedulable(message(nodes.len(), &tally)),
    }
}

/// `0/N nodes are available: 1 Insufficient memory, 2 node(s) were unschedulable.`
fn message(total: usize, tally: &BTreeMap<Reason, usize>) -> String {
    let mut parts: Vec<String> = tally
        .iter()
        .map(|(r, n)| format!("{n} {}", r.text()))
        .collect();
    parts.sort();
    if parts.is_empty() {
        return format!("0/{total} nodes are available.");
    }
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    fn node(name: &str, cpu: &str, mem: &str, ready: bool) -> Node {
        serde_json::from_value(json!({"metadata":{"name":name,"labels":{"zone":name}},
            "status":{"allocatable":{"cpu":cpu,"memory":mem},
                "conditions":[{"type":"Ready","status": if ready {"True"} else {"False"}}]}}))
        .unwrap()
    }

    fn pod(name: &str, ms: &str, cpu: &str, mem: &str, on: Option<&str>) -> Pod {
        serde_json::from_value(json!({"metadata":{"name":name,"namespace":"default","labels":{"berth.dev/modelservice":ms}},
            "spec":{"nodeName":on,"containers":[{"name":"c","resources":{"requests":{"cpu":cpu,"memory":mem}}}]}}))
        .unwrap()
    }

    #[test]
    fn requests_sum_quantities() {
        let r = requests(&pod("p", "m", "500m", "1Gi", None));
        assert_eq!(
            r,
            Resources {
                cpu: 0.5,
                memory: 1024.0 * 1024.0 * 1024.0
            }
        );
    }

    #[test]
    fn insufficient_memory_is_reported_like_kubernetes() {
        let nodes = [node("a", "4", "1Gi", true)];
        let d = schedule(&pod("p", "m", "100m", "2Gi", None), &nodes, &[]);
        assert_eq!(
            d,
            Decision::Unschedulable("0/1 nodes are available: 1 Insufficient memory.".into())
        );
    }

    #[test]
    fn existing_requests_count_against_allocatable() {
        let nodes = [node("a", "1", "4Gi", true)];
        let running = [pod("q", "other", "800m", "1Gi", Some("a"))];
        let d = schedule(&pod("p", "m", "500m", "1Gi", None), &nodes, &running);
        assert_eq!(
            d,
            Decision::Unschedulable("0/1 nodes are available: 1 Insufficient cpu.".into())
        );
        assert_eq!(
            schedule(&pod("p", "m", "100m", "1Gi", None), &nodes, &running),
            Decision::Bind("a".into())
        );
    }

    #[test]
    fn not_ready_and_mismatched_nodes_are_skipped() {
        let nodes = [
            node("a", "4", "4Gi", false),
            node("b", "4", "4Gi", true),
            node("c", "4", "4Gi", true),
        ];
        let mut p = pod("p", "m", "100m", "1Gi", None);
        p.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("zone".into(), "a".into())]));
        let d = schedule(&p, &nodes, &[]);
        assert_eq!(
            d,
            Decision::Unschedulable(
                "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 2 node(s) didn't match Pod's node affinity/selector.".into()
            )
        );
        p.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("zone".into(), "c".into())]));
        assert_eq!(schedule(&p, &nodes, &[]), Decision::Bind("c".into()));
    }

    #[test]
    fn lost_nodes_are_skipped_until_ready_and_untainted() {
        let mut lost = node("lost", "4", "4Gi", true);
        lost.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
        lost.spec = serde_json::from_value(json!({"taints":[
            {"key":"node.kubernetes.io/unreachable","effect":"NoSchedule"},
            {"key":"node.kubernetes.io/unreachable","effect":"NoExecute"}]}))
        .unwrap();
        let p = pod("p", "m", "100m", "1Gi", None);
        assert_eq!(
            schedule(&p, std::slice::from_ref(&lost), &[]),
            Decision::Unschedulable(
                "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.".into()
            )
        );
        // Back and Ready, but the taints not lifted yet: still skipped.
        lost.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        assert!(matches!(
            schedule(&p, std::slice::from_ref(&lost), &[]),
            Decision::Unschedulable(m) if m.contains("{node.kubernetes.io/unreachable: }")
        ));
        lost.spec = None;
        assert_eq!(schedule(&p, &[lost], &[]), Decision::Bind("lost".into()));
    }

    #[test]
    fn replicas_spread_before_load_counts() {
        let nodes = [node("a", "4", "4Gi", true), node("b", "4", "4Gi", true)];
        // b is busier overall but has no replica of m yet.
        let running = [
            pod("m1", "m", "100m", "100Mi", Some("a")),
            pod("x", "other", "2", "2Gi", Some("b")),
        ];
        assert_eq!(
            schedule(&pod("p", "m", "100m", "100Mi", None), &nodes, &running),
            Decision::Bind("b".into())
        );
        // For another service the less loaded node wins.
        assert_eq!(
            schedule(&pod("p", "z", "100m", "100Mi", None), &nodes, &running),
            Decision::Bind("a".into())
        );
    }

    #[test]
    fn a_node_at_its_pod_limit_does_not_fit() {
        let mut small = node("a", "4", "4Gi", true);
        let alloc = small.status.as_mut().unwrap().allocatable.as_mut().unwrap();
        alloc.insert("pods".into(), Quantity("3".into()));
        let nodes = [small];
        let mut running: Vec<Pod> = (0..3)
            .map(|i| pod(&format!("q{i}"), "m", "10m", "1Mi", Some("a")))
            .collect();
        assert_eq!(
            schedule(&pod("p", "m", "10m", "1Mi", None), &nodes, &running[..2]),
            Decision::Bind("a".into())
        );
        assert_eq!(
            schedule(&pod("p", "m", "10m", "1Mi", None), &nodes, &running),
            Decision::Unschedulable("0/1 nodes are available: 1 Too many pods.".into())
        );
        // A finished Pod no longer counts.
        running[0].status = serde_json::from_value(json!({"phase":"Succeeded"})).unwrap();
        assert_eq!(
            schedule(&pod("p", "m", "10m", "1Mi", None), &nodes, &running),
            Decision::Bind("a".into())
        );
    }

    #[test]
    fn host_ports_conflict() {
        let nodes = [node("a", "4", "4Gi", true)];
        let mut running = pod("q", "m", "100m", "1Mi", Some("a"));
        let port = json!([{"containerPort":80,"hostPort":8080}]);
        running.spec.as_mut().unwrap().containers[0].ports =
            serde_json::from_value(port.clone()).unwrap();
        let mut p = pod("p", "m", "100m", "1Mi", None);
        p.spec.as_mut().unwrap().containers[0].ports = serde_json::from_value(port).unwrap();
        assert_eq!(
            schedule(&p, &nodes, &[running]),
            Decision::Unschedulable("0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.".into())
        );
    }

    /// Schedules `n` replicas of `ms` one after the other, as the scheduler does, and counts
    /// them per node.
    fn place(n: usize, ms: &str, nodes: &[Node], mut pods: Vec<Pod>) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for i in 0..n {
            let Decision::Bind(at) = schedule(
                &pod(&format!("{ms}{i}"), ms, "100m", "100Mi", None),
                nodes,
                &pods,
            ) else {
                panic!("replica {i} did not fit");
            };
            *counts.entry(at.clone()).or_default() += 1;
            pods.push(pod(&format!("{ms}{i}"), ms, "100m", "100Mi", Some(&at)));
        }
        counts
    }

    #[test]
    fn six_replicas_over_three_equal_nodes_land_two_each() {
        let nodes = [
            node("a", "4", "4Gi", true),
            node("b", "4", "4Gi", true),
            node("c", "4", "4Gi", true),
        ];
        let counts = place(6, "m", &nodes, Vec::new());
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
    }

    #[test]
    fn a_full_node_leaves_the_others_to_take_more() {
        // a has room for one replica only (250m cpu, 100m each after another service's 100m).
        let nodes = [
            node("a", "250m", "4Gi", true),
            node("b", "4", "4Gi", true),
            node("c", "4", "4Gi", true),
        ];
        let other = vec![pod("x", "other", "100m", "100Mi", Some("a"))];
        let counts = place(6, "m", &nodes, other);
        assert_eq!(counts.get("a"), Some(&1));
        assert_eq!(counts.values().sum::<usize>(), 6);
        assert!(counts["b"].abs_diff(counts["c"]) <= 1);
    }

    #[test]
    fn taints_and_cordons_are_reported_like_kubernetes() {
        let mut tainted = node("a", "4", "4Gi", true);
        tainted.spec = serde_json::from_value(
            json!({"taints":[{"key":"dedicated","value":"gpu","effect":"NoSchedule"}]}),
        )
        .unwrap();
        let mut cordoned = node("b", "4", "4Gi", true);
        cordoned.spec = serde_json::from_value(json!({"unschedulable":true})).unwrap();
        let nodes = [tainted, cordoned, node("c", "4", "4Gi", true)];
        let mut p = pod("p", "m", "100m", "1Mi", None);
        p.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("zone".into(), "a".into())]));
        assert_eq!(
            schedule(&p, &nodes, &[]),
            Decision::Unschedulable(
                "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable.".into()
            )
        );
        p.spec.as_mut().unwrap().tolerations = Some(
            serde_json::from_value(
                json!([{"key":"dedicated","operator":"Equal","value":"gpu","effect":"NoSchedule"}]),
            )
            .unwrap(),
        );
        assert_eq!(schedule(&p, &nodes, &[]), Decision::Bind("a".into()));
    }
}

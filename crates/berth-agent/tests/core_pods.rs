//! The agent core end to end on one machine (root only, as CI runs): an in-process API server over
//! the in-memory store, berth's CRI runtime in-process on a Unix socket (its own bridge and pod
//! CIDR), the busybox test image pushed with skopeo to Debian's docker-registry on loopback, and
//! `berth_agent::run` as the node. Scenarios, in order, on that one node:
//! - registration: Node status (capacity, Ready, endpoint port) and the Lease;
//! - a Pod runs, gets Running/Ready with a pod IP from the node's CIDR, Events Pulled/Created/Started;
//! - killing its process restarts it (restartCount 1, lastState terminated);
//! - a container that always exits goes into CrashLoopBackOff with growing delays (10 s, then 20 s);
//! - restartPolicy Never ends Succeeded; an image that cannot be pulled shows ImagePullBackOff;
//! - a running Pod force-deleted has its sandbox and containers removed;
//! - the agent's link to the server dies and comes back (its connections from before stay dead,
//!   the Pod watch among them): a Pod force-deleted meanwhile is stopped once it is back;
//! - restarting the agent adopts the running container (same id, no duplicate sandbox or
//!   container), and removes the sandbox of a Pod force-deleted while it was down;
//! - deleting a Pod stops and removes its sandbox and containers, then the Pod object.
//!
//! This test binary is also the runtime's shim (`<this exe> shim ...`), hence `harness = false`.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_agent::{AgentConfig, labels};
use berth_cri::v1 as cri;
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::LOCALHOST;
use support::cri::{Runtime, open_runtime};
use support::registry::{Registry, busybox};
use support::relay::{Relay, client_via};
use tokio::task::JoinHandle;

const NODE: &str = "core-node";
/// Bound on waiting for one observable change, so a broken agent fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(90);
/// How often a wait for a change looks again.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns true; fails with `failure` after [`PATIENCE`].
async fn until(failure: &str, check: impl AsyncFnMut() -> bool) {
    support::eventually(PATIENCE, POLL, failure, check).await
}

/// Everything of one test node.
struct Env {
    tmp: std::path::PathBuf,
    image: String,
    /// The test's own client, straight to the server.
    client: kube::Client,
    /// The agent's link to the server, and its client through it.
    link: Relay,
    agent_client: kube::Client,
    cri: berth_cri::CriClient,
    endpoint: String,
    agent: Option<JoinHandle<Result<(), berth_agent::AgentError>>>,
    pod_cidr: String,
    bridge: String,
}

impl Env {
    fn config(&self) -> AgentConfig {
        let mut c = AgentConfig::new(NODE, self.endpoint.clone(), self.tmp.join("agent"));
        c.node_ip = LOCALHOST;
        c.server_port = 0;
        c.proxy = false;
        c.lease_renew = Duration::from_secs(1);
        // Only the list after each (re-)list of the watch looks for orphans here, so the cut-link
        // scenario shows that re-list.
        c.orphan_check = Duration::from_secs(3600);
        c
    }

    fn start_agent(&mut self) {
        self.agent = Some(tokio::spawn(berth_agent::run(
            self.agent_client.clone(),
            self.config(),
        )));
    }

    async fn stop_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            a.abort();
            let _ = a.await;
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create_pod(
        &self,
        name: &str,
        restart_policy: &str,
        command: serde_json::Value,
    ) -> Pod {
        self.create_pod_of(name, &self.image.clone(), restart_policy, command)
            .await
    }

    async fn create_pod_of(
        &self,
        name: &str,
        image: &str,
        restart_policy: &str,
        command: serde_json::Value,
    ) -> Pod {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "nodeName": NODE,
                "restartPolicy": restart_policy,
                "terminationGracePeriodSeconds": 2,
                "containers": [{
                    "name": "app", "image": image, "command": command,
                    "env": [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
                }]
            }
        }))
        .expect("pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// Waits until `name` satisfies `cond`; returns it.
    async fn wait_pod(&self, name: &str, what: &str, cond: impl Fn(&Pod) -> bool) -> Pod {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let pod = self.pods().get_opt(name).await.expect("get pod");
            if let Some(p) = pod.filter(|p| cond(p)) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "pod {name}: timed out waiting for {what}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn sandboxes(&self, uid: &str) -> Vec<cri::PodSandbox> {
        let filter = cri::PodSandboxFilter {
            label_selector: [(labels::POD_UID.to_string(), uid.to_string())].into(),
            ..Default::default()
        };
        let req = cri::ListPodSandboxRequest {
            filter: Some(filter),
        };
        self.cri
            .runtime
            .clone()
            .list_pod_sandbox(req)
            .await
            .expect("list sandboxes")
            .into_inner()
            .items
    }

    async fn containers(&self, uid: &str) -> Vec<cri::Container> {
        let filter = cri::ContainerFilter {
            label_selector: [(labels::POD_UID.to_string(), uid.to_string())].into(),
            ..Default::default()
        };
        let req = cri::ListContainersRequest {
            filter: Some(filter),
        };
        self.cri
            .runtime
            .clone()
            .list_containers(req)
            .await
            .expect("list containers")
            .into_inner()
            .containers
    }

    async fn event_reasons(&self, pod: &str) -> Vec<String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = api.list(&ListParams::default()).await.expect("events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
            .filter_map(|e| e.reason)
            .collect()
    }
}

fn container_status(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn ready(p: &Pod) -> bool {
    let conds = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conds
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn running(p: &Pod) -> bool {
    container_status(p)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

fn restarts(p: &Pod) -> i32 {
    container_status(p).map_or(0, |c| c.restart_count)
}

fn waiting_message(p: &Pod) -> String {
    container_status(p)
        .and_then(|c| c.state.as_ref()?.waiting.as_ref())
        .filter(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
        .and_then(|w| w.message.clone())
        .unwrap_or_default()
}

/// Host pids of processes in the cgroup of a container `id` (or of any container when `None`)
/// whose command is `comm`.
fn pids_of(id: Option<&str>, comm: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let c = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let mine = match id {
            Some(id) => cgroup.contains(id),
            None => cgroup.contains("/berth/"),
        };
        if mine && c.trim() == comm {
            out.push(pid);
        }
    }
    out
}

async fn scenarios(env: &mut Env) {
    // Registration: the Node's status and the Lease.
    let nodes: Api<Node> = Api::all(env.client.clone());
    let deadline = Instant::now() + PATIENCE;
    let node = loop {
        let n = nodes.get(NODE).await.expect("node");
        if n.status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .is_some()
        {
            break n;
        }
        assert!(Instant::now() < deadline, "node status never written");
        tokio::time::sleep(POLL).await;
    };
    let st = node.status.expect("status");
    assert!(
        st.capacity
            .as_ref()
            .expect("capacity")
            .contains_key("memory")
    );
    let port = st
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .expect("endpoint")
        .port;
    assert_ne!(port, 0, "the node endpoint's real port is published");
    assert!(
        st.conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    assert!(
        st.node_info
            .expect("info")
            .container_runtime_version
            .contains("://")
    );
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "kube-node-lease");
    until("no lease", async || {
        leases.get_opt(NODE).await.expect("lease").is_some()
    })
    .await;
    let lease = leases.get(NODE).await.expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(NODE)
    );

    // A Pod runs and becomes Ready with an IP of the node's pod CIDR.
    let web = env
        .create_pod("web", "Always", json!(["sleep", "3600"]))
        .await;
    let web_uid = web.metadata.uid.clone().expect("uid");
    let p = env
        .wait_pod("web", "Running and Ready", |p| ready(p) && running(p))
        .await;
    let st = p.status.clone().expect("status");
    assert_eq!(st.phase.as_deref(), Some("Running"));
    let ip = st.pod_ip.expect("pod IP");
    let prefix = env.pod_cidr.rsplit_once('.').expect("cidr").0;
    assert!(ip.starts_with(prefix), "pod IP {ip} is in {}", env.pod_cidr);
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    let cs = container_status(&p).expect("container status");
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("berth://"))
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reasons = env.event_reasons("web").await;
        if ["Pulling", "Pulled", "Created", "Started"]
            .iter()
            .all(|r| reasons.iter().any(|x| x == r))
        {
            break;
        }
        assert!(Instant::now() < deadline, "events so far: {reasons:?}");
        tokio::time::sleep(POLL).await;
    }

    // Killing the container's process restarts it.
    let first = cs.container_id.clone().expect("id");
    let pids = pids_of(first.strip_prefix("berth://"), "sleep");
    assert_eq!(pids.len(), 1, "one sleep process: {pids:?}");
    // (So that the cgroup check after deletion can fail: a running container has its cgroup.)
    let first_id = first.strip_prefix("berth://").expect("berth id");
    assert!(
        !cgroups_of(first_id).is_empty(),
        "a running container's cgroup is found"
    );
    let killed = Command::new("kill")
        .args(["-KILL", &pids[0]])
        .status()
        .expect("kill");
    assert!(killed.success());
    let p = env
        .wait_pod("web", "restartCount 1, running", |p| {
            restarts(p) == 1 && running(p)
        })
        .await;
    let last = container_status(&p)
        .and_then(|c| c.last_state.clone())
        .and_then(|s| s.terminated)
        .expect("lastState");
    assert_eq!(last.exit_code, 137, "killed by SIGKILL");
    let web_container = container_status(&p)
        .and_then(|c| c.container_id.clone())
        .expect("id");

    // A container that always exits backs off 10 s, then 20 s.
    env.create_pod("crash", "Always", json!(["sh", "-c", "exit 3"]))
        .await;
    let p = env
        .wait_pod("crash", "back-off 10s", |p| {
            waiting_message(p).starts_with("back-off 10s")
        })
        .await;
    assert_eq!(
        restarts(&p),
        1,
        "the first restart is immediate, the second waits"
    );
    let p = env
        .wait_pod("crash", "back-off 20s", |p| {
            waiting_message(p).starts_with("back-off 20s")
        })
        .await;
    assert_eq!(restarts(&p), 2);
    let last = container_status(&p)
        .and_then(|c| c.last_state.clone())
        .and_then(|s| s.terminated)
        .expect("lastState");
    assert_eq!(last.exit_code, 3);
    assert!(
        env.event_reasons("crash")
            .await
            .iter()
            .any(|r| r == "BackOff")
    );
    let crash_uid = p.metadata.uid.clone().expect("uid");

    // restartPolicy Never: a container that exits 0 leaves the Pod Succeeded, not restarted.
    env.create_pod("once", "Never", json!(["sh", "-c", "exit 0"]))
        .await;
    let p = env
        .wait_pod("once", "phase Succeeded", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
        })
        .await;
    assert_eq!(restarts(&p), 0);
    // Its sandbox is stopped (network released); the exited container stays until deletion.
    let once_uid = p.metadata.uid.clone().expect("uid");
    until("a finished Pod's sandbox keeps running", async || {
        !env.sandboxes(&once_uid)
            .await
            .iter()
            .any(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
    })
    .await;
    assert_eq!(env.containers(&once_uid).await.len(), 1);
    // An image that cannot be pulled: ErrImagePull, then ImagePullBackOff; Failed events.
    let missing = env.image.replace("busybox:latest", "missing:1");
    env.create_pod_of("nopull", &missing, "Always", json!(["true"]))
        .await;
    let waiting_reason = |p: &Pod| {
        container_status(p)
            .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .unwrap_or_default()
    };
    env.wait_pod("nopull", "ImagePullBackOff", |p| {
        waiting_reason(p) == "ImagePullBackOff"
    })
    .await;
    assert!(
        env.event_reasons("nopull")
            .await
            .iter()
            .any(|r| r == "Failed")
    );
    // runAsNonRoot without a uid: the image's user decides; busybox's is the name `app`, which
    // cannot be verified before the container runs, so the container is refused (as kubelet).
    let nonroot: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nonroot"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 2,
                 "securityContext": {"runAsNonRoot": true},
                 "containers": [{"name": "app", "image": env.image, "command": ["sleep", "100"]}]}
    }))
    .expect("pod");
    env.pods()
        .create(&PostParams::default(), &nonroot)
        .await
        .expect("create nonroot");
    let refused = env
        .wait_pod("nonroot", "CreateContainerConfigError", |p| {
            waiting_reason(p) == "CreateContainerConfigError"
        })
        .await;
    let message = container_status(&refused)
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
        .unwrap_or_default();
    assert!(message.contains("non-numeric user (app)"), "{message}");
    confinement(env).await;
    let gone = DeleteParams::default();
    for name in [
        "once",
        "nopull",
        "nonroot",
        "hostnet",
        "unconfined",
        "scratch",
    ] {
        let uid = env
            .pods()
            .get(name)
            .await
            .expect("pod")
            .metadata
            .uid
            .expect("uid");
        env.pods().delete(name, &gone).await.expect("delete");
        until(&format!("{name} stays"), async || {
            env.pods().get_opt(name).await.expect("get").is_none()
                && env.sandboxes(&uid).await.is_empty()
        })
        .await;
    }

    // A running Pod force-deleted (no graceful deletion): the agent still removes its sandbox.
    let forced = env
        .create_pod("forced", "Always", json!(["sleep", "3600"]))
        .await;
    let forced_uid = forced.metadata.uid.clone().expect("uid");
    env.wait_pod("forced", "Running", running).await;
    let force = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    env.pods()
        .delete("forced", &force)
        .await
        .expect("force delete");
    until("the force-deleted Pod's sandbox stays", async || {
        env.sandboxes(&forced_uid).await.is_empty() && env.containers(&forced_uid).await.is_empty()
    })
    .await;

    // The link dies (the agent's connections with it, its Pod watch among them) and comes back; a
    // Pod force-deleted meanwhile goes once the agent is back: its first good Lease renewal
    // makes it list its Pods again.
    let cut = env
        .create_pod("cut", "Always", json!(["sleep", "3600"]))
        .await;
    let cut_uid = cut.metadata.uid.clone().expect("uid");
    env.wait_pod("cut", "Running", running).await;
    env.link.cut();
    env.pods()
        .delete("cut", &force)
        .await
        .expect("force delete");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.sandboxes(&cut_uid).await.len(),
        1,
        "a cut-off agent cannot know"
    );
    env.link.restore();
    until(
        "the Pod deleted while cut off keeps its sandbox",
        async || {
            env.sandboxes(&cut_uid).await.is_empty() && env.containers(&cut_uid).await.is_empty()
        },
    )
    .await;

    // Restart the agent; meanwhile the crash Pod is force-deleted.
    env.stop_agent().await;
    env.pods()
        .delete("crash", &force)
        .await
        .expect("force delete");
    env.start_agent();
    until("the force-deleted Pod's sandbox stays", async || {
        env.sandboxes(&crash_uid).await.is_empty()
    })
    .await;
    // Give the new agent a few rounds on web, then check nothing was duplicated.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = env.pods().get("web").await.expect("web");
    assert_eq!(
        container_status(&p).and_then(|c| c.container_id.clone()),
        Some(web_container.clone())
    );
    assert_eq!(restarts(&p), 1);
    assert!(ready(&p));
    assert_eq!(env.sandboxes(&web_uid).await.len(), 1, "one sandbox");
    let cs = env.containers(&web_uid).await;
    assert_eq!(
        cs.len(),
        2,
        "the running instance and the previous one: {cs:?}"
    );
    assert_eq!(
        cs.iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .count(),
        1
    );

    // Deleting the Pod removes its sandbox and containers, then the object.
    env.pods()
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    until("the Pod object stays", async || {
        env.pods().get_opt("web").await.expect("get").is_none()
    })
    .await;
    // (The object may go before the containers stopped: berth's API server removes a Pod with a
    // deletionTimestamp on its next update, here the agent's Ready=False.)
    until("the deleted Pod's sandbox or containers stay", async || {
        env.sandboxes(&web_uid).await.is_empty() && env.containers(&web_uid).await.is_empty()
    })
    .await;
    let id = web_container.strip_prefix("berth://");
    assert!(pids_of(id, "sleep").is_empty(), "no container process left");
    let id = id.expect("id");
    assert!(
        cgroups_of(id).is_empty(),
        "cgroups left: {:?}",
        cgroups_of(id)
    );
    let brif = format!("/sys/class/net/{}/brif", env.bridge);
    let veths: Vec<_> = std::fs::read_dir(&brif)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(veths.is_empty(), "veths left on the bridge: {veths:?}");
}

/// Creates a Pod from `spec` (its `nodeName` and grace period added).
async fn create_pod_spec(env: &Env, name: &str, mut spec: serde_json::Value) {
    spec["nodeName"] = json!(NODE);
    spec["terminationGracePeriodSeconds"] = json!(2);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec
    }))
    .expect("pod");
    env.pods()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Containers run under the default seccomp filter (`Seccomp: 2`) unless `Unconfined` is asked;
/// hostNetwork and hostPath are honoured (the node's interfaces and files, the node's IP as the
/// pod IP); a volume berth lacks is refused with CreateContainerConfigError, never dropped.
async fn confinement(env: &Env) {
    // Exits 0 only when /proc/self/status says `Seccomp: <want>`.
    let seccomp_is = |want: &str| {
        format!(
            "while read k v; do [ \"$k\" = Seccomp: ] && break; done < /proc/self/status; [ \"$v\" = {want} ]"
        )
    };
    // Pod Security admission lets host access and Unconfined only into a privileged namespace.
    let privileged =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    Api::<Namespace>::all(env.client.clone())
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(&privileged),
        )
        .await
        .expect("label the namespace privileged");
    let host_dir = env.tmp.join("host-dir");
    std::fs::create_dir_all(&host_dir).expect("host dir");
    std::fs::write(host_dir.join("marker"), "node").expect("marker");
    // The node's bridge is visible, and the node's file is mounted.
    let script = format!(
        "{} || exit 1; case \"$(cat /proc/net/dev)\" in *{}:*) ;; *) exit 2;; esac; [ \"$(cat /h/marker)\" = node ] || exit 3",
        seccomp_is("2"),
        env.bridge
    );
    create_pod_spec(
        env,
        "hostnet",
        json!({
            "restartPolicy": "Never", "hostNetwork": true,
            "volumes": [{"name": "h", "hostPath": {"path": host_dir, "type": "Directory"}}],
            "containers": [{"name": "app", "image": env.image, "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "h", "mountPath": "/h", "readOnly": true}]}]
        }),
    )
    .await;
    create_pod_spec(env, "unconfined", json!({
        "restartPolicy": "Never",
        "securityContext": {"seccompProfile": {"type": "Unconfined"}},
        "containers": [{"name": "app", "image": env.image, "command": ["sh", "-c", seccomp_is("0")]}]
    }))
    .await;
    create_pod_spec(
        env,
        "scratch",
        json!({
            "volumes": [{"name": "s", "emptyDir": {}}],
            "containers": [{"name": "app", "image": env.image, "command": ["sleep", "100"],
                            "volumeMounts": [{"name": "s", "mountPath": "/s"}]}]
        }),
    )
    .await;
    for name in ["hostnet", "unconfined"] {
        let p = env
            .wait_pod(name, "finished", |p| {
                matches!(phase(p), "Succeeded" | "Failed")
            })
            .await;
        assert_eq!(phase(&p), "Succeeded", "{name}: {:?}", container_status(&p));
    }
    let p = env.pods().get("hostnet").await.expect("hostnet");
    let pod_ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
    assert_eq!(pod_ip, Some(LOCALHOST.to_string()), "the node's IP");
    let refused = env
        .wait_pod("scratch", "CreateContainerConfigError", |p| {
            container_status(p)
                .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
                .is_some_and(|r| r == "CreateContainerConfigError")
        })
        .await;
    let message = container_status(&refused)
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("emptyDir volumes are not supported"),
        "{message}"
    );
    assert!(
        env.containers(refused.metadata.uid.as_deref().expect("uid"))
            .await
            .is_empty()
    );
}

/// Cgroup directories (any hierarchy, under berth's `/berth/<runtime>/`) named after container `id`.
fn cgroups_of(id: &str) -> Vec<std::path::PathBuf> {
    let mut roots = vec![std::path::PathBuf::from("/sys/fs/cgroup/berth")];
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        roots.push(h.path().join("berth"));
    }
    roots
        .iter()
        .flat_map(|r| std::fs::read_dir(r).into_iter().flatten().flatten())
        .map(|runtime| runtime.path().join(id))
        .filter(|p| p.exists())
        .collect()
}

async fn agent_core(tmp: &Path) {
    let registry = Registry::start().expect("docker-registry installed");
    let image = registry
        .push(&busybox(&tmp.join("img")), "busybox")
        .expect("push");

    let pid = std::process::id();
    let bridge = format!("bca{:05x}", pid & 0xfffff);
    let pod_cidr = format!("10.{}.{}.0/24", 150 + pid % 50, (pid / 50) % 250);
    let service = open_runtime(tmp).with_pod_bridge(bridge.clone());
    let runtime = Runtime::serve(service, &tmp.join("cri.sock")).await;

    let (server, client) = support::api::start(&tmp.join("api"), vec![berth_api::crd_json()]).await;
    // The server's node IPAM would assign the pod CIDR; here the Node is pre-created with one.
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": NODE}, "spec": {"podCIDR": pod_cidr}}))
            .expect("node");
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");

    let link = Relay::start(server.addr).await;
    let agent_client = client_via(&server.kubeconfig, link.addr).await;
    let mut env = Env {
        tmp: tmp.to_path_buf(),
        image,
        client,
        link,
        agent_client,
        cri: runtime.cri.clone(),
        endpoint: runtime.endpoint.clone(),
        agent: None,
        pod_cidr,
        bridge: bridge.clone(),
    };
    env.start_agent();
    let result = std::panic::AssertUnwindSafe(scenarios(&mut env))
        .catch_unwind()
        .await;
    env.stop_agent().await;
    // Remove whatever a failed scenario left, through CRI.
    let mut rt = env.cri.runtime.clone();
    let left = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .items;
    for sb in &left {
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
    }
    let _ = runtime.stop().await;
    drop(server);
    drop(registry);
    let _ = Command::new("ip").args(["link", "del", &bridge]).status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(
        left.is_empty(),
        "sandboxes left after the scenarios: {left:?}"
    );
    support::assert_no_leftover_mounts(tmp);
}

fn main() {
    support::harness::main("agent_core", "berth-core-", agent_core);
}

//! Pod status computed from what the agent observed through CRI (pure).
//!
//! The worker gathers a [`PodView`] (sandbox IP, each container's current and previous instance,
//! probe verdicts, a waiting reason when the container is held back) and [`compute`] turns it
//! into the `PodStatus` to write, keeping condition transition times of the previous status when
//! a condition did not change.

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::decide::{restart_policy, should_restart};

/// One CRI container instance as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// CRI container id.
    pub id: String,
    /// CRI state.
    pub state: cri::ContainerState,
    /// Nanoseconds since the epoch (0 = unset), as CRI reports them.
    pub started_at: i64,
    /// When it exited (ns).
    pub finished_at: i64,
    /// Exit code (when exited).
    pub exit_code: i32,
    /// Runtime's reason for the exit (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    /// Runtime's message.
    pub message: String,
    /// Image as requested.
    pub image: String,
    /// Resolved image (digest reference).
    pub image_ref: String,
    /// The restartCount annotation of this instance.
    pub restart_count: u32,
}

impl Instance {
    /// Whether the instance has exited.
    pub fn exited(&self) -> bool {
        self.state == cri::ContainerState::ContainerExited
    }

    /// Whether the instance runs.
    pub fn running(&self) -> bool {
        self.state == cri::ContainerState::ContainerRunning
    }

    /// How long it ran (zero when it never started or still runs).
    pub fn ran(&self) -> std::time::Duration {
        let ns = self.finished_at.saturating_sub(self.started_at).max(0);
        std::time::Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }

    /// The instance's end as a terminated state.
    fn terminated(&self) -> ContainerStateTerminated {
        let reason = if !self.reason.is_empty() {
            self.reason.clone()
        } else if self.exit_code == 0 {
            "Completed".into()
        } else {
            "Error".into()
        };
        ContainerStateTerminated {
            container_id: Some(container_id(&self.id)),
            exit_code: self.exit_code,
            reason: Some(reason),
            message: Some(self.message.clone()).filter(|m| !m.is_empty()),
            started_at: time(self.started_at),
            finished_at: time(self.finished_at),
            signal: None,
        }
    }
}

/// `berth://<id>`, the containerID format of container statuses.
pub fn container_id(id: &str) -> String {
    format!("berth://{id}")
}

/// A CRI nanosecond timestamp as an API time (second precision, as the API serializes it).
pub fn time(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    Timestamp::from_second(ns / 1_000_000_000).ok().map(Time)
}

/// One spec container as observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerView {
    /// Name in the spec.
    pub name: String,
    /// Image in the spec.
    pub image: String,
    /// The newest instance.
    pub current: Option<Instance>,
    /// The instance before it (exited), for `lastState`.
    pub previous: Option<Instance>,
    /// Why the container is waiting (reason, message), when held back: ContainerCreating,
    /// CrashLoopBackOff, ErrImagePull, ImagePullBackOff, CreateContainerError ...
    pub waiting: Option<(String, String)>,
    /// The readiness verdict for the current instance (readiness probe, or running when none).
    pub ready: bool,
    /// The startup verdict (startup probe, or running when none).
    pub started: bool,
}

/// Everything a status is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodView {
    /// The sandbox's IP.
    pub pod_ip: Option<String>,
    /// The node's IP.
    pub host_ip: String,
    /// Containers in spec order.
    pub containers: Vec<ContainerView>,
    /// Whether the Pod is being deleted (Ready turns False first).
    pub deleting: bool,
}

/// The status to write for `pod` given `view`; `now` stamps changed conditions and startTime.
pub fn compute(pod: &Pod, view: &PodView, now: Timestamp) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let policy = restart_policy(pod);
    let statuses: Vec<ContainerStatus> = view.containers.iter().map(container_status).collect();
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let pod_ready = all_ready && !view.deleting;
    let cond =
        |type_: &str, ok: bool, reason: Option<&str>| condition(&old, type_, ok, reason, now);
    let not_ready = (!all_ready).then_some("ContainersNotReady");
    let conditions = vec![
        cond("PodScheduled", true, None),
        cond("Initialized", true, None),
        cond("ContainersReady", all_ready, not_ready),
        cond(
            "Ready",
            pod_ready,
            if view.deleting && all_ready {
                Some("PodTerminating")
            } else {
                not_ready
            },
        ),
    ];
    PodStatus {
        phase: Some(phase(view, policy).into()),
        conditions: Some(conditions),
        host_ip: Some(view.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: view.host_ip.clone(),
        }]),
        pod_ip: view.pod_ip.clone(),
        pod_ips: view.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: old.start_time.clone().or(Some(Time(now))),
        container_statuses: Some(statuses),
        qos_class: old.qos_class.clone(),
        ..Default::default()
    }
}

/// A condition, keeping the old transition time when its status did not change.
fn condition(
    old: &PodStatus,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let prev = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == status);
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(Into::into),
        last_transition_time: prev
            .and_then(|p| p.last_transition_time.clone())
            .or(Some(Time(now))),
        ..Default::default()
    }
}

/// Pending until every container has run; Succeeded/Failed when every container has ended for
/// good; Running otherwise.
pub fn phase(view: &PodView, policy: &str) -> &'static str {
    let cs = &view.containers;
    if cs.is_empty() {
        return "Pending";
    }
    let finished = |c: &ContainerView| {
        c.current
            .as_ref()
            .is_some_and(|i| i.exited() && !should_restart(policy, i.exit_code))
    };
    if cs.iter().all(finished) {
        let ok = cs
            .iter()
            .all(|c| c.current.as_ref().is_some_and(|i| i.exit_code == 0));
        return if ok { "Succeeded" } else { "Failed" };
    }
    let has_run = |c: &ContainerView| {
        c.current
            .as_ref()
            .is_some_and(|i| i.running() || i.exited())
    };
    if cs.iter().all(has_run) {
        "Running"
    } else {
        "Pending"
    }
}

/// One container's status.
fn container_status(c: &ContainerView) -> ContainerStatus {
    let cur = c.current.as_ref();
    let running = cur.is_some_and(Instance::running);
    let state = match (cur, &c.waiting) {
        (_, Some((reason, message))) => waiting(reason, message),
        (Some(i), None) if i.running() => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time(i.started_at),
            }),
            ..Default::default()
        },
        (Some(i), None) if i.exited() => ContainerState {
            terminated: Some(i.terminated()),
            ..Default::default()
        },
        _ => waiting("ContainerCreating", ""),
    };
    // While the current instance has exited and waits for its restart, it is the last state.
    let last = match cur {
        Some(i) if i.exited() && state.terminated.is_none() => Some(i),
        _ => c.previous.as_ref().filter(|p| p.exited()),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: cur
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| c.image.clone()),
        image_id: cur.map(|i| i.image_ref.clone()).unwrap_or_default(),
        container_id: cur.map(|i| container_id(&i.id)),
        ready: running && c.ready,
        started: Some(running && c.started),
        restart_count: cur.map_or(0, |i| i32::try_from(i.restart_count).unwrap_or(i32::MAX)),
        state: Some(state),
        last_state: Some(
            last.map(|i| ContainerState {
                terminated: Some(i.terminated()),
                ..Default::default()
            })
            .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

/// A waiting state.
fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const S: i64 = 1_000_000_000;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "app", "image": "img:1"}]}
        }))
        .unwrap()
    }

    fn inst(id: &str, state: cri::ContainerState, exit_code: i32, restart_count: u32) -> Instance {
        Instance {
            id: id.into(),
            state,
            started_at: 100 * S,
            finished_at: if state == cri::ContainerState::ContainerExited {
                105 * S
            } else {
                0
            },
            exit_code,
            reason: String::new(),
            message: String::new(),
            image: "img:1".into(),
            image_ref: "sha256:abc".into(),
            restart_count,
        }
    }

    fn view(c: ContainerView) -> PodView {
        PodView {
            pod_ip: Some("10.0.0.2".into()),
            host_ip: "192.0.2.1".into(),
            containers: vec![c],
            deleting: false,
        }
    }

    fn cond(st: &PodStatus, t: &str) -> String {
        st.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .status
            .clone()
    }

    #[test]
    fn running_ready_container() {
        let c = ContainerView {
            name: "app".into(),
            image: "img:1".into(),
            current: Some(inst("c1", cri::ContainerState::ContainerRunning, 0, 0)),
            ready: true,
            started: true,
            ..Default::default()
        };
        let st = compute(&pod("Always"), &view(c), Timestamp::now());
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&st, "Ready"), "True");
        assert_eq!(cond(&st, "ContainersReady"), "True");
        assert_eq!(st.pod_ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(st.host_ip.as_deref(), Some("192.0.2.1"));
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.container_id.as_deref(), Some("berth://c1"));
        assert!(cs.ready);
        assert_eq!(cs.image_id, "sha256:abc");
        assert!(cs.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn deleting_turns_ready_false_first() {
        let c = ContainerView {
            name: "app".into(),
            current: Some(inst("c1", cri::ContainerState::ContainerRunning, 0, 0)),
            ready: true,
            started: true,
            ..Default::default()
        };
        let mut v = view(c);
        v.deleting = true;
        let st = compute(&pod("Always"), &v, Timestamp::now());
        assert_eq!(cond(&st, "Ready"), "False");
        assert_eq!(cond(&st, "ContainersReady"), "True");
    }

    #[test]
    fn crash_loop_shows_waiting_and_last_state() {
        let c = ContainerView {
            name: "app".into(),
            current: Some(inst("c2", cri::ContainerState::ContainerExited, 1, 2)),
            previous: Some(inst("c1", cri::ContainerState::ContainerExited, 1, 1)),
            waiting: Some(("CrashLoopBackOff".into(), "back-off 20s".into())),
            ..Default::default()
        };
        let st = compute(&pod("Always"), &view(c), Timestamp::now());
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&st, "Ready"), "False");
        let cs = &st.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 2);
        let w = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (
                last.exit_code,
                last.container_id.as_deref(),
                last.reason.as_deref()
            ),
            (1, Some("berth://c2"), Some("Error"))
        );
    }

    #[test]
    fn finished_pods_succeed_or_fail_by_policy() {
        let exited = |code| ContainerView {
            name: "app".into(),
            current: Some(inst("c1", cri::ContainerState::ContainerExited, code, 0)),
            ..Default::default()
        };
        assert_eq!(
            compute(&pod("Never"), &view(exited(0)), Timestamp::now())
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            compute(&pod("Never"), &view(exited(3)), Timestamp::now())
                .phase
                .as_deref(),
            Some("Failed")
        );
        assert_eq!(
            compute(&pod("OnFailure"), &view(exited(0)), Timestamp::now())
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            compute(&pod("OnFailure"), &view(exited(3)), Timestamp::now())
                .phase
                .as_deref(),
            Some("Running")
        );
        let st = compute(&pod("Never"), &view(exited(3)), Timestamp::now());
        let t = st.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(t.exit_code, 3);
    }

    #[test]
    fn pending_until_created_and_transition_times_kept() {
        let c = ContainerView {
            name: "app".into(),
            image: "img:1".into(),
            ..Default::default()
        };
        let t0 = Timestamp::from_second(1_000).unwrap();
        let st = compute(&pod("Always"), &view(c.clone()), t0);
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let w = st.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap();
        assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
        let mut p = pod("Always");
        p.status = Some(st.clone());
        let again = compute(&p, &view(c), t0 + std::time::Duration::from_secs(5));
        assert_eq!(
            again, st,
            "an unchanged view gives an identical status (no write)"
        );
    }
}

//! The worker's decisions (pure): what to do next with a container given its newest instance,
//! the Pod's restartPolicy and its backoff, and which old instances to remove.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::status::Instance;

/// The Pod's restartPolicy (default Always).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether an instance that exited with `exit_code` is restarted under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// What the worker does next with one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// No instance yet: pull the image if needed, create and start the first.
    Create,
    /// The instance was created but not started (e.g. the agent stopped in between).
    Start(String),
    /// It runs (or its state is unknown): nothing to do.
    Keep,
    /// It exited and restarts now (a new instance with restartCount + 1).
    Restart,
    /// It exited and restarts after this wait (CrashLoopBackOff).
    BackOff(Duration),
    /// It exited for good (restartPolicy).
    Done,
}

/// The next step for a container whose newest instance is `current`, with `backoff_left` to
/// wait before a restart.
pub fn next(policy: &str, current: Option<&Instance>, backoff_left: Duration) -> Next {
    use berth_cri::v1::ContainerState as S;
    let Some(cur) = current else {
        return Next::Create;
    };
    match cur.state {
        S::ContainerCreated => Next::Start(cur.id.clone()),
        S::ContainerRunning | S::ContainerUnknown => Next::Keep,
        S::ContainerExited if !should_restart(policy, cur.exit_code) => Next::Done,
        S::ContainerExited if !backoff_left.is_zero() => Next::BackOff(backoff_left),
        S::ContainerExited => Next::Restart,
    }
}

/// The ids of instances to remove: all but the newest two (the current and the previous one,
/// which `logs --previous` reads), and never one that is not exited.
pub fn stale_instances(instances: &[Instance]) -> Vec<String> {
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by_key(|i| std::cmp::Reverse(i.restart_count));
    sorted
        .iter()
        .skip(2)
        .filter(|i| i.exited())
        .map(|i| i.id.clone())
        .collect()
}

/// The newest instance and the one before it.
pub fn current_and_previous(instances: &[Instance]) -> (Option<&Instance>, Option<&Instance>) {
    let mut sorted: Vec<&Instance> = instances.iter().collect();
    sorted.sort_by_key(|i| std::cmp::Reverse(i.restart_count));
    (sorted.first().copied(), sorted.get(1).copied())
}

/// The grace period of a deletion: the Pod's deletionGracePeriodSeconds, else its spec's
/// terminationGracePeriodSeconds, else 30 s.
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .unwrap_or_else(|| super::spec::termination_grace_seconds(pod));
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// How long a deleted Pod keeps serving before its containers are stopped: 1 s for the service
/// proxy to drop it, capped by the grace period.
pub fn drain(grace: Duration) -> Duration {
    grace.min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_cri::v1::ContainerState as S;

    fn inst(id: &str, state: S, exit_code: i32, restart_count: u32) -> Instance {
        Instance {
            id: id.into(),
            state,
            started_at: 0,
            finished_at: 0,
            exit_code,
            reason: String::new(),
            message: String::new(),
            image: String::new(),
            image_ref: String::new(),
            restart_count,
        }
    }

    #[test]
    fn next_step_by_state_policy_and_backoff() {
        let zero = Duration::ZERO;
        assert_eq!(next("Always", None, zero), Next::Create);
        assert_eq!(
            next("Always", Some(&inst("a", S::ContainerCreated, 0, 0)), zero),
            Next::Start("a".into())
        );
        assert_eq!(
            next("Always", Some(&inst("a", S::ContainerRunning, 0, 0)), zero),
            Next::Keep
        );
        let failed = inst("a", S::ContainerExited, 1, 0);
        let ok = inst("a", S::ContainerExited, 0, 0);
        assert_eq!(next("Always", Some(&failed), zero), Next::Restart);
        assert_eq!(next("Always", Some(&ok), zero), Next::Restart);
        assert_eq!(
            next("Always", Some(&failed), Duration::from_secs(10)),
            Next::BackOff(Duration::from_secs(10))
        );
        assert_eq!(next("OnFailure", Some(&failed), zero), Next::Restart);
        assert_eq!(next("OnFailure", Some(&ok), zero), Next::Done);
        assert_eq!(next("Never", Some(&failed), zero), Next::Done);
    }

    #[test]
    fn keeps_current_and_previous_instances() {
        let list = vec![
            inst("r0", S::ContainerExited, 1, 0),
            inst("r2", S::ContainerRunning, 0, 2),
            inst("r1", S::ContainerExited, 1, 1),
        ];
        assert_eq!(stale_instances(&list), vec!["r0".to_string()]);
        let (cur, prev) = current_and_previous(&list);
        assert_eq!(
            (cur.unwrap().id.as_str(), prev.unwrap().id.as_str()),
            ("r2", "r1")
        );
        assert!(stale_instances(&list[..2]).is_empty());
    }

    #[test]
    fn grace_and_drain() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"}, "spec": {"containers": [], "terminationGracePeriodSeconds": 7}
        }))
        .unwrap();
        assert_eq!(grace_period(&pod), Duration::from_secs(7));
        pod.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(grace_period(&pod), Duration::ZERO);
        assert_eq!(drain(Duration::ZERO), Duration::ZERO);
        assert_eq!(drain(Duration::from_secs(30)), Duration::from_secs(1));
    }
}

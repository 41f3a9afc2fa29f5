//! The status a ModelService reports: counts, selector and Deployment-shaped conditions
//! (`Available`, `Progressing`) that GitOps tools and `kubectl wait` read.
//!
//! Progress, as a Deployment's: while a rollout is incomplete, `Progressing` is `True`
//! (`ReplicaSetUpdated`) and its message carries how many Pods of the current spec exist and are
//! ready, so each change of those counts moves its `lastUpdateTime`. When that time is older than
//! `progressDeadlineSeconds`, the condition turns `False` (`ProgressDeadlineExceeded`) and stays
//! so until the counts move again or the rollout completes.

use berth_api::{ModelServiceCondition, ModelServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use berth_api::labels::MODELSERVICE_LABEL;

/// What the controller observed in one reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// `metadata.generation` of the ModelService.
    pub generation: Option<i64>,
    /// Desired replicas.
    pub desired: i32,
    /// Pods that exist (any template, not terminating).
    pub replicas: i32,
    /// Ready Pods (any template).
    pub ready: i32,
    /// Pods of the current template.
    pub updated: i32,
    /// Ready Pods of the current template.
    pub updated_ready: i32,
    /// Resolved maxUnavailable.
    pub max_unavailable: i32,
    /// `progressDeadlineSeconds`, defaulted.
    pub progress_deadline_seconds: i32,
}

const UPDATED: &str = "ReplicaSetUpdated";
const COMPLETE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";

/// The label selector string of ModelService `name`'s Pods.
pub fn selector(name: &str) -> String {
    format!("{MODELSERVICE_LABEL}={name}")
}

/// The status for `o`; conditions keep their transition time from `prev` while unchanged.
pub fn compute(
    name: &str,
    o: Observed,
    prev: Option<&ModelServiceStatus>,
    now: Time,
) -> ModelServiceStatus {
    let available = o.ready >= o.desired - o.max_unavailable;
    let available_cond = if available {
        cond(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "ModelService has minimum availability.".to_string(),
        )
    } else {
        cond(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "ModelService does not have minimum availability.".to_string(),
        )
    };
    let prev_conds = prev.map(|p| p.conditions.as_slice()).unwrap_or_default();
    let progressing_cond = progressing(name, o, prev_conds, &now);
    let conditions = [available_cond, progressing_cond]
        .into_iter()
        .map(|c| stamp(c, prev_conds, &now))
        .collect();
    ModelServiceStatus {
        observed_generation: o.generation,
        replicas: Some(o.replicas),
        ready_replicas: Some(o.ready),
        updated_replicas: Some(o.updated),
        available_replicas: Some(o.ready),
        selector: Some(selector(name)),
        conditions,
    }
}

/// The `Progressing` condition (see the module docs).
fn progressing(
    name: &str,
    o: Observed,
    prev: &[ModelServiceCondition],
    now: &Time,
) -> ModelServiceCondition {
    let complete =
        o.updated == o.desired && o.replicas == o.desired && o.updated_ready == o.desired;
    if complete {
        let msg = format!("ModelService \"{name}\" has successfully progressed.");
        return cond("Progressing", "True", COMPLETE, msg);
    }
    let counts = format!(
        "{} of {} updated replicas created, {} ready",
        o.updated, o.desired, o.updated_ready
    );
    let timed_out = cond(
        "Progressing",
        "False",
        TIMED_OUT,
        format!("ModelService \"{name}\" has timed out progressing: {counts}."),
    );
    let moving = cond(
        "Progressing",
        "True",
        UPDATED,
        format!("ModelService \"{name}\" is progressing: {counts}."),
    );
    let Some(p) = prev.iter().find(|c| c.type_ == "Progressing") else {
        return moving;
    };
    let stalled = |c: &ModelServiceCondition| p.reason == c.reason && p.message == c.message;
    if stalled(&timed_out) {
        return timed_out;
    }
    let deadline = i64::from(o.progress_deadline_seconds.max(1));
    match &p.last_update_time {
        Some(since) if stalled(&moving) && seconds_between(since, now) >= deadline => timed_out,
        _ => moving,
    }
}

/// Whole seconds from `a` to `b` (negative if `b` is earlier).
fn seconds_between(a: &Time, b: &Time) -> i64 {
    b.0.duration_since(a.0).as_secs()
}

/// How long until the rollout described by `status` would exceed its deadline without further
/// change: the controller looks again then. `None` when no deadline is running.
pub fn deadline_in(
    status: &ModelServiceStatus,
    progress_deadline_seconds: i32,
    now: &Time,
) -> Option<std::time::Duration> {
    let p = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some(UPDATED))?;
    let since = p.last_update_time.as_ref()?;
    let left = i64::from(progress_deadline_seconds.max(1)) - seconds_between(since, now);
    Some(std::time::Duration::from_secs(left.max(0) as u64 + 1))
}

fn cond(type_: &str, status: &str, reason: &str, message: String) -> ModelServiceCondition {
    ModelServiceCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        ..Default::default()
    }
}

/// Sets the times of `c`: both kept when nothing changed (so a status write is not needed),
/// transition kept when only reason/message changed.
fn stamp(
    mut c: ModelServiceCondition,
    prev: &[ModelServiceCondition],
    now: &Time,
) -> ModelServiceCondition {
    match prev.iter().find(|p| p.type_ == c.type_) {
        Some(p) if p.status == c.status && p.reason == c.reason && p.message == c.message => {
            c.last_update_time = p.last_update_time.clone();
            c.last_transition_time = p.last_transition_time.clone();
        }
        Some(p) if p.status == c.status => {
            c.last_update_time = Some(now.clone());
            c.last_transition_time = p.last_transition_time.clone();
        }
        _ => {
            c.last_update_time = Some(now.clone());
            c.last_transition_time = Some(now.clone());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(desired: i32, replicas: i32, ready: i32, updated: i32, updated_ready: i32) -> Observed {
        Observed {
            generation: Some(2),
            desired,
            replicas,
            ready,
            updated,
            updated_ready,
            max_unavailable: 0,
            progress_deadline_seconds: 600,
        }
    }

    fn at(secs: i64) -> Time {
        Time(
            now()
                .0
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(secs))
                .unwrap(),
        )
    }

    #[test]
    fn a_stalled_rollout_exceeds_its_deadline_until_it_moves_again() {
        let stuck = obs(3, 3, 0, 3, 0);
        let s0 = compute("m", stuck, None, now());
        assert_eq!(get(&s0, "Progressing").reason.as_deref(), Some(UPDATED));
        assert_eq!(
            deadline_in(&s0, 600, &at(100)),
            Some(std::time::Duration::from_secs(501))
        );
        // No change for less than the deadline: still progressing, nothing to write.
        let s1 = compute("m", stuck, Some(&s0), at(599));
        assert_eq!(s1, s0);
        // The deadline passes without progress.
        let s2 = compute("m", stuck, Some(&s1), at(600));
        let p = get(&s2, "Progressing");
        assert_eq!(
            (p.status.as_str(), p.reason.as_deref()),
            ("False", Some(TIMED_OUT))
        );
        assert!(
            p.message
                .as_deref()
                .unwrap()
                .contains("timed out progressing"),
            "{p:?}"
        );
        assert_eq!(deadline_in(&s2, 600, &at(600)), None);
        // It stays so while nothing moves...
        assert_eq!(compute("m", stuck, Some(&s2), at(900)), s2);
        // ...and progresses again when a Pod becomes ready.
        let s3 = compute("m", obs(3, 3, 1, 3, 1), Some(&s2), at(901));
        let p = get(&s3, "Progressing");
        assert_eq!(
            (p.status.as_str(), p.reason.as_deref()),
            ("True", Some(UPDATED))
        );
        // Progress moves the clock: another 600 s from then.
        let s4 = compute("m", obs(3, 3, 2, 3, 2), Some(&s3), at(1400));
        let s5 = compute("m", obs(3, 3, 2, 3, 2), Some(&s4), at(1999));
        assert_eq!(get(&s5, "Progressing").status, "True");
        let done = compute("m", obs(3, 3, 3, 3, 3), Some(&s5), at(5000));
        assert_eq!(get(&done, "Progressing").reason.as_deref(), Some(COMPLETE));
    }

    fn now() -> Time {
        Time(Default::default())
    }

    fn get<'a>(s: &'a ModelServiceStatus, t: &str) -> &'a ModelServiceCondition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn complete_rollout_is_available_and_progressed() {
        let s = compute("m", obs(3, 3, 3, 3, 3), None, now());
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.selector.as_deref(), Some("berth.dev/modelservice=m"));
        assert_eq!(get(&s, "Available").status, "True");
        assert_eq!(
            get(&s, "Progressing").reason.as_deref(),
            Some("NewReplicaSetAvailable")
        );
    }

    #[test]
    fn unready_pods_make_it_unavailable_and_progressing() {
        let s = compute("m", obs(3, 3, 1, 3, 1), None, now());
        assert_eq!(get(&s, "Available").status, "False");
        assert_eq!(
            get(&s, "Available").reason.as_deref(),
            Some("MinimumReplicasUnavailable")
        );
        assert_eq!(
            get(&s, "Progressing").reason.as_deref(),
            Some("ReplicaSetUpdated")
        );
    }

    #[test]
    fn unchanged_status_is_identical() {
        let a = compute("m", obs(3, 3, 3, 3, 3), None, now());
        let later = Time(
            now()
                .0
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(60))
                .unwrap(),
        );
        let b = compute("m", obs(3, 3, 3, 3, 3), Some(&a), later);
        assert_eq!(a, b);
    }
}

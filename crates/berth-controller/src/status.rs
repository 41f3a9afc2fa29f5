//! The status a ModelService reports: counts, selector and Deployment-shaped conditions
//! (`Available`, `Progressing`) that GitOps tools and `kubectl wait` read.

use berth_api::{ModelServiceCondition, ModelServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::MODELSERVICE_LABEL;

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
}

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
    let complete =
        o.updated == o.desired && o.replicas == o.desired && o.updated_ready == o.desired;
    let progressing_cond = if complete {
        cond(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ModelService \"{name}\" has successfully progressed."),
        )
    } else {
        cond(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("ModelService \"{name}\" is progressing."),
        )
    };
    let prev_conds = prev.map(|p| p.conditions.as_slice()).unwrap_or_default();
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
        }
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

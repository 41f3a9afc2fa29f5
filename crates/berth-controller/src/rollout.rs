//! Rolling-update arithmetic, Deployment style: how many Pods of the new template to create and
//! how many old ones may go, given what exists and what is Ready.

// The bounds are shared with the API server's eviction check: one home, in berth-api.
pub use berth_api::bounds::{BoundError, Bounds};

/// What exists of one ModelService right now (terminating Pods excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Pods of the current template.
    pub new: i32,
    /// Ready Pods of the current template.
    pub new_ready: i32,
    /// Pods of older templates.
    pub old: i32,
    /// Ready Pods of older templates.
    pub old_ready: i32,
}

/// One step of reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// New-template Pods to create.
    pub create_new: i32,
    /// New-template Pods to delete (scale down).
    pub delete_new: i32,
    /// Old-template Pods that are not Ready to delete (they serve nothing).
    pub delete_old_unready: i32,
    /// Ready old-template Pods to delete (only while enough Pods stay Ready).
    pub delete_old_ready: i32,
}

/// Plans the next step toward `replicas` Pods of the new template within `bounds`.
pub fn plan(replicas: i32, bounds: Bounds, c: Counts) -> Plan {
    let replicas = replicas.max(0);
    if c.old == 0 {
        return Plan {
            create_new: (replicas - c.new).max(0),
            delete_new: (c.new - replicas).max(0),
            ..Plan::default()
        };
    }
    // Old Pods that are not Ready do not count toward availability; remove them right away so
    // their room goes to new Pods.
    let delete_old_unready = c.old - c.old_ready;
    let total = c.new + c.old_ready;
    let room = replicas + bounds.max_surge - total;
    let create_new = room.min(replicas - c.new).max(0);
    let delete_new = (c.new - replicas).max(0);
    // Ready old Pods go only while Ready Pods stay at or above replicas - maxUnavailable.
    let min_available = replicas - bounds.max_unavailable;
    let ready = c.new_ready + c.old_ready;
    let delete_old_ready = (ready - min_available).clamp(0, c.old_ready);
    Plan {
        create_new,
        delete_new,
        delete_old_unready,
        delete_old_ready,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.to_string())
    }

    #[test]
    fn bounds_round_like_deployments() {
        let b = Bounds::resolve(3, &pct("25%"), &pct("25%")).unwrap();
        assert_eq!(
            b,
            Bounds {
                max_surge: 1,
                max_unavailable: 0
            }
        );
        let b = Bounds::resolve(10, &pct("25%"), &pct("25%")).unwrap();
        assert_eq!(
            b,
            Bounds {
                max_surge: 3,
                max_unavailable: 2
            }
        );
        let b = Bounds::resolve(4, &IntOrString::Int(0), &IntOrString::Int(0)).unwrap();
        assert_eq!(
            b,
            Bounds {
                max_surge: 0,
                max_unavailable: 1
            }
        );
        assert!(Bounds::resolve(4, &pct("x%"), &pct("25%")).is_err());
        assert!(Bounds::resolve(4, &IntOrString::Int(-1), &pct("25%")).is_err());
    }

    #[test]
    fn steady_state_scales_to_replicas() {
        let b = Bounds {
            max_surge: 1,
            max_unavailable: 0,
        };
        assert_eq!(
            plan(
                3,
                b,
                Counts {
                    new: 1,
                    new_ready: 1,
                    ..Default::default()
                }
            )
            .create_new,
            2
        );
        assert_eq!(
            plan(
                1,
                b,
                Counts {
                    new: 5,
                    new_ready: 5,
                    ..Default::default()
                }
            )
            .delete_new,
            4
        );
        assert_eq!(
            plan(
                3,
                b,
                Counts {
                    new: 3,
                    new_ready: 0,
                    ..Default::default()
                }
            ),
            Plan::default()
        );
    }

    #[test]
    fn rollout_surges_then_waits_for_readiness() {
        let b = Bounds {
            max_surge: 1,
            max_unavailable: 0,
        };
        // Start: 3 old Ready -> one surge Pod, nothing deleted.
        let p = plan(
            3,
            b,
            Counts {
                new: 0,
                new_ready: 0,
                old: 3,
                old_ready: 3,
            },
        );
        assert_eq!(
            p,
            Plan {
                create_new: 1,
                ..Default::default()
            }
        );
        // The surge Pod is not Ready yet: wait.
        let p = plan(
            3,
            b,
            Counts {
                new: 1,
                new_ready: 0,
                old: 3,
                old_ready: 3,
            },
        );
        assert_eq!(p, Plan::default());
        // It is Ready: one old Pod may go.
        let p = plan(
            3,
            b,
            Counts {
                new: 1,
                new_ready: 1,
                old: 3,
                old_ready: 3,
            },
        );
        assert_eq!(
            p,
            Plan {
                delete_old_ready: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn rollout_with_unavailable_budget_deletes_before_new_are_ready() {
        let b = Bounds {
            max_surge: 3,
            max_unavailable: 2,
        };
        let p = plan(
            10,
            b,
            Counts {
                new: 0,
                new_ready: 0,
                old: 10,
                old_ready: 10,
            },
        );
        assert_eq!(
            p,
            Plan {
                create_new: 3,
                delete_old_ready: 2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn unready_old_pods_are_replaced_without_waiting() {
        let b = Bounds {
            max_surge: 1,
            max_unavailable: 0,
        };
        let p = plan(
            3,
            b,
            Counts {
                new: 0,
                new_ready: 0,
                old: 3,
                old_ready: 0,
            },
        );
        assert_eq!(
            p,
            Plan {
                create_new: 3,
                delete_old_unready: 3,
                ..Default::default()
            }
        );
    }
}

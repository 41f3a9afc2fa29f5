//! The bounds of a rolling update resolved against `replicas`, Deployment style. The
//! ModelService controller rolls within them, and the API server refuses evictions that would
//! take a service below `replicas - max_unavailable` Ready Pods.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::ModelServiceSpec;

/// Why a rolling-update bound is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rolling-update bound {0:?}: want a non-negative integer or percentage")]
pub struct BoundError(pub String);

/// The resolved bounds of a rolling update, in Pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Pods allowed above `replicas`.
    pub max_surge: i32,
    /// Pods allowed below `replicas` that are not Ready.
    pub max_unavailable: i32,
}

impl Bounds {
    /// Resolves `maxSurge` (rounded up) and `maxUnavailable` (rounded down) against `replicas`;
    /// when both come out 0, one Pod may be unavailable so that the rollout can proceed.
    pub fn resolve(
        replicas: i32,
        surge: &IntOrString,
        unavailable: &IntOrString,
    ) -> Result<Self, BoundError> {
        let max_surge = scaled(surge, replicas, true)?;
        let mut max_unavailable = scaled(unavailable, replicas, false)?;
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        Ok(Bounds {
            max_surge,
            max_unavailable,
        })
    }
}

fn scaled(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, BoundError> {
    match v {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(n) => Err(BoundError(n.to_string())),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| BoundError(s.clone()))?;
            let num = pct * i64::from(total.max(0));
            let n = if round_up {
                (num + 99) / 100
            } else {
                num / 100
            };
            i32::try_from(n).map_err(|_| BoundError(s.clone()))
        }
    }
}

impl ModelServiceSpec {
    /// The spec's `maxSurge`/`maxUnavailable` (defaulted) resolved against its `replicas`.
    pub fn bounds(&self) -> Result<Bounds, BoundError> {
        Bounds::resolve(self.replicas, &self.max_surge(), &self.max_unavailable())
    }
}

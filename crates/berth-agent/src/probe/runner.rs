//! The probe loop: wait `initialDelaySeconds`, then one attempt every `periodSeconds`, each
//! bounded by `timeoutSeconds`, reporting failures and verdict changes.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::MissedTickBehavior;

use super::action::Action;
use super::threshold::{DEFAULT_FAILURE_THRESHOLD, DEFAULT_SUCCESS_THRESHOLD, Verdict};
use super::{ProbeKind, ProbeUpdate, Target};

/// Kubernetes' default `periodSeconds`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
/// Kubernetes' default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A probe's timing, with Kubernetes' defaults and minimums applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Before the first attempt.
    pub initial_delay: Duration,
    /// Between attempts (at least 1 s).
    pub period: Duration,
    /// Of each attempt (at least 1 s).
    pub timeout: Duration,
}

impl Timing {
    /// The timing of `probe`.
    pub fn of(probe: &Probe) -> Self {
        let secs = |v: Option<i32>, default: Duration| match v {
            Some(s) if s >= 1 => Duration::from_secs(s.unsigned_abs().into()),
            _ => default,
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, Duration::ZERO),
            period: secs(probe.period_seconds, DEFAULT_PERIOD),
            timeout: secs(probe.timeout_seconds, DEFAULT_TIMEOUT),
        }
    }
}

/// Everything one probe loop needs.
pub struct Runner {
    kind: ProbeKind,
    container: String,
    action: Action,
    timing: Timing,
    verdict: Verdict,
    cri: berth_cri::CriClient,
    tx: UnboundedSender<ProbeUpdate>,
}

impl Runner {
    /// Prepares the loop of `probe` for `container` at `target`.
    pub fn new(
        kind: ProbeKind,
        container: String,
        probe: &Probe,
        target: Target,
        cri: berth_cri::CriClient,
        tx: UnboundedSender<ProbeUpdate>,
    ) -> Self {
        let timing = Timing::of(probe);
        let threshold =
            |v: Option<i32>, default: u32| v.map_or(default, |n| n.max(1).unsigned_abs());
        let verdict = Verdict::new(
            kind,
            threshold(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD),
            threshold(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
        );
        let action = Action::new(probe, &target, timing.timeout);
        Runner {
            kind,
            container,
            action,
            timing,
            verdict,
            cri,
            tx,
        }
    }

    /// Probes until the receiver is dropped or, for a startup probe, until it has succeeded.
    pub async fn run(mut self) {
        tokio::time::sleep(self.timing.initial_delay).await;
        let mut ticker = tokio::time::interval(self.timing.period);
        // An attempt that takes long shifts the schedule instead of causing a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !self.attempt().await || (self.kind == ProbeKind::Startup && self.verdict.healthy())
            {
                return;
            }
        }
    }

    /// One attempt and its updates; false once nobody listens any more.
    async fn attempt(&mut self) -> bool {
        let result = self
            .action
            .attempt(&mut self.cri, self.timing.timeout)
            .await;
        let (kind, container) = (self.kind, self.container.clone());
        if let Err(e) = &result {
            tracing::debug!(?kind, %container, error = %e, "probe failed");
            let message = e.to_string();
            if self
                .tx
                .send(ProbeUpdate::Failed {
                    kind,
                    container: container.clone(),
                    message,
                })
                .is_err()
            {
                return false;
            }
        }
        match self.verdict.record(result.is_ok()) {
            Some(healthy) => {
                tracing::info!(?kind, %container, healthy, "probe verdict changed");
                self.tx
                    .send(ProbeUpdate::Changed {
                        kind,
                        container,
                        healthy,
                    })
                    .is_ok()
            }
            None => !self.tx.is_closed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_defaults_and_minimums() {
        let t = Timing::of(&Probe::default());
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::ZERO,
                period: DEFAULT_PERIOD,
                timeout: DEFAULT_TIMEOUT
            }
        );
        let t = Timing::of(&Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(0),
            timeout_seconds: Some(-3),
            ..Default::default()
        });
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::from_secs(5),
                period: DEFAULT_PERIOD,
                timeout: DEFAULT_TIMEOUT
            }
        );
    }
}

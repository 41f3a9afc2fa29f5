//! The verdict of a probe from its attempt results, as the kubelet decides it: the verdict flips
//! only after `successThreshold` consecutive successes or `failureThreshold` consecutive failures.

use super::ProbeKind;

/// Kubernetes' defaults for the thresholds.
pub const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
/// Kubernetes' default `failureThreshold`.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// A probe's verdict, fed one attempt result at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    healthy: bool,
    /// The result of the latest attempts and how many in a row had it (0 before any attempt).
    run: (bool, u32),
    success_threshold: u32,
    failure_threshold: u32,
}

impl Verdict {
    /// The initial verdict of `kind`; thresholds below 1 count as 1.
    pub fn new(kind: ProbeKind, success_threshold: u32, failure_threshold: u32) -> Self {
        Verdict {
            healthy: kind.initial_verdict(),
            run: (false, 0),
            success_threshold: success_threshold.max(1),
            failure_threshold: failure_threshold.max(1),
        }
    }

    /// The current verdict.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Records one attempt; returns the new verdict when it changed.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        self.run = match self.run {
            (last, n) if last == success && n > 0 => (success, n.saturating_add(1)),
            _ => (success, 1),
        };
        let needed = if success {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run.1 < needed || self.healthy == success {
            return None;
        }
        self.healthy = success;
        Some(success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(v: &mut Verdict, results: &[bool]) -> Vec<Option<bool>> {
        results.iter().map(|&r| v.record(r)).collect()
    }

    #[test]
    fn initial_verdicts_follow_kubernetes() {
        assert!(!Verdict::new(ProbeKind::Readiness, 1, 3).healthy());
        assert!(Verdict::new(ProbeKind::Liveness, 1, 3).healthy());
        assert!(!Verdict::new(ProbeKind::Startup, 1, 3).healthy());
    }

    #[test]
    fn readiness_turns_ready_on_first_success_and_unready_after_threshold_failures() {
        let mut v = Verdict::new(ProbeKind::Readiness, 1, 3);
        assert_eq!(
            feed(
                &mut v,
                &[true, true, false, false, true, false, false, false, false]
            ),
            [
                Some(true),
                None,
                None,
                None,
                None,
                None,
                None,
                Some(false),
                None
            ]
        );
        assert!(!v.healthy());
    }

    #[test]
    fn readiness_failures_before_first_success_change_nothing() {
        let mut v = Verdict::new(ProbeKind::Readiness, 1, 3);
        assert_eq!(feed(&mut v, &[false, false, false, false]), [None; 4]);
    }

    #[test]
    fn success_threshold_needs_consecutive_successes() {
        let mut v = Verdict::new(ProbeKind::Readiness, 3, 1);
        assert_eq!(
            feed(&mut v, &[true, true, false, true, true, true]),
            [None, None, None, None, None, Some(true)]
        );
    }

    #[test]
    fn liveness_fails_after_failure_threshold_and_recovers() {
        let mut v = Verdict::new(ProbeKind::Liveness, 1, 2);
        assert_eq!(
            feed(&mut v, &[false, true, false, false, true]),
            [None, None, None, Some(false), Some(true)]
        );
    }

    #[test]
    fn zero_thresholds_behave_as_one() {
        let mut v = Verdict::new(ProbeKind::Liveness, 0, 0);
        assert_eq!(feed(&mut v, &[false, true]), [Some(false), Some(true)]);
    }

    #[test]
    fn startup_succeeds_once() {
        let mut v = Verdict::new(ProbeKind::Startup, 1, 30);
        assert_eq!(
            feed(&mut v, &[false, false, true]),
            [None, None, Some(true)]
        );
    }
}

//! Kubernetes' crash-loop backoff.
//!
//! The first restart of a container happens at once; after that each restart waits 10 s, doubling
//! up to 5 min (10, 20, 40, 80, 160, 300, 300, ... s). A container that ran for 10 min before it
//! exited resets the sequence (its next restart is immediate again). The type is pure: the caller
//! passes the clock in, so the sequence is unit-tested without waiting.

use std::time::{Duration, Instant};

/// The first non-zero delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The largest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// How long a container must have run for its backoff to reset.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// Backoff state of one container (or one image pull).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    /// The delay the next restart waits; `None` before any restart (the first one is immediate).
    next_delay: Option<Duration>,
    /// When the current wait ends (set by [`Backoff::exited`]).
    until: Option<Instant>,
    /// The delay of the current wait.
    delay: Duration,
}

impl Backoff {
    /// A fresh backoff: the next restart is immediate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the container exited at `now` after running for `ran`; returns the delay
    /// before it may be restarted.
    pub fn exited(&mut self, now: Instant, ran: Duration) -> Duration {
        if ran >= RESET_AFTER {
            self.next_delay = None;
        }
        let delay = self.next_delay.unwrap_or(Duration::ZERO);
        self.next_delay = Some(match self.next_delay {
            None => INITIAL,
            Some(d) => (d * 2).min(MAX),
        });
        self.until = Some(now + delay);
        self.delay = delay;
        delay
    }

    /// The whole delay of the current wait (what Kubernetes' `back-off 20s` message shows).
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// How long is left to wait at `now` (zero when the restart may happen).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
    }

    /// Whether a restart must still wait at `now`.
    pub fn waiting(&self, now: Instant) -> bool {
        !self.remaining(now).is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn first_restart_is_immediate_then_doubles_to_five_minutes() {
        let mut b = Backoff::new();
        let t = Instant::now();
        let delays: Vec<u64> = (0..9).map(|_| b.exited(t, secs(1)).as_secs()).collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn ten_minutes_up_resets() {
        let mut b = Backoff::new();
        let t = Instant::now();
        b.exited(t, secs(1));
        b.exited(t, secs(1));
        assert_eq!(b.exited(t, secs(1)), secs(20));
        assert_eq!(b.exited(t, secs(599)), secs(40));
        assert_eq!(b.exited(t, secs(600)), Duration::ZERO);
        assert_eq!(b.exited(t, secs(1)), secs(10));
    }

    #[test]
    fn waiting_until_the_delay_passed() {
        let mut b = Backoff::new();
        let t = Instant::now();
        assert!(!b.waiting(t));
        b.exited(t, secs(1));
        assert!(!b.waiting(t));
        b.exited(t, secs(1));
        assert!(b.waiting(t));
        assert_eq!(b.remaining(t + secs(4)), secs(6));
        assert_eq!(b.delay(), secs(10));
        assert!(!b.waiting(t + secs(10)));
    }
}

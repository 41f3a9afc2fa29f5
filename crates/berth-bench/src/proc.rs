//! Child processes of the benchmarks: readiness waits, and a guard that stops a child
//! gracefully when the benchmark is done with it (or fails half-way).

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Polls `ready` until it holds, for at most `within`.
pub(crate) fn wait_for(
    what: &str,
    within: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !ready()? {
        if Instant::now() > deadline {
            bail!("{what} did not become ready within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A child process stopped on drop: SIGTERM first (so a berth daemon removes its socket and
/// flushes its state), SIGKILL if it has not exited after 5 s; always reaped.
pub(crate) struct Reaped(pub(crate) Child);

impl Reaped {
    /// Fails if the child has already exited (it died while starting).
    pub(crate) fn check_alive(&mut self, what: &str) -> anyhow::Result<()> {
        if let Some(status) = self.0.try_wait()? {
            bail!("{what} exited early: {status}");
        }
        Ok(())
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

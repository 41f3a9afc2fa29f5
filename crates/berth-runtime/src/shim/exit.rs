//! The exit record the shim leaves in the container directory, and the OOM counter it uses
//! to tell an OOM kill from any other SIGKILL.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the exit record inside the container state directory.
pub const EXIT_FILE: &str = "exit.json";

/// Why the container's init process ended (the CRI `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    /// Exit code 0.
    Completed,
    /// Non-zero exit code or killed by a signal.
    Error,
    /// The memory cgroup's OOM-kill counter moved while the container ran.
    OOMKilled,
}

impl ExitReason {
    /// The CRI reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error => "Error",
            ExitReason::OOMKilled => "OOMKilled",
        }
    }

    /// Classifies an exit.
    pub fn classify(exit_code: i32, oom_killed: bool) -> Self {
        match (oom_killed, exit_code) {
            (true, _) => ExitReason::OOMKilled,
            (false, 0) => ExitReason::Completed,
            (false, _) => ExitReason::Error,
        }
    }
}

/// What the shim records when the container's init process has exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit status; 128 + signal number when killed by a signal.
    pub exit_code: i32,
    /// Wall-clock time of the exit, ns since the epoch.
    pub finished_at_ns: i64,
    /// Classification for the CRI status.
    pub reason: ExitReason,
    /// Human-readable detail (e.g. the signal).
    pub message: String,
}

impl ExitRecord {
    /// Writes the record to `<dir>/exit.json` atomically (temp file, fsync, rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!(".{EXIT_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(EXIT_FILE))
    }

    /// Reads `<dir>/exit.json`; `Ok(None)` while the container has not exited.
    pub fn read(dir: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(dir.join(EXIT_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The memory cgroup directory of a container with `linux.cgroupsPath` = `cgroups_path`
/// (cgroupfs driver): the v1 memory hierarchy when mounted, else the unified hierarchy.
pub fn memory_cgroup_dir(cgroups_path: &str) -> PathBuf {
    let rel = cgroups_path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.is_dir() {
        v1.join(rel)
    } else {
        Path::new("/sys/fs/cgroup").join(rel)
    }
}

/// The `oom_kill` counter of a memory cgroup (v1 `memory.oom_control`, v2 `memory.events`);
/// `None` when the cgroup or the counter is absent.
pub fn oom_kill_count(memory_dir: &Path) -> Option<u64> {
    ["memory.oom_control", "memory.events"].iter().find_map(|name| {
        let text = std::fs::read_to_string(memory_dir.join(name)).ok()?;
        parse_counter(&text, "oom_kill")
    })
}

/// Finds `key N` in a flat-keyed cgroup file.
pub fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExitRecord::read(dir.path()).unwrap(), None);
        let rec = ExitRecord { exit_code: 137, finished_at_ns: 5, reason: ExitReason::OOMKilled, message: "m".into() };
        rec.write(dir.path()).unwrap();
        assert_eq!(ExitRecord::read(dir.path()).unwrap(), Some(rec));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(EXIT_FILE)]);
    }

    #[test]
    fn reasons_and_counters() {
        assert_eq!(ExitReason::classify(0, false), ExitReason::Completed);
        assert_eq!(ExitReason::classify(3, false), ExitReason::Error);
        assert_eq!(ExitReason::classify(137, true).as_str(), "OOMKilled");
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_counter(v1, "oom_kill"), Some(2));
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_counter(v2, "oom_kill"), Some(1));
        assert_eq!(parse_counter(v2, "missing"), None);
    }
}

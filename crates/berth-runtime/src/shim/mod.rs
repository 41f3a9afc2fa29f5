//! The per-container shim (`berth shim`): one detached process per container that creates the
//! container with the OCI runtime, owns its stdout/stderr (written to the CRI log), reaps it,
//! records its exit and deletes it from the OCI runtime.
//!
//! Protocol with the container manager:
//! - the manager runs `berth shim ...` and waits for *that* process: it forks the real shim,
//!   which reports "created" (or the error) through a pipe, and exits 0 (or 1 with the error
//!   on stderr). The real shim lives on in its own session, reparented to init, so containers
//!   survive the runtime;
//! - Start is a separate step: the manager runs `<runtime> start <id>` itself;
//! - `SIGUSR1` to the shim (pid in `shim.pid`) reopens the log file (rotation);
//! - on exit the shim writes `exit.json` ([`ExitRecord`]) atomically, then runs `delete`.

mod exit;
pub mod log;
mod runner;

pub use runner::{process_alive, read_pid};

use std::path::PathBuf;

pub use exit::{memory_cgroup_dir, oom_kill_count, parse_counter, ExitReason, ExitRecord, EXIT_FILE};
pub use runner::run;

/// File (in the state directory) holding the shim's pid.
pub const SHIM_PID_FILE: &str = "shim.pid";
/// File (in the state directory) holding the container init's host pid.
pub const INIT_PID_FILE: &str = "init.pid";
/// The OCI runtime's own log (JSON lines), for error messages.
pub const RUNTIME_LOG_FILE: &str = "runtime.log";
/// The shim's own diagnostics.
pub const SHIM_LOG_FILE: &str = "shim.log";

/// Errors of the shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: nix::Error,
    },
    /// File or process I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The OCI runtime refused to create the container.
    #[error("OCI runtime create failed: {0}")]
    Create(String),
}

/// Everything the shim needs; passed on its command line by the manager.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// Container id (also the OCI runtime's id).
    pub id: String,
    /// Bundle directory (config.json).
    pub bundle: PathBuf,
    /// Directory for pid files, the exit record and the shim's own log.
    pub state_dir: PathBuf,
    /// CRI log file of the container.
    pub log_path: PathBuf,
    /// OCI runtime binary (runc).
    pub runtime: PathBuf,
    /// The OCI runtime's `--root` state directory.
    pub runtime_root: PathBuf,
    /// `linux.cgroupsPath` of the container, for the OOM-kill counter.
    pub cgroups_path: Option<String>,
}

impl ShimConfig {
    /// `<runtime> --root <root> --log <state>/runtime.log --log-format json` as a command.
    pub fn runtime_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.runtime);
        cmd.arg("--root")
            .arg(&self.runtime_root)
            .arg("--log")
            .arg(self.state_dir.join(RUNTIME_LOG_FILE))
            .arg("--log-format")
            .arg("json");
        cmd
    }
}

/// The last error message the OCI runtime logged (its JSON log's `msg` of level error).
pub fn last_runtime_error(state_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(RUNTIME_LOG_FILE)).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["level"] == "error").then(|| v["msg"].as_str().map(str::to_string)).flatten()
    })
}


//! Containers on disk: `containers/<id>/` holds the bundle (config.json), the overlay rootfs,
//! `state.json` and the shim's pid/exit files. Every operation reads the disk, so a restarted
//! runtime knows the same containers, including exits recorded while it was down.

pub mod rootfs;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::oci::{self, ContainerParams, OciError};
use crate::shim::{self, ExitRecord, ShimConfig, ShimError};

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No such container.
    #[error("container {0} not found")]
    NotFound(String),
    /// A container with this id exists already.
    #[error("container {0} already exists")]
    Exists(String),
    /// The operation does not fit the container's state.
    #[error("container {id} is {state:?}")]
    State {
        /// The container.
        id: String,
        /// Its current state.
        state: ContainerState,
    },
    /// The spec could not be generated.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The shim or OCI runtime failed.
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// The OCI runtime failed a command.
    #[error("{command} failed: {stderr}")]
    Runtime {
        /// The command.
        command: String,
        /// Its error output.
        stderr: String,
    },
    /// A file operation failed.
    #[error("container {path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Lifecycle states (the CRI ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Started and not exited.
    Running,
    /// Exited.
    Exited,
}

/// What the runtime records about a container (state.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container id.
    pub id: String,
    /// Container init pid (host pid namespace).
    pub pid: i32,
    /// Creation time (ns since the epoch).
    pub created_at_ns: i64,
    /// Start time, once started.
    pub started_at_ns: Option<i64>,
    /// The CRI log file.
    pub log_path: PathBuf,
    /// The stop signal (from config or image), e.g. `SIGTERM`.
    pub stop_signal: String,
    /// The cgroups path in the spec.
    pub cgroup_path: String,
}

/// A container's record plus how it ended (if it has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// What was recorded at create/start.
    pub record: ContainerRecord,
    /// The shim's exit record.
    pub exit: Option<ExitRecord>,
}

impl ContainerStatus {
    /// The CRI state derived from the records.
    pub fn state(&self) -> ContainerState {
        match (&self.exit, self.record.started_at_ns) {
            (Some(_), _) => ContainerState::Exited,
            (None, Some(_)) => ContainerState::Running,
            (None, None) => ContainerState::Created,
        }
    }
}

/// Where containers live and which binaries run them.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    dir: PathBuf,
    shim_exe: PathBuf,
    runtime: PathBuf,
    runtime_root: PathBuf,
    /// Parent of every container cgroup of this store (`/berth/<hash of the root>`), so two
    /// runtimes (or test runs) on one host never share a cgroup name.
    cgroup_parent: String,
    /// Held while ending a container whose shim died, so concurrent status reads reap it once.
    reaping: std::sync::Arc<std::sync::Mutex<()>>,
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |source| ContainerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl ContainerStore {
    /// Opens `root/containers` with the given shim executable and OCI runtime.
    pub fn open(root: &Path, shim_exe: PathBuf, runtime: PathBuf) -> Result<Self, ContainerError> {
        let dir = root.join("containers");
        let runtime_root = root.join("runc");
        for d in [&dir, &runtime_root] {
            std::fs::create_dir_all(d).map_err(io_at(d))?;
        }
        let canonical = std::fs::canonicalize(root).map_err(io_at(root))?;
        let hash = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
        let cgroup_parent = format!("/berth/{}", &hex::encode(hash)[..12]);
        Ok(Self {
            dir,
            shim_exe,
            runtime,
            runtime_root,
            cgroup_parent,
            reaping: Default::default(),
        })
    }

    /// The directory of container `id` (whether or not it exists).
    pub fn path(&self, id: &str) -> Result<PathBuf, ContainerError> {
        // Ids become directory names: keep them to one plain component.
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Err(ContainerError::NotFound(id.to_string()));
        }
        Ok(self.dir.join(id))
    }

    fn shim_config(&self, dir: &Path, record: &ContainerRecord) -> ShimConfig {
        ShimConfig {
            id: record.id.clone(),
            bundle: dir.to_path_buf(),
            log_path: record.log_path.clone(),
            state_dir: dir.join("state"),
            runtime: self.runtime.clone(),
            runtime_root: self.runtime_root.clone(),
            cgroup_path: Some(record.cgroup_path.clone()),
        }
    }

    fn save(&self, dir: &Path, record: &ContainerRecord) -> Result<(), ContainerError> {
        let json =
            serde_json::to_vec_pretty(record).map_err(|e| io_at(dir)(io::Error::other(e)))?;
        let path = dir.join("state.json");
        berth_fs::write_atomic(&path, &json).map_err(io_at(&path))
    }

    /// Creates the container: overlay rootfs, config.json, and a shim holding it `created`.
    pub fn create(
        &self,
        id: &str,
        layers: &[PathBuf],
        image: Option<&oci_spec::image::Config>,
        mut params: ContainerParams,
        log_path: &Path,
    ) -> Result<ContainerStatus, ContainerError> {
        let dir = self.path(id)?;
        if dir.exists() {
            return Err(ContainerError::Exists(id.to_string()));
        }
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let result = self.create_in(&dir, id, layers, image, &mut params, log_path);
        if result.is_err() {
            // Leave nothing behind from a failed create.
            let _ = rootfs::unmount(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn create_in(
        &self,
        dir: &Path,
        id: &str,
        layers: &[PathBuf],
        image: Option<&oci_spec::image::Config>,
        params: &mut ContainerParams,
        log_path: &Path,
    ) -> Result<ContainerStatus, ContainerError> {
        let rootfs = rootfs::mount_overlay(dir, layers).map_err(io_at(dir))?;
        let cgroup_path = format!("{}/{id}", self.cgroup_parent);
        params.cgroups_path = Some(cgroup_path.clone().into());
        let spec = oci::generate(image, params, &rootfs)?;
        let config = dir.join("config.json");
        spec.save(&config)
            .map_err(|e| io_at(&config)(io::Error::other(e)))?;
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        let stop_signal = image
            .and_then(|c| c.stop_signal().clone())
            .unwrap_or_else(|| "SIGTERM".into());
        let mut record = ContainerRecord {
            id: id.to_string(),
            pid: 0,
            created_at_ns: now_ns(),
            started_at_ns: None,
            log_path: log_path.to_path_buf(),
            stop_signal,
            cgroup_path,
        };
        record.pid = shim::spawn(&self.shim_exe, &self.shim_config(dir, &record))?;
        self.save(dir, &record)?;
        Ok(ContainerStatus { record, exit: None })
    }

    /// Reads a container's status from disk.
    pub fn status(&self, id: &str) -> Result<ContainerStatus, ContainerError> {
        let dir = self.path(id)?;
        let path = dir.join("state.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(id.to_string()));
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let record =
            serde_json::from_slice(&bytes).map_err(|e| io_at(&path)(io::Error::other(e)))?;
        let state_dir = dir.join("state");
        let mut exit = shim::read_exit(&state_dir);
        if exit.is_none() && shim_gone(&state_dir, id) {
            exit = Some(self.reap_orphan(id, &state_dir)?);
        }
        Ok(ContainerStatus { record, exit })
    }

    /// Ends a container whose shim died (killed, or the machine rebooted) before recording an
    /// exit: nobody collects its output or would see it exit any more, so it is killed and
    /// deleted, and gets the exit record the shim would have written, with code 255 and reason
    /// `Unknown` (its real status is lost). Without this it would show as running forever and
    /// every stop would wait for an exit that is never recorded.
    fn reap_orphan(&self, id: &str, state_dir: &Path) -> Result<ExitRecord, ContainerError> {
        let _one_at_a_time = self.reaping.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(exit) = shim::read_exit(state_dir) {
            // Another reader got here first.
            return Ok(exit);
        }
        tracing::warn!(
            container = id,
            "the container's shim is gone; killing the container"
        );
        let _ = self.runc(&["kill", "--all", id, "KILL"]);
        let _ = self.runc(&["delete", "--force", id]);
        let record = ExitRecord {
            exit_code: 255,
            finished_at_ns: now_ns(),
            reason: "Unknown".to_string(),
        };
        let json =
            serde_json::to_vec(&record).map_err(|e| io_at(state_dir)(io::Error::other(e)))?;
        berth_fs::write_atomic(&state_dir.join(shim::EXIT_FILE), &json)
            .map_err(io_at(state_dir))?;
        Ok(record)
    }

    /// Every container on disk.
    pub fn list(&self) -> Result<Vec<ContainerStatus>, ContainerError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let name = entry.map_err(io_at(&self.dir))?.file_name();
            if let Ok(s) = self.status(&name.to_string_lossy()) {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn runc(&self, args: &[&str]) -> Result<(), ContainerError> {
        let out = crate::ociruntime::command_via(&self.shim_exe, &self.runtime, &self.runtime_root)
            .args(args)
            .output()
            .map_err(io_at(&self.runtime))?;
        if !out.status.success() {
            return Err(ContainerError::Runtime {
                command: format!("{} {}", self.runtime.display(), args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Starts a created container.
    pub fn start(&self, id: &str) -> Result<ContainerStatus, ContainerError> {
        let mut status = self.status(id)?;
        if status.state() != ContainerState::Created {
            return Err(ContainerError::State {
                id: id.to_string(),
                state: status.state(),
            });
        }
        // Taken before `runc start`: a process that exits at once may be reaped by its shim (which
        // stamps finished_at) before `runc start` even returns.
        let started = now_ns();
        self.runc(&["start", id])?;
        status.record.started_at_ns = Some(started);
        self.save(&self.path(id)?, &status.record)?;
        Ok(status)
    }

    /// Waits up to `timeout` for the container to exit; returns its exit record if it did.
    pub fn wait(&self, id: &str, timeout: Duration) -> Result<Option<ExitRecord>, ContainerError> {
        let state_dir = self.path(id)?.join("state");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = shim::read_exit(&state_dir) {
                return Ok(Some(exit));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the container: its stop signal, `timeout` of grace, then SIGKILL. Idempotent.
    pub fn stop(&self, id: &str, timeout: Duration) -> Result<ExitRecord, ContainerError> {
        let status = self.status(id)?;
        if let Some(exit) = status.exit {
            return Ok(exit);
        }
        let signal = status.record.stop_signal.clone();
        // A kill can race with a natural exit; the exit record below is what counts.
        let _ = self.runc(&["kill", id, &signal]);
        if let Some(exit) = self.wait(id, timeout)? {
            return Ok(exit);
        }
        let _ = self.runc(&["kill", "--all", id, "KILL"]);
        // SIGKILL cannot be ignored; the shim records the exit right after.
        self.wait(id, Duration::from_secs(30))?
            .ok_or_else(|| ContainerError::Runtime {
                command: format!("kill {id}"),
                stderr: "container did not exit after SIGKILL".into(),
            })
    }

    /// Removes the container (killing it if needed), its rootfs mount and files. Idempotent.
    pub fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let dir = self.path(id)?;
        if !dir.exists() {
            return Ok(());
        }
        if let Some(status) = self.status(id).ok().filter(|s| s.exit.is_none()) {
            if status.record.started_at_ns.is_none() {
                // A created container's init is blocked in runc init: delete it directly.
                let _ = self.runc(&["delete", "--force", id]);
            }
            self.stop(id, Duration::ZERO)?;
        }
        let _ = self.runc(&["delete", "--force", id]);
        rootfs::unmount(&dir).map_err(io_at(&dir))?;
        std::fs::remove_dir_all(&dir).map_err(io_at(&dir))?;
        self.prune_cgroup_parents();
        Ok(())
    }

    /// Removes this store's (now possibly empty) parent cgroups in every hierarchy; rmdir of a
    /// cgroup that still has children fails, which is exactly the "still in use" case.
    fn prune_cgroup_parents(&self) {
        let rel = self.cgroup_parent.trim_start_matches('/');
        let mount = Path::new("/sys/fs/cgroup");
        let hierarchies = std::fs::read_dir(mount)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path());
        for h in hierarchies.chain([mount.to_path_buf()]) {
            let _ = std::fs::remove_dir(h.join(rel));
            let _ = std::fs::remove_dir(h.join("berth"));
        }
    }
}

/// Whether the container's shim has died: it wrote its pid at start, and that process is gone
/// (or the pid now belongs to another process). `false` while the shim is still starting.
fn shim_gone(state_dir: &Path, id: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(state_dir.join(shim::SHIM_PID_FILE)) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return false;
    };
    // A zombie's cmdline reads empty: dead as well.
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => !String::from_utf8_lossy(&cmdline).contains(id),
        Err(_) => true,
    }
}

impl ContainerStore {
    /// `runc exec` of `argv` in the container as its configured user, cwd and environment.
    pub fn exec_command(
        &self,
        id: &str,
        argv: &[String],
        tty: bool,
    ) -> Result<tokio::process::Command, ContainerError> {
        let dir = self.path(id)?;
        let config = dir.join("config.json");
        let spec = oci_spec::runtime::Spec::load(&config)
            .map_err(|e| io_at(&config)(io::Error::other(e)))?;
        let mut cmd =
            crate::ociruntime::tokio_command_via(&self.shim_exe, &self.runtime, &self.runtime_root);
        cmd.arg("exec");
        if tty {
            // The runtime's foreground terminal mode: see `stream::pty`.
            cmd.arg("--tty");
        }
        if let Some(p) = spec.process() {
            cmd.arg("--user")
                .arg(format!("{}:{}", p.user().uid(), p.user().gid()));
            cmd.arg("--cwd").arg(p.cwd());
            for e in p.env().iter().flatten() {
                cmd.arg("--env").arg(e);
            }
        }
        cmd.arg(id).args(argv).stdin(std::process::Stdio::null());
        Ok(cmd)
    }
}

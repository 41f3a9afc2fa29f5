//! The per-container shim (`berth shim`): a small detached process that owns one container.
//!
//! It runs `runc create` with pipes it owns as the container's stdout/stderr, tells its parent
//! (one line on its stdout) that the container exists, and then — in its own session, so the
//! runtime may die and restart freely — copies the streams into the CRI log, waits for the
//! container (as child subreaper), records how it ended atomically in `exit.json`, runs
//! `runc delete`, and exits. `runc start` is issued separately by the runtime (CRI Start).

pub mod log;

use std::io::{self, BufRead, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Name of the file in the state dir recording the container's end.
pub const EXIT_FILE: &str = "exit.json";
/// Name of the file in the state dir holding the container init pid.
pub const PID_FILE: &str = "pid";
/// Name of the file in the state dir holding the shim's own pid.
pub const SHIM_PID_FILE: &str = "shim.pid";

/// Why the shim failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The OCI runtime refused to create the container.
    #[error("{runtime} create failed: {message}")]
    Create {
        /// The OCI runtime binary.
        runtime: String,
        /// Its error output.
        message: String,
    },
    /// A system call or file operation failed.
    #[error("shim: {0}")]
    Io(#[from] io::Error),
    /// A system call failed.
    #[error("shim: {0}")]
    Sys(#[from] nix::Error),
}

/// What one shim supervises.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// Container id (also the OCI runtime's id).
    pub id: String,
    /// The OCI bundle (holds config.json).
    pub bundle: PathBuf,
    /// Where the CRI-format log goes.
    pub log_path: PathBuf,
    /// Directory for pid, exit and OCI runtime log files.
    pub state_dir: PathBuf,
    /// The OCI runtime binary (runc).
    pub runtime: PathBuf,
    /// The OCI runtime's state root (`runc --root`).
    pub runtime_root: PathBuf,
    /// The container's cgroups path (for OOM detection), as in the spec.
    pub cgroup_path: Option<String>,
}

impl ShimConfig {
    /// Parses the shim's command line (`--id X --bundle B ...`, as [`spawn`] writes it).
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut cfg = ShimConfig {
            id: String::new(),
            bundle: PathBuf::new(),
            log_path: PathBuf::new(),
            state_dir: PathBuf::new(),
            runtime: PathBuf::from("runc"),
            runtime_root: PathBuf::new(),
            cgroup_path: None,
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--id" => cfg.id = value,
                "--bundle" => cfg.bundle = value.into(),
                "--log-path" => cfg.log_path = value.into(),
                "--state-dir" => cfg.state_dir = value.into(),
                "--runtime" => cfg.runtime = value.into(),
                "--runtime-root" => cfg.runtime_root = value.into(),
                "--cgroup-path" => cfg.cgroup_path = Some(value),
                other => return Err(format!("unknown shim flag {other}")),
            }
        }
        if cfg.id.is_empty()
            || cfg.bundle.as_os_str().is_empty()
            || cfg.state_dir.as_os_str().is_empty()
        {
            return Err("shim needs --id, --bundle and --state-dir".into());
        }
        Ok(cfg)
    }
}

/// How a container ended, as recorded by its shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit status; 128 + signal number when killed by a signal.
    pub exit_code: i32,
    /// When the shim saw it exit (ns since the epoch).
    pub finished_at_ns: i64,
    /// `Completed`, `Error` or `OOMKilled` (CRI reasons).
    pub reason: String,
}

/// Reads the exit record in `state_dir`, if the container has exited.
pub fn read_exit(state_dir: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(state_dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

static REOPEN_LOG: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigusr1(_: libc::c_int) {
    REOPEN_LOG.store(true, Ordering::SeqCst);
}

/// Runs the shim in the current process: never returns before the container has ended (or
/// failed to be created). Must be called before any other thread exists.
pub fn run(cfg: &ShimConfig) -> Result<(), ShimError> {
    // Own session: no signal sent to the runtime's process group reaches us or the container.
    let _ = nix::unistd::setsid();
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    std::fs::create_dir_all(&cfg.state_dir)?;
    std::fs::write(
        cfg.state_dir.join(SHIM_PID_FILE),
        std::process::id().to_string(),
    )?;
    let (out_r, out_w) = nix::unistd::pipe()?;
    let (err_r, err_w) = nix::unistd::pipe()?;
    let pid = match create(cfg, out_w, err_w) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = writeln!(io::stdout(), "error {e}");
            return Err(e);
        }
    };
    // Tell the runtime the container exists, then detach from its pipe for good.
    writeln!(io::stdout(), "created {pid}")?;
    io::stdout().flush()?;
    detach_stdio()?;
    install_reopen_handler()?;

    let sink = log::LogSink::open(&cfg.log_path)?;
    let pumps = [(out_r, "stdout"), (err_r, "stderr")].map(|(fd, name)| {
        let sink = sink.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(e) = log::pump(std::fs::File::from(fd), &sink, name) {
                tracing::warn!(error = %e, "log pump");
            }
            let _ = tx.send(());
        });
        rx
    });
    let exit_code = wait_for(pid, &sink)?;
    // Processes exec'd into the container may still hold the pipes: do not wait forever.
    for rx in pumps {
        let _ = rx.recv_timeout(Duration::from_secs(2));
    }
    let reason = if oom_killed(cfg.cgroup_path.as_deref()) {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let record = ExitRecord {
        exit_code,
        finished_at_ns: now_ns(),
        reason: reason.to_string(),
    };
    let json = serde_json::to_vec(&record).map_err(io::Error::other)?;
    berth_fs::write_atomic(&cfg.state_dir.join(EXIT_FILE), &json)?;
    let _ = runtime_cmd(cfg)
        .args(["delete", "--force", &cfg.id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    Ok(())
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// The OCI runtime command with its global flags.
pub fn runtime_cmd(cfg: &ShimConfig) -> Command {
    crate::ociruntime::command(&cfg.runtime, &cfg.runtime_root)
}

/// `runc create`: the container's init waits (blocked in runc init) for `runc start`.
fn create(cfg: &ShimConfig, out_w: OwnedFd, err_w: OwnedFd) -> Result<i32, ShimError> {
    let pid_file = cfg.state_dir.join(PID_FILE);
    let runc_log = cfg.state_dir.join("runtime.log");
    let status = runtime_cmd(cfg)
        .arg("--log")
        .arg(&runc_log)
        .args(["create", "--bundle"])
        .arg(&cfg.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&cfg.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .status()?;
    if !status.success() {
        let message = std::fs::read_to_string(&runc_log).unwrap_or_default();
        let message = message
            .lines()
            .last()
            .unwrap_or("no error output")
            .to_string();
        return Err(ShimError::Create {
            runtime: cfg.runtime.display().to_string(),
            message,
        });
    }
    let pid = std::fs::read_to_string(&pid_file)?;
    pid.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("bad pid file {pid:?}")).into())
}

/// Points stdin/stdout/stderr at /dev/null so the runtime's pipe can close.
fn detach_stdio() -> Result<(), ShimError> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this process.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
    }
    Ok(())
}

fn install_reopen_handler() -> Result<(), ShimError> {
    // No SA_RESTART: the blocking waitpid must return EINTR so the main loop sees the flag.
    let action = SigAction::new(
        SigHandler::Handler(on_sigusr1),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { signal::sigaction(Signal::SIGUSR1, &action) }?;
    Ok(())
}

/// Reaps children until the container init exits; returns its exit code.
fn wait_for(pid: i32, sink: &log::LogSink) -> Result<i32, ShimError> {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => return Ok(128 + sig as i32),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {
                if REOPEN_LOG.swap(false, Ordering::SeqCst) {
                    sink.reopen()?;
                }
            }
            // No children left: the init was reaped elsewhere; treat as unknown failure.
            Err(nix::errno::Errno::ECHILD) => return Ok(255),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the kernel OOM-killed something in the container's memory cgroup (v1 oom_control
/// or v2 memory.events `oom_kill` counter; the cgroup is fresh, so any kill is this container's).
fn oom_killed(cgroup_path: Option<&str>) -> bool {
    let Some(rel) = cgroup_path else { return false };
    let rel = rel.trim_start_matches('/');
    let candidates = [
        (
            format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
            "oom_kill ",
        ),
        (format!("/sys/fs/cgroup/{rel}/memory.events"), "oom_kill "),
    ];
    candidates.iter().any(|(path, key)| {
        std::fs::read_to_string(path)
            .map(|text| {
                text.lines().any(|l| {
                    l.strip_prefix(key)
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
            .unwrap_or(false)
    })
}

/// Starts `<shim_exe> shim ...` for `cfg` and waits until it reports the container created.
/// Returns the container init pid. The shim is reaped by a background thread when it exits.
pub fn spawn(shim_exe: &Path, cfg: &ShimConfig) -> Result<i32, ShimError> {
    let mut cmd = Command::new(shim_exe);
    cmd.arg("shim")
        .arg("--id")
        .arg(&cfg.id)
        .arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--log-path")
        .arg(&cfg.log_path)
        .arg("--state-dir")
        .arg(&cfg.state_dir)
        .arg("--runtime")
        .arg(&cfg.runtime)
        .arg("--runtime-root")
        .arg(&cfg.runtime_root);
    if let Some(cg) = &cfg.cgroup_path {
        cmd.arg("--cgroup-path").arg(cg);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("shim stdout"))?;
    let mut line = String::new();
    io::BufReader::new(stdout).read_line(&mut line)?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let line = line.trim();
    match line.strip_prefix("created ") {
        Some(pid) => pid
            .parse()
            .map_err(|_| io::Error::other(format!("shim said {line:?}")).into()),
        None => Err(ShimError::Create {
            runtime: cfg.runtime.display().to_string(),
            message: line.strip_prefix("error ").unwrap_or(line).to_string(),
        }),
    }
}

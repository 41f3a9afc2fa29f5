//! The shim's process logic: fork/setsid, `create`, stream pumps, reaping, exit record.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::fcntl::OFlag;
use nix::unistd::{fork, pipe2, setsid, ForkResult, Pid};
use tracing::{info, warn};

use super::exit::{memory_cgroup_dir, oom_kill_count, ExitReason, ExitRecord};
use super::log::{LineSplitter, LogFile, Stream};
use super::{last_runtime_error, ShimConfig, ShimError, INIT_PID_FILE, SHIM_LOG_FILE, SHIM_PID_FILE};

/// Runs the shim. Returns in the *launcher* process once the container is created (or
/// failed); the forked shim itself never returns (it exits the process when done).
///
/// Must be called while the process is single-threaded (it forks).
pub fn run(cfg: &ShimConfig) -> Result<(), ShimError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(io("creating the state directory"))?;
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    // SAFETY: the caller guarantees a single-threaded process, so the child may run Rust code.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { .. } => {
            drop(ready_w);
            let mut msg = String::new();
            File::from(ready_r).read_to_string(&mut msg).map_err(io("reading the shim's report"))?;
            match msg.strip_prefix("ok") {
                Some(_) => Ok(()),
                None if msg.is_empty() => Err(ShimError::Create("the shim died before reporting".into())),
                None => Err(ShimError::Create(msg)),
            }
        }
        ForkResult::Child => {
            drop(ready_r);
            let code = supervise(cfg, ready_w);
            std::process::exit(code)
        }
    }
}

/// The real shim: sets itself up, creates the container, then supervises it until it exits.
fn supervise(cfg: &ShimConfig, ready: OwnedFd) -> i32 {
    let mut ready = File::from(ready);
    if let Err(e) = detach(cfg) {
        let _ = write!(ready, "{e}");
        return 1;
    }
    let created = match create(cfg) {
        Ok(c) => c,
        Err(e) => {
            let _ = write!(ready, "{e}");
            return 1;
        }
    };
    let _ = ready.write_all(b"ok");
    drop(ready);
    let record = wait_for_exit(cfg, created);
    if let Err(e) = record.write(&cfg.state_dir) {
        warn!(error = %e, "writing the exit record");
    }
    let status = cfg.runtime_command().arg("delete").arg("--force").arg(&cfg.id).stdin(Stdio::null()).status();
    if !matches!(status, Ok(s) if s.success()) {
        warn!(?status, "OCI runtime delete failed");
    }
    info!(exit_code = record.exit_code, "container exited");
    0
}

/// New session, subreaper, stdio away from the launcher, SIGUSR1 blocked for the reopen thread.
fn detach(cfg: &ShimConfig) -> Result<(), ShimError> {
    setsid().map_err(sys("setsid"))?;
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(ShimError::Sys { what: "PR_SET_CHILD_SUBREAPER", source: nix::Error::last() });
    }
    let null = File::options().read(true).write(true).open("/dev/null").map_err(io("opening /dev/null"))?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(cfg.state_dir.join(SHIM_LOG_FILE))
        .map_err(io("opening the shim log"))?;
    for (src, fd) in [(null.as_raw_fd(), 0), (null.as_raw_fd(), 1), (log.as_raw_fd(), 2)] {
        // SAFETY: dup2 onto the standard descriptors, both fds are open.
        if unsafe { libc::dup2(src, fd) } < 0 {
            return Err(ShimError::Sys { what: "dup2", source: nix::Error::last() });
        }
    }
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    set.thread_block().map_err(sys("blocking SIGUSR1"))?;
    std::fs::write(cfg.state_dir.join(SHIM_PID_FILE), std::process::id().to_string())
        .map_err(io("writing shim.pid"))?;
    Ok(())
}

/// A created container: its init pid, the read ends of its stdio, the log and the OOM baseline.
struct Created {
    init: Pid,
    stdout: File,
    stderr: File,
    log: Arc<LogFile>,
    oom_before: Option<u64>,
}

/// Runs `<runtime> create` with stdio pipes owned by the shim.
fn create(cfg: &ShimConfig) -> Result<Created, ShimError> {
    let log = Arc::new(LogFile::open(&cfg.log_path).map_err(io("opening the container log"))?);
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let pid_file = cfg.state_dir.join(INIT_PID_FILE);
    let status = cfg
        .runtime_command()
        .arg("create")
        .arg("--bundle")
        .arg(&cfg.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&cfg.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .status()
        .map_err(io("running the OCI runtime"))?;
    // The write ends went into the Command and are closed now; only the container holds them.
    if !status.success() {
        let detail = last_runtime_error(&cfg.state_dir).unwrap_or_else(|| format!("{status}"));
        return Err(ShimError::Create(detail));
    }
    let pid_text = std::fs::read_to_string(&pid_file).map_err(io("reading init.pid"))?;
    let init = pid_text
        .trim()
        .parse::<i32>()
        .map(Pid::from_raw)
        .map_err(|e| ShimError::Create(format!("bad pid file {pid_text:?}: {e}")))?;
    let oom_before = cfg.cgroups_path.as_deref().and_then(|p| oom_kill_count(&memory_cgroup_dir(p)));
    Ok(Created { init, stdout: File::from(out_r), stderr: File::from(err_r), log, oom_before })
}

/// Pumps the streams, reaps children until the init exits, then classifies the exit.
fn wait_for_exit(cfg: &ShimConfig, c: Created) -> ExitRecord {
    let pumps = [(c.stdout, Stream::Stdout), (c.stderr, Stream::Stderr)].map(|(file, stream)| {
        let log = Arc::clone(&c.log);
        std::thread::spawn(move || pump(file, stream, &log))
    });
    let reopen_log = Arc::clone(&c.log);
    std::thread::spawn(move || reopen_on_sigusr1(&reopen_log));
    let (exit_code, message) = reap_until(c.init);
    // The OOM counter must be read before `delete` removes the cgroup.
    let oom_after = cfg.cgroups_path.as_deref().and_then(|p| oom_kill_count(&memory_cgroup_dir(p)));
    let oom = matches!((c.oom_before, oom_after), (Some(b), Some(a)) if a > b);
    let finished_at_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    // Init is gone, so the pid namespace is gone and the pipes hit EOF: drain them fully.
    for p in pumps {
        let _ = p.join();
    }
    ExitRecord { exit_code, finished_at_ns, reason: ExitReason::classify(exit_code, oom), message }
}

/// Reaps every child (we are a subreaper) until `init` exits; returns its code and a message.
fn reap_until(init: Pid) -> (i32, String) {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init => return (code, String::new()),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => {
                return (128 + sig as i32, format!("killed by signal {sig}"))
            }
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return (255, format!("lost track of the container: {e}")),
        }
    }
}

/// Copies one container stream into the CRI log until EOF.
fn pump(mut from: File, stream: Stream, log: &LogFile) {
    let mut splitter = LineSplitter::new(stream);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = splitter.feed(&buf[..n], log) {
                    warn!(error = %e, "writing the container log");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!(error = %e, "reading the container stream");
                break;
            }
        }
    }
    let _ = splitter.finish(log);
}

/// Waits for SIGUSR1 (blocked in every thread) and reopens the log each time.
fn reopen_on_sigusr1(log: &LogFile) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    while set.wait().is_ok() {
        if let Err(e) = log.reopen() {
            warn!(error = %e, "reopening the container log");
        }
    }
}

fn sys(what: &'static str) -> impl Fn(nix::Error) -> ShimError {
    move |source| ShimError::Sys { what, source }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> ShimError + '_ {
    move |source| ShimError::Io { what: what.to_string(), source }
}

/// Whether a process exists (signal 0).
pub fn process_alive(pid: i32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
}

/// Reads a pid file.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

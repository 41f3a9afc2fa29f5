//! Starting daemons: in their own session (a Ctrl-C on the launcher's terminal reaches only the
//! launcher, which then stops them itself), optionally inside a node's network namespace, with
//! their output in a log file or inherited.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::io_at;
use crate::{LaunchError, Logs};

/// A command that runs `program` inside the pinned network namespace `netns` (only the network
/// namespace: mounts stay the host's, so what the runtime mounts under the data dir is visible
/// to [`crate::down`]).
pub(crate) fn in_netns(netns: &str, program: &Path) -> Result<Command, LaunchError> {
    let pin = Path::new("/run/netns").join(netns);
    let ns = File::open(&pin).map_err(io_at(&pin))?;
    let mut cmd = Command::new(program);
    // SAFETY: the hook only calls setns(2), async-signal-safe, on a descriptor it owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Starts `cmd` as daemon `name` in a new session, its output per `logs` (`logs_dir/<name>.log`,
/// appended, for [`Logs::Files`]).
pub(crate) fn spawn_daemon(
    mut cmd: Command,
    name: &str,
    logs: Logs,
    logs_dir: &Path,
) -> Result<Child, LaunchError> {
    if logs == Logs::Files {
        let path = log_path(logs_dir, name);
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        let err = file.try_clone().map_err(io_at(&path))?;
        cmd.stdout(Stdio::from(file)).stderr(Stdio::from(err));
    }
    cmd.stdin(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| LaunchError::Spawn {
        name: name.to_string(),
        source,
    })
}

/// The log file of daemon `name`.
pub(crate) fn log_path(logs_dir: &Path, name: &str) -> std::path::PathBuf {
    logs_dir.join(format!("{name}.log"))
}

/// Signals `child` and reaps it, waiting at most `grace` for a SIGTERM before a SIGKILL.
pub(crate) fn stop(child: &mut Child, signal: libc::c_int, grace: std::time::Duration) {
    crate::cleanup::kill(child.id(), signal);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

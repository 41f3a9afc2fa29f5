//! `TestRuntime`: a `berth runtime` child process in its own network namespace, on a socket and
//! root in a per-test temp dir; killed (SIGTERM, then SIGKILL) and cleaned up on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running `berth runtime`.
pub struct TestRuntime {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// The shell prefix that runs a command in a fresh network namespace with loopback up, so the
/// runtime's bridge and veths never touch the host's network.
pub fn in_private_netns(cmd: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--net",
        "sh",
        "-c",
        &format!("ip link set lo up && exec {cmd}"),
    ]);
    c
}

impl TestRuntime {
    /// Starts `berth runtime` and waits for its socket.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-rt-")
            .tempdir_in("/var/tmp")?;
        let socket = dir.path().join("cri.sock");
        let root = dir.path().join("root");
        let log = std::fs::File::create(dir.path().join("runtime.log"))?;
        let cmd = format!(
            "{} runtime --listen unix://{} --root {} --bridge berthe2e0 --pod-cidr 10.214.0.0/24",
            crate::berth_bin().display(),
            socket.display(),
            root.display()
        );
        let child = in_private_netns(&cmd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn unshare + berth runtime")?;
        let mut rt = TestRuntime {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !rt.socket().exists() {
            if let Some(status) = rt.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("berth runtime exited early ({status}):\n{}", rt.log());
            }
            if Instant::now() > deadline {
                bail!("berth runtime did not create its socket:\n{}", rt.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(rt)
    }

    /// The CRI socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("cri.sock")
    }

    /// The runtime root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The runtime's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("runtime.log")).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("berth runtime ignored SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The temp dir everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}

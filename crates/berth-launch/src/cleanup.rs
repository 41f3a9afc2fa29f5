//! Finding and removing what berth daemons leave on a machine: processes (daemons, shims and
//! container processes), mounts under a data dir, container cgroups.
//!
//! Containers outlive the daemons by design (their shims own them), so a data dir's processes are
//! found two ways: by command line (daemons and shims name the data dir) and by cgroup (container
//! processes live in `/berth/<parent>/<container id>`, where the runtime names `<parent>` after a
//! hash of its root; a container's own command line says nothing about the host).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Digest as _;

/// The runtime's cgroup parent for the runtime rooted at `runtime_root` (`<hash>` of
/// `/berth/<hash>`: the first 12 hex digits of SHA-256 of its canonical path), if the root exists.
pub fn cgroup_parent(runtime_root: &Path) -> Option<String> {
    let canonical = std::fs::canonicalize(runtime_root).ok()?;
    let hash = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    Some(hash.iter().map(|b| format!("{b:02x}")).collect::<String>()[..12].to_string())
}

/// A process running in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerProcess {
    /// Host pid.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub comm: String,
    /// The container it runs in (the last element of its cgroup path).
    pub container_id: String,
}

/// The processes in containers under cgroup parent `parent` (see [`cgroup_parent`]); zombies
/// (dead, waiting to be reaped, yet still listing their cgroup) are not.
pub fn container_processes(parent: &str) -> Vec<ContainerProcess> {
    let marker = format!("/berth/{parent}/");
    let mut out = Vec::new();
    for (pid, path) in pids().filter(|(_, path)| !is_zombie(path)) {
        let cgroups = std::fs::read_to_string(path.join("cgroup")).unwrap_or_default();
        let Some(id) = cgroups
            .lines()
            .find_map(|l| l.split_once(&marker).map(|(_, id)| id.to_string()))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        out.push(ContainerProcess {
            pid,
            comm,
            container_id: id,
        });
    }
    out
}

/// Processes whose command line names `dir` (an argument equal to it or a path under it),
/// except this process and its ancestors (`sudo berth down --data-dir DIR` names it too).
pub fn processes_naming(dir: &Path) -> Vec<u32> {
    let dir = dir.to_string_lossy().to_string();
    let spared = self_and_ancestors();
    pids()
        .filter(|(pid, _)| !spared.contains(pid))
        .filter(|(_, path)| {
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            cmdline
                .split(|b| *b == 0)
                .any(|arg| names_dir(&String::from_utf8_lossy(arg), &dir))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Whether argument `arg` names `dir` or a path under it (`--data-dir=DIR` too).
fn names_dir(arg: &str, dir: &str) -> bool {
    arg.match_indices(dir).any(|(at, _)| {
        let before = arg[..at].chars().last();
        let after = arg[at + dir.len()..].chars().next();
        matches!(before, None | Some('=') | Some(':') | Some('/'))
            && matches!(after, None | Some('/'))
    })
}

/// SIGKILLs the processes of a data dir (command line naming `dir`, or in a container under one
/// of `cgroup_parents`) until none is left (a few rounds: a shim may start a process while dying);
/// returns the pids it killed. Waits for each round to die: a process stays visible, command line
/// and all, until the kernel has torn it down, which takes a while under load.
pub fn kill_processes(dir: &Path, cgroup_parents: &[String]) -> Vec<u32> {
    let mut killed = Vec::new();
    for _ in 0..10 {
        let mut round = processes_naming(dir);
        for parent in cgroup_parents {
            round.extend(container_processes(parent).into_iter().map(|p| p.pid));
        }
        if round.is_empty() {
            break;
        }
        for pid in &round {
            kill(*pid, libc::SIGKILL);
        }
        wait_dead(&round, std::time::Duration::from_secs(10));
        killed.extend(round);
    }
    killed.sort_unstable();
    killed.dedup();
    killed
}

/// Waits until every process in `pids` is dead (gone, or a zombie: no command line), at most
/// `within`.
fn wait_dead(pids: &[u32], within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    let alive =
        |pid: &u32| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty());
    while pids.iter().any(alive) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Sends `signal` to `pid` (a process already gone is fine).
pub fn kill(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) only takes plain integers.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Mount points under `dir` (as this process's mount namespace sees them).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| names_dir(p, &dir))
        .map(str::to_string)
        .collect()
}

/// Lazily unmounts every mount point under `dir`, deepest first; returns them.
pub fn unmount_under(dir: &Path) -> Vec<String> {
    let mut points = mounts_under(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in &points {
        let _ = Command::new("umount").args(["-l", p]).status();
    }
    points
}

/// The container cgroups under `/berth/<parent>` in every hierarchy.
pub fn cgroups_of(parent: &str) -> Vec<PathBuf> {
    parent_dirs(parent)
        .into_iter()
        .flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes the container cgroups under `/berth/<parent>` and the parent itself in every
/// hierarchy; returns what it removed.
pub fn remove_cgroups(parent: &str) -> Vec<PathBuf> {
    let mut gone = Vec::new();
    for child in cgroups_of(parent) {
        if std::fs::remove_dir(&child).is_ok() {
            gone.push(child);
        }
    }
    for p in parent_dirs(parent) {
        if std::fs::remove_dir(&p).is_ok() {
            gone.push(p);
        }
    }
    gone
}

/// `/berth/<parent>` in each cgroup hierarchy where it exists (v2 at the root, v1 per controller).
fn parent_dirs(parent: &str) -> Vec<PathBuf> {
    let mut hierarchies: Vec<PathBuf> = vec!["/sys/fs/cgroup".into()];
    hierarchies.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    hierarchies
        .into_iter()
        .map(|h| h.join("berth").join(parent))
        .filter(|p| p.is_dir())
        .collect()
}

/// Deletes the veths attached to `bridge`, then the bridge; returns what it deleted.
pub fn delete_bridge(bridge: &str) -> Vec<String> {
    crate::net::delete_bridge(bridge)
}

/// Every process: pid and its /proc directory.
fn pids() -> impl Iterator<Item = (u32, PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((pid, e.path()))
        })
}

/// Whether the process at `/proc/<pid>` (`path`) is a zombie (state `Z`, or gone).
fn is_zombie(path: &Path) -> bool {
    let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
    // The state is the first field after the parenthesised command name.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_none_or(|state| state == "Z" || state == "X")
}

/// This process and every ancestor up to init.
fn self_and_ancestors() -> Vec<u32> {
    let mut out = vec![std::process::id()];
    while let Some(&pid) = out.last() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The parent is the second field after the parenthesised command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        match ppid {
            Some(p) if p > 1 && !out.contains(&p) => out.push(p),
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argument_names_a_dir_only_as_a_whole_path() {
        assert!(names_dir("/tmp/d", "/tmp/d"));
        assert!(names_dir("/tmp/d/runtime/x", "/tmp/d"));
        assert!(names_dir("--data-dir=/tmp/d", "/tmp/d"));
        assert!(names_dir("unix:///tmp/d/cri.sock", "/tmp/d"));
        assert!(!names_dir("/tmp/d2", "/tmp/d"));
        assert!(!names_dir("/x/tmp/dd", "/tmp/d"));
    }

    #[test]
    fn a_child_naming_the_dir_is_found_and_this_process_is_spared() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        std::fs::write(&marker, "").unwrap();
        let mut child = Command::new("tail").arg("-f").arg(&marker).spawn().unwrap();
        // Until it has exec'd, the child shows this test's command line.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = processes_naming(dir.path());
        while !found.contains(&child.id()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            found = processes_naming(dir.path());
        }
        let killed = kill_processes(dir.path(), &[]);
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(killed.contains(&child.id()));
        assert!(!found.contains(&std::process::id()));
        assert!(processes_naming(dir.path()).is_empty());
    }

    #[test]
    fn the_cgroup_parent_is_a_stable_hash_of_the_canonical_root() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_parent(&dir.path().join("missing")), None);
        let a = cgroup_parent(dir.path()).unwrap();
        assert_eq!(a.len(), 12);
        assert_eq!(cgroup_parent(&dir.path().join(".")), Some(a));
    }
}

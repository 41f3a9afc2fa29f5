//! Invoking the OCI runtime binary (runc by default, or crun): one place that builds its command
//! line, so the shim, the container store and exec agree on it.
//!
//! crun 1.8 refuses hosts with *hybrid* cgroups (v1 controllers under /sys/fs/cgroup plus an
//! empty cgroup2 at /sys/fs/cgroup/unified, as on this project's machines). It works as a pure v1
//! runtime when it cannot see that cgroup2 mount, so on such hosts every crun invocation runs in
//! a private mount namespace of its own where /sys/fs/cgroup/unified is unmounted. Nothing else
//! changes for it: the container's own namespaces are made by crun as usual, and the mounts it
//! needs (the rootfs, the sandbox's netns file) were made before, in the host's namespace, and
//! so are in the copy.

use std::path::Path;
use std::process::Command;

/// The cgroup2 mount of a hybrid host.
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// `<runtime> --root <root>`, set up to hide a hybrid host's cgroup2 mount from crun.
pub fn command(runtime: &Path, root: &Path) -> Command {
    let mut cmd = Command::new(runtime);
    cmd.arg("--root").arg(root);
    if needs_hidden_unified(runtime) {
        hide_unified(&mut cmd);
    }
    cmd
}

/// `<runtime> --root <root>` for a large multi-threaded caller (the runtime server). A
/// `pre_exec` hook makes the standard library fork the caller (copying its page tables, then
/// faulting and flushing TLBs on every core) instead of using posix_spawn; so when the private
/// view is needed, the runtime is started as `<helper> oci-runtime <runtime> ...` instead (the
/// `berth` binary), which sets the view up in its own small process and execs the runtime.
pub fn command_via(helper: &Path, runtime: &Path, root: &Path) -> Command {
    if !needs_hidden_unified(runtime) {
        return command(runtime, root);
    }
    let mut cmd = Command::new(helper);
    cmd.arg(HELPER_VERB).arg(runtime).arg("--root").arg(root);
    cmd
}

/// The `berth` subcommand that [`command_via`] runs.
pub const HELPER_VERB: &str = "oci-runtime";

/// The helper's side of [`command_via`]: hides the cgroup2 mount in a mount namespace of this
/// process (which must be single-threaded) and replaces it with `runtime args...`. Returns only
/// on failure.
pub fn exec_with_private_view(runtime: &Path, args: &[std::ffi::OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(runtime);
    cmd.args(args);
    if needs_hidden_unified(runtime)
        && let Err(e) = private_view()
    {
        return e;
    }
    cmd.exec()
}

/// The same as [`command_via`], as a tokio command.
pub fn tokio_command_via(helper: &Path, runtime: &Path, root: &Path) -> tokio::process::Command {
    tokio::process::Command::from(command_via(helper, runtime, root))
}

/// Whether `runtime` is crun on a host with hybrid cgroups.
fn needs_hidden_unified(runtime: &Path) -> bool {
    runtime
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("crun"))
        && is_hybrid()
}

/// v1 controllers under a tmpfs at /sys/fs/cgroup plus a cgroup2 mount at its `unified`. Read
/// once: the answer decides how every runtime command is started, and the host's layout does
/// not change under a running process.
fn is_hybrid() -> bool {
    use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
    static HYBRID: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HYBRID.get_or_init(|| {
        let kind = |p: &str| statfs(p).map(|s| s.filesystem_type()).ok();
        kind("/sys/fs/cgroup") == Some(TMPFS_MAGIC) && kind(UNIFIED) == Some(CGROUP2_SUPER_MAGIC)
    })
}

fn hide_unified(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; `private_view` makes only async-signal-safe
    // syscalls (unshare, mount, umount2) on static C strings, without allocating.
    unsafe {
        cmd.pre_exec(private_view);
    }
}

/// Moves this process into a mount namespace of its own in which the cgroup2 mount is gone.
fn private_view() -> std::io::Result<()> {
    // SAFETY: plain syscalls on static NUL-terminated strings and null pointers the kernel
    // accepts for these arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Private first, so the unmount does not propagate back to the host.
        let none: *const libc::c_char = std::ptr::null();
        let root = c"/";
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(none, root.as_ptr(), none, flags, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let unified = c"/sys/fs/cgroup/unified";
        if libc::umount2(unified.as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_crun_on_hybrid_hosts_gets_a_private_view() {
        assert!(!needs_hidden_unified(Path::new("/usr/sbin/runc")));
        let runc = command_via(Path::new("/bin/berth"), Path::new("runc"), Path::new("/r"));
        assert_eq!(runc.get_program(), "runc");
        let crun = command_via(Path::new("/bin/berth"), Path::new("crun"), Path::new("/r"));
        let wrapped = crun.get_program() == "/bin/berth";
        assert_eq!(wrapped, is_hybrid());
        assert_eq!(
            needs_hidden_unified(Path::new("/usr/bin/crun")),
            is_hybrid()
        );
    }

    /// On a hybrid host (and as root), a crun command sees no cgroup2 mount while the host
    /// keeps its own.
    #[test]
    fn the_private_view_hides_unified_only_from_the_runtime() {
        if !is_hybrid() || !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: not a hybrid-cgroup host, or not root");
            return;
        }
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "grep -c ' /sys/fs/cgroup/unified ' /proc/self/mountinfo",
        ]);
        hide_unified(&mut cmd);
        let out = cmd.output().expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
        let ours = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(
            ours.contains(" /sys/fs/cgroup/unified "),
            "the host still has its cgroup2 mount"
        );
    }
}

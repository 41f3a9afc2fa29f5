//! Defaults containerd applies to every non-privileged container (facts from its spec options).

use oci_spec::runtime::{Capability, Mount, MountBuilder};

use super::OciError;

/// containerd's default capability set.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from non-privileged containers.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths mounted read-only in non-privileged containers.
pub const DEFAULT_READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Every capability the kernel of this era knows (for privileged containers and `ALL`).
pub fn all_capabilities() -> Vec<Capability> {
    use Capability::*;
    vec![
        AuditControl, AuditRead, AuditWrite, BlockSuspend, Bpf, CheckpointRestore, Chown, DacOverride,
        DacReadSearch, Fowner, Fsetid, IpcLock, IpcOwner, Kill, Lease, LinuxImmutable, MacAdmin,
        MacOverride, Mknod, NetAdmin, NetBindService, NetBroadcast, NetRaw, Perfmon, Setgid, Setfcap,
        Setpcap, Setuid, SysAdmin, SysBoot, SysChroot, SysModule, SysNice, SysPacct, SysPtrace,
        SysRawio, SysResource, SysTime, SysTtyConfig, Syslog, WakeAlarm,
    ]
}

/// proc, /dev, devpts, shm, mqueue, sysfs and cgroup mounts.
pub fn standard_mounts(privileged: bool) -> Result<Vec<Mount>, OciError> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let table: [(&str, &str, &str, &[&str]); 7] = [
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        ("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        ("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        ("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        ("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        ("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", sys_mode]),
        ("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", sys_mode]),
    ];
    table
        .iter()
        .map(|(dest, typ, src, opts)| {
            Ok(MountBuilder::default()
                .destination(*dest)
                .typ(*typ)
                .source(*src)
                .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build()?)
        })
        .collect()
}

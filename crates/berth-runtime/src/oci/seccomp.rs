//! The container's seccomp filter (`linux.seccomp` in config.json, which runc loads itself).
//!
//! `RuntimeDefault` is berth's own profile, equal in effect to the default profile of Docker and
//! containerd: every syscall is allowed except those that reach past the container's namespaces
//! or into the whole machine (mounting, new namespaces, kernel modules, kexec, the kernel keyring,
//! clock setting, raw I/O ports, ...), which fail with EPERM. As in those profiles, a group of
//! syscalls stays allowed when the container holds the capability that governs it (a container
//! given `SYS_ADMIN` may mount). `Unconfined` means no filter; `Localhost` loads a profile in the
//! OCI `LinuxSeccomp` JSON format from a file on the node.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

use super::OciError;

/// The seccomp profile a container asks for (CRI `SecurityProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompProfile {
    /// berth's default profile ([`runtime_default`]); also what a container that asks nothing gets.
    #[default]
    RuntimeDefault,
    /// No seccomp filter at all.
    Unconfined,
    /// A profile in OCI `LinuxSeccomp` JSON read from this file on the node.
    Localhost(PathBuf),
}

/// EPERM: what a denied syscall returns.
const EPERM: u32 = 1;
/// ENOSYS: what clone3 returns, so that libc falls back to clone, whose flags can be inspected.
const ENOSYS: u32 = 38;

/// Syscalls denied unless the container holds the capability (`None`: denied always).
const DENIED: &[(Option<Capability>, &[&str])] = &[
    (
        None,
        &[
            "kexec_load",
            "kexec_file_load",
            "create_module",
            "get_kernel_syms",
            "query_module",
            "keyctl",
            "add_key",
            "request_key",
            "nfsservctl",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "userfaultfd",
            "vm86",
            "vm86old",
        ],
    ),
    (
        Some(Capability::SysAdmin),
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "move_mount",
            "open_tree",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
            "unshare",
            "setns",
            "quotactl",
            "quotactl_fd",
            "swapon",
            "swapoff",
            "lookup_dcookie",
            "fanotify_init",
        ],
    ),
    (
        Some(Capability::SysPtrace),
        &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"],
    ),
    (
        Some(Capability::SysTime),
        &[
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
            "adjtimex",
            "clock_adjtime",
            "clock_adjtime64",
        ],
    ),
    (
        Some(Capability::SysModule),
        &["init_module", "finit_module", "delete_module"],
    ),
    (Some(Capability::SysBoot), &["reboot"]),
    (Some(Capability::SysPacct), &["acct"]),
    (Some(Capability::SysRawio), &["ioperm", "iopl"]),
    (Some(Capability::Syslog), &["syslog"]),
    (Some(Capability::DacReadSearch), &["open_by_handle_at"]),
    (Some(Capability::Bpf), &["bpf"]),
    (Some(Capability::Perfmon), &["perf_event_open"]),
];

/// The clone flags that create namespaces (denied in `clone` without `SYS_ADMIN`).
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// The persona bits `personality` may set: PER_LINUX32 and UNAME26 (with PER_LINUX = 0 and the
/// query 0xffffffff, the personas Docker's default allows).
const ALLOWED_PERSONA_BITS: u64 = 0x0000_0008 | 0x0002_0000;

/// The seccomp section for `profile`, for a container holding `caps`; `None` = no filter.
pub fn section(
    profile: &SeccompProfile,
    caps: &Capabilities,
) -> Result<Option<LinuxSeccomp>, OciError> {
    match profile {
        SeccompProfile::RuntimeDefault => runtime_default(caps).map(Some),
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::Localhost(path) => load(path).map(Some),
    }
}

/// Reads a `Localhost` profile (OCI `LinuxSeccomp` JSON).
pub fn load(path: &Path) -> Result<LinuxSeccomp, OciError> {
    if path.as_os_str().is_empty() {
        return Err(OciError::SeccompProfile {
            path: path.to_path_buf(),
            reason: "a Localhost profile needs the profile's path (localhost_ref)".into(),
        });
    }
    let text = std::fs::read(path).map_err(|e| OciError::SeccompProfile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| OciError::SeccompProfile {
        path: path.to_path_buf(),
        reason: format!("not an OCI seccomp profile: {e}"),
    })
}

/// berth's default profile for a container holding `caps` (see the module docs).
pub fn runtime_default(caps: &Capabilities) -> Result<LinuxSeccomp, OciError> {
    let mut rules: Vec<LinuxSyscall> = DENIED
        .iter()
        .filter(|(cap, _)| cap.is_none_or(|c| !caps.contains(&c)))
        .map(|(_, names)| rule(names, EPERM, Vec::new()))
        .collect();
    if !caps.contains(&Capability::SysAdmin) {
        rules.push(rule(&["clone3"], ENOSYS, Vec::new()));
        // One rule per flag: rules for one syscall are alternatives, so any flag denies.
        for f in NAMESPACE_FLAGS {
            rules.push(rule(&["clone"], EPERM, vec![masked_eq(0, *f, *f)?]));
        }
    }
    rules.extend(persona_rules()?);
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActAllow);
    seccomp.set_architectures(Some(architectures()));
    seccomp.set_syscalls(Some(rules));
    Ok(seccomp)
}

/// Denies every persona but 0, the [`ALLOWED_PERSONA_BITS`] combinations and the query
/// 0xffffffff. A rule compares one argument once, so this takes one rule per bit: a foreign bit
/// set while bit 31 is clear, or bit 31 set while some other bit is clear.
fn persona_rules() -> Result<Vec<LinuxSyscall>, OciError> {
    let bit31 = 1u64 << 31;
    let foreign = (0..31)
        .map(|b| 1u64 << b)
        .filter(|b| b & ALLOWED_PERSONA_BITS == 0)
        .map(|b| masked_eq(0, b | bit31, b));
    let high_not_all = (0..31).map(|b| masked_eq(0, bit31 | (1u64 << b), bit31));
    foreign
        .chain(high_not_all)
        .map(|arg| Ok(rule(&["personality"], EPERM, vec![arg?])))
        .collect()
}

/// The architectures the filter covers: the host's and those its kernel also runs.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

fn rule(names: &[&str], errno: u32, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(LinuxSeccompAction::ScmpActErrno);
    s.set_errno_ret(Some(errno));
    s.set_args(if args.is_empty() { None } else { Some(args) });
    s
}

/// Argument `index` masked with `mask` equals `value`.
fn masked_eq(index: usize, mask: u64, value: u64) -> Result<LinuxSeccompArg, OciError> {
    // libseccomp's masked comparison: `value` holds the mask, `valueTwo` the expected bits.
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(mask)
        .value_two(value)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()
        .map_err(|e| OciError::Spec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `profile` denies `name` with the given first argument (as libseccomp matches).
    fn denies(profile: &LinuxSeccomp, name: &str, arg0: u64) -> bool {
        profile.syscalls().iter().flatten().any(|s| {
            s.names().iter().any(|n| n == name)
                && s.args().iter().flatten().all(|a| match a.op() {
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        arg0 & a.value() == a.value_two().unwrap_or(0)
                    }
                    _ => false,
                })
        })
    }

    fn caps(names: &[Capability]) -> Capabilities {
        names.iter().copied().collect()
    }

    #[test]
    fn default_profile_allows_all_but_the_dangerous_syscalls() {
        let p = runtime_default(&caps(&[Capability::Chown, Capability::NetBindService]))
            .expect("profile");
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "ptrace",
            "kexec_load",
            "init_module",
            "bpf",
            "perf_event_open",
            "unshare",
            "setns",
            "keyctl",
            "reboot",
            "swapon",
            "acct",
            "settimeofday",
            "open_by_handle_at",
            "userfaultfd",
            "quotactl",
            "iopl",
            "syslog",
        ] {
            assert!(denies(&p, name, 0), "{name} allowed");
        }
        for name in ["read", "openat", "socket", "execve", "sethostname"] {
            assert!(!denies(&p, name, 0), "{name} denied");
        }
        assert_eq!(
            serde_json::to_value(&p).expect("json")["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
    }

    #[test]
    fn clone_is_denied_only_with_namespace_flags() {
        let p = runtime_default(&Capabilities::new()).expect("profile");
        // SIGCHLD, and the flags of a thread (CLONE_VM|FS|FILES|SIGHAND|THREAD|...).
        assert!(!denies(&p, "clone", 17));
        assert!(!denies(&p, "clone", 0x003d_0f00));
        assert!(denies(&p, "clone", 17 | 0x4000_0000));
        assert!(denies(&p, "clone", 0x1000_0000));
        let clone3 = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone3"]);
        assert_eq!(clone3.and_then(|s| s.errno_ret()), Some(ENOSYS));
    }

    #[test]
    fn only_the_usual_personas_pass() {
        let p = runtime_default(&Capabilities::new()).expect("profile");
        for ok in [0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff] {
            assert!(!denies(&p, "personality", ok), "{ok:#x} denied");
        }
        for bad in [1, 0x40_0000, 0x8000_0000, 0xffff_fffe, 0x2_0009] {
            assert!(denies(&p, "personality", bad), "{bad:#x} allowed");
        }
    }

    #[test]
    fn a_capability_reopens_its_syscalls() {
        let p =
            runtime_default(&caps(&[Capability::SysAdmin, Capability::SysTime])).expect("profile");
        for name in ["mount", "unshare", "settimeofday"] {
            assert!(!denies(&p, name, 0), "{name} denied");
        }
        assert!(!denies(&p, "clone", 0x4000_0000));
        assert!(denies(&p, "kexec_load", 0) && denies(&p, "ptrace", 0));
    }

    #[test]
    fn localhost_profiles_load_or_fail_clearly() {
        let dir = tempfile::tempdir().expect("tmp");
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .expect("write");
        let profile = SeccompProfile::Localhost(good);
        let s = section(&profile, &Capabilities::new())
            .expect("load")
            .expect("some");
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        let missing = SeccompProfile::Localhost(dir.path().join("missing.json"));
        let err = section(&missing, &Capabilities::new()).expect_err("missing");
        assert!(err.to_string().contains("missing.json"), "{err}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"defaultAction\": 7}").expect("write");
        let err = load(&bad).expect_err("invalid");
        assert!(
            err.to_string().contains("not an OCI seccomp profile"),
            "{err}"
        );
        assert!(
            section(&SeccompProfile::Unconfined, &Capabilities::new())
                .expect("unconfined")
                .is_none()
        );
    }
}

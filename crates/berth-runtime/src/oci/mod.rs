//! OCI runtime spec generation: from an image's config and a container's (CRI-derived) settings
//! to the `config.json` runc executes. Pure logic apart from reading the rootfs' passwd/group.

mod seccomp;
mod user;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCpu, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, Mount, Process, Root, Spec, User,
};

pub use seccomp::SeccompProfile;
pub use user::{ResolvedUser, resolve as resolve_user};

/// Why a spec could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Neither the container nor the image says what to run.
    #[error("no command: the container sets none and the image has no ENTRYPOINT/CMD")]
    NoCommand,
    /// A user name not present in the rootfs' /etc/passwd.
    #[error("user {0:?} not found in the image's /etc/passwd")]
    UnknownUser(String),
    /// A group name not present in the rootfs' /etc/group.
    #[error("group {0:?} not found in the image's /etc/group")]
    UnknownGroup(String),
    /// A capability name this runtime does not know.
    #[error("unknown capability {0:?}")]
    Capability(String),
    /// A `Localhost` seccomp profile that is missing or not a valid OCI seccomp profile.
    #[error("seccomp profile {path}: {reason}")]
    SeccompProfile {
        /// The profile's path on the node.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// oci-spec refused a value.
    #[error("building the OCI spec: {0}")]
    Spec(String),
}

/// A bind mount requested for the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Path on the host.
    pub host_path: PathBuf,
    /// Path inside the container.
    pub container_path: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// cgroup limits; `None` (or 0 from CRI, mapped by the caller) means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU shares (relative weight).
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit: Option<i64>,
    /// Maximum number of processes.
    pub pids_limit: Option<i64>,
}

/// Everything about the container that is not in the image (the CRI ContainerConfig + sandbox).
#[derive(Debug, Clone, Default)]
pub struct ContainerParams {
    /// Overrides the image ENTRYPOINT (Kubernetes `command`).
    pub command: Vec<String>,
    /// Overrides the image CMD (Kubernetes `args`).
    pub args: Vec<String>,
    /// Environment, overriding the image's variables of the same name.
    pub envs: Vec<(String, String)>,
    /// Working directory; the image's (or `/`) when empty.
    pub working_dir: Option<String>,
    /// Numeric user; wins over the image USER.
    pub run_as_user: Option<u32>,
    /// User name; wins over `run_as_user`.
    pub run_as_username: Option<String>,
    /// Primary group override.
    pub run_as_group: Option<u32>,
    /// Extra supplementary groups.
    pub supplemental_groups: Vec<u32>,
    /// Bind mounts (volumes).
    pub mounts: Vec<BindMount>,
    /// The sandbox network namespace to join; a new one when `None` (unless `host_network`).
    pub netns_path: Option<PathBuf>,
    /// Share the node's network (and UTS) namespace instead of a pod one.
    pub host_network: bool,
    /// Share the node's PID namespace.
    pub host_pid: bool,
    /// Share the node's IPC namespace.
    pub host_ipc: bool,
    /// The pod hostname.
    pub hostname: String,
    /// Sandbox files bind-mounted at /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    /// cgroup limits.
    pub resources: Resources,
    /// The cgroups path given to runc.
    pub cgroups_path: Option<PathBuf>,
    /// Run with every capability and device access.
    pub privileged: bool,
    /// Mount the rootfs read-only.
    pub readonly_rootfs: bool,
    /// Allow gaining privileges through setuid binaries (false = no_new_privileges, the default).
    pub allow_privilege_escalation: bool,
    /// Capabilities added to the default set (`CAP_` prefix optional).
    pub add_capabilities: Vec<String>,
    /// Capabilities dropped from the default set (`ALL` drops every one).
    pub drop_capabilities: Vec<String>,
    /// Capabilities the process keeps across execve as a non-root user (the ambient set; none
    /// unless asked).
    pub add_ambient_capabilities: Vec<String>,
    /// The seccomp filter (berth's default unless the container asks otherwise).
    pub seccomp: SeccompProfile,
}

/// The capabilities a container gets by default (the list containerd and Docker use).
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

/// Every capability of Linux 5.9+ (privileged containers get them all).
const ALL_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The process arguments per Kubernetes rules: `command` replaces ENTRYPOINT and, when set,
/// drops CMD; `args` replaces CMD.
pub fn argv(
    image: Option<&oci_spec::image::Config>,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, OciError> {
    let entrypoint = image
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let out: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (false, _) => command.iter().chain(args).cloned().collect(),
        (true, false) => entrypoint.into_iter().chain(args.iter().cloned()).collect(),
        (true, true) => entrypoint.into_iter().chain(cmd).collect(),
    };
    if out.is_empty() {
        return Err(OciError::NoCommand);
    }
    Ok(out)
}

/// The environment: image variables, then container ones replacing same-named entries; PATH
/// defaulted when neither sets it.
pub fn environment(
    image: Option<&oci_spec::image::Config>,
    envs: &[(String, String)],
) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let image_env = image.and_then(|c| c.env().clone()).unwrap_or_default();
    let parsed = image_env.iter().map(|kv| match kv.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (kv.clone(), String::new()),
    });
    for (k, v) in parsed.chain(envs.iter().cloned()) {
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(
            0,
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
        );
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn parse_cap(name: &str) -> Result<Capability, OciError> {
    let full = if name.starts_with("CAP_") {
        name.to_string()
    } else {
        format!("CAP_{name}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| OciError::Capability(name.to_string()))
}

/// The effective capability set: privileged = all; otherwise defaults - drop + add.
pub fn capabilities(p: &ContainerParams) -> Result<Capabilities, OciError> {
    let all = || -> Result<Capabilities, OciError> {
        ALL_CAPABILITIES.iter().map(|c| parse_cap(c)).collect()
    };
    if p.privileged {
        return all();
    }
    let drop_all = p
        .drop_capabilities
        .iter()
        .any(|d| d.eq_ignore_ascii_case("ALL"));
    let mut caps: Capabilities = if drop_all {
        Capabilities::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| parse_cap(c))
            .collect::<Result<_, _>>()?
    };
    for d in p
        .drop_capabilities
        .iter()
        .filter(|d| !d.eq_ignore_ascii_case("ALL"))
    {
        caps.remove(&parse_cap(d)?);
    }
    for a in &p.add_capabilities {
        if a.eq_ignore_ascii_case("ALL") {
            caps = all()?;
        } else {
            caps.insert(parse_cap(a)?);
        }
    }
    Ok(caps)
}

/// The process' capability sets: bounding, effective and permitted from [`capabilities`]; the
/// ambient set (and the inheritable set it needs) only as asked, so that a non-root process
/// holds no capability after execve unless the spec says so. Every set is written out because
/// oci-spec's builder fills unset ones with its own defaults.
fn linux_capabilities(p: &ContainerParams) -> Result<LinuxCapabilities, OciError> {
    let mut caps = capabilities(p)?;
    let ambient: Capabilities = p
        .add_ambient_capabilities
        .iter()
        .map(|c| parse_cap(c))
        .collect::<Result<_, _>>()?;
    // An ambient capability must also be permitted (and bounded) to be raised at all.
    caps.extend(ambient.iter().copied());
    oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(ambient.clone())
        .ambient(ambient)
        .build()
        .map_err(spec_err)
}

fn spec_err(e: impl std::fmt::Display) -> OciError {
    OciError::Spec(e.to_string())
}

/// The user spec to resolve: CRI username > CRI uid > image USER; CRI group overrides.
fn user_spec(image: Option<&oci_spec::image::Config>, p: &ContainerParams) -> String {
    let base = if let Some(name) = p.run_as_username.as_ref().filter(|n| !n.is_empty()) {
        name.clone()
    } else if let Some(uid) = p.run_as_user {
        uid.to_string()
    } else {
        image.and_then(|c| c.user().clone()).unwrap_or_default()
    };
    match p.run_as_group {
        Some(g) => format!("{}:{g}", base.split(':').next().unwrap_or_default()),
        None => base,
    }
}

fn bind(dest: &Path, src: &Path, readonly: bool) -> Result<Mount, OciError> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if readonly {
        options.push("ro".into());
    }
    oci_spec::runtime::MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(src)
        .options(options)
        .build()
        .map_err(spec_err)
}

fn mounts(p: &ContainerParams) -> Result<Vec<Mount>, OciError> {
    let mut out = oci_spec::runtime::get_default_mounts();
    let cgroup_opts = [
        "nosuid",
        "noexec",
        "nodev",
        "relatime",
        if p.privileged { "rw" } else { "ro" },
    ];
    out.push(
        oci_spec::runtime::MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(
                cgroup_opts
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .build()
            .map_err(spec_err)?,
    );
    for (src, dest) in &p.etc_files {
        out.push(bind(Path::new(dest), src, false)?);
    }
    for m in &p.mounts {
        // A user mount over a default one (e.g. /dev/shm) replaces it.
        out.retain(|d| d.destination() != &m.container_path);
        out.push(bind(&m.container_path, &m.host_path, m.readonly)?);
    }
    Ok(out)
}

fn resources(p: &ContainerParams) -> Result<LinuxResources, OciError> {
    let r = &p.resources;
    let mut res = LinuxResources::default();
    let device_rule = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
        .allow(p.privileged)
        .access("rwm")
        .build()
        .map_err(spec_err)?;
    res.set_devices(Some(vec![device_rule]));
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(r.cpu_shares);
        cpu.set_quota(r.cpu_quota);
        cpu.set_period(r.cpu_period);
        res.set_cpu(Some(cpu));
    }
    if let Some(limit) = r.memory_limit {
        let mut mem = LinuxMemory::default();
        mem.set_limit(Some(limit));
        res.set_memory(Some(mem));
    }
    if let Some(limit) = r.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        res.set_pids(Some(pids));
    }
    Ok(res)
}

/// The namespaces the container gets; a host namespace is shared by leaving it out. A pod on
/// the host network also keeps the node's hostname (UTS), as the kubelet's pods do.
fn namespaces(p: &ContainerParams) -> Vec<LinuxNamespace> {
    let kinds = [
        (LinuxNamespaceType::Pid, p.host_pid),
        (LinuxNamespaceType::Ipc, p.host_ipc),
        (LinuxNamespaceType::Uts, p.host_network),
        (LinuxNamespaceType::Mount, false),
        (LinuxNamespaceType::Network, p.host_network),
    ];
    kinds
        .into_iter()
        .filter(|(_, host)| !host)
        .map(|(k, _)| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(k);
            if k == LinuxNamespaceType::Network {
                ns.set_path(p.netns_path.clone());
            }
            ns
        })
        .collect()
}

fn process(
    image: Option<&oci_spec::image::Config>,
    p: &ContainerParams,
    rootfs: &Path,
) -> Result<Process, OciError> {
    let resolved = user::resolve(rootfs, &user_spec(image, p))?;
    let mut user = User::default();
    user.set_uid(resolved.uid);
    user.set_gid(resolved.gid);
    let mut gids = resolved.additional_gids;
    gids.extend(
        p.supplemental_groups
            .iter()
            .copied()
            .filter(|g| *g != resolved.gid),
    );
    gids.dedup();
    user.set_additional_gids(if gids.is_empty() { None } else { Some(gids) });

    let linux_caps = linux_capabilities(p)?;
    let cwd = p
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| {
            image
                .and_then(|c| c.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".to_string());

    let mut proc_ = Process::default();
    proc_.set_terminal(Some(false));
    proc_.set_args(Some(argv(image, &p.command, &p.args)?));
    proc_.set_env(Some(environment(image, &p.envs)));
    proc_.set_cwd(PathBuf::from(cwd));
    proc_.set_user(user);
    proc_.set_capabilities(Some(linux_caps));
    proc_.set_no_new_privileges(Some(!p.allow_privilege_escalation && !p.privileged));
    // Never touch rlimits: the runtime lacks CAP_SYS_RESOURCE here, and containers inherit ours.
    proc_.set_rlimits(None);
    Ok(proc_)
}

/// The seccomp filter: the asked profile, except that a privileged container runs without one
/// (as with Docker and containerd, since it holds every capability anyway).
fn seccomp_section(
    p: &ContainerParams,
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>, OciError> {
    if p.privileged {
        return Ok(None);
    }
    let caps = linux_capabilities(p)?
        .permitted()
        .clone()
        .unwrap_or_default();
    seccomp::section(&p.seccomp, &caps)
}

/// Generates the runtime spec for a container whose rootfs is (or will be mounted) at `rootfs`.
/// `rootfs` is also where /etc/passwd and /etc/group are read to resolve user names.
pub fn generate(
    image: Option<&oci_spec::image::Config>,
    p: &ContainerParams,
    rootfs: &Path,
) -> Result<Spec, OciError> {
    let mut spec = Spec::default();
    // On the host's UTS namespace the node's hostname stays (runc refuses to set one there).
    spec.set_hostname(if p.hostname.is_empty() || p.host_network {
        None
    } else {
        Some(p.hostname.clone())
    });
    let mut root = Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(p.readonly_rootfs));
    spec.set_root(Some(root));
    spec.set_process(Some(process(image, p, rootfs)?));
    spec.set_mounts(Some(mounts(p)?));
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_namespaces(Some(namespaces(p)));
    linux.set_resources(Some(resources(p)?));
    linux.set_cgroups_path(p.cgroups_path.clone());
    linux.set_seccomp(seccomp_section(p)?);
    if p.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests;

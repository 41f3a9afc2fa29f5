//! OCI runtime spec (`config.json`) generation from an image config and a container request.
//!
//! The input is a plain [`SpecInput`] (no CRI types) so this module is pure logic, testable
//! without root; the container manager fills it from the CRI `ContainerConfig` and the sandbox.

mod defaults;
mod process;
mod user;

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder,
    Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

pub use defaults::{DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
pub use process::{merge_argv, merge_cwd, merge_env, DEFAULT_PATH};
pub use user::{resolve_user, ResolvedUser, UserRequest};

/// Errors while building a runtime spec.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Neither the request nor the image gives a command.
    #[error("no command specified")]
    NoCommand,
    /// A user name not present in the image's /etc/passwd.
    #[error("unable to find user {0} in the image's /etc/passwd")]
    UnknownUser(String),
    /// A group name not present in the image's /etc/group.
    #[error("unable to find group {0} in the image's /etc/group")]
    UnknownGroup(String),
    /// A capability name the runtime does not know.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// Reading a file of the rootfs failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// oci-spec rejected a value.
    #[error("building the runtime spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Path inside the container.
    pub container_path: PathBuf,
    /// Path on the host.
    pub host_path: PathBuf,
    /// Mount read-only.
    pub readonly: bool,
}

/// Files and namespaces shared with the pod sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxShare {
    /// Path of the sandbox's network namespace (pinned by a bind mount); `None` = host network.
    pub netns_path: Option<PathBuf>,
    /// Host file bind-mounted at /etc/hostname.
    pub hostname_path: Option<PathBuf>,
    /// Host file bind-mounted at /etc/hosts.
    pub hosts_path: Option<PathBuf>,
    /// Host file bind-mounted at /etc/resolv.conf.
    pub resolv_conf_path: Option<PathBuf>,
    /// The pod hostname (set in the UTS namespace).
    pub hostname: String,
}

/// Resource limits; `None` / 0 means unlimited (the CRI convention).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu.shares (v1) weight.
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period.
    pub cpu_quota: Option<i64>,
    /// CFS period in µs.
    pub cpu_period: Option<u64>,
    /// Memory limit in bytes.
    pub memory_limit_bytes: Option<i64>,
    /// Maximum number of pids.
    pub pids_limit: Option<i64>,
}

/// Security settings of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// All capabilities, no masked/readonly paths, writable /sys.
    pub privileged: bool,
    /// Mount the rootfs read-only.
    pub readonly_rootfs: bool,
    /// Set no_new_privs (CRI default true in berth).
    pub no_new_privs: bool,
    /// Capability names to add (`CAP_X` or `X`; `ALL` allowed).
    pub add_capabilities: Vec<String>,
    /// Capability names to drop (`CAP_X` or `X`; `ALL` allowed).
    pub drop_capabilities: Vec<String>,
    /// Replaces the default masked paths when `Some`.
    pub masked_paths: Option<Vec<String>>,
    /// Replaces the default read-only paths when `Some`.
    pub readonly_paths: Option<Vec<String>>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            privileged: false,
            readonly_rootfs: false,
            no_new_privs: true,
            add_capabilities: Vec::new(),
            drop_capabilities: Vec::new(),
            masked_paths: None,
            readonly_paths: None,
        }
    }
}

/// Everything needed to generate a container's runtime spec.
#[derive(Debug, Clone, Default)]
pub struct SpecInput {
    /// Root filesystem directory (the overlay mount point), used for the spec root and for
    /// resolving user names.
    pub rootfs: PathBuf,
    /// CRI `command` (replaces the image Entrypoint).
    pub command: Vec<String>,
    /// CRI `args` (replace the image Cmd).
    pub args: Vec<String>,
    /// CRI `working_dir`, empty = image default.
    pub working_dir: String,
    /// CRI `envs`, in order.
    pub envs: Vec<(String, String)>,
    /// User selection.
    pub user: UserRequest,
    /// Allocate a terminal.
    pub tty: bool,
    /// CRI mounts.
    pub mounts: Vec<BindMount>,
    /// What is shared with the sandbox.
    pub sandbox: SandboxShare,
    /// Limits.
    pub resources: Resources,
    /// Security settings.
    pub security: Security,
    /// `linux.cgroupsPath` (for runc's cgroupfs driver: a path like `/berth/<id>`).
    pub cgroups_path: String,
}

/// Builds the runtime spec for `input` on top of the image config.
pub fn build_spec(image: &ImageConfiguration, input: &SpecInput) -> Result<Spec, OciError> {
    let cfg = image.config().clone().unwrap_or_default();
    let argv = merge_argv(
        cfg.entrypoint().as_deref().unwrap_or_default(),
        cfg.cmd().as_deref().unwrap_or_default(),
        &input.command,
        &input.args,
    )?;
    let user = resolve_user(&input.rootfs, cfg.user().as_deref(), &input.user)?;
    let caps = capabilities(&input.security)?;
    let caps = caps.into_iter().collect::<oci_spec::runtime::Capabilities>();
    let process = ProcessBuilder::default()
        .terminal(input.tty)
        .args(argv)
        .env(merge_env(cfg.env().as_deref().unwrap_or_default(), &input.envs))
        .cwd(merge_cwd(cfg.working_dir().as_deref(), &input.working_dir))
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()?,
        )
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .rlimits(vec![PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).hard(1024u64).soft(1024u64).build()?])
        .no_new_privileges(input.security.no_new_privs && !input.security.privileged)
        .build()?;
    let spec = SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(input.rootfs.clone()).readonly(input.security.readonly_rootfs).build()?)
        .hostname(input.sandbox.hostname.clone())
        .mounts(mounts(input)?)
        .process(process)
        .linux(linux(input)?)
        .build()?;
    Ok(spec)
}

/// The image's stop signal (`SIGTERM` when unset).
pub fn image_stop_signal(image: &ImageConfiguration) -> Option<String> {
    image.config().as_ref().and_then(|c| c.stop_signal().clone()).filter(|s| !s.is_empty())
}

/// The effective capability set: defaults (or all when privileged) minus drops plus adds.
fn capabilities(sec: &Security) -> Result<Vec<Capability>, OciError> {
    let all = || defaults::all_capabilities();
    if sec.privileged {
        return Ok(all());
    }
    let parse = |names: &[String]| -> Result<Vec<Capability>, OciError> {
        let mut out = Vec::new();
        for n in names {
            if n.eq_ignore_ascii_case("ALL") {
                out.extend(all());
            } else {
                out.push(parse_capability(n)?);
            }
        }
        Ok(out)
    };
    let drop = parse(&sec.drop_capabilities)?;
    let add = parse(&sec.add_capabilities)?;
    let mut set: Vec<Capability> = DEFAULT_CAPABILITIES
        .iter()
        .map(|n| parse_capability(n))
        .collect::<Result<_, _>>()?;
    set.retain(|c| !drop.contains(c));
    for c in add {
        if !set.contains(&c) {
            set.push(c);
        }
    }
    Ok(set)
}

/// Parses `CAP_NET_ADMIN` or `NET_ADMIN` (any case).
pub fn parse_capability(name: &str) -> Result<Capability, OciError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>().map_err(|_| OciError::UnknownCapability(name.to_string()))
}

/// Standard mounts, then the sandbox files, then the CRI mounts (later ones win in runc).
fn mounts(input: &SpecInput) -> Result<Vec<Mount>, OciError> {
    let mut out = defaults::standard_mounts(input.security.privileged)?;
    let share = &input.sandbox;
    let files = [
        ("/etc/hostname", &share.hostname_path),
        ("/etc/hosts", &share.hosts_path),
        ("/etc/resolv.conf", &share.resolv_conf_path),
    ];
    for (dest, src) in files {
        // A CRI mount of the same file (kubelet mounts /etc/hosts itself) takes precedence.
        let overridden = input.mounts.iter().any(|m| m.container_path == Path::new(dest));
        if let (Some(src), false) = (src, overridden) {
            out.push(bind(dest.into(), src.clone(), input.security.readonly_rootfs)?);
        }
    }
    for m in &input.mounts {
        out.push(bind(m.container_path.clone(), m.host_path.clone(), m.readonly)?);
    }
    Ok(out)
}

/// A private recursive bind mount.
fn bind(dest: PathBuf, src: PathBuf, readonly: bool) -> Result<Mount, OciError> {
    let mut opts = vec!["rbind".to_string(), "rprivate".to_string()];
    opts.push(if readonly { "ro" } else { "rw" }.to_string());
    Ok(MountBuilder::default().destination(dest).typ("bind").source(src).options(opts).build()?)
}

/// Namespaces, resources, cgroups path, masked and read-only paths.
fn linux(input: &SpecInput) -> Result<oci_spec::runtime::Linux, OciError> {
    let mut namespaces = Vec::new();
    for typ in [LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts, LinuxNamespaceType::Mount] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    if let Some(netns) = &input.sandbox.netns_path {
        namespaces.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).path(netns.clone()).build()?);
    }
    let sec = &input.security;
    let (masked, readonly) = if sec.privileged {
        (Vec::new(), Vec::new())
    } else {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        (
            sec.masked_paths.clone().unwrap_or_else(|| owned(DEFAULT_MASKED_PATHS)),
            sec.readonly_paths.clone().unwrap_or_else(|| owned(DEFAULT_READONLY_PATHS)),
        )
    };
    let mut b = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources(&input.resources)?)
        .masked_paths(masked)
        .readonly_paths(readonly);
    if !input.cgroups_path.is_empty() {
        b = b.cgroups_path(PathBuf::from(&input.cgroups_path));
    }
    Ok(b.build()?)
}

/// cgroup limits; zero values are "unset" as in CRI. All devices denied, runc adds its
/// default allow list (null, zero, full, tty, random, urandom, pts...).
fn resources(r: &Resources) -> Result<oci_spec::runtime::LinuxResources, OciError> {
    let mut b = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?]);
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if let Some(s) = r.cpu_shares.filter(|v| *v > 0) {
        cpu = cpu.shares(s);
        any_cpu = true;
    }
    if let Some(q) = r.cpu_quota.filter(|v| *v > 0) {
        cpu = cpu.quota(q);
        any_cpu = true;
    }
    if let Some(p) = r.cpu_period.filter(|v| *v > 0) {
        cpu = cpu.period(p);
        any_cpu = true;
    }
    if any_cpu {
        b = b.cpu(cpu.build()?);
    }
    if let Some(limit) = r.memory_limit_bytes.filter(|v| *v > 0) {
        b = b.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(limit) = r.pids_limit.filter(|v| *v > 0) {
        b = b.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests;

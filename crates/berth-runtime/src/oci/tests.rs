//! Spec generation tests (pure logic, no root needed).

use super::*;
use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

fn image(user: &str) -> ImageConfiguration {
    let cfg = ConfigBuilder::default()
        .entrypoint(vec!["/bin/server".to_string()])
        .cmd(vec!["--port=80".to_string()])
        .env(vec!["PATH=/bin".to_string(), "MODE=prod".to_string()])
        .working_dir("/srv".to_string())
        .user(user.to_string())
        .stop_signal("SIGQUIT".to_string())
        .build()
        .unwrap();
    ImageConfigurationBuilder::default().config(cfg).build().unwrap()
}

fn input() -> (tempfile::TempDir, SpecInput) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/:/bin/sh\nweb:x:33:33::/:/bin/sh\n").unwrap();
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\nweb:x:33:\n").unwrap();
    let input = SpecInput {
        rootfs: dir.path().to_path_buf(),
        sandbox: SandboxShare {
            netns_path: Some("/run/netns/pod1".into()),
            hostname_path: Some("/sb/hostname".into()),
            hosts_path: Some("/sb/hosts".into()),
            resolv_conf_path: Some("/sb/resolv.conf".into()),
            hostname: "pod1".into(),
        },
        cgroups_path: "/berth/c1".into(),
        ..Default::default()
    };
    (dir, input)
}

fn caps(spec: &Spec) -> Vec<Capability> {
    let mut v: Vec<Capability> =
        spec.process().as_ref().unwrap().capabilities().as_ref().unwrap().bounding().clone().unwrap().into_iter().collect();
    v.sort_by_key(|c| c.to_string());
    v
}

#[test]
fn image_defaults_flow_into_the_process() {
    let (_d, input) = input();
    let spec = build_spec(&image("web"), &input).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &vec!["/bin/server".to_string(), "--port=80".to_string()]);
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!(p.env().as_ref().unwrap(), &vec!["PATH=/bin".to_string(), "MODE=prod".to_string()]);
    assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(spec.hostname().as_deref(), Some("pod1"));
    assert_eq!(image_stop_signal(&image("web")).as_deref(), Some("SIGQUIT"));
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
    assert_eq!(json["linux"]["cgroupsPath"], "/berth/c1");
}

#[test]
fn request_overrides_the_image() {
    let (_d, mut input) = input();
    input.command = vec!["/bin/sh".into()];
    input.args = vec!["-c".into(), "id -u".into()];
    input.working_dir = "/tmp".into();
    input.envs = vec![("MODE".into(), "test".into())];
    input.user.run_as_user = Some(1234);
    let spec = build_spec(&image("web"), &input).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &vec!["/bin/sh".to_string(), "-c".into(), "id -u".into()]);
    assert_eq!(p.cwd(), Path::new("/tmp"));
    assert!(p.env().as_ref().unwrap().contains(&"MODE=test".to_string()));
    assert_eq!((p.user().uid(), p.user().gid()), (1234, 0));
}

#[test]
fn namespaces_join_the_sandbox_network() {
    let (_d, input) = input();
    let spec = build_spec(&image("web"), &input).unwrap();
    let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
    let net = ns.iter().find(|n| n.typ() == LinuxNamespaceType::Network).unwrap();
    assert_eq!(net.path().as_deref(), Some(Path::new("/run/netns/pod1")));
    for t in [LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts, LinuxNamespaceType::Mount] {
        let n = ns.iter().find(|n| n.typ() == t).unwrap();
        assert!(n.path().is_none(), "{t:?} must be a new namespace");
    }
}

#[test]
fn mounts_include_standard_sandbox_and_cri_ones() {
    let (_d, mut input) = input();
    input.mounts = vec![
        BindMount { container_path: "/data".into(), host_path: "/host/data".into(), readonly: true },
        BindMount { container_path: "/etc/hosts".into(), host_path: "/kubelet/hosts".into(), readonly: false },
    ];
    let spec = build_spec(&image("web"), &input).unwrap();
    let mounts = spec.mounts().clone().unwrap();
    let find = |d: &str| mounts.iter().filter(|m| m.destination() == Path::new(d)).collect::<Vec<_>>();
    for d in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"] {
        assert_eq!(find(d).len(), 1, "{d}");
    }
    assert!(find("/sys")[0].options().as_ref().unwrap().contains(&"ro".to_string()));
    assert_eq!(find("/etc/resolv.conf")[0].source().as_deref(), Some(Path::new("/sb/resolv.conf")));
    assert_eq!(find("/etc/hostname")[0].source().as_deref(), Some(Path::new("/sb/hostname")));
    let hosts = find("/etc/hosts");
    assert_eq!(hosts.len(), 1, "the CRI mount replaces the sandbox hosts file");
    assert_eq!(hosts[0].source().as_deref(), Some(Path::new("/kubelet/hosts")));
    let data = find("/data");
    assert!(data[0].options().as_ref().unwrap().contains(&"ro".to_string()));
}

#[test]
fn capabilities_default_drop_add_and_privileged() {
    let (_d, mut input) = input();
    let spec = build_spec(&image("web"), &input).unwrap();
    assert_eq!(caps(&spec).len(), DEFAULT_CAPABILITIES.len());
    assert!(!caps(&spec).contains(&Capability::SysAdmin));
    input.security.drop_capabilities = vec!["NET_RAW".into(), "cap_chown".into()];
    input.security.add_capabilities = vec!["CAP_NET_ADMIN".into()];
    let c = caps(&build_spec(&image("web"), &input).unwrap());
    assert!(!c.contains(&Capability::NetRaw) && !c.contains(&Capability::Chown));
    assert!(c.contains(&Capability::NetAdmin));
    input.security.drop_capabilities = vec!["ALL".into()];
    input.security.add_capabilities = vec!["KILL".into()];
    assert_eq!(caps(&build_spec(&image("web"), &input).unwrap()), vec![Capability::Kill]);
    input.security.add_capabilities = vec!["NOT_A_CAP".into()];
    assert!(matches!(build_spec(&image("web"), &input), Err(OciError::UnknownCapability(_))));
    input.security = Security { privileged: true, ..Default::default() };
    let spec = build_spec(&image("web"), &input).unwrap();
    assert!(caps(&spec).contains(&Capability::SysAdmin));
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
    assert_eq!(spec.process().as_ref().unwrap().no_new_privileges(), Some(false));
}

#[test]
fn masked_readonly_paths_and_readonly_rootfs() {
    let (_d, mut input) = input();
    input.security.readonly_rootfs = true;
    let spec = build_spec(&image("web"), &input).unwrap();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/kcore".to_string()));
    assert!(linux.readonly_paths().as_ref().unwrap().contains(&"/proc/sys".to_string()));
}

#[test]
fn resources_set_only_nonzero_limits() {
    let (_d, mut input) = input();
    let spec = build_spec(&image("web"), &input).unwrap();
    let json = serde_json::to_value(&spec).unwrap();
    assert!(json["linux"]["resources"].get("memory").is_none());
    input.resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit_bytes: Some(64 << 20),
        pids_limit: Some(100),
    };
    let json = serde_json::to_value(build_spec(&image("web"), &input).unwrap()).unwrap();
    let r = &json["linux"]["resources"];
    assert_eq!(r["cpu"]["shares"], 512);
    assert_eq!(r["cpu"]["quota"], 50_000);
    assert_eq!(r["cpu"]["period"], 100_000);
    assert_eq!(r["memory"]["limit"], 64 << 20);
    assert_eq!(r["pids"]["limit"], 100);
    assert_eq!(r["devices"][0]["allow"], false);
}

#[test]
fn missing_command_is_an_error() {
    let (_d, input) = input();
    let empty = ImageConfigurationBuilder::default().build().unwrap();
    assert!(matches!(build_spec(&empty, &input), Err(OciError::NoCommand)));
}

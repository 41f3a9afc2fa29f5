//! Containers are confined by default (root only, as CI runs): a seccomp filter unless
//! `Unconfined` is asked, no ambient capabilities for a non-root user, no mounting; and a pod on
//! the node's network really shares it. The whole test runs in a private network namespace,
//! which stands for the node.
//!
//! This test binary is also the shim (`<this exe> shim ...`).
#![allow(unused_crate_dependencies, clippy::unwrap_used)] // test crate: unwraps allowed; sees every dev-dependency

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use berth_cri::v1 as cri;
use berth_runtime::container::ContainerStore;
use berth_runtime::network::{Cidr, Network, NetworkConfig};
use berth_runtime::oci::{ContainerParams, SeccompProfile};
use berth_runtime::sandbox::SandboxStore;

/// An interface of the "node" (a bridge) that only a container on the node's network can see.
const NODE_LINK: &str = "berthnode0";

struct Fixture {
    tmp: tempfile::TempDir,
    layer: PathBuf,
    store: ContainerStore,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("berth-confine-")
            .tempdir_in("/var/tmp")
            .expect("tmp");
        let layer = tmp.path().join("layer");
        std::fs::create_dir_all(layer.join("bin")).expect("bin");
        std::fs::create_dir_all(layer.join("etc")).expect("etc");
        std::fs::create_dir_all(layer.join("mnt")).expect("mnt");
        std::fs::copy("/bin/busybox", layer.join("bin/busybox")).expect("busybox-static");
        for applet in ["sh", "cat", "grep", "mount", "unshare", "true", "echo"] {
            symlink("busybox", layer.join("bin").join(applet)).expect("applet");
        }
        std::fs::write(
            layer.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        )
        .expect("passwd");
        let exe = std::env::current_exe().expect("exe");
        let store = ContainerStore::open(tmp.path(), exe, "runc".into()).expect("store");
        Fixture { tmp, layer, store }
    }

    /// Runs `script` to its end; returns the exit code and the stdout/stderr lines.
    fn run(&self, id: &str, script: &str, params: ContainerParams) -> (i32, Vec<String>) {
        let params = ContainerParams {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..params
        };
        let log = self.tmp.path().join("logs").join(format!("{id}.log"));
        self.store
            .create(id, std::slice::from_ref(&self.layer), None, params, &log)
            .expect("create");
        self.store.start(id).expect("start");
        let exit = self
            .store
            .wait(id, Duration::from_secs(30))
            .expect("wait")
            .expect("exited");
        let text = std::fs::read_to_string(&log).expect("log");
        // "<ts> <stream> F <line>" -> "<line>"
        let lines = text
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3).map(String::from))
            .collect();
        (exit.exit_code, lines)
    }

    fn cleanup(self) {
        for c in self.store.list().expect("list") {
            self.store.remove(&c.record.id).expect("remove");
        }
    }
}

fn status_field(lines: &[String], field: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{field} missing from {lines:?}"))
}

const STATUS: &str = "grep -E '^(Seccomp|CapAmb|CapEff):' /proc/self/status";

fn seccomp_is_on_unless_unconfined() {
    let f = Fixture::new();
    let (code, lines) = f.run("default", STATUS, ContainerParams::default());
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(status_field(&lines, "Seccomp"), "2");
    let unconfined = ContainerParams {
        seccomp: SeccompProfile::Unconfined,
        ..Default::default()
    };
    let (code, lines) = f.run("unconfined", STATUS, unconfined);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(status_field(&lines, "Seccomp"), "0");
    f.cleanup();
}

fn a_default_container_cannot_mount_or_make_namespaces() {
    let f = Fixture::new();
    let script = "mount -t tmpfs x /mnt && echo mounted; unshare -U true && echo unshared; true";
    let (_, lines) = f.run("default", script, ContainerParams::default());
    assert!(!lines.iter().any(|l| l == "mounted"), "{lines:?}");
    assert!(!lines.iter().any(|l| l == "unshared"), "{lines:?}");
    // The same container without the filter may make a user namespace: the filter refused it.
    let unconfined = ContainerParams {
        seccomp: SeccompProfile::Unconfined,
        ..Default::default()
    };
    let (_, lines) = f.run("unconfined", script, unconfined);
    assert!(lines.iter().any(|l| l == "unshared"), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l == "mounted"),
        "no SYS_ADMIN: {lines:?}"
    );
    f.cleanup();
}

fn a_non_root_container_has_no_ambient_capabilities() {
    let f = Fixture::new();
    let app = ContainerParams {
        run_as_user: Some(1000),
        ..Default::default()
    };
    let (code, lines) = f.run("app", STATUS, app);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(status_field(&lines, "CapAmb"), "0000000000000000");
    assert_eq!(status_field(&lines, "CapEff"), "0000000000000000");
    let asked = ContainerParams {
        run_as_user: Some(1000),
        add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
        ..Default::default()
    };
    let (_, lines) = f.run("asked", STATUS, asked);
    // CAP_NET_BIND_SERVICE is capability 10.
    assert_eq!(status_field(&lines, "CapAmb"), "0000000000000400");
    f.cleanup();
}

fn a_host_network_sandbox_shares_the_node_network() {
    let f = Fixture::new();
    let network = Network::open(
        &f.tmp.path().join("net"),
        NetworkConfig {
            bridge: "berthconf0".into(),
            cidr: Cidr::parse_pod_cidr("10.79.0.0/24").expect("cidr"),
        },
    )
    .expect("network");
    let sandboxes = SandboxStore::open(f.tmp.path(), Some(network)).expect("sandboxes");
    let host = cri::PodSandboxConfig {
        hostname: "hostnet".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let info = sandboxes.run("hostnet", host).expect("host sandbox");
    assert!(info.host_network() && info.ip.is_none(), "{info:?}");
    assert!(
        !info.netns_path.exists(),
        "no pod netns on the node's network"
    );
    let pod = sandboxes
        .run("podnet", cri::PodSandboxConfig::default())
        .expect("pod sandbox");
    assert!(pod.ip.is_some() && !pod.host_network());
    let links = "cat /proc/net/dev";
    let on_host = ContainerParams {
        netns_path: Some(info.netns_path.clone()),
        host_network: true,
        ..Default::default()
    };
    let (code, lines) = f.run("host", links, on_host);
    assert_eq!(code, 0, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains(NODE_LINK)), "{lines:?}");
    let in_pod = ContainerParams {
        netns_path: Some(pod.netns_path.clone()),
        ..Default::default()
    };
    let (_, lines) = f.run("pod", links, in_pod);
    assert!(!lines.iter().any(|l| l.contains(NODE_LINK)), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("eth0")), "{lines:?}");
    // The sandboxes live in the fixture's directory (the pod netns is a mount there): remove them
    // before the fixture removes the directory.
    sandboxes.remove("hostnet").expect("remove host sandbox");
    sandboxes.remove("podnet").expect("remove pod sandbox");
    f.cleanup();
}

fn main() {
    berth_testkit::harness::shim_if_asked();
    // The "node" is a private network namespace (still single-threaded here) with a link of its own.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare netns");
    for ip_args in [
        &["link", "set", "lo", "up"][..],
        &["link", "add", NODE_LINK, "type", "bridge"][..],
    ] {
        let ok = Command::new("ip").args(ip_args).status().expect("ip");
        assert!(ok.success(), "ip {ip_args:?}");
    }
    let tests: [(&str, fn()); 4] = [
        (
            "seccomp_is_on_unless_unconfined",
            seccomp_is_on_unless_unconfined,
        ),
        (
            "a_default_container_cannot_mount_or_make_namespaces",
            a_default_container_cannot_mount_or_make_namespaces,
        ),
        (
            "a_non_root_container_has_no_ambient_capabilities",
            a_non_root_container_has_no_ambient_capabilities,
        ),
        (
            "a_host_network_sandbox_shares_the_node_network",
            a_host_network_sandbox_shares_the_node_network,
        ),
    ];
    berth_testkit::harness::run_tests(&tests);
}

//! Spec generation tests (no root needed).

use std::path::Path;

use oci_spec::image::{Config, ConfigBuilder};

use super::*;

fn image(entrypoint: &[&str], cmd: &[&str], user: &str) -> Config {
    ConfigBuilder::default()
        .entrypoint(entrypoint.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .cmd(cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .env(vec![
            "PATH=/bin".to_string(),
            "A=image".to_string(),
            "B=image".to_string(),
        ])
        .working_dir("/srv")
        .user(user)
        .build()
        .expect("config")
}

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(d.path().join("etc")).expect("etc");
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        d.path().join("etc/group"),
        "root:x:0:\napp:x:1000:\nvideo:x:44:app\nstaff:x:50:\n",
    )
    .expect("group");
    d
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn command_and_args_follow_kubernetes_rules() {
    let img = image(&["/entry"], &["cmd", "x"], "");
    assert_eq!(
        argv(Some(&img), &[], &[]).expect("argv"),
        s(&["/entry", "cmd", "x"])
    );
    assert_eq!(
        argv(Some(&img), &[], &s(&["a"])).expect("argv"),
        s(&["/entry", "a"])
    );
    assert_eq!(
        argv(Some(&img), &s(&["/c"]), &[]).expect("argv"),
        s(&["/c"]),
        "command drops CMD"
    );
    assert_eq!(
        argv(Some(&img), &s(&["/c"]), &s(&["a"])).expect("argv"),
        s(&["/c", "a"])
    );
    assert!(matches!(argv(None, &[], &[]), Err(OciError::NoCommand)));
}

#[test]
fn env_merges_with_container_values_winning() {
    let img = image(&["/e"], &[], "");
    let env = environment(
        Some(&img),
        &[("B".into(), "ctr".into()), ("C".into(), "ctr".into())],
    );
    assert_eq!(env, s(&["PATH=/bin", "A=image", "B=ctr", "C=ctr"]));
    assert!(environment(None, &[])[0].starts_with("PATH=/usr/local/sbin"));
}

#[test]
fn users_resolve_against_the_rootfs() {
    let r = rootfs();
    assert_eq!(
        resolve_user(r.path(), "app").expect("app"),
        ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![44]
        }
    );
    assert_eq!(
        resolve_user(r.path(), "1000:staff").expect("uid:group").gid,
        50
    );
    assert_eq!(resolve_user(r.path(), "4242").expect("numeric").uid, 4242);
    assert_eq!(
        resolve_user(r.path(), "").expect("root"),
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![]
        }
    );
    assert!(matches!(
        resolve_user(r.path(), "nobody-here"),
        Err(OciError::UnknownUser(_))
    ));
}

#[test]
fn full_spec_from_image_and_container_settings() {
    let r = rootfs();
    let img = image(&["/bin/sh", "-c"], &["echo hi"], "app");
    let params = ContainerParams {
        args: s(&["id -u"]),
        envs: vec![("X".into(), "1".into())],
        run_as_group: Some(50),
        supplemental_groups: vec![7],
        netns_path: Some("/run/netns/pod".into()),
        hostname: "pod-a".into(),
        etc_files: vec![("/sb/hosts".into(), "/etc/hosts")],
        mounts: vec![BindMount {
            host_path: "/data".into(),
            container_path: "/data".into(),
            readonly: true,
        }],
        resources: Resources {
            memory_limit: Some(64 << 20),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            pids_limit: Some(100),
            ..Default::default()
        },
        cgroups_path: Some("/berth/ctr1".into()),
        drop_capabilities: s(&["NET_RAW"]),
        add_capabilities: s(&["CAP_NET_ADMIN"]),
        readonly_rootfs: true,
        ..Default::default()
    };
    let spec = generate(Some(&img), &params, r.path()).expect("spec");
    let json = serde_json::to_value(&spec).expect("json");
    let process = &json["process"];
    assert_eq!(
        process["args"],
        serde_json::json!(["/bin/sh", "-c", "id -u"])
    );
    assert_eq!(process["cwd"], "/srv");
    assert_eq!(process["user"]["uid"], 1000);
    assert_eq!(process["user"]["gid"], 50);
    assert_eq!(
        process["user"]["additionalGids"],
        serde_json::json!([44, 7])
    );
    assert_eq!(process["noNewPrivileges"], true);
    assert!(process.get("rlimits").is_none());
    let caps: Vec<&str> = process["capabilities"]["bounding"]
        .as_array()
        .expect("caps")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        caps.contains(&"CAP_NET_ADMIN")
            && caps.contains(&"CAP_CHOWN")
            && !caps.contains(&"CAP_NET_RAW")
    );
    assert!(!caps.contains(&"CAP_SYS_ADMIN"));
    assert_eq!(json["hostname"], "pod-a");
    assert_eq!(json["root"]["readonly"], true);
    assert_eq!(
        Path::new(json["root"]["path"].as_str().expect("root")),
        r.path()
    );
    let netns = json["linux"]["namespaces"]
        .as_array()
        .expect("ns")
        .iter()
        .find(|n| n["type"] == "network")
        .cloned()
        .expect("netns");
    assert_eq!(netns["path"], "/run/netns/pod");
    assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
    assert_eq!(json["linux"]["resources"]["pids"]["limit"], 100);
    assert_eq!(json["linux"]["cgroupsPath"], "/berth/ctr1");
    let mounts = json["mounts"].as_array().expect("mounts");
    let dest = |d: &str| mounts.iter().find(|m| m["destination"] == d).cloned();
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        assert!(dest(d).is_some(), "missing mount {d}");
    }
    assert_eq!(dest("/etc/hosts").expect("hosts")["source"], "/sb/hosts");
    assert!(
        dest("/data").expect("data")["options"]
            .as_array()
            .expect("opts")
            .contains(&serde_json::json!("ro"))
    );
    assert!(
        !json["linux"]["maskedPaths"]
            .as_array()
            .expect("masked")
            .is_empty()
    );
}

#[test]
fn privileged_gets_every_capability_and_no_masks() {
    let r = rootfs();
    let params = ContainerParams {
        command: s(&["/bin/true"]),
        privileged: true,
        ..Default::default()
    };
    let json =
        serde_json::to_value(generate(None, &params, r.path()).expect("spec")).expect("json");
    let caps = json["process"]["capabilities"]["bounding"]
        .as_array()
        .expect("caps");
    assert_eq!(caps.len(), ALL_CAPABILITIES.len());
    assert_eq!(json["process"]["noNewPrivileges"], false);
    assert!(json["linux"].get("maskedPaths").is_none());
    assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], true);
}

#[test]
fn non_root_gets_no_ambient_capabilities_unless_asked() {
    let r = rootfs();
    let mut params = ContainerParams {
        command: s(&["/bin/true"]),
        run_as_user: Some(1000),
        ..Default::default()
    };
    let json =
        serde_json::to_value(generate(None, &params, r.path()).expect("spec")).expect("json");
    let caps = &json["process"]["capabilities"];
    assert_eq!(caps["ambient"], serde_json::json!([]));
    assert_eq!(caps["inheritable"], serde_json::json!([]));
    assert!(!caps["bounding"].as_array().expect("bounding").is_empty());
    params.add_ambient_capabilities = s(&["NET_BIND_SERVICE"]);
    let json =
        serde_json::to_value(generate(None, &params, r.path()).expect("spec")).expect("json");
    let caps = &json["process"]["capabilities"];
    assert_eq!(caps["ambient"], serde_json::json!(["CAP_NET_BIND_SERVICE"]));
    assert_eq!(
        caps["inheritable"],
        serde_json::json!(["CAP_NET_BIND_SERVICE"])
    );
}

#[test]
fn seccomp_is_on_by_default_and_off_only_when_asked() {
    let r = rootfs();
    let mut params = ContainerParams {
        command: s(&["/bin/true"]),
        ..Default::default()
    };
    let json =
        serde_json::to_value(generate(None, &params, r.path()).expect("spec")).expect("json");
    assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    let denied = json["linux"]["seccomp"]["syscalls"].to_string();
    assert!(denied.contains("\"mount\"") && denied.contains("\"kexec_load\""));
    params.seccomp = SeccompProfile::Unconfined;
    let json =
        serde_json::to_value(generate(None, &params, r.path()).expect("spec")).expect("json");
    assert!(json["linux"].get("seccomp").is_none());
    params.seccomp = SeccompProfile::Localhost(r.path().join("none.json"));
    assert!(matches!(
        generate(None, &params, r.path()),
        Err(OciError::SeccompProfile { .. })
    ));
}

#[test]
fn host_namespaces_are_shared_by_leaving_them_out() {
    let r = rootfs();
    let kinds = |p: &ContainerParams| -> Vec<String> {
        let json = serde_json::to_value(generate(None, p, r.path()).expect("spec")).expect("json");
        json["linux"]["namespaces"]
            .as_array()
            .expect("ns")
            .iter()
            .map(|n| n["type"].as_str().expect("type").to_string())
            .collect()
    };
    let mut params = ContainerParams {
        command: s(&["/bin/true"]),
        hostname: "pod".into(),
        ..Default::default()
    };
    assert_eq!(
        kinds(&params),
        s(&["pid", "ipc", "uts", "mount", "network"])
    );
    params.host_network = true;
    params.host_pid = true;
    params.host_ipc = true;
    assert_eq!(kinds(&params), s(&["mount"]));
    let json =
        serde_json::to_value(generate(None, &params, r.path()).expect("spec")).expect("json");
    assert!(json.get("hostname").is_none());
}

//! Container lifecycle through the shim and runc (root only, as CI runs): logs in CRI format,
//! users, exit codes, stop with grace then SIGKILL, OOMKilled, restart recovery, clean removal.
//!
//! This test binary is also the shim: the store starts `<this exe> shim ...`, exactly the way
//! the runtime starts `berth shim ...`.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_runtime::container::{ContainerState, ContainerStore};
use berth_runtime::oci::{ContainerParams, Resources};
use berth_runtime::shim;

/// A one-layer busybox image as an unpacked snapshot dir.
fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("bin")).expect("bin");
    std::fs::create_dir_all(layer.join("etc")).expect("etc");
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).expect("busybox-static installed");
    for applet in ["sh", "echo", "id", "sleep", "true", "head", "tr", "cat"] {
        symlink("busybox", layer.join("bin").join(applet)).expect("applet");
    }
    std::fs::write(
        layer.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(layer.join("etc/group"), "root:x:0:\napp:x:1000:\n").expect("group");
    layer
}

fn sh(script: &str) -> ContainerParams {
    ContainerParams {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    layer: PathBuf,
    store: ContainerStore,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("berth-ctr-")
            .tempdir_in("/var/tmp")
            .expect("tmp");
        let layer = busybox_layer(tmp.path());
        let store = open_store(tmp.path());
        Fixture { tmp, layer, store }
    }

    fn log(&self, id: &str) -> PathBuf {
        self.tmp.path().join("logs").join(format!("{id}.log"))
    }

    fn run(&self, id: &str, params: ContainerParams) {
        self.store
            .create(
                id,
                std::slice::from_ref(&self.layer),
                None,
                params,
                &self.log(id),
            )
            .expect("create");
        self.store.start(id).expect("start");
    }

    /// Removes everything and checks nothing of ours is still mounted.
    fn cleanup(self) {
        let mut cgroups = Vec::new();
        for c in self.store.list().expect("list") {
            self.store.remove(&c.record.id).expect("remove");
            cgroups.push(c.record.cgroup_path);
        }
        for cg in cgroups {
            let rel = cg.trim_start_matches('/');
            for ctl in ["memory", "pids", "cpu,cpuacct", "unified"] {
                let dir = Path::new("/sys/fs/cgroup").join(ctl).join(rel);
                assert!(!dir.exists(), "leftover cgroup {dir:?}");
                assert!(
                    !dir.parent().expect("parent").exists(),
                    "leftover parent cgroup of {dir:?}"
                );
            }
        }
        assert!(self.store.list().expect("list").is_empty());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(
            !mounts.contains(self.tmp.path().to_str().expect("utf8")),
            "leftover mounts"
        );
    }
}

fn open_store(root: &Path) -> ContainerStore {
    let exe = std::env::current_exe().expect("exe");
    ContainerStore::open(root, exe, "runc".into()).expect("store")
}

fn log_records(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("log");
    // Drop the timestamp: "<ts> stdout F hello" -> "stdout F hello".
    text.lines()
        .map(|l| l.split_once(' ').expect("record").1.to_string())
        .collect()
}

fn exit_code_user_and_logs() {
    let f = Fixture::new();
    let mut p = sh("echo hello; echo oops >&2; id -u; exit 3");
    p.run_as_username = Some("app".into());
    f.run("logs", p);
    let exit = f
        .store
        .wait("logs", Duration::from_secs(30))
        .expect("wait")
        .expect("exited");
    assert_eq!((exit.exit_code, exit.reason.as_str()), (3, "Error"));
    let records = log_records(&f.log("logs"));
    for want in ["stdout F hello", "stderr F oops", "stdout F 1000"] {
        assert!(
            records.iter().any(|r| r == want),
            "{want} missing from {records:?}"
        );
    }
    f.run("ok", sh("true"));
    let exit = f
        .store
        .wait("ok", Duration::from_secs(30))
        .expect("wait")
        .expect("exited");
    assert_eq!((exit.exit_code, exit.reason.as_str()), (0, "Completed"));
    f.cleanup();
}

fn stop_with_grace_then_kill() {
    let f = Fixture::new();
    f.run(
        "polite",
        sh("trap 'exit 7' TERM; while true; do sleep 0.1; done"),
    );
    f.run(
        "stubborn",
        sh("trap '' TERM; while true; do sleep 0.1; done"),
    );
    // Let both shells install their traps before signalling.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        f.store.status("polite").expect("status").state(),
        ContainerState::Running
    );
    assert_eq!(
        f.store
            .stop("polite", Duration::from_secs(20))
            .expect("stop")
            .exit_code,
        7
    );
    assert_eq!(
        f.store
            .stop("stubborn", Duration::from_secs(1))
            .expect("stop")
            .exit_code,
        137
    );
    // Stopping again is a no-op that reports the same exit.
    assert_eq!(
        f.store
            .stop("stubborn", Duration::from_secs(1))
            .expect("stop again")
            .exit_code,
        137
    );
    f.cleanup();
}

fn oom_kill_is_reported() {
    let f = Fixture::new();
    let mut p = sh("x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived");
    p.resources = Resources {
        memory_limit: Some(16 << 20),
        ..Default::default()
    };
    f.run("oom", p);
    let exit = f
        .store
        .wait("oom", Duration::from_secs(60))
        .expect("wait")
        .expect("exited");
    assert_eq!(exit.reason, "OOMKilled", "{exit:?}");
    f.cleanup();
}

fn containers_survive_a_new_store_and_exits_are_recorded() {
    let f = Fixture::new();
    f.run("long", sh("sleep 1000"));
    f.run("short", sh("sleep 1; exit 5"));
    // A fresh store over the same root stands for a restarted runtime.
    let again = open_store(f.tmp.path());
    let ids: Vec<String> = again
        .list()
        .expect("list")
        .into_iter()
        .map(|c| c.record.id)
        .collect();
    assert!(ids.contains(&"long".to_string()) && ids.contains(&"short".to_string()));
    assert_eq!(
        again
            .wait("short", Duration::from_secs(30))
            .expect("wait")
            .expect("exited")
            .exit_code,
        5
    );
    assert_eq!(
        again.status("long").expect("status").state(),
        ContainerState::Running
    );
    let pid = again.status("long").expect("status").record.pid;
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "container process alive"
    );
    f.cleanup();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "container process gone after remove"
    );
}

/// A shim killed with SIGKILL (or gone with a reboot) leaves a container nobody supervises:
/// its status says it exited (255, Unknown) instead of running forever, and it is really gone.
fn a_container_whose_shim_died_is_ended() {
    let f = Fixture::new();
    f.run("orphan", sh("sleep 1000"));
    let pid = f.store.status("orphan").expect("status").record.pid;
    let state = f.store.path("orphan").expect("path").join("state");
    let shim_pid: i32 = std::fs::read_to_string(state.join(shim::SHIM_PID_FILE))
        .expect("shim pid")
        .trim()
        .parse()
        .expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = f.store.status("orphan").expect("status").exit {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reported as exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((exit.exit_code, exit.reason.as_str()), (255, "Unknown"));
    assert_eq!(
        f.store.status("orphan").expect("status").state(),
        ContainerState::Exited
    );
    // Its parent died with the shim: whoever inherits it may leave a zombie for a while.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    assert!(
        matches!(state, None | Some(Some('Z' | 'X'))),
        "the unsupervised container process is killed: {stat}"
    );
    f.cleanup();
}

fn upper_layer_whiteouts_hide_lower_files() {
    let f = Fixture::new();
    // A second layer, unpacked by the snapshot unpacker, deleting /bin/cat and making /etc opaque.
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("bin/.wh.cat", &b""[..]),
        ("etc/.wh..wh..opq", &b""[..]),
        ("etc/motd", &b"upper\n"[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, data).expect("entry");
    }
    let upper = f.tmp.path().join("upper-layer");
    std::fs::create_dir(&upper).expect("upper");
    berth_oci::unpack::unpack_layer(
        &b.into_inner().expect("tar")[..],
        &upper,
        berth_oci::unpack::Mode::Snapshot,
    )
    .expect("unpack");
    let layers = vec![f.layer.clone(), upper];
    let script = "test -e /bin/cat && echo cat-visible; test -e /etc/passwd && echo passwd-visible; echo $(busybox cat /etc/motd)";
    f.store
        .create("wh", &layers, None, sh(script), &f.log("wh"))
        .expect("create");
    f.store.start("wh").expect("start");
    let exit = f
        .store
        .wait("wh", Duration::from_secs(30))
        .expect("wait")
        .expect("exited");
    assert_eq!(exit.exit_code, 0);
    assert_eq!(
        log_records(&f.log("wh")),
        vec!["stdout F upper".to_string()]
    );
    f.cleanup();
}

fn main() {
    berth_testkit::harness::shim_if_asked();
    let tests: [(&str, fn()); 6] = [
        (
            "upper_layer_whiteouts_hide_lower_files",
            upper_layer_whiteouts_hide_lower_files,
        ),
        ("exit_code_user_and_logs", exit_code_user_and_logs),
        ("stop_with_grace_then_kill", stop_with_grace_then_kill),
        ("oom_kill_is_reported", oom_kill_is_reported),
        (
            "containers_survive_a_new_store_and_exits_are_recorded",
            containers_survive_a_new_store_and_exits_are_recorded,
        ),
        (
            "a_container_whose_shim_died_is_ended",
            a_container_whose_shim_died_is_ended,
        ),
    ];
    berth_testkit::harness::run_tests(&tests);
}

//! `berth runtime` and `berth bench runtime` as processes (root, as CI runs). The CRI behaviour
//! itself is covered through the socket by crates/berth-runtime/tests/{cri,containers}.rs.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_e2e::runtime::{TestRuntime, in_private_netns};

#[test]
fn runtime_serves_a_socket_and_removes_it_on_sigterm() {
    let mut rt = TestRuntime::start().expect("start berth runtime");
    assert!(rt.root().join("sandboxes").is_dir() && rt.root().join("containers").is_dir());
    let status = rt.terminate().expect("terminate");
    assert!(status.success(), "exit {status}:\n{}", rt.log());
    assert!(!rt.socket().exists(), "socket removed on shutdown");
}

#[test]
fn runtime_rejects_a_bad_pod_cidr() {
    let out = std::process::Command::new(berth_e2e::berth_bin())
        .args([
            "runtime",
            "--listen",
            "unix:///nonexistent/cri.sock",
            "--pod-cidr",
            "10.0.0.0/40",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pod-cidr"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_runtime_runs_containers_through_the_cri_socket() {
    let cmd = format!(
        "{} bench runtime --iterations 2",
        berth_e2e::berth_bin().display()
    );
    let out = in_private_netns(&cmd).output().expect("bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in ["berth CRI socket", "runc run", "ratio berth/runc"] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

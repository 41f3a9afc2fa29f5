//! Logs and exec end to end, as a user runs them: `berth server` as a node (agent, runtime,
//! registry), a ModelService of busybox Pods, then `berth logs` / `kubectl logs` (tail,
//! timestamps, follow until the container ends, previous after a restart, ms/NAME) and
//! `berth exec` / `kubectl exec` (output, stdin, terminals, exit codes) through the API server's pods/log and
//! pods/exec and the agent's node endpoint. Needs root (CI runs as root).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_e2e::node::push_busybox;
use berth_e2e::server::TestServer;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::json;

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(120);

/// Prints two lines, waits for /dev/shm/stop (created through exec), says so and exits 1 (so the
/// container restarts and its first instance becomes `--previous`).
const SCRIPT: &str = "echo hello from $(hostname); echo second line; \
    while [ ! -e /dev/shm/stop ]; do sleep 0.2; done; echo stopping; exit 1";

fn output(what: &str, cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn stdout_ok(what: &str, cmd: &mut Command) -> String {
    let out = output(what, cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` on a fresh pseudo-terminal under script(1), typing `input` into it; returns what
/// the terminal showed, with the command's exit status (`script -e`).
fn on_a_terminal(cmd: &Command, input: &str) -> Output {
    use std::io::Write;
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let line: Vec<String> = std::iter::once(quote(cmd.get_program()))
        .chain(cmd.get_args().map(quote))
        .collect();
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let mut child = script.spawn().expect("script(1) from util-linux");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("typing");
    child.wait_with_output().expect("script")
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

fn running(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

/// Polls the Pods of ModelService `ms` until `ok` holds for them, or panics with the server log.
async fn wait_pods(
    s: &TestServer,
    pods: &Api<Pod>,
    ms: &str,
    what: &str,
    ok: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lp = ListParams::default().labels(&format!("berth.dev/modelservice={ms}"));
        let mut list: Vec<Pod> = pods
            .list(&lp)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        list.sort_by_key(|p| p.name_any());
        if ok(&list) {
            return list;
        }
        let log = s.log();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; server log tail:\n{}",
            tail.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `berth logs -f POD` in the background: its lines arrive on the channel; the child is returned
/// for its exit status.
fn follow(s: &TestServer, pod: &str) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = s
        .berth()
        .args(["logs", "-f", pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("berth logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

#[tokio::test]
async fn logs_and_exec_through_berth_and_kubectl() {
    let s = TestServer::start_node(&[]).await.unwrap();
    let client = s.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let image = push_busybox(s.data_dir(), s.registry_port().unwrap()).unwrap();
    let ms = json!({
        "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
        "metadata": {"name": "chatty", "namespace": NS},
        "spec": {"image": image, "replicas": 2, "command": ["sh", "-c", SCRIPT]}
    });
    let manifest = s.data_dir().join("chatty.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&ms).unwrap()).unwrap();
    stdout_ok(
        "berth apply",
        s.berth().args(["apply", "-f"]).arg(&manifest),
    );
    let list = wait_pods(&s, &pods, "chatty", "2 running Pods", |l| {
        l.len() == 2 && l.iter().all(running)
    })
    .await;
    let (a, b) = (list[0].name_any(), list[1].name_any());

    // Logs: whole, tail, timestamps, with berth and kubectl.
    let deadline = Instant::now() + WAIT;
    let whole = loop {
        let out = stdout_ok("berth logs", s.berth().args(["logs", &a]));
        if out.contains("second line") || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lines: Vec<&str> = whole.lines().collect();
    assert_eq!(lines.len(), 2, "{whole:?}");
    assert!(lines[0].starts_with("hello from "), "{whole:?}");
    assert_eq!(lines[1], "second line");
    assert_eq!(
        stdout_ok(
            "berth logs --tail",
            s.berth().args(["logs", &a, "--tail", "1"])
        ),
        "second line\n"
    );
    assert_eq!(
        stdout_ok(
            "kubectl logs --tail",
            s.kubectl().args(["logs", &a, "--tail=1"])
        ),
        "second line\n"
    );
    let stamped = stdout_ok(
        "kubectl logs --timestamps",
        s.kubectl().args(["logs", &a, "--timestamps", "--tail=1"]),
    );
    let (time, text) = stamped.split_once(' ').expect("timestamp prefix");
    // RFC 3339, e.g. 2026-11-23T03:30:00.123456789Z.
    let looks_like_time =
        time.len() >= 20 && time.as_bytes()[4] == b'-' && time.as_bytes()[10] == b'T';
    assert!(looks_like_time, "{stamped:?}");
    assert_eq!(text, "second line\n");
    let both = stdout_ok("berth logs ms/", s.berth().args(["logs", "ms/chatty"]));
    for pod in [&a, &b] {
        assert!(both.contains(&format!("[{pod}] second line\n")), "{both:?}");
    }

    // Exec: output, stdin, exit codes.
    assert_eq!(
        stdout_ok(
            "berth exec",
            s.berth().args(["exec", &a, "--", "echo", "hi"])
        ),
        "hi\n"
    );
    let code = output(
        "berth exec exit",
        s.berth().args(["exec", &a, "--", "sh", "-c", "exit 3"]),
    );
    assert_eq!(code.status.code(), Some(3), "{code:?}");
    // -t: the command runs on a terminal in the container, which shows its stderr too (and
    // ends lines with CR LF), even when berth's own stdin is not a terminal.
    assert_eq!(
        stdout_ok(
            "berth exec -t",
            s.berth().args([
                "exec",
                "-t",
                &a,
                "--",
                "sh",
                "-c",
                "test -t 0 && echo on-a-tty; echo e >&2"
            ])
        ),
        "on-a-tty\r\ne\r\n"
    );
    // -it from a real terminal (script(1) gives berth and kubectl one): an interactive shell on
    // the container's terminal, driven by what is typed; its exit code comes back.
    for (what, mut cmd) in [
        ("berth exec -it", s.berth()),
        ("kubectl exec -it", s.kubectl()),
    ] {
        cmd.args(["exec", "-it", &a, "--", "sh"]);
        let out = on_a_terminal(&cmd, "tty; echo $((6*7)); exit 4\n");
        let screen = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(4), "{what}: {out:?}");
        assert!(screen.contains("/dev/pts/"), "{what}: {screen:?}");
        assert!(screen.contains("42\r\n"), "{what}: {screen:?}");
    }
    let mut cat = s
        .berth()
        .args(["exec", "-i", &a, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("berth exec -i");
    {
        use std::io::Write;
        let mut stdin = cat.stdin.take().expect("stdin");
        stdin.write_all(b"piped through\n").expect("write stdin");
    }
    let cat = cat.wait_with_output().expect("berth exec -i");
    assert_eq!(
        (
            cat.status.code(),
            String::from_utf8_lossy(&cat.stdout).as_ref()
        ),
        (Some(0), "piped through\n")
    );
    let mut kcat = s
        .kubectl()
        .args(["exec", "-i", &b, "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl exec -i");
    {
        use std::io::Write;
        let mut stdin = kcat.stdin.take().expect("stdin");
        stdin.write_all(b"through kubectl\n").expect("write stdin");
    }
    let kcat = kcat.wait_with_output().expect("kubectl exec -i");
    assert_eq!(
        (
            kcat.status.code(),
            String::from_utf8_lossy(&kcat.stdout).as_ref()
        ),
        (Some(0), "through kubectl\n"),
        "{kcat:?}"
    );
    let k = output(
        "kubectl exec",
        s.kubectl().args([
            "exec",
            &b,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 5",
        ]),
    );
    assert_eq!(k.status.code(), Some(5), "{k:?}");
    assert_eq!(String::from_utf8_lossy(&k.stdout), "out\n");
    assert!(String::from_utf8_lossy(&k.stderr).contains("err"), "{k:?}");

    // Follow: `berth logs -f` streams until the container ends (made to end through exec).
    let (mut child, rx) = follow(&s, &a);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == "second line") {
        seen.push(rx.recv_timeout(WAIT).expect("followed lines in time"));
    }
    stdout_ok(
        "kubectl exec stop",
        s.kubectl()
            .args(["exec", &a, "--", "sh", "-c", "echo > /dev/shm/stop"]),
    );
    while let Ok(line) = rx.recv_timeout(WAIT) {
        seen.push(line);
    }
    assert_eq!(
        seen.last().map(String::as_str),
        Some("stopping"),
        "{seen:?}"
    );
    assert!(child.wait().expect("berth logs -f exits").success());

    // The restarted container: its first instance is --previous, the new one logs anew.
    wait_pods(&s, &pods, "chatty", "a restart", |l| {
        l.iter()
            .any(|p| p.name_any() == a && restarts(p) >= 1 && running(p))
    })
    .await;
    let previous = stdout_ok(
        "berth logs --previous",
        s.berth().args(["logs", &a, "--previous"]),
    );
    assert!(
        previous.ends_with("second line\nstopping\n"),
        "{previous:?}"
    );
    assert_eq!(
        stdout_ok(
            "kubectl logs --previous",
            s.kubectl().args(["logs", &a, "--previous", "--tail=1"])
        ),
        "stopping\n"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let current = stdout_ok("berth logs", s.berth().args(["logs", &a]));
        if current.ends_with("second line\n") {
            assert!(!current.contains("stopping"), "{current:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{current:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Kubernetes' errors: an unknown container, an unknown Pod.
    let bad = output(
        "kubectl logs -c",
        s.kubectl().args(["logs", &a, "-c", "nope"]),
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains(&format!("container nope is not valid for pod {a}")),
        "{bad:?}"
    );
    let missing = output(
        "berth logs missing",
        s.berth().args(["logs", "no-such-pod"]),
    );
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{missing:?}"
    );
}

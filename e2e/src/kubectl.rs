//! kubectl against a [`TestServer`]: run it, assert it succeeded or failed, and write the
//! manifests it reads.

use std::path::Path;
use std::process::Output;

use crate::server::TestServer;

/// Runs `kubectl ARGS` against `server`; returns its output whatever the exit status.
pub fn run(server: &TestServer, args: &[&str]) -> Output {
    server.kubectl().args(args).output().expect("run kubectl")
}

/// Runs kubectl, asserting success (with the server's log on failure); returns stdout.
pub fn ok(server: &TestServer, args: &[&str]) -> String {
    let out = run(server, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs kubectl, asserting failure; returns stderr.
pub fn fails(server: &TestServer, args: &[&str]) -> String {
    let out = run(server, args);
    assert!(
        !out.status.success(),
        "kubectl {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes the manifest `content` to `dir/name`; returns its path for `-f`.
pub fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write manifest");
    p.to_string_lossy().into_owned()
}

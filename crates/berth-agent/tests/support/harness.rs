//! `main` of the `harness = false` test binaries (core_pods, probe_exec, server_logs_exec): each
//! runs one root-only scenario against a real runtime, and is also that runtime's shim.

use std::path::Path;

/// Runs the single scenario `name` of a `harness = false` test binary, as libtest would:
/// - `<this exe> shim ...` (the runtime starting this binary as its shim, see
///   [`super::cri::runtime_config`]) runs the shim instead and exits;
/// - a filter argument (`cargo test -p berth-agent <filter>`) that `name` does not contain runs
///   nothing;
/// - with `RUST_LOG` set, logs go to stderr (debugging a failure);
/// - else `scenario` runs on a new tokio runtime with a fresh directory under /var/tmp (named
///   `<prefix>...`), removed before a failure exits the process (which skips destructors).
pub fn main(name: &str, prefix: &str, scenario: impl AsyncFnOnce(&Path)) {
    berth_testkit::harness::shim_if_asked();
    if let Some(filter) = berth_testkit::harness::filter()
        && !name.contains(filter.as_str())
    {
        println!("running 0 tests");
        return;
    }
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(scenario(tmp.path()))
    }));
    drop(rt);
    let _ = tmp.close();
    println!(
        "test {name} ... {}",
        if result.is_ok() { "ok" } else { "FAILED" }
    );
    if result.is_err() {
        std::process::exit(1);
    }
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// Ends a scenario after its teardown: re-raises the panic of its checks (`result`, as
/// `catch_unwind` gave it), else asserts that nothing stays mounted under `tmp`.
pub fn conclude(result: std::thread::Result<()>, tmp: &Path) {
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    super::assert_no_leftover_mounts(tmp);
}

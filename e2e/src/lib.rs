//! Helpers for end-to-end tests: locating the `berth` binary and running it as a user would.

use std::path::PathBuf;

/// The `berth` binary under test: `$BERTH_BIN`, else `target/<profile>/berth` beside the test
/// executable (cargo puts test executables in `target/<profile>/deps/`).
pub fn berth_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("berth");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p berth` first (or set BERTH_BIN)",
        bin.display()
    );
    bin
}

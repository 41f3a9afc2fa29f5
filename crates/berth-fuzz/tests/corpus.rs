//! Replays every seed of `fuzz/corpus/<target>/` and every past crash of
//! `fuzz/regressions/<target>/` through its fuzz target, so `cargo test` catches a regression
//! without cargo-fuzz or a fuzzing run.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use berth_fuzz::{TARGETS, Target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir/<target>/`, sorted (none if the folder is absent).
fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The inputs among `files` that make `run` panic.
fn panicking(run: Target, files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            let data = std::fs::read(f).unwrap();
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn every_seed_and_past_crash_runs_without_panicking() {
    let mut failed = Vec::new();
    for (name, run) in TARGETS {
        let seeds = inputs(&fuzz_dir().join("corpus"), name);
        assert!(!seeds.is_empty(), "fuzz/corpus/{name}/ has no seeds");
        failed.extend(panicking(*run, &seeds));
        failed.extend(panicking(
            *run,
            &inputs(&fuzz_dir().join("regressions"), name),
        ));
    }
    assert!(failed.is_empty(), "inputs that panic: {failed:#?}");
}

#[test]
fn every_corpus_folder_and_fuzz_target_file_names_a_target() {
    let known: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir)) else {
            continue;
        };
        for e in entries {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(
                known.contains(&name.as_str()),
                "fuzz/{dir}/{name} is no target"
            );
        }
    }
    for name in &known {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}

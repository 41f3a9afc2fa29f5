//! `berth bench image` runs end to end on a small image and prints both tools' figures.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::process::{Command, Stdio};

use berth_e2e::berth_bin;

#[test]
fn bench_image_prints_berth_and_skopeo_throughput() {
    let out = Command::new(berth_bin())
        .args(["bench", "image", "--size-mb", "4", "--layers", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("berth MB/s") && stdout.contains("skopeo MB/s"),
        "{stdout}"
    );
    for row in ["push", "pull"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} row:\n{stdout}"));
        let figures: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|w| w.trim_end_matches('x').parse().unwrap())
            .collect();
        assert_eq!(figures.len(), 3, "{line}");
        assert!(figures.iter().all(|f| f.is_finite() && *f > 0.0), "{line}");
    }
}

//! `main` pieces of the `harness = false` test binaries. Those binaries run root-only scenarios
//! (often in a private network namespace, entered while the process is still single-threaded) and
//! double as the runtime's shim, so they cannot use libtest; these helpers keep them behaving as
//! libtest would from `cargo test`.

use berth_runtime::shim;

/// When the runtime started this binary as its shim (`<exe> shim ...`), runs the shim and exits;
/// otherwise returns at once. Call first in `main`.
pub fn shim_if_asked() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("shim") {
        return;
    }
    let code = match shim::ShimConfig::from_args(args[2..].iter().cloned()) {
        Ok(cfg) if shim::run(&cfg).is_ok() => 0,
        _ => 1,
    };
    std::process::exit(code);
}

/// The name filter `cargo test -- FILTER` passed, if any (the first argument not a flag).
pub fn filter() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

/// Runs each test whose name contains the filter, printing libtest's lines; exits with 1 after
/// the last one when any failed.
pub fn run_tests(tests: &[(&str, fn())]) {
    let filter = filter();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!("test result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured");
    if failed > 0 {
        std::process::exit(1);
    }
}

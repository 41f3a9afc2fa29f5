//! churn-model: the demo model server berth deploys. Logistic regression over a few customer
//! features, served over HTTP/1.1 with health, readiness and Prometheus metrics, linked
//! statically so it runs in a `FROM scratch` image.
//!
//! Environment: `MODEL_PATH` (weights JSON, default /app/models/churn.json), `PORT` (default
//! 8000), `LOG_LEVEL` (error/warn/info/debug, default info). `--healthcheck` probes a running
//! server on `PORT` and exits 0 when it is healthy.
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod app;
mod healthcheck;
mod http;
mod log;
mod metrics;
mod model;
mod server;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: churn-model [--healthcheck]
  env MODEL_PATH (default /app/models/churn.json), PORT (default 8000), LOG_LEVEL (default info)";

fn main() -> ExitCode {
    let port = match env_or("PORT", "8000").parse::<u16>() {
        Ok(p) => p,
        Err(_) => return fail("PORT must be a port number"),
    };
    match std::env::args().nth(1).as_deref() {
        None => serve(port),
        Some("--healthcheck") => match healthcheck::probe(port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => fail(&format!("unknown argument {other:?}\n{USAGE}")),
    }
}

fn serve(port: u16) -> ExitCode {
    match env_or("LOG_LEVEL", "info").parse() {
        Ok(level) => log::set_level(level),
        Err(e) => return fail(&e.to_string()),
    }
    let model_path = PathBuf::from(env_or("MODEL_PATH", "/app/models/churn.json"));
    match server::run(server::Config { port, model_path }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::event(log::Level::Error, "server failed", &[("error", &e)]);
            ExitCode::FAILURE
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("churn-model: {msg}");
    ExitCode::FAILURE
}

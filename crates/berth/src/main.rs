//! `berth`: one binary for every role (server, agent, registry, runtime, shim, client, images, bench).
//!
//! `main` stays synchronous on purpose: `berth shim` must start its container while the process is
//! still single-threaded (it forks the OCI runtime, runc or crun), so no tokio runtime exists before a subcommand asks
//! for one through [`rt::block_on`].
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod client;
mod cmd;
mod rt;

use clap::{Parser, Subcommand};

/// berth: a declarative orchestrator for ML model services.
#[derive(Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info` or `berth_apiserver=debug` (also BERTH_LOG).
    #[arg(long, global = true, env = "BERTH_LOG", default_value = "info")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: API server, controllers, registry and (unless disabled) a local agent.
    Server(cmd::server::Args),
    /// Apply a configuration to resources by file name or stdin (server-side apply).
    Apply(cmd::apply::Args),
    /// Display one or many resources.
    Get(cmd::get::Args),
    /// Show details of a resource or group of resources.
    Describe(cmd::describe::Args),
    /// Delete resources by file names, stdin, or kind and names.
    Delete(cmd::delete::Args),
    /// Set a new size for a ModelService.
    Scale(cmd::scale::Args),
    /// Print the ModelService CustomResourceDefinition as YAML.
    Crd(cmd::crd::Args),
    /// Build an image from a Dockerfile.
    Build(cmd::image::BuildArgs),
    /// Push an image to a registry.
    Push(cmd::image::PushArgs),
    /// Pull an image from a registry.
    Pull(cmd::image::PullArgs),
    /// List local images.
    Images(cmd::image::ImagesArgs),
    /// Create a tag TARGET that refers to SOURCE.
    Tag(cmd::image::TagArgs),
    /// Remove local images.
    Rmi(cmd::image::RmiArgs),
    /// Log in to a registry.
    Login(cmd::image::LoginArgs),
    /// Run the OCI distribution registry on its own.
    Registry(cmd::registry::Args),
    /// Run the CRI runtime on its own.
    Runtime(cmd::runtime::Args),
    /// Run a node agent: register this machine as a Node and run the Pods bound to it.
    Agent(cmd::agent::Args),
    /// Manage join tokens (`berth token create [--ttl 24h] | list | delete ID`).
    Token(cmd::token::Args),
    /// Start everything on this machine, build and run the churn-model example, and wait.
    Up(cmd::up::Args),
    /// Stop what `berth up` started and remove its containers, namespaces, bridges and mounts.
    Down(cmd::down::Args),
    /// Print a container's logs (`berth logs POD|ms/NAME`).
    Logs(cmd::logs::Args),
    /// Run a command in a container (`berth exec POD -- CMD`).
    Exec(cmd::exec::Args),
    /// Follow rollouts of ModelServices (`berth rollout status ms/NAME`).
    Rollout(cmd::rollout::Args),
    /// Per-container supervisor (started by the runtime).
    #[command(hide = true)]
    Shim(cmd::shim::Args),
    /// Runs the OCI runtime with its view of cgroups (started by the runtime).
    #[command(hide = true, name = "oci-runtime")]
    OciRuntime(cmd::shim::OciArgs),
    /// Benchmarks that compare berth with a peer measured in the same run.
    Bench(cmd::bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The shim logs to its own file; everything else logs to stderr.
    if !matches!(cli.command, Command::Shim(_) | Command::OciRuntime(_)) {
        // `berth up` keeps the terminal for progress and results (unless --verbose).
        let log_file = match &cli.command {
            Command::Up(a) => cmd::up::log_file(a),
            _ => None,
        };
        init_tracing(&cli.log_level, log_file.as_deref());
    }
    let result = match cli.command {
        Command::Server(a) => cmd::server::run(a),
        Command::Apply(a) => cmd::apply::run(a),
        Command::Get(a) => cmd::get::run(a),
        Command::Describe(a) => cmd::describe::run(a),
        Command::Delete(a) => cmd::delete::run(a),
        Command::Scale(a) => cmd::scale::run(a),
        Command::Crd(a) => cmd::crd::run(a),
        Command::Build(a) => cmd::image::build(a),
        Command::Push(a) => cmd::image::push(a),
        Command::Pull(a) => cmd::image::pull(a),
        Command::Images(a) => cmd::image::images(a),
        Command::Tag(a) => cmd::image::tag(a),
        Command::Rmi(a) => cmd::image::rmi(a),
        Command::Login(a) => cmd::image::login(a),
        Command::Registry(a) => cmd::registry::run(a),
        Command::Runtime(a) => cmd::runtime::run(a),
        Command::Agent(a) => cmd::agent::run(a),
        Command::Token(a) => cmd::token::run(a),
        Command::Up(a) => cmd::up::run(a),
        Command::Down(a) => cmd::down::run(a),
        Command::Logs(a) => cmd::logs::run(a),
        Command::Exec(a) => cmd::exec::run(a),
        Command::Rollout(a) => cmd::rollout::run(a),
        Command::Shim(a) => cmd::shim::run(a),
        Command::OciRuntime(a) => cmd::shim::oci_runtime(a),
        Command::Bench(a) => cmd::bench::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, or appends to `file` (falling back to stderr if it cannot be opened).
fn init_tracing(filter: &str, file: Option<&std::path::Path>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file.and_then(open_log) {
        Some(f) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}

/// Opens `path` for appending, creating its directory.
fn open_log(path: &std::path::Path) -> Option<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok()?;
    }
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .ok()
}

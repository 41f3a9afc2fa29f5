//! `berth bench`: the benchmarks live in `berth-bench`; this lends them what only the binary has,
//! an in-process `berth server` and the daemon's stop signals.

use clap::Parser as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;

use crate::cmd::server;

pub use berth_bench::Args;

/// Runs `berth bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    berth_bench::run(args, &Binary)
}

/// The binary as the benchmarks' [`berth_bench::Host`].
struct Binary;

impl berth_bench::Host for Binary {
    fn start_server(
        &self,
        argv: Vec<String>,
    ) -> BoxFuture<'_, anyhow::Result<berth_bench::StartedServer>> {
        async move {
            let running = server::start(parse_server_args(&argv)?).await?;
            Ok(berth_bench::StartedServer {
                kubeconfig: running.kubeconfig.clone(),
                registry: running.registry,
                data_dir: running.data_dir.clone(),
                stop: running.stop().boxed(),
            })
        }
        .boxed()
    }

    fn shutdown_signal(&self) -> BoxFuture<'static, ()> {
        crate::rt::shutdown_signal().boxed()
    }
}

/// `berth server ARGS...` parsed by the server's own clap definition.
fn parse_server_args(argv: &[String]) -> anyhow::Result<server::Args> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        server: server::Args,
    }
    Ok(Cli::try_parse_from(argv)?.server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_server_flags_parse_and_avoid_the_defaults() {
        let argv = berth_bench::pods::server_argv(
            std::path::Path::new("/var/tmp/x"),
            "bbp00001",
            "10.170.0.0/16",
            "runc",
        )
        .unwrap();
        let a = parse_server_args(&argv).unwrap();
        assert_eq!(a.node.runtime.runtime.bridge, "bbp00001");
        assert_ne!(a.registry.registry_port, 5000);
        assert_ne!(a.api_port, 6443);
    }
}

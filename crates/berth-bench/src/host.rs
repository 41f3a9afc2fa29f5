//! What the benchmarks borrow from the `berth` binary: an in-process `berth server` (its flags and
//! assembly live in the binary) and the signals that ask berth to stop.

use std::net::SocketAddr;
use std::path::PathBuf;

use futures::future::BoxFuture;

/// The `berth` binary's side of `berth bench pods`.
pub trait Host: Sync {
    /// Starts `berth server` in this process with `argv` (the words after `berth`, starting with
    /// `server`), parsed by the server's own flag definitions; returns once every part listens.
    fn start_server(&self, argv: Vec<String>) -> BoxFuture<'_, anyhow::Result<StartedServer>>;

    /// Resolves when the user asks berth to stop (Ctrl-C or SIGTERM).
    fn shutdown_signal(&self) -> BoxFuture<'static, ()>;
}

/// A `berth server` started by [`Host::start_server`].
pub struct StartedServer {
    /// The admin kubeconfig it wrote.
    pub kubeconfig: PathBuf,
    /// The registry's address, if it runs.
    pub registry: Option<SocketAddr>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Stops everything the server started when awaited.
    pub stop: BoxFuture<'static, ()>,
}

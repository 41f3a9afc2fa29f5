//! The launcher's errors.

use std::path::PathBuf;

/// Why a cluster did not start or could not be taken down.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spec cannot be launched as given.
    #[error("invalid cluster spec: {0}")]
    Spec(String),
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A command (`ip …`) could not run or failed.
    #[error("{command}: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output or why it did not run.
        message: String,
    },
    /// A daemon could not be started.
    #[error("starting {name}: {source}")]
    Spawn {
        /// The daemon (`server`, a node name).
        name: String,
        /// The failure.
        source: std::io::Error,
    },
    /// `DIR/launch.json` could not be read or written.
    #[error("launch record {path}: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The server or the nodes did not become ready in time.
    #[error("{what} not ready after {secs} s{hint}")]
    NotReady {
        /// What was waited for.
        what: String,
        /// How long.
        secs: u64,
        /// Where to look (a log file), prefixed with `: `, or empty.
        hint: String,
    },
    /// A daemon exited while the launcher waited for it.
    #[error("{name} exited ({status}){hint}")]
    Exited {
        /// The daemon.
        name: String,
        /// Its exit status.
        status: String,
        /// Where to look, prefixed with `: `, or empty.
        hint: String,
    },
    /// The API could not be reached with the server's kubeconfig.
    #[error("talking to the API server: {0}")]
    Api(String),
    /// No node with that index.
    #[error("no node {0} in this cluster")]
    NoNode(usize),
}

/// Maps an io error at `path`.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LaunchError + '_ {
    move |source| LaunchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

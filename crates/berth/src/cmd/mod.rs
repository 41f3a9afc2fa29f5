//! One module per subcommand (or group of closely related subcommands).

pub mod agent;
pub mod apply;
pub mod bench;
pub mod crd;
pub mod delete;
pub mod describe;
pub mod down;
pub mod exec;
pub mod get;
pub mod image;
pub mod logs;
pub mod registry;
pub mod rollout;
pub mod runtime;
pub mod scale;
pub mod server;
pub mod shim;
pub mod token;
pub mod up;

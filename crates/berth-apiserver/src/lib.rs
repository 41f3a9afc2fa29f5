//! `berth-apiserver`: Kubernetes-compatible REST API server for berth.
//!
//! Request flow: [`server`] accepts HTTPS connections and hands every request to the one
//! catch-all [`handler`], which authenticates ([`auth`]), parses the path ([`path`]) and dispatches
//! to discovery/OpenAPI ([`surface`]) or to the REST verbs ([`rest`]). Resources are described by
//! the [`resources`] registry; objects are JSON in a [`berth_store::Store`] ([`object`]).

// Guard-then-act steps read more plainly as nested `if`s than as long let-chains.
#![allow(clippy::collapsible_if)]

pub mod auth;
pub mod crd;
pub mod error;
pub mod extensions;
pub mod gc;
pub mod handler;
pub mod kubeconfig;
pub mod managed;
pub mod object;
pub mod patching;
pub mod path;
pub mod protobuf;
pub mod query;
pub mod resources;
pub mod rest;
pub mod schema;
pub mod selector;
pub mod server;
pub mod state;
pub mod surface;
pub mod tables;
pub mod tls;

pub use server::{Config, Running, ServerError, start};
pub use state::{ApiServer, Options, Validator};

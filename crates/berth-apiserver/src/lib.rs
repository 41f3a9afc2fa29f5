//! `berth-apiserver`: Kubernetes-compatible REST API server for berth.
//!
//! Request flow: [`server`] accepts HTTPS connections and hands every request to the one
//! catch-all [`handler`], which authenticates ([`auth`]), authorizes node credentials
//! ([`nodeauthz`]), reads the body within kube-apiserver's limits ([`body`]: size and nesting),
//! parses the path ([`path`]) and dispatches to discovery/OpenAPI ([`surface`]) or to the REST
//! verbs ([`rest`]). Resources are described by
//! the [`resources`] registry; objects are JSON in a [`berth_store::Store`] ([`object`]).
//!
//! Writes go through [`patch`] (patch formats, server-side apply, managedFields); reads can be
//! Tables ([`table`], CRD columns through [`jsonpath`]); discovery and OpenAPI documents come
//! from [`discovery`] and [`openapi`].
//!
//! Beside them: [`crd`] (serving stored CustomResourceDefinitions), [`schema`] (their structural
//! schemas: pruning, defaults, validation), [`query`] and [`selector`] (list options, label and
//! field selectors), [`protobuf`] (the protobuf bodies kubectl sends for a few core types),
//! [`gc`] (ownerReference garbage collection), [`podsecurity`] (Pod Security admission: the
//! namespace's level decides which Pods are accepted), [`quota`] (ResourceQuota admission and
//! status: creates past a namespace's hard limits are refused), [`eviction`] (pods/eviction,
//! refused with 429 when it would take a ModelService below its rollout's Ready minimum),
//! [`extensions`] and [`nodeproxy`]
//! (subresources served by node agents: pods/log, pods/exec), [`state`] (the server's shared
//! state), [`join`] (how an agent joins: `/cacerts` and `/v1-berth/join`, with [`jointoken`] the
//! token's text, [`tokenstore`] the join tokens kept as Secrets, [`nodecred`] the per-node
//! credentials and [`secretstore`] the server's own Secrets), [`error`] (metav1.Status errors), and [`tls`] and [`kubeconfig`] (the server's
//! certificate files under its data dir, and the admin kubeconfig).
// Unit tests see every dev-dependency.
#![cfg_attr(test, allow(unused_crate_dependencies))]
// Guard-then-act steps read more plainly as nested `if`s than as long let-chains.
#![allow(clippy::collapsible_if)]

pub mod auth;
pub mod body;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod eviction;
pub mod extensions;
pub mod gc;
pub mod handler;
pub mod join;
pub mod jointoken;
pub mod jsonpath;
pub mod kubeconfig;
pub mod nodeauthz;
pub mod nodecred;
pub mod nodeproxy;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod path;
pub mod podsecurity;
pub mod protobuf;
pub mod query;
pub mod quota;
pub mod resources;
pub mod rest;
pub mod schema;
pub mod secretstore;
pub mod selector;
pub mod server;
pub mod state;
pub mod surface;
pub mod table;
pub mod tls;
pub mod tokenstore;

pub use server::{Config, Running, ServerError, start};
pub use state::{ApiServer, Options, Validator};

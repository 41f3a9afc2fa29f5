//! An in-process API server over the in-memory store, and a kube-rs client of it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use berth_apiserver::{Config, Options, Running};
use berth_store::MemStore;

/// Starts an API server over the in-memory store on a free loopback port, its files under
/// `data_dir` (e.g. `server/node-endpoint-key` written before), installing `crds`; returns it and a
/// client from the kubeconfig it wrote.
pub async fn start(data_dir: &Path, crds: Vec<serde_json::Value>) -> (Running, kube::Client) {
    let config = Config {
        data_dir: data_dir.to_path_buf(),
        listen: SocketAddr::new(super::LOCALHOST, 0),
        options: Options::default(),
        install_crds: crds,
        validators: Default::default(),
        tls_sans: Vec::new(),
    };
    let server = berth_apiserver::start(config, Arc::new(MemStore::new()))
        .await
        .expect("API server");
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    (server, kube::Client::try_from(config).expect("client"))
}

//! Waiting for the server (its join token and kubeconfig on disk, the API answering) and for the
//! nodes (Ready), failing early when a daemon exits.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::LaunchError;

/// How often the waits look.
const POLL: Duration = Duration::from_millis(250);

/// Fails if `child` (daemon `name`) has exited.
pub(crate) fn check_alive(child: &mut Child, name: &str, log: &Path) -> Result<(), LaunchError> {
    match child.try_wait() {
        Ok(Some(status)) => Err(LaunchError::Exited {
            name: name.to_string(),
            status: status.to_string(),
            hint: format!(": see {}", log.display()),
        }),
        _ => Ok(()),
    }
}

/// Waits until every file in `paths` exists, the server staying alive.
pub(crate) async fn files(
    paths: &[&Path],
    server: &mut Child,
    log: &Path,
    within: Duration,
) -> Result<(), LaunchError> {
    let deadline = Instant::now() + within;
    while !paths.iter().all(|p| p.exists()) {
        check_alive(server, "berth server", log)?;
        if Instant::now() > deadline {
            return Err(LaunchError::NotReady {
                what: "berth server".into(),
                secs: within.as_secs(),
                hint: format!(": see {}", log.display()),
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// A client with the admin kubeconfig at `path`.
pub(crate) async fn client(path: &Path) -> Result<kube::Client, LaunchError> {
    let api = |e: &dyn std::fmt::Display| LaunchError::Api(format!("{}: {e}", path.display()));
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| api(&e))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| api(&e))?;
    kube::Client::try_from(config).map_err(|e| api(&e))
}

/// Whether Node `node` has condition Ready=True.
pub(crate) fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the Nodes `names` are Ready, calling `check` between looks (it fails when a
/// daemon died).
pub(crate) async fn nodes(
    client: &kube::Client,
    names: &[String],
    within: Duration,
    mut check: impl FnMut() -> Result<(), LaunchError>,
) -> Result<(), LaunchError> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + within;
    loop {
        check()?;
        let ready: Vec<String> = match api.list(&ListParams::default()).await {
            Ok(list) => list
                .items
                .iter()
                .filter(|n| is_ready(n))
                .filter_map(|n| n.metadata.name.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        if names.iter().all(|n| ready.contains(n)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| !ready.contains(n))
                .map(String::as_str)
                .collect();
            return Err(LaunchError::NotReady {
                what: format!("nodes {}", missing.join(", ")),
                secs: within.as_secs(),
                hint: String::new(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every Node in `names` has a pod range (`spec.podCIDR`); returns them in order.
pub(crate) async fn pod_cidrs(
    client: &kube::Client,
    names: &[String],
    within: Duration,
) -> Result<Vec<String>, LaunchError> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + within;
    loop {
        let mut cidrs = Vec::new();
        for name in names {
            let cidr = api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.spec.and_then(|s| s.pod_cidr))
                .filter(|c| !c.is_empty());
            cidrs.extend(cidr);
        }
        if cidrs.len() == names.len() {
            return Ok(cidrs);
        }
        if Instant::now() > deadline {
            return Err(LaunchError::NotReady {
                what: "the nodes' pod ranges (spec.podCIDR)".into(),
                secs: within.as_secs(),
                hint: String::new(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

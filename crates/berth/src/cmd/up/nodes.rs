//! `berth up --nodes N`: a cluster on this machine with the launcher (`berth_launch`): the server
//! plus N nodes, each in its own network namespace on the bridge `bu-up`, then the example spread
//! over them. At Ctrl-C the daemons stop; containers and namespaces stay until `berth down`.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context as _;
use berth_launch::{Cluster, ClusterSpec, Logs};

use super::{Args, example, image, wait};

/// The cluster's tag: names the bridge `bu-up`, namespaces `berth-up-<i>`, nodes `up-n<i>`.
const TAG: &str = "up";

/// Runs the cluster and the example until Ctrl-C / SIGTERM.
pub async fn up(args: Args, source: example::Source) -> anyhow::Result<()> {
    let spec = spec(&args)?;
    let data_dir = spec.data_dir.clone();
    let nodes = spec.nodes;
    eprintln!(
        "berth up: starting a server and {nodes} node(s) (logs in {})",
        data_dir.join("logs").display()
    );
    let cluster = tokio::select! {
        c = Cluster::start(spec) => c.context("starting the cluster")?,
        _ = crate::rt::shutdown_signal() => {
            eprintln!("berth up: interrupted; `berth down --data-dir {}` removes what was made", data_dir.display());
            return Ok(());
        }
    };
    eprintln!(
        "berth up: {nodes} node(s) Ready: {}",
        cluster
            .nodes()
            .iter()
            .map(|n| format!("{} ({})", n.name, n.ip))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let outcome = tokio::select! {
        r = deploy(&cluster, &source, &args) => Some(r),
        _ = crate::rt::shutdown_signal() => None,
    };
    if let Some(Ok(())) = outcome {
        crate::rt::shutdown_signal().await;
    }
    eprintln!(
        "berth up: stopping the daemons (containers and namespaces stay; `berth down --data-dir {}` removes them)",
        data_dir.display()
    );
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .context("stopping the cluster")?;
    outcome.unwrap_or(Ok(()))
}

/// The launch as `berth up`'s flags describe it.
fn spec(args: &Args) -> anyhow::Result<ClusterSpec> {
    let data_dir = args
        .server
        .data_dir
        .clone()
        .unwrap_or_else(crate::cmd::server::default_data_dir);
    Ok(ClusterSpec {
        tag: TAG.to_string(),
        data_dir,
        nodes: args.nodes,
        berth_exe: std::env::current_exe().context("locating the berth binary")?,
        subnet: args.node_subnet,
        cluster_cidr: args.server.node.cluster_cidr,
        api_port: args.server.api_port,
        registry_port: args.server.registry.registry_port,
        server_args: vec![
            "--node-grace-period".into(),
            format!("{}s", args.server.node_grace_period.as_secs()),
        ],
        agent_args: Vec::new(),
        logs: if args.verbose {
            Logs::Inherit
        } else {
            Logs::Files
        },
    })
}

/// Builds and pushes the image, applies the example with two replicas per node (or the
/// manifest's, if more), waits for it and prints its address on every node.
async fn deploy(cluster: &Cluster, source: &example::Source, args: &Args) -> anyhow::Result<()> {
    let registry = cluster.registry();
    // Pushed over loopback (plain HTTP without flags); the nodes pull the same repository by the
    // bridge address.
    let push_ref = format!("127.0.0.1:{}/{}", registry.port(), example::IMAGE_PATH);
    let node_ref = format!("{registry}/{}", example::IMAGE_PATH);
    image::build_static(source).context("step 1/4, building churn-model statically")?;
    image::build_and_push(source, &cluster.data_dir().join("server"), &push_ref)
        .await
        .context("step 2/4, building and pushing the churn-model image")?;
    let client = cluster.client().await?;
    let mut manifest = example::manifest(source, &node_ref, args.service_port)
        .context("step 3/4, reading the example manifest")?;
    let replicas = replicas(&manifest, cluster.nodes().len());
    manifest["spec"]["replicas"] = serde_json::Value::from(replicas);
    let port = example::service_port(&manifest);
    example::apply(&client, &manifest)
        .await
        .context("step 3/4, applying manifests/examples/churn-model.yaml")?;
    wait::until_ready(
        &client,
        example::NAME,
        example::NAMESPACE,
        args.ready_timeout,
    )
    .await
    .context("step 4/4, waiting for churn-model to become ready")?;
    println!("churn-model is ready on every node. Try it:");
    for node in cluster.nodes() {
        println!("  {}", example::curl_line_to(&node.ip.to_string(), port));
    }
    print_usage(cluster.kubeconfig().as_path(), cluster.data_dir());
    Ok(())
}

/// Two replicas per node, or the manifest's count if that is larger.
fn replicas(manifest: &serde_json::Value, nodes: usize) -> u64 {
    let own = manifest["spec"]["replicas"].as_u64().unwrap_or(1);
    own.max(2 * nodes as u64)
}

fn print_usage(kubeconfig: &Path, data_dir: &Path) {
    println!(
        "berth up keeps running until Ctrl-C (KUBECONFIG={}; `berth get pods -o wide` shows the nodes).",
        kubeconfig.display()
    );
    println!(
        "Afterwards `berth down --data-dir {}` removes the containers, namespaces and bridge.",
        data_dir.display()
    );
}

/// Parses the node subnet: an IPv4 CIDR of /8 to /28 (room for the server and a few nodes).
pub fn parse_subnet(s: &str) -> Result<berth_net::Ipv4Cidr, String> {
    let cidr: berth_net::Ipv4Cidr = s.parse().map_err(|e| format!("{e}"))?;
    if !(8..=28).contains(&cidr.prefix()) || cidr.network() == Ipv4Addr::UNSPECIFIED {
        return Err(format!(
            "{s:?}: expected a subnet like 10.99.0.0/24 (prefix 8 to 28)"
        ));
    }
    Ok(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_replicas_per_node_unless_the_manifest_wants_more() {
        let m = serde_json::json!({"spec": {"replicas": 3}});
        assert_eq!(replicas(&m, 3), 6);
        assert_eq!(replicas(&m, 1), 3);
    }

    #[test]
    fn the_node_subnet_must_leave_room() {
        assert!(parse_subnet("10.99.0.0/24").is_ok());
        assert!(parse_subnet("10.99.0.0/30").is_err());
        assert!(parse_subnet("nope").is_err());
    }
}

//! `berth logs`: a container's logs through pods/log, like `kubectl logs`; `ms/NAME` prints the
//! logs of every Pod of a ModelService, each line prefixed with `[pod-name] `.

use anyhow::Context;
use futures::{AsyncBufReadExt, AsyncReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use std::io::Write;

use crate::client::connect::ConnArgs;
use crate::client::errors::explain;

/// Arguments of `berth logs`.
#[derive(clap::Args)]
pub struct Args {
    /// POD (or pod/POD), or ms/NAME for every Pod of a ModelService.
    pub target: String,
    /// Keep streaming new lines until the container ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// The previous (restarted) instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
    /// The container (default: the Pod's default-container annotation, else its first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// What `target` names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Pod(String),
    ModelService(String),
}

fn parse_target(s: &str) -> anyhow::Result<Target> {
    match s.split_once('/') {
        None => Ok(Target::Pod(s.to_string())),
        Some(("pod" | "pods" | "po", name)) if !name.is_empty() => {
            Ok(Target::Pod(name.to_string()))
        }
        Some((
            "ms"
            | "modelservice"
            | "modelservices"
            | "modelservices.berth.dev"
            | "modelservice.berth.dev",
            name,
        )) if !name.is_empty() => Ok(Target::ModelService(name.to_string())),
        Some((kind, _)) => {
            anyhow::bail!("cannot show logs of {kind:?}: use POD, pod/NAME or ms/NAME")
        }
    }
}

/// Runs `berth logs`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(logs(args))?
}

async fn logs(args: Args) -> anyhow::Result<()> {
    let target = parse_target(&args.target)?;
    let conn = args.conn.connect().await?;
    let pods: Api<Pod> = Api::namespaced(conn.client.clone(), &conn.namespace);
    match target {
        Target::Pod(name) => {
            let pod = pods.get(&name).await.map_err(explain)?;
            let lp = params(
                &args,
                crate::client::container::container_of(&pod, args.container.as_deref(), true)?,
            );
            let mut stream = pods.log_stream(&name, &lp).await.map_err(explain)?;
            let mut buf = vec![0u8; 32 * 1024];
            let mut out = std::io::stdout();
            loop {
                let n = stream.read(&mut buf).await.context("reading the log")?;
                if n == 0 {
                    return Ok(());
                }
                out.write_all(&buf[..n])?;
                out.flush()?;
            }
        }
        Target::ModelService(ms) => service_logs(&pods, &ms, &args).await,
    }
}

/// Streams every Pod of the ModelService `ms` (concurrently when following), lines prefixed.
async fn service_logs(pods: &Api<Pod>, ms: &str, args: &Args) -> anyhow::Result<()> {
    let selector = format!("{}={ms}", berth_api::labels::MODELSERVICE_LABEL);
    let mut list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(explain)?
        .items;
    if list.is_empty() {
        anyhow::bail!("no Pods found for ModelService {ms:?}");
    }
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let streams = list.into_iter().map(|pod| async move {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = pod_lines(pods, &pod, &name, args).await {
            eprintln!("[{name}] {e:#}");
            return false;
        }
        true
    });
    // Following runs every stream at once; otherwise one Pod after the other keeps them apart.
    let ok: Vec<bool> = if args.follow {
        futures::future::join_all(streams).await
    } else {
        futures::stream::iter(streams).then(|f| f).collect().await
    };
    if ok.iter().all(|ok| !ok) {
        anyhow::bail!("no logs could be read");
    }
    Ok(())
}

async fn pod_lines(pods: &Api<Pod>, pod: &Pod, name: &str, args: &Args) -> anyhow::Result<()> {
    let lp = params(
        args,
        crate::client::container::container_of(pod, args.container.as_deref(), false)?,
    );
    let stream = pods.log_stream(name, &lp).await.map_err(explain)?;
    let mut lines = stream.lines();
    while let Some(line) = lines.next().await {
        let line = line.context("reading the log")?;
        // One write per line, so concurrent Pods' lines never interleave mid-line.
        let mut out = std::io::stdout().lock();
        writeln!(out, "[{name}] {line}")?;
        out.flush()?;
    }
    Ok(())
}

fn params(args: &Args, container: String) -> LogParams {
    LogParams {
        container: Some(container),
        follow: args.follow,
        previous: args.previous,
        timestamps: args.timestamps,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("web-1").unwrap(), Target::Pod("web-1".into()));
        assert_eq!(
            parse_target("pod/web-1").unwrap(),
            Target::Pod("web-1".into())
        );
        assert_eq!(
            parse_target("ms/churn").unwrap(),
            Target::ModelService("churn".into())
        );
        assert_eq!(
            parse_target("modelservices.berth.dev/churn").unwrap(),
            Target::ModelService("churn".into())
        );
        assert!(parse_target("deploy/x").is_err());
        assert!(parse_target("ms/").is_err());
    }
}

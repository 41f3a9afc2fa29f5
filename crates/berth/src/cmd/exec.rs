//! `berth exec`: a command in a container through pods/exec (WebSocket, like `kubectl exec`):
//! stdin (with `-i`), stdout and stderr relayed; berth exits with the command's exit code.

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncWriteExt;

use crate::client::connect::ConnArgs;
use crate::client::errors::explain;

/// Arguments of `berth exec`.
#[derive(clap::Args)]
pub struct Args {
    /// The Pod (or pod/NAME).
    pub pod: String,
    /// The container (default: the Pod's default-container annotation, else its first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Ask for a terminal, as kubectl's `-t`. berth's runtime has no terminals yet: the command
    /// runs without one and its stderr arrives merged into stdout (as a terminal would show it).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `berth exec`; exits the process with the command's exit code when it is not 0.
pub fn run(args: Args) -> anyhow::Result<()> {
    let code = crate::rt::block_on(exec(args))??;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

async fn exec(args: Args) -> anyhow::Result<i32> {
    let name = args
        .pod
        .strip_prefix("pod/")
        .or_else(|| args.pod.strip_prefix("pods/"))
        .unwrap_or(&args.pod);
    let conn = args.conn.connect().await?;
    let pods: Api<Pod> = Api::namespaced(conn.client.clone(), &conn.namespace);
    let pod = pods.get(name).await.map_err(explain)?;
    if let Some(phase @ ("Succeeded" | "Failed")) =
        pod.status.as_ref().and_then(|s| s.phase.as_deref())
    {
        anyhow::bail!("cannot exec into a container in a completed pod; current phase is {phase}");
    }
    let container = match &args.container {
        Some(c) => c.clone(),
        None => crate::client::container::container_of(&pod, None, true)?,
    };
    let ap = AttachParams {
        container: Some(container),
        stdin: args.stdin,
        stdout: true,
        // kube-rs (like kubectl) sends no separate stderr with a tty.
        stderr: !args.tty,
        tty: args.tty,
        ..Default::default()
    };
    let mut proc = pods
        .exec(name, args.command.clone(), &ap)
        .await
        .map_err(explain)?;
    let status = proc.take_status().context("no exec status channel")?;
    let mut out = proc.stdout().context("no stdout")?;
    let err = proc.stderr();
    if let Some(mut input) = proc.stdin() {
        // Dropping the writer at EOF tells the server stdin is closed.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut input).await;
            let _ = input.shutdown().await;
        });
    }
    let copy_out = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut out, &mut stdout).await?;
        stdout.flush().await
    };
    let copy_err = async {
        let Some(mut err) = err else { return Ok(()) };
        let mut stderr = tokio::io::stderr();
        tokio::io::copy(&mut err, &mut stderr).await?;
        stderr.flush().await
    };
    let (a, b, status) = tokio::join!(copy_out, copy_err, status);
    a.context("writing stdout")?;
    b.context("writing stderr")?;
    let _ = proc.join().await;
    exit_code(status.as_ref())
}

/// The exit code a channel-3 Status carries: none or Success is 0, NonZeroExitCode its code.
fn exit_code(status: Option<&Status>) -> anyhow::Result<i32> {
    let Some(s) = status else { return Ok(0) };
    match (s.reason.as_deref(), s.status.as_deref()) {
        (Some("NonZeroExitCode"), _) => s
            .details
            .iter()
            .flat_map(|d| d.causes.iter().flatten())
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.parse().ok())
            .context("a NonZeroExitCode status without an exit code"),
        (_, Some("Success") | None) => Ok(0),
        (reason, _) => anyhow::bail!(
            "Error from server ({}): {}",
            reason.unwrap_or("Unknown"),
            s.message.as_deref().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_from_status() {
        assert_eq!(exit_code(None).unwrap(), 0);
        let ok: Status =
            serde_json::from_value(serde_json::json!({"status": "Success", "metadata": {}}))
                .unwrap();
        assert_eq!(exit_code(Some(&ok)).unwrap(), 0);
        let three: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode", "message": "command terminated with non-zero exit code: 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}))
        .unwrap();
        assert_eq!(exit_code(Some(&three)).unwrap(), 3);
        let other: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "reason": "InternalError", "message": "boom"}))
        .unwrap();
        assert!(exit_code(Some(&other)).is_err());
    }
}

//! `berth exec`: a command in a container through pods/exec (WebSocket, like `kubectl exec`):
//! stdin (with `-i`), stdout and stderr relayed; berth exits with the command's exit code.
//! With `-t` the command runs on a terminal in the container: the local one is put in raw mode
//! and its size (and every change of it) is sent along.

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncWriteExt;

use crate::client::connect::ConnArgs;
use crate::client::errors::explain;
use crate::client::terminal;

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
    /// Run the command on a terminal, as kubectl's `-t` (its stderr shows on that terminal).
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
    // Restored when this function returns, before the process exits with the code.
    let _raw = args.tty.then(terminal::RawMode::enter).flatten();
    if args.tty
        && let Some(sizes) = proc.terminal_size()
    {
        tokio::spawn(follow_size(sizes));
    }
    let status = proc.take_status().context("no exec status channel")?;
    let mut out = proc.stdout().context("no stdout")?;
    let err = proc.stderr();
    if let Some(mut input) = proc.stdin() {
        let mut typed = read_stdin();
        // Shutting the writer down at EOF tells the server stdin is closed.
        tokio::spawn(async move {
            while let Some(chunk) = typed.recv().await {
                if input.write_all(&chunk).await.is_err() {
                    return;
                }
            }
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

/// Reads stdin on a thread of its own, chunk by chunk, until EOF. Not tokio's stdin: its reads
/// run on the runtime's blocking pool, and a terminal that is never closed would keep the
/// runtime from shutting down after the command ended; this thread simply dies with the process.
fn read_stdin() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Sends the local terminal's size now and after every SIGWINCH.
async fn follow_size(mut sizes: futures::channel::mpsc::Sender<kube::api::TerminalSize>) {
    use futures::SinkExt;
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut changes) = signal(SignalKind::window_change()) else {
        return;
    };
    loop {
        if let Some(size) = terminal::size()
            && sizes.send(size).await.is_err()
        {
            return;
        }
        if changes.recv().await.is_none() {
            return;
        }
    }
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

//! The exec streaming server: CRI Exec returns a one-time URL here; a client upgrades it to a
//! WebSocket speaking the Kubernetes channel protocol (`v5.channel.k8s.io`/`v4.channel.k8s.io`):
//! every binary message starts with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a
//! metav1.Status JSON carrying the exit code), 4 resize; v5 adds 255 = close a channel.
//! With a terminal ([`pty`]) the command's output arrives on stdout only and resizes apply.

pub mod pty;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Channel bytes of the protocol.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// A prepared exec waiting for its client.
pub struct PendingExec {
    /// The `runc exec` command (stdio is set up here).
    pub command: tokio::process::Command,
    /// Whether the client may send stdin.
    pub stdin: bool,
    /// Whether the command runs on a terminal (the command must ask its runtime for one).
    pub tty: bool,
}

/// The streaming server's shared state: one-time tokens to prepared execs.
#[derive(Clone, Default)]
pub struct StreamServer {
    pending: Arc<Mutex<HashMap<String, PendingExec>>>,
    addr: Arc<Mutex<Option<SocketAddr>>>,
}

impl StreamServer {
    /// Binds 127.0.0.1 on a free port and serves in the background (on the current runtime).
    pub async fn start() -> std::io::Result<Self> {
        let server = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        *server
            .addr
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))? = Some(listener.local_addr()?);
        let app = axum::Router::new()
            .route("/exec/{token}", get(upgrade))
            .with_state(server.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "exec streaming server stopped");
            }
        });
        Ok(server)
    }

    /// Registers an exec and returns its one-time URL.
    pub fn register(&self, exec: PendingExec) -> Option<String> {
        let addr = (*self.addr.lock().ok()?)?;
        let token = hex::encode(rand::random::<[u8; 16]>());
        self.pending.lock().ok()?.insert(token.clone(), exec);
        Some(format!("http://{addr}/exec/{token}"))
    }
}

async fn upgrade(
    State(server): State<StreamServer>,
    Path(token): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let exec = server
        .pending
        .lock()
        .ok()
        .and_then(|mut p| p.remove(&token));
    let Some(exec) = exec else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "unknown or used exec token",
        )
            .into_response();
    };
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| run(socket, exec))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

/// The metav1.Status Kubernetes sends on the error channel when an exec ends.
pub fn exit_status_json(code: i32) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    }
    serde_json::json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] },
    })
    .to_string()
}

async fn run(socket: WebSocket, exec: PendingExec) {
    if exec.tty {
        run_tty(socket, exec).await
    } else {
        run_pipes(socket, exec).await
    }
}

/// Sends the end of an exec: its status on the error channel, then a close.
async fn finish(socket: &mut WebSocket, status: &str) {
    let _ = socket.send(frame(ERROR, status.as_bytes())).await;
    let _ = socket.send(Message::Close(None)).await;
}

/// The status sent when the command could not even start.
fn spawn_failure(e: &std::io::Error) -> String {
    serde_json::json!({"metadata": {}, "status": "Failure", "message": e.to_string()}).to_string()
}

/// Exit code of a finished command (255 when it died of a signal or could not be waited for).
fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    status.ok().and_then(|s| s.code()).unwrap_or(255)
}

/// Runs a command on a terminal: stdin and resizes go to the pty master, whatever the terminal
/// shows comes back on stdout until the last slave closes.
async fn run_tty(mut socket: WebSocket, mut exec: PendingExec) {
    let master = pty::attach(&mut exec.command, pty::Size::DEFAULT);
    let spawned = master.and_then(|m| {
        exec.command.kill_on_drop(true);
        Ok((m, exec.command.spawn()?))
    });
    // The command holds the parent's copies of the slave: without dropping it the master
    // would never report the end.
    drop(exec.command);
    let (master, mut child) = match spawned {
        Ok(pair) => pair,
        Err(e) => return finish(&mut socket, &spawn_failure(&e)).await,
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            n = master.read(&mut buf) => match n {
                Ok(n) if n > 0 => if socket.send(frame(STDOUT, &buf[..n])).await.is_err() { break },
                _ => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    STDIN if exec.stdin => { let _ = master.write_all(&data[1..]).await; }
                    RESIZE => if let Some(size) = pty::Size::from_resize_message(&data[1..]) {
                        let _ = master.resize(size);
                    },
                    // A closed stdin on a terminal is the end-of-file character.
                    CLOSE if exec.stdin && data.get(1) == Some(&STDIN) => { let _ = master.write_all(b"\x04").await; }
                    _ => {}
                },
                // The client left: killing the runtime hangs up the container's terminal.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => { let _ = child.start_kill(); break }
                _ => {}
            },
        }
    }
    let code = exit_code(child.wait().await);
    finish(&mut socket, &exit_status_json(code)).await;
}

async fn run_pipes(mut socket: WebSocket, mut exec: PendingExec) {
    use std::process::Stdio;
    exec.command
        .stdin(if exec.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match exec.command.spawn() {
        Ok(c) => c,
        Err(e) => return finish(&mut socket, &spawn_failure(&e)).await,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(16);
    let mut pumps = Vec::new();
    for (channel, reader) in [
        (
            STDOUT,
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ),
        (
            STDERR,
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ),
    ] {
        let Some(mut reader) = reader else { continue };
        let tx = tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 || tx.send(frame(channel, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut stdin = child.stdin.take();
    // Forward output until both streams end, feeding stdin from the client meanwhile.
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(m) => if socket.send(m).await.is_err() { break },
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    STDIN => if let Some(s) = stdin.as_mut() { let _ = s.write_all(&data[1..]).await; },
                    CLOSE if data.get(1) == Some(&STDIN) => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
    drop(stdin);
    let code = exit_code(child.wait().await);
    finish(&mut socket, &exit_status_json(code)).await;
}

//! One probe attempt: the handler of a [`Probe`] against a [`Target`], bounded by the timeout.

use std::time::Duration;

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use super::grpc::GrpcCheck;
use super::http::HttpGet;
use super::{Target, port};

/// The longest command output quoted in a failure message.
const MAX_OUTPUT: usize = 1024;

/// Why an attempt failed; its text is the `Unhealthy` Event's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    /// The probe cannot run at all (no handler, bad port, no pod IP, ...); it fails every time.
    #[error("{0}")]
    Invalid(String),
    /// The attempt did not finish within `timeoutSeconds`.
    #[error("{what}: timed out after {timeout:?}")]
    Timeout {
        /// What was attempted (`Get "http://..."`, `dial tcp ...`, `command [...]`).
        what: String,
        /// The probe's timeout.
        timeout: Duration,
    },
    /// The handler ran and reported failure (status code, refused connection, exit code, ...).
    #[error("{0}")]
    Failed(String),
}

/// A probe's handler, prepared once per probe loop.
#[derive(Debug, Clone)]
pub enum Action {
    /// `httpGet`.
    Http(HttpGet),
    /// `grpc`: the gRPC health check answers `SERVING`.
    Grpc(Box<GrpcCheck>),
    /// `tcpSocket`: connecting succeeds.
    Tcp {
        /// Host name or address.
        host: String,
        /// Resolved port.
        port: u16,
    },
    /// `exec`: exit code 0 succeeds.
    Exec {
        /// The container instance to run in.
        container_id: String,
        /// The command (argv).
        command: Vec<String>,
    },
    /// A probe that cannot run (reported as a failure of every attempt).
    Invalid(String),
}

impl Action {
    /// Prepares `probe`'s handler for `target`; problems become [`Action::Invalid`].
    pub fn new(probe: &Probe, target: &Target, timeout: Duration) -> Self {
        Self::try_new(probe, target, timeout).unwrap_or_else(Action::Invalid)
    }

    fn try_new(probe: &Probe, target: &Target, timeout: Duration) -> Result<Self, String> {
        let host = |explicit: &Option<String>| -> Result<String, String> {
            match (explicit.as_deref().filter(|h| !h.is_empty()), target.pod_ip) {
                (Some(h), _) => Ok(h.to_string()),
                (None, Some(ip)) => Ok(ip.to_string()),
                (None, None) => Err("the pod has no IP yet".to_string()),
            }
        };
        if let Some(http) = &probe.http_get {
            let port = port::resolve(&http.port, &target.ports).map_err(|e| e.to_string())?;
            return HttpGet::new(http, &host(&http.host)?, port, timeout).map(Action::Http);
        }
        if let Some(tcp) = &probe.tcp_socket {
            let port = port::resolve(&tcp.port, &target.ports).map_err(|e| e.to_string())?;
            return Ok(Action::Tcp {
                host: host(&tcp.host)?,
                port,
            });
        }
        if let Some(exec) = &probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err("exec probe has no command".to_string());
            }
            return Ok(Action::Exec {
                container_id: target.container_id.clone(),
                command,
            });
        }
        if let Some(grpc) = &probe.grpc {
            let port =
                port::resolve(&IntOrString::Int(grpc.port), &[]).map_err(|e| e.to_string())?;
            // gRPC probes have no `host`: always the pod IP.
            let service = grpc.service.as_deref();
            return GrpcCheck::new(&host(&None)?, port, service, timeout)
                .map(|check| Action::Grpc(Box::new(check)));
        }
        Err("probe has no handler (httpGet, tcpSocket, exec or grpc)".to_string())
    }

    /// Runs one attempt, never for much longer than `timeout`.
    pub async fn attempt(
        &self,
        cri: &mut berth_cri::CriClient,
        timeout: Duration,
    ) -> Result<(), AttemptError> {
        match self {
            Action::Http(get) => get.attempt(timeout).await,
            Action::Grpc(check) => check.attempt(timeout).await,
            Action::Tcp { host, port } => tcp(host, *port, timeout).await,
            Action::Exec {
                container_id,
                command,
            } => exec(cri, container_id, command, timeout).await,
            Action::Invalid(why) => Err(AttemptError::Invalid(why.clone())),
        }
    }
}

/// `host:port`, bracketing IPv6 literals.
pub(super) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<(), AttemptError> {
    let what = format!("dial tcp {}", host_port(host, port));
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Err(_) => Err(AttemptError::Timeout { what, timeout }),
        Ok(Err(e)) => Err(AttemptError::Failed(format!("{what}: {e}"))),
        // Closed at once: the probe only checks that the port accepts connections.
        Ok(Ok(_stream)) => Ok(()),
    }
}

async fn exec(
    cri: &mut berth_cri::CriClient,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<(), AttemptError> {
    let what = format!("command {command:?}");
    let request = cri::ExecSyncRequest {
        container_id: container_id.to_string(),
        cmd: command.to_vec(),
        // CRI takes whole seconds; 0 would mean "no timeout".
        timeout: i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX),
    };
    // The runtime enforces the timeout; the margin covers a runtime that does not.
    let call = cri.runtime.exec_sync(request);
    let response = match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Err(_) => return Err(AttemptError::Timeout { what, timeout }),
        Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => {
            return Err(AttemptError::Timeout { what, timeout });
        }
        Ok(Err(status)) => {
            return Err(AttemptError::Failed(format!(
                "{what}: {}",
                status.message()
            )));
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    if response.exit_code == 0 {
        return Ok(());
    }
    let output = truncate(&[response.stdout, response.stderr].concat());
    Err(AttemptError::Failed(if output.is_empty() {
        format!("{what} exited with code {}", response.exit_code)
    } else {
        format!("{what} exited with code {}: {output}", response.exit_code)
    }))
}

/// An error with its sources (reqwest's and tonic's own texts rarely say *why*).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// The first [`MAX_OUTPUT`] bytes of `bytes` as text (lossy), trimmed.
pub(super) fn truncate(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT)]);
    let text = text.trim();
    if bytes.len() > MAX_OUTPUT {
        format!("{text}...")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, GRPCAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn target(ip: Option<&str>) -> Target {
        Target {
            pod_ip: ip.map(|i| i.parse().expect("ip")),
            container_id: "c1".into(),
            ports: vec![],
        }
    }

    #[test]
    fn handlers_are_chosen_from_the_probe() {
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                host: None,
                port: IntOrString::Int(80),
            }),
            ..Default::default()
        };
        assert!(matches!(
            Action::new(&tcp, &target(Some("10.0.0.5")), Duration::from_secs(1)),
            Action::Tcp { ref host, port: 80 } if host == "10.0.0.5"
        ));
        let exec = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        assert!(matches!(
            Action::new(&exec, &target(None), Duration::from_secs(1)),
            Action::Exec { ref container_id, .. } if container_id == "c1"
        ));
    }

    #[test]
    fn unusable_probes_are_invalid_with_a_reason() {
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                host: None,
                port: IntOrString::Int(80),
            }),
            ..Default::default()
        };
        let no_ip = Action::new(&tcp, &target(None), Duration::from_secs(1));
        assert!(matches!(no_ip, Action::Invalid(ref why) if why.contains("no IP")));
        let grpc = Probe {
            grpc: Some(GRPCAction {
                port: 0,
                service: None,
            }),
            ..Default::default()
        };
        let grpc = Action::new(&grpc, &target(Some("10.0.0.5")), Duration::from_secs(1));
        assert!(matches!(grpc, Action::Invalid(ref why) if why == "invalid port 0"));
        let empty = Action::new(
            &Probe::default(),
            &target(Some("10.0.0.5")),
            Duration::from_secs(1),
        );
        assert!(matches!(empty, Action::Invalid(_)));
    }

    #[test]
    fn long_output_is_truncated() {
        let long = vec![b'x'; 5000];
        let t = truncate(&long);
        assert_eq!(t.len(), MAX_OUTPUT + 3);
        assert_eq!(truncate(b"  broken\n"), "broken");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("::1", 80), "[::1]:80");
        assert_eq!(host_port("10.0.0.1", 80), "10.0.0.1:80");
    }
}

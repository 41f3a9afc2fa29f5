//! Host ports: a userspace TCP proxy per mapping (listen on hostIP:hostPort, splice each
//! connection to podIP:containerPort). Works without iptables and needs no cleanup beyond
//! dropping the listener; re-established for ready sandboxes when the runtime restarts.
//! [`HostPorts`] keeps each sandbox's listeners so they close with the sandbox.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Mutex;

use berth_cri::v1 as cri;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

/// The open host ports of every sandbox, by sandbox id.
#[derive(Default)]
pub struct HostPorts {
    by_sandbox: Mutex<HashMap<String, Vec<AbortHandle>>>,
}

/// Why a sandbox's host ports could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HostPortError {
    /// A mapping's host address is not valid or its port could not be bound.
    #[error("host port {port}: {source}")]
    Open {
        /// The mapping's host port.
        port: i32,
        /// Why it could not be opened.
        source: io::Error,
    },
    /// The table of open ports was poisoned by a panic elsewhere (the lock's own message).
    #[error("{0}")]
    Poisoned(String),
}

impl HostPorts {
    /// Opens the TCP host ports of `mappings` for sandbox `sandbox_id` at `pod_ip`: all or none
    /// (when one fails, those already opened are closed). Must be called within a tokio runtime.
    pub fn open(
        &self,
        sandbox_id: &str,
        pod_ip: IpAddr,
        mappings: &[cri::PortMapping],
    ) -> Result<(), HostPortError> {
        let rt = Handle::current();
        let mut handles = Vec::new();
        let tcp = mappings
            .iter()
            .filter(|m| m.protocol == cri::Protocol::Tcp as i32 && m.host_port > 0);
        for m in tcp {
            let target = SocketAddr::new(pod_ip, m.container_port as u16);
            let opened = host_addr(&m.host_ip, m.host_port as u16)
                .and_then(|host| forward(&rt, host, target));
            match opened {
                Ok(h) => handles.push(h),
                Err(source) => {
                    handles.iter().for_each(AbortHandle::abort);
                    return Err(HostPortError::Open {
                        port: m.host_port,
                        source,
                    });
                }
            }
        }
        self.by_sandbox
            .lock()
            .map_err(|e| HostPortError::Poisoned(e.to_string()))?
            .insert(sandbox_id.to_string(), handles);
        Ok(())
    }

    /// Closes the host ports of `sandbox_id` (none open is fine).
    pub fn close(&self, sandbox_id: &str) {
        if let Ok(mut ports) = self.by_sandbox.lock() {
            for h in ports.remove(sandbox_id).unwrap_or_default() {
                h.abort();
            }
        }
    }
}

/// Binds `host` now (so a taken port fails the sandbox) and serves it on `rt`, forwarding every
/// connection to `target`. Aborting the returned handle closes the listener.
pub fn forward(rt: &Handle, host: SocketAddr, target: SocketAddr) -> io::Result<AbortHandle> {
    let listener = TcpListener::bind(host)?;
    listener.set_nonblocking(true)?;
    let task = rt.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%host, error = %e, "host port listener");
                return;
            }
        };
        loop {
            let Ok((mut inbound, peer)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                match tokio::net::TcpStream::connect(target).await {
                    Ok(mut outbound) => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, %target, error = %e, "host port target unreachable")
                    }
                }
            });
        }
    });
    Ok(task.abort_handle())
}

/// The listen address of a CRI port mapping (empty host IP = all addresses).
pub fn host_addr(host_ip: &str, host_port: u16) -> io::Result<SocketAddr> {
    let ip: IpAddr = if host_ip.is_empty() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        host_ip.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad host IP {host_ip:?}"),
            )
        })?
    };
    Ok(SocketAddr::new(ip, host_port))
}

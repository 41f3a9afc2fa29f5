//! Host ports: a userspace TCP proxy per mapping (listen on hostIP:hostPort, splice each
//! connection to podIP:containerPort). Works without iptables and needs no cleanup beyond
//! dropping the listener; re-established for ready sandboxes when the runtime restarts.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};

use tokio::runtime::Handle;
use tokio::task::AbortHandle;

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

//! One service port: bind (retrying while the port is taken), accept, forward each connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::backends::{Backends, NO_ENDPOINT_WAIT};

/// How often binding a taken port is retried.
pub const BIND_RETRY: Duration = Duration::from_secs(2);

/// Pause after a failed accept (e.g. out of file descriptors) so the loop doesn't spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Copy buffer per direction: larger than tokio's 8 KiB default so bulk bodies (uploads,
/// batched predictions) move in fewer syscalls; small requests don't fill it.
const BUFFER: usize = 32 << 10;

/// Event reason recorded on a ModelService whose port cannot be bound.
pub const PORT_IN_USE: &str = "PortInUse";

/// Where a listener reports that its port cannot be bound: a warning Event on the ModelService.
#[derive(Clone)]
pub struct EventSink {
    /// The recorder (shared by all listeners).
    pub recorder: Recorder,
    /// The ModelService the Event is about.
    pub regarding: ObjectReference,
}

/// A service port being served. Dropping it closes the port; connections already forwarded keep
/// running until either side closes them.
pub struct ServiceListener {
    /// The port served.
    pub port: u16,
    /// The service's endpoints (updated by the watcher side).
    pub backends: Arc<Backends>,
    task: JoinHandle<()>,
}

impl Drop for ServiceListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServiceListener {
    /// Starts serving `bind:port` for the service called `name` (for logs).
    pub fn start(name: Arc<str>, bind: IpAddr, port: u16, events: EventSink) -> Self {
        let backends = Arc::new(Backends::default());
        let task = tokio::spawn(serve_port(
            name,
            SocketAddr::new(bind, port),
            backends.clone(),
            events,
        ));
        ServiceListener {
            port,
            backends,
            task,
        }
    }
}

/// Binds `addr` (retrying every [`BIND_RETRY`] while that fails), then accepts forever.
async fn serve_port(name: Arc<str>, addr: SocketAddr, backends: Arc<Backends>, events: EventSink) {
    let mut reported = false;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(err) => {
                // Report once per outage; the retries are quiet until it works.
                if !reported {
                    reported = true;
                    tracing::error!(service = %name, %addr, error = %err, "cannot bind the service port; retrying");
                    record_port_in_use(&events, addr, &err).await;
                }
                tokio::time::sleep(BIND_RETRY).await;
            }
        }
    };
    tracing::info!(service = %name, %addr, "serving");
    match serve(listener, backends, name).await {}
}

/// Accepts on `listener` forever, forwarding each connection to one of `backends`; `name` is the
/// service's name in logs.
pub async fn serve(
    listener: TcpListener,
    backends: Arc<Backends>,
    name: Arc<str>,
) -> std::convert::Infallible {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(forward(client, backends.clone(), name.clone()));
            }
            Err(err) => {
                tracing::warn!(service = %name, error = %err, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

async fn record_port_in_use(events: &EventSink, addr: SocketAddr, err: &std::io::Error) {
    let event = Event {
        type_: EventType::Warning,
        reason: PORT_IN_USE.into(),
        note: Some(format!(
            "cannot listen on {addr}: {err}; retrying every {}s",
            BIND_RETRY.as_secs()
        )),
        action: "Listen".into(),
        secondary: None,
    };
    if let Err(e) = events.recorder.publish(&event, &events.regarding).await {
        tracing::warn!(error = %e, "cannot record the PortInUse event");
    }
}

/// Forwards one client connection to an endpoint, bytes both ways, half-closes passed through.
async fn forward(mut client: TcpStream, backends: Arc<Backends>, name: Arc<str>) {
    let counters = &backends.counters;
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    // Small requests and replies: don't let Nagle hold them back.
    let _ = client.set_nodelay(true);
    let mut upstream = match backends.connect(NO_ENDPOINT_WAIT).await {
        Ok(s) => s,
        Err(err) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(service = %name, error = %err, "closing a client connection");
            return;
        }
    };
    counters.active.fetch_add(1, Ordering::Relaxed);
    if let Err(err) =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, BUFFER, BUFFER).await
    {
        // Resets by either side are normal ends of a connection, not proxy failures.
        tracing::debug!(service = %name, error = %err, "connection ended with an error");
    }
    counters.active.fetch_sub(1, Ordering::Relaxed);
}

//! One service's live endpoint set, round-robin selection over it, and connecting with failover.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;

/// How long one connection attempt to an endpoint may take before the next one is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an endpoint that failed a connection attempt is tried only after the others: an
/// unreachable Pod (its node gone) would otherwise cost every few connections a whole
/// [`CONNECT_TIMEOUT`] until its Ready condition catches up.
pub const FAILED_ENDPOINT_PENALTY: Duration = Duration::from_secs(3);

/// How long a client connection waits for a first endpoint when the service has none (startup,
/// a rollout of a single replica) before it is closed.
pub const NO_ENDPOINT_WAIT: Duration = Duration::from_secs(5);

/// Counters of one service, for logs and a future `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client connections accepted.
    pub accepted: AtomicU64,
    /// Client connections currently being forwarded.
    pub active: AtomicU64,
    /// Client connections closed because no endpoint could be reached.
    pub failed: AtomicU64,
    /// Single connection attempts to an endpoint that failed (and were retried elsewhere).
    pub endpoint_errors: AtomicU64,
}

/// The endpoints of one service. Cheap to share: the listener holds one, the watcher side
/// replaces the set through [`Backends::set`].
#[derive(Debug)]
pub struct Backends {
    /// The current set, shared by reference count so a connection takes a snapshot without copying.
    set: watch::Sender<Arc<[SocketAddr]>>,
    next: AtomicUsize,
    penalties: Penalties,
    /// Counters of this service.
    pub counters: Counters,
}

/// Endpoints whose last connection attempt failed, and since when.
#[derive(Debug, Default)]
struct Penalties {
    /// Whether `failed` may be non-empty: the common case (all endpoints fine) skips the lock.
    any: AtomicBool,
    failed: Mutex<Vec<(SocketAddr, Instant)>>,
}

impl Penalties {
    /// Whether `addr` failed within the penalty before `start` (failures after it are this
    /// attempt's own, so that endpoint has been tried already).
    fn penalized_before(&self, addr: SocketAddr, start: Instant) -> bool {
        if !self.any.load(Ordering::Relaxed) {
            return false;
        }
        let Ok(failed) = self.failed.lock() else {
            return false;
        };
        failed.iter().any(|(a, since)| {
            *a == addr && *since < start && since.elapsed() < FAILED_ENDPOINT_PENALTY
        })
    }

    fn failed(&self, addr: SocketAddr) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.retain(|(a, since)| *a != addr && since.elapsed() < FAILED_ENDPOINT_PENALTY);
            failed.push((addr, Instant::now()));
            self.any.store(true, Ordering::Relaxed);
        }
    }

    fn succeeded(&self, addr: SocketAddr) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut failed) = self.failed.lock() {
            failed.retain(|(a, since)| *a != addr && since.elapsed() < FAILED_ENDPOINT_PENALTY);
            self.any.store(!failed.is_empty(), Ordering::Relaxed);
        }
    }
}

/// Why a client connection could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The service had no endpoint within [`NO_ENDPOINT_WAIT`].
    #[error("no ready endpoint")]
    NoEndpoint,
    /// Every endpoint refused or timed out; the last error.
    #[error("no endpoint reachable (last {addr}: {source})")]
    Unreachable {
        /// The endpoint tried last.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
}

impl Default for Backends {
    fn default() -> Self {
        Backends {
            set: watch::Sender::new(Arc::from(Vec::new())),
            next: AtomicUsize::new(0),
            penalties: Penalties::default(),
            counters: Counters::default(),
        }
    }
}

impl Backends {
    /// Replaces the endpoint set (sorted); returns whether it changed. Connections already
    /// forwarded to a removed endpoint are left alone.
    pub fn set(&self, endpoints: Vec<SocketAddr>) -> bool {
        self.set.send_if_modified(|cur| {
            if cur[..] == endpoints[..] {
                return false;
            }
            *cur = Arc::from(endpoints);
            true
        })
    }

    /// The current endpoint set.
    pub fn current(&self) -> Arc<[SocketAddr]> {
        self.set.borrow().clone()
    }

    /// Connects to one endpoint: round-robin, trying the next endpoint when one refuses or times
    /// out (endpoints that failed lately last), and waiting up to `wait` for a first endpoint
    /// when there is none.
    pub async fn connect(&self, wait: Duration) -> Result<TcpStream, ConnectError> {
        let mut set = self.current();
        if set.is_empty() {
            set = self.wait_for_endpoint(wait).await?;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        let now = Instant::now();
        // First pass: endpoints in good standing; second: the ones that failed lately.
        for penalized in [false, true] {
            for i in 0..set.len() {
                let addr = set[(start + i) % set.len()];
                if self.penalties.penalized_before(addr, now) != penalized {
                    continue;
                }
                match connect_one(addr).await {
                    Ok(stream) => {
                        self.penalties.succeeded(addr);
                        return Ok(stream);
                    }
                    Err(source) => {
                        self.counters
                            .endpoint_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%addr, error = %source, "endpoint unreachable, trying the next");
                        self.penalties.failed(addr);
                        last = Some((addr, source));
                    }
                }
            }
        }
        match last {
            Some((addr, source)) => Err(ConnectError::Unreachable { addr, source }),
            None => Err(ConnectError::NoEndpoint),
        }
    }

    async fn wait_for_endpoint(&self, wait: Duration) -> Result<Arc<[SocketAddr]>, ConnectError> {
        let mut rx = self.set.subscribe();
        match tokio::time::timeout(wait, rx.wait_for(|s| !s.is_empty())).await {
            Ok(Ok(set)) => Ok(set.clone()),
            // Timed out, or the service went away (its Backends dropped) while waiting.
            _ => Err(ConnectError::NoEndpoint),
        }
    }
}

/// One connection attempt with [`CONNECT_TIMEOUT`]; TCP_NODELAY on, since requests and replies
/// are small and latency-bound.
async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    #[tokio::test]
    async fn round_robin_visits_every_endpoint() {
        let (l1, a1) = listener().await;
        let (l2, a2) = listener().await;
        let b = Backends::default();
        assert!(b.set(vec![a1, a2]));
        assert!(!b.set(vec![a1, a2]), "an unchanged set is no change");
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(
                b.connect(Duration::ZERO)
                    .await
                    .unwrap()
                    .peer_addr()
                    .unwrap(),
            );
        }
        assert_eq!(seen.iter().filter(|a| **a == a1).count(), 2);
        assert_eq!(seen.iter().filter(|a| **a == a2).count(), 2);
        drop((l1, l2));
    }

    #[tokio::test]
    async fn an_endpoint_that_failed_lately_is_tried_last_and_then_forgiven() {
        let (l1, a1) = listener().await;
        let (closed, a2) = listener().await;
        drop(closed);
        let b = Backends::default();
        b.set(vec![a1, a2]);
        for _ in 0..6 {
            assert_eq!(
                b.connect(Duration::ZERO)
                    .await
                    .unwrap()
                    .peer_addr()
                    .unwrap(),
                a1
            );
        }
        // Tried once, then skipped while the others answer.
        assert_eq!(b.counters.endpoint_errors.load(Ordering::Relaxed), 1);
        // Back up (same address): once the others are gone it is tried, and forgiven.
        let l2 = TcpListener::bind(a2).await.unwrap();
        b.set(vec![a2]);
        assert_eq!(
            b.connect(Duration::ZERO)
                .await
                .unwrap()
                .peer_addr()
                .unwrap(),
            a2
        );
        b.set(vec![a1, a2]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(
                b.connect(Duration::ZERO)
                    .await
                    .unwrap()
                    .peer_addr()
                    .unwrap(),
            );
        }
        assert!(seen.contains(&a1) && seen.contains(&a2));
        drop((l1, l2));
    }

    /// An endpoint that never answers a SYN, as a Pod behind a cut link: a listener with a
    /// backlog of 0 whose queue is full (one connection queued, one more pending) drops further
    /// SYNs silently, so connecting to it hangs as long as the kernel retries (about 2 min)
    /// unless the caller gives up. (A TEST-NET address would do on some machines, but may be
    /// routed, or refused at once, on others.) The listener and the held connections must be
    /// kept alive while it is used.
    async fn blackhole() -> (TcpListener, Vec<tokio::task::JoinHandle<()>>, SocketAddr) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let l = socket.listen(0).unwrap();
        let addr = l.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(tokio::spawn(async move {
                if let Ok(s) = TcpStream::connect(addr).await {
                    std::future::pending::<()>().await;
                    drop(s);
                }
            }));
        }
        // Let the queue fill before anyone relies on it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        (l, held, addr)
    }

    #[tokio::test]
    async fn an_endpoint_that_does_not_answer_is_skipped_after_the_connect_timeout() {
        let (_hole, held, dead) = blackhole().await;
        // The hole really hangs (this is what a client without a timeout would sit in).
        let hung = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(dead)).await;
        assert!(hung.is_err(), "the blackhole answered: {hung:?}");
        let (good, a) = listener().await;
        let b = Backends::default();
        b.set(vec![dead, a]);
        // Every connection reaches the good endpoint, the one that meets the hole after
        // CONNECT_TIMEOUT, far below the kernel's two minutes; the hole is then tried last.
        let started = Instant::now();
        for _ in 0..4 {
            let s = b.connect(Duration::ZERO).await.unwrap();
            assert_eq!(s.peer_addr().unwrap(), a);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(b.counters.endpoint_errors.load(Ordering::Relaxed), 1);
        for h in held {
            h.abort();
        }
        drop(good);
    }

    #[tokio::test]
    async fn all_endpoints_down_is_an_error() {
        let (closed, a) = listener().await;
        drop(closed);
        let b = Backends::default();
        b.set(vec![a]);
        assert!(matches!(
            b.connect(Duration::ZERO).await,
            Err(ConnectError::Unreachable { .. })
        ));
    }

    #[tokio::test]
    async fn without_endpoints_a_connection_waits_for_one() {
        let (l, a) = listener().await;
        let b = Arc::new(Backends::default());
        assert!(matches!(
            b.connect(Duration::ZERO).await,
            Err(ConnectError::NoEndpoint)
        ));
        let waiting = tokio::spawn({
            let b = b.clone();
            async move {
                b.connect(Duration::from_secs(30))
                    .await
                    .map(|s| s.peer_addr().unwrap())
            }
        });
        tokio::task::yield_now().await;
        b.set(vec![a]);
        assert_eq!(waiting.await.unwrap().unwrap(), a);
        drop(l);
    }
}

//! The proxy's data path against direct connections, on loopback: a small HTTP/1.1 exchange over
//! a new connection per request (what `curl` does), over one kept-alive connection, and a bulk
//! upload. Every exchange is checked; the figures are printed, not asserted:
//! `cargo test -p berth-agent --test proxy_bench -- --nocapture`.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_agent::proxy::{Backends, listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
const NEW_CONNECTIONS: usize = 500;
const KEEP_ALIVE_REQUESTS: usize = 2000;
const BULK_BYTES: usize = 64 << 20;

/// Answers every request on a connection with [`RESPONSE`] until the client closes; a connection
/// starting with `PUT` is instead drained and answered with the byte count (8 bytes, big endian).
async fn backend() -> SocketAddr {
    let (listener, addr) = support::listen().await;
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            conn.set_nodelay(true).unwrap();
            tokio::spawn(serve(conn));
        }
    });
    addr
}

async fn serve(mut conn: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    let mut pending = Vec::new();
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if pending.is_empty() && buf.starts_with(b"PUT") {
            let mut total = n as u64;
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(_) => return,
                }
            }
            let _ = conn.write_all(&total.to_be_bytes()).await;
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        // Requests are fixed-size here, so whole ones are counted by length.
        while pending.len() >= REQUEST.len() {
            assert_eq!(&pending[..REQUEST.len()], REQUEST);
            pending.drain(..REQUEST.len());
            if conn.write_all(RESPONSE).await.is_err() {
                return;
            }
        }
    }
}

/// The proxy's data path for one service whose only endpoint is `backend`, on a free port.
async fn proxy_to(backend: SocketAddr) -> SocketAddr {
    let (listener, addr) = support::listen().await;
    let backends = Arc::new(Backends::default());
    backends.set(vec![backend]);
    tokio::spawn(listener::serve(listener, backends, Arc::from("bench")));
    addr
}

async fn exchange(conn: &mut TcpStream) {
    let mut reply = [0u8; RESPONSE.len()];
    conn.write_all(REQUEST).await.unwrap();
    conn.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply[..], RESPONSE);
}

async fn new_connection_requests(addr: SocketAddr) -> Vec<Duration> {
    let mut times = Vec::with_capacity(NEW_CONNECTIONS);
    for _ in 0..NEW_CONNECTIONS {
        let start = Instant::now();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.set_nodelay(true).unwrap();
        exchange(&mut conn).await;
        times.push(start.elapsed());
    }
    times
}

async fn keep_alive_requests(addr: SocketAddr) -> Vec<Duration> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let mut times = Vec::with_capacity(KEEP_ALIVE_REQUESTS);
    for _ in 0..KEEP_ALIVE_REQUESTS {
        let start = Instant::now();
        exchange(&mut conn).await;
        times.push(start.elapsed());
    }
    times
}

/// Uploads [`BULK_BYTES`], half-closes, and checks the count the backend saw; returns MiB/s.
async fn bulk_upload(addr: SocketAddr) -> f64 {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![7u8; 256 << 10];
    let start = Instant::now();
    conn.write_all(b"PUT").await.unwrap();
    let mut sent = 3;
    while sent < BULK_BYTES {
        let n = chunk.len().min(BULK_BYTES - sent);
        conn.write_all(&chunk[..n]).await.unwrap();
        sent += n;
    }
    conn.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    conn.read_exact(&mut count).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(
        u64::from_be_bytes(count),
        BULK_BYTES as u64,
        "every byte arrived through the half-closed connection"
    );
    BULK_BYTES as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort_unstable();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_micros();
    let mean = times.iter().sum::<Duration>().as_micros() / times.len() as u128;
    format!(
        "mean {mean:>5} us  p50 {:>5} us  p99 {:>5} us",
        pick(0.5),
        pick(0.99)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_requests_through_the_proxy_against_direct_ones() {
    let backend = backend().await;
    let proxy = proxy_to(backend).await;
    for (label, addr) in [("direct", backend), ("proxy", proxy)] {
        println!(
            "{label:>6}  new connection per request ({NEW_CONNECTIONS}): {}",
            summary(new_connection_requests(addr).await)
        );
        println!(
            "{label:>6}  kept-alive requests ({KEEP_ALIVE_REQUESTS}):       {}",
            summary(keep_alive_requests(addr).await)
        );
        println!(
            "{label:>6}  bulk upload ({} MiB):                {:.0} MiB/s",
            BULK_BYTES >> 20,
            bulk_upload(addr).await
        );
    }
}

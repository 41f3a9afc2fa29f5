//! A TCP relay that plays a network link the test can cut: while cut, nothing passes and new
//! connections wait; connections from before a cut stay dead for good (they neither pass bytes
//! nor close, as a peer's connection behind a cut cable whose server has moved on), so only
//! connections made after the link is restored work.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The link's state, shared by the relay's tasks.
#[derive(Default)]
struct Link {
    cut: AtomicBool,
    /// Bumped by each cut; a connection of an older generation is dead.
    generation: AtomicU64,
}

impl Link {
    /// Waits until the link is up for a connection of `generation`; never returns for a dead one.
    async fn passable(&self, generation: u64) {
        while self.cut.load(Ordering::SeqCst)
            || self.generation.load(Ordering::SeqCst) != generation
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A relay on a free loopback port.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    link: Arc<Link>,
}

impl Relay {
    /// Starts relaying to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let (listener, addr) = super::listen().await;
        let link = Arc::new(Link::default());
        let shared = link.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let link = shared.clone();
                tokio::spawn(async move {
                    // A connection attempted while cut belongs to the link as it comes back.
                    while link.cut.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    let generation = link.generation.load(Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, link.clone(), generation));
                    pump(sr, cw, link, generation).await;
                });
            }
        });
        Relay { addr, link }
    }

    /// Cuts the link: every connection made so far is dead from now on.
    pub fn cut(&self) {
        self.link.generation.fetch_add(1, Ordering::SeqCst);
        self.link.cut.store(true, Ordering::SeqCst);
    }

    /// Restores the link for new connections.
    pub fn restore(&self) {
        self.link.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies one direction while the link passes this connection's generation.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Arc<Link>, generation: u64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        link.passable(generation).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    link.passable(generation).await;
    let _ = to.shutdown().await;
}

/// A client of the API server whose kubeconfig is at `kubeconfig`, connecting through `via`.
pub async fn client_via(kubeconfig: &Path, via: SocketAddr) -> kube::Client {
    let mut kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    for c in &mut kc.clusters {
        if let Some(cluster) = c.cluster.as_mut() {
            cluster.server = Some(format!("https://{via}"));
        }
    }
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

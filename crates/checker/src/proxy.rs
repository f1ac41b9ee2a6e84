//! A TCP relay between one client and the server that a test can cut.
//!
//! Why: the official clients reconnect by themselves, and the interesting moments are
//! exactly when they do (a mutation in flight, a subscription half-answered). The server's
//! own "disconnect everyone" is not reachable in a child process and hits every client at
//! once; a relay per client cuts one client's connection at a time, like a flaky network,
//! and also survives server restarts: when the server comes back on another port the relay
//! simply forwards there.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Shared {
    upstream: Mutex<Option<SocketAddr>>,
    cuts: watch::Sender<u64>,
    connections: AtomicU64,
    connections_cut: AtomicU64,
}

/// A relay on `127.0.0.1:<port>` forwarding every connection to the current upstream.
pub struct FaultyLink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: JoinHandle<()>,
}

impl std::fmt::Debug for FaultyLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyLink")
            .field("addr", &self.addr)
            .field("upstream", &*self.shared.upstream.lock())
            .finish()
    }
}

impl FaultyLink {
    /// Start relaying to `upstream` (`None`: refuse every connection until one is set).
    pub async fn start(upstream: Option<SocketAddr>) -> std::io::Result<FaultyLink> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            cuts: watch::channel(0).0,
            connections: AtomicU64::new(0),
            connections_cut: AtomicU64::new(0),
        });
        let acceptor = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultyLink {
            addr,
            shared,
            acceptor,
        })
    }

    /// The URL a client is given (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forward new connections to `upstream` (`None`: refuse them, as a stopped server).
    pub fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *self.shared.upstream.lock() = upstream;
    }

    /// Close every connection relayed now; the client sees its socket drop.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|generation| *generation += 1);
    }

    /// Connections relayed so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Connections closed by [`FaultyLink::cut`] so far.
    pub fn connections_cut(&self) -> u64 {
        self.shared.connections_cut.load(Ordering::Relaxed)
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, most likely: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let upstream = *shared.upstream.lock();
        let shared = shared.clone();
        tokio::spawn(async move {
            let Some(upstream) = upstream else {
                return; // dropping `client` refuses the connection
            };
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            shared.connections.fetch_add(1, Ordering::Relaxed);
            relay(client, server, &shared).await;
        });
    }
}

async fn relay(mut client: TcpStream, mut server: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut cuts = shared.cuts.subscribe();
    cuts.borrow_and_update();
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cuts.changed() => {
            shared.connections_cut.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Dropping both streams closes them: the client sees a reset or an EOF.
}

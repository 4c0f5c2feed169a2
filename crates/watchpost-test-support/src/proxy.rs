//! [`FaultProxy`]: a TCP proxy between a client and a real server that passes, stalls or cuts
//! connections on command, for fault tests against real PostgreSQL, Redis and HTTP peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Forward bytes both ways.
    Pass,
    /// Keep connections open but forward nothing (a hung peer); new connections are accepted and held.
    Stall,
    /// Close every connection at once; new connections are accepted and closed immediately.
    Cut,
}

/// A running proxy; dropping it stops it and closes its connections.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    mode: watch::Sender<FaultMode>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (ephemeral port) forwarding to `target`, in [`FaultMode::Pass`].
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the fault proxy on 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let (mode, _) = watch::channel(FaultMode::Pass);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            mode.clone(),
            accepted.clone(),
        ));
        Self {
            addr,
            target,
            mode,
            accepted,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// The current mode.
    pub fn mode(&self) -> FaultMode {
        *self.mode.borrow()
    }

    /// Switches mode; takes effect on live connections at once.
    pub fn set_mode(&self, mode: FaultMode) {
        self.mode.send_replace(mode);
    }

    /// Forward traffic again.
    pub fn pass(&self) {
        self.set_mode(FaultMode::Pass);
    }

    /// Hold all traffic.
    pub fn stall(&self) {
        self.set_mode(FaultMode::Stall);
    }

    /// Close every connection and refuse service until [`pass`](Self::pass).
    pub fn cut(&self) {
        self.set_mode(FaultMode::Cut);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.mode.send_replace(FaultMode::Cut);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Sender<FaultMode>,
    accepted: Arc<AtomicU64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, Ordering::Relaxed);
        let mut rx = mode.subscribe();
        tokio::spawn(async move {
            // Hold new connections while stalled; close them while cut.
            if !wait_for_pass(&mut rx).await {
                return;
            }
            let Ok(upstream) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            let a = tokio::spawn(pump(cr, uw, rx.clone()));
            let b = tokio::spawn(pump(ur, cw, rx));
            let _ = tokio::join!(a, b);
        });
    }
}

/// Waits while stalled; `false` when cut (or the proxy is gone).
async fn wait_for_pass(rx: &mut watch::Receiver<FaultMode>) -> bool {
    loop {
        match *rx.borrow_and_update() {
            FaultMode::Pass => return true,
            FaultMode::Cut => return false,
            FaultMode::Stall => {}
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<FaultMode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_for_pass(&mut rx).await {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            changed = rx.changed() => {
                if changed.is_err() { return; }
                continue;
            }
        };
        // A stall or cut that arrives while bytes are in hand applies before they are forwarded.
        if !wait_for_pass(&mut rx).await {
            return;
        }
        tokio::select! {
            r = to.write_all(&buf[..n]) => if r.is_err() { return; },
            _ = wait_for_cut(rx.clone()) => return,
        }
    }
}

async fn wait_for_cut(mut rx: watch::Receiver<FaultMode>) {
    loop {
        if *rx.borrow_and_update() == FaultMode::Cut {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    loop {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&b[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn passes_stalls_and_cuts() {
        let proxy = FaultProxy::start(echo_server().await).await;
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");

        proxy.stall();
        c.write_all(b"held").await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(200), c.read_exact(&mut b)).await;
        assert!(r.is_err(), "a stalled proxy must not forward");
        proxy.pass();
        tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut b))
            .await
            .expect("bytes held during the stall arrive after it")
            .unwrap();
        assert_eq!(&b, b"held");

        proxy.cut();
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut b))
            .await
            .expect("a cut closes the connection")
            .unwrap_or(0);
        assert_eq!(n, 0);
        let mut c2 = TcpStream::connect(proxy.addr()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(2), c2.read(&mut b))
            .await
            .expect("new connections are closed while cut")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(proxy.connections_accepted(), 2);
    }
}

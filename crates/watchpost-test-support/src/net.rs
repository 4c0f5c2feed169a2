//! Free ports on loopback and waiting for a listener to come up.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago.
///
/// Prefer binding to port 0 and reading the address back where the code allows it;
/// this is for child processes that must be told a port up front.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// An address on 127.0.0.1 that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("bound listener has an address")
}

/// Waits until something accepts TCP connections at `addr`, for at most `timeout`.
pub async fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

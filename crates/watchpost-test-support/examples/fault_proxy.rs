//! The fault proxy in front of a tiny axum app: requests pass, then hang while stalled, then fail
//! while cut, then pass again. Run with `cargo run -p watchpost-test-support --example fault_proxy`.
#![allow(clippy::print_stdout)] // Printing the outcome of each phase is the point of the example.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use watchpost_test_support::FaultProxy;

async fn get(addr: std::net::SocketAddr) -> String {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(
            out.lines()
                .next()
                .unwrap_or("connection closed without a response")
                .to_owned(),
        )
    };
    match tokio::time::timeout(Duration::from_millis(500), attempt).await {
        Ok(Ok(line)) if !line.is_empty() => line,
        Ok(Ok(_)) => "connection closed without a response".to_owned(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "no answer within 500 ms".to_owned(),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let target = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let proxy = FaultProxy::start(target).await;
    println!("pass:  {}", get(proxy.addr()).await);
    proxy.stall();
    println!("stall: {}", get(proxy.addr()).await);
    proxy.cut();
    println!("cut:   {}", get(proxy.addr()).await);
    proxy.pass();
    println!("pass:  {}", get(proxy.addr()).await);
    Ok(())
}

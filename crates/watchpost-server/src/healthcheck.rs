//! `watchpost healthcheck`: a minimal HTTP/1.1 GET over plain TCP, so a container image needs no
//! curl to probe the server. Only `http://host:port/path` URLs are accepted.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `http://127.0.0.1:<port>/health/live` for a listen address (wildcards become loopback).
pub fn default_url(listen: SocketAddr) -> String {
    let host = match listen {
        SocketAddr::V4(a) if a.ip().is_unspecified() => "127.0.0.1".to_owned(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => "[::1]".to_owned(),
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    format!("http://{host}:{}/health/live", listen.port())
}

/// GETs `url` within `timeout`; the response status.
pub async fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: watchpost-healthcheck\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send to {authority}: {e}"))?;
        let mut head = vec![0u8; 64];
        let n = stream
            .read(&mut head)
            .await
            .map_err(|e| format!("no answer from {authority}: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]).into_owned();
        line.split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("{authority} did not answer HTTP"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{url} did not answer within {} ms", timeout.as_millis()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_urls() {
        assert_eq!(
            default_url("0.0.0.0:4000".parse().unwrap()),
            "http://127.0.0.1:4000/health/live"
        );
        assert_eq!(
            default_url("[::]:4000".parse().unwrap()),
            "http://[::1]:4000/health/live"
        );
        assert_eq!(
            default_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80/health/live"
        );
    }

    #[tokio::test]
    async fn probes_a_real_listener_and_reports_failures() {
        let app = axum::Router::new().route("/health/live", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let ok = probe(
            &format!("http://{addr}/health/live"),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(ok, Ok(200));
        let missing = probe(&format!("http://{addr}/nope"), Duration::from_secs(2)).await;
        assert_eq!(missing, Ok(404));
        let closed = watchpost_test_support::free_addr();
        assert!(
            probe(
                &format!("http://{closed}/health/live"),
                Duration::from_secs(2)
            )
            .await
            .is_err()
        );
        assert!(
            probe("https://example.invalid/", Duration::from_secs(1))
                .await
                .is_err()
        );
    }
}

//! The built-in checks that need no fault proxy: SQLite, HTTP, disk and memory.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use watchpost_health::checks::{DiskCheck, HttpCheck, MemoryCheck, SqliteCheck};
use watchpost_health::{HealthCheck, HealthError, HealthStatus};

#[tokio::test]
async fn sqlite_passes_and_fails_on_an_unusable_path() {
    let dir = tempfile::tempdir().unwrap();
    let pool = deadpool_sqlite::Config::new(dir.path().join("h.db"))
        .create_pool(deadpool_sqlite::Runtime::Tokio1)
        .unwrap();
    let out = SqliteCheck::new(pool).run().await;
    assert_eq!(out.status, HealthStatus::Pass, "{out:?}");
    assert!(
        out.observations
            .iter()
            .any(|o| o.measurement == "connections")
    );

    let pool = deadpool_sqlite::Config::new(dir.path().join("missing-dir").join("h.db"))
        .create_pool(deadpool_sqlite::Runtime::Tokio1)
        .unwrap();
    let out = SqliteCheck::new(pool).run().await;
    assert_eq!(out.status, HealthStatus::Fail);
    assert!(
        out.output
            .unwrap()
            .contains("cannot open the SQLite database")
    );
}

async fn http_server() -> std::net::SocketAddr {
    let app = Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route(
            "/broken",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn http_expects_2xx_within_the_timeout() {
    let addr = http_server().await;
    let ok = HttpCheck::new(&format!("http://{addr}/ok"))
        .unwrap()
        .run()
        .await;
    assert_eq!(ok.status, HealthStatus::Pass, "{ok:?}");
    let broken = HttpCheck::new(&format!("http://{addr}/broken?token=secret"))
        .unwrap()
        .run()
        .await;
    assert_eq!(broken.status, HealthStatus::Fail);
    let output = broken.output.unwrap();
    assert!(output.contains("500"), "{output}");
    assert!(
        !output.contains("secret"),
        "query strings stay out of outputs: {output}"
    );

    let r = watchpost_health::HealthRegistry::new(Default::default());
    r.register(
        watchpost_health::Check::new(
            "slow",
            HttpCheck::new(&format!("http://{addr}/slow")).unwrap(),
        )
        .timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let slow = r.check("slow").await.unwrap();
    assert_eq!(slow.output.as_deref(), Some("timed out after 200 ms"));

    let closed = watchpost_test_support::free_addr();
    let refused = HttpCheck::new(&format!("http://{closed}/"))
        .unwrap()
        .run()
        .await;
    assert_eq!(refused.status, HealthStatus::Fail);

    assert!(matches!(
        HttpCheck::new("ftp://x/"),
        Err(HealthError::InvalidUrl { .. })
    ));
    assert!(matches!(
        HttpCheck::new("not a url"),
        Err(HealthError::InvalidUrl { .. })
    ));
}

#[tokio::test]
async fn disk_reports_free_space() {
    let dir = tempfile::tempdir().unwrap();
    // The machine's real free space decides pass, warn or fail: check the status agrees with the
    // reported figure under the default thresholds, whatever that figure is.
    let check = DiskCheck::new(dir.path());
    let out = check.run().await;
    let free = out
        .observations
        .iter()
        .find(|o| o.measurement == "freePercent")
        .unwrap();
    let free = free.value.as_f64().unwrap();
    assert!((0.0..=100.0).contains(&free));
    // The figure is rounded to 0.1 for display: allow either side of a threshold it rounds onto.
    let allowed = [check.status_for(free - 0.05), check.status_for(free + 0.05)];
    assert!(allowed.contains(&out.status), "{out:?}");
    // Nothing is below 0 % free: with these thresholds it must pass.
    let out = DiskCheck::new(dir.path())
        .thresholds(0.0, 0.0)
        .unwrap()
        .run()
        .await;
    assert_eq!(out.status, HealthStatus::Pass, "{out:?}");
    // No filesystem is 100 % free: with these thresholds it must fail.
    let out = DiskCheck::new(dir.path())
        .thresholds(100.0, 100.0)
        .unwrap()
        .run()
        .await;
    assert_eq!(out.status, HealthStatus::Fail);
    let out = DiskCheck::new(dir.path().join("nope")).run().await;
    assert_eq!(out.status, HealthStatus::Fail);
    assert!(out.output.unwrap().contains("does the path exist?"));
}

#[tokio::test]
async fn memory_reads_this_process() {
    let out = MemoryCheck::new().run().await;
    assert_ne!(out.status, HealthStatus::Fail, "{out:?}");
    let rss = out
        .observations
        .iter()
        .find(|o| o.measurement == "residentMemory")
        .unwrap();
    assert!(rss.value.as_u64().unwrap() > 0);
}

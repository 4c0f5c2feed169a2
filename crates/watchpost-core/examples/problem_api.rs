//! A plain axum app that uses only `watchpost-core`: problem+json errors, the client-IP policy and
//! the `authorize` rule. Run with `cargo run -p watchpost-core --example problem_api`, then
//! `curl -i localhost:3000/items/7` or `curl -i -H 'x-user: admin' localhost:3000/admin`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use watchpost_core::{Access, Principal, Problem, Role, TrustedProxies, authorize};

async fn item(Path(id): Path<u32>) -> Response {
    if id == 1 {
        Json(serde_json::json!({ "id": 1, "name": "first" })).into_response()
    } else {
        Problem::not_found(format!("no item has id {id}"))
            .with_instance(format!("/items/{id}"))
            .to_http_response()
            .into_response()
    }
}

async fn whoami(ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> String {
    let proxies = TrustedProxies::parse_list("127.0.0.1, ::1").expect("valid list");
    format!("you are {}\n", proxies.client_ip(peer.ip(), &headers))
}

async fn admin(request: Request) -> Response {
    match authorize(request.extensions(), Access::Root) {
        Ok(p) => format!("hello {}\n", p.key_name).into_response(),
        Err(problem) => problem.to_http_response().into_response(),
    }
}

/// A toy authenticator: real apps check a key; this one trusts an `x-user` header.
async fn toy_auth(mut request: Request, next: Next) -> Response {
    let role = match request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
    {
        Some("admin") => Some(Role::Root),
        Some(_) => Some(Role::Tenant),
        None => None,
    };
    if let Some(role) = role {
        request
            .extensions_mut()
            .insert(Principal::new("demo", "demo", None, role));
    }
    next.run(request).await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/items/{id}", get(item))
        .route("/whoami", get(whoami))
        .route("/admin", get(admin))
        .layer(middleware::from_fn(toy_auth));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

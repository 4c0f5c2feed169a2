//! The `watchpost` operations server: configuration, stores, authentication and assembly of the
//! Watchpost crates into one router. Business logic lives in the crates; this crate only wires.
//!
//! The binary is `watchpost` (`src/main.rs`); this library exists so tests can build the app in
//! process.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use watchpost_server::{app, config::Config, serve};
//!
//! let config = Config::for_tests();
//! let stores = serve::open_stores(&config).await?;
//! let state = app::AppState::new(config, stores, watchpost_core::SystemClock::shared())?;
//! let router = app::router(state);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```
//!
//! This crate has no cargo features.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod healthcheck;
pub mod keys;
pub mod keys_api;
pub mod openapi;
pub mod rejections;
pub mod serve;
pub mod store;
pub mod wiring;

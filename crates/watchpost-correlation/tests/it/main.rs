//! The integration tests of watchpost-correlation: one binary, one module per concern.

mod support;

mod ids;
mod logs;
#[cfg(feature = "openapi")]
mod openapi;
mod otlp;
mod panics;

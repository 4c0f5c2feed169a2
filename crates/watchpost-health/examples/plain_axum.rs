//! A plain axum app serving the health endpoints.

fn main() {}

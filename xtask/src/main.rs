//! Watchpost's automation entry point (being built).
fn main() {}

//! Benchmarks of the correlation layers (in progress).
fn main() {}

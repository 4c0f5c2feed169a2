//! Example app (in progress).
fn main() {}

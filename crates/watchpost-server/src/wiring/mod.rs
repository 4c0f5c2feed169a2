//! Wiring of the feature crates into the server: one module per crate, each turning the server's
//! configuration and stores into that crate's objects. No business logic lives here.

pub mod audit;
pub mod correlation;
pub mod health;
pub mod incident;
pub mod metrics;
pub mod ratelimit;

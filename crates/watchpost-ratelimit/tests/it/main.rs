//! The integration tests of watchpost-ratelimit, one binary: the layer over HTTP, the
//! accuracy replay, the local store's bounds, and (feature `redis`) the Redis store.

mod accuracy;
mod layer;
#[cfg(feature = "redis")]
mod redis;
mod store;

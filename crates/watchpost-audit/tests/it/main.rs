//! The one integration-test binary of watchpost-audit: every module below runs against real backends.

mod api;
mod contract;
mod postgres;
mod props;
mod support;
mod writer;

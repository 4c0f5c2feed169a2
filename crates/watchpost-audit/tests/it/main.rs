//! The one integration-test binary of watchpost-audit: every module below runs against real backends.

mod contract;
mod postgres;
mod support;
mod writer;
